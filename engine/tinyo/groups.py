"""Provides document groups: similar names (``print.*``) counted per state, kept up to date by the engine.

The console shows the document DAG as groups with a count per state. The engine keeps those counts
from the state changes it makes (old state out, new state in), so neither side has to hold every
document in memory: the counts are O(number of groups), and a group's members are read from the
store page by page when someone looks. Pure Python, no I/O.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

DOC_STATES = ("failed", "running", "queued", "waiting", "stale", "cancelled", "never built", "missing",
              "up to date", "source")
"""A document's states, most urgent first: that of its producing DES, or source/missing for an input."""

DES_TO_DOC = {
    "new": "never built",
    "waiting": "waiting",
    "stale": "stale",
    "queued": "queued",
    "running": "running",
    "retry": "waiting",
    "ok": "up to date",
    "failed": "failed",
    "cancelled": "cancelled",
}
"""How a producing DES's state reads on the documents it makes."""

MAX_GROUPS = 2000
"""Past this many name patterns, a new pattern is folded into a coarser one (its folder, or its first
word), so hostile or random names cannot make the groups themselves unbounded."""

KEY_CACHE_MAX = 8192
"""Names whose pattern is remembered (a document moves through several states in a short time)."""

_NUMBERS = re.compile(r"\d+(?:[._:-]\d+)*")
_WORD = re.compile(r"^[^._:/-]*")


def group_key(name: str) -> str:
    """The pattern that groups similar document names: digit runs become ``*``.

    ``print.20241027`` and ``print.20241028`` share ``print.*``; ``/d/fact_file_20241027.csv``
    gives ``/d/fact_file_*.csv``; timer documents ``ten_seconds_1730000010.0`` give ``ten_seconds_*``.
    In a path only the file name is folded (``/srv/run2/a_1.csv`` gives ``/srv/run2/a_*.csv``).
    """
    if name.startswith("/"):
        folder, _, base = name.rpartition("/")
        return f"{folder}/{_NUMBERS.sub('*', base)}"
    head, slash, tail = name.rpartition("/")
    if not slash:
        return _NUMBERS.sub("*", name)
    # no fold spans a "/": the part before the last one is folded once for the many names that share it
    # (``done /srv/in/a_1.csv``, ``done /srv/in/a_2.csv``: the regex costs per character)
    folded = _HEADS.get(head)
    if folded is None:
        if len(_HEADS) >= HEADS_MAX:
            _HEADS.clear()
        folded = _HEADS[head] = _NUMBERS.sub("*", head)
    return f"{folded}/{_NUMBERS.sub('*', tail)}"


HEADS_MAX = 1024
"""Name heads (the part before the last "/") whose folded form ``group_key`` keeps."""
_HEADS: dict[str, str] = {}


def coarse_key(name: str) -> str:
    """The fallback pattern once there are too many: the folder of a path, or the first word of a name."""
    if name.startswith("/"):
        return name.rpartition("/")[0] + "/…"
    word = _WORD.match(name)
    return (word.group(0) if word else "") + "…"


def doc_state(des_state: str | None, has_version: bool) -> str:
    """A document's state from its producer's state (None: no producer)."""
    if des_state is not None:
        return DES_TO_DOC.get(des_state, "never built")
    return "source" if has_version else "missing"


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """A group as the console shows it: its pattern, how many documents, the first one, counts per state."""

    pattern: str
    count: int
    first: str
    states: tuple[tuple[str, int], ...]

    def state_count(self, state: str) -> int:
        for name, n in self.states:
            if name == state:
                return n
        return 0


@dataclass(slots=True)
class _Group:
    count: int = 0
    first: str = ""
    states: Counter[str] = field(default_factory=Counter)


class Groups:
    """Document counts per name pattern and state, moved by the engine as states change."""

    def __init__(self, max_groups: int = MAX_GROUPS) -> None:
        self.max_groups = max_groups
        self._groups: dict[str, _Group] = {}
        self.touched: set[str] = set()
        self._keys: dict[str, str] = {}  # name -> pattern, for names whose state moves often (bounded)

    def __len__(self) -> int:
        return len(self._groups)

    def key(self, name: str) -> str:
        """The group of a document already counted, or the one it would join now.

        Fine patterns are never removed, so a name's group is the same every time it is asked for
        (and after a restart, which rebuilds the same patterns from the store)."""
        key = self._keys.get(name)
        if key is not None:
            return key
        fine = group_key(name)
        key = fine if fine in self._groups or len(self._groups) < self.max_groups else coarse_key(name)
        if key in self._groups:  # a pattern that exists is the name's for good
            if len(self._keys) >= KEY_CACHE_MAX:
                self._keys.clear()
            self._keys[name] = key
        return key

    def join(self, name: str, state: str, pattern: str | None = None) -> str:
        """Count a document new to the DAG; returns its group."""
        key = pattern or self.key(name)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = _Group(first=name)
        elif name < group.first:
            group.first = name
        group.count += 1
        group.states[state] += 1
        self.touched.add(key)
        return key

    def join_many(self, joins: list[tuple[str, str]]) -> list[str]:
        """Count documents new to the DAG, as (name, state): the counts, firsts and groups ``join`` gives name
        by name, each group's counts moved once (a batch's new files and targets mostly share a few groups).
        Returns their groups, in order."""
        keys, groups = self._keys, self._groups
        out: list[str] = []
        add = out.append
        counts: dict[tuple[str, str], int] = {}
        max_groups = self.max_groups
        for name, state in joins:
            key = keys.get(name)
            if key is None:  # ``key``, for a name not cached (most names a batch joins are new)
                fine = group_key(name)
                key = fine if fine in groups or len(groups) < max_groups else coarse_key(name)
                if key in groups:
                    if len(keys) >= KEY_CACHE_MAX:
                        keys.clear()
                    keys[name] = key
            group = groups.get(key)
            if group is None:  # made now: the next name's key sees it (as ``join`` name by name would)
                group = groups[key] = _Group(first=name)
            elif name < group.first:
                group.first = name
            add(key)
            pair = (key, state)
            counts[pair] = counts.get(pair, 0) + 1
        touched = self.touched
        for (key, state), n in counts.items():
            group = groups[key]
            group.count += n
            group.states[state] += n
            touched.add(key)
        return out

    def move(self, name: str, old: str, new: str) -> None:
        """A counted document changed state."""
        if old == new:
            return
        key = self.key(name)
        group = self._groups.get(key)
        if group is None:
            return
        group.states[old] -= 1
        if group.states[old] <= 0:
            del group.states[old]
        group.states[new] += 1
        self.touched.add(key)

    def move_many(self, moves: Iterable[tuple[Iterable[str], str, str]], states: Mapping[str, str] | None = None
                  ) -> None:
        """Counted documents changed state, as (names, old, new): the moves of one settle, together (as
        ``move`` for each name). ``states``: what the moves' states read as on the documents (``DES_TO_DOC``
        for the moves of their producers), applied once per group and move instead of once per move."""
        # counted per (group, old, new) first, then netted per group and state: a settle moves many documents
        # of few groups between few states (a burst's targets: thousands of moves, a few sums). Netted, a
        # state a document passes through within the call is never counted below zero on the way.
        keys, key_of = self._keys, self.key
        counts: dict[tuple[str, str, str], int] = {}
        get = counts.get
        for names, old, new in moves:
            if old == new:
                continue
            for name in names:
                move = (keys.get(name) or key_of(name), old, new)
                counts[move] = get(move, 0) + 1
        if states is not None:
            read: dict[tuple[str, str, str], int] = {}
            for (key, old, new), n in counts.items():
                old, new = states[old], states[new]
                if old != new:
                    read[(key, old, new)] = read.get((key, old, new), 0) + n
            counts = read
        if not counts:
            return
        net: dict[str, dict[str, int]] = {}
        for (key, old, new), n in counts.items():
            deltas = net.get(key)
            if deltas is None:
                deltas = net[key] = {}
            deltas[old] = deltas.get(old, 0) - n
            deltas[new] = deltas.get(new, 0) + n
        groups, touched = self._groups, self.touched
        for key, deltas in net.items():
            group = groups.get(key)
            if group is None:
                continue
            counts_by_state = group.states
            for state, n in deltas.items():
                if n:
                    left = counts_by_state.get(state, 0) + n
                    if left > 0:
                        counts_by_state[state] = left
                    else:
                        counts_by_state.pop(state, None)
            touched.add(key)

    def summary(self, pattern: str) -> GroupSummary | None:
        group = self._groups.get(pattern)
        if group is None:
            return None
        counts = group.states
        states = tuple([(s, n) for s in DOC_STATES if (n := counts.get(s, 0)) > 0])
        return GroupSummary(pattern, group.count, group.first, states)

    def summaries(self) -> list[GroupSummary]:
        """Every group, in pattern order."""
        return [s for s in (self.summary(p) for p in sorted(self._groups)) if s is not None]

    def take_touched(self) -> tuple[GroupSummary, ...]:
        """The groups that changed since the last call."""
        if not self.touched:
            return ()
        touched, self.touched = self.touched, set()
        summary = self.summary
        if len(touched) == 1:
            one = summary(next(iter(touched)))
            return (one,) if one is not None else ()
        return tuple([s for p in sorted(touched) if (s := summary(p)) is not None])
