"""Make a schema-3 state file with the engine of commit 9e53957 (TINYO_CODE: its engine folder): files built,
one failed, one run open when the engine was killed (SIGKILL), one file event stored but not processed. Writes
tests/data/state_v3.sql (the file as SQL, its folder as @ROOT@) and tests/data/state_v3.json (the root, the
files with their content and mtime, and what `tinyo status --json` and `tinyo why` answered on it)."""
import json, os, shutil, signal, sqlite3, subprocess, sys, tempfile, time
from pathlib import Path

code = os.environ["TINYO_CODE"]
sys.path.insert(0, code)
root = Path(tempfile.mkdtemp(prefix="v3_"))
(root / "in").mkdir()
recipe = root / "recipe.py"
shutil.copy("tests/data/state_v3_recipe.py", recipe)
env = {**os.environ, "TINYO_V3_ROOT": str(root), "PYTHONUNBUFFERED": "1", "PYTHONPATH": code}
tinyo = [sys.executable, "-m", "tinyo.cli"]
for name, text in (("a.txt", "alpha"), ("b.txt", "bravo"), ("bad.txt", "broken")):
    (root / "in" / name).write_text(text)
r = subprocess.run([*tinyo, "run", str(recipe), "--idle-exit", "1"], env=env, capture_output=True, text=True, timeout=60)
assert r.returncode in (0, 1), r.stderr
proc = subprocess.Popen([*tinyo, "run", str(recipe)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
time.sleep(2)
(root / "in" / "slow.txt").write_text("sierra")
db = root / "state.db"
deadline = time.time() + 30
while time.time() < deadline:
    conn = sqlite3.connect(db)
    n = conn.execute("SELECT count(*) FROM runs WHERE status = 'running'").fetchone()[0]
    conn.close()
    if n:
        break
    time.sleep(0.05)
time.sleep(0.3)
proc.send_signal(signal.SIGKILL)
proc.wait()
# a file dropped while the engine is down, its event stored as intake stores it, not processed yet
from tinyo.intake import compare_file  # noqa: E402
from tinyo.store import SCHEMA_VERSION, Store  # noqa: E402
assert SCHEMA_VERSION == 3
(root / "in" / "d.txt").write_text("delta")
_, st = compare_file(str(root / "in" / "d.txt"), None, True)
store = Store(str(db))
store.add_events([(time.time(), "file", str(root / "in" / "d.txt"), "new")])
store.set_file_seen(str(root / "in" / "d.txt"), st.mtime_ns, st.size, st.digest)
store.commit()
store.close()
answers = {}
for args in (["status", "--json"], ["why", str(root / "out" / "a.txt.up")], ["why", str(root / "out" / "bad.txt.up")],
             ["why", str(root / "out" / "slow.txt.up")], ["why", "len.a.txt"]):
    r = subprocess.run([*tinyo, args[0], str(recipe), *args[1:]], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    answers[" ".join(args).replace(str(root), "@ROOT@")] = r.stdout.replace(str(root), "@ROOT@")
conn = sqlite3.connect(db)
sql = "\n".join(conn.iterdump()).replace(str(root), "@ROOT@") + "\nPRAGMA application_id = 1414090329;\n"
conn.close()
Path("tests/data/state_v3.sql").write_text(sql)
files = {}
for p in sorted(root.rglob("*")):
    rel = str(p.relative_to(root))
    if p.is_file() and rel.startswith(("in/", "out/")):
        files[rel] = {"text": p.read_text(), "mtime_ns": p.stat().st_mtime_ns}
Path("tests/data/state_v3.json").write_text(json.dumps({"root": str(root), "files": files, "answers": answers},
                                                        indent=1, sort_keys=True) + "\n")
