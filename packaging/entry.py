"""Entry point of the frozen (PyInstaller) application."""

import multiprocessing
import sys

from segstudio.cli import main

if __name__ == "__main__":
    # training runs in a spawned child process: the frozen executable must
    # recognise that it was started as such a child
    multiprocessing.freeze_support()
    sys.exit(main())
