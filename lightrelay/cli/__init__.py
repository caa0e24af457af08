"""The ``lightrelay`` command (DESIGN.md §7), one module per command group; ``main`` is the entry point.
Every command works on a fresh data dir: the first one that needs the database creates and migrates it."""

from lightrelay.cli import accounts, channels, chat, serve, usage  # noqa: F401  (they register their commands)
from lightrelay.cli.common import main

__all__ = ["main"]
