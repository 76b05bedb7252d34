"""``edgefm merge SWEEP_DIR [--filename results.nc] [--allow-missing]``: a multirun's job datasets into
``SWEEP_DIR/sweep.nc`` (`edgefm.sweep.write_sweep`), e.g. after an interrupted multirun. A job
without a dataset is refused with one line naming its cell, unless ``--allow-missing``."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    """``edgefm merge SWEEP_DIR [--filename results.nc] [--allow-missing]``: write ``SWEEP_DIR/sweep.nc``
    by hand."""
    import argparse
    import sys
    import warnings

    from edgefm.errors import report
    from edgefm.sweep import write_sweep

    parser = argparse.ArgumentParser(
        prog="edgefm merge", description="Merge the job datasets of a multirun folder into <folder>/sweep.nc."
    )
    parser.add_argument("sweep_dir", help="the multirun folder (hydra.sweep.dir)")
    parser.add_argument("--filename", default="results.nc", help="the job dataset name (output.filename)")
    parser.add_argument("--allow-missing", action="store_true",
                        help="merge even if some jobs have no dataset (their cells are nan); without it such a "
                             "folder is refused, naming the missing cells")
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", RuntimeWarning)
            path = write_sweep(args.sweep_dir, args.filename, allow_missing=args.allow_missing)
    except Exception as exc:  # noqa: BLE001
        return report(exc)
    for warning in caught:  # the missing cells of --allow-missing: one line each
        print(f"edgefm: warning: {warning.message}", file=sys.stderr)
    print(path)
    return 0


__all__ = ["main"]
