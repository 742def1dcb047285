"""Provides ``run_headless``: the engine without the console, until Ctrl-C or its bounds.

``tinyo run`` (both ways: straight from :mod:`tinyo.cli_direct`, and the full command line), the console's
``--headless``, ``tinyo start``'s engine, the request commands (when no engine runs) and the benchmarks
call it. It starts the workers and the watcher early, reports the bus as text or JSON lines, opens the
control channel, and turns signals into a graceful stop. Kept free of the command line's modules
(typer): ``tinyo run`` starts without them.
"""

from __future__ import annotations

import signal
import sys
import time
from pathlib import Path
from typing import Any

from .errors import TinyoError
from .model import Execution

EXIT_OK, EXIT_OP_FAILED, EXIT_USAGE = 0, 1, 2
"""A command's exit status: done; an op failed (a bounded run); bad input or the engine could not run."""


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
        from .heap import settle
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
    settle()  # what is loaded now lasts as long as the process: out of the garbage collector's sight

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
                    # idle, but not long enough yet or with too few events: sleep until the engine has done
                    # more (gone busy and idle again) or the idle time is up, not in a poll
                    left = idle_exit - (time.monotonic() - idle) if idle_exit is not None else 1.0
                    engine.wait_next_idle(idle, left)
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
