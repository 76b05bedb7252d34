"""Realisation-slots per second of the JAX engine and of the reference simulator (issue 2).

The paper scenario (seed 0, one sampled instance) at load 1x with placement `least_loaded` and
controller `lbrr`, the default horizon (200 ms of arrivals + 100 ms of drain, 1 ms slots). Each
engine size runs in a fresh process so that its peak memory (max RSS) is its own; compilation is
timed apart (ahead-of-time) and is not part of the throughput. The reference simulator runs a few
realisations of the same scenario in the same session, on the same exogenous samples.

    python benchmarks/engine_throughput.py                     # R = 1, 16, 64, 256
    python benchmarks/engine_throughput.py --realisations 1 16 --reference 2 --out bench.json
    python benchmarks/engine_throughput.py --controller proposed --realisations 1 16 64
    EDGEFM_CPU_DEVICES=1 python benchmarks/engine_throughput.py --batch 0   # the vmapped one-device layout

On a machine without the package installed (a GPU box), run it from the repository root with
``PYTHONPATH=.:plugins``: it imports only the engine and the built-in plugins it names (no Hydra,
SCIP or netCDF).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import time

SIM = dict(slot_ms=1.0, arrival_ms=200.0, drain_ms=100.0, core_dispatch="earliest_start", y_max=20,
           max_light_instances=8, buffer_factor=2.0, max_core_ready=0, max_light_waiting=0,
           quantiles=(0.5, 0.9, 0.95, 0.99))


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

    sim = SimSettings(realisations=realisations, **SIM)
    scenarios = build_scenarios(load_spec("conf/scenario/paper.yaml"), seed=0)
    x_core = [LeastLoadedPlacement().solve(sc, slot_ms=sim.slot_ms).x_core for sc in scenarios]
    channel, workload = NakagamiChannel(), PoissonWorkload(load=load)
    controller = make_controller(controller)
    sizes = compute_sizes(scenarios, x_core, sim, load=load, peak_factor=1.0)
    arrays = stack_arrays(scenarios, x_core, sizes.Ic, sizes.T)
    params = make_params(sim)
    keys = realisation_keys(0, len(scenarios), realisations)
    return sim, scenarios, x_core, (channel, workload, controller), sizes, arrays, params, keys


def engine_child(realisations: int, load: float, controller: str, batch: int | None = None) -> dict:
    import jax

    from edgefm.sim.rollout import compile_simulation, realisation_layout

    _, _, _, comps, sizes, arrays, params, keys = setup(realisations, load, controller)
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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--realisations", type=int, nargs="+", default=[1, 16, 64, 256])
    ap.add_argument("--reference", type=int, default=2, help="reference realisations to time (0 = skip)")
    ap.add_argument("--load", type=float, default=1.0)
    ap.add_argument("--controller", default="lbrr", choices=sorted(CONTROLLERS))
    ap.add_argument("--batch", type=int, default=None,
                    help="realisations vmapped at once (default: the engine's, 1 on the CPU; 0 = all)")
    ap.add_argument("--out", default="")
    ap.add_argument("--child", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print(json.dumps(engine_child(args.child, args.load, args.controller, args.batch)))
        return 0
    rows = []
    for r in args.realisations:
        proc = subprocess.run(
            [sys.executable, __file__, "--child", str(r), "--load", str(args.load), "--controller", args.controller]
            + ([] if args.batch is None else ["--batch", str(args.batch)]),
            capture_output=True, text=True,
        )
        if proc.returncode != 0:  # e.g. out of memory at a large size: report it and go on
            print(f"realisations={r}: failed (exit {proc.returncode})\n{proc.stderr[-3000:]}", flush=True)
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), flush=True)
    ref = reference_run(args.reference, args.load, args.controller) if args.reference else None
    if ref:
        print(json.dumps({"reference": ref}), flush=True)
    machine = f"{platform.node()} {platform.machine()} {platform.processor() or ''} cpus={__import__('os').cpu_count()}"
    print(f"\nmachine: {machine}\n")
    print("| realisations | layout (group, devices) | compile (s) | run (s) | realisation-slots/s | x reference | peak RSS (MiB) | list_overflow |")
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    for row in rows:
        ratio = row["realisation_slots_per_s"] / ref["realisation_slots_per_s"] if ref else float("nan")
        print(f"| {row['realisations']} | {tuple(row['layout'])} | {row['compile_s']:.1f} | {row['run_s']:.1f} | "
              f"{row['realisation_slots_per_s']:.0f} | {ratio:.1f} | {row['peak_rss_mib']:.0f} | {row['list_overflow']} |")
    if ref:
        print(f"| reference ({ref['realisations']}) | - | - | {ref['run_s']:.1f} | {ref['realisation_slots_per_s']:.1f} | 1 | - | - |")
    if args.out:
        with open(args.out, "w") as fh:
            json.dump({"machine": machine, "controller": args.controller, "engine": rows, "reference": ref,
                       "load": args.load}, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
