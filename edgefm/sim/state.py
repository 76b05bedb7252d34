"""The state of one realisation of the engine (`SimState`, its initial value) and the small updates
every phase of a slot makes to it: a stage's finish (`record_finish`, which also tells its child),
a stage's data-ready time on a node (`data_ready`), dropping dispatched entries from a waiting
queue (`compact_queue`).

Every field carries its shape (per realisation) and unit. Stage references are flat indices b*S + s
into the task buffer.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from edgefm.sim.types import COUNT, IDX, ScenarioArrays, SimSizes

INF = jnp.inf


INT = jnp.int64  # x64 is on: the default integer, for counters and scalars


# the parts of a finished task's critical path (SEMANTICS §11), in this order
BREAKDOWN_COMPONENTS = (
    "uplink", "network", "core_dispatch_wait", "core_queue", "core_service",
    "light_dispatch_wait", "light_queue", "light_service",
)


class SimState(eqx.Module):
    # task buffer [B]
    alive: jax.Array  # [B] bool: task in flight
    ttype: jax.Array  # [B] int32
    user: jax.Array  # [B] int32
    tid: jax.Array  # [B] int32: task id (arrival order)
    arrival: jax.Array  # [B] ms
    uplink_end: jax.Array  # [B] ms
    # stages [B,S]
    queued: jax.Array  # [B,S] bool: entered a waiting queue (or was dispatched)
    node: jax.Array  # [B,S] int32: executing node, -1 before dispatch
    finish: jax.Array  # [B,S] ms: finish time, inf until known
    parents_known: jax.Array  # [B,S] int8: parents whose finish time is known
    inputs_at: jax.Array  # [B,S] ms: latest known parent finish (arrival time for roots)
    # diagnostics (SEMANTICS §11), set at dispatch (start: light stages when first worked on)
    disp: jax.Array  # [B,S] ms: dispatch boundary t_s * slot
    rdy: jax.Array  # [B,S] ms: data-ready time on the stage's node
    start: jax.Array  # [B,S] ms: start of execution, inf until known
    bound: jax.Array  # [B,S] ms: delay bound stated by the controller, nan if none
    # waiting queues, in (ready slot, task id, stage) order; refs -1 past the end
    core_q: jax.Array  # [Lc] int32: stage refs of ready core stages waiting for an instance
    core_q_slot: jax.Array  # [Lc] int32: their ready slot
    light_q: jax.Array  # [Lw] int32: stage refs of ready light stages waiting for an instance
    light_q_slot: jax.Array  # [Lw] int32
    # core instances
    ci_free: jax.Array  # [Ic] ms: finish of the last job queued on each core instance
    # light instances, flattened I = V*Ml*X, FIFO positions Q
    job_ref: jax.Array  # [I,Q] int32: flat stage reference b*S+s, -1 empty (jobs contiguous from 0)
    job_ready: jax.Array  # [I,Q] ms: t0 = max(dispatch time, data-ready time on the instance's node)
    job_rem: jax.Array  # [I,Q] MB: remaining work
    prev_alive: jax.Array  # [V,Ml,X] bool: instances that existed in the previous slot
    # per-task outcomes by task id [J]
    next_id: jax.Array  # [] int
    out_type: jax.Array  # [J] int32
    out_arrival: jax.Array  # [J] ms
    out_finish: jax.Array  # [J] ms: sink finish, nan until complete
    out_dropped: jax.Array  # [J] bool
    arrived_by_type: jax.Array  # [N] int (all arrivals, also beyond J)
    # counters
    overflow: jax.Array  # [] int: size-limit events that may make results inexact
    invalid: jax.Array  # [] int: controller decisions refused by the engine
    violations: jax.Array  # [] int: slots with Eq. 8 violated on some node
    buffer_peak: jax.Array  # [] int
    bounded: jax.Array  # [2,Ml] int: light stages with a bound, finished (SEMANTICS §11); row 0 roots, row 1 the others
    bound_violations: jax.Array  # [2,Ml] int: ... whose delay exceeded the bound
    breakdown: jax.Array  # [2,C] ms: sums of the critical-path components of finished tasks (ontime, late)
    workload_state: Any
    controller_state: Any
    failure_state: Any = ()
    upload: Any = ()  # `UploadSchedule` under the channel's `per_slot` fading, else ()


class UploadSchedule(eqx.Module):
    """The uplink rates of a realisation's whole horizon, for uploads that proceed at each slot's rate
    (the channel's `per_slot` fading, docs/SEMANTICS.md §2.2)."""

    rate: jax.Array  # [T,U] MB/ms: the uplink rate of each slot (inf: no uplink time)
    cum: jax.Array  # [T+1,U] MB/ms: the sum of the finite rates of the slots before k (x Δt: MB uploaded)
    next_inf: jax.Array  # [T+1,U] int: the first slot >= k with an infinite rate (T: none)


def upload_schedule(rates) -> UploadSchedule:
    """`UploadSchedule` of the rates ``[T,U]`` MB/ms of every slot."""
    T, U = rates.shape
    finite = jnp.isfinite(rates)
    cum = jnp.concatenate([jnp.zeros((1, U)), jnp.cumsum(jnp.where(finite, rates, 0.0), axis=0)])
    slots = jnp.where(finite, T, jnp.arange(T)[:, None])
    next_inf = lax.cummin(jnp.concatenate([slots, jnp.full((1, U), T)]), axis=0, reverse=True)
    return UploadSchedule(rate=rates, cum=cum, next_inf=next_inf)


def init_state(sizes: SimSizes, workload_state, controller_state, failure_state=(), upload=()) -> SimState:
    B, S, J, I, Q = sizes.B, sizes.S, sizes.J, sizes.V * sizes.Ml * sizes.X, sizes.Q
    return SimState(
        alive=jnp.zeros(B, bool),
        ttype=jnp.zeros(B, IDX),
        user=jnp.zeros(B, IDX),
        tid=jnp.zeros(B, IDX),
        arrival=jnp.zeros(B),
        uplink_end=jnp.zeros(B),
        queued=jnp.ones((B, S), bool),
        node=jnp.full((B, S), -1, IDX),
        finish=jnp.full((B, S), INF),
        parents_known=jnp.zeros((B, S), COUNT),
        inputs_at=jnp.full((B, S), INF),
        disp=jnp.full((B, S), INF),
        rdy=jnp.full((B, S), INF),
        start=jnp.full((B, S), INF),
        bound=jnp.full((B, S), jnp.nan),
        core_q=jnp.full(sizes.Lc, -1, IDX),
        core_q_slot=jnp.zeros(sizes.Lc, IDX),
        light_q=jnp.full(sizes.Lw, -1, IDX),
        light_q_slot=jnp.zeros(sizes.Lw, IDX),
        ci_free=jnp.zeros(sizes.Ic),
        job_ref=jnp.full((I, Q), -1, IDX),
        job_ready=jnp.zeros((I, Q)),
        job_rem=jnp.zeros((I, Q)),
        prev_alive=jnp.zeros((sizes.V, sizes.Ml, sizes.X), bool),
        next_id=jnp.zeros((), INT),
        out_type=jnp.zeros(J, IDX),
        out_arrival=jnp.zeros(J),
        out_finish=jnp.full(J, jnp.nan),
        out_dropped=jnp.zeros(J, bool),
        arrived_by_type=jnp.zeros(sizes.N, INT),
        overflow=jnp.zeros((), INT),
        invalid=jnp.zeros((), INT),
        violations=jnp.zeros((), INT),
        buffer_peak=jnp.zeros((), INT),
        bounded=jnp.zeros((2, sizes.Ml), INT),
        bound_violations=jnp.zeros((2, sizes.Ml), INT),
        breakdown=jnp.zeros((2, len(BREAKDOWN_COMPONENTS))),
        workload_state=workload_state,
        controller_state=controller_state,
        failure_state=failure_state,
        upload=upload,
    )


def flat_set(a, idx, values):
    """a[idx] = values (cast to a's dtype) on the flattened array, skipping out-of-range idx (used as
    'no write')."""
    return a.reshape(-1).at[idx].set(jnp.asarray(values).astype(a.dtype), mode="drop").reshape(a.shape)


def record_finish(st: SimState, arrays: ScenarioArrays, sizes: SimSizes, ref, fin, ok) -> SimState:
    """Stages `ref` (where `ok`) get their finish time; their child learns one more parent finish."""
    S, BS = sizes.S, sizes.B * sizes.S
    r = jnp.clip(ref, 0, BS - 1)
    b, s = r // S, r % S
    child = arrays.stage_child[st.ttype[b], s]
    cref = jnp.where(ok & (child >= 0), b * S + jnp.clip(child, 0), BS)
    return eqx.tree_at(
        lambda q: (q.finish, q.parents_known, q.inputs_at),
        st,
        (
            flat_set(st.finish, jnp.where(ok, r, BS), fin),
            st.parents_known.reshape(-1).at[cref].add(1, mode="drop").reshape(st.parents_known.shape),
            st.inputs_at.reshape(-1).at[cref].max(fin, mode="drop").reshape(st.inputs_at.shape),
        ),
    )


def compact_queue(queue, qslot, remove):
    """Drop the entries flagged in `remove`, keeping the order of the rest."""
    keep = (queue >= 0) & ~remove
    pos = jnp.where(keep, jnp.cumsum(keep) - 1, queue.shape[0])
    return (
        jnp.full_like(queue, -1).at[pos].set(queue, mode="drop"),
        jnp.zeros_like(qslot).at[pos].set(qslot, mode="drop"),
    )


def data_ready(st: SimState, arrays: ScenarioArrays, ref):
    """[V] ms: when the input of stage `ref` = b*S+s is available on each node (SEMANTICS §2.3)."""
    S = st.finish.shape[1]
    b, s = ref // S, ref % S
    n = st.ttype[b]
    par = arrays.stage_parents[n, s]  # [P]
    parc = jnp.clip(par, 0)
    root = arrays.fwd[n, arrays.user_gateway[st.user[b]]] + st.uplink_end[b]  # [V]
    pnode = jnp.clip(st.node[b, parc], 0)
    psvc = jnp.clip(arrays.stage_service[n, parc], 0)
    child = st.finish[b, parc][:, None] + arrays.xfer[psvc, pnode]  # [P,V]
    child = jnp.max(jnp.where((par >= 0)[:, None], child, -INF), axis=0)
    return jnp.where(par[0] < 0, root, child)
