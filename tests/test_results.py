"""Dataset assembly from an EngineRun (without running the engine), plugin merges and the summary."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr
from scipy import stats

from edgefm.errors import PluginError
from edgefm.io import variable_table
from edgefm.results import build_dataset, merge_plugin_datasets, placement_attrs, summarise_run
from edgefm.runner import EngineRun
from edgefm.scenario import build_scenarios, load_spec

SMALL = Path(__file__).resolve().parents[1] / "conf" / "scenario" / "small.yaml"
I, R, T, J = 2, 3, 5, 7  # noqa: E741
NAMES = {"placement": "least_loaded", "controller": "lbrr", "channel": "off", "workload": "poisson"}


def fake_run(load: float = 1.5) -> EngineRun:
    spec = load_spec(SMALL)
    spec.instances = I
    scenarios = build_scenarios(spec, seed=0)
    sc = scenarios[0]
    V, M, N, Ml = sc.num_nodes, sc.num_services, sc.num_types, len(sc.light_services)
    rng = np.random.default_rng(0)
    quantiles = (0.5, 0.9)
    out = {}
    shapes = {"instance": I, "realisation": R, "slot": T, "task_type": N, "quantile": len(quantiles)}
    for row in variable_table("data"):
        if row.dims[:2] == ("instance", "realisation") and all(d in shapes for d in row.dims) \
                and np.dtype(row.dtype).kind in "iuf":  # numbers (binding_tier is derived, a string)
            shape = tuple(shapes[d] for d in row.dims)
            out[row.name] = rng.integers(0, 9, shape) if np.dtype(row.dtype).kind in "iu" else rng.random(shape)
    out["x_light"] = rng.integers(1, 4, (I, R, T, V, Ml)).astype(np.int32)
    out["parallelism"] = rng.integers(1, 20, (I, R, T, V, Ml)).astype(np.int32)
    out["num_tasks"] = np.array([[3, 5, 0], [4, 1, 2]])
    out["task_arrival"] = rng.random((I, R, J)) * 10
    out["task_finish"] = out["task_arrival"] + 1
    out["task_type"] = rng.integers(0, N, (I, R, J))
    out["task_dropped"] = rng.random((I, R, J)) < 0.3
    out["arrivals"] = np.zeros((I, R, T, sc.num_users, N), np.int32)  # not a table variable: left out
    x_core = [np.where(s.service_is_core, 1, 0) * np.ones((V, M), np.int64) for s in scenarios]
    return EngineRun(
        outputs=out, sizes=SimpleNamespace(T=T, quantiles=quantiles), scenarios=scenarios, x_core=x_core,
        placement_info=[{"solver_status": "optimal", "solver_gap": 0.01, "demand": [0, 1, 1, 0],
                         "note": {"a": 1}}] * I,
        load=load, seconds={"placement": 0.1, "simulate": 2.0},
    )


def dataset(run, **kw) -> xr.Dataset:
    return build_dataset(run, slot_ms=0.5, names=NAMES, seed=4, config_yaml="seed: 4\n",
                         plugin_versions={"controller.lbrr": "edgefm 0.1.0"}, **kw)


def test_light_columns_are_expanded_to_every_service_and_scenario_parameters_stacked():
    run = fake_run()
    ds = dataset(run).squeeze(["strategy", "controller", "placement", "channel", "workload", "load", "seed"], drop=True)
    sc = run.scenarios[0]
    light = sc.light_services

    assert ds.x_light.dims == ("instance", "realisation", "slot", "node", "service")
    np.testing.assert_array_equal(ds.x_light.values[..., light], run.outputs["x_light"])
    assert int(ds.x_light.isel(service=sc.core_services).sum()) == 0
    np.testing.assert_array_equal(ds.parallelism.values[..., light], run.outputs["parallelism"])
    np.testing.assert_allclose(ds.arrival_rate.values[1], run.scenarios[1].arrival_rate * 1.5)  # at the run's load
    np.testing.assert_allclose(ds.capacity.values[1], run.scenarios[1].capacity)
    np.testing.assert_allclose(ds.slot_start_ms.values, np.arange(T) * 0.5)
    assert list(ds.service_kind.values) == ["core" if c else "light" for c in sc.service_is_core]
    assert list(ds.user.values) == list(sc.meta["user_names"])
    assert "arrivals" not in ds and "task_arrival" not in ds


def test_sweep_dims_and_attributes():
    ds = dataset(fake_run(load=1.5))

    dims = ("strategy", "controller", "placement", "channel", "workload", "load", "seed")
    assert {d: ds[d].item() for d in dims} == {"strategy": "lbrr", **NAMES, "load": 1.5, "seed": 4}
    assert all(ds[v].dims[:7] == dims for v in ds.data_vars)
    assert dataset(fake_run(), strategy="proposed")["strategy"].item() == "proposed"
    assert ds.attrs["solver_status"] == "optimal" and ds.attrs["solver_gap"] == 0.01
    np.testing.assert_array_equal(ds.attrs["placement_demand"], [0, 1, 1, 0])
    assert "placement_note" not in ds.attrs
    assert ds.attrs["strategy"] == "lbrr" and ds.attrs["channel_model"] == "off"
    assert ds.attrs["seconds_simulate"] == 2.0 and ds.attrs["seed"] == 4


def test_task_records_are_trimmed_to_the_longest_realisation_and_padded():
    run = fake_run()
    ds = dataset(run, task_records=True).squeeze(["strategy", "controller", "placement", "channel", "workload", "load", "seed"])

    assert ds.sizes["task"] == 5
    valid = np.arange(5)[None, None, :] < run.outputs["num_tasks"][:, :, None]
    assert (np.isfinite(ds.task_arrival.values) == valid).all()
    assert ((ds.task_type_index.values >= 0) == valid).all()
    np.testing.assert_array_equal(ds.task_dropped.values[~valid], 0)
    np.testing.assert_array_equal(ds.task_finish.values[valid], run.outputs["task_finish"][..., :5][valid])
    assert ds.task_dropped.dtype == np.int8


def test_placement_attrs_keep_strings_numbers_and_numeric_lists():
    attrs = placement_attrs({"solver_status": "optimal", "objective": 3.5, "demand": [1, 2], "names": ["a"], "x": None})
    assert set(attrs) == {"solver_status", "placement_objective", "placement_demand"}


def test_plugin_additions_are_merged_with_the_sweep_dims_and_clashes_are_errors():
    ds = dataset(fake_run())
    extra = xr.Dataset(
        {"my_metric": (("instance", "realisation"), np.ones((I, R)))},
        coords={"instance": ds.instance.values},
        attrs={"my_attr": 1},
    )

    merged = merge_plugin_datasets(ds, [None, extra])

    assert merged.my_metric.dims == ds.tasks_arrived.dims and merged.attrs["my_attr"] == 1
    assert set(ds.data_vars) < set(merged.data_vars)
    with pytest.raises(PluginError, match="variable 'cost_total'"):
        merge_plugin_datasets(ds, [xr.Dataset({"cost_total": ((), 1.0)})])
    with pytest.raises(PluginError, match="attribute 'seed'"):
        merge_plugin_datasets(ds, [xr.Dataset(attrs={"seed": 1})])
    with pytest.raises(PluginError, match="variable 'my_metric'"):  # two plugins, same name
        merge_plugin_datasets(ds, [extra, extra.drop_attrs()])
    with pytest.raises(PluginError, match="coordinate 'node'"):
        merge_plugin_datasets(ds, [xr.Dataset(coords={"node": ["a", "b", "c"]})])
    with pytest.raises(PluginError, match="do not fit"):
        merge_plugin_datasets(ds, [xr.Dataset({"bad": (("node",), np.ones(5))})])


def test_summary_has_a_t_interval_over_realisations_and_instances():
    run = fake_run()
    rate = np.array([[0.8, 0.9, 0.7], [0.6, 1.0, 0.8]])
    run.outputs["ontime_rate"] = rate

    summary = summarise_run(run, NAMES)

    half = stats.t.ppf(0.975, 5) * rate.std(ddof=1) / math.sqrt(6)
    assert summary["samples"] == 6
    assert summary["ontime_rate_mean"] == pytest.approx(0.8)
    assert summary["ontime_rate_ci95_high"] - summary["ontime_rate_mean"] == pytest.approx(half)
    assert summary["cost_total_mean"] == pytest.approx(run.outputs["cost_total"].mean())
    assert summary["tasks_dropped"] == int(run.outputs["tasks_dropped"].sum())
    assert all(isinstance(v, int | float | str) for v in summary.values())


def test_violation_rates_of_roots_and_other_light_stages():
    """violation_rate_root = the roots' violations / the roots' counted stages, violation_rate_other
    the same for the rest (the totals less the roots'); nan where nothing is counted and on core."""
    run = fake_run()
    sc = run.scenarios[0]
    light, Ml = sc.light_services, len(sc.light_services)
    bounded = np.zeros((I, R, Ml), int)
    bounded[..., 0], bounded[..., 1] = 10, 4  # service 1: only roots counted
    root = np.zeros_like(bounded)
    root[..., 0], root[..., 1] = 6, 4
    violations, violations_root = np.zeros_like(bounded), np.zeros_like(bounded)
    violations[..., 0], violations_root[..., 0] = 4, 3  # service 0: 4/10; roots 3/6, others 1/4
    violations[..., 1] = violations_root[..., 1] = 1  # service 1: roots 1/4, no other stage
    run.outputs.update(light_bounded=bounded, light_violations=violations, light_bounded_root=root,
                       light_violations_root=violations_root)
    ds = dataset(run).squeeze(["strategy", "controller", "placement", "channel", "workload", "load", "seed"], drop=True)
    np.testing.assert_allclose(ds.violation_rate.values[..., light[:2]], np.broadcast_to([0.4, 0.25], (I, R, 2)))
    np.testing.assert_allclose(ds.violation_rate_root.values[..., light[:2]], np.broadcast_to([0.5, 0.25], (I, R, 2)))
    np.testing.assert_allclose(ds.violation_rate_other.values[..., light[0]], 0.25)
    assert np.isnan(ds.violation_rate_other.values[..., light[1]]).all()
    assert np.isnan(ds.violation_rate_root.values[..., sc.core_services]).all()


def test_strategy_label_names_the_papers_pairs_and_joins_the_others():
    from edgefm.results import strategy_name

    assert strategy_name({"placement": "milp", "controller": "proposed"}) == "proposed"  # the default run
    assert strategy_name({"placement": "least_loaded", "controller": "ga"}) == "ga"
    assert strategy_name({"placement": "milp", "controller": "lbrr"}) == "milp+lbrr"
    assert strategy_name({"placement": "least_loaded", "controller": "proposed"}) == "least_loaded+proposed"


# ------------------------------------------------------------------------------------------------
# Tier diagnostics (docs/EXPERIMENTS.md, "Which tier binds")


def test_core_utilisation_is_the_placements_demand_over_the_placed_instances():
    from edgefm.results import core_utilisation
    from edgefm.scenario.hostable import core_demand, service_use

    run = fake_run(load=1.5)
    sc = run.scenarios[0]
    x = np.zeros((sc.num_nodes, sc.num_services), np.int64)
    used = service_use(sc).any(0) & sc.service_is_core
    m = int(np.flatnonzero(used)[0])
    x[0, m], x[1, m] = 2, 1  # three instances of m
    rho = core_utilisation(sc, x, 1.5)
    # by hand: sum over (user, type) using m of lambda * 1.5 * a_m / f_m, over 3 instances
    users_types = [(u, n) for u in range(sc.num_users) for n in range(sc.num_types) if m in sc.stage_service[n]]
    busy = sum(sc.arrival_rate[u, n] for u, n in users_types) * 1.5 * sc.work[m] / sc.core_rate[m]
    np.testing.assert_allclose(rho[m], busy / 3)
    # the same busy work as the demand the placements size: req_m = ceil(busy at 1x) at plan 1, rho* 1
    assert core_demand(sc)[m] == max(1, math.ceil(busy / 1.5 - 1e-12))
    assert np.isnan(rho[sc.light_services]).all()
    others = [j for j in np.flatnonzero(used) if j != m]
    assert all(np.isinf(rho[j]) for j in others)  # a used core service with no instance


def test_binding_tier_is_core_above_rho_1_else_the_largest_tier_of_the_late_path():
    from edgefm.results import TIER_COMPONENTS, binding_tier
    from edgefm.sim.state import BREAKDOWN_COMPONENTS

    def parts(**ms):
        return [ms.get(c, 0.0) for c in BREAKDOWN_COMPONENTS]

    assert binding_tier(1.2, parts(uplink=50.0), 10) == "core"
    assert binding_tier(0.9, parts(uplink=30.0, light_queue=20.0, light_dispatch_wait=15.0), 10) == "light"
    assert binding_tier(0.9, parts(uplink=30.0, light_queue=20.0), 10) == "uplink"
    assert binding_tier(0.9, parts(core_queue=5.0, core_dispatch_wait=5.0, network=9.0), 3) == "core_queue"
    assert binding_tier(0.9, parts(core_service=8.0, light_service=8.0, network=9.0), 3) == "service"
    assert binding_tier(0.9, [np.nan] * len(BREAKDOWN_COMPONENTS), 0) == "none"
    assert binding_tier(0.5, parts(uplink=1.0), 0) == "none"
    assert binding_tier(1.2, parts(uplink=50.0), 10, starved=1) == "starved"  # before the core
    assert binding_tier(0.5, parts(uplink=1.0), 0, starved=2) == "starved"  # misses that never finish
    assert binding_tier(0.5, [np.nan] * len(BREAKDOWN_COMPONENTS), 0, never_finished=3) == "unfinished"
    assert binding_tier(1.2, [np.nan] * len(BREAKDOWN_COMPONENTS), 0, never_finished=3) == "core"
    assert binding_tier(0.9, parts(uplink=30.0), 10, never_finished=50) == "uplink"  # the late tasks still vote
    assert sorted(c for comps in TIER_COMPONENTS.values() for c in comps) == sorted(BREAKDOWN_COMPONENTS)


def test_a_light_service_that_never_ran_while_its_tasks_arrived_is_starved():
    from edgefm.scenario.hostable import service_use

    run = fake_run()
    sc = run.scenarios[0]
    uses = service_use(sc)
    m = next(int(j) for j in sc.light_services if uses[:, j].any())
    column = list(sc.light_services).index(m)
    run.outputs["x_light"][0, :, :, :, column] = 0  # instance 0: service m never runs
    users = np.flatnonzero(uses[:, m])  # the types that need it
    arrived = np.ones((I, R, sc.num_types), np.int64)
    arrived[0, 1, users] = 0  # realisation 1 of instance 0: none of those types arrived
    run.outputs["tasks_arrived_by_type"] = arrived
    from edgefm.sim.state import BREAKDOWN_COMPONENTS

    run.outputs["latency_breakdown"] = np.ones((I, R, 2, len(BREAKDOWN_COMPONENTS)))
    run.outputs["tasks_late"] = np.ones((I, R), np.int64)
    ds = dataset(run).squeeze(["strategy", "controller", "placement", "channel", "workload", "load", "seed"], drop=True)
    want = np.zeros((I, R), np.int64)
    want[0] = 1
    want[0, 1] = 0
    np.testing.assert_array_equal(ds.light_starved.values, want)
    np.testing.assert_array_equal(ds.binding_tier.values == "starved", want > 0)


def test_the_dataset_holds_the_tier_diagnostics():
    from edgefm.sim.state import BREAKDOWN_COMPONENTS

    run = fake_run(load=1.5)
    late = np.zeros((I, R, 2, len(BREAKDOWN_COMPONENTS)))
    late[..., 1, BREAKDOWN_COMPONENTS.index("uplink")] = 9.0  # the late tasks' path: mostly uplink
    late[..., 1, BREAKDOWN_COMPONENTS.index("light_queue")] = 4.0
    run.outputs["latency_breakdown"] = late
    run.outputs["tasks_late"] = np.ones((I, R), np.int64)
    ds = dataset(run).squeeze(["strategy", "controller", "placement", "channel", "workload", "load", "seed"], drop=True)
    light = run.scenarios[0].light_services
    want = run.outputs["x_light"].sum((-2, -1)).mean(-1)
    np.testing.assert_allclose(ds.light_instances_mean.values, want)
    assert ds.core_utilisation.dims == ("instance", "service") and ds.core_utilisation.attrs["units"] == "1"
    assert np.isnan(ds.core_utilisation.values[:, light]).all()
    np.testing.assert_allclose(ds.core_utilisation_max.values, np.nanmax(ds.core_utilisation.values, axis=1))
    assert ds.binding_tier.dims == ("instance", "realisation")
    from edgefm.results import TIERS

    assert set(np.unique(ds.binding_tier.values)) <= set(TIERS)
    # every core service of the small scenario has one instance per node here (fake_run's x_core)
    rho_max = ds.core_utilisation_max.values
    for i in range(I):
        for r in range(R):
            assert ds.binding_tier.values[i, r] == ("core" if rho_max[i] > 1 else "uplink")


def test_missed_tasks_that_never_finished_without_late_ones_bind_as_unfinished():
    from edgefm.sim.state import BREAKDOWN_COMPONENTS

    run = fake_run(load=0.5)
    run.outputs["latency_breakdown"] = np.full((I, R, 2, len(BREAKDOWN_COMPONENTS)), np.nan)
    run.outputs["tasks_late"] = np.zeros((I, R), np.int64)
    unfinished = np.zeros((I, R), np.int64)
    unfinished[0, 0] = 7  # e.g. stranded by a failure
    dropped = np.zeros((I, R), np.int64)
    dropped[-1, -1] = 2
    run.outputs["tasks_unfinished"], run.outputs["tasks_dropped"] = unfinished, dropped
    ds = dataset(run).squeeze(["strategy", "controller", "placement", "channel", "workload", "load", "seed"], drop=True)
    rho_max = ds.core_utilisation_max.values
    for i in range(I):
        for r in range(R):
            want = "core" if rho_max[i] > 1 else ("unfinished" if unfinished[i, r] + dropped[i, r] else "none")
            assert ds.binding_tier.values[i, r] == want
    assert (ds.binding_tier.values == "unfinished").sum() == 2 - (rho_max[[0, -1]] > 1).sum()
