"""JSON lines made from rows (``control.jsonrows``, what ``tinyo run --json`` and ``tinyo events --json`` print):
byte for byte each row's keyed dict as ``json.dumps`` writes it, whatever the values (containers of many items,
keys that are not strings, NaN, lone surrogates, the separator the encoding splits at, shared and odd times)."""

from __future__ import annotations

import enum
import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tinyo.control import factwire, jsonrows
from tinyo.control.factwire import KEYS, FactReader
from tinyo.names import json_escaped


def _line(keys: tuple[str, ...], row: Any) -> str:
    """The line of ``row``: its keyed dict (keys zipped with its values), compact, what JSON cannot carry shown."""
    return json_escaped(json.dumps(dict(zip(keys, row)), ensure_ascii=False, separators=(",", ":"), default=str)) + "\n"


def _expected(rows: list[Any], keys: dict[str, tuple[str, ...]] = KEYS) -> str:
    return "".join(_line(keys[row[0]], row) for row in rows)


class Level(enum.IntEnum):
    HIGH = 3


class Name(str):
    pass


TEXT = st.text(alphabet=st.sampled_from(['a', ',', '"', '\\', '\x00', '\n', '%', 'é', '\udcff', '}', '{', ':', '[']),
               max_size=12) | st.just('x},{"type":"y')
SCALAR = (st.none() | st.booleans() | st.integers(-2 ** 70, 2 ** 70) | st.floats(allow_nan=True) | TEXT
          | st.sampled_from([Level.HIGH, Name("sub"), Path("/not/json"), b"bytes", -0.0, math.inf]))
KEY = TEXT | st.integers(0, 3) | st.none() | st.floats(allow_nan=False)
VALUE = st.recursive(SCALAR, lambda inner: st.lists(inner, max_size=3) | st.tuples(inner, inner)
                     | st.frozensets(TEXT, max_size=3) | st.dictionaries(KEY, inner, max_size=3), max_leaves=6)
TIMES = st.sampled_from([1.5, 1796638859.9150193, 0.0, -0.0, math.nan, 1, 1.0, True, None, "t"])


@st.composite
def batches(draw: Any) -> list[Any]:
    """Rows of this engine's kinds with values of any type; their times drawn from a few (shared, as a burst's are)."""
    times = draw(st.lists(TIMES, min_size=1, max_size=3))
    rows = []
    for kind in draw(st.lists(st.sampled_from(sorted(KEYS)), max_size=12)):
        values = draw(st.lists(VALUE, min_size=len(KEYS[kind]) - 2, max_size=len(KEYS[kind]) - 2))
        row = [kind, draw(st.sampled_from(times)), *values]
        rows.append(tuple(row) if draw(st.booleans()) else row)
    return rows


@settings(max_examples=400, deadline=None)
@given(batches())
def test_rows_make_the_lines_json_dumps_makes_of_their_dicts(rows):
    assert factwire.rows_json_text(rows) == _expected(rows)
    assert FactReader().json_lines([list(r) for r in rows if r[0] not in factwire.TEXTS]) == \
        _expected([r for r in rows if r[0] not in factwire.TEXTS]).encode()


def test_a_long_batch_of_a_bursts_facts_with_a_few_odd_rows_among_them():
    rows: list[Any] = []
    for i in range(900):  # several chunks, times shared by a few rows each
        ts = 1796638859.0 + (i // 5) / 7
        rows += [("event_received", ts, i, f"/in/f{i}.csv", "file", ts + 0.5, 1, 0),
                 ["des_registered", ts, "%040x" % i, [f"/in/f{i}.csv"], ["out %d" % i], ("load",), "g", "e", False]]
    rows[700] = ["des_registered", 1.0, "d", ["a", "b", "c"], [], ("load", "save"), "g", "e", True]  # items of many
    rows[1200] = ["groups_changed", 2.0, [{"pattern": "p*", "count": 2, "first": "p1", "states": [["ok", 2]]}]]
    rows[1500] = ("op_finished", 3, 1, "d", "op", "w1", 0.5, {1: [1, 2], None: "%s \udcff"})  # a time that is an int
    assert len(rows) > 4 * jsonrows.CHUNK
    assert factwire.rows_json_text(rows) == _expected(rows)


def test_a_time_equal_to_another_of_another_type_keeps_its_own_text():
    rows = [("facts_missed", t, 1) for t in (1, 1.0, True, 1.0, 0.0, -0.0, -0.0, 0.0, math.nan, math.nan)]
    assert factwire.rows_json_text(rows) == _expected(rows)
    assert factwire.rows_json_text(rows).splitlines()[:6] == [
        '{"type":"facts_missed","ts":1,"count":1}', '{"type":"facts_missed","ts":1.0,"count":1}',
        '{"type":"facts_missed","ts":true,"count":1}', '{"type":"facts_missed","ts":1.0,"count":1}',
        '{"type":"facts_missed","ts":0.0,"count":1}', '{"type":"facts_missed","ts":-0.0,"count":1}']


def test_another_engines_schema_its_keys_with_a_percent_sign_or_repeated():
    reader = FactReader({"odd": ["a%s", "%%b"], "twice": ["a", "type"]}, {})
    rows = [["odd", 1.5, "%s"], ["odd", 1.5, [1, 2]], ["twice", 1, 2]]
    keys = {"odd": ("type", "a%s", "%%b"), "twice": ("type", "a", "type")}
    assert reader.json_lines(rows) == _expected(rows, keys).encode()
    assert b'{"type":2,"a":1}' in reader.json_lines(rows)  # a dict keeps a repeated key's last value


def test_a_row_of_another_width_is_keyed_as_far_as_it_goes_and_an_unknown_kind_is_a_key_error():
    rows = [("facts_missed", 1.0), ("facts_missed", 1.0, 2, "extra"), ("facts_missed", 1.5, 3)]
    assert factwire.rows_json_text(rows) == _expected(rows)
    with pytest.raises(KeyError):
        factwire.rows_json_text([("no_such_kind", 1.0)])


def test_what_the_encoder_refuses_raises_as_json_dumps_does():
    with pytest.raises(ValueError, match="digits"):
        json.dumps(10 ** 5000)
    for value in (10 ** 5000, [1, 10 ** 5000], {"a": 10 ** 5000, "b": 1}):
        with pytest.raises(ValueError, match="digits"):
            factwire.rows_json_text([("facts_missed", 1.0, value)])
