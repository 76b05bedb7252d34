"""The data of the tier-1 integer program (MODEL.md §5), built on the host with NumPy.

`build_program` walks every task DAG with mean values (the mean-value embedding), scores each
(node, core service) pair with the load estimate z̃ (Eq. 15) and the QoS score Q, and returns a
`Program`: objective coefficients, per-pair instance bounds (big-M), the capacity left after the
light reserve, and the demand req_m. Both solvers (`milp`, `milp_relaxed`) read only a `Program`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
from scipy.sparse import csr_matrix
from scipy.sparse.csgraph import shortest_path

from edgefm.errors import ConfigError
from edgefm.network import transfer_tables
from edgefm.scenario.hostable import core_demand
from edgefm.scenario.model import RESOURCES


@dataclasses.dataclass
class Program:
    """min Σ coef·x  s.t.  Σ_j resource[j] x[v,j] ≤ free[v];  Σ_v x[v,j] ≥ demand[j];  0 ≤ x ≤ bound;
    plus the sparsity requirement (see `edgefm_milp_scip.scip`). Columns j are the core services in
    the program (`services`, global ids)."""

    services: np.ndarray  # [J] int: global ids of the core services in the program
    service_names: tuple  # [J] str
    node_names: tuple  # [V] str
    coef: np.ndarray  # [V,J] price units per instance: c_m - xi * Q[v,m]
    bound: np.ndarray  # [V,J] int: M_{v,m} = min_k floor(free[v,k] / resource[j,k])
    resource: np.ndarray  # [J,K] need of one instance
    free: np.ndarray  # [V,K] capacity minus the light reserve
    reserve: np.ndarray  # [V,K] the light reserve
    demand: np.ndarray  # [J] int: req_m
    cost: np.ndarray  # [J] c_dp + c_mt
    qos: np.ndarray  # [V,J] Q
    load: np.ndarray  # [V,J] z̃ (tasks/ms)
    capacity: np.ndarray  # [V,K] R_v

    @property
    def num_nodes(self) -> int:
        return int(self.coef.shape[0])

    @property
    def num_services(self) -> int:
        return int(self.coef.shape[1])

    @property
    def feasible_pairs(self) -> np.ndarray:
        """[V,J] bool: pairs that can hold at least one instance."""
        return self.bound >= 1

    def objective(self, x: np.ndarray) -> float:
        return float(np.sum(self.coef * x))

    def violations(self, x: np.ndarray, tol: float = 1e-9) -> list[str]:
        """What an integer placement ``x[V,J]`` violates (capacity, demand, bounds); [] if none."""
        out = []
        x = np.asarray(x)
        if np.any(x < 0) or np.any(x > self.bound) or np.any(x != np.round(x)):
            out.append("bounds")
        over = x @ self.resource - self.free
        if np.any(over > tol * np.maximum(1.0, np.abs(self.free))):
            v, k = np.unravel_index(int(np.argmax(over)), over.shape)
            out.append(f"capacity of {self.node_names[v]} ({RESOURCES[k]})")
        short = self.demand - x.sum(0)
        if np.any(short > 0):
            out.append(f"demand of {self.service_names[int(np.argmax(short))]}")
        return out


# ----------------------------------------------------------------------------------------------
NODE_KINDS = ("server", "device")  # keys of a per-kind reserve; scenario.node_is_server tells the kind


def _fractions(value) -> np.ndarray | None:
    """[K] fractions from a number or a list of K numbers, each in [0, 1); None if it is neither."""
    if isinstance(value, (str, bytes, Mapping)):
        return None
    try:
        values = np.broadcast_to(np.asarray(value, dtype=float), (len(RESOURCES),)).copy()
    except (TypeError, ValueError):
        return None
    if not np.all(np.isfinite(values)) or np.any(values < 0) or np.any(values >= 1):
        return None
    return values


def reserve_by_kind(reserve) -> dict[str, np.ndarray]:
    """{kind: [K] fractions} for kind in `NODE_KINDS`, from the option ``placement.reserve``: a
    number (every resource of every node), a list [cpu, ram, gpu, vram] (every node), or a mapping
    {server: ..., device: ...} whose values are either. Anything else is a ConfigError."""
    accepted = (f"a fraction in [0, 1) of every resource, a list of {len(RESOURCES)} ({', '.join(RESOURCES)}), "
                f"or a mapping {{server: ..., device: ...}} of either per node kind")
    if isinstance(reserve, Mapping):
        keys = {str(k) for k in reserve}
        missing = [k for k in NODE_KINDS if k not in keys]
        unknown = sorted(keys - set(NODE_KINDS))
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + (
            [f"unknown key {', '.join(unknown)}"] if unknown else [])
        if problems:
            raise ConfigError("placement.reserve", dict(reserve), f"{accepted} ({'; '.join(problems)})")
        kinds = {k: _fractions(reserve[k]) for k in NODE_KINDS}
    else:
        kinds = dict.fromkeys(NODE_KINDS, _fractions(reserve))
    if any(f is None for f in kinds.values()):
        raise ConfigError("placement.reserve", dict(reserve) if isinstance(reserve, Mapping) else reserve, accepted)
    return kinds


def reserve_fractions(reserve, node_is_server) -> np.ndarray:
    """[V,K] ρ_{v,k}: the reserve fractions of every node (``node_is_server`` [V] bool picks the
    kind's fractions of `reserve_by_kind`)."""
    kinds = reserve_by_kind(reserve)
    return np.where(np.asarray(node_is_server, bool)[:, None], kinds["server"][None, :], kinds["device"][None, :])


def reserve_info(reserve) -> dict[str, list[float]]:
    """The reserve for `PlacementResult.info`: ``reserve`` [K] for a number or a list (every node),
    ``reserve_server`` and ``reserve_device`` [K] for a per-kind mapping."""
    kinds = reserve_by_kind(reserve)
    if isinstance(reserve, Mapping):
        return {f"reserve_{k}": [float(f) for f in kinds[k]] for k in NODE_KINDS}
    return {"reserve": [float(f) for f in kinds["server"]]}


def uplink_times(uplink_rate, input_size: float, users: np.ndarray) -> np.ndarray:
    """[U'] ms: the mean-value uplink time A_n / rate_u of ``users``; 0 where the rate is inf, and
    everywhere when ``uplink_rate`` is None (no channel given)."""
    if uplink_rate is None:
        return np.zeros(len(users))
    rate = np.asarray(uplink_rate, float)[users]
    with np.errstate(divide="ignore"):
        return np.where(np.isinf(rate), 0.0, input_size / rate)


def check_uplink_rate(scenario, uplink_rate) -> None:
    """Raise a ConfigError unless ``uplink_rate`` is None or [U] rates > 0 (MB/ms; inf allowed)."""
    if uplink_rate is None:
        return
    rate = np.asarray(uplink_rate, float)
    if rate.shape != (scenario.num_users,) or not np.all(rate > 0):
        raise ConfigError("uplink_rate", np.array2string(rate, threshold=6),
                          f"None or [U] = [{scenario.num_users}] rates > 0 in MB/ms (inf: no uplink time)")


def _topological(scenario, n: int) -> list[int]:
    stages = scenario.stages_of(n)
    order, done = [], set()
    while len(order) < len(stages):
        for s in stages:
            if s not in done and all(p in done for p in scenario.stage_parents[n, s] if p >= 0):
                order.append(s)
                done.add(s)
    return order


def _unit_delays(scenario) -> np.ndarray | None:
    """[V,V] ms per MB along the shortest path when links have no propagation delay (then the
    delay of a payload s is s times this, the same paths for every payload); None otherwise."""
    speed = float(scenario.propagation_speed)
    if np.isfinite(speed) and np.any(scenario.link_length > 0):
        return None
    V = scenario.num_nodes
    best: dict[tuple[int, int], float] = {}  # parallel links: the fastest one counts
    for (a, b), w in zip(scenario.link_ends.tolist(), scenario.link_bandwidth.tolist()):
        for key in ((a, b), (b, a)):
            best[key] = min(best.get(key, np.inf), 1.0 / w)
    rows, cols = (list(t) for t in zip(*best)) if best else ([], [])
    graph = csr_matrix((list(best.values()), (rows, cols)), shape=(V, V))
    return shortest_path(graph, method="D", directed=True)


class _Delays:
    """Transfer delays by payload: b_m × unit delays when links have no propagation, else the exact
    tables of `edgefm.network.transfer_tables`."""

    def __init__(self, scenario):
        self.unit = _unit_delays(scenario)
        self.sc = scenario
        if self.unit is None:
            self.xfer, self.fwd = transfer_tables(scenario)

    def output(self, m: int) -> np.ndarray:
        return self.sc.output_size[m] * self.unit if self.unit is not None else self.xfer[m]

    def input(self, n: int) -> np.ndarray:
        return self.sc.input_size[n] * self.unit if self.unit is not None else self.fwd[n]


def _min_plus(ready: np.ndarray, delay: np.ndarray, chunk_bytes: float = 64e6) -> np.ndarray:
    """[U,V]: min over v' of (ready[u,v'] + delay[v',v]), in chunks of users."""
    U, V = ready.shape
    step = max(1, int(chunk_bytes // (8 * V * V)))
    out = np.empty((U, V))
    for i in range(0, U, step):
        out[i : i + step] = (ready[i : i + step, :, None] + delay[None]).min(axis=1)
    return out


def embed(scenario, *, slot_ms: float, free: np.ndarray, rho: float, q_min: float, uplink_rate=None):
    """Mean-value DAG embedding (MODEL.md §5). Returns (load z̃[V,M], qos Q[V,M]).

    For each (user, type) with λ > 0 and each stage in topological order: d_pr[v] is the time the
    stage's input is at node v (root: uplink time A_n / uplink_rate[u] (`uplink_times`; none for an
    inf rate or ``uplink_rate`` None) + forwarding of A_n from the gateway; child: max
    over parents of min over parent nodes of parent finish + transfer of its output), inf where v
    cannot host one instance (core: within ``free``; light: within R_v); finish = d_pr + a_m / E f_m.
    """
    sc = scenario
    V, M = sc.num_nodes, sc.num_services
    mean_rate = sc.mean_light_rate
    d_cu = sc.work / mean_rate  # [M]
    fits_core = np.all(sc.resource[None, :, :] <= free[:, None, :] + 1e-12, axis=2)  # [V,M]
    fits_light = np.all(sc.resource[None, :, :] <= sc.capacity[:, None, :] + 1e-12, axis=2)
    host = np.where(sc.service_is_core[None, :], fits_core, fits_light)
    delays = _Delays(sc)
    load = np.zeros((V, M))
    score = np.zeros((V, M))  # Σ over (u,n) of the clipped slack ratio
    for n in range(sc.num_types):
        users = np.flatnonzero(sc.arrival_rate[:, n] > 0)
        if users.size == 0:
            continue
        lam = sc.arrival_rate[users, n]  # [U']
        order = _topological(sc, n)
        succ = {}  # d_su: Σ over descendants (the chain to the sink) of a / E f
        for s in reversed(order):
            c = int(sc.stage_child[n, s])
            succ[s] = 0.0 if c < 0 else succ[c] + d_cu[sc.stage_service[n, c]]
        up = uplink_times(uplink_rate, sc.input_size[n], users)  # [U']
        gateway_delay = delays.input(n)[sc.user_gateway[users]]  # [U',V]
        finish = {}
        for s in order:
            m = int(sc.stage_service[n, s])
            parents = [int(p) for p in sc.stage_parents[n, s] if p >= 0]
            if not parents:
                ready = up[:, None] + gateway_delay
            else:
                ready = np.max(
                    [_min_plus(finish[p], delays.output(int(sc.stage_service[n, p]))) for p in parents], axis=0
                )
            ready = np.where(host[None, :, m], ready, np.inf)  # [U',V]
            finish[s] = ready + d_cu[m]
            # Eq. 15: softmax over nodes of -rho * d_pr, weighted by the arrival rate
            logits = -rho * ready
            top = logits.max(axis=1, keepdims=True)
            ok = np.isfinite(top[:, 0])
            weights = np.zeros_like(ready)
            if ok.any():
                e = np.exp(logits[ok] - top[ok])
                weights[ok] = e / e.sum(axis=1, keepdims=True)
            load[:, m] += lam @ weights
            slack = (sc.deadline[n] - ready - d_cu[m]) / max(succ[s], slot_ms)
            score[:, m] += np.maximum(slack, q_min).sum(axis=0)
    return load, load * score


def build_program(scenario, *, slot_ms: float, xi: float, rho: float, q_min: float, reserve, uplink_rate=None,
                  plan_load: float = 1.0, target_utilisation: float = 1.0) -> Program:
    """The integer program of MODEL.md §5 for ``scenario``: the scores at load 1x, the demand req_m
    for ``plan_load`` at utilisation ``target_utilisation`` (`core_demand`), the free capacity
    (1 − ρ_{v,k}) R_{v,k} (`reserve_fractions`); ``uplink_rate`` [U] MB/ms or None (no uplink time)."""
    sc = scenario
    check_uplink_rate(sc, uplink_rate)
    reserve_vk = sc.capacity * reserve_fractions(reserve, sc.node_is_server)
    free = sc.capacity - reserve_vk
    load, qos = embed(sc, slot_ms=slot_ms, free=free, rho=rho, q_min=q_min, uplink_rate=uplink_rate)
    req = core_demand(sc, plan_load=plan_load, target_utilisation=target_utilisation)
    services = np.flatnonzero(req > 0)
    r = sc.resource[services]  # [J,K]
    with np.errstate(divide="ignore", invalid="ignore"):
        per_k = np.where(r[None, :, :] > 0, np.floor(free[:, None, :] / r[None, :, :] + 1e-9), np.inf)
    bound = per_k.min(axis=2)  # [V,J]
    # a service that needs nothing would be unbounded: allow its demand on every node
    bound = np.where(np.isinf(bound), req[services][None, :], bound).astype(np.int64)
    cost = (sc.cost_deploy + sc.cost_maintain)[services]
    coef = cost[None, :] - xi * qos[:, services]
    return Program(
        services=services,
        service_names=tuple(sc.service_names[m] for m in services),
        node_names=tuple(sc.node_names),
        coef=coef,
        bound=np.maximum(bound, 0),
        resource=r,
        free=free,
        reserve=reserve_vk,
        demand=req[services],
        cost=cost,
        qos=qos[:, services],
        load=load[:, services],
        capacity=sc.capacity,
    )


def with_demand(program: Program, demand) -> Program:
    """``program`` with the demand ``demand`` ([M], global service ids; > 0 on the same services)
    in place of its own: the demand rows and, for a service that needs no resource at all, the bound
    M = req_m, as `build_program` sets them. The rest (scores, capacity) does not depend on the
    demand."""
    req = np.asarray(demand, np.int64)[program.services]
    if np.any(req <= 0):
        raise ValueError("with_demand: the demand must be >= 1 on every service of the program")
    needless = ~np.any(program.resource > 0, axis=1)  # [J]
    bound = np.maximum(np.where(needless[None, :], req[None, :], program.bound), 0).astype(np.int64)
    return dataclasses.replace(program, demand=req, bound=bound)


def to_placement(program: Program, x: np.ndarray, num_services: int) -> np.ndarray:
    """[V,M] int64 x_core from the program's [V,J] solution."""
    out = np.zeros((program.num_nodes, num_services), np.int64)
    out[:, program.services] = np.rint(x).astype(np.int64)
    return out


__all__ = [
    "NODE_KINDS", "Program", "build_program", "check_uplink_rate", "core_demand", "embed", "reserve_by_kind",
    "reserve_fractions", "reserve_info", "to_placement", "uplink_times", "with_demand",
]
