"""How far from optimal is `milp` at its time limit? A Dantzig-Wolfe bound and a price-and-branch placement.

The tier-1 program (MODEL.md §5, κ off) is one 4-resource integer knapsack per node linked by the
demand rows Σ_v x[v,m] ≥ req_m. Column generation over per-node patterns (master: HiGHS LP with one
convexity row per node and the demand rows; pricing: each node's knapsack at the demand duals,
solved by SCIP) gives the Dantzig-Wolfe (= Lagrangian) bound, at least as strong as SCIP's LP bound.
The master over the generated patterns solved as an integer program gives a feasible placement.
The optimum lies between the two.

    python benchmarks/placement_bound.py 100x20            # about 5 minutes on 2 cores
    python benchmarks/placement_bound.py 50x10 --master-time 30

Instances: `random_scenario(nodes, core, seed=1)` as in placement_scaling.py.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import pyscipopt
from scipy.optimize import linprog

from edgefm_milp_scip.milp import MilpConfig, program_of
from edgefm_milp_scip.synthetic import random_scenario


def price(p, v: int, duals: np.ndarray) -> tuple[np.ndarray, float]:
    """Node v's best pattern at reduced costs coef[v] - duals: (x[J], its reduced cost)."""
    J = p.num_services
    model = pyscipopt.Model()
    model.hideOutput()
    xs = {j: model.addVar(vtype="I", lb=0, ub=int(p.bound[v, j])) for j in range(J) if p.bound[v, j] >= 1}
    if not xs:
        return np.zeros(J), 0.0
    for k in range(p.resource.shape[1]):
        model.addCons(pyscipopt.quicksum(float(p.resource[j, k]) * x for j, x in xs.items()) <= float(p.free[v, k]))
    model.setObjective(pyscipopt.quicksum(float(p.coef[v, j] - duals[j]) * x for j, x in xs.items()), "minimize")
    model.optimize()
    out = np.zeros(J)
    for j, x in xs.items():
        out[j] = round(model.getVal(x))
    return out, float(model.getObjVal())


def column_generation(p, max_rounds: int = 200, big: float = 1e7):
    V, J = p.coef.shape
    cols = [[np.zeros(J), price(p, v, np.zeros(J))[0]] for v in range(V)]  # empty + unpriced best
    bound = -np.inf
    for rounds in range(1, max_rounds + 1):
        flat = [(v, c) for v in range(V) for c in cols[v]]
        n = len(flat)
        cost = np.array([p.coef[v] @ c for v, c in flat] + [big] * J)  # + artificial demand slacks
        a_ub = np.zeros((J, n + J))
        a_eq = np.zeros((V, n + J))
        for i, (v, c) in enumerate(flat):
            a_ub[:, i] = -c
            a_eq[v, i] = 1.0
        a_ub[:, n:] = -np.eye(J)
        lp = linprog(cost, A_ub=a_ub, b_ub=-p.demand, A_eq=a_eq, b_eq=np.ones(V), bounds=(0, None), method="highs")
        duals, conv = -lp.ineqlin.marginals, lp.eqlin.marginals
        lagrangian, added = float(duals @ p.demand), 0
        for v in range(V):
            x, reduced = price(p, v, duals)
            lagrangian += reduced
            if reduced - conv[v] < -1e-6:
                cols[v].append(x)
                added += 1
        bound = max(bound, lagrangian)
        print(f"round {rounds}: master {lp.fun:.6e}  Lagrangian bound {lagrangian:.6e}  new patterns {added}", flush=True)
        if added == 0:
            break
    return cols, bound, rounds


def restricted_master(p, cols, time_limit: float):
    V, J = p.coef.shape
    model = pyscipopt.Model()
    model.hideOutput()
    model.setParam("limits/time", time_limit)
    pick = []
    for v in range(V):
        patterns = sorted({tuple(c) for c in cols[v]})
        z = [model.addVar(vtype="B", obj=float(p.coef[v] @ np.array(c))) for c in patterns]
        model.addCons(pyscipopt.quicksum(z) == 1)
        pick += [(v, var, np.array(c)) for var, c in zip(z, patterns)]
    for j in range(J):
        model.addCons(pyscipopt.quicksum(c[j] * var for _, var, c in pick if c[j] > 0) >= int(p.demand[j]))
    model.optimize()
    x = np.zeros((V, J))
    for v, var, c in pick:
        if model.getVal(var) > 0.5:
            x[v] += c
    return x, str(model.getStatus())


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("instance", help="NODESxCORE, e.g. 100x20")
    parser.add_argument("--master-time", type=float, default=60.0, help="time limit of the restricted master IP (s)")
    args = parser.parse_args(argv)
    nodes, core = (int(n) for n in args.instance.split("x"))
    p = program_of(MilpConfig(kappa_mode="off"), random_scenario(nodes, core, seed=1), 1.0)
    t0 = time.perf_counter()
    cols, bound, rounds = column_generation(p)
    t1 = time.perf_counter()
    x, status = restricted_master(p, cols, args.master_time)
    t2 = time.perf_counter()
    assert not p.violations(x), p.violations(x)
    primal = p.objective(x)
    print(f"\n{args.instance}: Dantzig-Wolfe bound {bound:.6e} ({rounds} rounds, {t1 - t0:.0f} s, "
          f"{sum(len(c) for c in cols)} patterns); restricted master {primal:.6e} ({status}, {t2 - t1:.0f} s); "
          f"the optimum is within {(primal - bound) / abs(bound):.2%} of either")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
