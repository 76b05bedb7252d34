"""Reliability (issue 19): every input or fault a user gets wrong ends with one line and exit status
2 before anything is compiled, leaves no dataset, and the next run works; a merge cannot mislabel;
a multirun resumes; kills leave no temporary file; a run folder is one run's at a time.

The runs use the shapes of ``debug=default`` with least_loaded + lbrr (one compiled program for the
file, kept by JAX's on-disk cache across processes).
"""

from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml

import edgefm.runner
from edgefm.cli import main
from edgefm.io import open_run, to_dataset, write_netcdf_atomic
from edgefm.sim import rollout

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "conf"
BASE = ["debug=default", "placement=least_loaded", "controller=lbrr", "output.print_summary=false"]
TIMEOUT_S = 300


def env_without_edgefm(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEFM_", "HYDRA_")) or k == "EDGEFM_JAX_CACHE"}
    env.update(extra)
    return env


def one_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("edgefm: error: "), err
    return err[0]


def traces() -> tuple[int, int]:
    return rollout.TRACE_COUNTER["program"], rollout.TRACE_COUNTER["step"]


@pytest.fixture(scope="module")
def good_run(tmp_path_factory):
    """One good run first: the engine is compiled for every later run of this file."""
    folder = tmp_path_factory.mktemp("good") / "run"
    assert main([*BASE, f"hydra.run.dir={folder}"]) == 0
    return folder


def assert_next_run_works(folder: Path, capsys, *extra: str) -> None:
    capsys.readouterr()
    assert main([*BASE, f"hydra.run.dir={folder}", *extra]) == 0, capsys.readouterr().err
    assert (folder / "results.nc").is_file()
    assert not [p for p in folder.iterdir() if ".tmp-" in p.name]


# ----------------------------------------------------------------------------------------------
# Bad input: one line, status 2, nothing compiled or written, the next run works


def own_conf(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "scenario" / "typo_key.yaml").write_text("defaults:\n  - base_scenario\n  - _self_\nname: typo\nnodez: 3\n")
    (conf / "sim" / "typo.yaml").write_text("defaults:\n  - base_sim\n  - _self_\nrealisations: many\n")
    return conf


BAD_INPUT = {
    # a key given with + is checked against the schema
    "+ at the root": (["+sedd=3"], ["sedd", "not a key of the config", "known keys: seed, task"]),
    "+ in sim": (["+sim.realisatons=4"], ["sim.realisatons", "SimConfig", "realisations"]),
    "+ in a nested node": (["+scenario.task_defaults.deadlin=[1,2]"], ["scenario.task_defaults.deadlin", "deadline"]),
    # a file of one's own
    "misspelt key in a file": (["scenario=typo_key"], ["scenario/typo_key.yaml", "scenario.nodez", "known keys: name"]),
    "wrong type in a file": (["sim=typo"], ["sim/typo.yaml", "sim.realisations", "many"]),
    "unknown scenario": (["scenario=nope"], ["scenario = 'nope'", "icc2026, paper, small", "--config-dir",
                                             "hydra.searchpath", "typo_key"]),
    # plausibility
    "deadline shorter than a slot": (["scenario.task_defaults.deadline=[0.2,0.5]"],
                                     ["scenario.task_defaults.deadline", "at least one slot", "sim.slot_ms = 1"]),
    "rates per second": (["scenario=paper", "scenario.user_defaults.arrival_rate=[150,1500]"],
                         ["scenario.user_defaults.arrival_rate", "[150.0, 1500.0]", "whole network", "per second"]),
    # output location
    "run folder under a file": (["hydra.run.dir={tmp}/a_file/run"], ["{tmp}/a_file is a regular file", "hydra.run.dir"]),
    "resume without -m": (["output.resume=last"], ["output.resume", "add -m"]),
}


@pytest.mark.parametrize("case", list(BAD_INPUT))
def test_bad_input_is_one_line_status_2_before_compiling_and_the_next_run_works(case, good_run, tmp_path, capsys,
                                                                               monkeypatch):
    monkeypatch.delenv("EDGEFM_TRACEBACK", raising=False)
    monkeypatch.setenv("EDGEFM_CONFIG_DIR", str(own_conf(tmp_path)))
    (tmp_path / "a_file").write_text("")
    folder = tmp_path / "run"
    overrides, expected = BAD_INPUT[case]
    overrides = [o.replace("{tmp}", str(tmp_path)) for o in overrides]
    before, t0 = traces(), time.perf_counter()

    status = main([*BASE, f"hydra.run.dir={folder}", *overrides])

    line = one_line(capsys)
    assert status == 2
    for text in expected:
        assert text.replace("{tmp}", str(tmp_path)) in line, (text, line)
    assert time.perf_counter() - t0 < 15 and traces() == before
    assert not list(tmp_path.rglob("*.nc")) and not list(tmp_path.rglob("*.tmp-*"))
    assert_next_run_works(folder, capsys)


def test_a_plus_key_of_a_component_names_its_options(good_run, tmp_path, capsys):
    assert main([*BASE, f"hydra.run.dir={tmp_path}", "+workload.lod=2"]) == 2
    line = one_line(capsys)
    assert "workload.lod" in line and "load" in line


def test_a_read_only_output_folder_is_one_line(good_run, tmp_path, capsys):
    """Read-only for this user: a folder without write permission, or (as root, whom permissions do
    not stop) a read-only file system such as /sys."""
    if os.geteuid() != 0:
        target = tmp_path / "ro"
        target.mkdir()
        target.chmod(0o555)
        run = target / "run"
    else:
        run = Path("/sys/edgefm-test-read-only/run")
        try:
            run.parent.mkdir()
        except OSError:
            pass
        else:
            run.parent.rmdir()
            pytest.skip("no read-only folder to try: /sys is writable here")
    for args in ([*BASE, f"hydra.run.dir={run}"], ["-m", *BASE, f"hydra.sweep.dir={run}", "seed=0,1"]):
        assert main(args) == 2
        line = one_line(capsys)
        assert "cannot be written" in line and "read-only" in line and str(run) in line, line
    assert_next_run_works(tmp_path / "then", capsys)


def test_a_horizon_shorter_than_the_longest_deadline_is_a_warning_naming_the_field():
    from edgefm.config.check import check_plausible
    from edgefm.runner import SimSettings
    from edgefm.scenario.spec import build_scenarios, spec_to_dict

    spec = yaml.safe_load((CONF / "scenario" / "small.yaml").read_text())
    spec.pop("defaults")
    spec = spec_to_dict(spec)
    scenarios = build_scenarios(spec, 0)
    assert check_plausible(spec, scenarios, SimSettings(arrival_ms=20.0, drain_ms=40.0), 1.0) == []
    (warning,) = check_plausible(spec, scenarios, SimSettings(arrival_ms=10.0, drain_ms=10.0), 1.0)
    assert "sim.arrival_ms + sim.drain_ms = 20 ms" in warning and "scenario.task_defaults.deadline" in warning
    # at 3x a tight network is overloaded but not implausible: no error
    paper = spec_to_dict({k: v for k, v in yaml.safe_load((CONF / "scenario" / "paper.yaml").read_text()).items()
                          if k != "defaults"})
    check_plausible(paper, build_scenarios(paper, 0), SimSettings(), 3.0)


def test_a_placement_that_fails_under_rates_per_second_says_so(good_run, tmp_path, capsys):
    """The small scenario is so ample that rates per second (x1000) fit 7 times in it, under the
    error threshold: the placement's failure carries the note on the rates."""
    assert main([*BASE, f"hydra.run.dir={tmp_path}", "scenario.user_defaults.arrival_rate=[50,200]"]) == 2
    line = one_line(capsys)
    assert "no node has room" in line and "arrival_rate" in line and "per second" in line


def test_a_bad_cpu_device_count_is_one_line():
    result = subprocess.run([sys.executable, "-m", "edgefm", *BASE], env=env_without_edgefm(EDGEFM_CPU_DEVICES="abc"),
                            capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "edgefm: error: EDGEFM_CPU_DEVICES='abc': expected a positive integer (CPU devices for the engine)"]


# ----------------------------------------------------------------------------------------------
# Memory and disk space


def test_a_run_that_cannot_fit_in_memory_is_refused_before_compiling(good_run, tmp_path, capsys, monkeypatch):
    import edgefm.io.budget as budget

    monkeypatch.setattr(budget, "host_available", lambda: 64 * 2**20)
    monkeypatch.setattr(budget, "process_rss", lambda: 0)
    before = traces()
    assert main([*BASE, f"hydra.run.dir={tmp_path}", "sim.realisations=4"]) == 2
    line = one_line(capsys)
    for text in ("not enough memory", "is available", "sim.realisations", "sim.batch", "sim.memory_check=false"):
        assert text in line, (text, line)
    assert traces() == before and not (tmp_path / "results.nc").exists()
    # the option overrides the check
    assert main([*BASE, f"hydra.run.dir={tmp_path}", "sim.memory_check=false"]) == 0
    monkeypatch.undo()
    assert_next_run_works(tmp_path / "then", capsys)


def test_the_memory_estimate_grows_with_the_realisations_and_the_horizon():
    from edgefm.io.budget import estimate
    from edgefm.sim.types import SimSizes

    def sizes(T):
        return SimSizes(V=10, K=4, M=15, Ml=9, N=4, S=6, P=3, U=7, B=400, X=8, Q=20, Ic=32, Lc=100, Lw=400, Ln=100,
                        A=40, J=2000, T=T, T_arr=T // 2, core_dispatch="earliest_start")

    one = estimate(sizes(300), realisations=1, instances=1, layout=(1, 1), num_services=15)
    many = estimate(sizes(300), realisations=100_000, instances=1, layout=(1, 1), num_services=15)
    assert many.outputs == 100_000 * one.outputs and many.host > 30 * 2**30  # the ">= 37 GB of outputs"
    assert estimate(sizes(600), realisations=1, instances=1, layout=(1, 1), num_services=15).outputs > one.outputs
    vmapped = estimate(sizes(300), realisations=64, instances=1, layout=(64, 1), num_services=15, accelerator=True)
    assert vmapped.state == 64 * one.state and vmapped.device == vmapped.outputs + vmapped.state


def test_too_little_disk_space_is_refused_before_compiling(good_run, tmp_path, capsys, monkeypatch):
    real = shutil.disk_usage
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    before = traces()
    assert main([*BASE, f"hydra.run.dir={tmp_path}"]) == 2
    line = one_line(capsys)
    assert "not enough disk space" in line and str(tmp_path) in line and "output.disk_check=false" in line
    assert traces() == before and not (tmp_path / "results.nc").exists()
    monkeypatch.undo()
    assert_next_run_works(tmp_path, capsys)


def test_a_write_that_fails_for_a_full_disk_says_no_space_left(good_run, tmp_path, capsys, monkeypatch):
    """netCDF reports a full disk as "NetCDF: HDF error"; the write names the cause."""
    real = shutil.disk_usage

    def full(self, *args, **kwargs):
        monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=0))
        raise RuntimeError("NetCDF: HDF error")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", full)
    assert main([*BASE, f"hydra.run.dir={tmp_path}", "output.disk_check=false"]) == 2
    line = one_line(capsys)
    assert "no space left" in line.lower() and str(tmp_path) in line, line
    assert not list(tmp_path.glob("*.nc")) and not list(tmp_path.glob(".*tmp-*"))
    monkeypatch.undo()
    assert_next_run_works(tmp_path, capsys)


def test_write_netcdf_atomic_raises_enospc_only_when_the_disk_is_full(tmp_path, monkeypatch):
    ds = to_dataset({"ontime_rate": np.ones((1, 2))}, {"instance": [0], "realisation": [0, 1]}, {"config": ""})
    real = shutil.disk_usage
    monkeypatch.setattr(xr.Dataset, "to_netcdf", lambda self, *a, **k: (_ for _ in ()).throw(RuntimeError("HDF")))
    with pytest.raises(RuntimeError):  # plenty of space: the error as it is
        write_netcdf_atomic(ds, tmp_path / "a.nc")
    monkeypatch.setattr(shutil, "disk_usage", lambda p: real(p)._replace(free=10))
    with pytest.raises(OSError) as info:
        write_netcdf_atomic(ds, tmp_path / "a.nc")
    assert info.value.errno == errno.ENOSPC and "No space left" in str(info.value)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------------------------------------
# Temporary files and the run-folder lock


def test_stale_temporary_files_are_swept_by_the_next_write(tmp_path):
    from edgefm.io.netcdf import _HOST

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = [f".results.nc.tmp-{'a' * 12}", f".results.nc.tmp-{_HOST}-{dead.pid}-{'b' * 12}"]
    kept = [f".results.nc.tmp-{_HOST}-{os.getppid()}-{'c' * 12}",  # a live writer
            f".results.nc.tmp-otherhost-{dead.pid}-{'d' * 12}",  # another machine's
            "notes.txt"]
    for name in stale + kept:
        (tmp_path / name).write_text("x")
    ds = to_dataset({"ontime_rate": np.ones((1, 2))}, {"instance": [0], "realisation": [0, 1]}, {"config": ""})
    write_netcdf_atomic(ds, tmp_path / "sweep.nc")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([*kept, "sweep.nc"])


def test_sigterm_during_a_write_removes_the_temporary_file(tmp_path, monkeypatch):
    from xarray.backends import netCDF4_

    from edgefm.cli.run import Terminated, console_signals

    real = netCDF4_.NetCDF4DataStore.prepare_variable
    seen = []

    def killed(self, *args, **kwargs):
        seen.append([p.name for p in tmp_path.iterdir()])
        os.kill(os.getpid(), signal.SIGTERM)  # what `timeout`, SLURM and Ray send
        time.sleep(0.5)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(netCDF4_.NetCDF4DataStore, "prepare_variable", killed)
    ds = to_dataset({"ontime_rate": np.ones((1, 2))}, {"instance": [0], "realisation": [0, 1]}, {"config": ""})
    with pytest.raises(Terminated), console_signals():
        write_netcdf_atomic(ds, tmp_path / "results.nc")
    assert seen and seen[0][0].startswith(".results.nc.tmp-")
    assert list(tmp_path.iterdir()) == []


# `python -m edgefm` with Ctrl-C's handler as from a terminal: a suite started in the background
# (`pytest &`, nohup) passes SIGINT on ignored, and Python keeps it ignored
AS_FROM_A_TERMINAL = ("import runpy, signal; signal.signal(signal.SIGINT, signal.default_int_handler); "
                      "runpy.run_module('edgefm', run_name='__main__', alter_sys=True)")


def start_cli(args: list[str], cwd: Path, **env) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", AS_FROM_A_TERMINAL, *args], cwd=cwd, env=env_without_edgefm(**env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("sig,status,word", [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated")])
def test_a_signal_during_the_compile_ends_the_command_at_once_with_one_line(good_run, tmp_path, capsys, sig, status,
                                                                           word):
    folder = tmp_path / "run"
    # no on-disk cache: the process compiles for tens of seconds, in a worker thread
    proc = start_cli([*BASE, f"hydra.run.dir={folder}"], tmp_path, EDGEFM_JAX_CACHE="0")
    for line in proc.stdout:
        if "compiling and simulating" in line:
            break
    time.sleep(1.0)
    t0 = time.perf_counter()
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert time.perf_counter() - t0 < 5, err
    assert proc.returncode == status, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"edgefm: {word}"), err
    assert not list(folder.glob("*.nc")) and not list(folder.glob(".*tmp-*"))
    assert_next_run_works(folder, capsys)


def test_a_second_run_into_a_locked_run_folder_is_refused_with_one_line(good_run, tmp_path, capsys):
    folder = tmp_path / "run"
    folder.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from edgefm.io.lock import acquire; acquire(sys.argv[1]); "
                               "print('locked', flush=True); time.sleep(120)", str(folder)],
        stdout=subprocess.PIPE, text=True, env=env_without_edgefm(), cwd=REPO)
    try:
        assert holder.stdout.readline().strip() == "locked"
        for args in ([*BASE, f"hydra.run.dir={folder}"], ["-m", *BASE, f"hydra.sweep.dir={folder}", "seed=0,1"]):
            assert main(args) == 2
            line = one_line(capsys)
            assert "in use by another edgefm run" in line and f"pid {holder.pid}" in line, line
        assert main(["merge", str(folder)]) == 2  # a merge by hand waits for the multirun too
        assert "in use" in one_line(capsys)
        assert sorted(p.name for p in folder.iterdir()) == [".edgefm.lock"]  # Hydra wrote nothing there
    finally:
        holder.kill()
        holder.wait()
    assert_next_run_works(folder, capsys)


# ----------------------------------------------------------------------------------------------
# Merge: a dataset that is not its job's is refused


def sweep_values(ds: xr.Dataset) -> xr.Dataset:
    out = ds.drop_vars("job_config")
    out.attrs = {}
    return out


def test_merge_refuses_a_dataset_copied_over_another_job(good_run, tmp_path, capsys):
    folder = tmp_path / "sweep"
    assert main(["-m", *BASE, "seed=0,1", f"hydra.sweep.dir={folder}"]) == 0
    shutil.copy(folder / "0" / "results.nc", folder / "1" / "results.nc")
    (folder / "sweep.nc").unlink()

    assert main(["merge", str(folder)]) == 2
    line = one_line(capsys)
    assert "job 1 (" in line and "seed=1" in line and "was made with seed=0" in line and ".hydra/config.yaml" in line
    assert not (folder / "sweep.nc").exists()
    # the same multirun again recomputes the job whose dataset is not its own, and merges
    assert main(["-m", *BASE, "seed=0,1", f"hydra.sweep.dir={folder}"]) == 0
    assert list(open_run(folder / "sweep.nc")["seed"].values) == [0, 1]


def test_merge_refuses_jobs_made_before_and_after_a_changed_default(good_run, tmp_path, capsys, monkeypatch):
    """The issue's path: a fixed sweep folder, a conf default changed, the same multirun run again
    and interrupted after job 0, then `edgefm merge` as advised."""
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    monkeypatch.setenv("EDGEFM_CONFIG_DIR", str(conf))
    folder = tmp_path / "sweep"
    command = ["-m", *BASE, "seed=0,1", f"hydra.sweep.dir={folder}"]
    assert main(command) == 0
    merged = (folder / "sweep.nc").stat().st_mtime_ns

    poisson = conf / "workload" / "poisson.yaml"
    text = poisson.read_text()
    assert "\nload: 1.0" in text
    poisson.write_text(text.replace("\nload: 1.0", "\nload: 0.5"))
    from hydra._internal.core_plugins import basic_launcher

    real, started = basic_launcher.run_job, []

    def interrupted(*args, **kwargs):  # Ctrl-C once job 0 is done, before job 1 starts
        started.append(1)
        if len(started) == 2:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(basic_launcher, "run_job", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(command)
    monkeypatch.setattr(basic_launcher, "run_job", real)
    assert open_run(folder / "0" / "results.nc").attrs["load"] == 0.5  # job 0 recomputed (its config changed)
    assert open_run(folder / "1" / "results.nc").attrs["load"] == 1.0  # job 1 as the first command left it
    capsys.readouterr()

    assert main(["merge", str(folder)]) == 2
    line = one_line(capsys)
    assert "workload.load=" in line and "job 0" in line and "job 1" in line and "no swept override" in line, line
    assert (folder / "sweep.nc").stat().st_mtime_ns == merged  # nothing written

    # interrupted within job 1 instead: Hydra rewrote the job's folder config, its dataset is older
    job1 = folder / "1" / ".hydra" / "config.yaml"
    job1.write_text(job1.read_text().replace("\n  load: 1.0\n", "\n  load: 0.5\n"))
    assert main(["merge", str(folder)]) == 2
    line = one_line(capsys)
    assert "job 1" in line and "was made with workload.load=1 but" in line and "workload.load=0.5" in line, line

    assert main(command) == 0  # running it to the end makes the folder whole again
    assert float(open_run(folder / "sweep.nc")["load"]) == 0.5


# ----------------------------------------------------------------------------------------------
# Resume


@pytest.mark.slow  # (resuming in the same folder is checked in the default run: tests/test_sweep.py)
def test_an_interrupted_plain_multirun_resumes_with_output_resume_last_and_equals_an_uninterrupted_one(
        good_run, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default sweep folder: outputs/debug/multiruns/<timestamp>
    command = ["-m", *BASE, "seed=0,1,2"]
    real, calls = edgefm.runner.run_engine, []

    def interrupted(*args, **kwargs):
        calls.append(kwargs.get("seed"))
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C during job 1
        return real(*args, **kwargs)

    monkeypatch.setattr(edgefm.runner, "run_engine", interrupted)
    with pytest.raises(KeyboardInterrupt):
        main(command)
    (first,) = (tmp_path / "outputs" / "debug" / "multiruns").iterdir()
    assert sorted(p.relative_to(first).as_posix() for p in first.rglob("*.nc")) == ["0/results.nc"]

    calls.clear()
    monkeypatch.setattr(edgefm.runner, "run_engine", lambda *a, **k: (calls.append(k.get("seed")), real(*a, **k))[1])
    time.sleep(1.1)  # a new command would get a new timestamped folder
    capsys.readouterr()
    assert main([*command, "output.resume=last"]) == 0
    assert f"resuming the multirun in {first}" in capsys.readouterr().err
    assert calls == [1, 2]  # job 0 was not run again
    assert [p.name for p in (tmp_path / "outputs" / "debug" / "multiruns").iterdir()] == [first.name]
    resumed = open_run(first / "sweep.nc")

    assert main([*command, f"hydra.sweep.dir={tmp_path / 'whole'}"]) == 0
    whole = open_run(tmp_path / "whole" / "sweep.nc")
    xr.testing.assert_identical(sweep_values(resumed), sweep_values(whole))
    assert int(resumed["tasks_arrived"].sum()) > 0

    # the folder named, and refusals: another command's folder, a single run
    assert main([*command, f"output.resume={first}"]) == 0
    capsys.readouterr()
    assert main(["-m", *BASE, "seed=0,1", f"output.resume={first}"]) == 2
    assert "made by" in one_line(capsys)
    assert main(["-m", *BASE, "seed=5,6", "output.resume=last"]) == 2
    assert "none of its" in one_line(capsys)
