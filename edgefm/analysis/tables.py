"""The report's tables as pandas DataFrames, and a small Markdown renderer.

Every table has one row per *cell* of the group dims (see `edgefm.analysis.open.group_dims`), or per
cell and task type / service / outcome, with the cell's labels as its first columns (the group dims,
then any 1-D non-dimension coordinate along one of them, e.g. ``controller`` along ``strategy``).
Statistics are over the (instance, realisation) values of the cell; nan values (a failed job of a
sweep, a run without finished tasks) are left out and not counted in ``n``.

- `headline_table`: n, mean, standard deviation and 95 % Student-t confidence interval of the mean of
  the on-time rate, the p95 latency, the total cost and the light cost.
- `type_table`: the same for the on-time rate of each task type, with the rate pooled over tasks.
- `violation_table`: per service, the delay-bound violation rate pooled over the light stages
  (Σ violations / Σ bounded), next to the target ε.
- `breakdown_table`: mean time per component on the critical path of on-time and of late tasks,
  weighted by the number of such tasks.
- `tier_table`: which tier binds (``binding_tier``, docs/EXPERIMENTS.md): the mean light instances,
  the largest core utilisation ρ, and the binding tier of most (instance, realisation) values.
- `presets_table`: with a ``closures`` group dim, the on-time rate (mean ± half-width) of every
  other cell, one column per preset.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import xarray as xr
import yaml
from scipy import stats

from edgefm.analysis.open import group_dims

__all__ = [
    "ALL_SERVICES",
    "EPSILON",
    "STAT_COLUMNS",
    "breakdown_table",
    "by_cell",
    "cell_labels",
    "compact_headline",
    "describe",
    "drop_fixed",
    "epsilon_per_cell",
    "fixed_labels",
    "format_value",
    "headline_metrics",
    "headline_table",
    "majority_tiers",
    "presets_table",
    "tier_table",
    "to_markdown",
    "type_table",
    "violation_table",
]

STAT_COLUMNS = ("n", "mean", "std", "ci_low", "ci_high")
CONFIDENCE = 0.95
ALL_SERVICES = "(all)"
EPSILON = "target epsilon"  # the ε column of `violation_table`


# ----------------------------------------------------------------------------------------------
# Cells and statistics


def cell_labels(ds: xr.Dataset, gdims: list[str] | None = None) -> pd.DataFrame:
    """One row per cell of the group dims, in C order (the order of `by_cell`): a column per group
    dim with its label, then a column per 1-D non-dimension coordinate along a group dim."""
    gdims = group_dims(ds) if gdims is None else gdims
    if not gdims:
        return pd.DataFrame(index=range(1))
    positions = np.indices([ds.sizes[d] for d in gdims]).reshape(len(gdims), -1)
    frame = pd.DataFrame({d: ds[d].values[positions[k]] for k, d in enumerate(gdims)})
    for name, coord in ds.coords.items():
        if name not in ds.dims and coord.ndim == 1 and coord.dims[0] in gdims:
            frame[str(name)] = coord.values[positions[gdims.index(coord.dims[0])]]
    return frame


def by_cell(da: xr.DataArray, ds: xr.Dataset, gdims: list[str]) -> np.ndarray:
    """The values of `da` as floats of shape (cells, *other dims of `da` in their order); a group dim
    `da` lacks is broadcast."""
    for d in gdims:
        if d not in da.dims:
            da = da.expand_dims({d: ds.sizes[d]})
    da = da.transpose(*gdims, ...)
    cells = math.prod(ds.sizes[d] for d in gdims)
    return np.asarray(da.values, dtype=float).reshape(cells, *da.shape[len(gdims):])


def describe(samples: np.ndarray) -> pd.DataFrame:
    """n, mean, std (ddof 1) and the 95 % Student-t confidence interval of the mean of each row of
    `samples` (axis 0: cells; the other axes are flattened into the sample); nan values are left out.
    With n < 2 the std and interval are nan; with n = 0 the mean is nan too."""
    x = np.asarray(samples, dtype=float).reshape(len(samples), -1)
    ok = np.isfinite(x)
    n = ok.sum(axis=1)
    total = np.where(ok, x, 0.0).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.where(n > 0, total / n, np.nan)
        squares = np.where(ok, (x - mean[:, None]) ** 2, 0.0).sum(axis=1)
        std = np.where(n > 1, np.sqrt(squares / (n - 1)), np.nan)
        half = stats.t.ppf(0.5 + CONFIDENCE / 2, np.maximum(n - 1, 1)) * std / np.sqrt(n)
    return pd.DataFrame({"n": n, "mean": mean, "std": std, "ci_low": mean - half, "ci_high": mean + half})


def _per_item(cells: pd.DataFrame, column: str, items, rows: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate per-item blocks (one row per cell each) into rows ordered cell by cell."""
    blocks = []
    for item, block in zip(items, rows, strict=True):
        block = pd.concat([cells.reset_index(drop=True), block.reset_index(drop=True)], axis=1)
        block.insert(len(cells.columns), column, item)
        block["_cell"] = range(len(block))
        blocks.append(block)
    table = pd.concat(blocks, ignore_index=True).sort_values("_cell", kind="stable")
    return table.drop(columns="_cell").reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Headline


def headline_metrics(ds: xr.Dataset) -> list[tuple[str, xr.DataArray]]:
    """(label, values over instance×realisation and the group dims) of the headline metrics present:
    on-time rate, p95 latency, total cost, light cost.

    The p95 latency is ``latency_quantile_all`` at the level nearest 0.95; for a dataset without it,
    the largest per-task-type p95 of ``latency_quantile`` (an upper bound of the overall p95), which
    the label says."""
    metrics = [("on-time rate", ds["ontime_rate"])]
    if "latency_quantile_all" in ds:
        p = ds["latency_quantile_all"].sel(quantile=0.95, method="nearest")
        metrics.append((f"p{float(p['quantile']) * 100:g} latency (ms)", p.drop_vars("quantile")))
    elif "latency_quantile" in ds:
        p = ds["latency_quantile"].sel(quantile=0.95, method="nearest")
        label = f"p{float(p['quantile']) * 100:g} latency (ms, max over task types)"
        metrics.append((label, p.drop_vars("quantile").max("task_type", skipna=True)))
    for name, label in (("cost_total", "total cost"), ("cost_light", "light cost")):
        if name in ds:
            metrics.append((label, ds[name]))
    return metrics


def headline_table(ds: xr.Dataset) -> pd.DataFrame:
    """Per cell and metric of `headline_metrics`: n, mean, std, ci_low, ci_high."""
    gdims = group_dims(ds)
    metrics = headline_metrics(ds)
    blocks = [describe(by_cell(da, ds, gdims)) for _, da in metrics]
    return _per_item(cell_labels(ds, gdims), "metric", [label for label, _ in metrics], blocks)


def compact_headline(table: pd.DataFrame) -> pd.DataFrame:
    """`headline_table` as one row per cell: the cell's labels, n of the on-time rate, and
    ``mean ± half-width of the 95 % interval`` (text, the half-width to 2 significant digits) per
    metric."""
    label_columns = list(table.columns[: list(table.columns).index("metric")])
    metrics = list(dict.fromkeys(table["metric"]))
    keys = list(table[label_columns].itertuples(index=False, name=None))
    rows: dict[tuple, dict] = {}
    for key, rec in zip(keys, table.to_dict("records"), strict=True):
        row = rows.setdefault(key, {c: rec[c] for c in label_columns})
        if rec["metric"] == metrics[0]:
            row["n"] = rec["n"]
        half = (rec["ci_high"] - rec["ci_low"]) / 2
        text = format_value(rec["mean"])
        row[rec["metric"]] = text if not np.isfinite(half) else f"{text} ± {format_value(half, 2)}"
    return pd.DataFrame(list(rows.values()), columns=[*label_columns, "n", *metrics])


# ----------------------------------------------------------------------------------------------
# On-time rate by task type


def type_table(ds: xr.Dataset) -> pd.DataFrame | None:
    """Per cell and task type: the statistics of ``ontime_rate_by_type`` over instance×realisation,
    and, with ``tasks_arrived_by_type``, the rate pooled over tasks (Σ rate·arrived / Σ arrived over
    the values with a rate) and the tasks arrived in all. None without ``ontime_rate_by_type``."""
    if "ontime_rate_by_type" not in ds:
        return None
    gdims = group_dims(ds)
    rate = by_cell(ds["ontime_rate_by_type"].transpose(..., "task_type"), ds, gdims)
    arrived = (
        by_cell(ds["tasks_arrived_by_type"].transpose(..., "task_type"), ds, gdims)
        if "tasks_arrived_by_type" in ds else None
    )
    types = [str(t) for t in ds["task_type"].values]
    blocks = []
    for k in range(len(types)):
        block = describe(rate[..., k])
        if arrived is not None:
            r, a = rate[..., k].reshape(len(block), -1), arrived[..., k].reshape(len(block), -1)
            ok = np.isfinite(r) & np.isfinite(a)
            weight = np.where(ok, a, 0.0).sum(axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                block["pooled"] = np.where(ok, r * a, 0.0).sum(axis=1) / weight
            block["tasks arrived"] = np.where(np.isfinite(a), a, 0.0).sum(axis=1)
        blocks.append(block)
    return _per_item(cell_labels(ds, gdims), "task_type", types, blocks)


# ----------------------------------------------------------------------------------------------
# Delay-bound violations and ε


def _epsilon_from_yaml(text) -> float:
    """``controller.epsilon`` of a resolved config (YAML text), or nan."""
    if not isinstance(text, str) or not text.strip():
        return math.nan
    try:
        config = yaml.safe_load(text)
    except yaml.YAMLError:
        return math.nan
    controller = config.get("controller") if isinstance(config, dict) else None
    value = controller.get("epsilon") if isinstance(controller, dict) else None
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def epsilon_per_cell(ds: xr.Dataset, gdims: list[str] | None = None) -> np.ndarray:
    """The target violation probability ε of each cell (nan where the controller has none): the
    label of an ``epsilon`` group dim, else ``controller.epsilon`` in the cell's ``job_config``
    (a sweep), else in the ``config`` attribute (a run)."""
    gdims = group_dims(ds) if gdims is None else gdims
    cells = cell_labels(ds, gdims)
    if "epsilon" in gdims:
        return cells["epsilon"].to_numpy(dtype=float)
    if "job_config" in ds:
        texts = ds["job_config"]
        for d in gdims:
            if d not in texts.dims:
                texts = texts.expand_dims({d: ds.sizes[d]})
        texts = np.asarray(texts.transpose(*gdims).values, dtype=object).reshape(-1)
        return np.array([_epsilon_from_yaml(t) for t in texts], dtype=float)
    return np.full(len(cells), _epsilon_from_yaml(ds.attrs.get("config")))


def violation_table(ds: xr.Dataset) -> pd.DataFrame | None:
    """Per cell and service with delay bounds, and for all services together (``(all)``): the light
    stages with a bound, those whose measured delay exceeded it, the pooled violation rate
    (Σ violations / Σ bounded over instance×realisation) and ε (`epsilon_per_cell`) in the column
    ``target epsilon``. Rows without bounded stages
    (controllers without bounds, core services) are left out.

    Without the counts ``light_bounded``/``light_violations``, the rate is the mean of
    ``violation_rate`` over instance×realisation (and services, for ``(all)``), and the table's
    ``attrs["note"]`` says so. None if the dataset has no violation data.

    With the root counts ``light_bounded_root``/``light_violations_root`` the pooled rates of the
    root stages (a task's first light stage, whose delay includes the wait for its upload) and of
    the other stages are the columns ``root violation rate`` and ``non-root violation rate``."""
    gdims = group_dims(ds)
    counts = "light_bounded" in ds and "light_violations" in ds
    if not counts and "violation_rate" not in ds:
        return None
    services = [str(s) for s in ds["service"].values]
    cells = cell_labels(ds, gdims)

    def pooled(name: str) -> np.ndarray:
        """(cells, services + 1): the count summed over instance×realisation, the last column over services."""
        values = by_cell(ds[name].transpose(..., "service"), ds, gdims)
        values = np.where(np.isfinite(values), values, 0.0).reshape(len(cells), -1, len(services)).sum(axis=1)
        return np.concatenate([values, values.sum(axis=1, keepdims=True)], axis=1)

    def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)

    roots = counts and "light_bounded_root" in ds and "light_violations_root" in ds
    if counts:
        bounded, violations = pooled("light_bounded"), pooled("light_violations")
        rate = ratio(violations, bounded)
        if roots:
            bounded_root, violations_root = pooled("light_bounded_root"), pooled("light_violations_root")
            rate_root = ratio(violations_root, bounded_root)
            rate_other = ratio(violations - violations_root, bounded - bounded_root)
    else:
        values = by_cell(ds["violation_rate"].transpose(..., "service"), ds, gdims)
        values = values.reshape(len(cells), -1, len(services))
        per_service = describe(values.transpose(0, 2, 1).reshape(-1, values.shape[1]))["mean"].to_numpy()
        rate = np.concatenate(
            [per_service.reshape(len(cells), len(services)), describe(values)["mean"].to_numpy()[:, None]], axis=1
        )
    epsilon = epsilon_per_cell(ds, gdims)
    blocks = []
    for k in range(len(services) + 1):
        block = pd.DataFrame({"violation rate": rate[:, k], EPSILON: epsilon})
        if roots:
            block.insert(1, "non-root violation rate", rate_other[:, k])
            block.insert(1, "root violation rate", rate_root[:, k])
        if counts:
            block.insert(0, "violations", violations[:, k])
            block.insert(0, "bounded", bounded[:, k])
        blocks.append(block)
    table = _per_item(cells, "service", [*services, ALL_SERVICES], blocks)
    table = table[np.isfinite(table["violation rate"].to_numpy(dtype=float))].reset_index(drop=True)
    if not counts:
        table.attrs["note"] = "no light_bounded/light_violations counts: the rate is the mean of violation_rate"
    return table


# ----------------------------------------------------------------------------------------------
# Latency breakdown


def breakdown_table(ds: xr.Dataset) -> pd.DataFrame | None:
    """Per cell and outcome (on time, late): the tasks of that outcome in all and the mean time in
    ms per component of ``latency_breakdown`` on their critical path, weighted by the tasks of that
    outcome in each (instance, realisation) (``tasks_<outcome>``, e.g. ``tasks_ontime``), and the
    components' sum ``total``. An outcome without a ``tasks_<outcome>`` count is weighted equally
    per (instance, realisation), and ``attrs["note"]`` says so. None without ``latency_breakdown``."""
    if "latency_breakdown" not in ds:
        return None
    gdims = group_dims(ds)
    cells = cell_labels(ds, gdims)
    components = [str(c) for c in ds["component"].values]
    outcomes = [str(o) for o in ds["outcome"].values]
    values = by_cell(ds["latency_breakdown"].transpose(..., "outcome", "component"), ds, gdims)
    values = values.reshape(len(cells), -1, len(outcomes), len(components))
    blocks, unweighted = [], []
    for k, outcome in enumerate(outcomes):
        if f"tasks_{outcome}" in ds:
            weight = by_cell(ds[f"tasks_{outcome}"], ds, gdims).reshape(len(cells), -1)
        else:
            weight = np.ones(values.shape[:2])
            unweighted.append(outcome)
        weight = np.where(np.isfinite(weight) & (weight > 0), weight, 0.0)
        x = values[:, :, k, :]
        ok = np.isfinite(x) & (weight[..., None] > 0)
        total = np.where(ok, weight[..., None], 0.0).sum(axis=1)
        with np.errstate(invalid="ignore", divide="ignore"):
            means = np.where(ok, x * weight[..., None], 0.0).sum(axis=1) / total
        block = pd.DataFrame(means, columns=components)
        block.insert(0, "tasks", weight.sum(axis=1))
        block["total"] = means.sum(axis=1)
        blocks.append(block)
    table = _per_item(cells, "outcome", outcomes, blocks)
    if unweighted:
        table.attrs["note"] = (
            f"no tasks_<outcome> count for {', '.join(unweighted)}: equal weight per (instance, realisation)"
        )
    return table


# ----------------------------------------------------------------------------------------------
# Which tier binds


def _tier_labels(da: xr.DataArray, ds: xr.Dataset, gdims: list[str]) -> np.ndarray:
    """``binding_tier`` as strings of shape (cells, samples); "" where a cell has no value."""
    for d in gdims:
        if d not in da.dims:
            da = da.expand_dims({d: ds.sizes[d]})
    da = da.transpose(*gdims, ...)
    cells = math.prod(ds.sizes[d] for d in gdims)
    values = np.asarray(da.values, dtype=object).reshape(cells, -1)
    return np.vectorize(lambda v: v if isinstance(v, str) and v not in ("nan",) else "", otypes=[object])(values)


def majority_tiers(ds: xr.Dataset, gdims: list[str] | None = None) -> list[tuple[str, str]]:
    """Per cell (C order of `by_cell`): (the binding tier of most values, a tie to the first by name;
    ``tier k, tier k, ...`` counts in decreasing order); ("", "") for a cell without values or data
    without ``binding_tier``."""
    gdims = group_dims(ds) if gdims is None else gdims
    cells = math.prod(ds.sizes[d] for d in gdims)
    if "binding_tier" not in ds:
        return [("", "")] * cells
    out = []
    for row in _tier_labels(ds["binding_tier"], ds, gdims):
        labels, counts = np.unique([v for v in row if v], return_counts=True)
        if labels.size == 0:
            out.append(("", ""))
            continue
        order = np.argsort(-counts, kind="stable")
        out.append((str(labels[order[0]]), ", ".join(f"{labels[i]} {counts[i]}" for i in order)))
    return out


def tier_table(ds: xr.Dataset) -> pd.DataFrame | None:
    """Per cell: the mean of ``light_instances_mean``, ``light_starved`` and ``core_utilisation_max``
    over the cell's values, the binding tier of most (instance, realisation) values and the counts of each.
    None without ``binding_tier``."""
    if "binding_tier" not in ds:
        return None
    gdims = group_dims(ds)
    table = cell_labels(ds, gdims).reset_index(drop=True)
    for name, label in (("light_instances_mean", "light instances"), ("light_starved", "light starved"),
                        ("core_utilisation_max", "max core rho")):
        if name in ds:
            table[label] = describe(by_cell(ds[name], ds, gdims))["mean"].to_numpy()
    tiers = majority_tiers(ds, gdims)
    table["binding tier"] = [t for t, _ in tiers]
    table["tiers (values)"] = [c for _, c in tiers]
    return table


# ----------------------------------------------------------------------------------------------
# Presets side by side


def presets_table(ds: xr.Dataset) -> pd.DataFrame | None:
    """With a ``closures`` group dim of several values: one row per cell of the other group dims,
    one column per preset with the on-time rate ``mean ± half-width of the 95 % interval`` (and the
    binding tier of most values in brackets when the data have it). None otherwise."""
    if "closures" not in group_dims(ds) or ds.sizes["closures"] < 2:
        return None
    others = [d for d in group_dims(ds) if d != "closures"]
    table = cell_labels(ds, others).reset_index(drop=True) if others else pd.DataFrame(index=range(1))
    for preset in ds["closures"].values:
        sub = ds.sel(closures=preset)
        stats_ = describe(by_cell(sub["ontime_rate"], sub, others))
        tiers = majority_tiers(sub, others)
        column = []
        for (mean, low, high), (tier, _) in zip(stats_[["mean", "ci_low", "ci_high"]].to_numpy(), tiers, strict=True):
            text = format_value(mean)
            if np.isfinite(high - low):
                text += f" ± {format_value((high - low) / 2, 2)}"
            column.append(text + (f" [{tier}]" if tier else ""))
        table[str(preset)] = column
    return table


# ----------------------------------------------------------------------------------------------
# Display


def fixed_labels(ds: xr.Dataset) -> dict[str, object]:
    """The values the same in every cell: group dims of a single value and scalar coordinates (a
    sweep keeps unswept values such as ``placement`` or ``seed`` as those)."""
    fixed = {d: ds[d].values[0] for d in group_dims(ds) if ds.sizes[d] == 1}
    fixed |= {str(n): c.values[()] for n, c in ds.coords.items() if c.ndim == 0}
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in fixed.items()}


def drop_fixed(table: pd.DataFrame, ds: xr.Dataset) -> pd.DataFrame:
    """`table` without the label columns of group dims that have a single value in `ds` (and of
    coordinates along them): the same in every row, they are stated once elsewhere."""
    fixed = {d for d in group_dims(ds) if ds.sizes[d] == 1}
    fixed |= {str(n) for n, c in ds.coords.items() if n not in ds.dims and c.ndim == 1 and c.dims[0] in fixed}
    return table.drop(columns=[c for c in table.columns if c in fixed])


# ----------------------------------------------------------------------------------------------
# Markdown


def format_value(value, digits: int = 4) -> str:
    """A table cell as text: ``—`` for nan/None, integers as is, floats with `digits` significant
    digits (rounded to an integer, without an exponent, from 10^digits on)."""
    if value is None:
        return "—"
    if isinstance(value, bool | np.bool_):
        return str(bool(value))
    if isinstance(value, int | np.integer):
        return str(int(value))
    if isinstance(value, float | np.floating):
        value = float(value)
        if not math.isfinite(value):
            return "—"
        return f"{value:.0f}" if abs(value) >= 10**digits else f"{value:.{digits}g}"
    return str(value)


def to_markdown(df: pd.DataFrame) -> str:
    """`df` as a GitHub Markdown table (no index); numeric columns right-aligned."""
    def cell(value) -> str:
        return format_value(value).replace("|", "\\|").replace("\n", " ")

    header = "| " + " | ".join(cell(c) for c in df.columns) + " |"
    rule = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(df[c]) else "---" for c in df.columns) + "|"
    rows = ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join([header, rule, *rows])
