"""`write_report`: the figures and a Markdown summary (``summary.md``) of a run or sweep dataset.

The summary states what the data are (source, group dims and their values, sizes, cells without
data), then the tables of `edgefm.analysis.tables` and links to the figures of
`edgefm.analysis.plots`. Every file is written atomically (temporary file, then ``os.replace``).
docs/REPORT.md describes the contents and how each number is computed.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import pandas as pd
import xarray as xr

from edgefm.analysis import plots
from edgefm.analysis.open import RUN_DIMS, SWEEP_FILE, atomic_path, data_file, group_dims, open_results
from edgefm.analysis.tables import (
    STAT_COLUMNS,
    breakdown_table,
    compact_headline,
    drop_fixed,
    fixed_labels,
    format_value,
    headline_table,
    presets_table,
    tier_table,
    to_markdown,
    type_table,
    violation_table,
)

__all__ = ["REPORT_DIR", "SUMMARY", "figures", "summary_markdown", "write_dataset_report", "write_report"]

REPORT_DIR = "report"
SUMMARY = "summary.md"


def figures(ds: xr.Dataset, out_dir: str | os.PathLike) -> dict[str, Path]:
    """Write every figure the data allow into `out_dir`; name -> path of those written."""
    out = Path(out_dir)
    written = {
        "violins": plots.violins(ds, out / "fig3_violins.png"),
        "load": plots.load_curves(ds, out / "fig4_load.png"),
        "v_tradeoff": plots.v_tradeoff(ds, out / "v_tradeoff.png"),
        **{f"ontime_vs_{d}": plots.dim_curve(ds, d, out / f"ontime_vs_{d}.png") for d in plots.curve_dims(ds)},
        "violation": plots.violation_plot(ds, out / "violations.png"),
        "resilience": plots.resilience(ds, out / "resilience.png"),
    }
    if "closures" in group_dims(ds) and ds.sizes["closures"] > 1:  # Fig. 3 and Fig. 4 per preset
        for preset in ds["closures"].values:
            sub = ds.sel(closures=[preset])
            written[f"violins_{preset}"] = plots.violins(sub, out / f"fig3_violins_{preset}.png")
            written[f"load_{preset}"] = plots.load_curves(sub, out / f"fig4_load_{preset}.png")
    return {name: path for name, path in written.items() if path is not None}


def _section(title: str, table: pd.DataFrame | None, ds: xr.Dataset, intro: str, missing: str) -> list[str]:
    lines = [f"## {title}", "", intro, ""]
    if table is None:
        return [*lines, f"_{missing}_", ""]
    if table.empty:
        return [*lines, "_No rows: the data hold no values for this table._", ""]
    if table.attrs.get("note"):
        lines += [f"_Note: {table.attrs['note']}._", ""]
    return [*lines, to_markdown(drop_fixed(table, ds)), ""]


def closures_line(ds: xr.Dataset) -> str:
    """The closures preset the data were made with (docs/SEMANTICS.md §13), and what differs from it."""
    if "closures" in ds.dims:
        return "Closures: per cell, the `closures` dimension (" + ", ".join(map(str, ds["closures"].values)) + ")."
    name = ds.attrs.get("closures")
    if name is None:
        return "Closures: not recorded (a dataset made before presets existed, or cells of different presets)."
    changed = ds.attrs.get("closures_changed")
    if changed is None:
        return f"Closures: `{name}`, with changes that differ between cells (see `job_config`)."
    return f"Closures: `{name}`" + (f", changed: {changed}." if changed else " (unchanged).")


def summary_markdown(
    ds: xr.Dataset, source: str | os.PathLike, written: dict[str, Path], out_dir: str | os.PathLike
) -> str:
    """The text of ``summary.md`` for `ds` read from `source`, linking the figures `written`
    (paths relative to `out_dir`, where the summary goes)."""
    source = Path(source)
    gdims = group_dims(ds)
    cells = math.prod(ds.sizes[d] for d in gdims)
    sweep = source.name == SWEEP_FILE or any(ds.sizes[d] > 1 for d in gdims)
    headline = headline_table(ds)
    empty = headline[(headline["metric"] == headline["metric"].iloc[0]) & (headline["n"] == 0)]
    lines = [
        f"# edgefm report: {source.parent.name}/{source.name}",
        "",
        f"Source: `{source}` — a {'sweep' if sweep else 'run'} dataset"
        + (f" ({ds.attrs['title']})" if ds.attrs.get("title") else "") + ".",
        "",
        closures_line(ds),
        "",
        "## Data",
        "",
        f"{cells} cell(s) of the group dims. Every statistic is over the instance × realisation values "
        f"of a cell ({ds.sizes['instance']} × {ds.sizes['realisation']}); nan values (a failed job, a "
        "run without finished tasks) are left out and not counted in n. Group dims with a single value "
        "are not repeated in the tables.",
        "",
        to_markdown(pd.DataFrame({
            "group dim": gdims,
            "values": [", ".join(format_value(v) for v in ds[d].values) for d in gdims],
        })),
        "",
        "Sizes: " + ", ".join(f"{d} = {ds.sizes[d]}" for d in RUN_DIMS if d in ds.dims) + ".",
        "",
    ]
    fixed = fixed_labels(ds)
    if fixed:
        lines += ["Same in every cell: " + ", ".join(f"{k} = {format_value(v)}" for k, v in fixed.items()) + ".", ""]
    if not empty.empty:
        lines += [
            f"Cells without any on-time value (failed jobs?): {len(empty)}.", "",
            to_markdown(drop_fixed(empty.drop(columns=["metric", *STAT_COLUMNS]), ds)), "",
        ]
    presets = presets_table(ds)
    if presets is not None:
        lines += [
            "## Presets side by side", "",
            "On-time rate per closures preset (docs/SEMANTICS.md §13): mean ± half-width of the 95 % "
            "Student-t interval over the cell's instance × realisation values; in brackets the binding "
            "tier of most of them (docs/EXPERIMENTS.md). Fig. 3 and Fig. 4 per preset: "
            "`fig3_violins_<preset>.png`, `fig4_load_<preset>.png`.", "",
            to_markdown(drop_fixed(presets, ds)), "",
        ]
    lines += [
        "## Headline", "",
        "Mean ± half-width of the 95 % Student-t confidence interval of the mean; n counts the on-time "
        "rate values.", "",
        to_markdown(drop_fixed(compact_headline(headline), ds)), "",
        "### Details", "",
        to_markdown(drop_fixed(headline, ds)), "",
    ]
    lines += _section(
        "On-time rate by task type", type_table(ds), ds,
        "Statistics of the per-(instance, realisation) rate; `pooled` is Σ on-time / Σ arrived over all "
        "tasks of the type in the cell.",
        "No ontime_rate_by_type in the data.",
    )
    lines += _section(
        "Delay-bound violations", violation_table(ds), ds,
        "Light stages whose measured delay exceeded the delay bound the controller used, pooled over "
        "instance × realisation (Σ violations / Σ bounded), per service and for all services (`(all)`), "
        "next to the target ε. Services and controllers without bounds are left out.",
        "No violation data (violation_rate, light_bounded, light_violations) in the data.",
    )
    lines += _section(
        "Latency breakdown", breakdown_table(ds), ds,
        "Mean ms per finished task spent in each component of its critical path, for on-time and late "
        "tasks, weighted by the tasks of that outcome; `tasks` is their number, `total` the sum.",
        "No latency_breakdown in the data.",
    )
    lines += _section(
        "Which tier binds", tier_table(ds), ds,
        "Per cell: the mean light instances running (`light_instances_mean`), the light services "
        "needed that never ran (`light_starved`), the largest core utilisation ρ (`core_utilisation_max`: "
        "offered core work at the run's load over the placed instances), and the binding tier of most "
        "(instance, realisation) values with the count of each: `starved` if a needed light service "
        "never ran, `core` if max ρ > 1, else the largest group of the late tasks' critical path (`uplink`, "
        "`network`, `core_queue`, `light`, `service`); without late tasks `unfinished` if tasks missed "
        "without finishing (still running at the end, or dropped), else `none` (docs/EXPERIMENTS.md).",
        "No binding_tier in the data (a dataset made before the tier diagnostics).",
    )
    lines += ["## Figures", ""]
    if not written:
        lines += ["_No figure: the data allow none._", ""]
    for name, path in written.items():
        lines += [f"![{name}]({Path(os.path.relpath(path, out_dir)).as_posix()})", ""]
    return "\n".join(lines)


def write_dataset_report(
    ds: xr.Dataset, source: str | os.PathLike, out_dir: str | os.PathLike | None = None
) -> dict[str, Path]:
    """Write the figures and ``summary.md`` of `ds`, read from the file `source`, into `out_dir`
    (default: ``report/`` beside `source`); return ``{"summary": path, <figure name>: path, ...}``."""
    source = Path(source)
    out = source.parent / REPORT_DIR if out_dir is None else Path(out_dir)
    written = figures(ds, out)
    summary = out / SUMMARY
    with atomic_path(summary) as tmp:
        tmp.write_text(summary_markdown(ds, source, written, out), encoding="utf-8")
    return {"summary": summary, **written}


def write_report(path: str | os.PathLike, out_dir: str | os.PathLike | None = None) -> dict[str, Path]:
    """Open the run or sweep at `path` (a ``.nc`` file or a folder, see `open_results`) and write its
    report (`write_dataset_report`) into `out_dir`, by default ``report/`` beside the data file."""
    source = data_file(path)
    return write_dataset_report(open_results(source), source, out_dir)
