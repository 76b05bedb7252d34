"""Algorithm 1, the online light-service controller, in plain Python: the oracle of the JAX one.

It implements docs/SEMANTICS.md §9 (the pinned form of MODEL.md §7) one stage and one candidate at
a time, in float64, and shares no code with ``edgefm.sim``, ``edgefm.capacity`` or the Lyapunov
plugin, so that a differential test between the two implementations means something.

- `delay_table`: g(y), y = 0 … y_max, from the effective capacity (MODEL §7.1–7.2) or the mean;
- `virtual_queue`: H_j(t) by the recursion of §9 (MODEL §7.3);
- `instance_drains` / `instance_latest_inputs` / `instance_ready_times`: the starting instance-ready
  time R_i of every light instance (option `instance_ready`: drain, max_input, none);
- `evaluate_service` / `evaluate`: Φ_m(X_m) and Φ(X) of §9;
- `algorithm1`: the greedy of §9 at one boundary; `make_controller`: the controller callable of
  `edgefm.reference.simulate_reference`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.optimize import brentq

from edgefm.errors import ConfigError
from edgefm.reference.controllers import LightDecision, LightObservation, resource_usage
from edgefm.reference.placement import fits

KINDS = ("ec", "avg")
SCORE_TIE = 1e-9  # §9: candidates with score <= s* + 1e-9 tie (absolute, ms)
GREEDY_RTOL = 1e-9  # §9: tol = 1e-9 * (1 + |Φ(X)|)

Controller = Callable[[LightObservation, Any], tuple[LightDecision, Any]]


# ------------------------------------------------------------------------------------------------
# MODEL §7.1–7.2: effective capacity and the delay function g
def effective_capacity(theta: float, shape: float, scale: float, slot_ms: float) -> float:
    """EC(θ) = k ln(1 + θβΔt) / (θΔt) of a Gamma(k, β) rate (MODEL §7.1); EC(0) = kβ."""
    if theta == 0.0:
        return shape * scale
    return shape * math.log1p(theta * scale * slot_ms) / (theta * slot_ms)


def qos_exponent(rate: float, shape: float, scale: float, slot_ms: float) -> float:
    """θ* > 0 with EC(θ*) = rate, for 0 < rate < kβ (MODEL §7.2).

    With z = θβΔt, EC(θ) = kβ·ln(1+z)/z, so z solves h(z) = ln(1+z)/z − rate/(kβ) = 0; h decreases
    from 1 − ρ > 0 (z → 0) to −ρ (z → ∞). The bracket is grown by halving / doubling, then Brent's
    method runs to relative accuracy 4·eps in z (xtol is negligible)."""
    rho = rate / (shape * scale)
    if not 0.0 < rho < 1.0:
        raise ConfigError("rate", rate, f"0 < rate < E f = {shape * scale} (an admissible offered rate)")

    def h(z: float) -> float:
        return math.log1p(z) / z - rho

    lo = 1.0
    while h(lo) <= 0.0:
        lo *= 0.5
    hi = 1.0
    while h(hi) >= 0.0:
        hi *= 2.0
    z = brentq(h, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    return z / (scale * slot_ms)


def _window(slot_ms: float, window_ms: float) -> float:
    """The admission window W: ``window_ms``, or Δt when it is 0 (SEMANTICS §9)."""
    if not window_ms >= 0.0:
        raise ConfigError("window_ms", window_ms, "a number >= 0 (0 means the slot length)")
    return slot_ms if window_ms == 0.0 else window_ms


@lru_cache(maxsize=4096)
def _delay_table(
    a: float, shape: float, scale: float, eps: float, slot_ms: float, window_ms: float, y_max: int, kind: str
) -> tuple[float, ...]:
    mean_rate = shape * scale  # E f = kβ
    window = _window(slot_ms, window_ms)
    table = [0.0]
    for y in range(1, y_max + 1):
        mean_delay = max(slot_ms, y * a / mean_rate)
        if kind == "avg":
            table.append(mean_delay)
            continue
        rate = y * a / window  # r(y)
        if rate >= mean_rate:
            table.append(math.inf)
            continue
        theta = qos_exponent(rate, shape, scale, slot_ms)
        d_tail = math.log(rate / (mean_rate * eps)) / (theta * rate)
        table.append(max(mean_delay, d_tail))
    return tuple(table)


def delay_table(
    a: float, shape: float, scale: float, eps: float, slot_ms: float, window_ms: float, y_max: int, kind: str
) -> list[float]:
    """[g(0), …, g(y_max)] of a light service with work ``a`` and rate Gamma(``shape``, ``scale``).

    ``kind`` "ec" is g^EC of MODEL §7.2: g(0) = 0; with r(y) = y·a/W (W = ``window_ms``, 0 meaning
    Δt = ``slot_ms``), g(y) = ∞ if r(y) ≥ E f = kβ, else max(Δt, y·a/E f, ln(r/(E f·ε))/(θ*·r)) with
    EC(θ*) = r. ``kind`` "avg" is g^avg(y) = max(Δt, y·a/E f), g(0) = 0 (never ∞). SEMANTICS §9."""
    if kind not in KINDS:
        raise ConfigError("kind", kind, f"one of {KINDS}")
    for name, value in (("a", a), ("shape", shape), ("scale", scale), ("slot_ms", slot_ms)):
        if not value > 0.0:
            raise ConfigError(name, value, "a number > 0")
    if not 0.0 < eps < 1.0:
        raise ConfigError("epsilon", eps, "a violation probability in (0, 1)")
    if int(y_max) != y_max or y_max < 0:
        raise ConfigError("y_max", y_max, "an integer >= 0")
    args = (float(a), float(shape), float(scale), float(eps), float(slot_ms), float(window_ms))
    return list(_delay_table(*args, int(y_max), kind))


# ------------------------------------------------------------------------------------------------
# SEMANTICS §9 (MODEL §7.3): virtual queues
def _arrival_boundary(arrival_ms: float, slot_ms: float) -> int:
    """t_a with arrival time t_a·Δt (arrivals happen at boundaries, SEMANTICS §2)."""
    t_a = round(arrival_ms / slot_ms)
    if abs(t_a * slot_ms - arrival_ms) > 1e-9 * max(1.0, abs(arrival_ms)):
        raise ConfigError("arrival_ms", arrival_ms, f"a whole multiple of the slot length {slot_ms} ms")
    return t_a


def _virtual_queue_step(
    h_prev: float, t: int, arrival_ms: float, deadline_ms: float, slot_ms: float, h_min: float
) -> float:
    """H_j(t) from H_j(t−1): max(H_min, H_j(t−1) + ((t−1)Δt − arrival_j) − D_n)."""
    return max(h_min, h_prev + ((t - 1) * slot_ms - arrival_ms) - deadline_ms)


def virtual_queue(arrival_ms: float, deadline_ms: float, t: int, slot_ms: float, H_min: float) -> float:
    """H_j(t) of a task arriving at ``arrival_ms`` (a boundary t_a) with deadline D_n = ``deadline_ms``.

    H_j(t_a) = H_min and H_j(t) = max(H_min, H_j(t−1) + ((t−1)Δt − arrival_j) − D_n) for t > t_a
    (SEMANTICS §9, MODEL §7.3), iterated from the arrival boundary."""
    t_a = _arrival_boundary(arrival_ms, slot_ms)
    if t < t_a:
        raise ConfigError("t", t, f"a boundary >= the arrival boundary {t_a} of the task")
    h = float(H_min)
    for s in range(t_a + 1, t + 1):
        h = _virtual_queue_step(h, s, arrival_ms, deadline_ms, slot_ms, H_min)
    return h


# ------------------------------------------------------------------------------------------------
INSTANCE_READY = ("none", "drain", "max_input")  # controller.instance_ready (SEMANTICS §9), default first
CANDIDATE_RULES = ("all", "least_occupied")  # controller.candidates (SEMANTICS §9), default first


@dataclass(frozen=True)
class Algorithm1Params:
    """Options of the `proposed` / `propavg` controllers (SEMANTICS §9 "Parameters")."""

    V: float = 1.0  # weight of the light cost in Φ
    epsilon: float = 0.2  # violation probability ε of g^EC
    window_ms: float = 0.0  # admission window W; 0 means the slot length Δt
    pi: float = 1.0  # π, the same for every task type
    H_min: float = 1.0  # floor (and initial value) of the virtual queues
    max_steps: int = 1000  # cap on the instances the greedy adds at one boundary
    max_stages_per_service: int = 64  # L: waiting stages of a service considered at one boundary
    kind: str = "ec"  # "ec" (proposed, g^EC) or "avg" (propavg, g^avg)
    # MODEL's "instance-ready − t" term, the instance-ready time R_i of each instance (SEMANTICS §9):
    # "none" (R_i = tΔt), "drain" (the predicted drain time of its FIFO) or "max_input" (the latest
    # data-ready time of its jobs, raised by the stages placed on it); "drain" and "max_input" need
    # ``LightObservation.fifo`` (or ``.drain`` / ``.latest_input``) where an instance is busy
    instance_ready: str = "none"
    # the instances a stage may go to (SEMANTICS §9): "all" (every one with room) or
    # "least_occupied" (per node, only its least-occupied instance, if that one has room)
    candidates: str = "all"

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError("kind", self.kind, f"one of {KINDS}")
        for name, accepted in (("instance_ready", INSTANCE_READY), ("candidates", CANDIDATE_RULES)):
            value = getattr(self, name)
            if not isinstance(value, str) or value not in accepted:
                raise ConfigError(f"controller.{name}", value, "one of: " + ", ".join(accepted))
        if not self.V >= 0.0:
            raise ConfigError("V", self.V, "a number >= 0")
        if not 0.0 < self.epsilon < 1.0:
            raise ConfigError("epsilon", self.epsilon, "a violation probability in (0, 1)")
        if not self.window_ms >= 0.0:
            raise ConfigError("window_ms", self.window_ms, "a number >= 0 (0 means the slot length)")
        if not self.pi >= 0.0:
            raise ConfigError("pi", self.pi, "a number >= 0")
        if not self.H_min > 0.0:
            raise ConfigError("H_min", self.H_min, "a number > 0")
        for name in ("max_steps", "max_stages_per_service"):
            value = getattr(self, name)
            lowest = 0 if name == "max_steps" else 1
            if isinstance(value, bool) or int(value) != value or value < lowest:
                raise ConfigError(name, value, f"an integer >= {lowest}")


@dataclass
class ServiceEvaluation:
    """Φ_m(X_m) of one light service and the placement it implies (SEMANTICS §9)."""

    service: int
    phi: float  # Φ_m = V·C_m + Σ_placed w·d̂ + Σ_deferred w·c
    cost: float  # C_m (not multiplied by V)
    placed: list[tuple[int, int, int, float]]  # (index into obs.waiting, v, k, d̂ re-scored), queue order
    deferred: list[int]  # indices into obs.waiting, queue order (within the first L)
    occupancy: dict[tuple[int, int], int] = field(default_factory=dict)  # final o of each (v, k) in X_m
    ready: dict[tuple[int, int], float] = field(default_factory=dict)  # final R_i (ms) of each (v, k) in X_m


def service_delay_tables(obs: LightObservation, params: Algorithm1Params) -> dict[int, list[float]]:
    """g of every light service of the scenario, for ``params.kind`` (SEMANTICS §9 "Delay function")."""
    sc = obs.scenario
    return {
        int(m): delay_table(
            float(sc.work[m]), float(sc.light_shape[m]), float(sc.light_scale[m]), params.epsilon,
            obs.slot_ms, params.window_ms, obs.y_max, params.kind,
        )
        for m in sc.light_services
    }


def _checked_fifos(obs: LightObservation) -> dict[tuple[int, int, int], list] | None:
    """``obs.fifo`` checked against ``obs.occupancy`` (every busy light instance has an entry with as
    many jobs as its occupancy; no job on a core service), keyed by plain ints; None without it."""
    if obs.fifo is None:
        return None
    sc = obs.scenario
    occupancy = np.asarray(obs.occupancy)
    light_ids = [int(m) for m in sc.light_services]
    fifos = {}
    for (v, m, k), jobs in obs.fifo.items():
        if int(m) not in light_ids:
            if len(jobs):
                raise ConfigError(f"obs.fifo[{(v, m, k)}]", len(jobs), "no job on a core service")
            continue
        if len(jobs) != int(occupancy[v, m, k]):
            raise ConfigError(f"obs.fifo[{(v, m, k)}]", f"{len(jobs)} jobs",
                              f"as many jobs as obs.occupancy[{v}, {m}, {k}] = {int(occupancy[v, m, k])}")
        fifos[(int(v), int(m), int(k))] = list(jobs)
    missing = [
        (v, m, k) for v in range(sc.num_nodes) for m in light_ids for k in range(obs.max_light_instances)
        if occupancy[v, m, k] > 0 and (v, m, k) not in fifos
    ]
    if missing:
        raise ConfigError("obs.fifo", f"no entry for the busy instance {missing[0]}",
                          "the FIFO of every busy instance")
    return fifos


def _precomputed(obs: LightObservation, name: str, value, option: str) -> np.ndarray:
    """[V,M,X] ms: a precomputed per-instance time (``obs.drain`` / ``obs.latest_input``) for the busy
    instances and tΔt elsewhere; with neither it nor ``obs.fifo``, no light instance may be busy."""
    sc = obs.scenario
    shape = (sc.num_nodes, sc.num_services, obs.max_light_instances)
    out = np.full(shape, obs.t * obs.slot_ms, dtype=float)
    occupancy = np.asarray(obs.occupancy)
    if value is not None:
        given = np.asarray(value, dtype=float)
        if given.shape != shape:
            raise ConfigError(f"obs.{name}.shape", given.shape, f"{shape}")
        busy = occupancy > 0
        out[busy] = given[busy]  # an instance without jobs: tΔt (§9)
        return out
    light_ids = [int(m) for m in sc.light_services]
    if np.any(occupancy[:, light_ids, :] > 0):
        raise ConfigError("obs.fifo", None, f"the FIFO contents (or obs.{name}) of the busy light instances: "
                          f"Algorithm 1 with controller.instance_ready = {option} needs them")
    return out


def instance_drains(obs: LightObservation) -> np.ndarray:
    """[V,M,X] ms: the predicted drain time of every light instance at boundary t (SEMANTICS §9,
    ``instance_ready: drain``); tΔt for core services and for an instance without jobs.

    From ``obs.fifo``: walk the instance's jobs in FIFO order (the order of `sim.light_order` in
    force) at the mean rate E f = kβ of its service from cursor = tΔt:
    cursor = max(cursor, data_ready_job) + remaining_job / E f; the drain time is the final cursor.
    The FIFO of each light instance must hold ``obs.occupancy`` jobs. Without ``obs.fifo``,
    ``obs.drain`` (precomputed, [V,M,X]) is used for the busy instances; with neither, no light
    instance may be busy."""
    fifos = _checked_fifos(obs)
    if fifos is None:
        return _precomputed(obs, "drain", obs.drain, "drain")
    sc = obs.scenario
    now = obs.t * obs.slot_ms
    drain = np.full((sc.num_nodes, sc.num_services, obs.max_light_instances), now, dtype=float)
    for (v, m, k), jobs in fifos.items():
        mean_rate = float(sc.light_shape[m]) * float(sc.light_scale[m])  # E f = kβ
        cursor = now
        for remaining, ready in jobs:
            cursor = max(cursor, float(ready)) + float(remaining) / mean_rate
        drain[v, m, k] = cursor
    return drain


def instance_latest_inputs(obs: LightObservation) -> np.ndarray:
    """[V,M,X] ms: the latest data-ready time (on the instance's node) among the jobs in each light
    instance's FIFO at boundary t, before this boundary's assignments (SEMANTICS §9,
    ``instance_ready: max_input``, the starting R_i); tΔt for core services and for an instance
    without jobs. It may be below tΔt (every input already there); the scores clamp it with 0.

    From ``obs.fifo`` (which must match ``obs.occupancy``); without it ``obs.latest_input``
    (precomputed, [V,M,X]) is used for the busy instances; with neither, no light instance may be busy."""
    fifos = _checked_fifos(obs)
    if fifos is None:
        return _precomputed(obs, "latest_input", obs.latest_input, "max_input")
    sc = obs.scenario
    latest = np.full((sc.num_nodes, sc.num_services, obs.max_light_instances), obs.t * obs.slot_ms, dtype=float)
    for (v, m, k), jobs in fifos.items():
        if jobs:
            latest[v, m, k] = max(float(ready) for _, ready in jobs)
    return latest


def instance_ready_times(obs: LightObservation, instance_ready: str) -> np.ndarray:
    """[V,M,X] ms: every instance's instance-ready time R_i at the start of an evaluation of Φ_m
    (SEMANTICS §9): tΔt everywhere for "none", `instance_drains` for "drain", `instance_latest_inputs`
    for "max_input"."""
    if instance_ready == "drain":
        return instance_drains(obs)
    if instance_ready == "max_input":
        return instance_latest_inputs(obs)
    if instance_ready == "none":
        sc = obs.scenario
        return np.full((sc.num_nodes, sc.num_services, obs.max_light_instances), obs.t * obs.slot_ms, dtype=float)
    raise ConfigError("controller.instance_ready", instance_ready, "one of: " + ", ".join(INSTANCE_READY))


def _weight(obs: LightObservation, params: Algorithm1Params, H: Mapping[int, float], w_idx: int) -> float:
    """w_s = π·H_{j(s)} of waiting stage ``w_idx``."""
    task = obs.waiting[w_idx].task
    if task not in H:
        raise ConfigError(f"H[{task}]", "missing", "a virtual-queue value for every task with a waiting light stage")
    return params.pi * float(H[task])


def _light_cost(obs: LightObservation, m: int, instances: Iterable[tuple[int, int]]) -> float:
    """C_m = Σ_v c_dp·max(0, x_{v,m} − x^prev_{v,m}) + (c_mt + c_pl)·x_{v,m} (SEMANTICS §9)."""
    sc = obs.scenario
    count = [0] * sc.num_nodes
    for v, _ in instances:
        count[v] += 1
    cost = 0.0
    for v in range(sc.num_nodes):
        prev = int(np.sum(obs.alive_prev[v, m]))
        cost += float(sc.cost_deploy[m]) * max(0, count[v] - prev)
        cost += (float(sc.cost_maintain[m]) + float(sc.cost_payload[m])) * count[v]
    return cost


def _start_ready(
    obs: LightObservation, params: Algorithm1Params, drain: np.ndarray | None, ready: np.ndarray | None
) -> np.ndarray | None:
    """The starting R_i table [V,M,X] (ms) of an evaluation: None for "none" (R_i = tΔt; a table
    given is not used); else ``ready``, or ``drain`` (its older name, for "drain" only), or
    `instance_ready_times` of ``obs``."""
    if drain is not None and ready is not None:
        raise ConfigError("drain", "given with ready", "one of the two (drain is the older name of ready)")
    if params.instance_ready == "none":
        return None
    if drain is not None:
        if params.instance_ready != "drain":
            raise ConfigError("drain", "given", f"only with controller.instance_ready = drain (here "
                              f"{params.instance_ready}): pass the starting instance-ready times as ready")
        ready = drain
    return instance_ready_times(obs, params.instance_ready) if ready is None else np.asarray(ready, dtype=float)


def evaluate_service(
    obs: LightObservation,
    params: Algorithm1Params,
    H: Mapping[int, float],
    m: int,
    instances: Iterable[tuple[int, int]],
    g: list[float] | None = None,
    drain: np.ndarray | None = None,
    *,
    ready: np.ndarray | None = None,
) -> ServiceEvaluation:
    """Φ_m(X_m) for the instances ``instances`` = [(v, k)] of light service ``m`` (SEMANTICS §9).

    An instance's starting occupancy is ``obs.occupancy[v, m, k]`` (0 for an instance that is not
    busy), its starting instance-ready time R_i (ms) that of ``params.instance_ready`` ("none": tΔt;
    "drain": its predicted drain time; "max_input": the latest data-ready time of its jobs), taken
    from ``ready`` [V,M,X] if given (``drain`` is its older name, for "drain" only), else
    `instance_ready_times` of ``obs``. The first L = ``params.max_stages_per_service`` waiting
    stages of m, in queue order, are considered one at a time. The candidates are, for
    ``params.candidates`` "all", every instance with o < y_max; for "least_occupied", on each node
    the instance of lowest o (ties: lowest k), if its o < y_max. Score = max(0, data_ready − tΔt,
    R_i − tΔt) + g(o + 1) (ms); among the scores within 1e-9 of the least, "all" takes the lowest o,
    then the lowest v·X + k, "least_occupied" the lowest node. The stage is placed there if that
    score is finite and < c_s = 2·D_n + Δt (o += 1 and, for "max_input",
    R_i ← max(R_i, data_ready)), else deferred. Placed stages are re-scored with the final o and R_i
    of their instance. ``g`` defaults to the table of ``params.kind``."""
    if g is None:
        g = service_delay_tables(obs, params)[m]
    num_slots = obs.max_light_instances
    now = obs.t * obs.slot_ms
    members = sorted(set(instances), key=lambda vk: vk[0] * num_slots + vk[1])
    occupancy = {(v, k): int(obs.occupancy[v, m, k]) for v, k in members}
    stages = [i for i, w in enumerate(obs.waiting) if w.service == m][: params.max_stages_per_service]
    table = _start_ready(obs, params, drain, ready)
    # R_i of each instance (ms); tΔt everywhere for "none", so that the term is 0
    ready_at = {(v, k): now if table is None else float(table[v, m, k]) for v, k in members}

    def wait(w_idx: int, v: int, k: int) -> float:
        """max(0, data_ready − tΔt, R_i − tΔt) with R_i as it stands (ms)."""
        late = float(obs.waiting[w_idx].data_ready[v]) - now
        return max(0.0, late, ready_at[(v, k)] - now)

    def candidates() -> list[tuple[int, int]]:
        """The instances (v, k) the next stage may go to, by ``params.candidates``."""
        if params.candidates == "all":
            return [(v, k) for v, k in members if occupancy[(v, k)] < obs.y_max]
        chosen = []
        for v in sorted({v for v, _ in members}):
            o, k = min((occupancy[(v, k)], k) for w, k in members if w == v)  # lowest o, then lowest k
            if o < obs.y_max:
                chosen.append((v, k))
        return chosen

    placed: list[tuple[int, int, int]] = []
    deferred: list[int] = []
    for w_idx in stages:
        stage = obs.waiting[w_idx]
        defer_cost = 2.0 * stage.deadline + obs.slot_ms
        scores = [(wait(w_idx, v, k) + g[occupancy[(v, k)] + 1], v, k) for v, k in candidates()]
        if not scores:
            deferred.append(w_idx)
            continue
        # an instance on a node the stage's input cannot reach (data-ready time inf, SEMANTICS §12)
        # scores inf: it is never chosen, and a stage whose best score is inf is deferred below
        best_score = min(score for score, _, _ in scores)
        tied = [(v, k) for score, v, k in scores if score <= best_score + SCORE_TIE]
        if params.candidates == "all":
            v, k = min(tied, key=lambda vk: (occupancy[vk], vk[0] * num_slots + vk[1]))  # lowest o, flat index
        else:
            v, k = min(tied)  # one candidate per node: the lowest node
        if math.isfinite(best_score) and best_score < defer_cost:
            occupancy[(v, k)] += 1
            if params.instance_ready == "max_input":
                ready_at[(v, k)] = max(ready_at[(v, k)], float(stage.data_ready[v]))
            placed.append((w_idx, v, k))
        else:
            deferred.append(w_idx)

    cost = _light_cost(obs, m, members)
    phi = params.V * cost
    rescored = []
    for w_idx, v, k in placed:
        d_hat = wait(w_idx, v, k) + g[occupancy[(v, k)]]  # final R_i and o
        rescored.append((w_idx, v, k, d_hat))
        phi += _weight(obs, params, H, w_idx) * d_hat
    for w_idx in deferred:
        phi += _weight(obs, params, H, w_idx) * (2.0 * obs.waiting[w_idx].deadline + obs.slot_ms)
    return ServiceEvaluation(
        service=m, phi=phi, cost=cost, placed=rescored, deferred=deferred, occupancy=occupancy, ready=ready_at
    )


def _members(mask: np.ndarray, v_count: int, m: int, num_slots: int) -> list[tuple[int, int]]:
    """The instances (v, k) of service m flagged in the [V,M,X] mask."""
    return [(v, k) for v in range(v_count) for k in range(num_slots) if mask[v, m, k]]


def evaluate(
    obs: LightObservation, params: Algorithm1Params, H: Mapping[int, float], members: np.ndarray
) -> tuple[float, dict[int, ServiceEvaluation]]:
    """Φ(X) = Σ_m Φ_m(X_m) over the light services, X given as a [V,M,X] bool mask (SEMANTICS §9),
    with the options of ``params`` (the starting R_i of `instance_ready_times`)."""
    sc = obs.scenario
    tables = service_delay_tables(obs, params)
    ready = None if params.instance_ready == "none" else instance_ready_times(obs, params.instance_ready)
    per_service = {}
    for m in sc.light_services:
        m = int(m)
        per_service[m] = evaluate_service(
            obs, params, H, m, _members(members, sc.num_nodes, m, obs.max_light_instances), tables[m], ready=ready
        )
    return sum(ev.phi for ev in per_service.values()), per_service


# ------------------------------------------------------------------------------------------------
# SEMANTICS §9 "The greedy"
def algorithm1(
    obs: LightObservation, params: Algorithm1Params, H: Mapping[int, float]
) -> tuple[LightDecision, dict[str, Any]]:
    """Algorithm 1 at boundary ``obs.t`` with the virtual queues ``H`` (task id → H_j(t)).

    X starts as the busy light instances; while some candidate (m, v) (m has a waiting stage, v is
    up in slot t (SEMANTICS §12, ``obs.node_up``), (v, m) has a free instance slot, and one more
    instance of m fits on v next to the core instances and the light instances in X, Eq. 8) lowers Φ
    by more than tol = 1e-9·(1 + |Φ(X)|), the one of lowest (m, v) among those within tol of the
    best Δ is added in the lowest free slot k; at most ``params.max_steps`` times. Returns the
    decision of §9 step 4 and ``info`` with ``objective`` (Φ of the final X, V·C_light included),
    ``steps``, ``phi`` (Φ_m per light service), ``cost_light`` (Σ C_m), ``placed`` and ``deferred``
    (stage counts). Every evaluation of Φ_m follows ``params.instance_ready`` and
    ``params.candidates`` (see `evaluate_service`); the starting instance-ready times R_i are read
    once, from the FIFOs before this boundary's assignments. The decision states, for each assigned
    stage, the delay bound g(o_final) of §11 (``LightDecision.bounds``), whatever
    ``params.instance_ready`` (the R_i term is not part of the bound)."""
    sc = obs.scenario
    num_nodes, num_services, num_slots = sc.num_nodes, sc.num_services, obs.max_light_instances
    expected = (num_nodes, num_services, num_slots)
    if tuple(obs.occupancy.shape) != expected:
        raise ConfigError("obs.occupancy.shape", tuple(obs.occupancy.shape), f"{expected}")
    light_ids = [int(m) for m in sc.light_services]
    tables = service_delay_tables(obs, params)
    waiting_services = {w.service for w in obs.waiting}
    # starting R_i, from the FIFOs before this boundary's assignments (None for "none")
    ready = None if params.instance_ready == "none" else instance_ready_times(obs, params.instance_ready)
    node_up = obs.nodes_up()

    members = np.asarray(obs.occupancy) > 0  # step 2: the busy light instances
    evaluations = {
        m: evaluate_service(obs, params, H, m, _members(members, num_nodes, m, num_slots), tables[m], ready=ready)
        for m in light_ids
    }

    steps = 0
    while steps < params.max_steps:
        phi_total = sum(evaluations[m].phi for m in light_ids)
        used = resource_usage(sc, obs.x_core, members)
        candidates: list[tuple[float, int, int, int, ServiceEvaluation]] = []  # (Δ, m, v, k, Φ_m evaluation)
        for m in light_ids:
            if m not in waiting_services:
                continue
            current = _members(members, num_nodes, m, num_slots)
            for v in range(num_nodes):
                if not node_up[v]:
                    continue  # §12: no instance is started on a down node
                free = [k for k in range(num_slots) if not members[v, m, k]]
                if not free or not fits(used[v], sc.resource[m], sc.capacity[v]):
                    continue
                k = free[0]
                ev = evaluate_service(obs, params, H, m, current + [(v, k)], tables[m], ready=ready)
                candidates.append((ev.phi - evaluations[m].phi, m, v, k, ev))
        if not candidates:
            break
        delta_star = min(c[0] for c in candidates)
        tol = GREEDY_RTOL * (1.0 + abs(phi_total))
        if delta_star >= -tol:
            break
        _, m, v, k, ev = min((c for c in candidates if c[0] <= delta_star + tol), key=lambda c: (c[1], c[2]))
        members[v, m, k] = True
        evaluations[m] = ev
        steps += 1

    # step 4: deploy X, dispatch as evaluated, y = the largest final occupancy per (v, m); each
    # stage states the bound b_s = g(o_final), the g term of its re-scored d̂_s (§11)
    placed = sorted(
        (w_idx, v, k, tables[m][evaluations[m].occupancy[(v, k)]])
        for m in light_ids
        for w_idx, v, k, _ in evaluations[m].placed
    )
    assignment = [(w_idx, v, k) for w_idx, v, k, _ in placed]
    bounds = [bound for *_, bound in placed]
    parallelism = np.zeros((num_nodes, num_services), dtype=int)
    for m in light_ids:
        for (v, _), o in evaluations[m].occupancy.items():
            parallelism[v, m] = max(parallelism[v, m], o)
    info = {
        "objective": sum(evaluations[m].phi for m in light_ids),
        "steps": steps,
        "phi": {m: evaluations[m].phi for m in light_ids},
        "cost_light": sum(evaluations[m].cost for m in light_ids),
        "placed": len(assignment),
        "deferred": sum(len(evaluations[m].deferred) for m in light_ids),
    }
    decision = LightDecision(alive=members, assignment=assignment, parallelism=parallelism, bounds=bounds)
    return decision, info


def make_controller(kind: str = "ec", *, log: list | None = None, **params: Any) -> Controller:
    """A controller ``(obs, state) -> (LightDecision, state)`` for `simulate_reference` running
    `algorithm1` with ``Algorithm1Params(kind=kind, **params)``, e.g.
    ``make_controller("ec", instance_ready="max_input", candidates="least_occupied")`` (SEMANTICS §9;
    "drain" and "max_input" read the FIFOs the simulator passes in ``LightObservation.fifo``).

    The state (None at the first boundary of a realisation) is a dict: ``"H"`` maps task id →
    (boundary, H_j) of the last boundary at which the task had a waiting light stage, advanced by the
    recursion of §9 to the current boundary (boundaries only move forward within a realisation);
    ``"info"`` is the last call's info. If ``log`` is a list, ``dict(t=obs.t, **info)`` is appended
    to it at every boundary, so the caller can read the objective per boundary."""
    names = {f.name for f in fields(Algorithm1Params)} - {"kind"}
    unknown = sorted(set(params) - names)
    if unknown:
        raise ConfigError("controller parameter", unknown[0], f"one of {sorted(names)}")
    config = Algorithm1Params(kind=kind, **params)

    def control(obs: LightObservation, state: Any) -> tuple[LightDecision, dict[str, Any]]:
        cache: dict[int, tuple[int, float]] = dict(state["H"]) if state is not None else {}
        H: dict[int, float] = {}
        for stage in obs.waiting:
            if stage.task in H:
                continue
            if stage.task in cache:
                t0, h = cache[stage.task]
                if t0 > obs.t:
                    raise ConfigError("obs.t", obs.t, f"a boundary >= {t0}, the last one seen for task {stage.task}")
            else:
                t0, h = _arrival_boundary(stage.arrival, obs.slot_ms), config.H_min
                if t0 > obs.t:
                    raise ConfigError("obs.t", obs.t, f"a boundary >= the arrival boundary {t0} of task {stage.task}")
            for s in range(t0 + 1, obs.t + 1):
                h = _virtual_queue_step(h, s, stage.arrival, stage.deadline, obs.slot_ms, config.H_min)
            H[stage.task] = h
            cache[stage.task] = (obs.t, h)
        decision, info = algorithm1(obs, config, H)
        if log is not None:
            log.append(dict(t=obs.t, **info))
        return decision, {"H": cache, "info": info}

    control.__name__ = {"ec": "proposed", "avg": "propavg"}[kind]
    control.__doc__ = f"Algorithm 1 (SEMANTICS §9) with g^{kind.upper()}; options {config}."
    return control
