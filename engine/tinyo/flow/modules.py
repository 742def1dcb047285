"""Provides module look-ups across processes: import by name, or by file for recipes loaded by path."""

from __future__ import annotations

import importlib
import importlib.util
import io
import os
import pickle
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from types import ModuleType
from typing import Any

worker_importing: str | None = None
"""While a step's worker process imports the modules its step needs: the file it is importing. A module
that runs a flow with process instances when imported (a script without an ``if __name__ ==
"__main__":`` guard) would otherwise start workers that import it again, without end."""


@contextmanager
def importing_in_worker(what: str) -> Iterator[None]:
    """Mark the worker process as importing ``what`` (see ``worker_importing``)."""
    global worker_importing
    worker_importing = what
    try:
        yield
    finally:
        worker_importing = None


def import_module_or_file(name: str, file: str | None) -> ModuleType:
    """The module ``name``: imported normally, or loaded from ``file`` under that name.

    Recipes are loaded by path under a generated name (``tinyo_recipe_...``) that no import can
    find, so a worker process loads the same file under the same name.
    """
    module = sys.modules.get(name)
    if module is not None:
        return module
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name != name.split(".")[0] and exc.name != name:
            raise
        if not file or not os.path.exists(file):
            raise
    spec = importlib.util.spec_from_file_location(name, file)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"cannot load module {name!r} from {file!r}", name=name)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    return module


class _RecordingPickler(pickle.Pickler):
    """A pickler that notes the module of every function and class it pickles by reference."""

    def __init__(self, file: io.BytesIO) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.modules: dict[str, str | None] = {}

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, type) or callable(obj) and hasattr(obj, "__qualname__"):
            module = getattr(obj, "__module__", None)
            if isinstance(module, str) and module not in self.modules and module != "builtins":
                mod = sys.modules.get(module)
                self.modules[module] = getattr(mod, "__file__", None)
        return NotImplemented


def dumps_with_modules(obj: Any) -> tuple[bytes, dict[str, str | None]]:
    """Pickle ``obj`` and list the modules (name -> file) a worker must import to unpickle it."""
    buf = io.BytesIO()
    pickler = _RecordingPickler(buf)
    pickler.dump(obj)
    return buf.getvalue(), pickler.modules


def loads_with_modules(data: bytes, modules: dict[str, str | None]) -> Any:
    """Import ``modules`` (by name, else by file) and unpickle ``data``."""
    for name, file in modules.items():
        if name == "__main__":
            continue
        import_module_or_file(name, file)
    return pickle.loads(data)
