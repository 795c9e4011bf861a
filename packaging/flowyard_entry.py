"""The single-file executable's entry point: the ``flowyard`` command, as the console script."""

import multiprocessing
import sys

from flowyard.cli import main

if __name__ == "__main__":
    # A frozen program re-runs this file for any child process a library spawns; this
    # hands such a child to multiprocessing instead of starting a second command line.
    multiprocessing.freeze_support()
    sys.exit(main())
