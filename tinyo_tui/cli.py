"""Provides ``tinyo-tui RECIPE``: the console, or the headless engine when there is no terminal."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

EXIT_OK, EXIT_USAGE = 0, 2


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(
        prog="tinyo-tui",
        description="tinyo's operations console: live events, document DAG, workers, lanes and output.",
        epilog="Without a terminal (stdout not a TTY) it runs the headless engine, like `tinyo run`.",
    )
    parser.add_argument("recipe", help="the recipe file (a Python file defining `config` and generators)")
    parser.add_argument("--theme", default=os.environ.get("TINYO_THEME"),
                        help="dark (default), light, high-contrast, or any Textual theme name")
    parser.add_argument("--db", default=None, help="state file to use instead of the recipe's sql_conn")
    parser.add_argument("--execution", choices=("processes", "threads", "inline"), default=None,
                        help="where ops run (default: the recipe's config)")
    parser.add_argument("--workers", type=int, default=None, help="worker pool size (default: the recipe's)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    parser.add_argument("--executor", default=None, metavar="ADDRESS",
                        help="run ops on a Dask cluster: tcp://host:8786, or local-dask to start one here")
    parser.add_argument("--allow-world-writable", action="store_true",
                        help="load the recipe even if any user of the machine may write it")
    parser.add_argument("--attach", action="store_true",
                        help="only attach to the engine running on the state file (exit 2 if none runs)")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Console-script entry point."""
    sys.exit(run(argv))


def run(argv: Sequence[str] | None = None) -> int:
    """Run the console (or the headless fallback); returns the exit status."""
    args = parse_args(argv)
    from tinyo.errors import TinyoError
    from tinyo.model import Execution

    execution = Execution(args.execution) if args.execution else None
    if args.executor is not None:
        if args.execution is not None:
            print("tinyo-tui: error: --executor runs ops on Dask; it cannot be combined with --execution",
                  file=sys.stderr)
            return EXIT_USAGE
        execution = Execution.DASK
    if (not sys.stdout.isatty() or not sys.stdin.isatty()) and args.attach:
        print("tinyo-tui: error: --attach needs a terminal (without one, `tinyo events RECIPE --follow` shows "
              "the running engine)", file=sys.stderr)
        return EXIT_USAGE
    if not sys.stdout.isatty() or not sys.stdin.isatty():
        print(f"tinyo-tui: no terminal, running the headless engine (like `tinyo run {args.recipe}`)",
              file=sys.stderr)
        from tinyo.cli import run_headless

        return run_headless(args.recipe, db=args.db, execution=execution, workers=args.workers,
                            debug=args.debug, allow_world_writable=args.allow_world_writable,
                            executor_address=args.executor)

    from tinyo.engine import Engine

    from .theming import ThemeError, load_themes, resolve_theme

    try:
        resolve_theme(args.theme, [*load_themes(), *_textual_themes()])
    except ThemeError as exc:
        print(f"tinyo-tui: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        recipe, engine = _attach(args)  # an engine already runs on the state file: this console attaches to it
        if engine is None:
            engine = Engine(recipe, db=args.db, execution=execution, max_workers=args.workers,
                            executor_address=args.executor)
    except TinyoError as exc:
        if args.debug:
            raise
        print(f"tinyo-tui: error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    from tinyo.control.server import serve

    from .app import build_app

    # `tinyo events|inject|stop|...` reach an embedded engine as they reach `tinyo run`
    channel = serve(engine) if isinstance(engine, Engine) else None
    app = build_app(engine, theme=args.theme)
    try:
        if engine.execution in (Execution.PROCESSES, Execution.DASK):
            # Start the engine before Textual takes over the terminal: worker processes start from
            # a fork server, which needs the real stderr (inside the app sys.stderr is a capture
            # without a file descriptor). start() is idempotent, so the app's start is a no-op.
            # Thread and inline ops must start inside the app instead: their print() capture wraps
            # whatever sys.stdout is when the engine starts.
            engine.start()
        app.run()
    finally:
        # Whatever ended the app (q, SIGHUP, a lost terminal, a crash), the engine stops gracefully
        # and commits its state; stop() is idempotent, so a clean quit costs nothing here.
        engine.stop(timeout=10.0)
        if channel is not None:
            channel.close()
    return app.return_code or EXIT_OK


def _attach(args: argparse.Namespace):  # noqa: ANN202 - (Recipe, RemoteEngine | None)
    """The recipe, and the engine running on its state file attached to; None when none runs (an error
    with ``--attach``)."""
    from tinyo.control.client import NotRunning
    from tinyo.control.handle import RemoteEngine
    from tinyo.errors import TinyoError
    from tinyo.recipe import load_recipe

    recipe = load_recipe(args.recipe, allow_world_writable=args.allow_world_writable)
    db = args.db or recipe.config.sql_conn
    try:
        return recipe, RemoteEngine(recipe, db)
    except NotRunning as exc:
        if args.attach:
            raise TinyoError(f"{exc}: nothing to attach to (start one with `tinyo start {args.recipe}`)") from None
        return recipe, None


def _textual_themes() -> list[str]:
    from textual.theme import BUILTIN_THEMES

    return list(BUILTIN_THEMES)


if __name__ == "__main__":
    main()
