"""Placement scaling: solve time and gap of `milp` (SCIP, single-threaded) and `milp_relaxed`.

Instances: the paper scenario (conf/scenario/paper.yaml, seed 0) and synthetic networks from
`edgefm_milp_scip.synthetic.random_scenario(nodes, core_services, seed=1)` (a fifth of the nodes
are edge servers; 1.5 light services per core service; one user per device).

    python benchmarks/placement_scaling.py                 # every row (about 6 minutes on 2 cores)
    python benchmarks/placement_scaling.py --only milp:paper,milp_relaxed:500x50

Prints a markdown table; each row names the command that reproduces it alone. Times are wall
clock of `solve()` (program building included); "SCIP s" is SCIP's own solving time over all solves.
For `milp` the gap is SCIP's (0 = proven optimal); for `milp_relaxed` it is the gap to the LP
relaxation's bound, which also contains the integrality gap of the program.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
import warnings
from pathlib import Path

import numpy as np

from edgefm.scenario import build_scenarios, load_spec
from edgefm_milp_scip.milp import MilpPlacement
from edgefm_milp_scip.relaxed import RelaxedPlacement
from edgefm_milp_scip.synthetic import random_scenario

ROOT = Path(__file__).resolve().parents[1]

# (solver, instance, kappa_mode): the exact solver keeps the κ rule where a solve is fast enough for
# the bisection; on larger networks one κ-free solve at the time limit shows how far SCIP gets.
ROWS = [
    ("milp", "paper", "retention"),
    ("milp", "10x4", "retention"),
    ("milp", "50x10", "off"),
    ("milp", "100x20", "off"),
    ("milp", "200x30", "off"),
    ("milp_relaxed", "paper", "retention"),
    ("milp_relaxed", "50x10", "off"),
    ("milp_relaxed", "100x20", "off"),
    ("milp_relaxed", "100x20", "retention"),
    ("milp_relaxed", "200x30", "off"),
    ("milp_relaxed", "200x30", "retention"),
    ("milp_relaxed", "500x50", "off"),
    ("milp_relaxed", "500x50", "retention"),
]


def scenario(instance: str):
    if instance == "paper":
        return build_scenarios(load_spec(ROOT / "conf" / "scenario" / "paper.yaml"), seed=0)[0]
    nodes, core = (int(v) for v in instance.split("x"))
    return random_scenario(nodes, core, seed=1)


def run_row(solver: str, instance: str, kappa_mode: str, time_limit: float, heuristics: str = "default") -> dict:
    sc = scenario(instance)
    if solver == "milp":
        placement = MilpPlacement(kappa_mode=kappa_mode, time_limit_s=time_limit, threads=1, heuristics=heuristics)
    else:
        placement = RelaxedPlacement(kappa_mode=kappa_mode)
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the time-limit warning: the gap says it
        result = placement.solve(sc, slot_ms=1.0)
    seconds = time.perf_counter() - t0
    info = result.info
    return {
        "solver": solver,
        "instance": instance,
        "nodes": sc.num_nodes,
        "core": int(sc.service_is_core.sum()),
        "kappa_mode": kappa_mode,
        "kappa": info["solver_kappa"],
        "solves": info["solver_num_solves"],
        "status": info["solver_status"],
        "seconds": seconds,
        "scip_s": info["solver_time_s"] if solver == "milp" else float("nan"),
        "gap": info["solver_gap"],
        "objective": info["solver_objective"],
        "instances": int(result.x_core.sum()),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="", help="comma-separated solver:instance[:kappa_mode] rows")
    parser.add_argument("--time-limit", type=float, default=60.0, help="SCIP time limit per solve (s)")
    parser.add_argument("--heuristics", default="default", help="milp: SCIP heuristics emphasis (placement.heuristics)")
    args = parser.parse_args(argv)
    rows = ROWS
    if args.only:
        wanted = [tuple(item.split(":")) for item in args.only.split(",")]
        rows = [r for r in ROWS if any(r[: len(w)] == w for w in wanted)]
        rows += [(w[0], w[1], w[2]) for w in wanted if len(w) == 3 and w not in rows]
    print(f"# placement scaling — {platform.processor() or platform.machine()}, python {platform.python_version()}, "
          f"SCIP single-threaded, time limit {args.time_limit:g} s per solve, heuristics {args.heuristics}\n")  # fmt: skip
    print("| solver | instance | nodes | core MS | κ mode | κ | solves | status | time (s) | SCIP (s) | gap | objective | instances | command |")
    print("|---|---|---:|---:|---|---:|---:|---|---:|---:|---:|---:|---:|---|")
    for solver, instance, kappa_mode in rows:
        r = run_row(solver, instance, kappa_mode, args.time_limit, args.heuristics)
        extra = f" --heuristics {args.heuristics}" if args.heuristics != "default" else ""
        command = f"`python benchmarks/placement_scaling.py --only {solver}:{instance}:{kappa_mode}{extra}`"
        scip_s = "–" if np.isnan(r["scip_s"]) else f"{r['scip_s']:.1f}"
        print(
            f"| {solver} | {instance} | {r['nodes']} | {r['core']} | {kappa_mode} | {r['kappa']} | {r['solves']} | "
            f"{r['status']} | {r['seconds']:.1f} | {scip_s} | {r['gap']:.2%} | {r['objective']:.4g} | "
            f"{r['instances']} | {command} |",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
