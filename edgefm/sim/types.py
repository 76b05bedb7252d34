"""Pytrees of the JAX engine. Every field carries its shape (per realisation) and unit.

Static sizes live in `SimSizes` (hashable: changing one recompiles); everything a sweep changes is a
traced leaf (`ScenarioArrays`, `SimParams`), so a multirun over load, V or epsilon reuses the
compiled program.
"""

from __future__ import annotations

from dataclasses import dataclass

import equinox as eqx
import jax
import jax.numpy as jnp

Array = jax.Array

CAPACITY_TOL = 1e-9  # Eq. 8 tolerance on float sums of resource needs
IDX = jnp.int32  # the state's stored references, node/type/user/task ids and queue slots (`SimSizes` checks they fit)
COUNT = jnp.int8  # the state's stored parent counts (`SimSizes` checks P fits)
CORE_DISPATCH_RULES = ("earliest_start", "idle_only")
ROOT_READY_RULES = ("uplink_end", "arrival")  # when a root stage becomes ready (docs/SEMANTICS.md §2.3)
LIGHT_ORDERS = ("input_arrival", "dispatch")  # the service order of a light FIFO (docs/SEMANTICS.md §2.7)
CAPACITIES = ("adaptive", "worst_case")  # how the engine's task rows are sized (docs/ENGINE.md, "Sizes")


@dataclass(frozen=True)
class SimSizes:
    """Static sizes: the shapes of every array of the engine."""

    V: int  # nodes
    K: int  # resources
    M: int  # services (core + light)
    Ml: int  # light services
    N: int  # task types
    S: int  # max stages per task type
    P: int  # max parents per stage
    U: int  # users
    B: int  # task rows: tasks in flight the engine holds per realisation (<= task_capacity)
    X: int  # light instance slots per (node, light service)
    Q: int  # light FIFO length = y_max (static bound of the parallelism)
    Ic: int  # core instances (the most over sampled instances, padded to a power of two >= 16)
    Lc: int  # ready core stages handled per boundary
    Lw: int  # waiting light stages held in the queue, all shown to the controller
    Ln: int  # newly ready stages taken per boundary
    A: int  # arrivals handled per slot (beyond: counted in list_overflow)
    J: int  # task ids recorded (per-task outcomes); beyond: counted in list_overflow
    T: int  # slots in the horizon
    T_arr: int  # slots with arrivals
    core_dispatch: str  # "earliest_start" | "idle_only"
    quantiles: tuple[float, ...] = (0.5, 0.9, 0.95, 0.99)
    root_ready: str = "uplink_end"  # "uplink_end" | "arrival" (ROOT_READY_RULES)
    light_order: str = "input_arrival"  # "input_arrival" | "dispatch" (LIGHT_ORDERS)
    buffer_capacity: int = 0  # tasks held at once before an arrival is dropped (SEMANTICS §2); 0: B

    def __post_init__(self):
        # the state stores references (b*S+s, instance cells, task ids) as IDX and parent counts as COUNT
        limits = {"B*S": self.B * self.S, "V*Ml*X*Q": self.V * self.Ml * self.X * self.Q, "J*S": self.J * self.S,
                  "Lw": self.Lw, "Lc": self.Lc, "T": self.T}
        for name, value in limits.items():
            if value >= jnp.iinfo(IDX).max:
                raise ValueError(f"engine size {name}={value}: the engine's int32 references hold < 2**31 - 1")
        if self.P > jnp.iinfo(COUNT).max:
            raise ValueError(f"engine size P={self.P} (parents of one stage): at most {jnp.iinfo(COUNT).max} are held")

    @property
    def task_capacity(self) -> int:
        """Tasks held at once before an arrival is dropped: `buffer_capacity`, or B where it is 0.
        With fewer rows than that (`B` < `task_capacity`), an arrival the buffer takes but no row
        holds is counted in ``list_overflow``, and the run is approximate."""
        return self.buffer_capacity or self.B


class ScenarioArrays(eqx.Module):
    """One sampled scenario instance plus its core placement, as traced arrays."""

    capacity: Array  # [V,K] resource units
    node_is_server: Array  # [V] bool: edge server (True) or edge device (False)
    resource: Array  # [M,K] resource units per instance
    work: Array  # [M] MB
    core_duration: Array  # [M] ms: a_m / f_m for core services (0 for light)
    light_shape: Array  # [Ml] Gamma shape k
    light_scale: Array  # [Ml] MB/ms Gamma scale beta
    light_service: Array  # [Ml] int: global service id of each light service
    light_index: Array  # [M] int: index among light services, -1 for core
    cost_deploy: Array  # [M] price units
    cost_run: Array  # [M] price units per slot: c_mt + c_pl
    service_is_core: Array  # [M] bool
    input_size: Array  # [N] MB
    deadline: Array  # [N] ms
    stage_service: Array  # [N,S] int, -1 padding
    stage_parents: Array  # [N,S,P] int, -1 padding
    stage_child: Array  # [N,S] int: the successor stage, -1 for the sink and padding
    num_parents: Array  # [N,S] int: number of parents of each stage
    sink_stage: Array  # [N] int
    user_gateway: Array  # [U] int
    arrival_rate: Array  # [U,N] tasks/ms at load 1x
    nakagami_m: Array  # [U]
    nakagami_omega: Array  # [U]
    xfer: Array  # [M,V,V] ms: transfer delay of service m's output between nodes
    fwd: Array  # [N,V,V] ms: forwarding delay of type n's input between nodes
    x_core: Array  # [V,M] int: core placement
    core_usage: Array  # [V,K] resources used by the core placement
    ci_node: Array  # [Ic] int: node of each core instance (index order: node, service, copy)
    ci_service: Array  # [Ic] int: service of each core instance, -1 for padding
    core_cost_total: Array  # [] price units over the horizon
    # failures (docs/SEMANTICS.md §12): network states and the deterministic node schedule
    xfer_states: Array  # [G,M,V,V] ms: xfer of each network state (state 0 first; G = 1 without link failures)
    fwd_states: Array  # [G,N,V,V] ms
    net_state: Array  # [T] int: the network state of each slot
    node_sched: Array  # [T,V] bool: node up in the slot (deterministic failures)
    random_nodes: Array  # [V] bool: nodes the failure model may take down at random


class ControllerContext(eqx.Module):
    """What a controller may read besides its `Observation`: the sizes of the arrays it builds and
    the parameters of one realisation's scenario instance (built by the engine at every boundary
    with `ControllerContext.of`; a controller's `init` gets the same)."""

    V: int = eqx.field(static=True)  # nodes
    K: int = eqx.field(static=True)  # resources (cpu, ram, gpu, vram)
    Ml: int = eqx.field(static=True)  # light services
    X: int = eqx.field(static=True)  # light instance slots per (node, light service)
    Q: int = eqx.field(static=True)  # static bound of the parallelism y (= sim.y_max)
    B: int = eqx.field(static=True)  # task buffer rows (the [B] arrays of `Observation`)
    Lw: int = eqx.field(static=True)  # waiting light stages shown (the [Lw] arrays of `Observation`)
    capacity: Array  # [V,K] float, resource units: what each node has (Eq. 8)
    node_is_server: Array  # [V] bool: True for an edge server (ES), False for an edge device (ED)
    light_resource: Array  # [Ml,K] float, resource units: r_m of one instance of each light service
    light_work: Array  # [Ml] float, MB: a_m, the work of one job
    light_shape: Array  # [Ml] float: Gamma shape k of the per-slot rate f_m
    light_scale: Array  # [Ml] float, MB/ms: Gamma scale beta (E f_m = k beta)
    light_cost_deploy: Array  # [Ml] float, price units per started instance (c_dp)
    light_cost_run: Array  # [Ml] float, price units per instance and slot (c_mt + c_pl)
    deadline: Array  # [N] float, ms: D_n of each task type

    @classmethod
    def of(cls, sizes: "SimSizes", arrays: "ScenarioArrays") -> "ControllerContext":
        """The context of one realisation (``arrays`` without the instance axis)."""
        light = arrays.light_service
        return cls(
            V=sizes.V, K=sizes.K, Ml=sizes.Ml, X=sizes.X, Q=sizes.Q, B=sizes.B, Lw=sizes.Lw,
            capacity=arrays.capacity, node_is_server=arrays.node_is_server,
            light_resource=arrays.resource[light], light_work=arrays.work[light],
            light_shape=arrays.light_shape, light_scale=arrays.light_scale,
            light_cost_deploy=arrays.cost_deploy[light], light_cost_run=arrays.cost_run[light],
            deadline=arrays.deadline,
        )


class SimParams(eqx.Module):
    """The sim's traced numbers: sweeping them does not recompile (the components' own traced
    options are their array fields)."""

    slot_ms: Array  # [] ms
    y_max: Array  # [] int, <= SimSizes.Q


class Observation(eqx.Module):
    """What a controller sees at one boundary (per realisation)."""

    t: Array  # [] int slot index
    now: Array  # [] ms
    # waiting light stages, sorted by (ready slot, task id, stage index); padding has valid=False
    valid: Array  # [Lw] bool
    light: Array  # [Lw] int: light-service index ml
    task_type: Array  # [Lw] int
    task_id: Array  # [Lw] int
    buffer_slot: Array  # [Lw] int: index of the task in the task buffer (for per-task controller state)
    arrival: Array  # [Lw] ms
    deadline: Array  # [Lw] ms: D_n
    ready_slot: Array  # [Lw] int
    waiting_total: Array  # [Ml] int: waiting light stages per service
    data_ready: Array  # [Lw,V] ms: when the stage's input is on each node
    # light instances at the boundary
    occupancy: Array  # [V,Ml,X] int: admitted jobs not yet done
    exists: Array  # [V,Ml,X] bool: instances that existed in the previous slot
    prev_count: Array  # [V,Ml] int: instances in the previous slot
    core_usage: Array  # [V,K]
    # tasks in flight (for controllers that keep per-task state, e.g. virtual queues)
    task_alive: Array  # [B] bool
    task_arrival: Array  # [B] ms
    task_type_buf: Array  # [B] int
    # when each light instance would have worked through its FIFO at its mean rate E f (ms; `now`
    # for an empty one): walking the jobs in order, cursor = max(cursor, data ready) + remaining / E f
    drain: Array | None = None  # [V,Ml,X]
    # the latest data-ready time of the jobs in each light instance's FIFO (ms; `now` for an empty
    # one; a job dispatched before its input arrived counts from its dispatch boundary)
    input_ready: Array | None = None  # [V,Ml,X]
    # nodes up in this slot (docs/SEMANTICS.md §12): no light instance may exist on a down node
    node_up: Array | None = None  # [V] bool (None: every node)


class Action(eqx.Module):
    """A controller's decision at one boundary."""

    alive: Array  # [V,Ml,X] bool: light instances that exist during this slot (busy ones are kept anyway)
    assign: Array  # [Lw] int: flat instance index (v*Ml + ml)*X + k for each waiting stage, -1 = wait
    parallelism: Array  # [V,Ml] int: y, jobs one instance admits at once (<= y_max)
    # [Lw] int: 0, 1, ... among this boundary's assignments to the same instance, in list order;
    # None: the engine computes them (`ranks_in_list_order`)
    rank: Array | None = None
    # the delay bound (ms) the controller counted on for each assigned stage (nan or None = none):
    # the engine measures how often it is exceeded (docs/SEMANTICS.md §11)
    bound: Array | None = None  # [Lw] ms
    # per-slot diagnostics of the controller: name -> scalar (or fixed-shape) array. Each name must be
    # a variable registered with `edgefm.io.register_variable` with dims (instance, realisation, slot, ...);
    # the engine stacks them over slots and the dataset carries them.
    info: dict = eqx.field(default_factory=dict)


def ranks_in_list_order(assign):
    """[L] int: for each assignment, how many earlier entries of the list go to the same instance.

    A helper for controllers without a closed form for `Action.rank` (one stable sort)."""
    L = assign.shape[0]
    key = jnp.where(assign >= 0, assign, jnp.iinfo(assign.dtype).max)
    order = jnp.argsort(key, stable=True)
    sorted_key = key[order]
    seg_start = jnp.searchsorted(sorted_key, sorted_key, side="left")
    return jnp.zeros(L, assign.dtype).at[order].set(jnp.arange(L, dtype=assign.dtype) - seg_start)


def rank_in_group(group, valid, groups: int):
    """[L] int: for each list entry, how many earlier valid entries have the same ``group`` (in
    ``[0, groups)``); entries that are not ``valid`` count for nothing (their own rank is computed
    all the same). As ``cumsum(one_hot(group) * valid) - that`` read at each entry's group, but the
    per-group counts are packed into bit fields of one int64 word per few groups, so that a cumsum
    over ``ceil(groups / fields)`` words replaces one over ``groups`` one-hot columns (9 light
    services: 3 words; the engine with `lbrr` about 6 % faster per slot)."""
    L = group.shape[0]
    width = max(int(L).bit_length(), 1)  # a field holds any count up to L
    per = max(63 // width, 1)  # fields per (signed) int64 word
    words = -(-groups // per)
    g = jnp.clip(group, 0, groups - 1).astype(jnp.int64)
    word, shift = g // per, width * (g % per)
    one = jnp.where(valid, jnp.left_shift(jnp.ones_like(g), shift), 0)
    x = jnp.where(jnp.arange(words)[:, None] == word[None, :], one[None, :], 0)  # [words, L]
    before = jnp.cumsum(x, axis=1) - x  # exclusive
    mine = jnp.take_along_axis(before, word[None, :], axis=0)[0]
    return jnp.right_shift(mine, shift) & ((1 << width) - 1)


def resource_usage(counts, resource_light, core_usage):
    """[V,K] usage of core instances plus `counts[V,Ml]` light instances of needs `resource_light[Ml,K]`."""
    return core_usage + jnp.einsum("vl,lk->vk", counts.astype(core_usage.dtype), resource_light)
