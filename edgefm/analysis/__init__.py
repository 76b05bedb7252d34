"""Analysis of run and sweep datasets: `open_results`, the report's tables, figures and summary.

``edgefm report PATH`` (`edgefm.cli_report`) calls `write_report`; docs/REPORT.md describes the
contents. The submodules are imported on use: `edgefm.analysis.open`, `edgefm.analysis.tables`,
`edgefm.analysis.plots` (matplotlib), `edgefm.analysis.report`.
"""

from __future__ import annotations

from edgefm.analysis.open import group_dims, open_results

__all__ = ["group_dims", "open_results", "write_report"]


def __getattr__(name: str):
    if name == "write_report":
        from edgefm.analysis.report import write_report

        return write_report
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
