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
    assert {d: ds[d].item() for d in dims} == {"strategy": "least_loaded+lbrr", **NAMES, "load": 1.5, "seed": 4}
    assert all(ds[v].dims[:7] == dims for v in ds.data_vars)
    assert dataset(fake_run(), strategy="proposed")["strategy"].item() == "proposed"
    assert ds.attrs["solver_status"] == "optimal" and ds.attrs["solver_gap"] == 0.01
    np.testing.assert_array_equal(ds.attrs["placement_demand"], [0, 1, 1, 0])
    assert "placement_note" not in ds.attrs
    assert ds.attrs["strategy"] == "least_loaded+lbrr" and ds.attrs["channel_model"] == "off"
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
