"""``python -m sync`` is ``gladly-sync``."""

import sys

from sync.cli import main

if __name__ == "__main__":
    sys.exit(main())
