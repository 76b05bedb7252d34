"""``edgefm report PATH [--out DIR] [--quiet]``: tables, figures and a Markdown summary of a run or sweep.

Prints the headline table and the paths written. Bad input (a missing path, a file that is not an
edgefm dataset) ends with one line ``edgefm: error: ...`` on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import sys

from edgefm.analysis.report import REPORT_DIR, SUMMARY

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgefm report",
        description=(
            "Summarise a run or a sweep: the headline table (on-time rate, p95 latency, costs, with 95 % "
            f"confidence intervals), per-type, violation and latency-breakdown tables in {SUMMARY}, and "
            "the paper's figures as PNG. See docs/REPORT.md."
        ),
    )
    parser.add_argument(
        "path", metavar="PATH",
        help="a .nc dataset, a run folder (with results.nc) or a multirun folder (with sweep.nc)",
    )
    parser.add_argument("--out", metavar="DIR", help=f"output folder (default: {REPORT_DIR}/ beside the data file)")
    parser.add_argument("--quiet", action="store_true", help="print nothing on success")
    return parser


def _print_headline(ds, file) -> None:
    from rich.console import Console
    from rich.table import Table

    from edgefm.analysis.tables import compact_headline, drop_fixed, fixed_labels, format_value, headline_table

    fixed = [f"{k}={format_value(v)}" for k, v in fixed_labels(ds).items()]
    frame = drop_fixed(compact_headline(headline_table(ds)), ds)
    table = Table(title="edgefm report" + (f" ({', '.join(fixed)})" if fixed else ""))
    for column in frame.columns:
        table.add_column(str(column), justify="left" if frame[column].dtype == object else "right")
    for row in frame.itertuples(index=False):
        table.add_row(*(format_value(v) for v in row))
    Console(file=file).print(table)


def main(argv: list[str] | None = None) -> int:
    """Run ``edgefm report``; returns the exit status (0 written, 2 bad input, 1 a bug)."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    from edgefm.analysis.open import data_file, open_results
    from edgefm.analysis.report import write_dataset_report
    from edgefm.errors import report

    try:
        source = data_file(args.path)
        ds = open_results(source)
        written = write_dataset_report(ds, source, args.out)
        if not args.quiet:
            _print_headline(ds, sys.stdout)
            for name, path in written.items():
                print(f"{name}: {path}")
    except Exception as exc:  # noqa: BLE001 (report() prints a bad-input error as one line, a bug with its traceback)
        return report(exc)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
