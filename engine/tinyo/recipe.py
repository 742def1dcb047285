"""Provides recipe loading: ``meta_task``, load-time validation, and op addressing by name.

A recipe is a Python file loaded by path under a unique module name, with its folder on sys.path.
Ops are addressed as ``module:qualname`` (``<recipe>:qualname`` for the recipe's own objects) so a
worker in another process, or on another machine, imports and finds them without inherited state.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import inspect
import os
import stat
import sys
import threading
import traceback
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from .errors import ConfigError, OpNotImportable, RecipeError
from .model import RECIPE_MODULE_PREFIX, TinyOConfig

RECIPE_REF = "<recipe>"


class MetaTask:
    """A generator function decorated with ``@meta_task``; still callable as the plain function."""

    def __init__(self, fn: Callable[[Any], Any], download: Iterable[Any], root: bool) -> None:
        self.fn = fn
        self.download = tuple(download)
        self.root = bool(root)
        self.name = getattr(fn, "__name__", repr(fn))
        self.__name__ = self.name
        self.__qualname__ = getattr(fn, "__qualname__", self.name)
        self.__module__ = getattr(fn, "__module__", None)
        self.__doc__ = getattr(fn, "__doc__", None)
        self.__wrapped__ = fn

    def __call__(self, event: Any) -> Any:
        return self.fn(event)

    def __repr__(self) -> str:
        return f"<meta_task {self.name} root={self.root} download={[getattr(d, 'name', d) for d in self.download]}>"


def meta_task(fn: Callable[[Any], Any] | None = None, *, download: Iterable[Any] | None = None, root: bool = False):
    """Declare a generator. ``root=True`` receives every external event; ``download`` lists the
    generators that receive this generator's returned key as their event."""
    if download is not None and (isinstance(download, (str, bytes)) or not isinstance(download, Iterable)):
        raise RecipeError(f"meta_task(download=...) must be a list of generators, got {download!r}")

    def wrap(f: Callable[[Any], Any]) -> MetaTask:
        if not callable(f):
            raise RecipeError(f"@meta_task must decorate a function, got {f!r}")
        return MetaTask(f, download or (), root)

    return wrap(fn) if fn is not None else wrap


@dataclass(frozen=True)
class GeneratorInfo:
    """A generator as the engine and the console see it."""

    name: str
    root: bool
    download: tuple[str, ...]


@dataclass
class Recipe:
    """A loaded, validated recipe."""

    path: Path
    """Absolute path of the recipe file."""
    module: ModuleType
    config: TinyOConfig
    generators: list[GeneratorInfo]
    tasks: dict[str, MetaTask]
    """Generators by name."""

    @property
    def name(self) -> str:
        """The recipe's file stem (``retail_dynamic_demo``)."""
        return self.path.stem

    @property
    def roots(self) -> list[MetaTask]:
        return [t for t in self.tasks.values() if t.root]


def module_name_for(path: Path) -> str:
    """The unique module name a recipe file is loaded under (the same in every process)."""
    digest = hashlib.blake2b(os.fsencode(path), digest_size=5).hexdigest()
    stem = "".join(c if c.isalnum() else "_" for c in path.stem)
    return f"{RECIPE_MODULE_PREFIX}{stem}_{digest}"


_import_lock = threading.RLock()


def import_recipe_module(path: str | Path) -> ModuleType:
    """Import the recipe file (once per process) and return its module; raise RecipeError on failure."""
    path = Path(path).expanduser().resolve()
    name = module_name_for(path)
    with _import_lock:
        existing = sys.modules.get(name)
        if existing is not None:
            return existing
        if not path.is_file():
            raise RecipeError(f"{path}: recipe file not found")
        folder = str(path.parent)
        if folder not in sys.path:
            sys.path.insert(0, folder)
        spec = importlib.util.spec_from_file_location(name, path)
        if spec is None or spec.loader is None:
            raise RecipeError(f"{path}: cannot be loaded as a Python module")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        try:
            spec.loader.exec_module(module)
        except SyntaxError as exc:
            del sys.modules[name]
            where = f"{exc.filename or path}:{exc.lineno}"
            raise RecipeError(f"{where}: syntax error: {exc.msg}") from exc
        except BaseException as exc:
            del sys.modules[name]
            if isinstance(exc, (KeyboardInterrupt, SystemExit)) and not isinstance(exc, SystemExit):
                raise
            raise RecipeError(_describe_load_error(path, exc)) from exc
        return module


def _describe_load_error(path: Path, exc: BaseException) -> str:
    line = "?"
    for frame in traceback.extract_tb(exc.__traceback__):
        if Path(frame.filename).resolve() == path:
            line = str(frame.lineno)
    if isinstance(exc, TypeError) and "TinyOConfig" in str(exc):
        fields = ", ".join(f for f in TinyOConfig.__dataclass_fields__)
        return f"{path}:{line}: config: {exc}; valid fields are: {fields}"
    if isinstance(exc, ConfigError):
        return f"{path}:{line}: config: {exc}"
    if isinstance(exc, RecipeError):
        return f"{path}:{line}: {exc}"
    if isinstance(exc, ImportError):
        return f"{path}:{line}: import error: {exc}"
    return f"{path}:{line}: {type(exc).__name__} while loading the recipe: {exc}"


def load_recipe(path: str | Path, *, allow_world_writable: bool = False) -> Recipe:
    """Load and validate a recipe file.

    A recipe is code, trusted like a Makefile; one that anybody on the machine may change is refused
    unless ``allow_world_writable``.
    """
    path = Path(path).expanduser().resolve()
    if not allow_world_writable:
        check_not_world_writable(path)
    module = import_recipe_module(path)
    config = getattr(module, "config", None)
    if config is None:
        raise ConfigError(f"{path}: no module-level `config = TinyOConfig(...)` found")
    if not isinstance(config, TinyOConfig):
        raise ConfigError(f"{path}: `config` must be a TinyOConfig, got {type(config).__name__}: {config!r}")
    try:
        config.validate()
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    tasks = _collect_generators(path, module)
    _validate_generator_graph(path, tasks)
    infos = [GeneratorInfo(t.name, t.root, tuple(d.name for d in t.download)) for t in tasks.values()]
    return Recipe(path=path, module=module, config=config, generators=infos, tasks=tasks)


def check_not_world_writable(path: Path) -> None:
    """Refuse a recipe file that every user of the machine may write."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise RecipeError(f"{path}: recipe file not found") from None
    if mode & stat.S_IWOTH:
        raise RecipeError(
            f"{path}: the recipe is world-writable, so anyone on this machine could change the code tinyo runs; "
            f"run `chmod o-w {path}` (or pass --allow-world-writable if you really mean it)"
        )


def _collect_generators(path: Path, module: ModuleType) -> dict[str, MetaTask]:
    found: dict[int, MetaTask] = {}
    for value in vars(module).values():
        if isinstance(value, MetaTask):
            found[id(value)] = value
    pending = list(found.values())
    while pending:
        task = pending.pop()
        for index, target in enumerate(task.download):
            if not isinstance(target, MetaTask):
                raise RecipeError(
                    f"{path}: generator {task.name!r}: download[{index}] must be a @meta_task generator, got {target!r}"
                )
            if id(target) not in found:
                found[id(target)] = target
                pending.append(target)
    if not found:
        raise RecipeError(f"{path}: defines no @meta_task generators, so no event would ever do anything")
    tasks: dict[str, MetaTask] = {}
    for task in found.values():
        if task.name in tasks:
            raise RecipeError(f"{path}: two generators are named {task.name!r}; generator names must be unique")
        tasks[task.name] = task
    return tasks


def _validate_generator_graph(path: Path, tasks: dict[str, MetaTask]) -> None:
    roots = [t for t in tasks.values() if t.root]
    if not roots:
        raise RecipeError(f"{path}: no generator has root=True, so no event would reach any generator")
    # cycle check (iterative DFS with colours)
    colour: dict[str, int] = {}
    for start in tasks.values():
        if colour.get(start.name):
            continue
        stack: list[tuple[MetaTask, int]] = [(start, 0)]
        trail: list[str] = []
        while stack:
            task, index = stack.pop()
            if index == 0:
                colour[task.name] = 1
                trail.append(task.name)
            if index < len(task.download):
                stack.append((task, index + 1))
                child = task.download[index]
                state = colour.get(child.name, 0)
                if state == 1:
                    cycle = trail[trail.index(child.name):] + [child.name]
                    raise RecipeError(f"{path}: generator cycle through download: {' -> '.join(cycle)}")
                if state == 0:
                    stack.append((child, 0))
            else:
                colour[task.name] = 2
                trail.pop()
    reachable: set[str] = set()
    frontier = list(roots)
    while frontier:
        task = frontier.pop()
        if task.name in reachable:
            continue
        reachable.add(task.name)
        frontier.extend(task.download)
    unreachable = sorted(set(tasks) - reachable)
    if unreachable:
        raise RecipeError(
            f"{path}: generator(s) {unreachable} can never run: they are not root=True and no generator "
            "reachable from a root lists them in download"
        )


# ---------------------------------------------------------------- op addressing


class OpResolver:
    """Turns op objects into ``module:qualname`` references and back (cached)."""

    def __init__(self, recipe_module: ModuleType | None, recipe_path: Path | None) -> None:
        self.recipe_module = recipe_module
        self.recipe_path = recipe_path
        self._refs: dict[int, tuple[Any, str]] = {}
        self._objs: dict[str, Any] = {}

    def ref(self, fn: Any) -> str:
        """The importable reference of ``fn``; OpNotImportable if a worker could not find it."""
        cached = self._refs.get(id(fn))
        if cached is not None and cached[0] is fn:
            return cached[1]
        ref = self._compute_ref(fn)
        self._refs[id(fn)] = (fn, ref)
        self._objs.setdefault(ref, fn)
        return ref

    def _compute_ref(self, fn: Any) -> str:
        module_name = getattr(fn, "__module__", None)
        qualname = getattr(fn, "__qualname__", None)
        if isinstance(qualname, str) and isinstance(module_name, str) and not _is_instance_of_class(fn):
            if "<lambda>" in qualname or "<locals>" in qualname:
                raise OpNotImportable(
                    f"op {qualname!r} is a lambda or a nested function: a worker process cannot import it; "
                    "define it at module level in the recipe (or use execution=Execution.THREADS/INLINE)"
                )
            mod_ref = RECIPE_REF if self._is_recipe_module(module_name) else module_name
            try:
                found = self._lookup(mod_ref, qualname)
            except Exception:
                found = None
            if found is fn or getattr(found, "__wrapped__", None) is fn:
                return f"{mod_ref}:{qualname}"
        # objects (e.g. data flows) held in a module-level variable of the recipe
        if self.recipe_module is not None:
            for name, value in vars(self.recipe_module).items():
                if value is fn:
                    return f"{RECIPE_REF}:{name}"
        label = qualname or getattr(fn, "name", None) or repr(fn)
        raise OpNotImportable(
            f"op {label!r} cannot be imported by a worker: it must be a module-level function or a "
            "module-level variable of the recipe"
        )

    def _is_recipe_module(self, module_name: str) -> bool:
        return self.recipe_module is not None and module_name == self.recipe_module.__name__

    def resolve(self, ref: str) -> Any:
        """The object behind ``ref`` (imports the module if needed)."""
        obj = self._objs.get(ref)
        if obj is None:
            module_ref, _, qualname = ref.partition(":")
            obj = self._lookup(module_ref, qualname)
            self._objs[ref] = obj
        return obj

    def _lookup(self, module_ref: str, qualname: str) -> Any:
        if module_ref == RECIPE_REF:
            if self.recipe_module is None:
                if self.recipe_path is None:
                    raise OpNotImportable(f"op {qualname!r} belongs to a recipe, but no recipe path is known")
                self.recipe_module = import_recipe_module(self.recipe_path)
            obj: Any = self.recipe_module
        else:
            obj = importlib.import_module(module_ref)
        for part in qualname.split("."):
            obj = getattr(obj, part)
        return obj


def _is_instance_of_class(obj: Any) -> bool:
    """True for callable instances (e.g. a Flow object), as opposed to functions, methods and classes."""
    return not (inspect.isfunction(obj) or inspect.ismethod(obj) or inspect.isclass(obj) or inspect.isbuiltin(obj))
