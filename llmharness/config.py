"""Settings: defaults < config file (YAML) < environment < command line, all validated here."""

from __future__ import annotations

import datetime
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from llmharness import agents
from llmharness.sampling import parse_fraction, parse_seed

__all__ = [
    "CONFIG_FILENAME",
    "ENV_PREFIX",
    "ConfigError",
    "Settings",
    "check_team",
    "load_settings",
]

CONFIG_FILENAME = "llmharness.yaml"
ENV_PREFIX = "LLMHARNESS_"
_MAX_AGENT_ID = 64


class ConfigError(ValueError):
    """A setting is malformed; the message names where it came from and how to fix it."""


@dataclass(frozen=True)
class KnownFailure:
    """A failure the team has accepted: never a regression, never blocking, until it expires."""

    nodeid: str  # a node id or an fnmatch pattern of node ids
    reason: str
    until: str | None = None  # an ISO date (YYYY-MM-DD) after which the entry no longer applies

    def to_json(self) -> dict[str, Any]:
        return {"nodeid": self.nodeid, "reason": self.reason, "until": self.until}


@dataclass(frozen=True)
class Settings:
    """Every knob llmharness has, after precedence and validation."""

    store: str = ".llmharness"
    compact: bool | None = None  # None: on when --fast, an agent id or a coding agent is seen
    detect_agent: bool = True  # a coding agent's environment variables turn compact output on
    detected_agent: str | None = None  # the coding agent the environment names (not a key)
    max_lines: int = 8
    fast: bool = False
    fast_fraction: float | None = None  # None: 10%, or the whole suite under a budget
    fast_budget: float | None = None
    time_limit: float | None = None
    test_timeout: float | None = None
    progress_interval: float = 30.0
    keep_runs: int = 50
    agent_id: str | None = None
    seed: str | None = None
    max_reason_chars: int = 300
    max_output_bytes: int = 65536
    fast_collect: bool = True
    bytecode_cache: bool | None = None  # None: on when Python may not write bytecode
    debug_log: bool = False
    base: str | None = None  # a ref; None: the merge-base with upstream, origin/HEAD or main
    base_check_budget: float = 30.0  # seconds to run failing tests at the base; 0: never
    verdict_budget: float = 10.0  # seconds to re-run new failures for their verdict; 0: never
    flaky_blocks: bool = False  # `regressions --check` fails on flaky new failures too
    known_failures: tuple[KnownFailure, ...] = ()
    protected: tuple[str, ...] = ()  # paths (rootdir-relative) a change must not touch
    allow_test_changes: bool = False  # tests fixed by changing them, removed or skipped pass
    agents: int | None = None  # team size: agent k of N runs part k (ids 0..N-1)
    rotation: int | None = None  # None: the parts rotate with the base commit; n: fixed shift
    fast_changes: bool = True  # --fast adds the tests of files changed since the base
    config_file: str | None = None

    @property
    def compact_output(self) -> bool:
        if self.compact is not None:
            return self.compact
        return self.fast or self.agent_id is not None or self.detected_agent is not None


def validate_agent_id(value: str) -> str:
    """Accept 1-64 printable characters with no path separators; raise ValueError otherwise."""
    if not value.strip():
        raise ValueError("agent id must not be empty")
    if len(value) > _MAX_AGENT_ID:
        raise ValueError(f"agent id must be at most {_MAX_AGENT_ID} characters, got {len(value)}")
    if not value.isprintable():
        raise ValueError(f"agent id must be printable characters only, got {value!r}")
    if "/" in value or "\\" in value or value in {".", ".."}:
        raise ValueError(f"agent id must not contain '/' or '\\' or be '.' or '..', got {value!r}")
    return value


def _parse_bool(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str):
        lowered = value.strip().lower()
        if lowered in {"1", "true", "yes", "on"}:
            return True
        if lowered in {"0", "false", "no", "off"}:
            return False
    raise ValueError(f"expected true or false, got {value!r}")


def _parse_auto(value: Any) -> bool | None:
    if isinstance(value, str) and value.strip().lower() == "auto":
        return None
    return _parse_bool(value)


def _number(value: Any) -> float:
    if isinstance(value, bool):
        raise ValueError(f"expected a number, got {value!r}")
    if isinstance(value, (int, float)):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value.strip())
        except ValueError:
            raise ValueError(f"expected a number, got {value!r}") from None
    else:
        raise ValueError(f"expected a number, got {value!r}")
    if not math.isfinite(number):
        raise ValueError(f"expected a finite number, got {value!r}")
    return number


def positive_seconds(value: Any) -> float:
    """Parse a positive number of seconds."""
    number = _number(value)
    if number <= 0:
        raise ValueError(f"expected a number of seconds greater than 0, got {value!r}")
    return number


def _seconds_or_zero(value: Any) -> float:
    number = _number(value)
    if number < 0:
        raise ValueError(f"expected a number of seconds, 0 or more, got {value!r}")
    return number


def _known_failures(value: Any) -> tuple[KnownFailure, ...]:
    if isinstance(value, str):
        raise ValueError("set known_failures in the config file, as a list of mappings")
    if not isinstance(value, list):
        raise ValueError(f"expected a list of {{nodeid, reason, until}} mappings, got {value!r}")
    entries = []
    for number, entry in enumerate(value, 1):
        where = f"entry {number}"
        if not isinstance(entry, dict):
            raise ValueError(f"{where}: expected a mapping with nodeid and reason, got {entry!r}")
        unknown = sorted(set(map(str, entry)) - {"nodeid", "reason", "until"})
        if unknown:
            raise ValueError(f"{where}: unknown key {unknown[0]!r}; known: nodeid, reason, until")
        nodeid, reason, until = entry.get("nodeid"), entry.get("reason"), entry.get("until")
        if not isinstance(nodeid, str) or not nodeid.strip():
            raise ValueError(f"{where}: nodeid must be a node id or pattern, got {nodeid!r}")
        if not isinstance(reason, str) or not reason.strip():
            raise ValueError(f"{where}: reason must say why the failure is accepted")
        if until is not None:
            try:
                until = datetime.date.fromisoformat(str(until)).isoformat()
            except ValueError:
                raise ValueError(
                    f"{where}: until must be a date YYYY-MM-DD, got {until!r}"
                ) from None
        entries.append(KnownFailure(nodeid, reason, until))
    return tuple(entries)


def _protected(value: Any) -> tuple[str, ...]:
    if isinstance(value, str):  # the environment's form: comma-separated
        value = [part for part in value.split(",") if part.strip()]
    if not isinstance(value, list):
        raise ValueError(f"expected a list of paths relative to the rootdir, got {value!r}")
    paths = []
    for entry in value:
        if not isinstance(entry, str) or not entry.strip():
            raise ValueError(f"expected a path relative to the rootdir, got {entry!r}")
        path = entry.strip().replace("\\", "/")
        if path.startswith("/") or ".." in path.split("/"):
            raise ValueError(f"{entry!r} is not inside the rootdir: give a relative path")
        paths.append(path)
    return tuple(paths)


def _optional_seconds(value: Any) -> float | None:
    return None if value is None else positive_seconds(value)


def _int_at_least(minimum: int) -> Callable[[Any], int]:
    def parse(value: Any) -> int:
        number = _number(value)
        if number != int(number) or number < minimum:
            raise ValueError(f"expected a whole number of at least {minimum}, got {value!r}")
        return int(number)

    return parse


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _optional(parse: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda value: None if value is None else parse(value)


def _seed(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"expected a seed string, got {value!r}")
    return parse_seed(value)


def _team_size(value: Any) -> int | None:
    if value is None:
        return None
    return _int_at_least(1)(value)


def _rotation(value: Any) -> int | None:
    """`base` (the default: rotate with the base commit) or a fixed non-negative shift."""
    if value is None or (isinstance(value, str) and value.strip().lower() == "base"):
        return None
    return _int_at_least(0)(value)


def check_team(settings: Settings) -> None:
    """With a team size, a sample needs the agent id, one of 0..N-1, and a given id must be
    one (raise ConfigError otherwise); a plain full run without an id is left alone."""
    agents = settings.agents
    if agents is None or (settings.agent_id is None and not settings.fast):
        return
    if settings.agent_id is None:
        raise ConfigError(f"--agents {agents}: give each agent --agent-id 0..{agents - 1}")
    agent = settings.agent_id.strip()
    if not agent.isdecimal() or int(agent) >= agents:
        raise ConfigError(
            f"--agent-id {settings.agent_id!r}: with --agents {agents} the agent id must be an "
            f"integer from 0 to {agents - 1}"
        )


def _agent(value: Any) -> str:
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"expected an agent id string, got {value!r}")
    return validate_agent_id(value)


_PARSERS: dict[str, Callable[[Any], Any]] = {
    "store": _text,
    "compact": _parse_auto,
    "detect_agent": _parse_bool,
    "max_lines": _int_at_least(3),
    "fast": _parse_bool,
    "fast_fraction": _optional(parse_fraction),
    "fast_budget": _optional_seconds,
    "time_limit": _optional_seconds,
    "test_timeout": _optional_seconds,
    "progress_interval": positive_seconds,
    "keep_runs": _int_at_least(1),
    "agent_id": _optional(_agent),
    "seed": _optional(_seed),
    "max_reason_chars": _int_at_least(40),
    "max_output_bytes": _int_at_least(0),
    "fast_collect": _parse_bool,
    "bytecode_cache": _parse_auto,
    "debug_log": _parse_bool,
    "base": _optional(_text),
    "base_check_budget": _seconds_or_zero,
    "verdict_budget": _seconds_or_zero,
    "flaky_blocks": _parse_bool,
    "known_failures": _known_failures,
    "protected": _protected,
    "allow_test_changes": _parse_bool,
    "agents": _team_size,
    "rotation": _rotation,
    "fast_changes": _parse_bool,
}
KEYS = tuple(_PARSERS)
_VERBATIM = frozenset({"seed", "agent_id"})
#: Command-line flags whose name is not `--<key with dashes>`.
FLAGS = {"store": "--llmharness-store", "config_file": "--llmharness-config"}


def _read_yaml(path: Path) -> tuple[dict[str, Any], dict[str, int]]:
    """Load a config file; return its mapping and the line of each key."""
    import yaml  # here, not at the top: most runs have no config file to pay its import for

    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found; create it or fix the path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read config file: {exc}") from None
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        position = getattr(exc, "position", None)  # reader errors: bad characters
        if mark is not None:
            where = f":{mark.line + 1}"
        elif isinstance(position, int):
            where = f":{text.count(chr(10), 0, position) + 1}"
        else:
            where = ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{path}{where}: malformed YAML: {problem}") from None
    if data is None:
        return {}, {}
    if not isinstance(data, dict) or not isinstance(node, yaml.MappingNode):
        raise ConfigError(
            f"{path}:1: expected a mapping of settings (key: value), got {type(data).__name__}"
        )
    lines = {}
    for key, value in node.value:
        if not isinstance(key, yaml.ScalarNode):
            continue
        lines[str(key.value)] = key.start_mark.line + 1
        if key.value in _VERBATIM and isinstance(value, yaml.ScalarNode) and not value.style:
            # An unquoted `seed: 0123` would load as the number 83; keep the text as written.
            data[key.value] = None if data.get(key.value) is None else value.value
    return data, lines


def _apply(values: dict[str, Any], source: Mapping[str, Any], where: Callable[[str], str]) -> None:
    for key, raw in source.items():
        parse = _PARSERS.get(str(key))
        if parse is None:
            known = ", ".join(KEYS)
            raise ConfigError(f"{where(str(key))}: unknown key {key!r}; known keys: {known}")
        try:
            values[str(key)] = parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{where(str(key))}: {key}: {exc}") from None


def _detect_agent(values: dict[str, Any], env: Mapping[str, str]) -> None:
    """Note the coding agent the environment names (unless `detect_agent: false`) and take
    its session id as the agent id where it sets one and none is configured."""
    if not values.get("detect_agent", True):
        return
    values["detected_agent"] = agents.detect(env)
    if values["detected_agent"] is None or values.get("agent_id") is not None:
        return
    if values.get("agents") is not None:
        return  # a team's agent ids are its part numbers, which no agent's session id is
    session = agents.agent_id(env)
    try:
        values["agent_id"] = None if session is None else validate_agent_id(session)
    except ValueError:  # not usable as an id: the agent runs unnamed, as without the variable
        values["agent_id"] = None


def find_config_file(rootdir: Path, named: str | None) -> Path | None:
    """The config file to read: the one named, else `llmharness.yaml` at the rootdir if any."""
    if named:
        path = Path(named).expanduser()
        return path if path.is_absolute() else (rootdir / path if not path.exists() else path)
    candidate = rootdir / CONFIG_FILENAME
    return candidate if candidate.is_file() else None


def load_settings(
    rootdir: Path,
    cli: Mapping[str, Any],
    env: Mapping[str, str] | None = None,
    config_name: str | None = None,
) -> Settings:
    """Merge defaults, the config file, `LLMHARNESS_*` variables and command-line values.

    `cli` holds only the options actually given (None values are ignored).
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    named = cli.get("config_file") or env.get(ENV_PREFIX + "CONFIG") or config_name
    path = find_config_file(rootdir, named)
    if path is not None:
        data, lines = _read_yaml(path)
        _apply(values, data, lambda key: f"{path}:{lines.get(key, 1)}")
        values["config_file"] = str(path)
    from_env = {
        key: env[ENV_PREFIX + key.upper()]
        for key in KEYS
        if env.get(ENV_PREFIX + key.upper(), "") != ""
    }
    _apply(values, from_env, lambda key: f"environment variable {ENV_PREFIX}{key.upper()}")
    given = {key: value for key, value in cli.items() if value is not None and key in _PARSERS}
    _apply(values, given, lambda key: FLAGS.get(key, f"--{key.replace('_', '-')}"))
    _detect_agent(values, env)
    known = {f.name for f in fields(Settings)}
    return replace(Settings(), **{k: v for k, v in values.items() if k in known})
