"""Results I/O: the variable table, to_dataset, atomic netCDF writes, multirun collection."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
import xarray as xr
from xarray.backends import netCDF4_

import edgefm
from edgefm.io import (
    Variable,
    collect,
    get_variable,
    is_sweep_dim,
    markdown_table,
    open_run,
    register_variable,
    standard_attrs,
    to_dataset,
    unregister_variable,
    variable_table,
    write_netcdf_atomic,
)

SIZES = dict(instance=2, realisation=3, slot=4, node=3, service=2, task_type=2, user=2, resource=4,
             quantile=3, task=5, outcome=2, component=3, link=2)


def make_coords() -> dict:
    return {
        "instance": np.arange(SIZES["instance"]),
        "realisation": np.arange(SIZES["realisation"]),
        "slot": np.arange(SIZES["slot"]),
        "slot_start_ms": np.arange(SIZES["slot"]) * 12.5,
        "node": ["ed0", "ed1", "es0"],
        "node_kind": ["ED", "ED", "ES"],
        "service": ["llm_core", "adapter"],
        "service_kind": ["core", "light"],
        "task_type": ["chat", "vision"],
        "user": ["u0", "u1"],
        "resource": ["cpu", "ram", "gpu", "vram"],
        "quantile": [0.5, 0.9, 0.99],
        "task": np.arange(SIZES["task"]),
        "outcome": ["ontime", "late"],
        "component": ["uplink", "network", "light_service"],
        "link": ["ed0-es0", "ed1-es0"],
    }


def make_arrays(rng: np.random.Generator) -> dict:
    """One array per data variable of the core table, with its shape; integer ones get integers,
    string ones labels."""
    arrays = {}
    for row in variable_table("data"):
        shape = tuple(SIZES[d] for d in row.dims)
        if row.dtype == "str":
            arrays[row.name] = rng.choice(["core", "light"], size=shape)
        elif np.dtype(row.dtype).kind in "iu":
            arrays[row.name] = rng.integers(0, 50, size=shape)
        else:
            arrays[row.name] = rng.random(shape)
    arrays["latency_mean"][0, 0, 1] = np.nan  # no finished task of that type
    return arrays


def make_run(controller: str = "lbrr", load: float = 1.0, seed: int = 0) -> xr.Dataset:
    attrs = standard_attrs(
        config_yaml=f"controller: {controller}\nload: {load}\n",
        seed=seed,
        plugins={"edgefm_baselines": "0.1.0", "edgefm_channels": "0.1.0"},
        extra={"solver_status": "optimal", "solver_gap": 0.0, "warm_start": True, "note": None,
               "grid": {"a": [1, 2]}},
    )
    sweep = {"controller": controller, "placement": "least_loaded", "load": load, "seed": seed}
    rng = np.random.default_rng([seed, int(load * 100), sum(map(ord, controller))])  # distinct jobs
    return to_dataset(make_arrays(rng), make_coords(), attrs, sweep)


# ---- round trip ----------------------------------------------------------------------------------

def test_round_trip_keeps_values_dtypes_attrs_and_units(tmp_path):
    ds = make_run()
    path = write_netcdf_atomic(ds, tmp_path / "run.nc")
    back = open_run(path)

    xr.testing.assert_identical(back, ds)
    for row in variable_table():
        if row.name not in ds.variables:
            continue
        if row.dtype == "str":
            assert back[row.name].dtype.kind in "OU"
        else:
            assert back[row.name].dtype == np.dtype(row.dtype), row.name
        assert back[row.name].attrs.get("units", "") == row.units
        assert back[row.name].attrs["long_name"] == row.long_name
    assert back["x_light"].dtype == np.int32
    assert np.isnan(back["latency_mean"].values[0, 0, 0, 0, 0, 0, 1])
    # compressed on disk
    with xr.open_dataset(path, engine="netcdf4") as raw:
        assert raw["x_light"].encoding["zlib"] is True
    assert back.attrs["warm_start"] == 1 and back.attrs["note"] == ""
    assert json.loads(back.attrs["grid"]) == {"a": [1, 2]}
    assert back.attrs["solver_status"] == "optimal" and back.attrs["seed"] == 0
    assert back.attrs["config"] == "controller: lbrr\nload: 1.0\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.nc"]


def test_dataset_layout():
    ds = make_run()
    # sweep values are length-1 leading dims on every data variable, not on coordinates
    for name, var in ds.data_vars.items():
        assert var.dims[:4] == ("controller", "placement", "load", "seed"), name
        assert var.shape[:4] == (1, 1, 1, 1)
    assert ds["controller"].values.tolist() == ["lbrr"]
    assert ds["load"].values.tolist() == [1.0]
    assert [d for d in ds.dims if is_sweep_dim(ds, d)] == ["controller", "placement", "load", "seed"]
    assert ds["node_kind"].dims == ("node",) and ds["node_kind"].values.tolist() == ["ED", "ED", "ES"]
    assert ds["service_kind"].dims == ("service",)
    assert ds["slot_start_ms"].attrs["units"] == "ms"
    assert ds["tasks_arrived"].dtype == np.int64
    assert ds["cost_total"].attrs == {"long_name": get_variable("cost_total").long_name,
                                      "units": "price units"}


def test_standard_attrs():
    attrs = standard_attrs("a: 1\n", 7, {"zeta": "2.0", "alpha": "1.0"}, {"solver_gap": 0.01})
    assert attrs["source"] == f"edgefm {edgefm.__version__}"
    assert attrs["edgefm_version"] == edgefm.__version__
    assert attrs["plugins"] == "alpha=1.0, zeta=2.0"
    assert attrs["config"] == "a: 1\n" and attrs["seed"] == 7 and attrs["solver_gap"] == 0.01
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", attrs["history"])
    assert attrs["jax_version"] and attrs["jax_device"] and attrs["title"]


# ---- atomic writes -------------------------------------------------------------------------------

def _fail_inside_write(monkeypatch, exc: BaseException, folder):
    """Make the netCDF backend raise `exc` while preparing the 5th variable of the file."""
    real = netCDF4_.NetCDF4DataStore.prepare_variable
    calls = {"n": 0, "tmp_seen": []}

    def failing(self, *args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 5:
            calls["tmp_seen"] = [p.name for p in folder.iterdir() if ".nc.tmp-" in p.name]
            raise exc
        return real(self, *args, **kwargs)

    monkeypatch.setattr(netCDF4_.NetCDF4DataStore, "prepare_variable", failing)
    return calls


@pytest.mark.parametrize("exc", [OSError("disk full"), KeyboardInterrupt()], ids=["error", "interrupt"])
def test_failed_write_leaves_no_file(tmp_path, monkeypatch, exc):
    calls = _fail_inside_write(monkeypatch, exc, tmp_path)
    with pytest.raises(type(exc)):
        write_netcdf_atomic(make_run(), tmp_path / "run.nc")
    # the write really was midway: a hidden temporary file in the same folder existed
    assert len(calls["tmp_seen"]) == 1 and calls["tmp_seen"][0].startswith(".run.nc.tmp-")
    assert list(tmp_path.iterdir()) == []


def test_failed_overwrite_keeps_previous_file(tmp_path, monkeypatch):
    path = write_netcdf_atomic(make_run(load=1.0), tmp_path / "run.nc")
    _fail_inside_write(monkeypatch, KeyboardInterrupt(), tmp_path)
    with pytest.raises(KeyboardInterrupt):
        write_netcdf_atomic(make_run(load=2.0), path)
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == ["run.nc"]
    assert open_run(path)["load"].values.tolist() == [1.0]


# ---- bad input -----------------------------------------------------------------------------------

def test_unknown_variable_is_an_error_that_suggests_register_variable():
    arrays = make_arrays(np.random.default_rng(0))
    arrays["tasks_arived"] = arrays["tasks_arrived"]
    with pytest.raises(ValueError, match=r"'tasks_arived'.*register_variable"):
        to_dataset(arrays, make_coords(), {}, {})


def test_wrong_shape_is_an_error_naming_variable_and_shapes():
    arrays = make_arrays(np.random.default_rng(0))
    arrays["x_core"] = np.zeros((2, 3, 5), dtype=np.int64)
    with pytest.raises(ValueError, match=r"'x_core' has shape \(2, 3, 5\), expected \(2, 3, 2\)"):
        to_dataset(arrays, make_coords(), {}, {})
    with pytest.raises(ValueError, match=r"'cost_total' has shape \(2,\) but dims"):
        to_dataset({"cost_total": np.zeros(2)}, make_coords(), {}, {})


def test_other_bad_input():
    coords = make_coords()
    with pytest.raises(ValueError, match="'tasks_late' holds values that are not exact int64"):
        to_dataset({"tasks_late": np.full((2, 3), 1.5)}, coords, {}, {})
    with pytest.raises(ValueError, match="coords has no 'node'"):
        to_dataset({"x_core": np.zeros((2, 3, 2))}, {"instance": [0, 1], "service": ["a", "b"]})
    with pytest.raises(ValueError, match="'node_kind' has shape \\(2,\\), expected \\(3,\\)"):
        to_dataset({}, {**coords, "node_kind": ["ED", "ES"]})
    with pytest.raises(ValueError, match="repeated"):
        to_dataset({}, {**coords, "node": ["a", "a", "b"]})
    with pytest.raises(ValueError, match="clashes"):
        to_dataset({}, coords, {}, {"node": "x"})


# ---- multirun ------------------------------------------------------------------------------------

def test_sweep_dims_combine_across_controller_and_load(tmp_path):
    # common random numbers: every job of the grid uses seed 0
    jobs = {(c, load): make_run(c, load) for c in ("lbrr", "proposed") for load in (1.0, 2.0)}
    paths = [write_netcdf_atomic(ds, tmp_path / f"job{i}" / "run.nc") for i, ds in enumerate(jobs.values())]

    for combined in (collect(paths[::-1]),
                     xr.combine_by_coords(list(jobs.values()), join="outer", combine_attrs="drop_conflicts")):
        assert combined.sizes["controller"] == 2 and combined.sizes["load"] == 2
        assert combined["controller"].values.tolist() == ["lbrr", "proposed"]
        assert combined["load"].values.tolist() == [1.0, 2.0]
        for (c, load), ds in jobs.items():
            got = combined["cost_total"].sel(controller=c, load=load, placement="least_loaded", seed=0)
            np.testing.assert_array_equal(got.values, ds["cost_total"].values[0, 0, 0, 0])
            assert not np.array_equal(got.values, combined["cost_total"].values[0, 0, 0, 0]) or (
                c, load) == ("lbrr", 1.0)
        assert combined["tasks_arrived"].dtype == np.int64
        # attributes shared by every job stay; the per-job ones (config, seed) are dropped
        assert combined.attrs["solver_status"] == "optimal" and "config" not in combined.attrs


# ---- the table -----------------------------------------------------------------------------------

def test_markdown_lists_every_variable_with_units():
    text = markdown_table()
    rows = {line.split("|")[1].strip(" `"): line.split("|") for line in text.splitlines()[2:]}
    core = {v.name for v in variable_table(core_only=True)}
    # every core row, plus the rows of the built-in plugins (imported by markdown_table), nothing else
    assert core < set(rows) <= {v.name for v in variable_table()}
    assert {"controller_objective", "ga_fitness"} <= set(rows)
    for v in variable_table():
        if v.name in rows:
            assert rows[v.name][4].strip() == (v.units or "—"), v.name
            source = rows[v.name][7].strip()
            assert source == "core" if v.name in core else source.startswith("edgefm_"), v.name
    assert len(core) >= 45


def test_register_variable_extends_the_table_and_clashes_are_errors():
    row = Variable("queue_backlog", ("instance", "realisation", "slot"), "tasks",
                   "virtual queue backlog", "float64")
    register_variable(row, owner="edgefm_lyapunov")
    try:
        assert register_variable(row, owner="edgefm_lyapunov") is row  # reloading is harmless
        with pytest.raises(ValueError, match=r"'queue_backlog' from other_plugin.*edgefm_lyapunov"):
            register_variable(Variable("queue_backlog", ("slot",), "1", "x", "float64"),
                              owner="other_plugin")
        with pytest.raises(ValueError, match=r"'cost_total' from other_plugin.*edgefm core"):
            register_variable(Variable("cost_total", ("slot",), "1", "x", "float64"), owner="other_plugin")
        assert "queue_backlog" in markdown_table()
        ds = to_dataset({"queue_backlog": np.ones((2, 3, 4))}, make_coords(), {}, {"controller": "proposed"})
        assert ds["queue_backlog"].attrs["units"] == "tasks"
    finally:
        unregister_variable("queue_backlog")
    assert "queue_backlog" not in markdown_table()
    with pytest.raises(ValueError, match="core"):
        unregister_variable("cost_total")


def test_collect_warns_about_missing_jobs(tmp_path):
    grid = [("lbrr", 1.0), ("lbrr", 2.0), ("proposed", 1.0)]  # ("proposed", 2.0) failed
    paths = [write_netcdf_atomic(make_run(c, load), tmp_path / f"{i}.nc") for i, (c, load) in enumerate(grid)]
    with pytest.warns(RuntimeWarning, match="3 of the 4 combinations"):
        combined = collect(paths)
    assert np.isnan(combined["cost_total"].sel(controller="proposed", load=2.0)).all()
    assert np.isfinite(combined["cost_total"].sel(controller="proposed", load=1.0)).all()


def test_merged_strings_keep_their_full_width(tmp_path):
    # Each job's file stores its labels at its own fixed width; the merged file must not cut a
    # longer label of one job to the width of another ("starved" read as "starve").
    labels = {1.0: "none", 2.0: "starved"}
    paths = []
    for load, label in labels.items():
        ds = make_run(load=load)
        for row in variable_table("data"):
            if row.dtype == "str":
                ds[row.name] = ds[row.name].copy(data=np.full(ds[row.name].shape, label))
        paths.append(write_netcdf_atomic(ds, tmp_path / f"job{load}" / "run.nc"))
    merged = open_run(write_netcdf_atomic(collect(paths), tmp_path / "sweep.nc"))
    strings = [row.name for row in variable_table("data") if row.dtype == "str"]
    assert strings
    for name in strings:
        for load, label in labels.items():
            assert set(merged[name].sel(load=load).values.ravel().tolist()) == {label}, name
