"""Steps 3-4 of a slot (docs/SEMANTICS.md §2.4-2.5): newly ready stages join the waiting queues in
(ready slot, task id, stage) order; ready core stages are dispatched to core instances (serial FIFO
servers with deterministic rates) by `sim.core_dispatch`."""

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
from edgefm.sim.types import ScenarioArrays, SimSizes


def enqueue_ready(st: SimState, arrays: ScenarioArrays, sizes: SimSizes, t, now,
                  *, layout: ListLayout) -> SimState:
    """Append the stages that became ready at this boundary to the core and light queues. The lists
    of ready stages are `SimSizes.Ln` long, or shorter when the layout cuts them to the few ready
    (`layout.short_when_few`, chunk `layout.enqueue`; the same results)."""
    S, B, Ln = sizes.S, sizes.B, sizes.Ln
    n_par = arrays.num_parents[st.ttype]  # [B,S]
    ready = st.alive[:, None] & ~st.queued & (st.parents_known == n_par) & (st.inputs_at <= now)
    n_ready = ready.sum()
    missed = jnp.maximum(n_ready - Ln, 0)

    def take(L):
        """The new queues and flags with lists of L entries (L >= the ready stages, or L = Ln)."""
        # two-level compaction: tasks with a newly ready stage, then their stages (task ids ascend
        # within a task's row, so sort only the small list)
        rows = jnp.nonzero(ready.any(1), size=L, fill_value=B)[0]
        rows_c = jnp.clip(rows, 0, B - 1)
        sub = ready[rows_c] & (rows < B)[:, None]  # [L,S]
        pick = jnp.nonzero(sub.reshape(-1), size=L, fill_value=L * S)[0]
        valid = pick < L * S
        b = rows_c[jnp.clip(pick // S, 0, L - 1)]
        s = pick % S
        # (task id, stage) order, invalid entries last: one integer key (tid*S + s is unique)
        order = jnp.argsort(jnp.where(valid, st.tid[b] * S + s, jnp.iinfo(INT).max), stable=True)
        b, s, valid = b[order], s[order], valid[order]
        ref = b * S + s
        svc = arrays.stage_service[st.ttype[b], s]
        core = valid & arrays.service_is_core[jnp.clip(svc, 0)]
        light = valid & ~core

        def append(queue, qslot, mask):
            count = (queue >= 0).sum()
            pos = count + jnp.cumsum(mask) - 1
            ok = mask & (pos < queue.shape[0])
            idx = jnp.where(ok, pos, queue.shape[0])
            return (queue.at[idx].set(ref.astype(queue.dtype), mode="drop"),
                    qslot.at[idx].set(jnp.asarray(t, qslot.dtype), mode="drop"), ok, (mask & ~ok).sum())

        core_q, core_q_slot, core_ok, core_over = append(st.core_q, st.core_q_slot, core)
        light_q, light_q_slot, light_ok, light_over = append(st.light_q, st.light_q_slot, light)
        queued = flat_set(st.queued, jnp.where(core_ok | light_ok, ref, B * S), True)
        return core_q, core_q_slot, light_q, light_q_slot, queued, st.overflow + missed + core_over + light_over

    new = layout.short_when_few(n_ready, layout.enqueue, Ln, take)
    return eqx.tree_at(lambda q: (q.core_q, q.core_q_slot, q.light_q, q.light_q_slot, q.queued, q.overflow), st, new)


def dispatch_core(st: SimState, arrays: ScenarioArrays, sizes: SimSizes, now, up=None,
                  *, layout: ListLayout) -> SimState:
    """Dispatch the queued core stages in order (SEMANTICS §2.5); with failures (``up`` [V], §12)
    only instances on nodes that are up and with a finite start are candidates.

    The queue is taken K = `layout.chunk(layout.dispatch, Lc)` entries at a time: the data-ready
    times and the writes cover one chunk, the first directly, the next ones in a loop that runs only
    while queued stages remain (the queue's entries are contiguous from 0)."""
    S, BS, Lc = sizes.S, sizes.B * sizes.S, sizes.Lc
    K = layout.chunk(layout.dispatch, Lc)
    padded = -(-Lc // K) * K
    queue = st.core_q if padded == Lc else jnp.full(padded, -1, INT).at[:Lc].set(st.core_q)
    count = (st.core_q >= 0).sum()
    earliest = sizes.core_dispatch == "earliest_start"
    serving = arrays.ci_service >= 0 if up is None else (arrays.ci_service >= 0) & up[arrays.ci_node]

    def idle(ci_free):  # idle_only: once no core instance is idle, the rest of the queue waits
        return True if earliest else jnp.any((ci_free <= now) & serving)

    def chunk(c0, st, ok_all):
        """Dispatch the queue entries c0 .. c0+K-1 (those before `count`)."""
        ref = lax.dynamic_slice(queue, (c0,), (K,))
        valid = ref >= 0
        refc = jnp.clip(ref, 0, BS - 1)
        dr = jax.vmap(lambda r: data_ready(st, arrays, r))(refc)  # [K,V]
        svc = arrays.stage_service[st.ttype[refc // S], refc % S]
        n = jnp.minimum(count - c0, K)

        # per entry and core instance: the data-ready time on the instance's node, whether it is a
        # candidate, and (earliest_start) the start before queueing, INF where not a candidate. The
        # loop below takes one entry per step and keeps few arrays: each operation in a sequential
        # loop costs about a microsecond whatever its size.
        def tables(dr, svc):
            dr_ci = dr[..., arrays.ci_node]
            cand = arrays.ci_service == svc[..., None]
            if up is not None:
                cand = cand & serving & (dr_ci < INF)
            return dr_ci, cand, jnp.where(cand, jnp.maximum(now, dr_ci), INF)

        row = layout.rows(tables, dr, svc)
        duration = arrays.core_duration[svc]

        def body(carry):
            i, ci_free, j_out, start_out = carry
            dr_i, cand_i, base_i = row(i)
            if earliest:
                start = jnp.maximum(base_i, ci_free)
                j = jnp.argmin(start)
                ok = valid[i] & cand_i.any()
                start_j = start[j]
            else:
                eligible = cand_i & (ci_free <= now)
                j = jnp.argmin(jnp.where(eligible, dr_i, INF))
                ok = valid[i] & eligible.any()
                start_j = jnp.maximum(now, dr_i[j])
            ci_free = ci_free.at[j].set(jnp.where(ok, start_j + duration[i], ci_free[j]))
            return i + 1, ci_free, j_out.at[i].set(jnp.where(ok, j, -1)), start_out.at[i].set(start_j)

        init = (0, st.ci_free, jnp.full(K, -1, INT), jnp.zeros(K))
        _, ci_free, j, start = lax.while_loop(lambda c: (c[0] < n) & idle(c[1]), body, init)
        ok = j >= 0
        jc = jnp.clip(j, 0)
        node = arrays.ci_node[jc]
        dr_node = jnp.take_along_axis(dr, node[:, None], axis=1)[:, 0]
        fin = start + duration
        at = jnp.where(ok, refc, BS)
        st = eqx.tree_at(
            lambda q: (q.ci_free, q.node, q.disp, q.rdy, q.start),
            st,
            (ci_free, flat_set(st.node, at, node), flat_set(st.disp, at, now), flat_set(st.rdy, at, dr_node),
             flat_set(st.start, at, start)),
        )
        return record_finish(st, arrays, sizes, refc, fin, ok), lax.dynamic_update_slice(ok_all, ok, (c0,))

    st, ok_all = chunk(0, st, jnp.zeros(padded, bool))
    if padded > K:
        def more(carry):
            c0, st, ok_all = carry
            return (c0 + K,) + chunk(c0, st, ok_all)

        _, st, ok_all = lax.while_loop(lambda c: (c[0] < count) & idle(c[1].ci_free), more, (K, st, ok_all))
    core_q, core_q_slot = compact_queue(st.core_q, st.core_q_slot, ok_all[:Lc])
    return eqx.tree_at(lambda q: (q.core_q, q.core_q_slot), st, (core_q, core_q_slot))
