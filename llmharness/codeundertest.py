"""Where the project's own packages are imported from: a run must test its work tree's code.

The project's packages and modules are the importable names at the work tree's top, at the
pytest rootdir, and in the `src/` folder of either. An editable install of another clone, or a
PYTHONPATH naming one, makes a run import that clone's code instead: its outcomes then say
nothing of this work tree. Only the standard library is used, and no module is imported.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from types import ModuleType

__all__ = ["foreign_imports", "is_inside", "module_paths", "project_modules", "source_roots"]

#: Names at a project's top that are not its code, though Python could import them; some
#: sloppy distributions install a top-level `tests` or `docs` package, which must not count.
_NOT_PROJECT = frozenset(
    {
        "bench",
        "benchmarks",
        "build",
        "conftest",
        "dist",
        "doc",
        "docs",
        "example",
        "examples",
        "fabfile",
        "manage",
        "noxfile",
        "scripts",
        "setup",
        "tasks",
        "test",
        "testing",
        "tests",
        "tools",
    }
)


def source_roots(*tops: Path) -> list[Path]:
    """The folders that hold a project's top-level packages: each of `tops` and its `src/`."""
    roots: list[Path] = []
    for top in tops:
        for folder in (top, top / "src"):
            if folder.is_dir() and folder not in roots:
                roots.append(folder)
    return roots


def _is_project_name(name: str) -> bool:
    return (
        name.isidentifier()
        and not name.startswith("__")
        and not name.startswith("test_")
        and not name.endswith("_test")
        and name not in _NOT_PROJECT
        and name not in sys.stdlib_module_names
    )


def project_modules(roots: Iterable[Path]) -> dict[str, Path]:
    """The top-level package and module names found in `roots`, each with where it lies."""
    found: dict[str, Path] = {}
    for root in roots:
        in_src = root.name == "src"
        try:
            entries = sorted(os.scandir(root), key=lambda entry: entry.name)
        except OSError:
            continue
        for entry in entries:
            path = Path(entry.path)
            if entry.name.endswith(".py") and entry.is_file():
                name = entry.name[:-3]
            elif entry.is_dir() and (in_src or (path / "__init__.py").is_file()):
                # Under src/ a folder without __init__.py is a namespace package: src/ holds
                # only importable code. At the top it is more likely docs or data.
                name = entry.name
            else:
                continue
            if _is_project_name(name):
                found.setdefault(name, path)
    return found


def module_paths(module: object) -> list[str]:
    """Where an imported module was loaded from: a package's folder (each portion of a
    namespace package, in search order) or a module's file."""
    file = getattr(module, "__file__", None)
    search = getattr(module, "__path__", None)
    if search is not None:
        if isinstance(file, str) and os.path.basename(file).startswith("__init__."):
            return [os.path.dirname(file)]
        try:
            return [str(entry) for entry in search]
        except Exception:  # a package's __path__ can be any object
            return []
    return [file] if isinstance(file, str) else []


def _spec_paths(name: str) -> list[str]:
    """Where `name` would be imported from, without importing it."""
    try:
        spec = importlib.util.find_spec(name)
    except Exception:  # a broken finder or a module without __spec__: say nothing
        return []
    if spec is None:
        return []
    if spec.submodule_search_locations is not None:
        if spec.origin and os.path.basename(spec.origin).startswith("__init__."):
            return [os.path.dirname(spec.origin)]
        return [str(entry) for entry in spec.submodule_search_locations]
    return [spec.origin] if spec.origin and os.path.isabs(spec.origin) else []


def is_inside(path: str, folder: Path) -> bool:
    """Whether `path` is `folder` or lies under it, symbolic links resolved."""
    real = os.path.realpath(path)
    top = os.path.realpath(folder)
    return real == top or real.startswith(top.rstrip(os.sep) + os.sep)


def _hint(path: str) -> str:
    real = os.path.realpath(path)
    parts = Path(real).parts
    if "site-packages" in parts or "dist-packages" in parts:
        return "an installed copy rather than an editable install of this clone? pip install -e ."
    for entry in os.environ.get("PYTHONPATH", "").split(os.pathsep):
        if entry and is_inside(real, Path(entry)):
            return f"PYTHONPATH names {entry}: point it at this work tree"
    return "an editable install of another clone? pip install -e ."


def foreign_imports(
    rootdir: Path, worktree_top: Path, modules: Mapping[str, ModuleType] = sys.modules
) -> list[str]:
    """A line for each project package imported (or, not imported, importable) from outside
    `worktree_top`."""
    lines = []
    for name in project_modules(source_roots(worktree_top, rootdir)):
        module = modules.get(name)
        paths: Sequence[str] = module_paths(module) if module is not None else _spec_paths(name)
        # A namespace package may have portions elsewhere; the first is where imports look.
        if not paths or is_inside(paths[0], worktree_top):
            continue
        verb = "is imported" if module is not None else "would be imported"
        lines.append(
            f"code under test: {name} {verb} from {paths[0]}, outside this work tree "
            f"({_hint(paths[0])})"
        )
    return lines
