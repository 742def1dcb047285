"""Provides ``python -m tinyo``: the same command line as ``tinyo``."""

from __future__ import annotations

from .cli_direct import main

if __name__ == "__main__":
    main()
