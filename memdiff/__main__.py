"""``python -m memdiff``: the ``memdiff`` command from a source tree with no install (e.g. a GPU machine)."""
from memdiff.cli import entry

entry()
