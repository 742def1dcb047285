"""Provides the commands that read a recipe and its state file without changing anything:
``tinyo validate``, ``status``, ``dag`` and ``why`` (a running engine is asked where it knows more)."""

from __future__ import annotations

import dataclasses
import json
import sys
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli_options import DbOpt, RecipeArg
from .cli_service import live_query
from .cli_support import add_command, db_for, fail, guard, load
from .completion import complete_documents


class Fmt(str, Enum):
    """What `tinyo dag` writes: Mermaid or DOT text, or an image Graphviz renders."""

    mermaid = "mermaid"
    dot = "dot"
    svg = "svg"
    png = "png"


@guard
def validate(recipe: RecipeArg) -> None:
    """Load a recipe and check it (config, generator graph, op importability) without running it."""
    from .text import printable

    loaded = load(recipe)
    cfg = loaded.config
    typer.echo(f"{loaded.path}: ok")
    typer.echo("  generators: " + ", ".join(
        f"{g.name}{' (root)' if g.root else ''}{' -> ' + ', '.join(g.download) if g.download else ''}"
        for g in loaded.generators))
    typer.echo(f"  state: {printable(cfg.sql_conn)}   watch: {printable(', '.join(cfg.dirs)) or '-'}   "
               f"execution: {cfg.execution.value} x{cfg.max_workers}   maxevents: {cfg.maxevents or 'engine chooses'}")
    for timer in cfg.timer_specs:
        typer.echo(f"  timer {timer.name}: every {timer.interval} from {timer.initial}")


def _open_ro(path: str):  # noqa: ANN202
    from .store import Store

    return Store(path, read_only=True, lock=False)


@guard
def status(recipe: RecipeArg, db: DbOpt = None,
           json_out: Annotated[bool, typer.Option("--json", help="Machine-readable output.")] = False) -> None:
    """Show documents, DES states and recent runs from the state file."""
    from .offline import status as read_status
    from .text import printable

    store = _open_ro(db_for(recipe, db))
    try:
        info = read_status(store)
    finally:
        store.close()
    from .queries import Stats

    live = live_query(store.path, Stats())  # the running engine's own counters, when one runs
    info["engine"] = None if live is None else {"pid": live[0], **dataclasses.asdict(live[1])}
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


@guard
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
            fail(str(GraphvizMissing(fmt.value)))
        if fmt is Fmt.png and output is None and sys.stdout.isatty():
            fail("--format png writes binary data: add --output dag.png (or redirect standard output)")
    store = _open_ro(db_for(recipe, db))
    try:
        text = export(store, "dot" if fmt in (Fmt.svg, Fmt.png) else fmt.value)
    finally:
        store.close()
    data = render(text, fmt.value) if fmt in (Fmt.svg, Fmt.png) else text.encode()
    if output is not None:
        try:
            output.write_bytes(data)
        except OSError as exc:
            fail(f"{output}: cannot write the DAG: {exc.strerror or exc}")
        typer.echo(f"wrote {output}", err=True)
        return
    if fmt is Fmt.png:
        sys.stdout.flush()
        sys.stdout.buffer.write(data)
        sys.stdout.buffer.flush()
    else:
        typer.echo(data.decode(), nl=False)


@guard
def why(recipe: RecipeArg, document: Annotated[str, typer.Argument(
            metavar="DOCUMENT", help="A document name or a DES id.", autocompletion=complete_documents)],
        db: DbOpt = None) -> None:
    """Explain why a document (or DES) is up to date, stale, waiting or failed."""
    from .offline import explain
    from .text import printable

    path = db_for(recipe, db)
    from .queries import Explain

    live = live_query(path, Explain(document))  # the running engine knows what is in flight
    if live is not None:
        typer.echo("\n".join(printable(line) for line in live[1].splitlines()))
        return
    store = _open_ro(path)
    try:
        typer.echo(explain(store, document))  # names in it are escaped already
    finally:
        store.close()


def register(app: typer.Typer) -> None:
    """Add the inspection commands to the command line."""
    add_command(app, validate, "tinyo validate recipe.py")
    add_command(app, status, "tinyo status recipe.py --json")
    add_command(app, dag, "tinyo dag recipe.py --format svg --output dag.svg")
    add_command(app, why, "tinyo why recipe.py report.csv")
