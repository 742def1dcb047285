"""The installed package holds every module of the source tree (an editable install hides a package
missing from pyproject's list; a wheel would ship without it)."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _config() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]


def test_every_package_of_the_source_tree_is_listed_for_the_wheel() -> None:
    config = _config()
    listed = set(config["packages"])
    found = set()
    for name, folder in config["package-dir"].items():
        base = ROOT / folder
        for init in base.rglob("__init__.py"):
            if "__pycache__" in init.parts:
                continue
            rel = init.parent.relative_to(base)
            found.add(".".join((name, *rel.parts)))
    assert found - listed == set(), f"packages missing from pyproject [tool.setuptools] packages: {sorted(found - listed)}"
    assert listed - found == set(), f"listed packages with no folder: {sorted(listed - found)}"


def test_every_data_file_of_the_console_is_shipped() -> None:
    config = _config()
    patterns = config["package-data"]
    for name, folder in config["package-dir"].items():
        base = ROOT / folder
        for path in base.rglob("*"):
            if path.is_dir() or "__pycache__" in path.parts or path.suffix == ".py":
                continue
            package = ".".join((name, *path.parent.relative_to(base).parts))
            assert any(path.match(p) for p in patterns.get(package, [])), \
                f"{path.relative_to(ROOT)} is not shipped: add it to [tool.setuptools.package-data] {package!r}"
