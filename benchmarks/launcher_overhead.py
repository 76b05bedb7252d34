"""The wall time of a 16-job multirun with Hydra's basic launcher and through edgefm's Ray launcher.

The jobs are the small debug job of tests/test_cluster.py (``debug=default`` with least_loaded +
lbrr, the small scenario at 2 realisations and 60 slots), ``seed=0..15``. One Ray cluster of this
machine is started for the run (``ray start --head`` bound to 127.0.0.1 on a free port, every
process of it ended at the end) and every multirun is one ``edgefm -m`` command, timed from its
start to its end (the merge into sweep.nc included), each in a fresh sweep folder:

- ``basic``: the jobs one after the other in the command's own process (the engine compiled, or
  loaded from the on-disk cache, once);
- ``ray, 1 at a time``: each job a Ray task asking for every CPU of the cluster, so the tasks run one
  after the other as the basic launcher's jobs do: the difference is the launcher's overhead;
- ``ray, N at once``: each job a Ray task of one CPU (N = the cluster's CPUs).

The compile cache is warm for all of them: a first multirun of the same jobs (basic launcher, not
counted) fills a compile cache of its own for this benchmark (``--cache``, default a temporary
folder), which every command and every Ray worker then reads (``EDGEFM_JAX_CACHE``). It has to be
the whole multirun, not one job: the engine's sizes (its task buffer rows) follow each seed's
scenario, so the jobs are several programs. ``--repeat`` runs the three commands that many times,
alternating. It prints a markdown table and the overhead per job.

    .venv/bin/python benchmarks/launcher_overhead.py
    .venv/bin/python benchmarks/launcher_overhead.py --jobs 16 --repeat 2 --out launcher.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from local_ray import LocalRayHead  # noqa: E402  (the Ray head the cluster tests start)

SHRINK = ["scenario=small", "scenario.instances=1", "sim.realisations=2", "sim.arrival_ms=20",
          "sim.drain_ms=40", "sim.max_light_instances=4", "output.print_summary=false"]
JOB = ["debug=default", "placement=least_loaded", "controller=lbrr", *SHRINK]
TIMEOUT = 1800  # s, per command


def edgefm(args: list[str], cwd: Path, env: dict[str, str]) -> float:
    """Seconds of one ``edgefm`` command (it must succeed)."""
    t0 = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "edgefm", *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=TIMEOUT)
    seconds = time.perf_counter() - t0
    if done.returncode != 0:
        sys.exit(f"edgefm {' '.join(args)} exited {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=16, help="jobs of the multirun (seed=0..jobs-1)")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each command, alternating")
    parser.add_argument("--cpus", type=int, default=os.cpu_count() or 1, help="CPUs of the Ray cluster")
    parser.add_argument("--cache", type=Path, default=None, help="the compile cache (default: a temporary folder)")
    parser.add_argument("--out", type=Path, default=None, help="also write the measurements as JSON")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="edgefm-launchers-"))
    cache = args.cache or work / "jax-cache"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("EDGEFM_", "HYDRA_", "RAY_"))}
    # RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0: Ray's switch for a cluster of one machine (its address
    # stays 127.0.0.1 instead of the machine's own)
    env.update(EDGEFM_JAX_CACHE=str(cache), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0")
    seeds = f"seed=range(0,{args.jobs})"
    warm_s = edgefm(["-m", *JOB, seeds, f"hydra.sweep.dir={work / 'warm'}"], work, env)  # fills the compile cache

    try:
        cluster = LocalRayHead(args.cpus, env)
    except RuntimeError as exc:
        sys.exit(str(exc))
    try:
        ray = ["hydra/launcher=ray_cluster", f"hydra.launcher.ray.init.address={cluster.address}"]
        commands = {
            "basic": [],
            "ray, 1 at a time": [*ray, f"hydra.launcher.ray.remote.num_cpus={args.cpus}"],
            f"ray, {args.cpus} at once": [*ray, "hydra.launcher.ray.remote.num_cpus=1"],
        }
        times: dict[str, list[float]] = {name: [] for name in commands}
        for rep in range(args.repeat):
            for i, (name, extra) in enumerate(commands.items()):
                folder = work / f"sweep-{rep}-{i}"
                times[name].append(edgefm(["-m", *JOB, seeds, *extra, f"hydra.sweep.dir={folder}"], work, env))
                print(f"{name}: {times[name][-1]:.1f} s", file=sys.stderr)
    finally:
        cluster.stop()
        shutil.rmtree(work, ignore_errors=True)

    basic = statistics.median(times["basic"])
    print(f"{args.jobs} jobs of `{' '.join(JOB)}`, seed=0..{args.jobs - 1}; {platform.node()}, "
          f"{os.cpu_count()} cores, Python {platform.python_version()}; compile cache warm (the first multirun, "
          f"which filled it: {warm_s:.1f} s); Ray cluster of {args.cpus} CPUs on 127.0.0.1 (started in "
          f"{cluster.start_s:.1f} s, not counted); median of {args.repeat}\n")
    print("| launcher | wall (s) | per job (s) | vs basic, per job (s) |")
    print("|---|---:|---:|---:|")
    rows = {}
    for name, values in times.items():
        wall = statistics.median(values)
        rows[name] = {"wall_s": values, "median_s": wall, "per_job_s": wall / args.jobs,
                      "overhead_per_job_s": (wall - basic) / args.jobs}
        spread = f" ({min(values):.1f}–{max(values):.1f})" if len(values) > 1 else ""
        print(f"| {name} | {wall:.1f}{spread} | {wall / args.jobs:.2f} | {(wall - basic) / args.jobs:+.2f} |")
    serial = rows["ray, 1 at a time"]["overhead_per_job_s"]
    print(f"\nThe Ray launcher's overhead per job (one task at a time, against the basic launcher): {serial:+.2f} s")
    if args.out:
        args.out.write_text(json.dumps({"jobs": args.jobs, "cpus": args.cpus, "repeat": args.repeat,
                                        "warm_multirun_s": warm_s, "ray_start_s": cluster.start_s, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
