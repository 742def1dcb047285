"""Provides the process ``tinyo start`` launches: ``tinyo run`` in its own session, deaf to hang-ups,
its output in a log rotated by size (``logfile``)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time

from .logfile import LOG_MAX_BYTES, capture


def main(argv: list[str] | None = None) -> int:
    # A logout hangs up the terminal's session; this process is in its own, and ignoring SIGHUP as well
    # keeps a stray `kill -HUP` from stopping the service (`tinyo stop` does that, through the channel).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    parser = argparse.ArgumentParser(prog="tinyo-daemon")
    parser.add_argument("recipe")
    parser.add_argument("--db", required=True)
    parser.add_argument("--log", help="the log file, rotated by size (without it: stdout and stderr as given)")
    parser.add_argument("--log-max", type=int, default=LOG_MAX_BYTES, help="bytes past which the log is rotated")
    args = parser.parse_args(argv)
    end_log = capture(args.log, args.log_max) if args.log else None
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"--- {stamp} tinyo start: pid {os.getpid()}, recipe {args.recipe}, state file {args.db}", flush=True)
    from ..headless import run_headless

    try:
        return run_headless(args.recipe, db=args.db)
    finally:
        if end_log is not None:
            end_log()


if __name__ == "__main__":
    sys.exit(main())
