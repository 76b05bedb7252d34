"""``edgefm plugins``: list the installed placement solvers, controllers, channels and workloads."""

from __future__ import annotations

import argparse
import sys

from edgefm.errors import EdgefmError
from edgefm.plugins import KINDS, print_plugins


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgefm plugins",
        description="List the components that installed plugins provide, with the distribution and "
        "version of each. Environment: EDGEFM_DISABLE_PLUGINS=<names> skips entry points or "
        "distributions; EDGEFM_TRACE_PLUGINS=1 traces plugin loading to stderr.",
    )
    parser.add_argument("--kind", choices=KINDS, help="list only this kind of component")
    return parser


def main(argv: list[str]) -> int:
    """Run ``edgefm plugins``; returns the exit status (0 listed, 1 nothing to list, 2 error)."""
    args = _parser().parse_args(argv)
    try:
        return print_plugins(kind=args.kind)
    except EdgefmError as err:
        print(f"edgefm plugins: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
