"""``edgefm report``: moved to `edgefm.cli.report` (this name stays importable and runnable)."""

from edgefm.cli.report import main

__all__ = ["main"]

if __name__ == "__main__":
    raise SystemExit(main())
