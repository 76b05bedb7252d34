"""Placement `milp_relaxed`: the program of MODEL.md §5 for networks too large for an exact solve.

1. The continuous relaxation, solved with optax: a primal-dual projected gradient (PDHG) — an optax
   SGD step on x / M_{v,m}, projected onto the box [0, 1], with multipliers for the capacity and
   demand rows updated by projected ascent — plus the sparsity requirement as a smooth penalty, its
   indicator 1{x ≥ 1} smoothed to 1 - exp(-x/τ), with a weight growing over the steps.
2. Rounding, then a repair that restores feasibility. Two roundings: (a) round down; (b) split each
   service's demand over the nodes in proportion to the relaxed solution and fill each node
   optimally around its share (a small exact per-node program). The repair adds what capacity,
   demand and sparsity still miss, one instance at a time where it costs least (making room by
   removing instances no constraint needs), then fills greedily; an exact per-node
   re-optimisation (block coordinate descent) polishes both, and the better is kept.
3. A lower bound from the LP relaxation (HiGHS, through SciPy), so that the result reports a valid
   gap: J_relaxed - J_opt ≤ J_relaxed - LB.
"""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from scipy.optimize import linprog
from scipy.sparse import coo_matrix

from edgefm.errors import ConfigError, SolverError
from edgefm.interfaces import AbstractPlacementSolver, PlacementResult, host
from edgefm.scenario.hostable import fit_info
from edgefm_milp_scip import scip
from edgefm_milp_scip.milp import ProgramPlacement, finite, fitted_program
from edgefm_milp_scip.program import Program, reserve_info, to_placement


# ----------------------------------------------------------------------------------------------
# 1. The relaxation


@functools.partial(jax.jit, static_argnames=("steps", "per_service"))
def _descend(coef, bound, resource, free, demand, kappa, omega, penalty, tau, *, steps: int, per_service: bool):
    """Primal-dual projected gradient (PDHG) on u = x / M ∈ [0, 1]; returns x [V,J].

    Capacity and demand are scaled rows ((x r)_vk / free_vk ≤ 1, Σ_v x_vj / req_j ≥ 1) with
    multipliers updated by projected ascent; the primal step is an optax SGD step on the gradient of
    the Lagrangian plus the smooth sparsity penalty, projected onto the box.
    """
    feasible = bound >= 1
    c = coef * bound / jnp.maximum(jnp.sum(jnp.abs(coef) * bound), 1e-12)
    free_s = jnp.maximum(free, 1e-9)
    demand_s = jnp.maximum(demand, 1.0)

    def rows(u):  # K u: capacity rows [V,K], demand rows [J] (as -Σ x / req <= -1)
        x = u * bound
        return (x @ resource) / free_s, -x.sum(0) / demand_s

    def rows_t(y_cap, y_dem):  # K^T y
        return ((y_cap / free_s) @ resource.T - (y_dem / demand_s)[None, :]) * bound

    def sparsity(u):
        on = jnp.where(feasible, 1.0 - jnp.exp(-u * bound / tau), 0.0)
        short = (kappa - on.sum(0)) if per_service else (kappa - on.sum())
        return jnp.sum(jax.nn.relu(short / jnp.maximum(kappa, 1.0)) ** 2)

    def power(_, u):  # ||K|| by power iteration
        g = rows_t(*rows(u))
        return g / jnp.maximum(jnp.linalg.norm(g), 1e-30)

    u = jax.lax.fori_loop(0, 30, power, jnp.where(feasible, 1.0, 0.0).astype(coef.dtype))
    norm = jnp.sqrt(jnp.linalg.norm(rows_t(*rows(u))))
    # primal weight as in PDLP, ||c|| / ||rhs||, times the option `primal_weight`
    omega = omega * jnp.linalg.norm(c) / jnp.sqrt(free.size + demand.size)
    tau_p, sigma = 0.9 / norm / omega, 0.9 / norm * omega
    opt = optax.sgd(tau_p)
    sparsity_grad = jax.grad(sparsity)

    def step(carry, t):
        u, y_cap, y_dem, state = carry
        weight = penalty * (t + 1.0) / steps  # the sparsity penalty grows linearly to `penalty`
        g = c + rows_t(y_cap, y_dem) + weight * sparsity_grad(u)
        updates, state = opt.update(g, state, u)
        u_new = jnp.clip(optax.apply_updates(u, updates), 0.0, 1.0)
        cap, dem = rows(2.0 * u_new - u)
        y_cap = jax.nn.relu(y_cap + sigma * (cap - 1.0))
        y_dem = jax.nn.relu(y_dem + sigma * (dem + 1.0))
        return (u_new, y_cap, y_dem, state), None

    u0 = jnp.zeros_like(coef)
    init = (u0, jnp.zeros_like(free), jnp.zeros_like(demand), opt.init(u0))
    (u, _, _, _), _ = jax.lax.scan(step, init, jnp.arange(steps, dtype=coef.dtype))
    return u * bound


def relaxed_solution(program: Program, kappa: int, config, per_service: bool) -> np.ndarray:
    """[V,J] float: the relaxed placement, before rounding; ``config``: the options (the placement,
    or its ``Config``)."""
    f64 = functools.partial(jnp.asarray, dtype=jnp.float64)
    x = _descend(
        f64(program.coef), f64(program.bound), f64(program.resource), f64(program.free), f64(program.demand),
        f64(kappa), f64(config.primal_weight), f64(config.penalty), f64(config.smoothing),
        steps=int(config.steps), per_service=per_service,
    )  # fmt: skip
    return np.asarray(x, dtype=float)


# ----------------------------------------------------------------------------------------------
# 2. Rounding and repair


class Infeasible(Exception):
    pass


def repair(program: Program, x_relaxed: np.ndarray, kappa: int, per_service: bool, exact: bool = True) -> np.ndarray:
    """An integer placement satisfying capacity, demand, bounds and sparsity, near ``x_relaxed``.

    Rounds down (the relaxation's small capacity excess is removed first), adds the missing demand
    (`place`), then the missing sparsity (`open_pair`), one instance at a time where it costs
    least, and fills every node greedily. Raises `Infeasible` when no step restores a constraint.
    """
    p = program
    coef, bound, need, free = p.coef, p.bound, p.resource, p.free
    x = np.clip(np.floor(x_relaxed + 1e-6), 0, bound).astype(np.int64)
    for v in np.flatnonzero(np.any(x @ need > free + 1e-9, axis=1)):
        while np.any(x[v] @ need > free[v] + 1e-9):
            held = np.flatnonzero(x[v] > 0)
            x[v, held[np.argmax(coef[v, held])]] -= 1

    def place(j: int) -> bool:
        """One more instance of service j where it costs least: where it fits, else after removing
        the least valuable instances above their service's demand (``exact``: also the exact best
        content of the three nodes where j is worth most)."""
        room = free - x @ need
        cand = x[:, j] < bound[:, j]
        direct = cand & np.all(need[j][None, :] <= room + 1e-9, axis=1)
        if direct.any():
            v = int(np.argmin(np.where(direct, coef[:, j], np.inf)))
            x[v, j] += 1
            return True
        total = x.sum(0)
        best, move = np.inf, None
        for v in np.flatnonzero(cand):
            counts, r, value = x[v].copy(), room[v].copy(), coef[v, j]
            surplus = total - p.demand
            while np.any(need[j] > r + 1e-9):
                ok = (counts > 0) & (surplus > 0) & (np.arange(len(counts)) != j)
                if not ok.any():
                    value = np.inf
                    break
                i = int(np.argmax(np.where(ok, coef[v], -np.inf)))
                counts[i] -= 1
                surplus[i] -= 1
                r += need[i]
                value -= coef[v, i]
            if value < best:
                counts[j] += 1
                best, move = value, (v, counts)
        for v in np.flatnonzero(cand)[np.argsort(coef[cand, j])][: 3 if exact else 0]:
            lower = np.maximum(0, p.demand - (total - x[v]))
            lower[j] = x[v, j] + 1
            new = node_optimum(coef[v], need, bound[v], free[v], lower, 0, None, 1.0)
            if new is not None and float(coef[v] @ (new - x[v])) < best:
                best, move = float(coef[v] @ (new - x[v])), (v, new)
        if move is None:
            return False
        x[move[0]] = move[1]
        return True

    def open_pairs(j, count: int) -> bool:
        """Up to ``count`` more occupied pairs (of service j, or of any service if j is None), at most
        one per node, cheapest first: a new instance where it fits, else a second instance of a pair
        (not needed by the demand) swapped for a new pair on the same node. False if none."""
        room = free - x @ need
        allowed = np.ones(p.num_services, bool) if j is None else np.arange(p.num_services) == j
        new = (x == 0) & (bound >= 1) & allowed[None, :]
        direct = new & np.all(need[None, :, :] <= room[:, None, :] + 1e-9, axis=2)
        if direct.any():
            cost = np.where(direct, coef, np.inf)
            best = np.argmin(cost, axis=1)
            nodes = np.flatnonzero(direct.any(1))
            nodes = nodes[np.argsort(cost[nodes, best[nodes]], kind="stable")][:count]
            x[nodes, best[nodes]] += 1
            return True
        spare = (x >= 2) & (x.sum(0) > p.demand)[None, :]  # [V,J']: an instance we may take away
        nodes = np.flatnonzero(spare.any(1) & new.any(1))
        if nodes.size == 0:
            return False
        # [n,J',J]: after removing one j' on v, a new j fits
        ok = np.all(need[None, None, :, :] <= room[nodes][:, None, None, :] + need[None, :, None, :] + 1e-9, axis=3)
        ok &= spare[nodes][:, :, None] & new[nodes][:, None, :]
        if not ok.any():
            return False
        delta = np.where(ok, coef[nodes][:, None, :] - coef[nodes][:, :, None], np.inf).reshape(len(nodes), -1)
        flat = np.argmin(delta, axis=1)
        usable = np.flatnonzero(np.isfinite(delta[np.arange(len(nodes)), flat]))
        usable = usable[np.argsort(delta[usable, flat[usable]], kind="stable")]
        taken = 0
        for n in usable:  # one swap per node; keep the demand of the services swapped out
            jr, ja = divmod(int(flat[n]), p.num_services)
            if x[:, jr].sum() - 1 < p.demand[jr] or taken >= count:
                continue
            x[nodes[n], jr] -= 1
            x[nodes[n], ja] += 1
            taken += 1
        return taken > 0

    for j in range(p.num_services):
        while x[:, j].sum() < p.demand[j]:
            if not place(j):
                raise Infeasible(f"demand of {p.service_names[j]!r}")
    if kappa > 0:
        for j in range(p.num_services) if per_service else [None]:
            while (missing := kappa - (int((x[:, j] > 0).sum()) if per_service else int((x > 0).sum()))) > 0:
                if not open_pairs(j, missing):
                    what = f"nodes for {p.service_names[j]!r}" if per_service else "pairs"
                    raise Infeasible(f"kappa = {kappa} {what}")

    room = free - x @ need
    for v in range(p.num_nodes):
        added, _ = _fill(coef[v], need, bound[v], x[v][None, :], room[v][None, :], free[v])
        x[v] += added[0]
    return x


def _fill(coef_v, need, bound_v, counts, rooms, free_v):
    """Greedy fill of one node from several starting points at once.

    ``counts`` [C,J] and ``rooms`` [C,K] are C candidate states of the node. Each is filled with
    instances whose coefficient is negative and that fit, best first, once ordering by coefficient
    and once by coefficient per unit of the scarcest resource; returns (added [C,J], value [C]) of
    the better of the two per candidate.
    """
    density = coef_v / np.maximum(np.max(need / np.maximum(free_v, 1e-12)[None, :], axis=1), 1e-12)
    best_added, best_value = None, None
    for key in (coef_v, density):
        added = np.zeros_like(counts)
        room = rooms.copy()
        value = np.zeros(len(counts))
        active = np.ones(len(counts), bool)
        while active.any():
            ok = np.all(need[None, :, :] <= room[:, None, :] + 1e-9, axis=2) & (counts + added < bound_v) & (coef_v < 0)
            ok &= active[:, None]
            active = ok.any(1)
            if not active.any():
                break
            j = np.argmin(np.where(ok, key[None, :], np.inf), axis=1)
            rows = np.flatnonzero(active)
            added[rows, j[rows]] += 1
            room[rows] -= need[j[rows]]
            value[rows] += coef_v[j[rows]]
        if best_value is None:
            best_added, best_value = added, value
        else:
            better = value < best_value
            best_added[better], best_value[better] = added[better], value[better]
    return best_added, best_value


ENUMERATE_LIMIT = 4096  # nodes with at most this many integer points in their box are enumerated


def node_optimum(coef_v, need, bound_v, free_v, lower_v, min_on: int = 0, must_on=None, time_limit_s: float = 10.0):
    """Exact optimum of one node: min coef_v·x, need^T x ≤ free_v, lower_v ≤ x ≤ bound_v, integer,
    at least ``min_on`` services with x ≥ 1 and x_j ≥ 1 where ``must_on``. Small boxes are
    enumerated, larger ones go to SCIP. Returns x [J] int or None if infeasible."""
    js = np.flatnonzero(bound_v >= 1)
    x = np.zeros(len(bound_v), np.int64)
    lo = np.maximum(lower_v, 0).astype(np.int64)
    if must_on is not None:
        lo = np.where(must_on, np.maximum(lo, 1), lo)
    if np.any(lo > bound_v):
        return None
    if js.size == 0:
        return x if min_on <= 0 and not lo.any() else None
    sizes = bound_v[js] - lo[js] + 1
    if np.prod(sizes.astype(float)) <= ENUMERATE_LIMIT:
        grid = np.stack(np.meshgrid(*[np.arange(a, b + 1) for a, b in zip(lo[js], bound_v[js])], indexing="ij"), -1)
        grid = grid.reshape(-1, js.size)
        ok = np.all(grid @ need[js] <= free_v[None, :] + 1e-9, axis=1) & ((grid > 0).sum(1) >= min_on)
        if not ok.any():
            return None
        values = np.where(ok, grid @ coef_v[js], np.inf)
        x[js] = grid[int(np.argmin(values))]
        return x
    import pyscipopt

    model = pyscipopt.Model()
    model.hideOutput()
    model.setParam("limits/time", float(max(time_limit_s, 0.1)))
    xs = [model.addVar(vtype="I", lb=int(lo[j]), ub=int(bound_v[j])) for j in js]
    model.setObjective(pyscipopt.quicksum(float(coef_v[j]) * xi for j, xi in zip(js, xs)))
    for k in range(need.shape[1]):
        model.addCons(pyscipopt.quicksum(float(need[j, k]) * xi for j, xi in zip(js, xs)) <= float(free_v[k]))
    if min_on > 0:
        zs = [model.addVar(vtype="B") for _ in js]
        for zi, xi in zip(zs, xs):
            model.addCons(zi <= xi)
        model.addCons(pyscipopt.quicksum(zs) >= int(min_on))
    model.optimize()
    if model.getNSols() == 0:
        return None
    sol = model.getBestSol()
    x[js] = [int(round(model.getSolVal(sol, xi))) for xi in xs]
    return x


def polish(program: Program, x: np.ndarray, kappa: int, per_service: bool, passes: int, deadline: float) -> np.ndarray:
    """Block-coordinate descent: re-optimise one node at a time exactly (`node_optimum`), the other
    nodes fixed, keeping demand and sparsity. Stops after ``passes`` passes, a pass without gain,
    or at ``deadline`` (time.perf_counter())."""
    p = program
    x = x.copy()
    eps = 1e-9 * max(1.0, float(np.abs(p.coef).max()))
    for _ in range(passes):
        improved = False
        for v in np.argsort((x * p.coef).sum(1)):  # the nodes that matter most first
            left = deadline - time.perf_counter()
            if left <= 0:
                return x
            others = x.sum(0) - x[v]
            on_others = (x > 0).sum(0) - (x[v] > 0)
            must_on, min_on = None, 0
            if kappa > 0 and per_service:
                must_on = on_others < kappa
            elif kappa > 0:
                min_on = kappa - int(on_others.sum())
            new = node_optimum(p.coef[v], p.resource, p.bound[v], p.free[v], p.demand - others, min_on, must_on, min(10.0, left))
            if new is not None and float(p.coef[v] @ new) < float(p.coef[v] @ x[v]) - eps:
                x[v] = new
                improved = True
        if not improved:
            break
    return x


def apportion(program: Program, x_relaxed: np.ndarray) -> np.ndarray:
    """[V,J] int: the demand req_m of each service split over the nodes in proportion to the relaxed
    solution (largest remainders), never more than ceil(x_relaxed) on a node."""
    p = program
    alloc = np.zeros_like(p.bound)
    for j in range(p.num_services):
        weights = np.clip(x_relaxed[:, j], 0, p.bound[:, j])
        if weights.sum() <= 0:
            weights = (p.bound[:, j] >= 1).astype(float)
        quota = p.demand[j] * weights / max(weights.sum(), 1e-12)
        base = np.floor(quota + 1e-9).astype(np.int64)
        rest = int(p.demand[j] - base.sum())
        if rest > 0:
            base[np.argsort(-(quota - base), kind="stable")[:rest]] += 1
        alloc[:, j] = np.minimum(base, p.bound[:, j])
    return alloc


def allocate_and_fill(program: Program, x_relaxed: np.ndarray, deadline: float) -> np.ndarray:
    """Rounding by the relaxation's demand allocation: each node takes its share of every service's
    demand (`apportion`) and is then filled optimally (`node_optimum`); a share that does not fit
    is dropped, one instance at a time, and left to the repair."""
    p = program
    alloc = apportion(p, x_relaxed)
    x = np.zeros_like(p.bound)
    for v in range(p.num_nodes):
        lower = alloc[v].copy()
        while True:
            left = deadline - time.perf_counter()
            new = None if left <= 0 else node_optimum(p.coef[v], p.resource, p.bound[v], p.free[v], lower, 0, None, min(10.0, left))
            if new is not None or not lower.any():
                break
            # drop one instance of the share with the largest relative need on this node
            share = np.flatnonzero(lower > 0)
            lower[share[np.argmax((p.resource[share] / np.maximum(p.free[v], 1e-12)).max(1))]] -= 1
        if new is None:  # past the deadline: keep the relaxation rounded down where it fits
            new = np.minimum(np.floor(x_relaxed[v] + 1e-6), p.bound[v]).astype(np.int64)
            while np.any(new @ p.resource > p.free[v] + 1e-9):
                held = np.flatnonzero(new > 0)
                new[held[np.argmax(p.coef[v, held])]] -= 1
        x[v] = new
    return x


# ----------------------------------------------------------------------------------------------
# 3. LP lower bound


def lp_bound(program: Program, kappa: int, per_service: bool, time_limit_s: float) -> tuple[float, str]:
    """(optimal value of the LP relaxation, HiGHS status) — a lower bound of the integer optimum."""
    p = program
    pairs = np.argwhere(p.bound >= 1)  # [P,2]
    P, V, J, K = len(pairs), p.num_nodes, p.num_services, p.resource.shape[1]
    use_z = kappa > 0
    n = P * (2 if use_z else 1)
    c = np.concatenate([p.coef[pairs[:, 0], pairs[:, 1]], np.zeros(P if use_z else 0)])
    rows, cols, vals, rhs = [], [], [], []
    row = 0
    idx = np.arange(P)
    for k in range(K):  # capacity: Σ_j r_jk x_vj <= free_vk
        rows.append(pairs[:, 0] * K + k)
        cols.append(idx)
        vals.append(p.resource[pairs[:, 1], k])
    rhs.append(p.free.reshape(-1))
    row = V * K
    rows.append(row + pairs[:, 1])  # demand: -Σ_v x_vj <= -req_j
    cols.append(idx)
    vals.append(-np.ones(P))
    rhs.append(-p.demand.astype(float))
    row += J
    if use_z:
        rows += [row + idx, row + idx]  # z - x <= 0
        cols += [P + idx, idx]
        vals += [np.ones(P), -np.ones(P)]
        rhs.append(np.zeros(P))
        row += P
        if per_service:  # -Σ_v z_vj <= -κ
            rows.append(row + pairs[:, 1])
            rhs.append(-np.full(J, float(kappa)))
            row += J
        else:
            rows.append(np.full(P, row))
            rhs.append(np.array([-float(kappa)]))
            row += 1
        cols.append(P + idx)
        vals.append(-np.ones(P))
    A = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(row, n)).tocsr()
    bounds = np.zeros((n, 2))
    bounds[:P, 1] = p.bound[pairs[:, 0], pairs[:, 1]]
    bounds[P:, 1] = 1.0
    res = linprog(c, A_ub=A, b_ub=np.concatenate(rhs), bounds=bounds, method="highs",
                  options={"time_limit": float(time_limit_s)})  # fmt: skip
    if res.status == 0:
        return float(res.fun), "optimal"
    return -np.inf, {1: "timelimit", 2: "infeasible", 3: "unbounded"}.get(res.status, "error")


def relative_gap(primal: float, dual: float) -> float:
    """SCIP's gap: |primal - dual| / min(|primal|, |dual|); inf for opposite signs or no bound."""
    if not np.isfinite(dual):
        return np.inf
    if primal == dual:
        return 0.0
    if primal * dual < 0 or min(abs(primal), abs(dual)) == 0:
        return np.inf
    return abs(primal - dual) / min(abs(primal), abs(dual))


# ----------------------------------------------------------------------------------------------
class RelaxedPlacement(ProgramPlacement):
    """The continuous relaxation with optax, rounded and repaired; an LP bound gives its gap."""

    name = "milp_relaxed"
    description = "relaxation of the milp program with optax, rounding and repair (large networks)"

    steps: int = host(3000)  # primal-dual projected gradient steps per relaxed solve
    primal_weight: float = host(3.0)  # times the PDLP primal weight ||c|| / ||rhs|| (dual/primal step ratio)
    penalty: float = host(1.0)  # final weight of the smooth sparsity penalty (objective scaled to Σ|c M| = 1)
    smoothing: float = host(0.3)  # τ (instances) of the smooth indicator 1 - exp(-x/τ)
    polish_passes: int = host(1)  # passes of the exact per-node re-optimisation after the repair (0 = none)
    lower_bound: bool = host(True)  # compute the LP lower bound (HiGHS) and the gap
    time_limit_s: float = host(40.0)  # budget of the heuristic (κ search: 40 % of it; the polish stops at it), and of the LP bound

    def __check_init__(self):  # the program's options: ProgramPlacement.__check_init__
        for name, least in (("steps", 1), ("polish_passes", 0)):
            if getattr(self, name) < least:
                raise ConfigError(f"placement.{name}", getattr(self, name), f"an integer >= {least}")
        for name in ("primal_weight", "penalty", "smoothing"):
            value = getattr(self, name)
            if not (finite(value) and value > 0):
                raise ConfigError(f"placement.{name}", value, "a finite number > 0")

    def solve(self, scenario, *, slot_ms: float, uplink_rate=None) -> PlacementResult:
        """As `MilpPlacement.solve`: ``uplink_rate`` [U] MB/ms, the channel's mean-value rate (inf:
        no uplink time); None: the embedding counts no uplink time."""
        t0 = time.perf_counter()
        program, fit, start = fitted_program(self, scenario, slot_ms, uplink_rate, self.fit_options(), self.name)
        program_seconds = time.perf_counter() - t0
        x, info = self.solve_program(program, fallback=start)
        info["program_time_s"] = program_seconds
        info.update(fit_info(self.plan_fit, self.plan_load, self.target_utilisation, fit))
        return PlacementResult(x_core=to_placement(program, x, scenario.num_services), info=info)

    def fit_options(self) -> scip.SolverOptions:
        """SCIP options of the feasibility checks of plan_fit = largest: the time limit, nothing else."""
        return scip.SolverOptions(time_limit_s=self.time_limit_s)

    def attempt(self, program: Program, kappa: int, *, full: bool, deadline: float,
                fallback: np.ndarray | None = None, tally: dict[str, int] | None = None) -> np.ndarray | None:
        """A feasible placement at ``kappa`` (None if the repair fails). ``full`` adds the Lagrangian
        start and the exact per-node polish; without it, relaxation + repair only (the κ search).
        ``fallback`` [V,J]: a placement of the capacity and demand rows (plan_fit = largest's check
        when it lowered the demand) from which the repair starts when every other start fails;
        ``tally["fallbacks"]``, if given, counts the attempts so rescued (the placement is immutable)."""
        per_service = self.sparsity == "per_service"
        x_relaxed = relaxed_solution(program, kappa, self, per_service)
        starts = [x_relaxed]
        if full:
            starts.append(allocate_and_fill(program, x_relaxed, deadline).astype(float))
        best = None
        for start in starts:
            try:
                x = repair(program, start, kappa, per_service, exact=full)
            except Infeasible:
                continue
            if full:
                x = polish(program, x, kappa, per_service, self.polish_passes, deadline)
            if best is None or program.objective(x) < program.objective(best):
                best = x
        if best is None and fallback is not None:
            try:
                best = repair(program, fallback.astype(float), kappa, per_service, exact=full)
            except Infeasible:
                return None
            if tally is not None:
                tally["fallbacks"] = tally.get("fallbacks", 0) + 1
            if full:
                best = polish(program, best, kappa, per_service, self.polish_passes, deadline)
        return best

    def solve_program(self, program: Program, fallback: np.ndarray | None = None) -> tuple[np.ndarray, dict]:
        """The placement of ``program`` and its info; ``fallback``: see `attempt`."""
        form = self.sparsity
        tally = {"fallbacks": 0}
        attempt = functools.partial(self.attempt, fallback=fallback, tally=tally)
        per_service = form == "per_service"
        reason = scip.demand_diagnosis(program, self.reserve, self.name)
        if reason:
            raise SolverError(reason)
        t0 = time.perf_counter()
        deadline = t0 + self.time_limit_s
        solves = 0
        info: dict[str, Any] = {}
        if self.kappa_mode == "fixed":
            reason = scip.kappa_diagnosis(program, self.kappa, form, self.name)
            if reason:
                raise SolverError(reason)
        kappa = self.kappa if self.kappa_mode == "fixed" else 0
        if self.kappa_mode == "retention":
            # the κ search on relaxation + repair alone, within 40 % of the time limit; the chosen
            # κ is then solved in full
            x = attempt(program, 0, full=False, deadline=deadline)
            solves += 1
            if x is not None:
                free_obj = program.objective(x)
                info["kappa_free_objective"] = free_obj
                target = free_obj + (1.0 - self.retention) * abs(free_obj) + 1e-9 * max(1.0, abs(free_obj))
                lo, hi = scip.occupied(x, form), scip.kappa_max(program, form)
                while lo < hi and time.perf_counter() < t0 + 0.4 * self.time_limit_s:  # then the largest κ verified
                    mid = (lo + hi + 1) // 2
                    cand = attempt(program, mid, full=False, deadline=deadline)
                    solves += 1
                    if cand is not None and program.objective(cand) <= target and scip.occupied(cand, form) >= mid:
                        lo = mid
                    else:
                        hi = mid - 1
                kappa = lo
        x = attempt(program, kappa, full=True, deadline=deadline)
        solves += 1
        if x is None:
            raise SolverError(
                f"{self.name}: the repair could not restore feasibility (kappa = {kappa}); the program may be "
                f"infeasible: lower placement.reserve or placement.kappa, or try placement=milp"
            )
        seconds = time.perf_counter() - t0
        broken = program.violations(x) + ([f"kappa = {kappa}"] if scip.occupied(x, form) < kappa else [])
        if broken:  # the repair guarantees these; never hand out an infeasible placement
            raise SolverError(f"{self.name}: internal error: the repaired placement violates {', '.join(broken)}")
        objective = program.objective(x)
        bound, bound_status = (-np.inf, "skipped")
        t1 = time.perf_counter()
        if self.lower_bound:
            bound, bound_status = lp_bound(program, kappa, per_service, self.time_limit_s)
        info = {
            "solver_name": "optax+repair",
            "solver_status": "feasible",
            "solver_objective": float(objective),
            "solver_bound": float(bound),
            "solver_bound_status": bound_status,
            "solver_gap": float(relative_gap(objective, bound)),
            "solver_kappa": int(kappa),
            "solver_num_solves": solves,
            "solver_time_s": float(seconds),
            "solver_bound_time_s": float(time.perf_counter() - t1),
            "kappa_mode": self.kappa_mode,
            "sparsity": form,
            **info,
            **reserve_info(self.reserve),
            "occupied": scip.occupied(x, form),
            "instances": int(x.sum()),
        }
        if fallback is not None:
            info["plan_fit_fallbacks"] = tally["fallbacks"]  # attempts that only the check's placement rescued
        return x, info


RelaxedConfig = RelaxedPlacement.Config  # the options as a dataclass (the Hydra schema): RelaxedPlacement.from_config(RelaxedConfig(...))
