"""The tier-1 integer program on SCIP (PySCIPOpt): one exact solve, and the κ retention rule.

Sparsity forms (MODEL.md §5): ``global`` — Σ_{v,m} 1{x_{v,m} ≥ 1} ≥ κ; ``per_service`` — every core
service on at least κ nodes (Σ_v 1{x_{v,m} ≥ 1} ≥ κ_m, the same κ for every m). The indicator is a
binary z_{v,m} with z ≤ x ≤ M_{v,m} z, for the pairs that can hold an instance.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import pyscipopt

from edgefm.errors import ConfigError, SolverError
from edgefm.scenario.model import RESOURCES
from edgefm_milp_scip.program import Program, reserve_by_kind

FORMS = ("global", "per_service")
HEURISTICS = ("default", "aggressive", "fast", "off")  # SCIP's emphasis settings for primal heuristics


@dataclasses.dataclass
class Solve:
    """One SCIP solve of the program at one κ (None = κ-free)."""

    kappa: int | None
    status: str  # SCIP status: optimal, infeasible, timelimit, gaplimit, ...
    x: np.ndarray | None  # [V,J] int, None without a solution
    objective: float  # inf without a solution
    gap: float  # relative gap |primal - dual| / min(|primal|, |dual|) (SCIP), inf without a solution
    seconds: float  # SCIP solving time
    model: pyscipopt.Model

    @property
    def has_solution(self) -> bool:
        return self.x is not None


@dataclasses.dataclass
class SolverOptions:
    time_limit_s: float = 60.0
    gap: float = 0.0
    threads: int = 1
    seed: int = 0
    verbose: bool = False
    heuristics: str = "default"  # one of HEURISTICS
    params: dict = dataclasses.field(default_factory=dict)  # SCIP parameters, set after everything else


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", str(name))


def _names(program: Program) -> Callable[[int, int], str]:
    nodes = [_safe(n) for n in program.node_names]
    services = [_safe(s) for s in program.service_names]
    if len(set(nodes)) == len(nodes) and len(set(services)) == len(services):
        return lambda v, j: f"{nodes[v]}_{services[j]}"
    return lambda v, j: f"v{v}_m{j}"


def build_model(program: Program, kappa: int | None, form: str, options: SolverOptions) -> tuple[pyscipopt.Model, dict]:
    """The SCIP model of ``program`` with the sparsity requirement at ``kappa`` (None: κ-free)."""
    model = pyscipopt.Model(f"edgefm_core_placement_kappa_{'free' if kappa is None else kappa}")
    if not options.verbose:
        model.hideOutput()
    model.setParam("limits/time", float(options.time_limit_s))
    model.setParam("limits/gap", float(options.gap))
    model.setParam("randomization/randomseedshift", int(options.seed))
    if options.threads > 1:
        model.setParam("parallel/maxnthreads", int(options.threads))
    if options.heuristics != "default":
        model.setHeuristics(getattr(pyscipopt.SCIP_PARAMSETTING, options.heuristics.upper()))
    for key, value in options.params.items():
        model.setParam(key, value)
    name = _names(program)
    V, J = program.coef.shape
    x, z = {}, {}
    for v in range(V):
        for j in range(J):
            if program.bound[v, j] >= 1:
                x[v, j] = model.addVar(f"x_{name(v, j)}", vtype="I", lb=0, ub=int(program.bound[v, j]))
    model.setObjective(pyscipopt.quicksum(float(program.coef[v, j]) * var for (v, j), var in x.items()), "minimize")
    for v in range(V):
        for k in range(program.resource.shape[1]):
            terms = [(float(program.resource[j, k]), x[v, j]) for j in range(J) if (v, j) in x and program.resource[j, k] > 0]
            if terms:
                model.addCons(
                    pyscipopt.quicksum(c * var for c, var in terms) <= float(program.free[v, k]),
                    name=f"cap_{_safe(program.node_names[v])}_{RESOURCES[k]}",
                )
    for j in range(J):
        model.addCons(
            pyscipopt.quicksum(x[v, j] for v in range(V) if (v, j) in x) >= int(program.demand[j]),
            name=f"demand_{_safe(program.service_names[j])}",
        )
    if kappa is not None:
        for (v, j), var in x.items():
            z[v, j] = model.addVar(f"z_{name(v, j)}", vtype="B")
            model.addCons(z[v, j] <= var, name=f"on_{name(v, j)}")
            model.addCons(var <= int(program.bound[v, j]) * z[v, j], name=f"bigm_{name(v, j)}")
        if form == "global":
            model.addCons(pyscipopt.quicksum(z.values()) >= int(kappa), name="kappa")
        else:
            for j in range(J):
                model.addCons(
                    pyscipopt.quicksum(z[v, j] for v in range(V) if (v, j) in z) >= int(kappa),
                    name=f"kappa_{_safe(program.service_names[j])}",
                )
    return model, x


def solve(program: Program, kappa: int | None, form: str, options: SolverOptions) -> Solve:
    """One exact SCIP solve (to the gap ``options.gap``, 0 = proven optimal, within the time limit)."""
    model, x = build_model(program, kappa, form, options)
    t0 = time.perf_counter()
    if options.threads > 1:
        model.solveConcurrent()
    else:
        model.optimize()
    seconds = float(model.getSolvingTime()) if model.getStatus() != "unknown" else time.perf_counter() - t0
    status = str(model.getStatus())
    if model.getNSols() == 0 or status in ("infeasible", "inforunbd", "unbounded"):
        return Solve(kappa, status, None, np.inf, np.inf, seconds, model)
    sol = model.getBestSol()
    values = np.zeros(program.coef.shape, np.int64)
    for (v, j), var in x.items():
        values[v, j] = int(round(model.getSolVal(sol, var)))
    objective = program.objective(values)
    gap = 0.0 if status == "optimal" else float(model.getGap())
    return Solve(kappa, status, values, objective, gap, seconds, model)


def feasible(program: Program, options: SolverOptions) -> Solve:
    """An exact check that the capacity and demand rows of ``program`` hold together (no sparsity
    requirement): one SCIP solve with a zero objective, so the first placement found is optimal.
    ``has_solution`` tells; status ``infeasible`` is a proof that none exists, a limit without a
    solution is no answer."""
    return solve(dataclasses.replace(program, coef=np.zeros_like(program.coef)), None, FORMS[0], options)


def check_params(params: dict, field: str) -> None:
    """Raise a ConfigError unless every (name, value) is a SCIP parameter and a value it accepts."""
    model = pyscipopt.Model()
    model.hideOutput()
    for key, value in params.items():
        where = f"{field}.{key}"
        try:
            current = model.getParam(key)
        except KeyError:
            raise ConfigError(where, value, "a SCIP parameter name, e.g. limits/nodes or heuristics/rins/freq "
                              "(the list: SCIP's documentation, or pyscipopt.Model().getParams())") from None
        kind = type(current)
        if kind is bool:
            ok = isinstance(value, bool)
        elif kind is int:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        elif kind is float:
            ok = isinstance(value, numbers.Real) and not isinstance(value, bool)
        else:
            ok = isinstance(value, str)
        if not ok:
            raise ConfigError(where, value, f"a value of SCIP type {kind.__name__} (now {current!r})")
        reason = _set_quietly(model, key, value)
        if reason is not None:
            raise ConfigError(where, value, f"a value SCIP accepts for {key} ({kind.__name__}{reason})")


def _set_quietly(model: pyscipopt.Model, key: str, value) -> str | None:
    """``model.setParam(key, value)`` with SCIP's own error lines (written by C to stderr) held back;
    None if it was set, else ", in range [lo,hi]" when SCIP named the range, or ""."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as held:
        os.dup2(held.fileno(), 2)
        try:
            model.setParam(key, value)
            return None
        except (ValueError, TypeError, LookupError):
            held.seek(0)
            found = re.search(r"range (\[[^\]]*\])", held.read().decode(errors="replace"))
            return f", in range {found.group(1)}" if found else ""
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def occupied(x: np.ndarray, form: str) -> int:
    """The sparsity measure of a solution: distinct occupied pairs (global), or the fewest nodes
    any service is on (per_service)."""
    on = np.asarray(x) >= 1
    return int(on.sum()) if form == "global" else (int(on.sum(0).min()) if on.shape[1] else 0)


def kappa_max(program: Program, form: str) -> int:
    """Largest κ the pairs that can hold an instance allow at all."""
    feasible = program.feasible_pairs
    return int(feasible.sum()) if form == "global" else (int(feasible.sum(0).min()) if feasible.shape[1] else 0)


# ----------------------------------------------------------------------------------------------
# Why a program is infeasible, in one line


def _reserve_text(reserve) -> str:
    """The option ``placement.reserve`` in words (a number, a [K] list or a per-kind mapping)."""
    if isinstance(reserve, Mapping):
        kinds = {k: [float(f) for f in v] for k, v in reserve_by_kind(reserve).items()}
        return f"the light reserve (placement.reserve = {kinds})"
    fractions = np.broadcast_to(np.asarray(reserve, float), (len(RESOURCES),))
    if np.all(fractions == fractions[0]):
        return f"the {fractions[0]:.0%} light reserve (placement.reserve = {fractions[0]:g})"
    return f"the light reserve (placement.reserve = {[float(f) for f in fractions]})"


def demand_diagnosis(program: Program, reserve, solver: str) -> str | None:
    """A one-line reason if some service's demand, or all together, cannot fit; else None.
    ``reserve`` is the option placement.reserve, for the message."""
    for j in range(program.num_services):
        need = int(program.demand[j])
        r = program.resource[j]
        fit = int(program.bound[:, j].sum())
        if fit >= need:
            continue
        # the resource that limits this service most: instances that fit by that resource alone
        with np.errstate(divide="ignore", invalid="ignore"):
            by_k = np.where(r > 0, np.floor(program.free / np.where(r > 0, r, 1.0) + 1e-9).sum(0), np.inf)
        k = int(np.argmin(by_k))
        return (
            f"{solver}: infeasible: core service {program.service_names[j]!r} needs req_m = {need} instances "
            f"of {RESOURCES[k]} {r[k]:.4g} each, but after {_reserve_text(reserve)} the nodes hold at most "
            f"{fit} (by {RESOURCES[k]} alone {int(min(by_k[k], 1e12))}: {program.free[:, k].max():.4g} free on the "
            f"largest node); lower placement.reserve or placement.plan_load (or the load)"
        )
    total_need = program.demand @ program.resource  # [K]
    total_free = program.free.sum(0)
    over = total_need - total_free
    if np.any(over > 0):
        k = int(np.argmax(over / np.maximum(total_free, 1e-12)))
        return (
            f"{solver}: infeasible: the core demand req_m of all services together needs {total_need[k]:.4g} "
            f"{RESOURCES[k]} but only {total_free[k]:.4g} is left on the network after {_reserve_text(reserve)}; "
            f"lower placement.reserve or placement.plan_load (or the load)"
        )
    return None


def kappa_diagnosis(program: Program, kappa: int, form: str, solver: str) -> str | None:
    """A one-line reason if κ exceeds what the feasible pairs allow; else None."""
    if form == "global":
        pairs = int(program.feasible_pairs.sum())
        if kappa > pairs:
            return (
                f"{solver}: infeasible: kappa = {kappa} exceeds the {pairs} (node, core service) pairs that can "
                f"hold an instance after the light reserve; lower placement.kappa (or use placement.kappa_mode=retention)"
            )
        return None
    nodes = program.feasible_pairs.sum(0)
    j = int(np.argmin(nodes))
    if kappa > nodes[j]:
        return (
            f"{solver}: infeasible: kappa = {kappa} nodes per core service, but core service "
            f"{program.service_names[j]!r} fits on only {int(nodes[j])} nodes after the light reserve; lower placement.kappa"
        )
    return None


def write_model(model: pyscipopt.Model, folder: Path, stem: str) -> list[str]:
    """Write the original (not presolved) program as ``<stem>.mps`` and ``<stem>.lp``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("mps", "lp"):
        path = folder / f"{stem}.{ext}"
        model.writeProblem(str(path), trans=False, verbose=False)
        paths.append(str(path))
    return paths


def ensure_solution(result: Solve, program: Program, form: str, reserve, options: SolverOptions,
                    solver: str) -> Solve:
    """Raise a one-line SolverError if ``result`` has no solution, naming why."""
    if result.has_solution:
        return result
    if result.status in ("infeasible", "inforunbd"):
        reason = demand_diagnosis(program, reserve, solver)
        if reason is None and result.kappa is not None:
            reason = kappa_diagnosis(program, int(result.kappa), form, solver)
            if reason is None:
                what = "distinct (node, core service) pairs" if form == "global" else "nodes for every core service"
                reason = (
                    f"{solver}: infeasible: kappa = {result.kappa} {what} cannot be held together with the demand "
                    f"req_m within the capacity left after {_reserve_text(reserve)}; lower placement.kappa or "
                    f"placement.reserve"
                )
        if reason is None:
            reason = (
                f"{solver}: infeasible: the demand req_m of the core services does not fit the capacity left after "
                f"{_reserve_text(reserve)} once instances are whole (each service alone fits); lower "
                f"placement.reserve or placement.plan_load (or the load)"
            )
        raise SolverError(reason)
    if result.status == "timelimit" or result.status.endswith("limit"):
        raise SolverError(
            f"{solver}: SCIP stopped ({result.status}) after {result.seconds:.1f} s without a feasible placement "
            f"(kappa = {'free' if result.kappa is None else result.kappa}); raise placement.time_limit_s "
            f"(now {options.time_limit_s:g})"
        )
    raise SolverError(f"{solver}: SCIP ended with status {result.status!r} and no placement")


__all__ = [
    "FORMS", "HEURISTICS", "Solve", "SolverOptions", "build_model", "check_params", "demand_diagnosis",
    "ensure_solution", "feasible", "kappa_diagnosis", "kappa_max", "occupied", "solve", "write_model",
]
