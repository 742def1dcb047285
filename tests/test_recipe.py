"""Recipe loading: clear errors that name the file, the line and the bad value."""

import subprocess
import sys

import pytest

from tinyo.errors import RecipeError
from tinyo.recipe import OpResolver, load_recipe

from conftest import write_recipe

GOOD_GEN = """
@meta_task(root=True)
def gen(event):
    return (None, [])
"""


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "tinyo.cli", *args], capture_output=True, text=True, cwd=cwd,
                          timeout=60)


@pytest.mark.parametrize(
    "body, message",
    [
        ("def broken(:\n    pass\n", r"recipe.py:\d+: syntax error"),
        ("import no_such_module_here\n", r"recipe.py:5: import error: No module named 'no_such_module_here'"),
        (GOOD_GEN, "no module-level `config = TinyOConfig"),
        (GOOD_GEN + "config = {'sql_conn': 'x.db'}\n", "`config` must be a TinyOConfig, got dict"),
        (GOOD_GEN + "config = TinyOConfig(maxevents='30')\n", r"recipe.py:\d+: config: TinyOConfig.maxevents must be an int >= 1 \(or None: the engine chooses\), got '30'"),
        (GOOD_GEN + "config = TinyOConfig(max_wrokers=2)\n", r"unexpected keyword argument 'max_wrokers'.*valid fields are: sql_conn"),
        ("config = TinyOConfig()\n", "defines no @meta_task generators"),
        ("@meta_task()\ndef g(e):\n    return (None, [])\nconfig = TinyOConfig()\n", "no generator has root=True"),
        (
            "@meta_task()\ndef orphan(e):\n    return (None, [])\n" + GOOD_GEN + "config = TinyOConfig()\n",
            r"generator\(s\) \['orphan'\] can never run",
        ),
        ("raise RuntimeError('boom at load')\n", r"recipe.py:5: RuntimeError while loading the recipe: boom at load"),
    ],
)
def test_bad_recipes_give_one_clear_message(tmp_path, body, message):
    path = write_recipe(tmp_path, body)
    with pytest.raises(RecipeError, match=message) as info:
        load_recipe(path)
    assert str(path) in str(info.value)


def test_generator_cycle_is_named(tmp_path):
    body = """
@meta_task()
def a(e):
    return (e, [])

@meta_task(download=[a])
def b(e):
    return (e, [])

a.download = (b,)

@meta_task(root=True, download=[a])
def root(e):
    return (e, [])

config = TinyOConfig()
"""
    path = write_recipe(tmp_path, body)
    with pytest.raises(RecipeError, match=r"generator cycle through download: (a -> b -> a|b -> a -> b)"):
        load_recipe(path)


def test_decorated_generator_stays_callable(tmp_path):
    path = write_recipe(tmp_path, GOOD_GEN + "config = TinyOConfig(sql_conn=':memory:')\n")
    recipe = load_recipe(path)
    assert recipe.module.gen("anything") == (None, [])
    assert [g.name for g in recipe.generators] == ["gen"]


def test_ops_are_addressed_by_name_and_lambdas_refused(tmp_path):
    body = GOOD_GEN + """
def load(context):
    return 1

class Holder:
    @staticmethod
    def run(context):
        return 2

lam = lambda context: 3

def make():
    def inner(context):
        return 4
    return inner

config = TinyOConfig(sql_conn=':memory:')
"""
    recipe = load_recipe(write_recipe(tmp_path, body))
    resolver = OpResolver(recipe.module, recipe.path)
    assert resolver.ref(recipe.module.load) == "<recipe>:load"
    assert resolver.ref(recipe.module.Holder.run) == "<recipe>:Holder.run"
    assert resolver.ref(subprocess.run) == "subprocess:run"
    fresh = OpResolver(None, recipe.path)
    assert fresh.resolve("<recipe>:Holder.run")({}) == 2
    for bad in (recipe.module.lam, recipe.module.make()):
        with pytest.raises(RecipeError, match="lambda or a nested function"):
            resolver.ref(bad)


def test_cli_validate_and_broken_recipe_exit_status(tmp_path):
    good = write_recipe(tmp_path, GOOD_GEN + "config = TinyOConfig(sql_conn=':memory:')\n", name="good.py")
    result = cli("validate", str(good))
    assert result.returncode == 0 and "ok" in result.stdout and "gen (root)" in result.stdout
    bad = write_recipe(tmp_path, "def broken(:\n", name="bad.py")
    result = cli("run", str(bad), "--idle-exit", "1")
    assert result.returncode == 2
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "bad.py:5: syntax error" in lines[0] and "Traceback" not in result.stderr
    missing = cli("validate", str(tmp_path / "nope.py"))
    assert missing.returncode == 2 and "recipe file not found" in missing.stderr


def test_world_writable_recipe_is_refused_unless_allowed(tmp_path):
    import os

    path = write_recipe(tmp_path, GOOD_GEN + "config = TinyOConfig(sql_conn=':memory:')\n", name="open.py")
    os.chmod(path, 0o666)
    with pytest.raises(RecipeError, match="world-writable.*chmod o-w"):
        load_recipe(path)
    assert load_recipe(path, allow_world_writable=True).name == "open"
    result = cli("run", str(path), "--idle-exit", "0.2")
    assert result.returncode == 2 and "world-writable" in result.stderr
    allowed = cli("run", str(path), "--idle-exit", "0.2", "--allow-world-writable")
    assert allowed.returncode == 0, allowed.stderr
