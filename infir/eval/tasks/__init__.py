"""The task registry: every benchmark is one module that defines `TASK` (or `TASKS`); modules are discovered.

Where tasks come from, in this order (a later one with the same name and mode replaces an earlier one):
1. the modules of this package;
2. entry points in the group `infir.tasks` (an installed package's module, or a `Task` object);
3. the `.py` files of every folder in `INFIR_TASKS_PATH` (os.pathsep-separated); `add_tasks_dir` adds one
   there (`infir eval --tasks-dir`, `infir data curate --tasks-dir`, a recipe's `tasks_dirs`).
A user's own benchmark is therefore one file in a folder of theirs; nothing in infir lists it.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import sys
from collections.abc import Iterable
from pathlib import Path
from types import ModuleType

from infir.eval.tasks.base import Mode, Task

_REGISTRY: dict[tuple[str, Mode], Task] = {}
_LOADED_FILES: set[Path] = set()
_DISCOVERED = False


def _tasks_of(module: ModuleType | object) -> list[Task]:
    if isinstance(module, Task):
        return [module]
    found: list[Task] = []
    if isinstance(getattr(module, "TASK", None), Task):
        found.append(module.TASK)  # type: ignore[union-attr]
    extra = getattr(module, "TASKS", None)
    if isinstance(extra, dict):
        extra = list(extra.values())
    found += [t for t in extra or [] if isinstance(t, Task)]
    return found


def register_task(task: Task) -> Task:
    """Add (or replace) a task for each of its modes."""
    for mode in task.modes:
        _REGISTRY[(task.name, mode)] = task
    return task


def _load_file(path: Path) -> None:
    path = path.resolve()
    if path in _LOADED_FILES:
        return
    name = f"infir_user_tasks.{path.parent.name}.{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot import task file {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    tasks = _tasks_of(module)
    if not tasks:
        raise ImportError(f"task file {path} defines no TASK or TASKS")
    for task in tasks:
        register_task(task)
    _LOADED_FILES.add(path)


def _load_dir(folder: Path) -> None:
    if not folder.is_dir():
        raise FileNotFoundError(f"tasks folder {folder} does not exist")
    for path in sorted(folder.glob("*.py")):
        if not path.name.startswith("_"):
            _load_file(path)


def add_tasks_dir(folder: str | Path) -> None:
    """Register every task file (`*.py` defining TASK/TASKS) in `folder`.

    The folder joins `INFIR_TASKS_PATH`, so worker processes started afterwards find the same tasks.
    """
    folder = Path(folder).resolve()
    if not folder.is_dir():
        raise FileNotFoundError(f"tasks folder {folder} does not exist")
    paths = [p for p in os.environ.get("INFIR_TASKS_PATH", "").split(os.pathsep) if p]
    if str(folder) not in paths:
        os.environ["INFIR_TASKS_PATH"] = os.pathsep.join([*paths, str(folder)])
    if _DISCOVERED:
        _load_dir(folder)


def _entry_points() -> Iterable[object]:
    from importlib.metadata import entry_points

    for ep in entry_points(group="infir.tasks"):
        yield ep.load()


def discover() -> None:
    """Import the package's task modules, the entry points and the task folders (once)."""
    global _DISCOVERED
    if _DISCOVERED:
        return
    for info in pkgutil.iter_modules(__path__):
        if info.name in ("base",) or info.name.startswith("_"):
            continue
        for task in _tasks_of(importlib.import_module(f"{__name__}.{info.name}")):
            register_task(task)
    for obj in _entry_points():
        for task in _tasks_of(obj):
            register_task(task)
    _DISCOVERED = True
    env = os.environ.get("INFIR_TASKS_PATH", "")
    for folder in [Path(p) for p in env.split(os.pathsep) if p]:
        _load_dir(folder)


def get_task(name: str, mode: Mode = "base") -> Task:
    discover()
    if (name, mode) in _REGISTRY:
        return _REGISTRY[(name, mode)]
    if any(n == name for n, _ in _REGISTRY):
        modes = sorted(m for n, m in _REGISTRY if n == name)
        raise KeyError(f"task {name!r} has no {mode!r} mode (it has: {', '.join(modes)})")
    raise KeyError(f"unknown task {name!r}; known: {', '.join(task_names())}")


def resolve_task(ref: str, data_dir: str | Path | None = None) -> tuple[Task, Path | None] | None:
    """A task named `ref`, or the task whose local test file `ref` is (e.g. `data/gsm8k/test.jsonl` -> gsm8k
    with data dir `data/`); None when `ref` is neither (a plain file the caller reads itself)."""
    discover()
    for (name, _), task in _REGISTRY.items():
        if name == ref:
            return task, Path(data_dir) if data_dir else None
    path = Path(ref)
    for task in _REGISTRY.values():
        for rel in (task.source.files.get("test", ()) if task.source else ()):
            parts = Path(rel).parts
            if len(path.parts) >= len(parts) and path.parts[-len(parts):] == parts:
                root = Path(*path.parts[: -len(parts)]) if len(path.parts) > len(parts) else Path(".")
                return task, root
    return None


def task_names() -> list[str]:
    discover()
    return sorted({n for n, _ in _REGISTRY})


__all__ = ["add_tasks_dir", "discover", "get_task", "register_task", "resolve_task", "task_names"]
