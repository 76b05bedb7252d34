"""One slot of the engine, for one realisation (docs/SEMANTICS.md §2, in the same order).

All shapes are static (`SimSizes`); the batch axes (realisations, instances) are added by `vmap` in
`rollout.py`. Stage references are flat indices b*S + s into the task buffer.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from edgefm.sim.keys import STREAM_CONTROLLER, draw_slot, stream
from edgefm.sim.types import Action, Observation, ScenarioArrays, SimParams, SimSizes, resource_usage

INF = jnp.inf
CAPACITY_TOL = 1e-9  # Eq. 8 tolerance on float sums of resource needs


class SimState(eqx.Module):
    # task buffer [B]
    alive: jax.Array  # [B] bool: task in flight
    ttype: jax.Array  # [B] int
    user: jax.Array  # [B] int
    tid: jax.Array  # [B] int: task id (arrival order)
    arrival: jax.Array  # [B] ms
    uplink_end: jax.Array  # [B] ms
    # stages [B,S]
    dispatched: jax.Array  # [B,S] bool
    node: jax.Array  # [B,S] int: executing node, -1 before dispatch
    finish: jax.Array  # [B,S] ms: finish time, inf until known
    ready_slot: jax.Array  # [B,S] int: first boundary at which the stage was ready, -1 before
    # core instances
    ci_free: jax.Array  # [Ic] ms: finish of the last job queued on each core instance
    # light instances, flattened I = V*Ml*X, FIFO positions Q
    job_ref: jax.Array  # [I,Q] int: flat stage reference b*S+s, -1 empty (jobs contiguous from 0)
    job_ready: jax.Array  # [I,Q] ms: data-ready time of the job on the instance's node
    job_rem: jax.Array  # [I,Q] MB: remaining work
    prev_alive: jax.Array  # [V,Ml,X] bool: instances that existed in the previous slot
    # per-task outcomes by task id [J]
    next_id: jax.Array  # [] int
    out_type: jax.Array  # [J] int
    out_arrival: jax.Array  # [J] ms
    out_finish: jax.Array  # [J] ms: sink finish, nan until complete
    out_dropped: jax.Array  # [J] bool
    arrived_by_type: jax.Array  # [N] int (all arrivals, also beyond J)
    # counters
    overflow: jax.Array  # [] int: list/buffer-size events that make results inexact
    invalid: jax.Array  # [] int: controller decisions refused by the engine
    violations: jax.Array  # [] int: slots with Eq. 8 violated on some node
    buffer_peak: jax.Array  # [] int
    workload_state: Any
    controller_state: Any


def init_state(sizes: SimSizes, workload_state, controller_state) -> SimState:
    B, S, J, I, Q = sizes.B, sizes.S, sizes.J, sizes.V * sizes.Ml * sizes.X, sizes.Q
    i32 = jnp.int64  # x64 is on: the default integer, so updates keep their dtype
    return SimState(
        alive=jnp.zeros(B, bool),
        ttype=jnp.zeros(B, i32),
        user=jnp.zeros(B, i32),
        tid=jnp.zeros(B, i32),
        arrival=jnp.zeros(B),
        uplink_end=jnp.zeros(B),
        dispatched=jnp.zeros((B, S), bool),
        node=jnp.full((B, S), -1, i32),
        finish=jnp.full((B, S), INF),
        ready_slot=jnp.full((B, S), -1, i32),
        ci_free=jnp.zeros(sizes.Ic),
        job_ref=jnp.full((I, Q), -1, i32),
        job_ready=jnp.zeros((I, Q)),
        job_rem=jnp.zeros((I, Q)),
        prev_alive=jnp.zeros((sizes.V, sizes.Ml, sizes.X), bool),
        next_id=jnp.zeros((), i32),
        out_type=jnp.zeros(J, i32),
        out_arrival=jnp.zeros(J),
        out_finish=jnp.full(J, jnp.nan),
        out_dropped=jnp.zeros(J, bool),
        arrived_by_type=jnp.zeros(sizes.N, i32),
        overflow=jnp.zeros((), i32),
        invalid=jnp.zeros((), i32),
        violations=jnp.zeros((), i32),
        buffer_peak=jnp.zeros((), i32),
        workload_state=workload_state,
        controller_state=controller_state,
    )


def observe_completions(st: SimState, arrays: ScenarioArrays, sizes: SimSizes, now) -> SimState:
    """Tasks whose sink finished by `now` leave the buffer; their finish is recorded by task id."""
    sink = arrays.sink_stage[st.ttype]  # [B]
    sink_finish = jnp.take_along_axis(st.finish, sink[:, None], axis=1)[:, 0]
    complete = st.alive & (sink_finish <= now)
    idx = jnp.where(complete, st.tid, sizes.J)
    return eqx.tree_at(
        lambda s: (s.alive, s.out_finish),
        st,
        (st.alive & ~complete, st.out_finish.at[idx].set(sink_finish, mode="drop")),
    )


def admit_arrivals(st: SimState, counts, uplink, arrays: ScenarioArrays, sizes: SimSizes, now) -> SimState:
    """Number the slot's arrivals (user, then type), put them in free buffer slots, count drops."""
    U, N, A, B, J = sizes.U, sizes.N, sizes.A, sizes.B, sizes.J
    flat = counts.reshape(U * N)
    total = flat.sum()
    csum = jnp.cumsum(flat)
    a = jnp.arange(A)
    cell = jnp.searchsorted(csum, a, side="right")
    valid = a < total
    u = jnp.clip(cell // N, 0, U - 1)
    n = jnp.clip(cell % N, 0, N - 1)
    ids = st.next_id + a
    free_slots = jnp.nonzero(~st.alive, size=A, fill_value=B)[0]
    admitted = valid & (free_slots < B)
    dropped = valid & ~admitted
    up_end = now + arrays.input_size[n] / uplink[u]

    bidx = jnp.where(admitted, free_slots, B)
    jidx = jnp.where(valid, ids, J)
    overflow = jnp.maximum(total - A, 0) + jnp.sum(valid & (ids >= J))
    S = sizes.S
    return eqx.tree_at(
        lambda s: (
            s.alive, s.ttype, s.user, s.tid, s.arrival, s.uplink_end,
            s.dispatched, s.node, s.finish, s.ready_slot,
            s.next_id, s.out_type, s.out_arrival, s.out_dropped, s.arrived_by_type, s.overflow,
            s.buffer_peak,
        ),
        st,
        (
            st.alive.at[bidx].set(True, mode="drop"),
            st.ttype.at[bidx].set(n, mode="drop"),
            st.user.at[bidx].set(u, mode="drop"),
            st.tid.at[bidx].set(ids, mode="drop"),
            st.arrival.at[bidx].set(now, mode="drop"),
            st.uplink_end.at[bidx].set(up_end, mode="drop"),
            st.dispatched.at[bidx].set(jnp.zeros((A, S), bool), mode="drop"),
            st.node.at[bidx].set(jnp.full((A, S), -1, jnp.int64), mode="drop"),
            st.finish.at[bidx].set(jnp.full((A, S), INF), mode="drop"),
            st.ready_slot.at[bidx].set(jnp.full((A, S), -1, jnp.int64), mode="drop"),
            st.next_id + total,
            st.out_type.at[jidx].set(n, mode="drop"),
            st.out_arrival.at[jidx].set(now, mode="drop"),
            st.out_dropped.at[jidx].set(dropped, mode="drop"),
            st.arrived_by_type + counts.sum(0),
            st.overflow + overflow,
            jnp.maximum(st.buffer_peak, (st.alive.sum() + admitted.sum()).astype(jnp.int32)),
        ),
    )


def ready_stages(st: SimState, arrays: ScenarioArrays, t, now):
    """[B,S] bool: undispatched stages whose parents are all done at `now`; updates ready_slot."""
    svc = arrays.stage_service[st.ttype]  # [B,S]
    par = arrays.stage_parents[st.ttype]  # [B,S,P]
    parent_finish = jnp.take_along_axis(st.finish[:, None, :], jnp.clip(par, 0), axis=2)
    parents_done = jnp.all((par < 0) | (parent_finish <= now), axis=2)
    ready = st.alive[:, None] & (svc >= 0) & ~st.dispatched & parents_done
    ready_slot = jnp.where(ready & (st.ready_slot < 0), t, st.ready_slot)
    return ready, svc, ready_slot


def sorted_list(mask, st: SimState, ready_slot, size: int):
    """The first `size` flagged stages, sorted by (ready slot, task id, stage index).

    Returns (ref [L], valid [L], overflow []) with ref = b*S + s."""
    B, S = mask.shape
    flat = mask.reshape(-1)
    ref = jnp.nonzero(flat, size=size, fill_value=B * S)[0]
    valid = ref < B * S
    refc = jnp.clip(ref, 0, B * S - 1)
    b, s = refc // S, refc % S
    order = jnp.lexsort((s, st.tid[b], ready_slot.reshape(-1)[refc], ~valid))
    overflow = jnp.maximum(flat.sum() - size, 0)
    return ref[order], valid[order], overflow


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


def dispatch_core(st: SimState, arrays: ScenarioArrays, sizes: SimSizes, ref, valid, now):
    """Core dispatch of the sorted ready core stages, one after another (SEMANTICS §2.5)."""
    S = sizes.S
    dr = jax.vmap(lambda r: data_ready(st, arrays, r))(jnp.clip(ref, 0, sizes.B * S - 1))  # [Lc,V]
    svc = arrays.stage_service[st.ttype[jnp.clip(ref, 0, sizes.B * S - 1) // S], ref % S]
    count = valid.sum()
    earliest = sizes.core_dispatch == "earliest_start"

    def body(carry):
        i, ci_free, finish, node, dispatched = carry
        r = jnp.clip(ref[i], 0, sizes.B * S - 1)
        b, s = r // S, r % S
        cand = arrays.ci_service == svc[i]
        dr_i = dr[i][arrays.ci_node]  # [Ic]
        if earliest:
            start = jnp.maximum(jnp.maximum(now, dr_i), ci_free)
            j = jnp.argmin(jnp.where(cand, start, INF))
            ok = valid[i] & cand.any()
        else:
            eligible = cand & (ci_free <= now)
            j = jnp.argmin(jnp.where(eligible, dr_i, INF))
            start = jnp.maximum(now, dr_i)
            ok = valid[i] & eligible.any()
        fin = start[j] + arrays.core_duration[svc[i]]
        ci_free = ci_free.at[j].set(jnp.where(ok, fin, ci_free[j]))
        finish = finish.at[b, s].set(jnp.where(ok, fin, finish[b, s]))
        node = node.at[b, s].set(jnp.where(ok, arrays.ci_node[j], node[b, s]))
        dispatched = dispatched.at[b, s].set(dispatched[b, s] | ok)
        return i + 1, ci_free, finish, node, dispatched

    _, ci_free, finish, node, dispatched = lax.while_loop(
        lambda c: c[0] < count, body, (0, st.ci_free, st.finish, st.node, st.dispatched)
    )
    return eqx.tree_at(lambda s: (s.ci_free, s.finish, s.node, s.dispatched), st, (ci_free, finish, node, dispatched))


def light_observation(st: SimState, arrays: ScenarioArrays, sizes: SimSizes, ref, valid, ready_slot, t, now):
    S = sizes.S
    r = jnp.clip(ref, 0, sizes.B * S - 1)
    b, s = r // S, r % S
    n = st.ttype[b]
    svc = arrays.stage_service[n, s]
    occupancy = (st.job_ref >= 0).sum(-1).reshape(sizes.V, sizes.Ml, sizes.X)
    return Observation(
        t=t,
        now=now,
        valid=valid,
        light=jnp.where(valid, arrays.light_index[svc], 0),
        task_type=n,
        task_id=st.tid[b],
        buffer_slot=b,
        arrival=st.arrival[b],
        deadline=arrays.deadline[n],
        ready_slot=ready_slot.reshape(-1)[r],
        data_ready=jax.vmap(lambda x: data_ready(st, arrays, x))(r),
        occupancy=occupancy.astype(jnp.int32),
        exists=st.prev_alive,
        prev_count=st.prev_alive.sum(-1).astype(jnp.int32),
        core_usage=arrays.core_usage,
        task_alive=st.alive,
        task_arrival=st.arrival,
        task_type_buf=st.ttype,
    )


def apply_light_action(st: SimState, obs: Observation, action: Action, ref, arrays: ScenarioArrays, sizes: SimSizes):
    """Validate the controller's decision, append admitted stages to their instances' FIFOs."""
    V, Ml, X, Q, S, L = sizes.V, sizes.Ml, sizes.X, sizes.Q, sizes.S, sizes.Lw
    I = V * Ml * X
    occ = (st.job_ref >= 0).sum(-1)  # [I]
    alive = (action.alive.reshape(I) | (occ > 0)) & True
    y = jnp.clip(jnp.repeat(action.parallelism.reshape(V * Ml), X), 0, Q)  # [I]
    inst = action.assign
    asked = obs.valid & (inst >= 0)
    in_range = inst < I
    inst_c = jnp.clip(inst, 0, I - 1)
    same_service = (inst_c // X) % Ml == obs.light
    idx = jnp.arange(L)
    earlier_same = (inst_c[None, :] == inst_c[:, None]) & asked[None, :] & (idx[None, :] < idx[:, None])
    pos = occ[inst_c] + earlier_same.sum(1)
    ok = asked & in_range & same_service & alive[inst_c] & (pos < y[inst_c])
    v = inst_c // (Ml * X)
    r = jnp.clip(ref, 0, sizes.B * S - 1)
    b, s = r // S, r % S
    svc = arrays.light_service[obs.light]
    slot = jnp.where(ok, inst_c * Q + pos, I * Q)
    job_ref = st.job_ref.reshape(-1).at[slot].set(r, mode="drop").reshape(I, Q)
    job_ready = st.job_ready.reshape(-1).at[slot].set(obs.data_ready[idx, v], mode="drop").reshape(I, Q)
    job_rem = st.job_rem.reshape(-1).at[slot].set(arrays.work[svc], mode="drop").reshape(I, Q)
    bs = jnp.where(ok, r, sizes.B * S)
    dispatched = st.dispatched.reshape(-1).at[bs].set(True, mode="drop").reshape(sizes.B, S)
    node = st.node.reshape(-1).at[bs].set(v, mode="drop").reshape(sizes.B, S)
    st = eqx.tree_at(
        lambda q: (q.job_ref, q.job_ready, q.job_rem, q.dispatched, q.node, q.invalid),
        st,
        (job_ref, job_ready, job_rem, dispatched, node, st.invalid + jnp.sum(asked & ~ok)),
    )
    return st, alive.reshape(V, Ml, X), y.reshape(V, Ml, X)


def execute_light(st: SimState, rates, sizes: SimSizes, now, slot_ms):
    """Every light instance works through its FIFO at this slot's rate (SEMANTICS §2.7)."""
    I, Q, S = sizes.V * sizes.Ml * sizes.X, sizes.Q, sizes.S
    f = rates.reshape(I)
    end = now + slot_ms
    cursor = jnp.full(I, now)
    blocked = jnp.zeros(I, bool)
    n_done = jnp.zeros(I, jnp.int32)
    rem_cols, fin_cols, done_cols = [], [], []
    for q in range(Q):
        active = (st.job_ref[:, q] >= 0) & ~blocked
        start = jnp.maximum(cursor, st.job_ready[:, q])
        can = active & (start < end)
        rem = st.job_rem[:, q]
        fin = start + rem / f
        done = can & (fin <= end)
        rem_cols.append(jnp.where(done, 0.0, jnp.where(can, rem - f * (end - start), rem)))
        fin_cols.append(fin)
        done_cols.append(done)
        cursor = jnp.where(done, fin, cursor)
        blocked = blocked | (active & ~done)
        n_done = n_done + done
    rem = jnp.stack(rem_cols, 1)
    fin = jnp.stack(fin_cols, 1)
    done = jnp.stack(done_cols, 1)
    target = jnp.where(done, st.job_ref, sizes.B * S).reshape(-1)
    finish = st.finish.reshape(-1).at[target].set(fin.reshape(-1), mode="drop").reshape(sizes.B, S)
    # done jobs form a prefix of each FIFO: shift the rest to the front
    src = jnp.arange(Q)[None, :] + n_done[:, None]
    keep = src < Q
    srcc = jnp.clip(src, 0, Q - 1)

    def shift(a, fill):
        return jnp.where(keep, jnp.take_along_axis(a, srcc, axis=1), fill)

    return eqx.tree_at(
        lambda q: (q.finish, q.job_ref, q.job_ready, q.job_rem),
        st,
        (finish, shift(st.job_ref, -1), shift(st.job_ready, 0.0), shift(rem, 0.0)),
    )


def make_step(sizes: SimSizes, channel, workload, controller, trace_counter=None):
    """Build `step(carry, t) -> (carry, per-slot outputs)` for `lax.scan`, one realisation."""

    def step(carry, t):
        if trace_counter is not None:
            trace_counter["step"] += 1  # runs at trace time only: counts compilations
        st, key, arrays, params = carry
        now = t * params.slot_ms
        st = observe_completions(st, arrays, sizes, now)
        counts, uplink, rates, wstate = draw_slot(
            key, t, st.workload_state, arrays, params, sizes, channel, workload
        )
        st = admit_arrivals(st, counts, uplink, arrays, sizes, now)
        st = eqx.tree_at(lambda q: q.workload_state, st, wstate, is_leaf=lambda x: x is None)

        ready, svc, ready_slot = ready_stages(st, arrays, t, now)
        st = eqx.tree_at(lambda q: q.ready_slot, st, ready_slot)
        is_core = arrays.service_is_core[jnp.clip(svc, 0)]
        core_ref, core_valid, core_over = sorted_list(ready & is_core, st, ready_slot, sizes.Lc)
        st = dispatch_core(st, arrays, sizes, core_ref, core_valid, now)

        light_ref, light_valid, light_over = sorted_list(ready & ~is_core, st, ready_slot, sizes.Lw)
        obs = light_observation(st, arrays, sizes, light_ref, light_valid, ready_slot, t, now)
        action, cstate = controller.act(
            st.controller_state, obs, (sizes, arrays), params, stream(key, STREAM_CONTROLLER, t)
        )
        st = eqx.tree_at(lambda q: q.controller_state, st, cstate, is_leaf=lambda x: x is None)
        st, alive, y = apply_light_action(st, obs, action, light_ref, arrays, sizes)

        counts_l = alive.sum(-1).astype(jnp.int32)  # [V,Ml]
        prev = st.prev_alive.sum(-1).astype(jnp.int32)
        cdep = arrays.cost_deploy[arrays.light_service][None, :]
        crun = arrays.cost_run[arrays.light_service][None, :]
        cost = jnp.sum(cdep * jnp.maximum(counts_l - prev, 0) + crun * counts_l)
        usage = resource_usage(counts_l, arrays.resource[arrays.light_service], arrays.core_usage)
        violated = jnp.any(usage > arrays.capacity + CAPACITY_TOL)

        st = execute_light(st, rates, sizes, now, params.slot_ms)
        st = eqx.tree_at(
            lambda q: (q.prev_alive, q.overflow, q.violations),
            st,
            (alive, st.overflow + core_over + light_over, st.violations + violated),
        )
        y_out = jnp.max(jnp.where(alive, y, 0), axis=-1)
        outputs = {
            "x_light": counts_l,
            "parallelism": y_out.astype(jnp.int32),
            "cost_light_slot": cost,
            "tasks_in_flight": st.alive.sum().astype(jnp.int32),
            "uplink_rate": uplink,
            "arrivals": counts,
        }
        return (st, key, arrays, params), outputs

    return step
