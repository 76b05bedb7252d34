"""Step 2 of a slot (docs/SEMANTICS.md §2.2-2.3): new tasks enter the buffer, their uploads are
timed (one rate per upload, or each slot's rate under `per_slot` fading) and their roots get their
readiness time (`sim.root_ready`)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from edgefm.sim.state import INF, SimState, UploadSchedule
from edgefm.sim.types import COUNT, IDX, ScenarioArrays, SimSizes


def uplink_end_per_slot(sched: UploadSchedule, t, user, size, slot_ms):
    """[A] ms: when uploads of ``size`` [A] MB from users ``user`` [A] that start at boundary t end,
    each slot t' >= t moving rate[t', u]·Δt MB (SEMANTICS §2.2, `per_slot`); inf if not by TΔt."""
    T = sched.rate.shape[0]
    cum = sched.cum[:, user].T * slot_ms  # [A,T+1]
    target = cum[:, t] + size
    k = jax.vmap(lambda c, x: jnp.searchsorted(c, x, side="left"))(cum, target)  # first k: cum[k] >= target
    s_fin = jnp.maximum(k - 1, t)  # the slot in which the upload ends (T: not in the horizon)
    s_inf = sched.next_inf[t, user]
    sc = jnp.clip(s_fin, 0, T - 1)
    a = jnp.arange(user.shape[0])
    rate = sched.rate[sc, user]
    end = s_fin * slot_ms + (target - cum[a, sc]) / rate
    end = jnp.where(s_fin < T, end, INF)
    end = jnp.where(s_inf <= s_fin, s_inf * slot_ms, end)
    return jnp.where(size > 0, end, t * slot_ms)


def admit_arrivals(st: SimState, counts, uplink, arrays: ScenarioArrays, sizes: SimSizes, t, slot_ms) -> SimState:
    """Number the slot's arrivals (user, then type), put them in free buffer slots, count drops. Their
    upload ends as the channel's fading says (SEMANTICS §2.2: with an `UploadSchedule` in the state,
    `per_slot`); their roots become ready as `sim.root_ready` says (§2.3)."""
    now = t * slot_ms
    U, N, A, B, J, S = sizes.U, sizes.N, sizes.A, sizes.B, sizes.J, sizes.S
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
    # the buffer takes arrivals while it holds fewer than task_capacity tasks; one it takes that no
    # engine row holds (B < task_capacity) is lost to the run and counted as an overflow
    taken = valid & (a < sizes.task_capacity - st.alive.sum())
    admitted = taken & (free_slots < B)
    dropped = valid & ~taken
    if isinstance(st.upload, UploadSchedule):
        up_end = uplink_end_per_slot(st.upload, t, u, arrays.input_size[n], slot_ms)
    else:
        up_end = now + arrays.input_size[n] / uplink[u]
    stage_ok = arrays.stage_service[n] >= 0  # [A,S]
    is_root = stage_ok & (arrays.num_parents[n] == 0)
    # a root's inputs are "at" its upload end (uplink_end) or its arrival (arrival): readiness needs
    # inputs_at <= now (enqueue_ready); non-roots max-accumulate their parents' finishes
    root_at = up_end[:, None] if sizes.root_ready == "uplink_end" else now

    bidx = jnp.where(admitted, free_slots, B)
    jidx = jnp.where(valid, ids, J)
    overflow = jnp.maximum(total - A, 0) + jnp.sum(valid & (ids >= J)) + jnp.sum(taken & ~admitted)
    return eqx.tree_at(
        lambda s: (
            s.alive, s.ttype, s.user, s.tid, s.arrival, s.uplink_end,
            s.queued, s.node, s.finish, s.parents_known, s.inputs_at, s.disp, s.rdy, s.start, s.bound,
            s.next_id, s.out_type, s.out_arrival, s.out_dropped, s.arrived_by_type, s.overflow,
            s.buffer_peak,
        ),
        st,
        (
            st.alive.at[bidx].set(True, mode="drop"),
            st.ttype.at[bidx].set(n, mode="drop"),
            st.user.at[bidx].set(u, mode="drop"),
            st.tid.at[bidx].set(ids.astype(IDX), mode="drop"),
            st.arrival.at[bidx].set(now, mode="drop"),
            st.uplink_end.at[bidx].set(up_end, mode="drop"),
            st.queued.at[bidx].set(~stage_ok, mode="drop"),  # padding stages never queue
            st.node.at[bidx].set(jnp.full((A, S), -1, IDX), mode="drop"),
            st.finish.at[bidx].set(jnp.full((A, S), INF), mode="drop"),
            st.parents_known.at[bidx].set(jnp.zeros((A, S), COUNT), mode="drop"),
            st.inputs_at.at[bidx].set(jnp.where(is_root, root_at, -INF), mode="drop"),
            st.disp.at[bidx].set(jnp.full((A, S), INF), mode="drop"),
            st.rdy.at[bidx].set(jnp.full((A, S), INF), mode="drop"),
            st.start.at[bidx].set(jnp.full((A, S), INF), mode="drop"),
            st.bound.at[bidx].set(jnp.full((A, S), jnp.nan), mode="drop"),
            st.next_id + total,
            st.out_type.at[jidx].set(n, mode="drop"),
            st.out_arrival.at[jidx].set(now, mode="drop"),
            st.out_dropped.at[jidx].set(dropped, mode="drop"),
            st.arrived_by_type + counts.sum(0),
            st.overflow + overflow,
            jnp.maximum(st.buffer_peak, st.alive.sum() + admitted.sum()),
        ),
    )
