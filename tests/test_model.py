"""DES identity, Config hashing, TinyOConfig validation."""

import pickle
from datetime import datetime, timedelta

import pytest

from tinyo import DES, Config, Execution, TinyOConfig
from tinyo.errors import ConfigError


def op_a(context):
    return None


def op_b(context):
    return None


def test_same_des_has_same_id_and_is_equal():
    one = DES(deps=frozenset(["a"]), targs=frozenset(["b"]), ops=[(op_a, Config({"x": 1, "y": [1, 2]}))])
    two = DES(deps=frozenset(["a"]), targs=frozenset(["b"]), ops=[(op_a, Config({"y": [1, 2], "x": 1}))])
    assert one == two and hash(one) == hash(two) and one.id == two.id
    assert len({one, two}) == 1


@pytest.mark.parametrize("change", ["deps", "targs", "op", "config"])
def test_any_difference_changes_the_id(change):
    base = dict(deps=frozenset(["a"]), targs=frozenset(["b"]), ops=[(op_a, Config({"x": 1}))])
    other = dict(base)
    if change == "deps":
        other["deps"] = frozenset(["a", "c"])
    elif change == "targs":
        other["targs"] = frozenset(["z"])
    elif change == "op":
        other["ops"] = [(op_b, Config({"x": 1}))]
    else:
        other["ops"] = [(op_a, Config({"x": 2}))]
    assert DES(**base).id != DES(**other).id


def test_des_id_is_stable_across_processes():
    import subprocess
    import sys

    code = (
        "from tinyo import DES, Config\n"
        "from test_model import op_a\n"
        "print(DES(deps=frozenset(['a']), targs=frozenset(['b']), ops=[(op_a, Config({'x': 1}))]).id)\n"
    )
    import os

    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=os.path.dirname(__file__), env={**os.environ, "PYTHONHASHSEED": "123"})
    here = DES(deps=frozenset(["a"]), targs=frozenset(["b"]), ops=[(op_a, Config({"x": 1}))]).id
    assert out.stdout.strip() == here, out.stderr


def test_des_is_immutable_and_validates():
    des = DES(deps=frozenset(["a"]), targs=frozenset(["b"]), ops=[])
    with pytest.raises(AttributeError):
        des.deps = frozenset()  # type: ignore[misc]
    with pytest.raises(TypeError, match="not the string"):
        DES(deps="abc", targs=frozenset(["b"]), ops=[])
    with pytest.raises(TypeError, match=r"ops\[0\]"):
        DES(deps=frozenset(), targs=frozenset(["b"]), ops=[op_a])
    with pytest.raises(TypeError, match="at least one"):
        DES(deps=frozenset(["a"]), targs=frozenset(), ops=[])


def test_config_is_a_hashable_mapping_that_pickles():
    cfg = Config({"date": "20241028", "n": 3})
    assert cfg["date"] == "20241028" and dict(cfg) == {"date": "20241028", "n": 3}
    assert hash(cfg) == hash(Config({"n": 3, "date": "20241028"}))
    assert pickle.loads(pickle.dumps(cfg)) == cfg


def test_tinyoconfig_defaults_and_timers():
    cfg = TinyOConfig(sql_conn="x.db", dirs=["/tmp/x"], timers=[
        {"name": "t", "initial": datetime(2024, 1, 1), "interval": timedelta(seconds=10)}])
    assert cfg.execution is Execution.PROCESSES and cfg.timer_specs[0].name == "t"


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"maxevents": 0}, "maxevents must be an int >= 1"),
        ({"max_workers": "2"}, "max_workers must be an int >= 1"),
        ({"dirs": "/tmp/data"}, "dirs must be a list"),
        ({"execution": "processes"}, "execution must be an Execution member"),
        ({"timers": [{"name": "t", "initial": "2024", "interval": timedelta(seconds=1)}]}, "'initial' must be a datetime"),
        ({"timers": [{"name": "t", "initial": datetime(2024, 1, 1), "interval": timedelta(0)}]}, "positive timedelta"),
        ({"timers": [{"name": "t", "initial": datetime(2024, 1, 1), "interval": timedelta(1), "every": 1}]}, "unknown keys"),
        ({"catch_up": "sometimes"}, "catch_up must be"),
        ({"retries": -1}, "retries must be"),
    ],
)
def test_tinyoconfig_rejects_bad_fields_with_a_clear_message(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        TinyOConfig(**kwargs)


def test_unknown_field_is_a_type_error():
    with pytest.raises(TypeError, match="unexpected keyword"):
        TinyOConfig(max_wrokers=2)  # type: ignore[call-arg]


def test_a_des_id_is_the_same_in_every_version_and_for_names_given_as_str_subclasses():
    """A state file keys its DES by id, so the id of a shape must not change between versions (the two below
    are what tinyo wrote before the one-of-each short path existed), and a name given as a ``str`` subclass
    (a ``str`` Enum member) counts by its text, as the same plain string does."""
    import enum
    from json import dumps  # an op whose module name does not depend on how the tests are run

    class Doc(str, enum.Enum):
        RAW = "raw"
        OUT = "out"

    plain = DES(deps=frozenset(["raw"]), targs=frozenset(["out"]), ops=[(dumps, Config({"x": 1}))])
    members = DES(deps=frozenset([Doc.RAW]), targs=frozenset([Doc.OUT]), ops=[(dumps, Config({"x": 1}))])
    assert plain.id == members.id == "e4a50e0b83cf0de1"
    two = DES(deps=frozenset(["r\u00e9", "b"]), targs=frozenset(["out"]), ops=[(dumps, Config({}))])
    assert two.id == "b81374151619c27f"
