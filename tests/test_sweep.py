"""Multiruns end to end: every experiment in a shrunken form merged into sweep.nc with the swept
values as dimensions and reported; resume after an interruption without recomputing finished jobs
and without partial files; and `merge_sweep` on hand-made job folders."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from conftest import Lazy, slow_ones

import edgefm.runner
from edgefm.analysis import write_report
from edgefm.cli import main
from edgefm.io import open_run, to_dataset, write_netcdf_atomic
from edgefm.errors import MergeError
from edgefm.sweep import merge_sweep, parse_overrides

# the shapes of `debug=default` in every job (the small scenario, 2 realisations, 60 slots), so
# the engine of each controller compiles once for this file and the CLI tests
SHRINK = ["scenario=small", "scenario.instances=1", "sim.realisations=2", "sim.arrival_ms=20",
          "sim.drain_ms=40", "sim.max_light_instances=4", "output.print_summary=false"]

EXPERIMENTS = {
    # experiment: (sweep overrides that shrink it, expected swept dims and sizes, figures)
    "fig3_strategies": (["strategy=proposed,lbrr"], {"strategy": 2}, ["fig3_violins.png"]),
    "fig4_load": (["strategy=lbrr,proposed", "workload.load=0.5,1.0"], {"strategy": 2, "load": 2},
                  ["fig3_violins.png", "fig4_load.png"]),
    "v_tradeoff": (["controller.V=0.1,10"], {"strategy": 2, "V": 2}, ["v_tradeoff.png"]),
    "sensitivity": (["strategy=proposed", "variant=base,epsilon_0.05"], {"variant": 2},
                    ["fig3_violins.png", "violations.png"]),
    # the small scenario's edge server is ES1 too (down from 50 ms: the last 10 of the 60 slots)
    "resilience": (["backbone=retention,least_loaded", "fault=none,ES1"], {"backbone": 2, "fault": 2},
                   ["resilience.png"]),
}


SLOW_EXPERIMENTS = ("fig4_load", "sensitivity", "resilience")  # fig3_strategies and v_tradeoff stay


@pytest.fixture(scope="module")
def experiments(tmp_path_factory):
    """experiment name -> the folder of its shrunken multirun, run when first asked for."""
    root = tmp_path_factory.mktemp("experiments")

    def make(name: str) -> Path:
        folder = root / name
        status = main(["-m", f"experiment={name}", *SHRINK, *EXPERIMENTS[name][0], f"hydra.sweep.dir={folder}"])
        assert status == 0, name
        return folder

    return Lazy(make)


@pytest.mark.parametrize("name", slow_ones(EXPERIMENTS, SLOW_EXPERIMENTS))
def test_every_experiment_merges_into_one_dataset_and_reports(experiments, name):
    folder = experiments[name]
    _, dims, figures = EXPERIMENTS[name]
    ds = open_run(folder / "sweep.nc")
    swept = {d: ds.sizes[d] for d in ds.dims if d in dims or d in ("controller", "placement", "load", "seed")}
    assert swept == dims  # the swept keys, and only they, are dimensions
    assert ds["ontime_rate"].dims == (*dims, "instance", "realisation")
    assert ds.sizes["instance"] == 1 and ds.sizes["realisation"] == 2
    assert not np.isnan(ds["ontime_rate"].values).any()  # every job merged
    assert ds.attrs["sweep_jobs"] == ds.attrs["sweep_jobs_merged"] == int(np.prod(list(dims.values())))
    # each cell is the job's own dataset
    for job in folder.glob("*/results.nc"):
        overrides = parse_overrides(yaml.safe_load((job.parent / ".hydra" / "overrides.yaml").read_text()))
        run = open_run(job)
        cell = {}
        for dim in dims:
            key = next(k for k in overrides if k == dim or k.endswith("." + dim))
            cell[dim] = overrides[key]
        np.testing.assert_array_equal(ds["ontime_rate"].sel(cell).values, run["ontime_rate"].values.reshape(1, 2))
        assert ds["job_config"].sel(cell).item() == run.attrs["config"]
    # strategy labels keep the experiment's order; controller is a coordinate along strategy
    if name == "fig3_strategies":
        assert list(ds["strategy"].values) == ["proposed", "lbrr"]
        assert list(ds["controller"].values) == ["proposed", "lbrr"]
        assert list(ds["placement"].values) == ["milp", "least_loaded"]
    paths = write_report(folder / "sweep.nc")
    written = {Path(p).name for p in paths.values()}
    for figure in figures:
        assert figure in written and (folder / "report" / figure).is_file(), figure
    summary = Path(paths["summary"]).read_text()
    assert "on-time" in summary.lower() or "ontime" in summary


@pytest.mark.slow
def test_resilience_records_the_failures_of_each_cell(experiments):
    ds = open_run(experiments["resilience"] / "sweep.nc")
    node_up = ds["node_up"].sel(node="ES1")
    assert bool(node_up.sel(fault="none").all())
    down = node_up.sel(fault="ES1")
    assert not bool(down.sel(slot=slice(50, None)).any()) and bool(down.sel(slot=slice(0, 49)).all())
    assert int(ds["jobs_lost"].sel(fault="none").sum()) == 0  # (losses themselves: tests/test_engine_failures.py)
    np.testing.assert_array_equal(ds["invalid_actions"].values, 0)


def test_the_lyapunov_controllers_state_bounds_and_lbrr_does_not(experiments):
    ds = open_run(experiments["fig3_strategies"] / "sweep.nc")
    bounded = ds["light_bounded"].sum(["instance", "realisation", "service"])
    assert bounded.sel(strategy="proposed") > 0 and bounded.sel(strategy="lbrr") == 0
    v = open_run(experiments["v_tradeoff"] / "sweep.nc")
    assert (v["light_bounded"].sum(["instance", "realisation", "service"]) > 0).all()  # propavg too
    rate = ds["violation_rate"].sel(strategy="proposed")
    ok = ds["light_bounded"].sel(strategy="proposed") > 0
    assert np.all((rate.values[ok.values] >= 0) & (rate.values[ok.values] <= 1))
    assert np.all(np.isnan(ds["violation_rate"].sel(strategy="lbrr").values))


# ------------------------------------------------------------------------------------------------
RESUME = ["-m", "debug=default", "placement=least_loaded", "controller=lbrr", *SHRINK]


def test_an_interrupted_multirun_resumes_without_recomputing_and_leaves_no_partial_file(tmp_path, monkeypatch):
    folder = tmp_path / "sweep"
    real = edgefm.runner.run_engine
    calls = []

    def interrupted(*args, **kwargs):
        calls.append(kwargs.get("seed"))
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during the second job
        return real(*args, **kwargs)

    monkeypatch.setattr(edgefm.runner, "run_engine", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main([*RESUME, "seed=0,1", f"hydra.sweep.dir={folder}"])
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.nc")) == ["0/results.nc"]
    assert not [p for p in folder.rglob("*") if ".tmp" in p.name]
    first = (folder / "0" / "results.nc").stat().st_mtime_ns

    calls.clear()
    monkeypatch.setattr(edgefm.runner, "run_engine", lambda *a, **k: (calls.append(k.get("seed")), real(*a, **k))[1])
    assert main([*RESUME, "seed=0,1", f"hydra.sweep.dir={folder}"]) == 0
    assert calls == [1]  # job 0 was not run again
    assert (folder / "0" / "results.nc").stat().st_mtime_ns == first
    ds = open_run(folder / "sweep.nc")
    assert list(ds["seed"].values) == [0, 1] and not np.isnan(ds["ontime_rate"].values).any()

    # a changed config is not "already done" (a traced option: no compile); output.skip_existing=false
    # recomputes everything
    calls.clear()
    assert main([*RESUME, "seed=0", "workload.load=0.9", f"hydra.sweep.dir={folder}"]) == 0
    assert calls == [0]
    calls.clear()
    assert main([*RESUME, "seed=0,1", "output.skip_existing=false", f"hydra.sweep.dir={folder}"]) == 0
    assert calls == [0, 1]


# ------------------------------------------------------------------------------------------------
# merge_sweep on hand-made job folders (no engine)


def fake_job(folder: Path, num: int, overrides: list[str], run_labels: dict, value: float, write=True):
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
    (folder / ".hydra" / "hydra.yaml").write_text(yaml.safe_dump({"hydra": {"job": {"num": num}}}))
    if write:
        ds = to_dataset(
            {"ontime_rate": np.full((1, 2), value), "tasks_arrived": np.full((1, 2), 10)},
            {"instance": [0], "realisation": [0, 1]},
            {"config": f"job: {num}\n"},
            sweep=run_labels,
        )
        write_netcdf_atomic(ds, folder / "results.nc")


def multirun_yaml(folder: Path, task: list[str], params: dict):
    folder.mkdir(parents=True, exist_ok=True)
    cfg = {"hydra": {"overrides": {"task": task}, "sweeper": {"params": params}}}
    (folder / "multirun.yaml").write_text(yaml.safe_dump(cfg))


def run_labels(strategy, controller, load, seed=0):
    return {"strategy": strategy, "controller": controller, "placement": "p", "load": load, "seed": seed}


def test_merge_makes_dimensions_of_the_swept_keys_only(tmp_path):
    multirun_yaml(tmp_path, ["experiment=x", "controller.V=1,0.5"], {"strategy": "b,a"})
    jobs = [(["b", "cb"], 1), (["b", "cb"], 0.5), (["a", "ca"], 1), (["a", "ca"], 0.5)]
    for num, ((strategy, controller), V) in enumerate(jobs):
        fake_job(tmp_path / str(num), num, [f"strategy={strategy}", "experiment=x", f"controller.V={V}"],
                 run_labels(strategy, controller, 1.0), value=num / 10)
    ds = merge_sweep(tmp_path)
    assert ds["ontime_rate"].dims == ("strategy", "V", "instance", "realisation")
    assert list(ds["strategy"].values) == ["b", "a"]  # job order, not sorted
    assert ds["V"].values.tolist() == [1.0, 0.5] and ds["V"].dtype.kind == "f"  # 1 and 0.5: floats
    # controller is a function of strategy alone: a coordinate along strategy
    assert ds["controller"].dims == ("strategy",) and list(ds["controller"].values) == ["cb", "ca"]
    assert ds["load"].ndim == 0 and float(ds["load"]) == 1.0  # constant run label: scalar
    np.testing.assert_array_equal(ds["ontime_rate"].sel(strategy="a", V=0.5).values, [[0.3, 0.3]])
    assert ds["job_config"].sel(strategy="b", V=0.5).item() == "job: 1\n"
    assert "config" not in ds.attrs and ds.attrs["sweep_dims"] == "strategy, V"


def test_merge_of_jobs_with_different_horizons_pads_the_shorter_ones(tmp_path):
    """An arrival-window sweep: the jobs have 3 and 5 slots. The merge pads the per-slot variables of
    the shorter job with nan, and the per-run variables keep no slot dimension."""
    multirun_yaml(tmp_path, ["sim.arrival_ms=3,5"], {})
    for num, slots in enumerate([3, 5]):
        folder = tmp_path / f"sim.arrival_ms={slots}"
        fake_job(folder, num, [f"sim.arrival_ms={slots}"], run_labels("s", "c", 1.0), value=slots / 10, write=False)
        ds = to_dataset(
            {"ontime_rate": np.full((1, 2), slots / 10), "tasks_in_flight": np.arange(2 * slots).reshape(1, 2, slots)},
            {"instance": [0], "realisation": [0, 1], "slot": np.arange(slots)},
            {"config": f"job: {num}\n"}, sweep=run_labels("s", "c", 1.0),
        )
        write_netcdf_atomic(ds, folder / "results.nc")
    ds = merge_sweep(tmp_path)
    assert ds["ontime_rate"].dims == ("arrival_ms", "instance", "realisation")
    np.testing.assert_allclose(ds["ontime_rate"].values[:, 0, 0], [0.3, 0.5])
    assert ds.sizes["slot"] == 5
    short = ds["tasks_in_flight"].sel(arrival_ms=3).values[0, 1]
    np.testing.assert_array_equal(short[:3], [3, 4, 5])
    assert np.isnan(short[3:]).all()
    np.testing.assert_array_equal(ds["tasks_in_flight"].sel(arrival_ms=5).values[0, 1], [5, 6, 7, 8, 9])


def test_merge_refuses_missing_jobs_naming_their_cells_unless_allowed_and_ignores_folders_of_other_commands(
        tmp_path, capsys):
    multirun_yaml(tmp_path, ["workload.load=1,2,3"], {})
    for num, load in enumerate([1, 2, 3]):
        fake_job(tmp_path / f"workload.load={load}", num, [f"workload.load={load}"], run_labels("s", "c", float(load)),
                 value=load / 10, write=load != 2)
    # a folder from an earlier command in the same sweep folder (another override): not merged
    fake_job(tmp_path / "stale", 0, ["workload.load=1", "sim.y_max=3"], run_labels("s", "c", 1.0), value=0.9)
    with pytest.raises(MergeError, match=r"1 of 3 jobs have no results.nc \(failed, lost or not run\): the cell "
                                         r"workload.load=2; nothing merged"):
        merge_sweep(tmp_path)
    # the command: one line naming the cell and the way out, nothing written
    assert main(["merge", str(tmp_path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"edgefm: error: {tmp_path}: 1 of 3 jobs have no results.nc") and "the cell workload.load=2;" in line
    assert "output.resume=last" in line and "--allow-missing" in line, line
    assert not (tmp_path / "sweep.nc").exists()

    # asked for: the missing cells are nan, with a warning naming them
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = merge_sweep(tmp_path, allow_missing=True)
    (warning,) = [w for w in caught if issubclass(w.category, RuntimeWarning)]
    assert "1 of 3 jobs have no results.nc" in str(warning.message) and "the cell workload.load=2;" in str(warning.message)
    assert ds["load"].values.tolist() == [1, 2, 3]
    rate = ds["ontime_rate"].values[:, 0, 0]
    assert rate[0] == pytest.approx(0.1) and np.isnan(rate[1]) and rate[2] == pytest.approx(0.3)
    assert ds.attrs["sweep_jobs"] == 3 and ds.attrs["sweep_jobs_merged"] == 2
    assert main(["merge", str(tmp_path), "--allow-missing"]) == 0
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line == (f"edgefm: warning: {tmp_path}: 1 of 3 jobs have no results.nc (failed, lost or not run): the cell "
                    "workload.load=2; their cells are nan")
    merged = open_run(tmp_path / "sweep.nc")
    assert np.isnan(merged["ontime_rate"].sel(load=2).values).all()
    np.testing.assert_allclose(merged["ontime_rate"].sel(load=3).values, [[0.3, 0.3]])


def test_the_multiruns_merge_refuses_missing_cells_in_one_log_line_unless_output_allow_missing(tmp_path, caplog):
    from omegaconf import OmegaConf

    from edgefm.sweep import MergeCallback

    multirun_yaml(tmp_path, ["seed=0,1"], {})
    for seed in (0, 1):
        fake_job(tmp_path / str(seed), seed, [f"seed={seed}"], run_labels("s", "c", 1.0, seed=seed), value=0.5,
                 write=seed == 0)
    for allow in (False, True):
        caplog.clear()
        config = OmegaConf.create({"hydra": {"sweep": {"dir": str(tmp_path)}},
                                   "output": {"merge": True, "filename": "results.nc", "allow_missing": allow}})
        with caplog.at_level("INFO", logger="edgefm.sweep"):
            MergeCallback().on_multirun_end(config)
        lines = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert len(lines) == 1 and "1 of 2 jobs have no results.nc" in lines[0] and "the cell seed=1;" in lines[0], lines
        if not allow:
            assert lines[0].startswith("edgefm: no sweep dataset written: ") and not (tmp_path / "sweep.nc").exists()
        else:
            assert lines[0].endswith("their cells are nan")
            merged = open_run(tmp_path / "sweep.nc")
            np.testing.assert_allclose(merged["ontime_rate"].sel(seed=0).values, [[0.5, 0.5]])
            assert np.isnan(merged["ontime_rate"].sel(seed=1).values).all()


def test_merge_names_at_most_five_missing_cells(tmp_path):
    multirun_yaml(tmp_path, ["seed=range(0,8)"], {})
    for seed in range(8):
        fake_job(tmp_path / str(seed), seed, [f"seed={seed}"], run_labels("s", "c", 1.0, seed=seed), value=seed / 10,
                 write=seed == 0)
    with pytest.raises(MergeError) as caught:
        merge_sweep(tmp_path)
    assert "7 of 8 jobs have no results.nc (failed, lost or not run): the cells seed=1, seed=2, seed=3, seed=4, " \
           "seed=5 and 2 more; nothing merged" in str(caught.value)


def test_merge_of_a_folder_without_jobs_is_a_one_line_error(tmp_path, capsys):
    assert main(["merge", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgefm: error: sweep folder") and "multirun" in err[0]


def test_parse_overrides_types_and_ignores_hydra_keys():
    got = parse_overrides(["strategy=proposed", "workload.load=1.5", "seed=3", "controller.V=1",
                           "hydra.sweep.dir=/x", "output.merge=false", "+foo=bar"])
    assert got == {"strategy": "proposed", "workload.load": 1.5, "seed": 3, "controller.V": 1, "foo": "bar"}
    assert isinstance(xr.DataArray(1), xr.DataArray)


def test_a_placement_is_solved_once_per_process_for_the_same_instance_and_options():
    from edgefm.runner import solve_placements
    from edgefm.scenario.spec import build_scenarios
    from edgefm_baselines import LeastLoadedPlacement

    class Counting(LeastLoadedPlacement):
        name = "counting_test"
        solves = 0
        reuse = True

        def reusable(self):
            return self.reuse

        def solve(self, scenario, *, slot_ms):
            type(self).solves += 1
            return super().solve(scenario, slot_ms=slot_ms)

    conf = Path(__file__).resolve().parents[1] / "conf" / "scenario" / "small.yaml"
    spec = yaml.safe_load(conf.read_text())
    spec.pop("defaults", None)
    spec["instances"] = 2
    a = build_scenarios(spec, seed=0)
    placement = Counting()
    x1, _ = solve_placements(a, placement, 1.0)
    x2, _ = solve_placements(a, placement, 1.0)  # a multirun over controllers or loads
    assert Counting.solves == 2 and all(np.array_equal(p, q) for p, q in zip(x1, x2))
    solve_placements(build_scenarios(spec, seed=1), placement, 1.0)  # other instances: solved
    solve_placements(a, placement, 2.0)  # another slot length: solved
    assert Counting.solves == 6
    Counting.reuse = False  # e.g. milp with write_model: every job solves
    solve_placements(a, placement, 1.0)
    assert Counting.solves == 8


def test_a_multirun_over_a_traced_option_equals_fresh_processes(tmp_path):
    """The case that once computed with a stale option: a bursty workload's burst_fraction swept
    in one multirun (one compiled program) gives each job the numbers a fresh process gives for
    that value (the traced options are arguments of the compiled program, not constants of it)."""
    import os
    import subprocess
    import sys

    common = ["debug=default", *SHRINK, "placement=least_loaded", "controller=lbrr", "channel=off", "sim.arrival_ms=60",
              "sim.realisations=4", "workload=mmpp", "workload.burst_factor=1.9", "workload.mean_burst_ms=1000"]
    assert main(["-m", *common, "workload.burst_fraction=0.1,0.5", f"hydra.sweep.dir={tmp_path / 'sweep'}"]) == 0
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEFM_", "HYDRA_")) or k == "EDGEFM_JAX_CACHE"}
    arrived = []
    for job, fraction in enumerate(("0.1", "0.5")):
        run_dir = tmp_path / f"fresh{job}"
        done = subprocess.run([sys.executable, "-m", "edgefm", *common, f"workload.burst_fraction={fraction}",
                               f"hydra.run.dir={run_dir}"], env=env, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        swept, fresh = open_run(tmp_path / "sweep" / str(job) / "results.nc"), open_run(run_dir / "results.nc")
        for name in ("tasks_arrived", "tasks_arrived_by_type", "tasks_ontime", "cost_light", "x_light"):
            np.testing.assert_array_equal(swept[name].values, fresh[name].values, err_msg=f"{fraction}: {name}")
        arrived.append(int(swept["tasks_arrived"].sum()))
    assert arrived[0] != arrived[1]  # the option changes the arrivals
