"""From an `EngineRun` to the run dataset, the merge of plugin additions, and the headline summary.

Layout (every name is a row of `edgefm.io.variables`): per (instance, realisation) counts, rates and
costs; by task type; per slot; ``x_core(instance, node, service)``; ``x_light`` and
``parallelism(instance, realisation, slot, node, service)`` over all services (0 in core columns);
the scenario parameters per instance; per-task records only on request. The swept choices
(controller, placement, channel, workload, load, seed) are length-1 dimensions of every data
variable, so `edgefm.io.collect` rebuilds a multirun.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from edgefm.errors import PluginError
from edgefm.io import standard_attrs, to_dataset, variable_table
from edgefm.scenario.model import RESOURCES
from edgefm.sim.state import BREAKDOWN_COMPONENTS

# Engine outputs over light services only (last axis), expanded to every service.
LIGHT_COLUMN_OUTPUTS = ("x_light", "parallelism", "light_bounded", "light_violations", "light_bounded_root",
                        "light_violations_root")
TASK_RECORDS = ("task_arrival", "task_finish", "task_type_index", "task_dropped")
SWEEP_KINDS = ("controller", "placement", "channel", "workload")


def engine_arrays(run, *, slot_ms: float, task_records: bool = False) -> tuple[dict, dict]:
    """``(arrays, coords)`` for `to_dataset` from an `edgefm.runner.EngineRun`."""
    out = run.outputs
    scenarios = run.scenarios
    sc0 = scenarios[0]
    I, R = np.asarray(out["tasks_arrived"]).shape  # noqa: E741
    T = int(run.sizes.T)
    light = sc0.light_services

    arrays: dict[str, np.ndarray] = {}
    skip = set(LIGHT_COLUMN_OUTPUTS) | set(TASK_RECORDS) | {"task_type"}
    for row in variable_table("data"):
        if row.name in out and row.name not in skip and row.dims[:2] == ("instance", "realisation"):
            arrays[row.name] = np.asarray(out[row.name])
    for name in LIGHT_COLUMN_OUTPUTS:
        if name not in out:
            continue
        values = np.asarray(out[name])  # [..., Ml]
        full = np.zeros(values.shape[:-1] + (sc0.num_services,), values.dtype)
        full[..., light] = values
        arrays[name] = full
    if "light_bounded" in arrays:
        def rate(violations, bounded):  # nan where no stage has a bound
            return np.where(bounded > 0, violations / np.maximum(bounded, 1), np.nan)

        arrays["violation_rate"] = rate(arrays["light_violations"], arrays["light_bounded"])
        if "light_bounded_root" in arrays:
            arrays["violation_rate_root"] = rate(arrays["light_violations_root"], arrays["light_bounded_root"])
            arrays["violation_rate_other"] = rate(arrays["light_violations"] - arrays["light_violations_root"],
                                                  arrays["light_bounded"] - arrays["light_bounded_root"])

    def stack(get) -> np.ndarray:
        return np.stack([np.asarray(get(sc)) for sc in scenarios])

    arrays.update(
        x_core=np.stack([np.asarray(x) for x in run.x_core]),
        capacity=stack(lambda sc: sc.capacity),
        resource_need=stack(lambda sc: sc.resource),
        work=stack(lambda sc: sc.work),
        output_size=stack(lambda sc: sc.output_size),
        core_rate=stack(lambda sc: sc.core_rate),
        light_shape=stack(lambda sc: sc.light_shape),
        light_scale=stack(lambda sc: sc.light_scale),
        deadline=stack(lambda sc: sc.deadline),
        input_size=stack(lambda sc: sc.input_size),
        arrival_rate=stack(lambda sc: sc.arrival_rate) * float(run.load),
        user_gateway=stack(lambda sc: sc.user_gateway),
    )
    arrays.update(tier_diagnostics(arrays, scenarios, float(run.load)))
    E = int(np.asarray(sc0.link_ends).shape[0])
    link_up = getattr(run, "link_up", None)
    arrays["link_up"] = (np.ones((I, T, E), np.int8) if link_up is None else np.asarray(link_up)).astype(np.int8)

    users = sc0.meta.get("user_names") or tuple(f"u{i}" for i in range(sc0.num_users))
    coords: dict[str, Any] = {
        "instance": np.arange(I),
        "realisation": np.arange(R),
        "slot": np.arange(T),
        "slot_start_ms": np.arange(T) * float(slot_ms),
        "node": list(sc0.node_names),
        "node_kind": ["ES" if s else "ED" for s in sc0.node_is_server],
        "service": list(sc0.service_names),
        "service_kind": ["core" if c else "light" for c in sc0.service_is_core],
        "task_type": list(sc0.type_names),
        "user": list(users),
        "resource": list(RESOURCES),
        "quantile": np.asarray(run.sizes.quantiles, float),
        "outcome": ["ontime", "late"],
        "component": list(BREAKDOWN_COMPONENTS),
        "link": link_names(sc0),
    }

    if task_records:
        recorded = np.minimum(np.asarray(out["num_tasks"]), np.asarray(out["task_arrival"]).shape[-1])  # [I,R]
        n = int(recorded.max()) if recorded.size else 0
        valid = np.arange(n)[None, None, :] < recorded[:, :, None]
        arrays["task_arrival"] = np.where(valid, np.asarray(out["task_arrival"])[..., :n], np.nan)
        arrays["task_finish"] = np.where(valid, np.asarray(out["task_finish"])[..., :n], np.nan)
        arrays["task_type_index"] = np.where(valid, np.asarray(out["task_type"])[..., :n], -1)
        arrays["task_dropped"] = np.where(valid, np.asarray(out["task_dropped"])[..., :n], False).astype(np.int8)
        coords["task"] = np.arange(n)
    return arrays, coords


# Which tier binds (docs/EXPERIMENTS.md): the late tasks' critical-path components, grouped by tier.
TIER_COMPONENTS = {
    "uplink": ("uplink",),
    "network": ("network",),
    "core_queue": ("core_dispatch_wait", "core_queue"),
    "light": ("light_dispatch_wait", "light_queue"),
    "service": ("core_service", "light_service"),
}
TIERS = ("none", "starved", "core", "unfinished", *TIER_COMPONENTS)


def core_utilisation(sc, x_core, load: float) -> np.ndarray:
    """[M] rho_m: the offered work of core service m at ``load`` over its placed instances,
    Σ_{u,n uses m} λ_{u,n} · load · a_m / f_m / Σ_v x_core[v,m] -- the mean busy instances of the
    demand the placements size (`edgefm.scenario.hostable.busy_instances`) over those placed; nan for
    light and unused services, inf for a used core service without an instance."""
    from edgefm.scenario.hostable import busy_instances, service_use

    core = np.asarray(sc.service_is_core, bool) & service_use(sc).any(0)
    busy = busy_instances(sc) * float(load)  # [M] instances busy on average at the run's load
    placed = np.asarray(x_core, float).sum(0)
    with np.errstate(divide="ignore", invalid="ignore"):
        rho = np.where(placed > 0, busy / np.where(placed > 0, placed, 1.0), np.inf)
    return np.where(core, rho, np.nan)


def light_starved(x_light, scenario, arrived_by_type=None) -> np.ndarray:
    """[...] int: the light services that tasks needed and that never ran an instance, on any node
    in any slot (their stages wait for ever). ``x_light[..., T, V, M]``; a service is needed if a task
    type that uses it arrived (``arrived_by_type[..., N]``; every type of the scenario without it)."""
    from edgefm.scenario.hostable import service_use

    uses = service_use(scenario) & ~np.asarray(scenario.service_is_core, bool)[None, :]  # [N,M] light ones
    x = np.asarray(x_light)
    ran = x.reshape(*x.shape[:-3], -1, x.shape[-1]).sum(-2) > 0  # [..., M]
    if arrived_by_type is None:
        needed = np.broadcast_to(uses.any(0), ran.shape)
    else:
        needed = (np.asarray(arrived_by_type)[..., :, None] > 0) & uses  # [..., N, M]
        needed = needed.any(-2)
    return (needed & ~ran).sum(-1)


def binding_tier(rho_max: float, late_breakdown, late_tasks: int, starved: int = 0, never_finished: int = 0) -> str:
    """``starved`` if a light service the tasks needed never ran (``starved`` > 0: `light_starved`);
    ``core`` if rho_max > 1; without late tasks, ``unfinished`` if tasks missed without finishing
    (``never_finished``: unfinished + dropped; e.g. stranded by a failure: no critical path to
    attribute) and ``none`` if none did; else the tier of `TIER_COMPONENTS` with the largest share of
    the late tasks' mean critical path (``late_breakdown``, in the order of BREAKDOWN_COMPONENTS;
    ties go to the first tier listed)."""
    if starved > 0:
        return "starved"
    if rho_max > 1.0:
        return "core"
    parts = np.asarray(late_breakdown, float)
    if late_tasks <= 0 or not np.isfinite(parts).any():
        return "unfinished" if never_finished > 0 else "none"
    index = {c: i for i, c in enumerate(BREAKDOWN_COMPONENTS)}
    shares = {tier: float(np.nansum([parts[index[c]] for c in comps])) for tier, comps in TIER_COMPONENTS.items()}
    return max(shares, key=lambda t: shares[t])


def tier_diagnostics(arrays: Mapping[str, np.ndarray], scenarios, load: float) -> dict[str, np.ndarray]:
    """``light_instances_mean[I,R]``, ``light_starved[I,R]``, ``core_utilisation[I,M]``,
    ``core_utilisation_max[I]`` and ``binding_tier[I,R]`` from the run's arrays (x_light, x_core,
    latency_breakdown, tasks_late, tasks_unfinished, tasks_dropped, tasks_arrived_by_type)."""
    out: dict[str, np.ndarray] = {}
    if "x_light" in arrays:
        out["light_instances_mean"] = np.asarray(arrays["x_light"], float).sum((-2, -1)).mean(-1)
        by_type = arrays.get("tasks_arrived_by_type")
        out["light_starved"] = np.stack([
            light_starved(arrays["x_light"][i], sc, None if by_type is None else by_type[i])
            for i, sc in enumerate(scenarios)])
    rho = np.stack([core_utilisation(sc, x, load) for sc, x in zip(scenarios, arrays["x_core"])])
    out["core_utilisation"] = rho
    rho_max = np.array([np.nanmax(r) if (~np.isnan(r)).any() else np.nan for r in rho])  # nan: no core service used
    out["core_utilisation_max"] = rho_max
    if "latency_breakdown" in arrays and "tasks_late" in arrays:
        breakdown = np.asarray(arrays["latency_breakdown"], float)  # [I,R,outcome,component]
        late = np.asarray(arrays["tasks_late"])
        I, R = late.shape  # noqa: E741
        starved = out.get("light_starved", np.zeros((I, R), int))
        never = sum(np.asarray(arrays.get(k, np.zeros((I, R), int))) for k in ("tasks_unfinished", "tasks_dropped"))
        out["binding_tier"] = np.array(
            [[binding_tier(rho_max[i], breakdown[i, r, 1], int(late[i, r]), int(starved[i, r]), int(never[i, r]))
              for r in range(R)]
             for i in range(I)], dtype=object).astype(str)
    return out


def link_names(sc) -> list[str]:
    """``a-b`` for every link of the scenario (``a-b#2`` ... for parallel links)."""
    names: list[str] = []
    for a, b in np.asarray(sc.link_ends):
        base = f"{sc.node_names[int(a)]}-{sc.node_names[int(b)]}"
        name, k = base, 1
        while name in names:
            k += 1
            name = f"{base}#{k}"
        names.append(name)
    return names


def placement_attrs(info: Mapping) -> dict:
    """Global attributes from a placement's info: ``solver_*`` keys as they are, other strings and
    numbers (scalars or 1-D numeric lists) as ``placement_<key>``; anything else is left out."""
    attrs = {}
    for key, value in info.items():
        name = key if str(key).startswith("solver_") else f"placement_{key}"
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool | int | float | str):
            attrs[name] = value
            continue
        try:
            array = np.asarray(value)
        except Exception:
            continue
        if array.ndim == 1 and array.size and array.dtype.kind in "biuf":
            attrs[name] = array
    return attrs


def engine_size_attrs(run) -> dict:
    """Global attributes of the engine's sizes: ``engine_sizes`` (JSON of `SimSizes`' integer
    sizes, as of the run that gave the results; ``buffer_capacity`` is the task buffer, ``B`` the
    rows the engine held of it) and ``engine_task_rows`` (the rows of each run the adaptive
    capacities made, the last one kept)."""
    sizes = {k: int(v) for k, v in vars(run.sizes).items() if isinstance(v, int) and not isinstance(v, bool)}
    rows = [int(r) for r in getattr(run, "rows_tried", ())] or ([sizes["B"]] if "B" in sizes else [])
    return {"engine_sizes": json.dumps(sizes, sort_keys=True), "engine_task_rows": np.asarray(rows, np.int64)}


def build_dataset(
    run,
    *,
    slot_ms: float,
    names: Mapping[str, str],
    seed: int,
    config_yaml: str,
    plugin_versions: Mapping[str, str],
    task_records: bool = False,
    extra_attrs: Mapping | None = None,
    strategy: str = "",
) -> xr.Dataset:
    """The run dataset of an `EngineRun`.

    ``names`` maps each kind (placement, controller, channel, workload) to the component name;
    ``plugin_versions`` maps ``<kind>.<name>`` to ``"<distribution> <version>"``; ``strategy``
    names the (placement, controller) pair (default ``"<placement>+<controller>"``).
    """
    arrays, coords = engine_arrays(run, slot_ms=slot_ms, task_records=task_records)
    strategy = strategy or strategy_name(names)
    extra = {
        "strategy": strategy,
        "channel_model": names["channel"],
        "workload_model": names["workload"],
        "failure_model": names.get("failure", "none"),
        "load": float(run.load),
        **placement_attrs(run.placement_info[0] if run.placement_info else {}),
        **{f"seconds_{k}": float(v) for k, v in run.seconds.items()},
        **engine_size_attrs(run),
        **(extra_attrs or {}),
    }
    attrs = standard_attrs(config_yaml, seed, plugin_versions, extra)
    sweep = {"strategy": strategy}
    sweep.update({kind: str(names[kind]) for kind in SWEEP_KINDS})
    sweep.update(load=float(run.load), seed=int(seed))
    return to_dataset(arrays, coords, attrs, sweep)


# the (placement, controller) pairs of the paper's four strategies (MODEL.md §8, conf/strategy/)
PAPER_STRATEGIES = {
    ("milp", "proposed"): "proposed", ("milp", "propavg"): "propavg",
    ("least_loaded", "lbrr"): "lbrr", ("least_loaded", "ga"): "ga",
}


def strategy_name(names: Mapping[str, str]) -> str:
    """The strategy label of a run that names none: the paper's name for one of its four pairs (so
    ``edgefm`` and ``edgefm strategy=proposed`` carry the same label), else
    ``"<placement>+<controller>"``."""
    pair = (names["placement"], names["controller"])
    return PAPER_STRATEGIES.get(pair, f"{pair[0]}+{pair[1]}")


def strategy_label(named: str, names: Mapping[str, str]) -> tuple[str, str | None]:
    """(label, warning) of a run's strategy: ``named`` (the ``strategy`` key) unless it is one of the
    paper's four whose (placement, controller) pair the run does not use (``strategy=proposed
    controller=lbrr``), which is labelled by its pair (`strategy_name`) with a one-line warning; an
    empty ``named`` is `strategy_name`. A strategy of a plugin's own keeps its name."""
    if not named:
        return strategy_name(names), None
    pair = (names["placement"], names["controller"])
    paper_pair = {label: p for p, label in PAPER_STRATEGIES.items()}.get(named)
    if paper_pair is None or paper_pair == pair:
        return named, None
    label = strategy_name(names)
    return label, (f"strategy={named} is placement {paper_pair[0]} + controller {paper_pair[1]}, but this run "
                   f"uses placement {pair[0]} + controller {pair[1]}: labelled {label}")


def merge_plugin_datasets(ds: xr.Dataset, additions: Iterable[xr.Dataset | None], hook: str = "edgefm_dataset_finalize") -> xr.Dataset:
    """Merge what plugins returned from ``hook`` into ``ds``.

    A data variable or global attribute already present (in ``ds`` or from an earlier plugin) is a
    `PluginError`; a coordinate may be repeated only with identical values. A data variable that
    lacks the run's sweep dimensions gets them, so multirun collection keeps working.
    """
    from edgefm.io import is_sweep_dim

    sweep = {d: ds[d].values for d in ds.dims if is_sweep_dim(ds, d)}
    for extra in additions:
        if extra is None:
            continue
        if not isinstance(extra, xr.Dataset):
            raise PluginError(f"{hook}: a plugin returned {type(extra).__name__}, expected an xarray.Dataset or None")
        for name in extra.data_vars:
            if name in ds.variables:
                raise PluginError(f"{hook}: a plugin returned variable {name!r}, which the dataset already has")
        for name, coord in extra.coords.items():
            if name in ds.coords and not ds[name].equals(coord):
                raise PluginError(f"{hook}: a plugin returned coordinate {name!r} with values that differ from the dataset's")
            if name in ds.data_vars:
                raise PluginError(f"{hook}: a plugin returned coordinate {name!r}, which the dataset has as a variable")
        for key in extra.attrs:
            if key in ds.attrs:
                raise PluginError(f"{hook}: a plugin returned global attribute {key!r}, which the dataset already has")
        data = {}
        for name, var in extra.data_vars.items():
            missing = {d: v for d, v in sweep.items() if d not in var.dims}
            data[name] = var.expand_dims(missing) if missing else var
        try:
            merged = xr.merge([ds, xr.Dataset(data, coords=extra.coords)], join="exact", combine_attrs="override")
        except (ValueError, xr.MergeError) as exc:
            raise PluginError(f"{hook}: a plugin returned variables that do not fit the dataset: {exc}") from exc
        merged.attrs = {**ds.attrs, **extra.attrs}
        ds = merged
    return ds


def summarise_run(run, names: Mapping[str, str], strategy: str = "") -> dict[str, Any]:
    """Headline metrics as plain Python scalars (the table printed at the end of a run)."""
    from scipy import stats

    out = run.outputs
    rate = np.asarray(out["ontime_rate"], float).ravel()
    n = rate.size
    mean = float(rate.mean()) if n else math.nan
    if n > 1:
        half = float(stats.t.ppf(0.975, n - 1) * rate.std(ddof=1) / math.sqrt(n))
    else:
        half = math.nan
    cost = {k: float(np.mean(out[f"cost_{k}"])) for k in ("core", "light", "total")}
    return {
        "strategy": strategy or strategy_name(names),
        "placement": names["placement"],
        "controller": names["controller"],
        "samples": int(n),
        "ontime_rate_mean": mean,
        "ontime_rate_ci95_low": mean - half,
        "ontime_rate_ci95_high": mean + half,
        "cost_core_mean": cost["core"],
        "cost_light_mean": cost["light"],
        "cost_total_mean": cost["total"],
        "tasks_arrived": int(np.sum(out["tasks_arrived"])),
        "tasks_dropped": int(np.sum(out["tasks_dropped"])),
        "list_overflow": int(np.sum(out["list_overflow"])),
        "seconds_placement": float(run.seconds.get("placement", math.nan)),
        "seconds_simulate": float(run.seconds.get("simulate", math.nan)),
    }


def print_summary(summary: Mapping[str, Any], file=None) -> None:
    """The summary table (rich); piped output keeps one line per row."""
    import sys

    from rich.console import Console
    from rich.table import Table

    file = sys.stdout if file is None else file
    console = Console(file=file)
    if not console.is_terminal:
        console = Console(file=file, width=10_000)
    s = summary
    table = Table(title="edgefm run", show_header=False)
    table.add_column("metric", no_wrap=True)
    table.add_column("value", no_wrap=True)
    half = (s["ontime_rate_ci95_high"] - s["ontime_rate_ci95_low"]) / 2
    ci = f" ± {half:.4f} (95 % t-interval, n = {s['samples']})" if math.isfinite(half) else f" (n = {s['samples']})"
    rows = [
        ("strategy", f"{s['strategy']} (placement {s['placement']}, controller {s['controller']})"
         if "placement" in s else s["strategy"]),
        *([("closures", str(s["closures"]))] if "closures" in s else []),
        ("on-time rate", f"{s['ontime_rate_mean']:.4f}{ci}"),
        ("mean cost core / light / total", f"{s['cost_core_mean']:.1f} / {s['cost_light_mean']:.1f} / {s['cost_total_mean']:.1f}"),
        ("tasks arrived / dropped", f"{s['tasks_arrived']} / {s['tasks_dropped']}"),
        ("list_overflow", str(s["list_overflow"])),
        ("compile + run", f"{s['seconds_simulate']:.1f} s"),
        ("dataset", str(s.get("dataset", ""))),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table, markup=False, highlight=False)


__all__ = [
    "TIERS",
    "TIER_COMPONENTS",
    "binding_tier",
    "build_dataset",
    "core_utilisation",
    "engine_arrays",
    "merge_plugin_datasets",
    "placement_attrs",
    "print_summary",
    "strategy_label",
    "strategy_name",
    "summarise_run",
    "tier_diagnostics",
]
