"""``python -m memdiff``: the ``memdiff`` command from a source tree with no install (e.g. a GPU machine)."""
import sys

from memdiff.cli import main

sys.exit(main())
