"""Provides the command line of a worker process: ``python -m tinyo._worker_main ...`` (started by the pool)."""

from __future__ import annotations

import json
import sys
from multiprocessing.connection import Connection

from tinyo.children import exit_now
from tinyo.worker import process_main


def main(argv: list[str]) -> None:
    task_fd, result_fd, name, recipe_path, cwd, sys_path = argv
    task_conn = Connection(int(task_fd), readable=True, writable=False)
    result_conn = Connection(int(result_fd), readable=False, writable=True)
    process_main(task_conn, result_conn, name, recipe_path, json.loads(sys_path), cwd)
    exit_now(0)


if __name__ == "__main__":
    main(sys.argv[1:])
