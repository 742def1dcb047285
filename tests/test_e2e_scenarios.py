"""The seed scenarios end to end: real watchdog on a temp folder, real process pool, real SQLite."""

from datetime import datetime, timedelta

from tinyo import events as ev
from tinyo.store import Store

from conftest import drop, write_recipe

RETAIL = """
def load(context):
    print(f"Loading {sorted(context['deps'])} -> {sorted(context['targs'])}")

def transform(context):
    print(f"Transforming {', '.join(sorted(context['deps']))} -> {sorted(context['targs'])}")

@meta_task()
def create_facts(event):
    if re.match(r'\\d{8}', event) and datetime.strptime(event, '%Y%m%d').weekday() != 2:
        return (event, [DES(deps=frozenset([f'staging.fact_table_{event}', 'dimensional_table']),
                            targs=frozenset([f'facts_with_{event}']), ops=[(transform, Config({}))])])
    return (None, [])

@meta_task(download=[create_facts], root=True)
def load_fact_file(event):
    if re.match(r'.*fact_file_\\d{8}.csv', event):
        date = event[-12:-4]
        return (date, [DES(deps=frozenset([event]), targs=frozenset([f'staging.fact_table_{date}']),
                           ops=[(load, Config({}))])])
    return (None, [])

@meta_task(download=[create_facts], root=True)
def load_dimensional_file(event):
    if re.match(r'.*dimensional_file.csv', event):
        return ('{day}', [DES(deps=frozenset([event]), targs=frozenset(['dimensional_table']),
                              ops=[(load, Config({}))])])
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], maxevents=30, max_workers=2,
                     execution=Execution.PROCESSES)
"""


def test_retail_facts_only_after_both_loads_and_never_on_wednesday(tmp_path, inbox, harness):
    recipe = write_recipe(tmp_path, RETAIL, db=tmp_path / "r.db", inbox=inbox, day="20241028")
    with harness(recipe) as h:
        drop(inbox, "fact_file_20241028.csv")  # a Monday
        drop(inbox, "fact_file_20241030.csv")  # a Wednesday
        h.wait_idle()
        assert not any(line.startswith("Transforming") for line in h.lines()), "facts built before the dimension"
        facts = [d for d in h.of(ev.DESRegistered) if "facts_with_20241028" in d.targs]
        assert len(facts) == 1
        drop(inbox, "dimensional_file.csv")
        h.wait_idle()
        transforms = [line for line in h.lines() if line.startswith("Transforming")]
        assert len(transforms) == 1 and "facts_with_20241028" in transforms[0]
        assert not any("20241030" in d for e in h.of(ev.DESRegistered) for d in e.targs if d.startswith("facts"))
        starts = {e.des_id: e.ts for e in h.of(ev.OpStarted)}
        loads_done = [e.ts for e in h.of(ev.OpFinished) if e.op == "load"]
        assert starts[facts[0].des_id] >= max(loads_done)
        workers = {e.worker for e in h.of(ev.OpStarted)}
        assert workers <= {"w1", "w2"}


WEEKDAY = """
def monday(context):
    print(context['config']['date'])

def other(context):
    print(['Monday', 'Tuesday', 'Wednesday', 'Thursday', 'Friday', 'Saturday', 'Sunday'][
        datetime.strptime(context['config']['date'], '%Y%m%d').weekday()])

@meta_task(root=True)
def gen(event):
    if re.match(r'.*file_\\d{8}.csv', event):
        date = event[-12:-4]
        op = monday if datetime.strptime(date, '%Y%m%d').weekday() == 0 else other
        return (date, [DES(deps=frozenset([event]), targs=frozenset([f'print.{date}']),
                           ops=[(op, Config({'date': date}))])])
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], maxevents=30, max_workers=2)
"""


def test_print_date_on_mondays_and_weekday_otherwise(tmp_path, inbox, harness):
    recipe = write_recipe(tmp_path, WEEKDAY, db=tmp_path / "w.db", inbox=inbox)
    with harness(recipe) as h:
        for name in ("file_20241028.csv", "file_20241029.csv", "file_20241103.csv", "notes.txt"):
            drop(inbox, name)
        h.wait_idle()
        assert sorted(h.lines()) == sorted(["20241028", "Tuesday", "Sunday"])
        out = {e.op for e in h.of(ev.OpOutput)}
        assert out == {"monday", "other"}
        # each event is one absolute path
        names = [e.name for e in h.of(ev.EventReceived)]
        assert sorted(names) == sorted(str(inbox / n) for n in
                                       ("file_20241028.csv", "file_20241029.csv", "file_20241103.csv", "notes.txt"))


TIMER = """
def print_date(context):
    print(datetime.fromtimestamp(float(context['config']['date'])))

@meta_task(root=True)
def timer_gen(event):
    if re.match(r'.*quick_.*', event):
        date = event[6:]
        return (date, [DES(deps=frozenset([event]), targs=frozenset([f'print.{event}']),
                           ops=[(print_date, Config({'date': date}))])])
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=[], maxevents=30, max_workers=2,
                     timers=[{'name': 'quick', 'initial': datetime(2024, 10, 27), 'interval': timedelta(milliseconds=250)}])
"""


def test_timer_ticks_on_the_grid_with_the_seed_naming(tmp_path, harness):
    recipe = write_recipe(tmp_path, TIMER, db=tmp_path / "t.db")
    with harness(recipe) as h:
        h.wait_for(lambda: len(h.of(ev.OpFinished)) >= 3, what="three timer ops")
    fired = h.of(ev.TimerFired)
    grid = datetime(2024, 10, 27)
    for item in fired[:3]:
        tick = datetime.fromtimestamp(item.tick)
        assert (tick - grid) % timedelta(milliseconds=250) == timedelta(0)
        assert item.event == f"quick_{tick.timestamp()}"
    ticks = [f.tick for f in fired]
    assert ticks == sorted(ticks) and len(set(ticks)) == len(ticks)
    for line in h.lines()[:3]:
        datetime.fromisoformat(line)  # the op printed the tick's datetime
    store = Store(str(tmp_path / "t.db"), lock=False)
    assert store.timer_ticks()["quick"] == max(ticks)
    store.close()


CHAIN = """
def create_file(context):
    time.sleep(0.05)
    with open(context['config']['name'], 'w') as fb:
        fb.write(context['config']['name'])

@meta_task(root=True)
def gen(event):
    if re.match(r'.*file_\\d{1}$', event):
        count = int(event[event.rfind('_') + 1:])
        targ = '{inbox}/file_' + str(count + 1)
        return (count, [DES(deps=frozenset([event]), targs=frozenset([targ]),
                            ops=[(create_file, Config({'name': targ}))])])
    return (None, [])

config = TinyOConfig(sql_conn='{db}', dirs=['{inbox}'], maxevents=30, max_workers=2)
"""


def test_infinite_runs_stop_at_file_10(tmp_path, inbox, harness):
    recipe = write_recipe(tmp_path, CHAIN, db=tmp_path / "c.db", inbox=inbox)
    with harness(recipe) as h:
        drop(inbox, "file_1")
        h.wait_for(lambda: (inbox / "file_10").exists(), what="file_10")
        h.wait_idle()
    assert sorted(p.name for p in inbox.iterdir()) == sorted(f"file_{k}" for k in range(1, 11))
    assert len(h.of(ev.OpFinished)) == 9
    received = [e.name for e in h.of(ev.EventReceived)]
    assert len(received) == len(set(received)) == 10, "each file is one event, exactly once"
