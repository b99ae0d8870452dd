"""``python3 -m ratedist``: the ``ratedist`` command without the installed entry point."""

import sys

from ratedist.cli import main

if __name__ == "__main__":
    sys.exit(main())
