"""Plain-Python reference simulator: the test oracle of the JAX engine.

It follows docs/SEMANTICS.md step by step, one task and one stage at a time, in float64. It is
written for clarity, not speed, and shares no code with ``edgefm.sim``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgefm.errors import ConfigError
from edgefm.reference.controllers import CONTROLLERS, LightObservation, WaitingStage
from edgefm.reference.network import NetworkDelays

CORE_DISPATCH_RULES = ("earliest_start", "idle_only")
ROOT_READY_RULES = ("uplink_end", "arrival")  # sim.root_ready, SEMANTICS.md §2 step 3 (default first)
LIGHT_ORDERS = ("input_arrival", "dispatch")  # sim.light_order, §2 step 7 (default first)
FADING_MODES = ("block", "per_slot")  # channel.fading, §2 step 2 (default first)

# the components of a task's latency along its critical path (SEMANTICS.md §11), in this order
BREAKDOWN_COMPONENTS = (
    "uplink",
    "network",
    "core_dispatch_wait",
    "core_queue",
    "core_service",
    "light_dispatch_wait",
    "light_queue",
    "light_service",
)
BOUND_TOL = 1e-9  # §11: a stage violates its bound iff its delay exceeds b_s + 1e-9 (ms)


@dataclass
class ReferenceResult:
    task_type: np.ndarray  # [J] int
    task_user: np.ndarray  # [J] int
    task_arrival: np.ndarray  # [J] float ms
    task_dropped: np.ndarray  # [J] bool
    task_finish: np.ndarray  # [J] float ms: sink finish, nan if dropped or not finished by T*slot_ms
    stage_node: np.ndarray  # [J,S] int, -1 if never dispatched (or padding)
    stage_finish: np.ndarray  # [J,S] float, nan if not finished by T*slot_ms (or padding)
    tasks_arrived: int
    tasks_ontime: int
    tasks_late: int
    tasks_unfinished: int
    tasks_dropped: int
    x_light: np.ndarray  # [T,V,M] int: light instances alive in each slot
    cost_light_per_slot: np.ndarray  # [T]
    cost_core: float
    cost_light: float
    cost_total: float
    capacity_violations: int  # slots in which some node exceeds its capacity (Eq. 8)
    # SEMANTICS.md §11 diagnostics (nan / -1 for stages never dispatched, dropped tasks and padding)
    stage_dispatch_slot: np.ndarray  # [J,S] int: boundary t_s at which the stage was dispatched, -1 if never
    stage_data_ready: np.ndarray  # [J,S] float ms: r_s, data-ready time on its node, nan if never dispatched
    stage_start: np.ndarray  # [J,S] float ms: σ_s (§11), nan if not started by T*slot_ms
    stage_bound: np.ndarray  # [J,S] float ms: delay bound the controller stated, nan if none
    light_bounded: np.ndarray  # [M] int: counted stages with a stated bound, per service (0 for core)
    light_violations: np.ndarray  # [M] int: counted stages that broke their bound, per service
    light_bounded_root: np.ndarray  # [M] int: the light_bounded stages that are roots of their task
    light_violations_root: np.ndarray  # [M] int: the light_violations stages that are roots
    task_breakdown: np.ndarray  # [J,8] float ms: latency split by BREAKDOWN_COMPONENTS, nan if not finished
    # SEMANTICS.md §12 failures
    jobs_lost: np.ndarray  # [T] int: stages lost at each boundary (on nodes down in that slot)
    invalid_actions: int  # controller assignments refused (to a down node, or one the input cannot reach)

    @property
    def ontime_rate(self) -> float:
        return self.tasks_ontime / self.tasks_arrived if self.tasks_arrived else float("nan")


# ------------------------------------------------------------------------------------------------
# bookkeeping objects
class _Stage:
    def __init__(self, index: int, service: int, parents: list[int], is_core: bool):
        self.index = index
        self.service = service
        self.parents = parents
        self.is_core = is_core
        self.ready_slot: int | None = None
        self.dispatched = False
        self.node = -1
        self.finish: float | None = None  # known at dispatch for core, at completion for light
        # SEMANTICS.md §11
        self.dispatch_slot: int | None = None  # t_s
        self.data_ready: float | None = None  # r_s on its node
        self.start: float | None = None  # σ_s: core start of §2.5, light first start of §2.7
        self.bound = math.nan  # b_s stated by the controller (light only), nan = none
        self.xfer: np.ndarray | None = None  # [M,V,V] transfer delays of its dispatch boundary (§12)

    def lose(self, t: int) -> None:
        """SEMANTICS.md §12 step 1b: undispatched again (no node, finish, start or bound) and ready
        again at boundary t. A light stage's remaining work is a_m again (its job is discarded)."""
        self.dispatched = False
        self.node = -1
        self.finish = None
        self.dispatch_slot = None
        self.data_ready = None
        self.start = None
        self.bound = math.nan
        self.xfer = None
        self.ready_slot = t


class _Task:
    def __init__(self, tid, n, u, arrival, uplink_end, stages):
        self.id = tid
        self.type = n
        self.user = u
        self.arrival = arrival
        self.uplink_end = uplink_end
        self.stages: dict[int, _Stage] = stages
        self.dropped = False
        self.complete = False  # sink observed done at some boundary


class _LightJob:
    def __init__(self, task: _Task, stage: _Stage, work: float, data_ready: float, dispatch_slot: int, slot_ms: float):
        self.task = task
        self.stage = stage
        self.remaining = work  # MB
        self.data_ready = data_ready  # ms, on the instance's node
        self.dispatch_slot = dispatch_slot  # t_d
        # t0 = max(t_d·Δt, data_ready) (ms): the moment the job is at its instance with its input,
        # the key of the `input_arrival` FIFO order (SEMANTICS.md §2 step 7)
        self.t0 = max(dispatch_slot * slot_ms, data_ready)
        self.finish: float | None = None


def _insert_job(queue: list[_LightJob], job: _LightJob, light_order: str) -> None:
    """Put a newly dispatched ``job`` in its instance's FIFO ``queue`` (SEMANTICS.md §2 step 7).

    ``dispatch``: at the end. ``input_arrival``: after every job already in the FIFO whose t0 is
    <= the job's own and before the others; the FIFO is then sorted by (t0, dispatch boundary, rank
    at that boundary), since the jobs of one boundary are inserted in their assignment order."""
    if light_order == "dispatch":
        queue.append(job)
        return
    position = len(queue)
    while position > 0 and queue[position - 1].t0 > job.t0:
        position -= 1
    queue.insert(position, job)


class _CoreInstance:
    def __init__(self, index: int, node: int, service: int):
        self.index = index
        self.node = node
        self.service = service
        self.free = 0.0  # finish time of the last job queued on it
        self.jobs: list[_Stage] = []  # core stages dispatched to it that were not done at the last boundary


def _done(stage: _Stage, now: float) -> bool:
    return stage.finish is not None and stage.finish <= now


def _transfer_time(size: float, rate: float) -> float:
    """ms to send ``size`` MB at ``rate`` MB/ms: 0 at an infinite rate (channel `off`) or for an
    empty input, inf at rate 0."""
    if math.isinf(rate) or size == 0.0:
        return 0.0
    if rate <= 0.0:
        return math.inf
    return size / rate


def uplink_end_time(size: float, rates, arrival_slot: int, slot_ms: float, fading: str) -> float:
    """ms: when the whole input of ``size`` MB is at the gateway (SEMANTICS.md §2 step 2).

    ``rates`` [T] MB/ms is the user's column of ``uplink_rate``; the task arrives at boundary
    ``arrival_slot``. ``block``: t·Δt + A / rate[t] (the arrival slot's rate holds for the whole
    upload). ``per_slot``: the upload proceeds at each slot's rate from the arrival slot on:
    remaining = A; for t' = t … T−1, if rate[t']·Δt >= remaining the upload ends at
    t'·Δt + remaining / rate[t'], otherwise remaining −= rate[t']·Δt; an upload not complete by T·Δt
    ends at inf. An infinite rate needs no time in both."""
    t = int(arrival_slot)
    if fading == "block":
        return t * slot_ms + _transfer_time(size, float(rates[t]))
    remaining = float(size)
    for t_slot in range(t, len(rates)):
        rate = float(rates[t_slot])
        if rate * slot_ms >= remaining:
            return t_slot * slot_ms + _transfer_time(remaining, rate)
        remaining = remaining - rate * slot_ms
    return math.inf


def _option(field: str, value, accepted: tuple[str, ...]) -> str:
    """``value`` if it is one of the named values ``accepted``, else a ConfigError naming ``field``."""
    if not isinstance(value, str) or value not in accepted:
        raise ConfigError(field, value, "one of: " + ", ".join(accepted))
    return value


# ------------------------------------------------------------------------------------------------
# SEMANTICS.md §11 diagnostics, read off the finished execution
def _bound_outcome(stage: _Stage, horizon: float, slot_ms: float) -> tuple[bool, bool]:
    """(counted, violated) of a dispatched light stage against its stated bound b_s (§11).

    t0_s = max(t_sΔt, r_s); the delay is d_s = finish_s − t0_s. A stage with a finite bound that
    finished by TΔt is counted, and violates iff d_s > b_s + 1e-9; one not finished by TΔt is counted
    (as a violation) only if it is already known late, TΔt − t0_s > b_s + 1e-9."""
    if not math.isfinite(stage.bound):
        return False, False
    t0 = max(stage.dispatch_slot * slot_ms, stage.data_ready)
    if stage.finish is not None and stage.finish <= horizon:
        return True, stage.finish - t0 > stage.bound + BOUND_TOL
    if horizon - t0 > stage.bound + BOUND_TOL:
        return True, True
    return False, False


def _critical_parent(task: _Task, stage: _Stage) -> _Stage:
    """The parent p maximising finish_p + xfer_{m(p)}(node_p → node_s); ties: first in the parent list.

    xfer is the transfer table of the boundary at which the stage was (last) dispatched (§12)."""
    best, best_time = None, -math.inf
    for p in stage.parents:
        parent = task.stages[p]
        arrival_time = parent.finish + float(stage.xfer[parent.service, parent.node, stage.node])
        if best is None or arrival_time > best_time:
            best, best_time = parent, arrival_time
    return best


def _latency_breakdown(task: _Task, sink: _Stage, slot_ms: float) -> np.ndarray:
    """[8] ms: a finished task's latency split along its critical path (§11, BREAKDOWN_COMPONENTS).

    For each stage on the path from the sink back to a root: dispatch wait = max(t_sΔt, r_s) − r_s,
    queue = σ_s − max(t_sΔt, r_s), service = f_s − σ_s (core_* or light_* by its service); the
    transfer from the critical parent, r_s − f_p, goes to network. The root adds uplink =
    uplink_end − arrival and network += r_root − uplink_end. A re-dispatched stage (§12) is measured
    from its last dispatch: t_s, r_s and σ_s are those of that dispatch."""
    parts = dict.fromkeys(BREAKDOWN_COMPONENTS, 0.0)
    stage = sink
    while True:
        kind = "core" if stage.is_core else "light"
        t0 = max(stage.dispatch_slot * slot_ms, stage.data_ready)
        parts[f"{kind}_dispatch_wait"] += t0 - stage.data_ready
        parts[f"{kind}_queue"] += stage.start - t0
        parts[f"{kind}_service"] += stage.finish - stage.start
        if not stage.parents:
            parts["uplink"] += task.uplink_end - task.arrival
            parts["network"] += stage.data_ready - task.uplink_end
            break
        parent = _critical_parent(task, stage)
        parts["network"] += stage.data_ready - parent.finish
        stage = parent
    return np.array([parts[name] for name in BREAKDOWN_COMPONENTS], dtype=float)


# ------------------------------------------------------------------------------------------------
def _failure_array(name: str, value, shape: tuple[int, int], meaning: str) -> np.ndarray:
    """``value`` as a bool array of ``shape`` (all True when None), or a ConfigError naming ``name``."""
    if value is None:
        return np.ones(shape, dtype=bool)
    array = np.asarray(value)
    if array.dtype != bool:
        raise ConfigError(f"{name}.dtype", str(array.dtype), f"bool, true iff {meaning}")
    if array.shape != shape:
        raise ConfigError(f"{name}.shape", array.shape, f"{shape}")
    return array


# ------------------------------------------------------------------------------------------------
def simulate_reference(
    scenario,
    x_core,
    arrivals,
    uplink_rate,
    light_rate,
    *,
    slot_ms: float,
    arrival_slots: int,
    total_slots: int,
    core_dispatch: str = "earliest_start",
    y_max: int = 20,
    max_light_instances: int = 8,
    buffer_capacity: int = 10**9,
    controller="lbrr",
    node_up=None,
    link_up=None,
    root_ready: str = "uplink_end",
    light_order: str = "input_arrival",
    fading: str = "block",
) -> ReferenceResult:
    """Simulate one realisation; see docs/SEMANTICS.md for the meaning of every step.

    ``node_up`` [T,V] bool (node v up during slot t) and ``link_up`` [T,E] bool (link e, in the order
    of ``scenario.link_ends``, up during slot t) are the failures of SEMANTICS.md §12; None means
    everything is up, which changes nothing.

    Options (§2): ``root_ready`` (`sim.root_ready`, step 3): "uplink_end" — a root is ready from the
    first boundary t with uplink end <= t·Δt — or "arrival" — from its arrival boundary;
    ``light_order`` (`sim.light_order`, step 7): "input_arrival" — each light FIFO sorted by
    (t0, dispatch boundary, rank), t0 = max(t_d·Δt, data-ready time) — or "dispatch" — strict FIFO in
    dispatch order; ``fading`` (`channel.fading`, step 2): how the uplink end is computed from
    ``uplink_rate`` [T,U] MB/ms, "block" or "per_slot" (see `uplink_end_time`)."""
    _option("sim.root_ready", root_ready, ROOT_READY_RULES)
    _option("sim.light_order", light_order, LIGHT_ORDERS)
    _option("channel.fading", fading, FADING_MODES)
    sc = scenario
    V, M, N, U, S = sc.num_nodes, sc.num_services, sc.num_types, sc.num_users, sc.max_stages
    T, X = int(total_slots), int(max_light_instances)
    dt = float(slot_ms)
    x_core = np.asarray(x_core, dtype=int)
    arrivals = np.asarray(arrivals)
    uplink_rate = np.asarray(uplink_rate, dtype=float)
    light_rate = np.asarray(light_rate, dtype=float)
    light_ids = [int(m) for m in sc.light_services]
    light_index = {m: i for i, m in enumerate(light_ids)}

    if core_dispatch not in CORE_DISPATCH_RULES:
        raise ConfigError("sim.core_dispatch", core_dispatch, f"one of {CORE_DISPATCH_RULES}")
    if isinstance(controller, str):
        if controller not in CONTROLLERS:
            raise ConfigError("controller", controller, f"one of {sorted(CONTROLLERS)}")
        control = CONTROLLERS[controller]
    else:
        control = controller
    if x_core.shape != (V, M):
        raise ConfigError("x_core.shape", x_core.shape, f"({V}, {M})")
    if arrivals.shape != (T, U, N):
        raise ConfigError("arrivals.shape", arrivals.shape, f"({T}, {U}, {N})")
    if uplink_rate.shape != (T, U):
        raise ConfigError("uplink_rate.shape", uplink_rate.shape, f"({T}, {U})")
    if light_rate.shape != (T, V, len(light_ids), X):
        raise ConfigError("light_rate.shape", light_rate.shape, f"({T}, {V}, {len(light_ids)}, {X})")
    if np.any(x_core[:, light_ids] != 0):
        raise ConfigError("x_core", "light columns", "core instances of core services only")
    E = len(sc.link_ends)
    node_up = _failure_array("node_up", node_up, (T, V), "node v is up during slot t ([t, v])")
    link_up = _failure_array("link_up", link_up, (T, E), "link e of scenario.link_ends is up during slot t ([t, e])")

    network = NetworkDelays(sc)  # the delay tables of each distinct link state (§4, §12)

    # core instances, indexed by node ascending, then service ascending, then copy
    core_instances: list[_CoreInstance] = []
    for v in range(V):
        for m in range(M):
            for _ in range(int(x_core[v, m])):
                core_instances.append(_CoreInstance(len(core_instances), v, m))

    # light instances: FIFO of jobs per (v, m, k)
    fifo: dict[tuple[int, int, int], list[_LightJob]] = {
        (v, m, k): [] for v in range(V) for m in light_ids for k in range(X)
    }
    alive_prev = np.zeros((V, M, X), dtype=bool)
    controller_state = None

    tasks: list[_Task] = []
    in_flight: list[_Task] = []  # admitted and not complete
    x_light = np.zeros((T, V, M), dtype=int)
    cost_light_per_slot = np.zeros(T, dtype=float)
    capacity_violations = 0
    jobs_lost = np.zeros(T, dtype=int)
    invalid_actions = 0

    def data_ready(task: _Task, stage: _Stage, v: int, fwd: np.ndarray, xfer: np.ndarray) -> float:
        """Time the input of ``stage`` is available on node v (SEMANTICS.md §2 step 3), with the delay
        tables of the current boundary (§12: inf where no path of up links reaches v)."""
        if not stage.parents:
            g = int(sc.user_gateway[task.user])
            return task.uplink_end + float(fwd[task.type, g, v])
        ready = -math.inf
        for p in stage.parents:
            parent = task.stages[p]
            ready = max(ready, parent.finish + float(xfer[parent.service, parent.node, v]))
        return ready

    for t in range(T):
        now = t * dt
        slot_end = (t + 1) * dt
        up = node_up[t]  # [V] bool
        fwd, xfer = network.tables(link_up[t])  # [N,V,V], [M,V,V]: the delays of boundary t

        # 1. completion observed
        still = []
        for task in in_flight:
            sink = task.stages[int(sc.sink_stage[task.type])]
            if _done(sink, now):
                task.complete = True
            else:
                still.append(task)
        in_flight = still
        for key in fifo:
            fifo[key] = [job for job in fifo[key] if not _done(job.stage, now)]
        for inst in core_instances:
            inst.jobs = [stage for stage in inst.jobs if not _done(stage, now)]

        # 1b. failures (§12): on every node down in slot t, the core stages not done and every job in
        # a light FIFO are lost; they are ready again at this boundary, with ready_slot = t
        for inst in core_instances:
            if up[inst.node] or not inst.jobs:
                continue
            for stage in inst.jobs:
                stage.lose(t)
                jobs_lost[t] += 1
            inst.jobs = []
            inst.free = now
        for (v, m, k), jobs in fifo.items():
            if up[v]:
                continue
            for job in jobs:
                job.stage.lose(t)
                jobs_lost[t] += 1
            fifo[(v, m, k)] = []

        # 2. arrivals
        if t < arrival_slots:
            for u in range(U):
                for n in range(N):
                    for _ in range(int(arrivals[t, u, n])):
                        uplink_end = uplink_end_time(float(sc.input_size[n]), uplink_rate[:, u], t, dt, fading)
                        stages = {}
                        for s in sc.stages_of(n):
                            m = int(sc.stage_service[n, s])
                            parents = [int(p) for p in sc.stage_parents[n, s] if p >= 0]
                            stages[s] = _Stage(s, m, parents, bool(sc.service_is_core[m]))
                        task = _Task(len(tasks), n, u, now, uplink_end, stages)
                        tasks.append(task)
                        if len(in_flight) >= buffer_capacity:
                            task.dropped = True
                        else:
                            in_flight.append(task)

        # 3. readiness, 4. order (a stage lost at 1b already has ready_slot = t)
        waiting: list[tuple[int, int, int, _Task, _Stage]] = []
        for task in in_flight:
            for stage in task.stages.values():
                if stage.dispatched:
                    continue
                if stage.ready_slot is None:
                    if stage.parents:
                        ready = all(_done(task.stages[p], now) for p in stage.parents)
                    elif root_ready == "uplink_end":
                        ready = task.uplink_end <= now  # never, for an upload not done by TΔt
                    else:  # "arrival"
                        ready = True
                    if ready:
                        stage.ready_slot = t
                    else:
                        continue
                waiting.append((stage.ready_slot, task.id, stage.index, task, stage))
        waiting.sort(key=lambda item: item[:3])

        # 5. core dispatch (§12: only on nodes up in slot t, with a finite start)
        for _, _, _, task, stage in waiting:
            if not stage.is_core:
                continue
            m = stage.service
            best, best_key, best_start = None, None, None
            for inst in core_instances:
                if inst.service != m or not up[inst.node]:
                    continue
                ready_v = data_ready(task, stage, inst.node, fwd, xfer)
                if math.isinf(ready_v):
                    continue  # its input cannot reach this node now: the transfer waits
                if core_dispatch == "earliest_start":
                    start = max(now, ready_v, inst.free)
                    key = (start, inst.index)
                else:  # idle_only
                    if inst.free > now:
                        continue
                    start = max(now, ready_v)
                    key = (ready_v, inst.index)
                if best_key is None or key < best_key:
                    best, best_key, best_start = inst, key, start
            if best is None:
                continue  # waits for a later boundary
            finish = best_start + float(sc.work[m]) / float(sc.core_rate[m])
            best.free = finish
            best.jobs.append(stage)
            stage.dispatched = True
            stage.node = best.node
            stage.finish = finish
            stage.dispatch_slot = t
            stage.data_ready = data_ready(task, stage, best.node, fwd, xfer)
            stage.start = best_start
            stage.xfer = xfer

        # 6. light decision
        light_waiting = [(task, stage) for _, _, _, task, stage in waiting if not stage.is_core]
        occupancy = np.zeros((V, M, X), dtype=int)
        for (v, m, k), jobs in fifo.items():
            occupancy[v, m, k] = len(jobs)
        obs_waiting = [
            WaitingStage(
                task=task.id,
                stage=stage.index,
                service=stage.service,
                task_type=task.type,
                ready_slot=stage.ready_slot,
                arrival=task.arrival,
                deadline=float(sc.deadline[task.type]),
                data_ready=np.array([data_ready(task, stage, v, fwd, xfer) for v in range(V)]),
            )
            for task, stage in light_waiting
        ]
        obs = LightObservation(
            t=t,
            slot_ms=dt,
            scenario=sc,
            x_core=x_core,
            waiting=obs_waiting,
            occupancy=occupancy.copy(),
            alive_prev=alive_prev.copy(),
            y_max=int(y_max),
            max_light_instances=X,
            # the FIFOs at this boundary (done jobs already removed, step 1), in the order in force
            # (``light_order``), for the instance-ready times of §9
            fifo={key: [(job.remaining, job.data_ready) for job in jobs] for key, jobs in fifo.items()},
            node_up=up.copy(),
        )
        decision, controller_state = control(obs, controller_state)
        alive = np.array(decision.alive, dtype=bool)
        if alive.shape != (V, M, X):
            raise ValueError(f"controller returned alive of shape {alive.shape}, expected {(V, M, X)}")
        alive[~up] = False  # §12: no light instance exists on a down node
        if np.any(alive[:, sc.service_is_core, :]):
            raise ValueError("controller made a core service's light instance alive")
        if np.any((occupancy > 0) & ~alive):
            raise ValueError(f"controller stopped a busy light instance at boundary {t}")
        parallelism = (
            np.full((V, M), int(y_max), dtype=int)
            if decision.parallelism is None
            else np.asarray(decision.parallelism, dtype=int)
        )
        if decision.bounds is None:
            bounds = [None] * len(decision.assignment)
        else:
            bounds = list(decision.bounds)
            if len(bounds) != len(decision.assignment):
                raise ValueError(
                    f"controller stated {len(bounds)} bounds for {len(decision.assignment)} assigned stages"
                )
        seen = set()
        for (w_idx, v, k), bound in sorted(zip(decision.assignment, bounds), key=lambda a: a[0][0]):
            if w_idx in seen:
                raise ValueError(f"controller assigned waiting stage {w_idx} twice")
            seen.add(w_idx)
            task, stage = light_waiting[w_idx]
            m = stage.service
            if not up[v] or math.isinf(obs_waiting[w_idx].data_ready[v]):
                invalid_actions += 1  # §12: refused, the stage keeps waiting
                continue
            if not alive[v, m, k]:
                raise ValueError(f"controller routed a stage to a stopped instance {(v, m, k)}")
            if len(fifo[(v, m, k)]) >= min(int(parallelism[v, m]), int(y_max)):
                raise ValueError(f"controller overfilled light instance {(v, m, k)}")
            job = _LightJob(task, stage, float(sc.work[m]), data_ready(task, stage, v, fwd, xfer), t, dt)
            _insert_job(fifo[(v, m, k)], job, light_order)
            stage.dispatched = True
            stage.node = v
            stage.dispatch_slot = t
            stage.data_ready = job.data_ready
            stage.bound = math.nan if bound is None else float(bound)
            stage.xfer = xfer

        # 7. light execution in slot t
        for (v, m, k), jobs in fifo.items():
            f = float(light_rate[t, v, light_index[m], k])
            cursor = now
            for job in jobs:
                start = max(cursor, job.data_ready)
                if start >= slot_end:
                    break  # head-of-line: the later jobs wait too
                if job.stage.start is None:
                    job.stage.start = start  # the first instant the instance works on it (§11)
                need = job.remaining / f if f > 0 else math.inf
                if start + need <= slot_end:
                    job.finish = start + need
                    job.remaining = 0.0
                    job.stage.finish = job.finish
                    cursor = job.finish
                else:
                    job.remaining = job.remaining - f * (slot_end - start)
                    break

        # 8. costs of slot t, and Eq. 8
        for v in range(V):
            for m in light_ids:
                x_light[t, v, m] = int(np.sum(alive[v, m]))
        x_prev = x_light[t - 1] if t > 0 else np.zeros((V, M), dtype=int)
        slot_cost = 0.0
        for v in range(V):
            for m in light_ids:
                started = max(0, int(x_light[t, v, m]) - int(x_prev[v, m]))
                slot_cost += float(sc.cost_deploy[m]) * started
                slot_cost += (float(sc.cost_maintain[m]) + float(sc.cost_payload[m])) * int(x_light[t, v, m])
        cost_light_per_slot[t] = slot_cost
        violated = False
        for v in range(V):
            for r in range(sc.capacity.shape[1]):
                usage = sum(
                    float(sc.resource[m, r]) * (int(x_core[v, m]) + int(x_light[t, v, m])) for m in range(M)
                )
                if usage > float(sc.capacity[v, r]) * (1 + 1e-9) + 1e-9:
                    violated = True
        capacity_violations += int(violated)
        alive_prev = alive

    # outcomes
    horizon = T * dt
    J = len(tasks)
    task_finish = np.full(J, np.nan)
    stage_node = np.full((J, S), -1, dtype=int)
    stage_finish = np.full((J, S), np.nan)
    stage_dispatch_slot = np.full((J, S), -1, dtype=int)
    stage_data_ready = np.full((J, S), np.nan)
    stage_start = np.full((J, S), np.nan)
    stage_bound = np.full((J, S), np.nan)
    light_bounded = np.zeros(M, dtype=int)
    light_violations = np.zeros(M, dtype=int)
    light_bounded_root = np.zeros(M, dtype=int)
    light_violations_root = np.zeros(M, dtype=int)
    task_breakdown = np.full((J, len(BREAKDOWN_COMPONENTS)), np.nan)
    ontime = late = unfinished = dropped = 0
    for task in tasks:
        if task.dropped:
            dropped += 1
            continue
        for s, stage in task.stages.items():
            stage_node[task.id, s] = stage.node
            if stage.finish is not None and stage.finish <= horizon:
                stage_finish[task.id, s] = stage.finish
            if stage.dispatched:
                stage_dispatch_slot[task.id, s] = stage.dispatch_slot
                stage_data_ready[task.id, s] = stage.data_ready
                stage_bound[task.id, s] = stage.bound
                if stage.start is not None and stage.start <= horizon:
                    stage_start[task.id, s] = stage.start
                if not stage.is_core:
                    counted, violated = _bound_outcome(stage, horizon, dt)
                    light_bounded[stage.service] += int(counted)
                    light_violations[stage.service] += int(violated)
                    if not stage.parents:
                        light_bounded_root[stage.service] += int(counted)
                        light_violations_root[stage.service] += int(violated)
        sink = task.stages[int(sc.sink_stage[task.type])]
        if sink.finish is not None and sink.finish <= horizon:
            task_finish[task.id] = sink.finish
            task_breakdown[task.id] = _latency_breakdown(task, sink, dt)
            if sink.finish - task.arrival <= float(sc.deadline[task.type]):
                ontime += 1
            else:
                late += 1
        else:
            unfinished += 1

    cost_core = 0.0
    for v in range(V):
        for m in range(M):
            cost_core += int(x_core[v, m]) * (float(sc.cost_deploy[m]) + T * float(sc.cost_maintain[m]))
    cost_light = float(np.sum(cost_light_per_slot))

    return ReferenceResult(
        task_type=np.array([task.type for task in tasks], dtype=int),
        task_user=np.array([task.user for task in tasks], dtype=int),
        task_arrival=np.array([task.arrival for task in tasks], dtype=float),
        task_dropped=np.array([task.dropped for task in tasks], dtype=bool),
        task_finish=task_finish,
        stage_node=stage_node,
        stage_finish=stage_finish,
        tasks_arrived=J,
        tasks_ontime=ontime,
        tasks_late=late,
        tasks_unfinished=unfinished,
        tasks_dropped=dropped,
        x_light=x_light,
        cost_light_per_slot=cost_light_per_slot,
        cost_core=cost_core,
        cost_light=cost_light,
        cost_total=cost_core + cost_light,
        capacity_violations=capacity_violations,
        stage_dispatch_slot=stage_dispatch_slot,
        stage_data_ready=stage_data_ready,
        stage_start=stage_start,
        stage_bound=stage_bound,
        light_bounded=light_bounded,
        light_violations=light_violations,
        light_bounded_root=light_bounded_root,
        light_violations_root=light_violations_root,
        task_breakdown=task_breakdown,
        jobs_lost=jobs_lost,
        invalid_actions=invalid_actions,
    )
