"""Steps 5-7 of a slot (docs/SEMANTICS.md §2.6-2.7, §11): what the controller observes, how its
action is checked and applied (refused decisions are counted, not executed), and how light
instances work through their FIFOs at this slot's Gamma rates (`sim.light_order`)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from edgefm.sim.layout import ListLayout
from edgefm.sim.state import (
    INF,
    INT,
    SimState,
    compact_queue,
    data_ready,
    flat_set,
    record_finish,
)
from edgefm.sim.types import (
    Action,
    Observation,
    ScenarioArrays,
    SimSizes,
    ranks_in_list_order,
)

BOUND_TOL = 1e-9  # ms: a stage violates its stated bound when its delay exceeds it by more


def light_observation(st: SimState, arrays: ScenarioArrays, sizes: SimSizes, t, now, up=None) -> Observation:
    S, BS = sizes.S, sizes.B * sizes.S
    ref = st.light_q
    valid = ref >= 0
    r = jnp.clip(ref, 0, BS - 1)
    b, s = r // S, r % S
    n = st.ttype[b]
    svc = arrays.stage_service[n, s]
    occupancy = (st.job_ref >= 0).sum(-1).reshape(sizes.V, sizes.Ml, sizes.X)
    light = jnp.where(valid, arrays.light_index[jnp.clip(svc, 0)], 0)
    waiting_total = jnp.zeros(sizes.Ml, INT).at[light].add(valid.astype(INT))
    mean_rate = jnp.broadcast_to(  # [I]: E f = k·β of each instance, in instance order (v, ml, k)
        (arrays.light_shape * arrays.light_scale)[None, :, None], (sizes.V, sizes.Ml, sizes.X)).reshape(-1)

    def walk(cursor, q):
        busy = st.job_ref[:, q] >= 0
        return jnp.where(busy, jnp.maximum(cursor, st.job_ready[:, q]) + st.job_rem[:, q] / mean_rate, cursor), None

    drain, _ = lax.scan(walk, jnp.full(sizes.V * sizes.Ml * sizes.X, now), jnp.arange(sizes.Q))
    input_ready = jnp.maximum(now, jnp.max(jnp.where(st.job_ref >= 0, st.job_ready, -INF), axis=1))
    return Observation(
        t=t,
        now=now,
        valid=valid,
        light=light,
        task_type=n,
        task_id=st.tid[b],
        buffer_slot=b,
        arrival=st.arrival[b],
        deadline=arrays.deadline[n],
        ready_slot=st.light_q_slot,
        waiting_total=waiting_total,
        data_ready=jax.vmap(lambda x: data_ready(st, arrays, x))(r),
        occupancy=occupancy.astype(INT),
        exists=st.prev_alive,
        prev_count=st.prev_alive.sum(-1).astype(INT),
        core_usage=arrays.core_usage,
        task_alive=st.alive,
        task_arrival=st.arrival,
        task_type_buf=st.ttype,
        drain=drain.reshape(sizes.V, sizes.Ml, sizes.X),
        input_ready=input_ready.reshape(sizes.V, sizes.Ml, sizes.X),
        node_up=up,
    )


def apply_light_action(st: SimState, obs: Observation, action: Action, arrays: ScenarioArrays, sizes: SimSizes,
                       *, layout: ListLayout):
    """Validate the controller's decision, append admitted stages to their instances' FIFOs.

    The assigned entries are checked and written `layout.apply` at a time or all at once
    (`layout.in_chunks`); the same results."""
    V, Ml, X, Q, L = sizes.V, sizes.Ml, sizes.X, sizes.Q, sizes.Lw
    I, BS = V * Ml * X, sizes.B * sizes.S
    occ = (st.job_ref >= 0).sum(-1)  # [I]
    alive = action.alive.reshape(I) | (occ > 0)
    if obs.node_up is not None:  # no light instance on a down node (SEMANTICS §12)
        alive = alive & jnp.repeat(obs.node_up, Ml * X)
    y = jnp.clip(jnp.repeat(action.parallelism.reshape(V * Ml), X), 0, Q)  # [I]
    asked_all = obs.valid & (action.assign >= 0)
    ref_all = jnp.clip(st.light_q, 0, BS - 1)
    bound_all = jnp.full(L, jnp.nan) if action.bound is None else action.bound.astype(st.bound.dtype)
    rank_all = ranks_in_list_order(jnp.where(asked_all, action.assign, -1)) if action.rank is None else action.rank

    def entries(sel):
        """The assigned entries among the list entries `sel` ([K] indices, L = none): (asked, the
        instance (I = none), rank, node, data-ready time on it)."""
        selc = jnp.clip(sel, 0, L - 1)
        inst = action.assign[selc]
        asked = asked_all[selc] & (sel < L) & (inst < I)
        inst_c = jnp.clip(inst, 0, I - 1)
        v = inst_c // (Ml * X)
        if sel.shape[0] == L:  # every entry: the observation's table
            ready = obs.data_ready[selc, v]
        else:  # a chunk: computed for its entries (a controller that does not read the table, such
            # as lbrr, then has it computed for no entry)
            ready = jax.vmap(lambda r, u: data_ready(st, arrays, r)[u])(ref_all[selc], v)
        return asked_all[selc] & (sel < L), jnp.where(asked, inst_c, I), rank_all[selc], v, ready

    def instances_ok(sel):
        """[I] bool: the instances whose new jobs are consistent, from the entries `sel` (all the
        assigned ones must be among them). The controller states each assignment's rank among the
        new jobs of its instance; an instance whose ranks are not exactly 0..n-1 within its room
        gets none of its new jobs."""
        _, target, rank, _, ready = entries(sel)
        n_new = jnp.zeros(I + 1, INT).at[target].add(1)[:I]
        top = jnp.full(I + 1, -1, INT).at[target].max(rank)[:I]
        cell = jnp.where(target < I, target * Q + jnp.clip(rank, 0, Q - 1), I * Q)
        clash = jnp.zeros(I * Q + 1, INT).at[cell].add(1)[:I * Q].reshape(I, Q).max(-1) > 1
        consistent = (top + 1 == n_new) & ~clash & (occ + n_new <= y)
        if obs.node_up is not None:  # nothing where the input cannot arrive (SEMANTICS §12): the
            # instance gets none of its new jobs, so its FIFO stays contiguous
            unreachable = jnp.zeros(I + 1, bool).at[jnp.where(ready < INF, I, target)].set(True)[:I]
            consistent = consistent & ~unreachable
        return consistent

    def write(carry, sel, consistent):
        """Check and write the entries `sel`; carry = (job_ref, job_ready, job_rem, node, disp, rdy,
        bound, ok_all [L], invalid)."""
        job_ref, job_ready, job_rem, node, disp, rdy, bound, ok_all, invalid = carry
        asked, target, rank, v, ready = entries(sel)
        selc = jnp.clip(sel, 0, L - 1)
        inst_c = jnp.clip(target, 0, I - 1)
        light = obs.light[selc]
        same_service = (inst_c // X) % Ml == light
        pos = occ[inst_c] + rank
        ok = asked & (target < I) & same_service & alive[inst_c] & consistent[inst_c] & (rank >= 0)
        ref = ref_all[selc]
        slot = jnp.where(ok, inst_c * Q + pos, I * Q)
        at = jnp.where(ok, ref, BS)
        return (
            flat_set(job_ref, slot, ref),
            flat_set(job_ready, slot, jnp.maximum(obs.now, ready)),  # t0 (§2.7)
            flat_set(job_rem, slot, arrays.work[arrays.light_service[light]]),
            flat_set(node, at, v),
            flat_set(disp, at, obs.now),
            flat_set(rdy, at, ready),
            flat_set(bound, at, bound_all[selc]),
            ok_all.at[sel].set(ok, mode="drop"),
            invalid + jnp.sum(asked & ~ok),
        )

    carry = (st.job_ref, st.job_ready, st.job_rem, st.node, st.disp, st.rdy, st.bound, jnp.zeros(L, bool), st.invalid)
    # the first chunk's entries (also the instances' checks when it holds every assignment)
    first = layout.first(asked_all, layout.apply)
    consistent = layout.short_when_few(asked_all.sum(), layout.apply, L,
                                       lambda n: instances_ok(first if n < L else jnp.arange(L)))
    carry = layout.in_chunks(asked_all, layout.apply, lambda c, sel: write(c, sel, consistent), carry, first)
    job_ref, job_ready, job_rem, node, disp, rdy, bound, ok_all, invalid = carry
    if sizes.light_order == "input_arrival":
        job_ref, job_ready, job_rem = order_by_input(job_ref, job_ready, job_rem)
    light_q, light_q_slot = compact_queue(st.light_q, st.light_q_slot, ok_all)
    st = eqx.tree_at(
        lambda q: (q.job_ref, q.job_ready, q.job_rem, q.node, q.light_q, q.light_q_slot, q.invalid,
                   q.disp, q.rdy, q.bound),
        st,
        (job_ref, job_ready, job_rem, node, light_q, light_q_slot, invalid, disp, rdy, bound),
    )
    return st, alive.reshape(V, Ml, X), y.reshape(V, Ml, X)


def order_by_input(job_ref, job_ready, job_rem):
    """Each FIFO ([I,Q]) in the order of `input_arrival` (SEMANTICS §2.7): by t0 (`job_ready`),
    ties in the order the jobs have (a stable sort: the jobs just appended keep their dispatch order
    behind the earlier jobs of the same t0); empty positions last."""
    key = jnp.where(job_ref >= 0, job_ready, INF)
    order = jnp.argsort(key, axis=1, stable=True)

    def take(a):
        return jnp.take_along_axis(a, order, axis=1)

    return take(job_ref), take(job_ready), take(job_rem)


def execute_light(st: SimState, rates, arrays: ScenarioArrays, sizes: SimSizes, now, slot_ms,
                  *, layout: ListLayout) -> SimState:
    """Every light instance works through its FIFO at this slot's rate (SEMANTICS §2.7). The stages
    of finished and newly started jobs are written `layout.execute` at a time or over all I·Q FIFO
    positions at once (`layout.in_chunks`)."""
    I, Q = sizes.V * sizes.Ml * sizes.X, sizes.Q
    f = rates.reshape(I)
    end = now + slot_ms

    # position q of every FIFO at once, positions in order; a job that is not done blocks the rest of
    # its FIFO, so the walk stops at the first position where no instance is still working (the
    # outputs keep their initial values there: nothing done, nothing started, work unchanged)
    def position(carry):
        q, cursor, blocked, n_done, times = carry
        active = (st.job_ref[:, q] >= 0) & ~blocked
        start = jnp.maximum(cursor, st.job_ready[:, q])
        can = active & (start < end)
        fin = start + st.job_rem[:, q] / f
        done = can & (fin <= end)
        cursor = jnp.where(done, fin, cursor)
        blocked = blocked | (active & ~done)
        # one write per position (each operation in a sequential loop costs about a microsecond)
        times = times.at[q].set(jnp.stack([fin, jnp.where(can, start, INF)]))
        return q + 1, cursor, blocked, n_done + done, times

    def more(carry):
        q, blocked = carry[0], carry[2]
        return (q < Q) & jnp.any((st.job_ref[:, jnp.minimum(q, Q - 1)] >= 0) & ~blocked)

    init = (0, jnp.full(I, now), jnp.zeros(I, bool), jnp.zeros(I, INT), jnp.full((Q, 2, I), INF))
    _, _, _, n_done, times = lax.while_loop(more, position, init)
    fin, started = times[:, 0].T, times[:, 1].T  # [I,Q]; INF where the walk did not reach
    can = started < INF
    done = can & (fin <= end)
    rem = jnp.where(done, 0.0, jnp.where(can, st.job_rem - f[:, None] * (end - started), st.job_rem))
    # done jobs form a prefix of each FIFO: shift the rest to the front
    src = jnp.arange(Q)[None, :] + n_done[:, None]
    keep = src < Q
    srcc = jnp.clip(src, 0, Q - 1)

    def shift(a, fill):
        return jnp.where(keep, jnp.take_along_axis(a, srcc, axis=1), fill)

    # the writes for the stages of finished jobs and of jobs started for the first time (diagnostics,
    # SEMANTICS §11: first start; the stated bounds of finished jobs). A job at FIFO position q > 0
    # had not started before this slot; the head may have.
    BS, Ml, n = sizes.B * sizes.S, sizes.Ml, I * Q
    ref_all = st.job_ref.reshape(-1)
    head_new = st.start.reshape(-1)[jnp.clip(st.job_ref[:, 0], 0, BS - 1)] == INF  # [I]
    fresh = ((started < INF) & ((jnp.arange(Q) > 0)[None, :] | head_new[:, None])).reshape(-1)
    fin, done, started = fin.reshape(-1), done.reshape(-1), started.reshape(-1)

    def write(st, sel):
        """Record the entries `sel` ([K] flat FIFO positions, n = none)."""
        selc = jnp.clip(sel, 0, n - 1)
        ref, d = ref_all[selc], done[selc] & (sel < n)
        rc = jnp.clip(ref, 0, BS - 1)
        first_start = st.start.reshape(-1).at[jnp.where(fresh[selc] & (sel < n), rc, BS)].min(
            started[selc], mode="drop").reshape(st.start.shape)
        t0 = jnp.maximum(st.disp.reshape(-1)[rc], st.rdy.reshape(-1)[rc])
        bound = st.bound.reshape(-1)[rc]
        counted = d & jnp.isfinite(bound)
        late = counted & (fin[selc] - t0 > bound + BOUND_TOL)
        root = arrays.num_parents[st.ttype[rc // sizes.S], rc % sizes.S] == 0
        if sel.shape[0] == n:  # every position, in order (v, ml, x, q): a reshape-sum per service
            def per_service(flags):
                return flags.reshape(sizes.V, Ml, sizes.X * Q).sum((0, 2), dtype=INT)
        else:
            ml = (selc // (sizes.X * Q)) % Ml

            def per_service(flags):
                return jnp.zeros(Ml, INT).at[jnp.where(flags, ml, Ml)].add(1, mode="drop")
        st = eqx.tree_at(
            lambda q: (q.start, q.bounded, q.bound_violations),
            st,
            (first_start,
             st.bounded + jnp.stack([per_service(counted & root), per_service(counted & ~root)]),
             st.bound_violations + jnp.stack([per_service(late & root), per_service(late & ~root)])),
        )
        return record_finish(st, arrays, sizes, ref, fin[selc], d)

    st = eqx.tree_at(lambda q: (q.job_ref, q.job_ready, q.job_rem), st,
                     (shift(st.job_ref, -1), shift(st.job_ready, 0.0), shift(rem, 0.0)))
    return layout.in_chunks(done | fresh, layout.execute, write, st)
