"""``edgefm merge SWEEP_DIR [--filename results.nc]``: a multirun's job datasets into
``SWEEP_DIR/sweep.nc`` (`edgefm.sweep.write_sweep`), e.g. after an interrupted multirun."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    """``edgefm merge SWEEP_DIR [--filename results.nc]``: write ``SWEEP_DIR/sweep.nc`` by hand."""
    import argparse

    from edgefm.errors import report
    from edgefm.sweep import write_sweep

    parser = argparse.ArgumentParser(
        prog="edgefm merge", description="Merge the job datasets of a multirun folder into <folder>/sweep.nc."
    )
    parser.add_argument("sweep_dir", help="the multirun folder (hydra.sweep.dir)")
    parser.add_argument("--filename", default="results.nc", help="the job dataset name (output.filename)")
    args = parser.parse_args(argv)
    try:
        path = write_sweep(args.sweep_dir, args.filename)
    except Exception as exc:  # noqa: BLE001
        return report(exc)
    print(path)
    return 0


__all__ = ["main"]
