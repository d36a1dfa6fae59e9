"""``python -m segstudio`` runs the command-line entry point."""

import sys

from segstudio.cli import main

if __name__ == "__main__":
    sys.exit(main())
