"""Multiruns beyond this process, run for real (docs/CLUSTER.md):

- on a Ray cluster of this machine (``ray start --head`` bound to 127.0.0.1 on a free port, stopped at
  the end) through ``hydra/launcher=ray_cluster`` (edgefm's Ray launcher): the merged ``sweep.nc``
  equals the basic launcher's value by value, each job is a Ray task with its declared resources and
  its worker reads the engine from the on-disk compile cache, a worker killed mid-job is retried, a
  job lost for good is one line and the same command with ``output.resume=last`` finishes the sweep;
- many small jobs through the same launcher: a progress line per job, a killed worker retried;
- through submitit's local executor (``hydra/launcher=submitit_local``: the SLURM launcher's code
  path but for sbatch): the same ``sweep.nc``;
- the sbatch script submitit writes for ``hydra/launcher=slurm`` (a stand-in ``sbatch`` keeps it):
  the resources of conf/hydra/launcher/slurm.yaml;
- a job array on a real SLURM, where one answers on this machine (skipped otherwise).

Everything that starts a cluster or a launcher's processes is marked slow (``pytest -m slow``); the
default run checks the launcher's refusals and the options it hands to Ray and to sbatch. The
multirun is the two seeds of ``debug=default`` in the shapes the other CLI tests compile
(tests/test_sweep.py), so the shared compile cache ($EDGEFM_JAX_CACHE) has its engine.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import local_ray
import numpy as np
import pytest
import xarray as xr
import yaml

from edgefm.cli import main
from edgefm.io import open_run
from edgefm.sweep import NOT_RESULTS

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
SHRINK = ["scenario=small", "scenario.instances=1", "sim.realisations=2", "sim.arrival_ms=20",
          "sim.drain_ms=40", "sim.max_light_instances=4", "output.print_summary=false"]
JOBS = ["-m", "debug=default", "placement=least_loaded", "controller=lbrr", *SHRINK, "seed=0,1"]
TIMEOUT = 300  # s, per command


def values(ds: xr.Dataset) -> xr.Dataset:
    """A merged sweep without the attributes that differ by construction: ``sweep_dir`` (the path of the
    sweep folder) and ``history`` (when and by which command line a job ran: the merge keeps it when
    every job has the same, as jobs started in the same second by one launcher process do); every
    variable, coordinate (job_config: each job's resolved config included) and other attribute is
    compared."""
    out = ds.copy()
    out.attrs = {k: v for k, v in ds.attrs.items() if k not in ("sweep_dir", "history")}
    return out


def computing(config_yaml: str) -> str:
    """A job's resolved config without the keys that do not change what it computes
    (`edgefm.sweep.NOT_RESULTS`: a resumed job's config has ``output.resume: last``)."""
    cfg = yaml.safe_load(config_yaml)
    for key in NOT_RESULTS:
        *path, leaf = key.split(".")
        node = cfg
        for part in path:
            node = node.get(part) or {}
        node.pop(leaf, None)
    return yaml.safe_dump(cfg, sort_keys=True)


def resumed_values(ds: xr.Dataset) -> xr.Dataset:
    """`values`, with each job_config reduced to the keys that change the results (`computing`)."""
    out = values(ds)
    configs = [computing(str(c)) for c in out["job_config"].values.ravel()]
    out["job_config"] = out["job_config"].copy(data=np.array(configs).reshape(out["job_config"].shape))
    return out


@pytest.fixture(scope="module")
def basic(tmp_path_factory) -> xr.Dataset:
    """The multirun with Hydra's basic launcher, in a process of its own (which puts the engine in the
    on-disk compile cache, or finds it there: the test processes keep that cache off)."""
    folder = tmp_path_factory.mktemp("basic") / "sweep"
    done = run([sys.executable, "-m", "edgefm", *JOBS, f"hydra.sweep.dir={folder}"], cwd=folder.parent,
               env=clean_env())
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    return open_run(folder / "sweep.nc")


def clean_env(**extra) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("EDGEFM_", "HYDRA_", "RAY_")) or k == "EDGEFM_JAX_CACHE"}
    env["PYTHONPATH"] = os.pathsep.join([str(TESTS), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.update(extra)
    return env


def run(cmd, *, cwd, env, timeout=TIMEOUT) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# ------------------------------------------------------------------------------------------------
# Ray


@pytest.fixture(scope="module")
def ray_cluster():
    """(address, environment for a driver) of a Ray head started here (`local_ray.LocalRayHead`, every
    process bound to 127.0.0.1), stopped at the end of the module."""
    pytest.importorskip("ray", reason="ray is not installed (the test extra has it: pip install -e '.[test]')")
    if local_ray.ray_command() is None:
        pytest.skip(f"no `ray` command beside {sys.executable}")
    # JAX_LOG_COMPILES=1 in the workers: a hit of the persistent compile cache is logged (at WARNING,
    # into each job's log)
    env = clean_env(RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    try:
        head = local_ray.LocalRayHead(2, {**env, "JAX_LOG_COMPILES": "1"}, timeout_s=120)
    except RuntimeError as exc:
        pytest.fail(str(exc))
    with head:
        yield head.address, env


def ray_command(address: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "edgefm", *JOBS, "hydra/launcher=ray_cluster",
            f"hydra.launcher.ray.init.address={address}", "hydra.launcher.ray.remote.num_cpus=1", *extra]


def probe(kill: int, marker: Path) -> list[str]:
    return ["+hydra.callbacks.probe._target_=cluster_helpers.ClusterProbe", f"+hydra.callbacks.probe.kill={kill}",
            f"+hydra.callbacks.probe.marker={marker}"]


@pytest.mark.slow
def test_a_ray_multirun_equals_the_basic_one_and_survives_a_worker_killed_mid_job(basic, ray_cluster, tmp_path):
    address, env = ray_cluster
    folder, marker = tmp_path / "sweep", tmp_path / "killed"
    done = run(ray_command(address, f"hydra.sweep.dir={folder}", *probe(1, marker)), cwd=tmp_path, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]

    xr.testing.assert_identical(values(open_run(folder / "sweep.nc")), values(basic))
    # job 1's worker was killed in its engine (the marker holds its pid) and Ray ran the job again
    assert marker.read_text().isdigit()
    logs = {job: (folder / str(job) / "edgefm.log").read_text() for job in (0, 1)}
    assert logs[0].count("compiling and simulating") == 1 and logs[1].count("compiling and simulating") == 2
    for job, log in logs.items():
        # a Ray task with the resources of hydra.launcher.ray.remote, whose worker read the engine
        # from the on-disk compile cache (the basic multirun put it there, or found it there)
        assert json.loads((folder / str(job) / "ray_resources.json").read_text()) == {"CPU": 1.0}, job
        assert "Persistent compilation cache hit" in log, job
    assert "edgefm: jobs done 2/2" in output and "edgefm: merged the multirun" in output


@pytest.mark.slow
def test_a_job_lost_on_ray_is_one_line_and_the_same_command_with_output_resume_last_finishes(
        basic, ray_cluster, tmp_path, capsys):
    address, env = ray_cluster
    command = ray_command(address, "hydra.launcher.ray.remote.max_retries=0", *probe(1, tmp_path / "killed"))
    done = run(command, cwd=tmp_path, env=env)  # the default, timestamped sweep folder under tmp_path
    assert done.returncode == 2, (done.stdout + done.stderr)[-4000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("edgefm: error:")]
    assert len(errors) == 1, done.stderr[-4000:]
    assert errors[0].startswith("edgefm: error: job 1 (") and "seed=1" in errors[0], errors
    assert "lost on the Ray cluster" in errors[0] and "max_retries=0" in errors[0] and "output.resume=last" in errors[0]
    assert "Error executing job" not in done.stderr  # (Hydra's own line for a failed job: not added)
    # job 0 ran to the end, and the merge refused the missing cell (in the log) and wrote nothing
    assert "edgefm: jobs done 2/2 (1 failed)" in done.stdout
    assert re.search(r"no sweep dataset written: .*1 of 2 jobs have no results.nc .*: the cell seed=1; nothing merged",
                     done.stdout), done.stdout[-4000:]
    (folder,) = (tmp_path / "outputs" / "debug" / "multiruns").iterdir()
    assert (folder / "0" / "results.nc").is_file() and not (folder / "1" / "results.nc").exists()
    assert not (folder / "sweep.nc").exists()

    # the merge by hand refuses the missing cell, in one line naming it
    assert main(["merge", str(folder)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"edgefm: error: {folder}: 1 of 2 jobs have no results.nc"), line
    assert "the cell seed=1; nothing merged" in line and "--allow-missing" in line, line
    assert not (folder / "sweep.nc").exists()

    time.sleep(1.1)  # a new command would get a new timestamped folder
    done = run([*command, "output.resume=last"], cwd=tmp_path, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert f"resuming the multirun in {folder}" in output
    assert "edgefm: jobs done 2/2 (1 skipped)" in output  # job 0 was not run again
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]
    merged = open_run(folder / "sweep.nc")
    assert yaml.safe_load(str(merged["job_config"].sel(seed=1).item()))["output"]["resume"] == "last"
    xr.testing.assert_identical(resumed_values(merged), resumed_values(basic))


@pytest.mark.slow
def test_many_small_jobs_through_ray_show_progress_and_a_killed_worker_is_retried(ray_cluster, tmp_path):
    address, env = ray_cluster
    jobs, marker = 100, tmp_path / "killed"
    done = run([sys.executable, str(TESTS / "cluster_app.py"), "-m", f"x=range(0,{jobs})", "kill=7",
                f"marker={marker}", "hydra/launcher=edgefm_ray", f"hydra.launcher.ray.init.address={address}",
                f"hydra.sweep.dir={tmp_path / 'sweep'}"], cwd=tmp_path, env=env)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert marker.read_text().isdigit()  # job 7's worker was killed, and the job ran again
    assert sorted(int((tmp_path / "sweep" / str(j) / "x.txt").read_text()) for j in range(jobs)) == list(range(jobs))
    progress = re.findall(r"edgefm: jobs done (\d+)/(\d+)", output)
    assert [int(k) for k, _ in progress] == list(range(1, jobs + 1)) and {int(n) for _, n in progress} == {jobs}
    assert re.search(r"edgefm: jobs done \d+/100, .* so far, about .* left", output)


@pytest.mark.slow
def test_a_bad_ray_task_option_is_one_line_before_anything_runs(ray_cluster, tmp_path):
    address, env = ray_cluster
    done = run(ray_command(address, f"hydra.sweep.dir={tmp_path / 'sweep'}", "+hydra.launcher.ray.remote.num_cpu=1"),
               cwd=tmp_path, env=env)
    assert done.returncode == 2, done.stderr[-4000:]
    (line,) = [line for line in done.stderr.splitlines() if line.startswith("edgefm: error:")]
    assert line.startswith("edgefm: error: hydra.launcher.ray.remote = ") and "num_cpu" in line, line
    assert not list((tmp_path / "sweep").rglob("results.nc"))


def test_an_address_where_no_ray_cluster_answers_is_one_line_at_once(tmp_path, capsys):
    pytest.importorskip("ray", reason="ray is not installed (the test extra has it: pip install -e '.[test]')")
    port = local_ray.free_port()  # nothing listens there
    t0 = time.monotonic()
    status = main([*JOBS, "hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address=127.0.0.1:{port}",
                   f"hydra.sweep.dir={tmp_path / 'sweep'}"])
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and time.monotonic() - t0 < 60  # (Ray itself would wait for minutes)
    assert line == (f"edgefm: error: hydra.launcher.ray.init = {{'address': '127.0.0.1:{port}'}} is invalid: the "
                    f"address of a running Ray cluster: nothing answers at 127.0.0.1:{port} (Connection refused) "
                    "(the head node's host:port (`ray start --head` prints it))"), line
    assert not list((tmp_path / "sweep").rglob("results.nc"))


def test_a_job_with_a_gpu_gets_a_fresh_ray_worker_and_a_cpu_job_reuses_one():
    pytest.importorskip("ray", reason="ray is not installed (the test extra has it: pip install -e '.[test]')")
    from hydra_plugins.edgefm_ray_launcher._core import task

    # Ray's max_calls=1 (a worker process per task) holds for options given to ray.remote itself: a
    # reused worker's JAX would keep the GPU of its first task
    assert task({"num_cpus": 1, "num_gpus": 1})._default_options["max_calls"] == 1
    assert task({"num_cpus": 1, "num_gpus": 0.5})._default_options["max_calls"] == 1
    assert "max_calls" not in task({"num_cpus": 4, "num_gpus": 0, "max_retries": 1})._default_options


# ------------------------------------------------------------------------------------------------
# SLURM through submitit


@pytest.mark.slow
def test_a_submitit_local_multirun_equals_the_basic_one(basic, tmp_path):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                        reason="hydra-submitit-launcher is not installed (the test extra has it)")
    folder = tmp_path / "sweep"
    assert main([*JOBS, "hydra/launcher=submitit_local", f"hydra.sweep.dir={folder}"]) == 0
    xr.testing.assert_identical(values(open_run(folder / "sweep.nc")), values(basic))
    assert sorted(p.parent.name for p in folder.glob("*/results.nc")) == ["0", "1"]
    assert list((folder / ".submitit").rglob("*_log.out"))  # each job ran as a submitit job


def test_the_slurm_configs_sbatch_script_asks_for_its_resources(tmp_path, monkeypatch, capsys):
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher",
                        reason="hydra-submitit-launcher is not installed (the test extra has it)")
    # a stand-in sbatch keeps the script submitit wrote and refuses it (no SLURM here): the
    # multirun ends there, nothing runs
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    kept = tmp_path / "submitted.sh"
    (bin_dir / "sbatch").write_text(f"#!/bin/sh\ncp \"$1\" {kept}\necho 'sbatch: error: no SLURM here' >&2\nexit 1\n")
    (bin_dir / "srun").write_text("#!/bin/sh\nexit 1\n")
    for name in ("sbatch", "srun"):
        (bin_dir / name).chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    folder = tmp_path / "sweep"
    status = main([*JOBS, "hydra/launcher=slurm", "hydra.launcher.partition=gpu", f"hydra.sweep.dir={folder}"])
    capsys.readouterr()
    assert status != 0 and not list(folder.rglob("results.nc"))

    script = kept.read_text()
    flags = dict(re.findall(r"^#SBATCH --([\w-]+)(?:=(.*))?$", script, flags=re.M))
    # conf/hydra/launcher/slurm.yaml: 2 jobs at most 64 at once (submitit caps the 64 at the number of
    # jobs), 4 cores, a GPU, 32 GB, 120 min each
    assert flags["array"] == "0-1%2"
    assert (flags["cpus-per-task"], flags["gpus-per-node"], flags["mem"], flags["time"]) == ("4", "1", "32GB", "120")
    assert (flags["nodes"], flags["ntasks-per-node"], flags["partition"]) == ("1", "1", "gpu")
    assert flags["job-name"] == "edgefm"
    # (sbatch's own log has task 0's name; srun's, below, one per task: %t)
    assert flags["output"] == f"{folder}/.submitit/%A_%a/%A_%a_0_log.out"
    srun = [line for line in script.splitlines() if line.startswith("srun ")]
    assert len(srun) == 1 and f"{sys.executable} -u -m submitit.core._submit {folder}/.submitit/%j" in srun[0]


def slurm_answers() -> str | None:
    """Why a real SLURM cannot take a job here, or None when it can."""
    if shutil.which("sbatch") is None or shutil.which("sinfo") is None:
        return "no SLURM on this machine (sbatch, sinfo)"
    try:
        done = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo did not answer: {exc}"
    states = done.stdout.split()
    if done.returncode != 0 or not any(s.startswith(("idle", "mix")) for s in states):
        return f"no idle SLURM node (sinfo: {done.stdout.strip() or done.stderr.strip() or done.returncode})"
    return None


def test_a_job_array_on_a_real_slurm_equals_the_basic_one(basic, tmp_path):
    reason = slurm_answers()
    if reason is not None:
        pytest.skip(reason)
    folder = tmp_path / "sweep"  # (a real SLURM runs the jobs where tmp_path is: this machine)
    done = run([sys.executable, "-m", "edgefm", *JOBS, "hydra/launcher=slurm", "hydra.launcher.gpus_per_node=0",
                "hydra.launcher.cpus_per_task=1", "hydra.launcher.mem_gb=2", "hydra.launcher.timeout_min=10",
                f"hydra.sweep.dir={folder}"], cwd=tmp_path, env=clean_env(), timeout=600)
    assert done.returncode == 0, (done.stdout + done.stderr)[-4000:]
    xr.testing.assert_identical(values(open_run(folder / "sweep.nc")), values(basic))
