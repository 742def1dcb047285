"""Provides the process ``tinyo start`` launches: ``tinyo run`` in its own session, deaf to hang-ups."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time


def main(argv: list[str] | None = None) -> int:
    # A logout hangs up the terminal's session; this process is in its own, and ignoring SIGHUP as well
    # keeps a stray `kill -HUP` from stopping the service (`tinyo stop` does that, through the channel).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    parser = argparse.ArgumentParser(prog="tinyo-daemon")
    parser.add_argument("recipe")
    parser.add_argument("--db", required=True)
    args = parser.parse_args(argv)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"--- {stamp} tinyo start: pid {os.getpid()}, recipe {args.recipe}, state file {args.db}", flush=True)
    from ..cli import run_headless

    return run_headless(args.recipe, db=args.db)


if __name__ == "__main__":
    sys.exit(main())
