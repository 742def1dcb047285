"""Provides the command line of a worker process: ``python -m tinyo._worker_main ...`` (started by the pool)."""

from __future__ import annotations

import json
import sys
from tinyo.children import exit_now
from tinyo.pipe import Pipe
from tinyo.worker_process import process_main


def main(argv: list[str]) -> None:
    task_fd, result_fd, name, recipe_path, cwd, sys_path = argv
    process_main(Pipe(int(task_fd)), Pipe(int(result_fd)), name, recipe_path, json.loads(sys_path), cwd)
    exit_now(0)


if __name__ == "__main__":
    main(sys.argv[1:])
