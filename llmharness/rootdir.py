"""A rootdir chosen by the value of one of llmharness's options: refused, with the fix.

pytest chooses its rootdir and ini file before it loads plugins, so it cannot tell the value
of `--llmharness-store /shared/store` from a path to test: an existing path among the free
words of the command line joins the folders pytest searches for its ini file from (their
common folder, upwards). A store or a config file outside the project moves that search
elsewhere, and with it the rootdir, the project's settings (`testpaths`, `addopts`, ...) and
every node id, which are the store's keys: the run would record the project's tests under other
names without a word. The `--flag=value` form, the environment and the config file are not read
that way.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import pytest

__all__ = ["check", "check_early"]

# The files that can make a folder pytest's rootdir (`setup.py` when there is no ini file).
_CANDIDATES = ("pytest.ini", ".pytest.ini", "pyproject.toml", "tox.ini", "setup.cfg", "setup.py")


def check(config: pytest.Config, value_flags: Iterable[str]) -> None:
    """Raise a usage error when one of `value_flags`, given with its value as the next word,
    may have moved the rootdir or the ini file pytest chose (at `pytest_configure`)."""
    paths = config.args if config.args_source == pytest.Config.ArgsSource.ARGS else []
    _check(config, value_flags, paths, config.getoption("inifilename", None))


def check_early(early_config: pytest.Config, value_flags: Iterable[str]) -> None:
    """`check`, from `pytest_load_initial_conftests`: before pytest imports a conftest from the
    rootdir it chose, where an import error would hide why."""
    namespace = early_config.known_args_namespace
    if getattr(namespace, "help", False) or getattr(namespace, "version", False):
        return
    paths = [str(path) for path in getattr(namespace, "file_or_dir", None) or ()]
    _check(early_config, value_flags, paths, getattr(namespace, "inifilename", None))


def _check(
    config: pytest.Config, value_flags: Iterable[str], paths: Sequence[str], inifile: Any
) -> None:
    if inifile:
        return  # `-c FILE`: the ini file, and the rootdir with it, come from FILE alone
    words = [*shlex.split(os.environ.get("PYTEST_ADDOPTS", "")), *config.invocation_params.args]
    separate = _separate_values(words, set(value_flags))
    if not separate:
        return  # the usual case: nothing more to look at
    here = config.invocation_params.dir
    folders = _folders(here, paths)
    for flag, value in separate:
        found = _folders(here, [value])
        try:
            moves = bool(found) and _moves(here, folders, found[0], config.inipath is not None)
        except ValueError:  # paths on different drives (Windows): the search starts elsewhere
            moves = True
        if moves:
            raise pytest.UsageError(
                f"llmharness: pytest took the value of '{flag} {value}' for a path to test when "
                f"it chose its rootdir ({config.rootpath}), before llmharness's options were "
                f"known; write {flag}={value}"
            )


def _separate_values(words: Sequence[str], flags: set[str]) -> list[tuple[str, str]]:
    """(flag, value) for each of `flags` whose value is the next word (not `--flag=value`)."""
    return [
        (word, words[i + 1])
        for i, word in enumerate(words[:-1])
        if word in flags and not words[i + 1].startswith("-")
    ]


def _folders(here: Path, words: Iterable[str]) -> list[Path]:
    """The folders pytest reads off these words: each existing path's, a file's parent."""
    folders = []
    for word in words:
        path = Path(os.path.abspath(here / word.split("::")[0]))
        if path.exists():
            folders.append(path if path.is_dir() else path.parent)
    return folders


def _moves(here: Path, folders: list[Path], value: Path, found_ini: bool) -> bool:
    """Whether adding the folder `value` to the paths' `folders` may change the ini file or the
    rootdir pytest finds.

    pytest searches upwards from the folder common to the paths (the invocation folder when
    there are none). The search from the new start finds the same file as the one from the old
    start unless a candidate lies in a folder only one of them passes, or, failing that, in the
    value's own folders (searched on their own when no ini file is found).
    """
    before = _common(folders) if folders else here
    after = _common([*folders, value])
    meet = _common([before, after])
    if before == after and value == after:
        return False
    passed_once = [*_below(before, meet), *_below(after, meet), *_below(value, after)]
    if any((folder / name).exists() for folder in passed_once for name in _CANDIDATES):
        return True
    # With no ini file anywhere, pytest roots the run at the folder the invocation folder and
    # the search's start have in common.
    return not found_ini and _common([here, before]) != _common([here, after])


def _common(folders: Sequence[Path]) -> Path:
    return Path(os.path.commonpath(folders))


def _below(folder: Path, top: Path) -> list[Path]:
    """`folder` and its parents up to, not including, `top`."""
    chain = [folder, *folder.parents]
    return chain[: chain.index(top)] if top in chain else chain
