"""The report's figures (PNG, matplotlib without pyplot: no display or backend set-up needed).

Each function takes a dataset and an output path, writes the figure atomically and returns the path,
or returns None when the data do not allow the figure:

- `violins` (the paper's Fig. 3): on-time rate and total cost, one violin per value of the series
  dim (below); the points are per-instance means over realisations (the realisations
  themselves when there is a single instance). Other group dims with several values give one panel
  row per combination (up to `MAX_ROWS`, else they are held at their first value).
- `load_curves` (Fig. 4): mean on-time rate and total cost with 95 % intervals vs ``load``; with
  ``binding_tier`` in the data, each on-time point carries the letter of its binding tier.
- `v_tradeoff`: light cost and the time-averaged ``vq_sum`` vs ``V`` (log x).
- `dim_curve`: mean on-time rate vs any other numeric group dim (`curve_dims`).
- `violation_plot`: the pooled delay-bound violation rate vs ε (or, with a single ε, per cell
  with ε marked).
- `resilience`: mean on-time rate (95 % intervals) and stages lost per failure case (``fault``), one
  bar per core placement (``backbone``) — experiment ``resilience``.

In the curves, one line per value of the series dim: the category dim (`category_dim`), or else the
first other group dim with 2 to `MAX_SERIES` values; group dims that are neither the x axis nor the lines are held
at their first value, which the title says.
"""

from __future__ import annotations

import functools
import itertools
import os
from pathlib import Path

import matplotlib
import numpy as np
import xarray as xr
from matplotlib.figure import Figure

from edgefm.analysis.open import atomic_path, group_dims
from edgefm.analysis.tables import (
    ALL_SERVICES,
    EPSILON,
    by_cell,
    describe,
    format_value,
    majority_tiers,
    violation_table,
)

__all__ = [
    "MAX_ROWS",
    "TIER_MARKS",
    "category_dim",
    "curve_dims",
    "dim_curve",
    "load_curves",
    "resilience",
    "v_tradeoff",
    "violation_plot",
    "violins",
]

DPI = 110
WIDTH = 7.5  # inches
MAX_ROWS = 4
MAX_SERIES = 8
# numeric group dims that get a figure of their own, or none (seeds are replicates, not a trend)
_OWN_FIGURE = ("load", "V", "seed")
_STYLE = {"font.size": 8, "axes.titlesize": 8, "legend.fontsize": 7, "figure.titlesize": 9}


# ----------------------------------------------------------------------------------------------
# Helpers


def category_dim(ds: xr.Dataset) -> str | None:
    """The categorical group dim: ``strategy`` if present, else ``controller``, else the first group
    dim with string labels, else None."""
    gdims = group_dims(ds)
    for name in ("strategy", "controller"):
        if name in gdims:
            return name
    return next((d for d in gdims if ds[d].dtype.kind in "OSU"), None)


def curve_dims(ds: xr.Dataset) -> list[str]:
    """Numeric group dims with several values that get a `dim_curve`: all but load, V, seed and the
    category dim."""
    category = category_dim(ds)
    return [
        d for d in group_dims(ds)
        if ds.sizes[d] > 1 and ds[d].dtype.kind in "iuf" and d not in _OWN_FIGURE and d != category
    ]


def _label(value) -> str:
    return format_value(value.item() if isinstance(value, np.generic) else value)


def _hold_first(ds: xr.Dataset, keep: set[str | None]) -> tuple[xr.Dataset, str]:
    """`ds` with every group dim of several values not in `keep` held at its first value, and a
    note naming them ("" if none)."""
    held = [d for d in group_dims(ds) if d not in keep and ds.sizes[d] > 1]
    note = ", ".join(f"{d}={_label(ds[d].values[0])}" for d in held)
    return ds.isel({d: [0] for d in held}), note


def _series_dim(ds: xr.Dataset, x: str | None) -> str | None:
    """The dim whose values are the lines of a curve vs `x` (or the violins): the category dim, else
    the first other group dim with 2 to `MAX_SERIES` values, else None."""
    category = category_dim(ds)
    if category is not None and category != x:
        return category
    return next((d for d in group_dims(ds) if d != x and 1 < ds.sizes[d] <= MAX_SERIES), None)


def _series(ds: xr.Dataset, x: str) -> list[tuple[str | None, xr.Dataset]]:
    """One (label, sub-dataset) per line of a curve vs `x` (a single unlabelled one without a series dim)."""
    dim = _series_dim(ds, x)
    if dim is None:
        return [(None, ds)]
    return [(_value_label(ds, dim, v), ds.isel({dim: [i]})) for i, v in enumerate(ds[dim].values)]


def _value_label(ds: xr.Dataset, dim: str, value) -> str:
    """A value of `dim` as a legend or tick label: bare for the category dim, else ``dim=value``."""
    return _label(value) if dim == category_dim(ds) else f"{dim}={_label(value)}"


def _stats(da: xr.DataArray, ds: xr.Dataset):
    """`describe` of `da` per cell of `ds`'s group dims."""
    return describe(by_cell(da.transpose(..., "instance", "realisation"), ds, group_dims(ds)))


def _time_average(da: xr.DataArray) -> xr.DataArray:
    """Mean over ``slot`` of each (instance, realisation), nan slots left out."""
    count = da.notnull().sum("slot")
    return (da.fillna(0.0).sum("slot") / count).where(count > 0)


def _styled(func):
    """Run a figure function under the report's small font sizes."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with matplotlib.rc_context(_STYLE):
            return func(*args, **kwargs)
    return wrapper


def _figure(rows: int, cols: int, title: str, wide: bool = False) -> tuple[Figure, np.ndarray]:
    width = WIDTH if wide or cols > 1 else WIDTH * 0.65
    fig = Figure(figsize=(width, 0.6 + 2.5 * rows), dpi=DPI, layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False, sharey="col")
    fig.suptitle(title)
    return fig, axes


def _save(fig: Figure, path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI)
    return path


def _curve(ax, ds: xr.Dataset, x: str, values, ylabel: str, log: bool = False) -> bool:
    """Mean ± 95 % interval of `values(sub-dataset)` vs `x`, one line per series; whether any
    point was drawn."""
    drawn = False
    for label, sub in _series(ds, x):
        table = values(sub)
        ok = table["n"].to_numpy() > 0
        if not ok.any():
            continue
        xs = np.asarray(sub[x].values, dtype=float)
        order = [i for i in np.argsort(xs, kind="stable") if ok[i]]  # a sweep's labels: in the jobs' order
        mean = table["mean"].to_numpy()[order]
        half = np.nan_to_num((table["ci_high"] - table["ci_low"]).to_numpy()[order] / 2)
        ax.errorbar(xs[order], mean, yerr=half, marker="o", ms=3, capsize=2, label=label)
        drawn = True
    ax.set_xlabel(x)
    ax.set_ylabel(ylabel)
    if log:
        ax.set_xscale("log")
    ax.grid(alpha=0.3)
    if drawn and _series(ds, x)[0][0] is not None:
        ax.legend()
    return drawn


def _title(text: str, note: str) -> str:
    return f"{text} (at {note})" if note else text


# ----------------------------------------------------------------------------------------------
# Fig. 3: violins


def _points(da: xr.DataArray) -> tuple[np.ndarray, str]:
    """The violin's points of a cell: finite per-instance means over realisations, or the finite
    realisation values of a single instance; and what they are."""
    x = np.asarray(da.transpose("instance", "realisation").values, dtype=float)
    if x.shape[0] > 1:
        means = describe(x)["mean"].to_numpy()
        return means[np.isfinite(means)], "per-instance means over realisations"
    x = x.reshape(-1)
    return x[np.isfinite(x)], "realisations of the single instance"


def _violin_panel(ax, ds: xr.Dataset, dim: str | None, name: str, ylabel: str) -> str:
    if dim is None:
        groups = [("all", ds)]
    else:
        groups = [(_value_label(ds, dim, v), ds.isel({dim: i})) for i, v in enumerate(ds[dim].values)]
    what = ""
    rng = np.random.default_rng(0)
    for pos, (_, sub) in enumerate(groups):
        da = sub[name]
        points, what = _points(da.squeeze([d for d in group_dims(sub) if d in da.dims], drop=True))
        if points.size == 0:
            continue
        if points.size > 1 and np.ptp(points) > 0:
            parts = ax.violinplot([points], positions=[pos], widths=0.7, showmeans=True, showextrema=False)
            for body in parts["bodies"]:
                body.set_alpha(0.35)
        else:
            ax.hlines(points.mean(), pos - 0.3, pos + 0.3, color=f"C{pos % 10}")
        ax.scatter(pos + rng.uniform(-0.08, 0.08, points.size), points, s=6, color="k", alpha=0.6, zorder=3)
    ax.set_xticks(range(len(groups)), [g for g, _ in groups], rotation=20 if len(groups) > 4 else 0)
    ax.set_xlim(-0.6, len(groups) - 0.4)
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    return what


@_styled
def violins(ds: xr.Dataset, path: str | os.PathLike) -> Path | None:
    """Fig. 3: violins of the on-time rate and (if present) the total cost, one per value of the
    series dim (the category dim, else another group dim of a few values)."""
    dim = _series_dim(ds, None)
    others = [d for d in group_dims(ds) if d != dim and ds.sizes[d] > 1]
    combos = list(itertools.product(*(range(ds.sizes[d]) for d in others)))
    note = ""
    if len(combos) > MAX_ROWS:
        ds, note = _hold_first(ds, {dim})
        others, combos = [], [()]
    panels = [("ontime_rate", "on-time rate")] + ([("cost_total", "total cost")] if "cost_total" in ds else [])
    fig, axes = _figure(len(combos), len(panels), "")
    what = ""
    for row, combo in enumerate(combos):
        sub = ds.isel({d: [i] for d, i in zip(others, combo, strict=True)})
        where = ", ".join(f"{d}={_label(ds[d].values[i])}" for d, i in zip(others, combo, strict=True))
        for col, (name, ylabel) in enumerate(panels):
            what = _violin_panel(axes[row, col], sub, dim, name, ylabel) or what
            if where:
                axes[row, col].set_title(where)
    per = f" per {dim}" if dim else ""
    fig.suptitle(_title(f"On-time rate and total cost{per}; points: {what or 'none'}", note))
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------
# Curves


@_styled
def load_curves(ds: xr.Dataset, path: str | os.PathLike) -> Path | None:
    """Fig. 4: mean on-time rate and total cost (95 % intervals) vs ``load``; None unless ``load``
    is a group dim with several values."""
    if "load" not in group_dims(ds) or ds.sizes["load"] < 2:
        return None
    ds, note = _hold_first(ds, {"load", _series_dim(ds, "load")})
    panels = [("ontime_rate", "on-time rate")] + ([("cost_total", "total cost")] if "cost_total" in ds else [])
    fig, axes = _figure(1, len(panels), _title("On-time rate and total cost vs load", note))
    drawn = [
        _curve(axes[0, col], ds, "load", lambda sub, name=name: _stats(sub[name], sub), ylabel)
        for col, (name, ylabel) in enumerate(panels)
    ]
    if any(drawn) and "binding_tier" in ds:
        _mark_tiers(axes[0, 0], ds)
    return _save(fig, path) if any(drawn) else None


# the letter that marks each binding tier (edgefm.results.TIERS) at a point of the load curves
TIER_MARKS = {"starved": "X", "core": "C", "unfinished": "F", "core_queue": "Q", "light": "L", "uplink": "U",
              "network": "N", "service": "S", "none": "-"}


def _mark_tiers(ax, ds: xr.Dataset) -> None:
    """Write the letter of the binding tier of most values (`TIER_MARKS`) above each point of the
    on-time curves, and the key of the letters used under the axis."""
    used = set()
    for _, sub in _series(ds, "load"):
        means = _stats(sub["ontime_rate"], sub)["mean"].to_numpy()
        tiers = majority_tiers(sub)
        for x, mean, (tier, _) in zip(np.asarray(sub["load"].values, float), means, tiers, strict=True):
            if tier and np.isfinite(mean):
                mark = TIER_MARKS.get(tier, "?")
                used.add(tier)
                ax.annotate(mark, (x, mean), textcoords="offset points", xytext=(0, 5), ha="center", fontsize=7)
    if used:
        key = ", ".join(f"{TIER_MARKS.get(t, '?')} = {t}" for t in TIER_MARKS if t in used)
        ax.set_title(f"binding tier: {key}", fontsize=7)


@_styled
def v_tradeoff(ds: xr.Dataset, path: str | os.PathLike) -> Path | None:
    """Light cost and time-averaged virtual-queue backlog ``vq_sum`` vs ``V`` (log x when all V > 0);
    None unless ``V`` is a group dim with several values."""
    if "V" not in group_dims(ds) or ds.sizes["V"] < 2:
        return None
    ds, note = _hold_first(ds, {"V", _series_dim(ds, "V")})
    panels = []
    if "cost_light" in ds:
        panels.append((lambda sub: _stats(sub["cost_light"], sub), "light cost"))
    if "vq_sum" in ds and bool(ds["vq_sum"].notnull().any()):
        panels.append((lambda sub: _stats(_time_average(sub["vq_sum"]), sub), "time-averaged vq_sum (ms)"))
    if not panels:
        return None
    log = bool((np.asarray(ds["V"].values, dtype=float) > 0).all())
    fig, axes = _figure(1, len(panels), _title("Cost-backlog trade-off vs V", note))
    drawn = [_curve(axes[0, col], ds, "V", values, ylabel, log=log) for col, (values, ylabel) in enumerate(panels)]
    return _save(fig, path) if any(drawn) else None


@_styled
def dim_curve(ds: xr.Dataset, dim: str, path: str | os.PathLike) -> Path | None:
    """Mean on-time rate (95 % intervals) vs the numeric group dim `dim`; None unless it has
    several numeric values."""
    if dim not in group_dims(ds) or ds.sizes[dim] < 2 or ds[dim].dtype.kind not in "iuf":
        return None
    ds, note = _hold_first(ds, {dim, _series_dim(ds, dim)})
    fig, axes = _figure(1, 1, _title(f"On-time rate vs {dim}", note))
    drawn = _curve(axes[0, 0], ds, dim, lambda sub: _stats(sub["ontime_rate"], sub), "on-time rate")
    return _save(fig, path) if drawn else None


# ----------------------------------------------------------------------------------------------
# Violations


@_styled
def violation_plot(ds: xr.Dataset, path: str | os.PathLike) -> Path | None:
    """The delay-bound violation rate pooled over all light services of each cell, against ε.

    With ``epsilon`` a group dim of several values: the rate vs ε, one line per series value, and
    the line rate = ε (other group dims held at their first value). Otherwise: a bar per cell with
    its ε dashed. None without violation data."""
    swept = "epsilon" in group_dims(ds) and ds.sizes["epsilon"] > 1
    series = _series_dim(ds, "epsilon")
    note = ""
    if swept:
        ds, note = _hold_first(ds, {"epsilon", series})
    table = violation_table(ds)
    rows = None if table is None else table[table["service"] == ALL_SERVICES]
    if rows is None or rows.empty:
        return None
    eps = rows[EPSILON].to_numpy(dtype=float)
    fig, axes = _figure(1, 1, "", wide=not swept and len(rows) > 4)
    ax = axes[0, 0]
    what = "Delay-bound violation rate, pooled over light services"
    if swept:
        fig.suptitle(_title(f"{what}, vs target ε", note))
        for value, block in rows.groupby(series, sort=False) if series else [(None, rows)]:
            block = block.sort_values(EPSILON)
            label = None if series is None else _value_label(ds, series, value)
            ax.plot(block[EPSILON], block["violation rate"], marker="o", ms=3, label=label)
        lo, hi = np.nanmin(eps), np.nanmax(eps)
        ax.plot([lo, hi], [lo, hi], ls="--", color="grey", label="rate = ε")
        ax.set_xlabel("ε")
        ax.legend()
    else:
        fig.suptitle(f"{what}, per cell (dashes: target ε)")
        category = category_dim(ds)
        varying = [d for d in group_dims(ds) if rows[d].nunique() > 1] or ([category] if category else [])
        labels = [
            ", ".join(_value_label(ds, d, v) for d, v in zip(varying, row, strict=True)) or "all"
            for row in rows[varying].itertuples(index=False)
        ]
        pos = np.arange(len(rows))
        ax.bar(pos, rows["violation rate"], width=0.6, alpha=0.7)
        ax.hlines(eps, pos - 0.4, pos + 0.4, colors="k", linestyles="--")
        tilt = len(rows) > 4
        ax.set_xticks(pos, labels, rotation=30 if tilt else 0, ha="right" if tilt else "center")
    ax.set_ylabel("violation rate")
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


# ----------------------------------------------------------------------------------------------
# Failures


@_styled
def resilience(ds: xr.Dataset, path: str | os.PathLike, x: str = "fault", bars: str = "backbone") -> Path | None:
    """Grouped bars: the mean on-time rate (95 % interval) and the mean number of stages lost per
    failure case `x`, one bar per value of `bars` (other group dims held at their first value);
    None unless both are group dims."""
    gdims = group_dims(ds)
    if x not in gdims or bars not in gdims:
        return None
    ds, note = _hold_first(ds, {x, bars})
    panels = [("ontime_rate", "on-time rate")]
    if "jobs_lost" in ds:
        panels.append(("jobs_lost", "stages lost (per realisation)"))
    fig, axes = _figure(1, len(panels), _title(f"On-time rate per {x}, one bar per {bars}", note), wide=True)
    nx, nb = ds.sizes[x], ds.sizes[bars]
    width = 0.8 / nb
    for col, (name, ylabel) in enumerate(panels):
        ax = axes[0, col]
        for j in range(nb):
            sub = ds.isel({bars: [j]})
            da = sub[name].sum("slot") if "slot" in sub[name].dims else sub[name]
            table = _stats(da, sub)  # one row per value of x, in order
            mean = table["mean"].to_numpy()
            half = np.nan_to_num((table["ci_high"] - table["ci_low"]).to_numpy() / 2)
            ax.bar(np.arange(nx) + (j - (nb - 1) / 2) * width, mean, width, yerr=half, capsize=2,
                   label=_label(ds[bars].values[j]))
        ax.set_xticks(range(nx), [_label(v) for v in ds[x].values], rotation=20 if nx > 4 else 0)
        ax.set_xlabel(x)
        ax.set_ylabel(ylabel)
        ax.grid(axis="y", alpha=0.3)
    axes[0, 0].legend(title=bars)
    return _save(fig, path)
