"""The engine is importable without the UI: importing tinyo never loads Textual."""

import subprocess
import sys


def test_importing_the_engine_does_not_load_textual():
    code = (
        "import sys, tinyo, tinyo.engine, tinyo.cli, tinyo.report, tinyo.offline\n"
        "loaded = sorted(m for m in sys.modules if m == 'textual' or m.startswith('textual.'))\n"
        "print(','.join(loaded))\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, f"textual modules loaded by the engine: {result.stdout}{result.stderr}"
