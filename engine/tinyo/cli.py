"""Provides the headless command line ``tinyo`` (typer): init, run, validate, status, dag, why, rerun, inject,
fire, pause, resume, cancel."""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
import time
from enum import Enum
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from .cli_options import (
    AllowWorldWritableOpt,
    Command,
    DbOpt,
    DebugOpt,
    ExecutionOpt,
    ExecutorOpt,
    Group,
    RecipeArg,
    WorkersOpt,
    version_option,
)
from .completion import complete_documents, complete_timers
from .cli_service import live_query, register, send_command
from .errors import StoreError, TinyoError
from .model import Execution

app = typer.Typer(
    cls=Group,
    no_args_is_help=True,
    help="tinyo: an event-driven orchestrator for data pipelines (headless). The console is `tinyo-tui`.",
    epilog="Start with: tinyo init my_pipeline",
    pretty_exceptions_enable=False,
)

EXIT_OK, EXIT_OP_FAILED, EXIT_USAGE = 0, 1, 2

def _command(example: str) -> Any:
    """Register a command whose help ends with an example."""
    return app.command(cls=Command, epilog=f"Example: {example}")


class Fmt(str, Enum):
    mermaid = "mermaid"
    dot = "dot"
    svg = "svg"
    png = "png"


_debug = False


def _fail(message: str, code: int = EXIT_USAGE) -> None:
    typer.echo(f"tinyo: error: {message}", err=True)
    raise typer.Exit(code)


def _load(recipe: Path):  # noqa: ANN202 - returns a Recipe
    from .recipe import load_recipe

    return load_recipe(recipe)


def _db_for(recipe: Path, db: str | None) -> str:
    return db or _load(recipe).config.sql_conn


def _guard(fn):  # noqa: ANN001, ANN202 - decorator keeping typer's signature
    import functools

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TinyoError as exc:
            if _debug:
                raise
            _fail(str(exc))

    return wrapper


@app.callback()
def _root(debug: DebugOpt = False,
          _version: Annotated[Optional[bool], version_option("tinyo")] = None) -> None:
    global _debug
    _debug = _debug or debug


# ------------------------------------------------------------------------------------------ init
@_command("tinyo init my_pipeline")
def init(folder: Annotated[Path, typer.Argument(
             metavar="FOLDER", help="Where to write recipe.py (made if missing).")] = Path(".")) -> None:
    """Write a small commented recipe to start from (a watched folder, a timer, a generator, an op)."""
    from .scaffold import RECIPE_NAME, write_recipe

    try:
        recipe = write_recipe(folder)
    except FileExistsError:
        _fail(f"{folder / RECIPE_NAME}: already exists; tinyo init does not overwrite it (pick another FOLDER)")
    except OSError as exc:
        _fail(f"{folder}: cannot write a recipe here: {exc.strerror or exc}")
    relative = os.path.relpath(recipe)
    shown = shlex.quote(str(recipe) if relative.startswith("..") else relative)
    inbox = shlex.quote(str(Path(shown).parent / "inbox"))
    typer.echo(f"wrote {shown} (it watches {inbox}). Run it with either of:")
    typer.echo(f"  tinyo run {shown}     # headless: a live log; Ctrl-C stops")
    typer.echo(f"  tinyo-tui {shown}     # the console")
    typer.echo(f"then drop a file into {inbox}.")


# ------------------------------------------------------------------------------------------ run
def run_headless(
    recipe: str | Path,
    *,
    db: str | None = None,
    idle_exit: float | None = None,
    stop_after: int | None = None,
    json_lines: bool = False,
    debug: bool = False,
    execution: Execution | None = None,
    workers: int | None = None,
    verbose: bool = False,
    grace: float = 10.0,
    allow_world_writable: bool = False,
    executor_address: str | None = None,
) -> int:
    """Run a recipe without the console until Ctrl-C (or the bounds); returns the exit status."""
    from .early import start_early
    from .recipe import load_recipe

    if executor_address is not None:
        execution = Execution.DASK
    early = None
    try:
        loaded = load_recipe(recipe, allow_world_writable=allow_world_writable)
        # the workers and the watcher start (a Python each) while the engine's modules import
        early = start_early(loaded, db=db, execution=execution, max_workers=workers)
        from .control.server import serve
        from .engine import Engine
        from .report import JsonReporter, TextReporter

        engine = Engine(loaded, db=db, execution=execution, max_workers=workers, executor_address=executor_address,
                        early=early)
    except TinyoError as exc:
        if early is not None:
            early.dismiss()
        if debug:
            raise
        print(f"tinyo: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except BaseException:
        if early is not None:
            early.dismiss()
        raise
    reporter = JsonReporter() if json_lines else TextReporter(debug=debug, verbose=verbose)
    reporter.attach(engine.bus)
    channel = serve(engine, grace)  # the control socket: `tinyo stop|events|inject|...` reach this engine

    def on_signal(signum: int, _frame: Any) -> None:
        raise KeyboardInterrupt  # a second one, during the stop, stops running ops now (below)

    # a hang-up stops the engine, unless it was started ignoring hang-ups (`nohup`, `tinyo start`)
    hangup = (signal.SIGHUP,) if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN else ()
    previous = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM, *hangup)}
    try:
        engine.start()
        if engine.fatal is not None:
            raise engine.fatal
        bounded = idle_exit is not None or stop_after is not None
        while not engine.wait(0 if bounded else 0.05):
            if engine.fatal is not None:
                break
            # a bounded run ends as soon as the engine goes idle (not at the next look)
            idle = engine.wait_idle(0.05) if bounded else engine.idle_since
            if idle is not None:
                if stop_after is not None and engine.events_taken >= stop_after:
                    break
                if idle_exit is not None and time.monotonic() - idle >= idle_exit:
                    break
                if bounded:
                    engine.wait(0.01)  # idle, but not long enough yet or with too few events: look again soon
        engine.stop(grace)
    except KeyboardInterrupt:
        print("tinyo: stopping (running ops get %gs to finish; Ctrl-C again to stop them now)" % grace,
              file=sys.stderr)
        try:
            engine.stop(grace)
        except KeyboardInterrupt:
            engine.stop(0)  # running ops are stopped now; they run again at the next start
    except TinyoError as exc:
        engine.stop(0)
        reporter.close()
        if debug:
            raise
        print(f"tinyo: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if channel is not None:
            channel.close()
        early.dismiss()  # only if the engine did not start: it takes them at its start
    reporter.close()
    if engine.fatal is not None:
        print(f"tinyo: error: {engine.fatal}", file=sys.stderr)
        if debug:
            raise engine.fatal
        return EXIT_USAGE
    bounded = idle_exit is not None or stop_after is not None
    return EXIT_OP_FAILED if bounded and engine.failures else EXIT_OK


@_command("tinyo run recipe.py --idle-exit 5")
def run(
    recipe: RecipeArg,
    db: DbOpt = None,
    idle_exit: Annotated[Optional[float], typer.Option("--idle-exit", metavar="SECONDS",
                         help="Exit once nothing arrived, was queued or ran for this many seconds.")] = None,
    stop_after: Annotated[Optional[int], typer.Option("--stop-after", metavar="N",
                          help="Exit after N events were taken in and the work they caused finished.")] = None,
    json_lines: Annotated[bool, typer.Option("--json", help="Print one JSON object per bus event.")] = False,
    debug: DebugOpt = False,
    execution: ExecutionOpt = None,
    workers: WorkersOpt = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Also print state changes.")] = False,
    allow_world_writable: AllowWorldWritableOpt = False,
    executor: ExecutorOpt = None,
) -> None:
    """Run a recipe headless: watch its folders and timers, run its ops, log what happens."""
    if executor is not None:
        if executor != "local-dask" and "://" not in executor:
            _fail(f"--executor must be a Dask scheduler address like tcp://host:8786, or local-dask; got {executor!r}")
        if execution is not None:
            _fail(f"--executor {executor} runs ops on Dask; it cannot be combined with --execution {execution.value}")
    code = run_headless(recipe, db=db, idle_exit=idle_exit, stop_after=stop_after, json_lines=json_lines,
                        debug=debug or _debug, execution=Execution(execution.value) if execution else None,
                        workers=workers, verbose=verbose, allow_world_writable=allow_world_writable,
                        executor_address=executor)
    raise typer.Exit(code)


# ------------------------------------------------------------------------------------------ inspection
@_command("tinyo validate recipe.py")
@_guard
def validate(recipe: RecipeArg) -> None:
    """Load a recipe and check it (config, generator graph, op importability) without running it."""
    from .text import printable

    loaded = _load(recipe)
    cfg = loaded.config
    typer.echo(f"{loaded.path}: ok")
    typer.echo("  generators: " + ", ".join(
        f"{g.name}{' (root)' if g.root else ''}{' -> ' + ', '.join(g.download) if g.download else ''}"
        for g in loaded.generators))
    typer.echo(f"  state: {printable(cfg.sql_conn)}   watch: {printable(', '.join(cfg.dirs)) or '-'}   "
               f"execution: {cfg.execution.value} x{cfg.max_workers}   maxevents: {cfg.maxevents}")
    for timer in cfg.timer_specs:
        typer.echo(f"  timer {timer.name}: every {timer.interval} from {timer.initial}")


def _open_ro(recipe: Path, db: str | None):  # noqa: ANN202
    from .store import Store

    path = _db_for(recipe, db)
    return Store(path, read_only=True, lock=False)


@_command("tinyo status recipe.py --json")
@_guard
def status(recipe: RecipeArg, db: DbOpt = None,
           json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Show documents, DES states and recent runs from the state file."""
    from .offline import status as read_status
    from .text import printable

    store = _open_ro(recipe, db)
    try:
        info = read_status(store)
    finally:
        store.close()
    live = live_query(store.path, "stats")  # the running engine's own counters, when one runs
    info["engine"] = None if live is None else {"pid": live[0], **live[1]}
    if json_out:
        typer.echo(json.dumps(info, indent=2, default=str))
        return
    typer.echo(f"state file: {info['db']}")
    if live is not None:
        e = info["engine"]
        typer.echo(f"engine: {e['state']} (pid {e['pid']}), up {e['uptime']:.0f}s, {e['events_per_s']:.1f} events/s, "
                   f"queued {e['queued']}, running {e['running']}, failed {e['failed']}, buffered {e['buffered']}")
    typer.echo(f"events: {info['events']} ({info['events_pending']} not processed yet)   documents: {info['documents']}"
               f"   DES: {info['des']}")
    typer.echo("DES states: " + (", ".join(f"{k} {v}" for k, v in info["des_states"].items()) or "-"))
    typer.echo("runs: " + (", ".join(f"{k} {v}" for k, v in sorted(info["runs"].items())) or "-"))
    for item in info["failed"]:
        typer.echo(printable(f"  FAILED {item['des_id']} {'+'.join(item['ops'])} -> {', '.join(item['targs'])}"))
    if info["recent_runs"]:
        typer.echo("recent runs:")
        for r in info["recent_runs"]:
            err = f"  {r['error']}" if r["error"] else ""
            typer.echo(printable(f"  #{r['run_id']} {r['des_id']} attempt {r['attempt']} on {r['worker'] or '-'}: "
                                 f"{r['status']}{err}"))


@_command("tinyo dag recipe.py --format svg --output dag.svg")
@_guard
def dag(recipe: RecipeArg,
        fmt: Annotated[Fmt, typer.Option("--format", help="Mermaid or DOT text; svg and png need Graphviz's dot.")]
        = Fmt.mermaid,
        output: Annotated[Optional[Path], typer.Option("--output", "-o", metavar="PATH",
                          help="Write to this file instead of standard output.")] = None,
        db: DbOpt = None) -> None:
    """Export the document DAG (documents and the DES between them) as Mermaid, DOT, SVG or PNG."""
    from .graphviz import GraphvizMissing, dot_program, render
    from .offline import export

    if fmt in (Fmt.svg, Fmt.png):
        if dot_program() is None:
            _fail(str(GraphvizMissing(fmt.value)))
        if fmt is Fmt.png and output is None and sys.stdout.isatty():
            _fail("--format png writes binary data: add --output dag.png (or redirect standard output)")
    store = _open_ro(recipe, db)
    try:
        text = export(store, "dot" if fmt in (Fmt.svg, Fmt.png) else fmt.value)
    finally:
        store.close()
    data = render(text, fmt.value) if fmt in (Fmt.svg, Fmt.png) else text.encode()
    if output is not None:
        try:
            output.write_bytes(data)
        except OSError as exc:
            _fail(f"{output}: cannot write the DAG: {exc.strerror or exc}")
        typer.echo(f"wrote {output}", err=True)
        return
    if fmt is Fmt.png:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        typer.echo(data.decode(), nl=False)


@_command("tinyo why recipe.py report.csv")
@_guard
def why(recipe: RecipeArg, document: Annotated[str, typer.Argument(
            metavar="DOCUMENT", help="A document name or a DES id.", autocompletion=complete_documents)],
        db: DbOpt = None) -> None:
    """Explain why a document (or DES) is up to date, stale, waiting or failed."""
    from .offline import explain
    from .text import printable

    path = _db_for(recipe, db)
    live = live_query(path, "explain", name=document)  # the running engine knows what is in flight
    if live is not None:
        typer.echo("\n".join(printable(line) for line in live[1].splitlines()))
        return
    store = _open_ro(recipe, db)
    try:
        typer.echo(explain(store, document))  # names in it are escaped already
    finally:
        store.close()


def _send_request(path: str, kind: str, arg: str) -> bool:
    """Store a request for the engine on ``path``: True if an engine is running there (it picks the
    request up within a second), False if none is (the request waits for the next start)."""
    from .store import Store

    try:
        store = Store(path)
        running = False
    except StoreError as exc:
        if "another tinyo engine is running" not in str(exc):
            raise
        store = Store(path, lock=False)
        running = True
    try:
        store.add_request(time.time(), kind, arg)
    finally:
        store.close()
    return running


def _request(recipe: Path, db: str | None, kind: str, arg: str, what: str) -> None:
    """Hand a request to a running engine, or run the engine now until the work is done."""
    path = _db_for(recipe, db)
    if send_command(path, kind, arg):
        typer.echo(f"asked the running engine to {what}: it took the request")
        return
    if _send_request(path, kind, arg):
        typer.echo(f"asked the running engine to {what}; it picks the request up within a second")
        return
    raise typer.Exit(run_headless(recipe, db=db, idle_exit=0.3, debug=_debug))


@_command("tinyo rerun recipe.py staging.csv --downstream")
@_guard
def rerun(recipe: RecipeArg, target: Annotated[str, typer.Argument(
              metavar="TARGET", help="A document (its producing DES runs) or a DES id.",
              autocompletion=complete_documents)],
          downstream: Annotated[bool, typer.Option("--downstream", "-R", help="Also rerun everything downstream.")] = False,
          db: DbOpt = None) -> None:
    """Force a rerun of the DES producing TARGET, even if it is up to date."""
    _request(recipe, db, "rerun_down" if downstream else "rerun", target, f"rerun {target}")


@_command("tinyo inject recipe.py /data/in/sales_20240101.csv")
@_guard
def inject(recipe: RecipeArg, event: Annotated[str, typer.Argument(metavar="EVENT", help="The event string.")],
           db: DbOpt = None) -> None:
    """Take an event in by hand, as if it had happened."""
    from .names import name_problem

    problem = name_problem(event)
    if problem is not None:
        _fail(f"the event {event!r} {problem}")
    _request(recipe, db, "inject", event, f"take in {event!r}")


@_command("tinyo fire recipe.py hourly")
@_guard
def fire(recipe: RecipeArg, timer: Annotated[str, typer.Argument(
             metavar="TIMER", help="The timer's name.", autocompletion=complete_timers)],
         db: DbOpt = None) -> None:
    """Fire a timer now."""
    names = [t.name for t in _load(recipe).config.timer_specs]
    if timer not in names:
        _fail(f"no timer named {timer!r} in {recipe} (timers: {', '.join(names) or 'none'})")
    _request(recipe, db, "fire", timer, f"fire {timer}")


def _to_running_engine(recipe: Path, db: str | None, kind: str, arg: str, what: str) -> None:
    """Hand a request to the engine running on the recipe's state file; error if none is."""
    from .store import Store

    path = _db_for(recipe, db)
    if send_command(path, kind, arg):
        typer.echo(f"asked the running engine to {what}: it took the request")
        return
    try:
        Store(path).close()  # took the lock: no engine is running
    except StoreError as exc:
        if "another tinyo engine is running" not in str(exc):
            raise
        _send_request(path, kind, arg)
        typer.echo(f"asked the running engine to {what}; it picks the request up within a second")
        return
    _fail(f"no tinyo engine is running on {path}: nothing to {what}")


@_command("tinyo pause recipe.py")
@_guard
def pause(recipe: RecipeArg, db: DbOpt = None) -> None:
    """Pause intake of the running engine: events are still stored, in order, and processed on resume."""
    _to_running_engine(recipe, db, "pause", "", "pause intake")


@_command("tinyo resume recipe.py")
@_guard
def resume(recipe: RecipeArg, db: DbOpt = None) -> None:
    """Resume intake of the running engine."""
    _to_running_engine(recipe, db, "resume", "", "resume intake")


@_command("tinyo cancel recipe.py 42")
@_guard
def cancel(recipe: RecipeArg, run_id: Annotated[int, typer.Argument(
               metavar="RUN_ID", help="The run to cancel (see `tinyo status`).")],
           db: DbOpt = None) -> None:
    """Cancel a queued or running run of the running engine."""
    from .control.server import cancel_problem
    from .store import Store

    path = _db_for(recipe, db)
    if not send_command(path, "cancel", str(run_id)):  # no control channel: the state file says if the run is open
        store = Store(path, read_only=True, lock=False) if Path(path).exists() else None
        try:
            problem = cancel_problem(run_id, store.run_status(run_id) if store else None, path)
        finally:
            if store is not None:
                store.close()
        if problem is not None:
            _fail(problem)
        _to_running_engine(recipe, db, "cancel", str(run_id), f"cancel run {run_id}")
        return
    typer.echo(f"asked the running engine to cancel run {run_id}: it took the request")


register(app)  # start, stop, events


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        app()
    except SystemExit as exc:
        if exc.code is not None and not isinstance(exc.code, int):
            raise
        from .children import exit_now

        exit_now(exc.code or 0)


if __name__ == "__main__":
    main()
