"""From host objects (scenarios, placements, config) to the engine's static sizes and traced arrays."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from edgefm.network import transfer_tables
from edgefm.scenario.model import Scenario
from edgefm.sim.types import ScenarioArrays, SimParams, SimSizes


def core_instance_list(x_core: np.ndarray):
    """Core instances in index order (node, service, copy): (nodes, services)."""
    nodes, services = [], []
    for v in range(x_core.shape[0]):
        for m in range(x_core.shape[1]):
            nodes += [v] * int(x_core[v, m])
            services += [m] * int(x_core[v, m])
    return np.asarray(nodes, np.int32), np.asarray(services, np.int32)


def network_states(link_up: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct link states of a schedule ``link_up`` [T,E]: (states [G,E] bool, in order of first
    appearance, and index [T] int of each slot's state)."""
    states: list[tuple] = []
    index = np.zeros(link_up.shape[0], np.int32)
    for t, row in enumerate(np.asarray(link_up, bool)):
        key = tuple(row.tolist())
        if key not in states:
            states.append(key)
        index[t] = states.index(key)
    return np.asarray(states, bool).reshape(len(states), link_up.shape[1]), index


def scenario_arrays(sc: Scenario, x_core: np.ndarray, Ic: int, total_slots: int, schedule=None,
                    num_states: int = 1) -> dict[str, np.ndarray]:
    """The traced arrays of one instance; ``schedule`` is its `FailureSchedule` (None: nothing
    fails) and ``num_states`` pads the network states to a common count G."""
    light = sc.light_services
    light_index = np.full(sc.num_services, -1, np.int32)
    light_index[light] = np.arange(len(light))
    xfer, fwd = transfer_tables(sc)
    E = int(np.asarray(sc.link_ends).shape[0])
    node_up = np.ones((total_slots, sc.num_nodes), bool) if schedule is None else np.asarray(schedule.node_up, bool)
    link_up = np.ones((total_slots, E), bool) if schedule is None else np.asarray(schedule.link_up, bool)
    random_nodes = np.zeros(sc.num_nodes, bool) if schedule is None else np.asarray(schedule.random_nodes, bool)
    states, net_state = network_states(link_up)
    tables = [transfer_tables(sc, up) for up in states]
    tables += [tables[0]] * (num_states - len(tables))
    ci_node, ci_service = core_instance_list(x_core)
    pad = Ic - len(ci_node)
    cost_run = sc.cost_maintain + sc.cost_payload
    core_cost = float(np.sum(x_core * (sc.cost_deploy + total_slots * sc.cost_maintain)[None, :]))
    return dict(
        capacity=sc.capacity.astype(float),
        node_is_server=np.asarray(sc.node_is_server, bool),
        resource=sc.resource.astype(float),
        work=sc.work.astype(float),
        core_duration=np.where(sc.service_is_core, sc.work / np.where(sc.service_is_core, sc.core_rate, 1.0), 0.0),
        light_shape=sc.light_shape[light].astype(float),
        light_scale=sc.light_scale[light].astype(float),
        light_service=light.astype(np.int32),
        light_index=light_index,
        cost_deploy=sc.cost_deploy.astype(float),
        cost_run=cost_run.astype(float),
        service_is_core=sc.service_is_core.astype(bool),
        input_size=sc.input_size.astype(float),
        deadline=sc.deadline.astype(float),
        stage_service=sc.stage_service.astype(np.int32),
        stage_parents=sc.stage_parents.astype(np.int32),
        stage_child=sc.stage_child.astype(np.int32),
        num_parents=(sc.stage_parents >= 0).sum(-1).astype(np.int32),
        sink_stage=sc.sink_stage.astype(np.int32),
        user_gateway=sc.user_gateway.astype(np.int32),
        arrival_rate=sc.arrival_rate.astype(float),
        nakagami_m=sc.nakagami_m.astype(float),
        nakagami_omega=sc.nakagami_omega.astype(float),
        xfer=np.asarray(xfer, float),
        fwd=np.asarray(fwd, float),
        x_core=x_core.astype(np.int32),
        core_usage=(x_core.astype(float) @ sc.resource.astype(float)),
        ci_node=np.concatenate([ci_node, np.zeros(pad, np.int32)]),
        ci_service=np.concatenate([ci_service, np.full(pad, -1, np.int32)]),
        core_cost_total=np.asarray(core_cost),
        xfer_states=np.stack([np.asarray(x, float) for x, _ in tables]),
        fwd_states=np.stack([np.asarray(f, float) for _, f in tables]),
        net_state=net_state,
        node_sched=node_up,
        random_nodes=random_nodes,
    )


def stack_arrays(scenarios, placements, Ic: int, total_slots: int, schedules=None) -> ScenarioArrays:
    """ScenarioArrays with a leading instance axis (``schedules``: a `FailureSchedule` per instance)."""
    schedules = [None] * len(scenarios) if schedules is None else list(schedules)
    G = max(1 if s is None else len(network_states(s.link_up)[0]) for s in schedules)
    per = [scenario_arrays(sc, x, Ic, total_slots, s, G) for sc, x, s in zip(scenarios, placements, schedules)]
    return ScenarioArrays(**{k: jnp.asarray(np.stack([p[k] for p in per])) for k in per[0]})


MIN_ROWS = 256  # the smallest class of task rows (adaptive capacities)


def size_load(load: float) -> float:
    """The load's size class (1, 2, 4, ...x): sizes follow it, so a sweep over loads within a class
    reuses the compiled program."""
    return 2.0 ** math.ceil(math.log2(max(load, 1.0)))


def expected_in_flight(scenarios, *, load: float, peak_factor: float) -> float:
    """Tasks in flight per realisation by Little's law, for the most loaded instance at the load's
    size class: the arrival rate (tasks/ms) times the mean time a task stays, taken as its type's
    deadline D_n (ms, weighted by the types' rates): a task on time leaves by its deadline."""
    stay = []
    for s in scenarios:
        rate = np.asarray(s.arrival_rate, float)  # [U,N] tasks/ms at 1x
        stay.append(float((rate.sum(0) * np.asarray(s.deadline, float)).sum()))
    return max(stay) * size_load(load) * peak_factor


def row_class(rows: float) -> int:
    """Task rows snapped to a class: the power of two at or above ``rows``, at least `MIN_ROWS`, so
    that runs of about the same size share the compiled program."""
    return 1 << max(MIN_ROWS.bit_length() - 1, math.ceil(math.log2(max(rows, 1.0))))


def compute_sizes(scenarios, placements, sim, *, load: float, peak_factor: float, failures: bool = False,
                  rows: int | None = None) -> SimSizes:
    """Static sizes from the scenarios and the `sim` config (docs/ENGINE.md, "Sizes").

    The task buffer (`SimSizes.task_capacity`, what decides ``tasks_dropped``) is sized for the worst
    case; the engine holds ``rows`` of it (`SimSizes.B`, at most the buffer; None: all of it), and the
    per-boundary lists follow the rows. With ``failures`` those lists hold every row: a node that
    fails can send every stage queued on it back to the waiting queues at once (docs/SEMANTICS.md §12)."""
    sc0 = scenarios[0]
    dt = float(sim.slot_ms)
    T_arr = int(round(sim.arrival_ms / dt))
    T = T_arr + int(round(sim.drain_ms / dt))
    per_slot = max(float(s.arrival_rate.sum()) for s in scenarios) * size_load(load) * dt * peak_factor
    A = int(math.ceil(per_slot + 8.0 * math.sqrt(per_slot) + 8))
    total = per_slot * T_arr
    J = int(math.ceil(total + 8.0 * math.sqrt(total) + 16))
    d_max = max(float(s.deadline.max()) for s in scenarios)
    buffer = min(int(math.ceil(sim.buffer_factor * per_slot * (d_max / dt + 1))) + A, J)
    B = buffer if rows is None else max(1, min(int(rows), buffer))
    # stages that become ready at one boundary: arrivals' roots plus the children of a slot's
    # completions, which can be many when a backlog clears
    Ln = B if failures else max(4 * A, B // 4)
    # under earliest_start every ready core stage is dispatched at once; under idle_only they queue
    Lc = int(sim.max_core_ready) or (Ln if sim.core_dispatch == "earliest_start" else B)
    Lw = int(sim.max_light_waiting) or B
    # core instances padded to a power of two (at least 16): placements of about the same size (the
    # strategies of one sweep) share the compiled program; padding entries serve no service
    Ic = max(int(np.sum(x)) for x in placements)
    Ic = 1 << max(4, (Ic - 1).bit_length())
    return SimSizes(
        V=sc0.num_nodes,
        K=sc0.capacity.shape[1],
        M=sc0.num_services,
        Ml=len(sc0.light_services),
        N=sc0.num_types,
        S=sc0.max_stages,
        P=sc0.stage_parents.shape[2],
        U=sc0.num_users,
        B=B,
        X=int(sim.max_light_instances),
        Q=int(sim.y_max),
        Ic=Ic,
        Lc=Lc,
        Lw=Lw,
        Ln=Ln,
        A=A,
        J=J,
        T=T,
        T_arr=T_arr,
        core_dispatch=str(sim.core_dispatch),
        quantiles=tuple(float(q) for q in sim.quantiles),
        root_ready=str(sim.root_ready),
        light_order=str(sim.light_order),
        buffer_capacity=buffer,
    )


def make_params(sim) -> SimParams:
    """The traced numbers of the `sim` settings."""
    return SimParams(slot_ms=jnp.asarray(float(sim.slot_ms)), y_max=jnp.asarray(int(sim.y_max), jnp.int32))


def slice_instance(arrays: ScenarioArrays, i: int) -> ScenarioArrays:
    return jax.tree.map(lambda a: a[i], arrays)
