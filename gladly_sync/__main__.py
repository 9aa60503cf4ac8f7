"""``python -m gladly_sync`` is ``gladly-sync``."""

import sys

from gladly_sync.sync.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
