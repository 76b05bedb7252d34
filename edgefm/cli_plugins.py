"""``edgefm plugins``: moved to `edgefm.cli.plugins` (this name stays importable and runnable)."""

import sys

from edgefm.cli.plugins import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
