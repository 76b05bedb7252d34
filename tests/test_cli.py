"""The ``edgefm`` command end to end: a smoke run, reproducibility, a third-party controller run the
way a user would install it, and bad input ending in one line before anything is compiled.

Each engine compile costs ~30 s on a 2-core CPU, so the two runs that compile (a single run, and a
multirun of a third-party controller) start together in a module fixture and share their results.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

from edgefm.cli import main
from edgefm.io import open_run, variable_table
from edgefm.sim import rollout

REPO_ROOT = Path(__file__).resolve().parents[1]
SWEEP_DIMS = ("strategy", "controller", "placement", "channel", "workload", "load", "seed")
TASK_RECORDS = ("task_arrival", "task_finish", "task_type_index", "task_dropped")
TIMEOUT_S = 300
# the strategy these tests were written for, given explicitly (the default strategy may change)
LBRR = ["placement=least_loaded", "controller=lbrr"]


def with_lbrr(overrides: list[str]) -> list[str]:
    """``overrides`` with placement least_loaded and controller lbrr unless they choose their own."""
    chosen = {o.split("=", 1)[0] for o in overrides}
    return [o for o in LBRR if o.split("=", 1)[0] not in chosen] + list(overrides)

THIRD_PARTY_MODULE = '''
"""A controller published outside edgefm: lbrr under another name."""
import edgefm
from edgefm_baselines.lbrr import LBRRController


class MyLBRR(LBRRController):
    """lbrr, packaged by a third party."""

    name = "my_lbrr"


@edgefm.hookimpl
def edgefm_register_controllers():
    return [MyLBRR]
'''


def install_third_party_plugin(site: Path) -> None:
    """A module plus a dist-info with an ``edgefm`` entry point, as pip would leave them."""
    site.mkdir(parents=True, exist_ok=True)
    (site / "my_edgefm_plugin.py").write_text(THIRD_PARTY_MODULE)
    info = site / "my_edgefm_plugin-1.2.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: my-edgefm-plugin\nVersion: 1.2.3\n")
    (info / "entry_points.txt").write_text("[edgefm]\nmy_plugin = my_edgefm_plugin\n")


def cli_env(site: Path | None = None) -> dict[str, str]:
    # the user's edgefm settings do not leak in; the on-disk compile cache does (content-addressed)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEFM_", "HYDRA_")) or k == "EDGEFM_JAX_CACHE"}
    if site is not None:
        env["PYTHONPATH"] = str(site)
    return env


def start(args: list[str], cwd: Path, site: Path | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "edgefm", *args], cwd=cwd, env=cli_env(site),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def data_of(ds: xr.Dataset) -> xr.Dataset:
    """The data variables and coordinates, without the strategy and controller labels and the attributes."""
    out = ds
    for label in ("strategy", "controller"):
        out = out.squeeze(label, drop=True) if label in out.dims else out
    out = out.copy()
    out.attrs = {}
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Run A: ``debug=default seed=3`` with least_loaded + lbrr (single run). Run B: the third-party
    ``my_lbrr`` with least_loaded and ``seed=3``, as a multirun over output.task_records (false,
    true). Run C: the authors' simulator's system, ``closures=authors_code scenario=icc2026
    strategy=proposed``, on a short horizon. All compile; they run together."""
    root = tmp_path_factory.mktemp("cli")
    site = root / "site"
    install_third_party_plugin(site)
    procs = {
        "A": start(["debug=default", "seed=3", "placement=least_loaded", "controller=lbrr",
                    f"hydra.run.dir={root / 'A'}"], root),
        "B": start(
            ["-m", "debug=default", "seed=3", "placement=least_loaded", "controller=my_lbrr",
             "output.task_records=false,true",
             f"hydra.sweep.dir={root / 'B'}"],
            root, site,
        ),
        "C": start(["closures=authors_code", "scenario=icc2026", "strategy=proposed", "sim.arrival_ms=20",
                    "sim.drain_ms=20", "sim.realisations=1", f"hydra.run.dir={root / 'C'}"], root),
    }
    results = {}
    for name, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=TIMEOUT_S)
        results[name] = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    return root, site, results


def test_smoke_run_exits_0_prints_the_summary_and_writes_the_dataset(runs):
    root, _, results = runs
    a = results["A"]
    assert a.returncode == 0, a.stderr
    path = root / "A" / "results.nc"
    for text in ("lbrr (placement least_loaded, controller lbrr)", "on-time rate", "95 % t-interval", "mean cost core / light / total",
                 "list_overflow", "compile + run", str(path)):
        assert text in a.stdout, text
    assert "least_loaded+lbrr" not in a.stdout  # the paper's pair is labelled by its strategy name
    assert path.is_file()
    assert [p.name for p in (root / "A").iterdir() if p.name.startswith(".results")] == []  # no temp file left


def test_the_authors_closures_on_their_frozen_instance_run_end_to_end(runs):
    root, _, results = runs
    c = results["C"]
    assert c.returncode == 0, c.stderr
    assert "authors_code, changed: sim.arrival_ms=20; sim.drain_ms=20" in c.stdout
    ds = open_run(root / "C" / "results.nc")
    assert (ds.attrs["closures"], ds.attrs["closures_changed"]) == ("authors_code", "sim.arrival_ms=20; sim.drain_ms=20")
    assert ds.attrs["scenario"] == "icc2026" and ds.channel.item() == "off" and ds.strategy.item() == "proposed"
    assert ds.sizes["node"] == 10 and ds.sizes["service"] == 15 and int(ds.tasks_arrived.sum()) > 100
    assert int(ds.list_overflow.sum()) == 0 and int(ds.invalid_actions.sum()) == 0


def test_dataset_has_the_variables_dims_and_attributes(runs):
    root, _, _ = runs
    ds = open_run(root / "A" / "results.nc")

    expected = {v.name for v in variable_table("data", core_only=True) if v.name not in TASK_RECORDS}
    assert expected <= set(ds.data_vars)
    assert not set(TASK_RECORDS) & set(ds.data_vars)
    for dim in SWEEP_DIMS:
        assert ds.sizes[dim] == 1
    assert (ds.controller.item(), ds.placement.item(), ds.channel.item(), ds.workload.item()) == (
        "lbrr", "least_loaded", "nakagami", "poisson",
    )
    assert (ds["load"].item(), ds["seed"].item()) == (1.0, 3)
    assert ds.sizes["realisation"] == 2 and ds.sizes["instance"] == 1 and ds.sizes["slot"] == 60
    assert list(ds.node.values) == ["ED1", "ED2", "ES1"] and list(ds.node_kind.values) == ["ED", "ED", "ES"]
    assert list(ds.service_kind.values) == ["light", "core", "core", "light"]
    assert list(ds.user.values) == ["user_ED1", "user_ED2"]
    assert list(ds["quantile"].values) == [0.5, 0.9, 0.95, 0.99]
    np.testing.assert_allclose(ds.slot_start_ms.values, np.arange(60.0))
    assert ds.x_light.dims[-3:] == ("slot", "node", "service")
    core = ds.service_kind == "core"
    assert int(ds.x_light.where(core, 0).sum()) == 0 and int(ds.x_light.sum()) > 0  # core columns are 0
    assert int(ds.parallelism.where(ds.x_light == 0, 0).sum()) == 0  # no instance, no parallelism
    assert int(ds.x_core.where(~core, 0).sum()) == 0 and int(ds.x_core.sum()) > 0
    assert ds.latency_quantile.dims[-2:] == ("task_type", "quantile")
    conserved = ds.tasks_ontime + ds.tasks_late + ds.tasks_unfinished + ds.tasks_dropped
    assert (conserved == ds.tasks_arrived).all()

    attrs = ds.attrs
    config = yaml.safe_load(attrs["config"])
    assert config["seed"] == 3 and config["controller"]["name"] == "lbrr" and config["scenario"]["name"] == "small"
    assert attrs["seed"] == 3 and attrs["strategy"] == "lbrr"
    assert "controller.lbrr=edgefm" in attrs["plugins"] and "placement.least_loaded=edgefm" in attrs["plugins"]
    assert attrs["solver_status"] == "heuristic" and attrs["channel_model"] == "nakagami"
    assert attrs["jax_device"].startswith("cpu") and attrs["seconds_simulate"] > 0
    assert attrs["edgefm_version"] and attrs["history"]


def test_a_third_party_controller_is_listed_and_runs_through_the_cli(runs):
    root, site, results = runs
    b = results["B"]
    assert b.returncode == 0, b.stderr

    listed = subprocess.run([sys.executable, "-m", "edgefm", "plugins", "--kind", "controller"],
                            cwd=root, env=cli_env(site), capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if "my_lbrr" in line)
    assert "my-edgefm-plugin" in row and "1.2.3" in row

    ds = open_run(root / "B" / "0" / "results.nc")
    assert ds.controller.item() == "my_lbrr"
    assert "controller.my_lbrr=my-edgefm-plugin 1.2.3" in ds.attrs["plugins"]
    # my_lbrr inherits lbrr: same seed, same results as run A (another process)
    xr.testing.assert_identical(data_of(ds), data_of(open_run(root / "A" / "results.nc")))


def test_same_seed_gives_identical_datasets_and_task_records_when_asked(runs):
    root, _, results = runs
    assert results["B"].returncode == 0, results["B"].stderr
    plain = open_run(root / "B" / "0" / "results.nc")
    records = open_run(root / "B" / "1" / "results.nc")

    assert set(TASK_RECORDS) <= set(records.data_vars)
    xr.testing.assert_identical(data_of(records.drop_vars([*TASK_RECORDS, "task"])), data_of(plain))

    r = records.squeeze([d for d in SWEEP_DIMS], drop=True)
    arrived = np.isfinite(r.task_arrival).sum("task")
    finished = np.isfinite(r.task_finish).sum("task")
    assert (arrived == r.tasks_arrived).all()  # nothing beyond the recorded list in a smoke run
    assert (finished == r.tasks_ontime + r.tasks_late).all()
    assert (r.task_dropped.sum("task") == r.tasks_dropped).all()
    valid = r.task_type_index >= 0
    assert (valid == np.isfinite(r.task_arrival)).all()
    assert int(r.task_type_index.max()) < r.sizes["task_type"]
    assert r.sizes["task"] == int(r.tasks_arrived.max())


# ----------------------------------------------------------------------------------------------
# Bad input: one line, exit status 2, before any compile


BAD_INPUT = {
    "misspelt plugin name": (["controller=lbrrr"], ["controller", "lbrrr", "lbrr"]),
    "misspelt plugin name key": (["controller.name=lbrrr"], ["controller", "lbrrr", "one of: ga, lbrr", "propavg, proposed"]),
    "negative load": (["workload.load=-1"], ["workload.load", "-1", ">= 0"]),
    "negative arrival rate": (["scenario.user_defaults.arrival_rate=[-1,1]"],
                              ["scenario.user_defaults.arrival_rate", "-1", ">= 0"]),
    "cyclic DAG": (["scenario.task_types.chain.edges=[[preprocess,encoder],[encoder,preprocess]]"],
                   ["scenario.task_types.chain.edges", "acyclic"]),
    "misspelt key": (["sim.realisatons=3"], ["sim.realisatons", "realisations"]),
    "wrong type": (["sim.realisations=abc"], ["sim.realisations", "abc", "Integer"]),
    "unknown plugin option": (["+controller.foo=1"], ["controller.foo", "no options"]),
    "horizon not whole slots": (["sim.arrival_ms=20.5"], ["sim.arrival_ms", "20.5", "multiple"]),
    "negative batch": (["sim.batch=-2"], ["sim.batch", "-2", "integer >= 0"]),
    "unknown closures preset": (["closures=nope"], ["closures", "nope", "authors_code, paper, realistic"]),
    "unknown light order": (["sim.light_order=lifo"], ["sim.light_order", "lifo", "input_arrival", "dispatch"]),
    "unknown root readiness": (["closures.root_ready=upload"], ["root_ready", "upload", "uplink_end", "arrival"]),
    "zero target utilisation": (["placement.target_utilisation=0"], ["placement.target_utilisation", "0", "(0, 1]"]),
    "target utilisation above 1": (["placement.target_utilisation=1.5"], ["placement.target_utilisation", "1.5"]),
    "negative plan load": (["placement.plan_load=-1"], ["placement.plan_load", "-1", "> 0"]),
    "numeric instance-ready term": (["controller=proposed", "controller.instance_ready=1"],
                                    ["controller.instance_ready", "none, drain, max_input"]),
    "unknown candidates": (["controller=proposed", "controller.candidates=some"],
                           ["controller.candidates", "some", "all, least_occupied"]),
    "unknown fading": (["channel.fading=fast"], ["channel.fading", "fast", "block, per_slot"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_ends_with_one_line_and_status_2_before_compiling(case, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("EDGEFM_TRACEBACK", raising=False)
    overrides, expected = BAD_INPUT[case]
    compiled, traced = rollout.TRACE_COUNTER["program"], rollout.TRACE_COUNTER["step"]
    t0 = time.perf_counter()

    status = main(["debug=default", f"hydra.run.dir={tmp_path / 'run'}", *with_lbrr(overrides)])

    elapsed = time.perf_counter() - t0
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert status == 2
    assert len(lines) == 1 and lines[0].startswith("edgefm: error: "), err
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert elapsed < 10
    assert (rollout.TRACE_COUNTER["program"], rollout.TRACE_COUNTER["step"]) == (compiled, traced)
    assert not (tmp_path / "run" / "results.nc").exists()


def test_traceback_only_on_request(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("EDGEFM_TRACEBACK", "1")

    status = main(["debug=default", *LBRR, f"hydra.run.dir={tmp_path}", "workload.load=-1"])

    err = capsys.readouterr().err
    assert status == 2
    assert "Traceback (most recent call last)" in err
    assert err.strip().splitlines()[-1].startswith("edgefm: error: workload.load")


def test_the_console_command_prints_one_line_and_exits_2(tmp_path):
    result = subprocess.run([sys.executable, "-m", "edgefm", "controller=lbrrr"], cwd=tmp_path,
                            env=cli_env(), capture_output=True, text=True, timeout=60)

    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "edgefm: error: controller = 'lbrrr' is invalid: not an option of the config group 'controller'; "
        "one of: ga, lbrr, propavg, proposed (`edgefm plugins` lists the installed components)"
    ]
    assert not (tmp_path / "outputs").exists()


def test_hydra_flags_work(tmp_path, capsys):
    status = main(["--cfg", "job", "controller=lbrr", "seed=5"])

    out = capsys.readouterr().out
    assert status == 0
    config = yaml.safe_load(out)
    assert config["seed"] == 5 and config["controller"] == {"name": "lbrr"}
