"""``python -m replay.cli``: the same as ``sandboxctl``."""

from replay.cli import entry

entry()
