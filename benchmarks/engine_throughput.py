"""Realisation-slots per second of the JAX engine and of the reference simulator.

The paper scenario (seed 0, one sampled instance) at load 1x with placement `least_loaded` and
controller `lbrr`, the sim defaults (200 ms of arrivals + 100 ms of drain, 1 ms slots). Each engine
size runs in a fresh process so that its peak memory (max RSS) is its own; compilation is timed
apart (ahead-of-time) and is not part of the throughput. Each row also gives the bytes of one
realisation's state (the scan carry, from its shapes) and the list sizes used. The reference
simulator runs a few realisations of the same scenario in the same session, on the same exogenous
samples. The engine holds the task rows a run starts with (`sim.capacities`, adaptive by default:
`edgefm.runner.initial_rows`); a row with list_overflow > 0 is one that a run would redo with twice
the rows.

``--compare REF`` also runs each size with the engine of the git revision REF (checked out into a
temporary worktree, imported in place of this one), alternating with the current one, and prints
the ratio current / REF: a change to the engine is always measured against the code before it in
the same run.

    python benchmarks/engine_throughput.py                     # R = 1, 16, 64, 256
    python benchmarks/engine_throughput.py --realisations 1 16 --reference 2 --out bench.json
    python benchmarks/engine_throughput.py --controller proposed --realisations 1 16 64
    python benchmarks/engine_throughput.py --realisations 16 64 --reference 0 --compare HEAD~1 --repeat 3
    EDGEFM_CPU_DEVICES=1 python benchmarks/engine_throughput.py --batch 0   # the vmapped one-device layout

On a machine without the package installed (a GPU box), run it from the repository root with
``PYTHONPATH=.:plugins``: it imports only the engine and the built-in plugins it names (no Hydra,
SCIP or netCDF).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SIZE_FIELDS = ("B", "buffer_capacity", "Ic", "Lc", "Lw", "Ln", "A", "J", "X", "Q", "T")  # the list sizes a row reports


CONTROLLERS = {  # name -> (module, class) of the engine's controller plugins
    "lbrr": ("edgefm_baselines", "LBRRController"),
    "proposed": ("edgefm_lyapunov", "ProposedController"),
    "propavg": ("edgefm_lyapunov", "PropAvgController"),
    "ga": ("edgefm_ga", "GAController"),
}


def make_controller(name: str):
    import importlib

    module, cls = CONTROLLERS[name]
    return getattr(importlib.import_module(module), cls)()


def setup(realisations: int, load: float, controller: str = "lbrr"):
    import edgefm  # noqa: F401  (enables x64)
    from edgefm.scenario import build_scenarios, load_spec
    from edgefm.sim.keys import realisation_keys
    from edgefm.sim.prepare import compute_sizes, make_params, stack_arrays
    from edgefm_baselines import LeastLoadedPlacement
    from edgefm_channels import NakagamiChannel
    from edgefm_workloads import PoissonWorkload

    from edgefm.runner import SimSettings

    sim = SimSettings(realisations=realisations)  # the sim defaults (SimConfig)
    scenarios = build_scenarios(load_spec(str(ROOT / "conf" / "scenario" / "paper.yaml")), seed=0)
    x_core = [LeastLoadedPlacement().solve(sc, slot_ms=sim.slot_ms).x_core for sc in scenarios]
    channel, workload = NakagamiChannel(), PoissonWorkload(load=load)
    controller = make_controller(controller)
    try:  # the task rows a run starts with (adaptive capacities), where the engine has them
        from edgefm.runner import initial_rows

        rows = {"rows": initial_rows(scenarios, sim, load=load, peak_factor=1.0)}
    except ImportError:  # an older engine: the whole buffer
        rows = {}
    sizes = compute_sizes(scenarios, x_core, sim, load=load, peak_factor=1.0, **rows)
    arrays = stack_arrays(scenarios, x_core, sizes.Ic, sizes.T)
    params = make_params(sim)
    keys = realisation_keys(0, len(scenarios), realisations)
    return sim, scenarios, x_core, (channel, workload, controller), sizes, arrays, params, keys


def state_bytes(keys, arrays, params, sizes, comps) -> int | None:
    """Bytes of one realisation's engine state (the scan carry), from its shapes; None where the
    engine under test has no `_initial_state` of this form (an older revision)."""
    import jax

    try:
        from edgefm.sim.prepare import slice_instance
        from edgefm.sim.rollout import _initial_state, engine_components

        a0 = slice_instance(arrays, 0)
        engine = engine_components(*comps)
        shapes = jax.eval_shape(lambda k: _initial_state(k, a0, params, sizes, engine), keys[0, 0])
    except Exception:  # noqa: BLE001 - a benchmark of an older engine goes on without it
        return None
    return int(sum(x.size * x.dtype.itemsize for x in jax.tree_util.tree_leaves(shapes)))


def engine_child(realisations: int, load: float, controller: str, batch: int | None = None) -> dict:
    import edgefm
    import jax

    from edgefm.sim.rollout import compile_simulation, realisation_layout

    _, _, _, comps, sizes, arrays, params, keys = setup(realisations, load, controller)
    state = state_bytes(keys, arrays, params, sizes, comps)
    t0 = time.perf_counter()
    fn = compile_simulation(keys, arrays, params, sizes, *comps, batch=batch)
    compile_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = jax.block_until_ready(fn(keys, arrays, params))
    run_s = time.perf_counter() - t0
    stats = jax.devices()[0].memory_stats() or {}
    return {
        "controller": controller,
        "realisations": realisations,
        "compile_s": compile_s,
        "run_s": run_s,
        "realisation_slots_per_s": realisations * sizes.T / run_s,
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "list_overflow": int(out["list_overflow"].sum()),
        "ontime_rate_mean": float(out["ontime_rate"].mean()),
        "device": str(jax.devices()[0]),
        "devices": len(jax.devices()),
        "layout": realisation_layout(realisations, batch),  # (group, shards)
        "device_peak_mib": stats.get("peak_bytes_in_use", 0) / 2**20,
        "state_mib": None if state is None else state / 2**20,
        "sizes": {name: int(getattr(sizes, name)) for name in SIZE_FIELDS if hasattr(sizes, name)},
        "engine": str(Path(edgefm.__file__).resolve().parents[1]),
    }


def reference_run(count: int, load: float, controller: str) -> dict:
    import numpy as np

    from edgefm.reference import simulate_reference
    from edgefm.sim.prepare import slice_instance
    from edgefm.sim.rollout import exogenous_samples

    sim, scenarios, x_core, (channel, workload, _), sizes, arrays, params, keys = setup(count, load, controller)
    a0 = slice_instance(arrays, 0)
    seconds = 0.0
    for r in range(count):
        counts, uplink, rates = (np.asarray(x) for x in exogenous_samples(keys[0, r], a0, params, sizes, channel, workload))
        t0 = time.perf_counter()
        simulate_reference(
            scenarios[0], x_core[0], counts, uplink, rates, slot_ms=sim.slot_ms, arrival_slots=sizes.T_arr,
            total_slots=sizes.T, core_dispatch=sim.core_dispatch, root_ready=sim.root_ready,
            light_order=sim.light_order, y_max=sim.y_max,
            max_light_instances=sim.max_light_instances, buffer_capacity=sizes.B, controller=controller,
        )
        seconds += time.perf_counter() - t0
    return {"realisations": count, "run_s": seconds, "realisation_slots_per_s": count * sizes.T / seconds}


@contextlib.contextmanager
def worktree(ref: str):
    """The repository at git revision ``ref``, checked out into a temporary folder (removed after)."""
    folder = Path(tempfile.mkdtemp(prefix="edgefm-ref-")) / "tree"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(folder), ref], check=True)
    try:
        yield folder
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)], check=False)


def child(tree: Path, realisations: int, args) -> dict | None:
    """One engine size in a fresh process importing the engine of ``tree`` (this script's code)."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(tree), str(tree / "plugins")]))
    proc = subprocess.run(
        [sys.executable, __file__, "--child", str(realisations), "--load", str(args.load),
         "--controller", args.controller] + ([] if args.batch is None else ["--batch", str(args.batch)]),
        capture_output=True, text=True, env=env, cwd=str(tree),
    )
    if proc.returncode != 0:  # e.g. out of memory at a large size: report it and go on
        print(f"{tree} realisations={realisations}: failed (exit {proc.returncode})\n{proc.stderr[-3000:]}", flush=True)
        return None
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--realisations", type=int, nargs="+", default=[1, 16, 64, 256])
    ap.add_argument("--reference", type=int, default=2, help="reference realisations to time (0 = skip)")
    ap.add_argument("--load", type=float, default=1.0)
    ap.add_argument("--controller", default="lbrr", choices=sorted(CONTROLLERS))
    ap.add_argument("--batch", type=int, default=None,
                    help="realisations vmapped at once (default: the engine's, 1 on the CPU; 0 = all)")
    ap.add_argument("--compare", default="", metavar="REF",
                    help="also run the engine of git revision REF (a temporary worktree), alternating with this one")
    ap.add_argument("--repeat", type=int, default=1, help="runs per (size, engine); the median is shown")
    ap.add_argument("--out", default="")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(engine_child(args.child, args.load, args.controller, args.batch)))
        return 0
    with contextlib.ExitStack() as stack:
        trees = {"current": ROOT}
        if args.compare:
            trees[args.compare] = stack.enter_context(worktree(args.compare))
        rows = []  # per (realisations, tree): the median run of --repeat alternating runs
        for r in args.realisations:
            runs = {label: [] for label in trees}
            for _ in range(args.repeat):
                for label, tree in trees.items():
                    row = child(tree, r, args)
                    if row is not None:
                        row["tree"] = label
                        runs[label].append(row)
                        print(json.dumps(row), flush=True)
            for label, found in runs.items():
                if found:
                    found.sort(key=lambda row: row["realisation_slots_per_s"])
                    median = dict(found[len(found) // 2])
                    median["runs_slots_per_s"] = [row["realisation_slots_per_s"] for row in found]
                    median["compile_s"] = statistics.median(row["compile_s"] for row in found)
                    rows.append(median)
    ref = reference_run(args.reference, args.load, args.controller) if args.reference else None
    if ref:
        print(json.dumps({"reference": ref}), flush=True)
    machine = f"{platform.node()} {platform.machine()} {platform.processor() or ''} cpus={__import__('os').cpu_count()}"
    print(f"\nmachine: {machine}\n")
    print(f"controller {args.controller}, load {args.load}x, {args.repeat} run(s) per row, median shown"
          + (f"; compared with {args.compare}" if args.compare else ""))
    print("| engine | realisations | layout (group, devices) | state (MiB) | sizes | compile (s) | run (s) | "
          "realisation-slots/s | x REF | x reference | peak RSS (MiB) | list_overflow |")
    print("|---|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    base = {row["realisations"]: row for row in rows if row["tree"] == args.compare}
    for row in rows:
        ratio = row["realisation_slots_per_s"] / ref["realisation_slots_per_s"] if ref else float("nan")
        against = base.get(row["realisations"])
        vs = row["realisation_slots_per_s"] / against["realisation_slots_per_s"] if against else float("nan")
        state = "-" if row.get("state_mib") is None else f"{row['state_mib']:.2f}"
        sizes = " ".join(f"{k}={v}" for k, v in row.get("sizes", {}).items() if k in ("B", "Lc", "Lw", "Ln", "J"))
        print(f"| {row['tree']} | {row['realisations']} | {tuple(row['layout'])} | {state} | {sizes} | "
              f"{row['compile_s']:.1f} | {row['run_s']:.1f} | {row['realisation_slots_per_s']:.0f} | {vs:.2f} | "
              f"{ratio:.1f} | {row['peak_rss_mib']:.0f} | {row['list_overflow']} |")
    if ref:
        print(f"| reference | {ref['realisations']} | - | - | - | - | {ref['run_s']:.1f} | "
              f"{ref['realisation_slots_per_s']:.1f} | - | 1 | - | - |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"machine": machine, "controller": args.controller, "engine": rows, "reference": ref,
                       "load": args.load, "compare": args.compare, "repeat": args.repeat}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
