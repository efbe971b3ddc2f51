"""``python -m omniq``: the ``omniq`` command."""

import sys

from omniq.cli import main

if __name__ == "__main__":
    sys.exit(main())
