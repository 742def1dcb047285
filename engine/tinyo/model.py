"""Provides the recipe data model: Config, DES, Execution and TinyOConfig."""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from .errors import ConfigError
from .names import digest_bytes, name_problem

CatchUp = Literal["skip", "latest", "all"]


class Config(Mapping[str, Any]):
    """An immutable mapping passed to an op as ``context['config']``; hashable by value."""

    __slots__ = ("_data", "_hash", "_text", "_plain")

    def __init__(self, data: Mapping[str, Any] | Iterable[tuple[str, Any]] | None = None, **kw: Any) -> None:
        merged = dict(data or {})
        merged.update(kw)
        self._data = merged
        self._hash: int | None = None
        self._text: str | None = None
        self._plain: bool | None = None

    def canonical(self) -> str:
        """``canonical(self)``, worked out once (a recipe passes the same Config to many DES)."""
        text = self._text
        if text is None:
            text = self._text = canonical(self._data) if self._data else "{}"
        return text

    def value_key(self) -> str | None:
        """``canonical(self)`` when every key is a string and every value a plain scalar (str, int, float,
        bool, None, bytes: immutable, and told apart by their text), else None. Two Configs with the same
        value key are interchangeable (a generator that makes a new ``Config({})`` per DES makes equal ones)."""
        plain = self._plain
        if plain:
            text = self._text
            if text is not None:  # asked per DES (its ops' cache key): no ``canonical`` call once it is known
                return text
        elif plain is None:
            data = self._data
            if not data:  # ``Config({})`` (a generator's op without settings, often one per DES): no generator
                self._plain, self._text = True, "{}"
                return "{}"
            plain = self._plain = all(type(k) is str and type(v) in _PLAIN for k, v in data.items())
        return self.canonical() if plain else None

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __hash__(self) -> int:
        if self._hash is None:
            self._hash = hash(self.canonical())
        return self._hash

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Config):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"Config({self._data!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Config, (self._data,))

    def to_dict(self) -> dict[str, Any]:
        """A plain-dict copy."""
        return dict(self._data)


_PLAIN = frozenset([str, int, float, bool, type(None), bytes])


def canonical(value: Any) -> str:
    """A stable text form of a value, equal for equal values across processes and restarts."""
    cls = value.__class__
    if cls is str or cls is int or cls is float or cls is bool or value is None:
        return repr(value)  # the common values, before the ABC checks below
    if isinstance(value, Config):
        return value.canonical()
    if isinstance(value, Mapping):
        items = sorted((canonical(k), canonical(v)) for k, v in value.items())
        return "{" + ",".join(f"{k}:{v}" for k, v in items) + "}"
    if isinstance(value, (set, frozenset)):
        return "set(" + ",".join(sorted(canonical(v) for v in value)) + ")"
    if isinstance(value, (list, tuple)):
        opener, closer = ("[", "]") if isinstance(value, list) else ("(", ")")
        return opener + ",".join(canonical(v) for v in value) + closer
    if isinstance(value, (str, int, float, bool, type(None), bytes, datetime, timedelta)):
        return repr(value)
    name = getattr(value, "__qualname__", None)
    if name is not None:
        return f"<{getattr(value, '__module__', '?')}.{name}>"
    return f"{type(value).__qualname__}({value!r})"


def op_name(fn: Any) -> str:
    """The display name of an op: its qualified name, or its ``name`` attribute for flows."""
    qual = getattr(fn, "__qualname__", None)
    if isinstance(qual, str):
        return qual
    name = getattr(fn, "name", None)
    if isinstance(name, str):
        return name
    return type(fn).__qualname__


OpSpec = tuple[Callable[[dict[str, Any]], Any], Config]


class DES:
    """A Document Execution Spec: ops that turn the ``deps`` documents into the ``targs`` documents.

    Immutable and hashable. Equal deps, targs, op names and Config values give an equal DES and the
    same ``id`` in every process and after every restart.
    """

    __slots__ = ("deps", "targs", "ops", "_id")

    deps: frozenset[str]
    """Documents this DES reads."""
    targs: frozenset[str]
    """Documents this DES produces."""
    ops: tuple[OpSpec, ...]
    """``(callable, Config)`` pairs, run in order in one worker."""

    def __init__(self, deps: Iterable[str], targs: Iterable[str], ops: Iterable[OpSpec]) -> None:
        if (deps.__class__ is frozenset and targs.__class__ is frozenset and ops.__class__ is list
                and len(deps) == 1 and len(targs) == 1 and len(ops) == 1):
            # the common shape (one DES per file): one ASCII name read, one made, one op as a (function,
            # Config) pair; an ASCII name has no ``name_problem``. Anything else takes the checks below.
            (dep,), (targ,), (item,) = deps, targs, ops
            if (dep.__class__ is str and targ.__class__ is str and dep and targ and dep.isascii() and targ.isascii()
                    and item.__class__ is tuple and len(item) == 2 and item[1].__class__ is Config
                    and item[0].__class__ is _FUNCTION):
                _SET_DEPS(self, deps)
                _SET_TARGS(self, targs)
                _SET_OPS(self, (item,))
                _SET_ID(self, None)
                return
        deps_set = _doc_set("deps", deps)
        targs_set = _doc_set("targs", targs)
        op_list: list[OpSpec] = []
        for index, item in enumerate(ops):
            if not (isinstance(item, tuple) and len(item) == 2):
                raise TypeError(
                    f"DES ops[{index}] must be a (callable, Config) pair, got {type(item).__name__}: {item!r}"
                )
            fn, cfg = item
            if not callable(fn):
                raise TypeError(f"DES ops[{index}][0] must be callable, got {fn!r}")
            if cfg.__class__ is not Config:  # a Config passes without the Mapping ABC's check (per op, per DES)
                if not isinstance(cfg, Mapping):
                    raise TypeError(f"DES ops[{index}][1] must be a Config, got {type(cfg).__name__}: {cfg!r}")
                if not isinstance(cfg, Config):
                    cfg = Config(cfg)
            op_list.append((fn, cfg))
        if not targs_set:
            raise TypeError("DES targs must name at least one document")
        # each slot through its own descriptor (``object.__setattr__`` looks the name up first; one DES per file)
        _SET_DEPS(self, deps_set)
        _SET_TARGS(self, targs_set)
        _SET_OPS(self, tuple(op_list))
        _SET_ID(self, None)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("DES is immutable")

    @property
    def id(self) -> str:
        """A stable 16-hex-digit identity derived from deps, targs, op names and Config values."""
        des_id = self._id
        if des_id is None:
            deps, targs, ops = self.deps, self.targs, self.ops
            if len(deps) == 1 and len(targs) == 1 and len(ops) == 1:  # as below, for one of each
                (dep,), (targ,), ((fn, cfg),) = deps, targs, ops
                # concatenation, not an f-string: a str subclass's name (a str Enum member) counts by its text
                text = "deps=" + dep + "|targs=" + targ + "|" + _op_text(fn) + cfg.canonical()
                des_id = hashlib.blake2b(digest_bytes(text), digest_size=8).hexdigest()
                _SET_ID(self, des_id)
                return des_id
            # a one-item set's name joined is the name itself: no sort (a DES mostly reads and makes one)
            text = "|".join([
                "deps=" + ("\x1f".join(sorted(deps)) if len(deps) > 1 else "".join(deps)),
                "targs=" + ("\x1f".join(sorted(targs)) if len(targs) > 1 else "".join(targs)),
                *[_op_text(fn) + cfg.canonical() for fn, cfg in self.ops],
            ])
            des_id = hashlib.blake2b(digest_bytes(text), digest_size=8).hexdigest()
            _SET_ID(self, des_id)
        return des_id

    def __hash__(self) -> int:
        return hash(self.id)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DES) and other.id == self.id

    def __repr__(self) -> str:
        ops = ", ".join(op_name(fn) for fn, _ in self.ops)
        return f"DES(deps={sorted(self.deps)}, targs={sorted(self.targs)}, ops=[{ops}])"


_SET_DEPS, _SET_TARGS, _SET_OPS, _SET_ID = (DES.deps.__set__, DES.targs.__set__,  # type: ignore[attr-defined]
                                            DES.ops.__set__, DES._id.__set__)  # type: ignore[attr-defined]


_FUNCTION = type(op_name)
_OP_TEXT: dict[int, tuple[Any, str]] = {}
"""An op's ``op=module:name:`` part of the DES id text, per op object (held with it, so no id is reused while
it is cached): a generator passes the same few functions to every DES it makes."""
OP_TEXT_MAX = 256


def _op_text(fn: Any) -> str:
    hit = _OP_TEXT.get(id(fn))
    if hit is not None and hit[0] is fn:
        return hit[1]
    text = f"op={op_module(fn)}:{op_name(fn)}:"
    if len(_OP_TEXT) >= OP_TEXT_MAX:
        _OP_TEXT.clear()
    _OP_TEXT[id(fn)] = (fn, text)
    return text


def op_module(fn: Any) -> str:
    """The module part of an op's identity; recipe modules all map to ``<recipe>`` so ids are stable."""
    module = getattr(fn, "__module__", None) or type(fn).__module__
    if module.startswith(RECIPE_MODULE_PREFIX) or module == "__main__":
        return "<recipe>"
    return module


RECIPE_MODULE_PREFIX = "tinyo_recipe_"


def _doc_set(field_name: str, values: Iterable[str]) -> frozenset[str]:
    if isinstance(values, str):
        raise TypeError(f"DES {field_name} must be a set of document names, not the string {values!r}")
    result = frozenset(values)
    for value in result:
        if value.__class__ is str and value and value.isascii():
            continue  # most names: nothing more to look at (``name_problem`` passes every ASCII name)
        if not isinstance(value, str) or not value:
            raise TypeError(f"DES {field_name} must hold non-empty strings, got {value!r}")
        problem = name_problem(value)
        if problem is not None:
            raise TypeError(f"DES {field_name}: the name {value!r} {problem}")
    return result


class Execution(enum.Enum):
    """Where ops run."""

    PROCESSES = "processes"
    """A pool of worker processes (default)."""
    THREADS = "threads"
    """A pool of threads in the orchestrator process."""
    INLINE = "inline"
    """In the orchestrator loop itself, one at a time (for debugging)."""
    DASK = "dask"
    """A dask.distributed cluster at ``executor_address``."""


@dataclass(frozen=True)
class TimerSpec:
    """A grid-aligned timer: ticks at ``initial + k * interval``."""

    name: str
    initial: datetime
    interval: timedelta


DEFAULT_IGNORE = (
    ".*.??????",  # rsync's copy in progress, .NAME.XXXXXX (renamed to NAME when complete)
    "sed??????",  # sed -i's new file, sedXXXXXX (renamed over the original)
    ".*.sw[a-p]", ".*.swx", "4913", "*~",  # vim's swap files and its write test; editors' backup copies
    ".#*", "#*#",  # emacs's lock and auto-save files
    "*.part", "*.crdownload", "*.tmp",  # downloads in progress (Firefox, wget, Chrome), temporary files
    ".~lock.*#", ".DS_Store", "._*",  # LibreOffice's lock files, macOS's folder and resource-fork files
)
"""File names a watched folder's files are not taken in for, by default (``TinyOConfig.ignore``): the
temporary files of well-known tools, each renamed or deleted once the tool is done."""


BATCH_EVENTS = 30
"""Events per batch when the recipe leaves ``maxevents`` to the engine."""


@dataclass
class TinyOConfig:
    """The recipe's ``config``: where state lives, what is watched, and how ops run."""

    sql_conn: str = "tinyo.db"
    """SQLite path (relative to the working directory) or ``:memory:``."""
    dirs: list[str] = field(default_factory=list)
    """Folders watched for file events; created if missing."""
    maxevents: int | None = None
    """The most events taken from intake in one orchestrator cycle before ready work is dispatched. None
    (the default) lets the engine choose: batches of ``BATCH_EVENTS``, several in one cycle while a backlog
    waits (one commit for all of them), as long as the cycle has spent under 20 ms on them."""
    max_workers: int = 2
    """Size of the worker pool."""
    execution: Execution = Execution.PROCESSES
    """Where ops run."""
    timers: list[Any] = field(default_factory=list)
    """``{'name', 'initial': datetime, 'interval': timedelta}`` dicts (or TimerSpec)."""
    retries: int = 0
    """How many times a failed DES is retried before it stays failed."""
    retry_delay: float = 1.0
    """Seconds before the first retry; doubled for every further one (exponential backoff)."""
    retry_max_delay: float = 300.0
    """Upper bound on the backoff delay, in seconds."""
    op_timeout: float | None = None
    """Seconds a DES's ops may run before the worker is stopped and the run fails; None: no limit."""
    debounce: float = 0.2
    """Seconds a file must stay quiet before its event, where no close can be seen (a hard link, a file a
    scan finds being written); a file written and closed is taken in at its close."""
    settle: float = 0.01
    """Seconds without a new event after which the events that arrived together go to the generators as
    one batch (so ``cp a b c`` runs a DES reading all three once); restarts with each new event."""
    settle_max: float = 0.2
    """The most seconds a batch waits for ``settle`` quiet (it also goes once ``maxevents`` are waiting)."""
    recursive: bool = False
    """Watch sub-folders of ``dirs`` too."""
    ignore: list[str] = field(default_factory=lambda: list(DEFAULT_IGNORE))
    """Glob patterns (``fnmatch``, case-sensitive) of file names in ``dirs`` that are never taken in; matched
    against the name alone, not its folder. Default: :data:`DEFAULT_IGNORE`, the temporary files of rsync,
    ``sed -i``, editors and browsers; ``[*DEFAULT_IGNORE, "*.bak"]`` adds to it, ``[]`` takes every file."""
    catch_up: CatchUp = "skip"
    """Timer ticks missed while down: ``skip`` them, fire the ``latest`` one, or ``all`` (bounded)."""
    catch_up_limit: int = 1000
    """With ``catch_up='all'``, the most missed ticks fired per timer."""
    rescan_interval: float | None = None
    """Seconds between periodic rescans of ``dirs`` (for file systems without inotify); None: off."""
    hash_files: bool = True
    """Hash file content to decide a new version; False trusts (mtime_ns, size) alone."""
    generator_timeout: float = 10.0
    """Seconds a batch of generator calls may take before it is reported as hung."""
    executor_address: str | None = None
    """Address of a distributed scheduler (``Execution.DASK``)."""
    retention_events: int | None = None
    """Keep at most this many processed events in the store (None: keep all)."""
    retention_runs: int | None = None
    """Keep at most this many finished runs in the store (None: keep all)."""

    @property
    def batch_events(self) -> int:
        """Events the generators get in one batch: ``maxevents``, or ``BATCH_EVENTS`` when the engine chooses."""
        return self.maxevents or BATCH_EVENTS

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Check every field's type and range; raise ConfigError naming the field and the value."""
        _check(isinstance(self.sql_conn, str) and self.sql_conn, "sql_conn", self.sql_conn, "a non-empty path string")
        if isinstance(self.dirs, (str, bytes)) or not isinstance(self.dirs, (list, tuple)):
            raise ConfigError(f"TinyOConfig.dirs must be a list of folder paths, got {self.dirs!r}")
        for d in self.dirs:
            _check(isinstance(d, str) and d, "dirs", d, "folder path strings")
        self.dirs = list(self.dirs)
        _check(self.maxevents is None or (_is_int(self.maxevents) and self.maxevents >= 1), "maxevents",
               self.maxevents, "an int >= 1 (or None: the engine chooses)")
        _check(_is_int(self.max_workers) and self.max_workers >= 1, "max_workers", self.max_workers, "an int >= 1")
        _check(isinstance(self.execution, Execution), "execution", self.execution,
               "an Execution member (Execution.PROCESSES, THREADS, INLINE or DASK)")
        _check(_is_int(self.retries) and self.retries >= 0, "retries", self.retries, "an int >= 0")
        for name in ("retry_delay", "retry_max_delay", "debounce", "generator_timeout", "settle", "settle_max"):
            value = getattr(self, name)
            _check(_is_num(value) and value >= 0, name, value, "a number of seconds >= 0")
        for name in ("op_timeout", "rescan_interval"):
            value = getattr(self, name)
            _check(value is None or (_is_num(value) and value > 0), name, value, "None or seconds > 0")
        _check(isinstance(self.recursive, bool), "recursive", self.recursive, "True or False")
        if isinstance(self.ignore, (str, bytes)) or not isinstance(self.ignore, (list, tuple)):
            raise ConfigError(f"TinyOConfig.ignore must be a list of glob patterns, got {self.ignore!r}")
        for pattern in self.ignore:
            _check(isinstance(pattern, str) and pattern and "/" not in pattern, "ignore", pattern,
                   "file name patterns (non-empty strings without '/')")
        self.ignore = list(self.ignore)
        _check(isinstance(self.hash_files, bool), "hash_files", self.hash_files, "True or False")
        _check(self.catch_up in ("skip", "latest", "all"), "catch_up", self.catch_up, "'skip', 'latest' or 'all'")
        _check(_is_int(self.catch_up_limit) and self.catch_up_limit >= 1, "catch_up_limit", self.catch_up_limit,
               "an int >= 1")
        for name in ("retention_events", "retention_runs"):
            value = getattr(self, name)
            _check(value is None or (_is_int(value) and value >= 1), name, value, "None or an int >= 1")
        _check(self.executor_address is None or isinstance(self.executor_address, str), "executor_address",
               self.executor_address, "None or an address string like 'tcp://host:8786'")
        if not isinstance(self.timers, (list, tuple)):
            raise ConfigError(f"TinyOConfig.timers must be a list of timer dicts, got {self.timers!r}")
        self.timers = [_timer_spec(i, t) for i, t in enumerate(self.timers)]
        names = [t.name for t in self.timers]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"TinyOConfig.timers: timer names must be unique, {dupes} appear more than once")

    @property
    def timer_specs(self) -> list[TimerSpec]:
        """The timers, normalised."""
        return list(self.timers)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_num(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check(ok: Any, name: str, value: Any, expected: str) -> None:
    if not ok:
        raise ConfigError(f"TinyOConfig.{name} must be {expected}, got {value!r}")


def _timer_spec(index: int, value: Any) -> TimerSpec:
    if isinstance(value, TimerSpec):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"TinyOConfig.timers[{index}] must be a dict with name, initial, interval; got {value!r}")
    unknown = sorted(set(value) - {"name", "initial", "interval"})
    if unknown:
        raise ConfigError(f"TinyOConfig.timers[{index}] has unknown keys {unknown}; expected name, initial, interval")
    name, initial, interval = value.get("name"), value.get("initial"), value.get("interval")
    if not isinstance(name, str) or not name:
        raise ConfigError(f"TinyOConfig.timers[{index}]['name'] must be a non-empty string, got {name!r}")
    if not isinstance(initial, datetime):
        raise ConfigError(f"timer {name!r}: 'initial' must be a datetime, got {initial!r}")
    if not isinstance(interval, timedelta) or interval.total_seconds() <= 0:
        raise ConfigError(f"timer {name!r}: 'interval' must be a positive timedelta, got {interval!r}")
    return TimerSpec(name, initial, interval)
