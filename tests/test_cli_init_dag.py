"""``tinyo init`` (a recipe that validates and runs) and ``tinyo dag --format svg|png`` through Graphviz's dot."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import drop, write_recipe
from tinyo.cli import app

BIN = Path(sys.executable).parent
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}

RECIPE = """
def load(context):
    print('loaded')

@meta_task(root=True)
def on_event(event):
    if event.endswith('.csv'):
        return (None, [DES(deps=frozenset([event]), targs=frozenset(['staging "sales"']), ops=[(load, Config({}))])])
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], max_workers=1)
"""


def tinyo(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "tinyo"), *args], capture_output=True, text=True, timeout=60, env=env or ENV,
                          cwd=cwd)


# ------------------------------------------------------------------------------------------ init
def test_init_writes_a_recipe_that_validates_and_runs(tmp_path: Path) -> None:
    made = tinyo("init", "pipeline", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[1:3] == ["  tinyo run pipeline/recipe.py     # headless: a live log; Ctrl-C stops",
                                             "  tinyo-tui pipeline/recipe.py     # the console"]
    folder = tmp_path / "pipeline"
    recipe = folder / "recipe.py"
    assert (folder / "inbox").is_dir() and not recipe.stat().st_mode & 0o002
    validated = tinyo("validate", str(recipe))
    assert validated.returncode == 0, validated.stderr
    assert "generators: on_event (root)" in validated.stdout and "timer hourly: every 1:00:00" in validated.stdout
    assert f"watch: {folder / 'inbox'}" in validated.stdout

    drop(folder / "inbox", "notes.txt", "one\ntwo\nthree\n")
    ran = tinyo("run", str(recipe), "--stop-after", "1", cwd=tmp_path)  # paths in it are the recipe's own, not cwd's
    assert ran.returncode == 0, ran.stderr
    assert "count_lines[w1] | notes.txt: 3 lines" in ran.stdout
    assert (folder / "out" / "notes.txt.lines").read_text() == "3\n"
    assert (folder / "tinyo.db").exists()

    drop(folder / "inbox", "more.txt", "x\n")
    again = tinyo("run", str(recipe), "--idle-exit", "1")
    assert again.returncode == 0, again.stderr
    assert "more.txt: 1 lines" in again.stdout and "notes.txt" not in again.stdout.split("engine running")[-1]


def test_init_refuses_to_overwrite_a_recipe(tmp_path: Path) -> None:
    (tmp_path / "recipe.py").write_text("# mine\n")
    result = CliRunner().invoke(app, ["init", str(tmp_path)])
    assert result.exit_code == 2
    assert "already exists; tinyo init does not overwrite it" in result.output
    assert (tmp_path / "recipe.py").read_text() == "# mine\n"


def test_init_into_the_current_folder(tmp_path: Path) -> None:
    made = tinyo("init", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert "  tinyo run recipe.py     # headless: a live log; Ctrl-C stops" in made.stdout
    assert (tmp_path / "recipe.py").exists()


# ------------------------------------------------------------------------------------------ dag pictures
@pytest.fixture
def state(tmp_path: Path, inbox: Path) -> Path:
    recipe = write_recipe(tmp_path, RECIPE, db=tmp_path / "s.db", inbox=inbox)
    drop(inbox, "a.csv")
    assert tinyo("run", str(recipe), "--stop-after", "1").returncode == 0
    return recipe


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed (apt install graphviz)")
def test_dag_renders_svg_and_png_through_dot(state: Path, tmp_path: Path) -> None:
    svg = tinyo("dag", str(state), "--format", "svg")
    assert svg.returncode == 0, svg.stderr
    assert "<svg" in svg.stdout and "</svg>" in svg.stdout
    assert "staging &quot;sales&quot;" in svg.stdout and "load" in svg.stdout  # a name with quotes, escaped
    png = tmp_path / "dag.png"
    written = tinyo("dag", str(state), "--format", "png", "--output", str(png))
    assert written.returncode == 0, written.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    piped = subprocess.run([str(BIN / "tinyo"), "dag", str(state), "--format", "png"], capture_output=True,
                           timeout=60, env=ENV)
    assert piped.returncode == 0 and piped.stdout == png.read_bytes()


def test_dag_picture_without_dot_is_one_line_naming_graphviz(state: Path, tmp_path: Path) -> None:
    bare = tmp_path / "bin"  # a PATH without dot (tinyo is called by its full path)
    bare.mkdir()
    result = tinyo("dag", str(state), "--format", "svg", env={**ENV, "PATH": str(bare)})
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        "tinyo: error: --format svg needs Graphviz's `dot` program, which is not on PATH: install the graphviz "
        "package (apt install graphviz, brew install graphviz, conda install graphviz)"]
    text = tinyo("dag", str(state), "--format", "dot", env={**ENV, "PATH": str(bare)})
    assert text.returncode == 0 and text.stdout.startswith("digraph tinyo")
