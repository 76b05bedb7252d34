"""One slot of the engine, for one realisation (docs/SEMANTICS.md §2, in the same order).

All shapes are static (`SimSizes`); the batch axes (realisations, instances) are added in
`rollout.py` (by `vmap`, or a loop over realisations on the CPU). Stage references are flat indices
b*S + s into the task buffer.

Layout choices that keep a slot cheap:
- readiness is incremental: each stage keeps the number of parents whose finish time is known and
  the latest of them, updated when a parent's finish becomes known (a core stage at dispatch, a light
  stage when it completes); a task DAG is an in-tree, so each stage has at most one child to update;
- waiting stages live in two queues (core, light) kept in the order (ready slot, task id, stage):
  stages that become ready at boundary t are appended in (task id, stage) order, dispatched ones are
  removed, so no per-slot sort over the whole buffer is needed;
- sequential loops (core dispatch, the controllers' greedy steps) carry only small arrays: a scatter
  into a batched [R,B,S] array inside a loop would be copied at every iteration.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from edgefm.sim.keys import STREAM_CONTROLLER, STREAM_FAILURES, draw_slot, stream
from edgefm.sim.types import (
    CAPACITY_TOL, Action, ControllerContext, Observation, ScenarioArrays, SimSizes, ranks_in_list_order,
    resource_usage,
)

INF = jnp.inf
INT = jnp.int64  # x64 is on: the default integer, so updates keep their dtype
BOUND_TOL = 1e-9  # ms: a stage violates its stated bound when its delay exceeds it by more
# the parts of a finished task's critical path (SEMANTICS §11), in this order
BREAKDOWN_COMPONENTS = (
    "uplink", "network", "core_dispatch_wait", "core_queue", "core_service",
    "light_dispatch_wait", "light_queue", "light_service",
)


class SimState(eqx.Module):
    # task buffer [B]
    alive: jax.Array  # [B] bool: task in flight
    ttype: jax.Array  # [B] int
    user: jax.Array  # [B] int
    tid: jax.Array  # [B] int: task id (arrival order)
    arrival: jax.Array  # [B] ms
    uplink_end: jax.Array  # [B] ms
    # stages [B,S]
    queued: jax.Array  # [B,S] bool: entered a waiting queue (or was dispatched)
    node: jax.Array  # [B,S] int: executing node, -1 before dispatch
    finish: jax.Array  # [B,S] ms: finish time, inf until known
    parents_known: jax.Array  # [B,S] int: parents whose finish time is known
    inputs_at: jax.Array  # [B,S] ms: latest known parent finish (arrival time for roots)
    # diagnostics (SEMANTICS §11), set at dispatch (start: light stages when first worked on)
    disp: jax.Array  # [B,S] ms: dispatch boundary t_s * slot
    rdy: jax.Array  # [B,S] ms: data-ready time on the stage's node
    start: jax.Array  # [B,S] ms: start of execution, inf until known
    bound: jax.Array  # [B,S] ms: delay bound stated by the controller, nan if none
    # waiting queues, in (ready slot, task id, stage) order; refs -1 past the end
    core_q: jax.Array  # [Lc] int: stage refs of ready core stages waiting for an instance
    core_q_slot: jax.Array  # [Lc] int: their ready slot
    light_q: jax.Array  # [Lw] int: stage refs of ready light stages waiting for an instance
    light_q_slot: jax.Array  # [Lw] int
    # core instances
    ci_free: jax.Array  # [Ic] ms: finish of the last job queued on each core instance
    # light instances, flattened I = V*Ml*X, FIFO positions Q
    job_ref: jax.Array  # [I,Q] int: flat stage reference b*S+s, -1 empty (jobs contiguous from 0)
    job_ready: jax.Array  # [I,Q] ms: t0 = max(dispatch time, data-ready time on the instance's node)
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
    overflow: jax.Array  # [] int: size-limit events that may make results inexact
    invalid: jax.Array  # [] int: controller decisions refused by the engine
    violations: jax.Array  # [] int: slots with Eq. 8 violated on some node
    buffer_peak: jax.Array  # [] int
    bounded: jax.Array  # [Ml] int: light stages with a bound, finished (SEMANTICS §11)
    bound_violations: jax.Array  # [Ml] int: ... whose delay exceeded the bound
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


def init_state(sizes: SimSizes, workload_state, controller_state, failure_state=(), upload=()) -> SimState:
    B, S, J, I, Q = sizes.B, sizes.S, sizes.J, sizes.V * sizes.Ml * sizes.X, sizes.Q
    return SimState(
        alive=jnp.zeros(B, bool),
        ttype=jnp.zeros(B, INT),
        user=jnp.zeros(B, INT),
        tid=jnp.zeros(B, INT),
        arrival=jnp.zeros(B),
        uplink_end=jnp.zeros(B),
        queued=jnp.ones((B, S), bool),
        node=jnp.full((B, S), -1, INT),
        finish=jnp.full((B, S), INF),
        parents_known=jnp.zeros((B, S), INT),
        inputs_at=jnp.full((B, S), INF),
        disp=jnp.full((B, S), INF),
        rdy=jnp.full((B, S), INF),
        start=jnp.full((B, S), INF),
        bound=jnp.full((B, S), jnp.nan),
        core_q=jnp.full(sizes.Lc, -1, INT),
        core_q_slot=jnp.zeros(sizes.Lc, INT),
        light_q=jnp.full(sizes.Lw, -1, INT),
        light_q_slot=jnp.zeros(sizes.Lw, INT),
        ci_free=jnp.zeros(sizes.Ic),
        job_ref=jnp.full((I, Q), -1, INT),
        job_ready=jnp.zeros((I, Q)),
        job_rem=jnp.zeros((I, Q)),
        prev_alive=jnp.zeros((sizes.V, sizes.Ml, sizes.X), bool),
        next_id=jnp.zeros((), INT),
        out_type=jnp.zeros(J, INT),
        out_arrival=jnp.zeros(J),
        out_finish=jnp.full(J, jnp.nan),
        out_dropped=jnp.zeros(J, bool),
        arrived_by_type=jnp.zeros(sizes.N, INT),
        overflow=jnp.zeros((), INT),
        invalid=jnp.zeros((), INT),
        violations=jnp.zeros((), INT),
        buffer_peak=jnp.zeros((), INT),
        bounded=jnp.zeros(sizes.Ml, INT),
        bound_violations=jnp.zeros(sizes.Ml, INT),
        breakdown=jnp.zeros((2, len(BREAKDOWN_COMPONENTS))),
        workload_state=workload_state,
        controller_state=controller_state,
        failure_state=failure_state,
        upload=upload,
    )


def _flat_set(a, idx, values):
    """a[idx] = values on the flattened array, skipping out-of-range idx (used as 'no write')."""
    return a.reshape(-1).at[idx].set(values, mode="drop").reshape(a.shape)


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
            _flat_set(st.finish, jnp.where(ok, r, BS), fin),
            st.parents_known.reshape(-1).at[cref].add(1, mode="drop").reshape(st.parents_known.shape),
            st.inputs_at.reshape(-1).at[cref].max(fin, mode="drop").reshape(st.inputs_at.shape),
        ),
    )


ROW_FIELDS = ("ttype", "arrival", "uplink_end", "node", "rdy", "finish", "disp", "start")  # read by the walk


def critical_path_breakdown(st: SimState, arrays: ScenarioArrays, sizes: SimSizes, slot_ms, rows, which):
    """[K,C] ms: the latency of the tasks in buffer rows ``rows`` ([K]) split along
    their critical paths (SEMANTICS §11; meaningful for tasks whose sink has finished). From the
    sink, the critical parent maximises its finish plus the transfer of its output to the child's
    node (ties: the first parent in the list). With ``slot_ms`` (failures, SEMANTICS §12) the
    transfer delays are those of the network state of the slot in which the child was dispatched.
    ``which`` ([K] bool): the rows to walk; the others get zeros. The rows are gathered first and
    the walk, a `while_loop` of one stage per step, reads only them (a loop that read the whole
    buffer would make XLA copy the buffer's arrays at every slot); it stops when every walked path
    has reached its root (at most S steps; none when no row is walked)."""
    g = {f: getattr(st, f)[rows] for f in ROW_FIELDS}  # [K] or [K,S]
    n, uplink_end = g["ttype"], g["uplink_end"]
    uplink = uplink_end - g["arrival"]
    k = jnp.arange(rows.shape[0])

    def body(carry):
        cur, walking, parts = carry
        svc = jnp.clip(arrays.stage_service[n, cur], 0)
        core = arrays.service_is_core[svc]
        r, f = g["rdy"][k, cur], g["finish"][k, cur]
        t0 = jnp.maximum(g["disp"][k, cur], r)
        sigma = g["start"][k, cur]
        stage = jnp.stack([t0 - r, sigma - t0, f - sigma], axis=-1)  # dispatch wait, queue, service
        parts = parts.at[:, 2:5].add(jnp.where((walking & core)[:, None], stage, 0.0))
        parts = parts.at[:, 5:8].add(jnp.where((walking & ~core)[:, None], stage, 0.0))
        par = arrays.stage_parents[n, cur]  # [K,P]
        parc = jnp.clip(par, 0)
        root = par[:, 0] < 0
        pnode = jnp.clip(jnp.take_along_axis(g["node"], parc, axis=1), 0)
        psvc = jnp.clip(arrays.stage_service[n[:, None], parc], 0)
        pfin = jnp.take_along_axis(g["finish"], parc, axis=1)
        here = jnp.clip(g["node"][k, cur], 0)
        if slot_ms is None:
            xfer = arrays.xfer[psvc, pnode, here[:, None]]
        else:
            slot = jnp.clip(jnp.round(g["disp"][k, cur] / slot_ms).astype(INT), 0, sizes.T - 1)
            xfer = arrays.xfer_states[arrays.net_state[slot][:, None], psvc, pnode, here[:, None]]
        arrive = jnp.where(par >= 0, pfin + xfer, -INF)
        crit = jnp.argmax(arrive, axis=1)  # first maximum
        crit_fin = jnp.take_along_axis(pfin, crit[:, None], axis=1)[:, 0]
        net = jnp.where(root, r - uplink_end, r - crit_fin)
        parts = parts.at[:, 0].add(jnp.where(walking & root, uplink, 0.0))
        parts = parts.at[:, 1].add(jnp.where(walking, net, 0.0))
        cur = jnp.where(root, cur, jnp.take_along_axis(parc, crit[:, None], axis=1)[:, 0])
        return cur, walking & ~root, parts

    init = (arrays.sink_stage[n], which, jnp.zeros((rows.shape[0], len(BREAKDOWN_COMPONENTS))))
    return lax.while_loop(lambda c: jnp.any(c[1]), body, init)[2]


COMPLETION_CHUNK = 32  # tasks whose critical path is walked together (a loop over chunks covers any count)


def observe_completions(st: SimState, arrays: ScenarioArrays, sizes: SimSizes, now, slot_ms=None,
                        compact: bool = False) -> SimState:
    """Tasks whose sink finished by `now` leave the buffer; their finish is recorded by task id and
    their critical-path breakdown added to the sums of their outcome (on time, late). The breakdown
    is computed for the completing tasks only, gathered in chunks of `COMPLETION_CHUNK` rows: a
    loop over chunks, or, with ``compact`` (no batch axis) and at most one chunk's worth of
    completions, that one chunk (a `cond`: no loop that reads the buffer)."""
    B = sizes.B
    sink = arrays.sink_stage[st.ttype]  # [B]
    sink_finish = jnp.take_along_axis(st.finish, sink[:, None], axis=1)[:, 0]
    complete = st.alive & (sink_finish <= now)
    idx = jnp.where(complete, st.tid, sizes.J)
    late = sink_finish - st.arrival > arrays.deadline[st.ttype]
    K = min(B, COMPLETION_CHUNK)

    def chunk(carry):
        todo, breakdown = carry
        rows = jnp.nonzero(todo, size=K, fill_value=B)[0]
        valid = rows < B
        rc = jnp.clip(rows, 0, B - 1)
        parts = critical_path_breakdown(st, arrays, sizes, slot_ms, rc, valid)
        lt = late[rc][:, None]
        breakdown = breakdown + jnp.stack([jnp.sum(jnp.where(lt, 0.0, parts), 0), jnp.sum(jnp.where(lt, parts, 0.0), 0)])
        return todo.at[rows].set(False, mode="drop"), breakdown

    def loop():
        return lax.while_loop(lambda c: jnp.any(c[0]), chunk, (complete, st.breakdown))

    if compact and K < B:
        left, breakdown = lax.cond(complete.sum() <= K, lambda: chunk((complete, st.breakdown)), loop)
    else:
        left, breakdown = loop()
    # `left` (rows not walked) is all false. The buffer rows leave through it, so that every read of
    # the walk comes before the writes of the next phases in XLA's dependency order: a write into
    # an array that a read is not ordered before makes XLA copy the whole array (twice) every slot.
    return eqx.tree_at(
        lambda s: (s.alive, s.out_finish, s.breakdown),
        st,
        ((st.alive & ~complete) | left, st.out_finish.at[idx].set(sink_finish, mode="drop"), breakdown),
    )


def fail_nodes(st: SimState, arrays: ScenarioArrays, sizes: SimSizes, up, now):
    """SEMANTICS §12, step 1b: on every node that is down (``up`` [V] false) the jobs not done are
    lost and their stages undispatched (ready again at this boundary); the node's light instances
    stop and its core instances are emptied. Returns (state, stages lost)."""
    B, S, P = sizes.B, sizes.S, sizes.P
    lost = st.alive[:, None] & (st.node >= 0) & (st.finish > now) & ~up[jnp.clip(st.node, 0)]  # [B,S]
    n_lost = lost.sum()

    def apply(st):
        down_inst = ~jnp.repeat(up, sizes.Ml * sizes.X)[:, None]  # [I,1]
        finish = jnp.where(lost, INF, st.finish)
        # readiness from scratch: the parents whose finish is known, and the latest of them
        n = st.ttype
        par = arrays.stage_parents[n]  # [B,S,P]
        pf = jnp.take_along_axis(finish, jnp.clip(par, 0).reshape(B, S * P), axis=1).reshape(B, S, P)
        known = (par >= 0) & (pf < INF)
        root = arrays.num_parents[n] == 0
        return eqx.tree_at(
            lambda q: (q.node, q.finish, q.start, q.disp, q.rdy, q.bound, q.queued, q.parents_known,
                       q.inputs_at, q.job_ref, q.job_ready, q.job_rem, q.ci_free),
            st,
            (
                jnp.where(lost, -1, st.node), finish, jnp.where(lost, INF, st.start),
                jnp.where(lost, INF, st.disp), jnp.where(lost, INF, st.rdy), jnp.where(lost, jnp.nan, st.bound),
                st.queued & ~lost, known.sum(-1).astype(INT),
                jnp.where(root, st.inputs_at, jnp.max(jnp.where(known, pf, -INF), axis=-1)),
                jnp.where(down_inst, -1, st.job_ref), jnp.where(down_inst, 0.0, st.job_ready),
                jnp.where(down_inst, 0.0, st.job_rem), jnp.where(up[arrays.ci_node], st.ci_free, now),
            ),
        )

    st = lax.cond(n_lost > 0, apply, lambda q: q, st)
    st = eqx.tree_at(lambda q: q.prev_alive, st, st.prev_alive & up[:, None, None])
    return st, n_lost


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
    admitted = valid & (free_slots < B)
    dropped = valid & ~admitted
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
    overflow = jnp.maximum(total - A, 0) + jnp.sum(valid & (ids >= J))
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
            st.tid.at[bidx].set(ids, mode="drop"),
            st.arrival.at[bidx].set(now, mode="drop"),
            st.uplink_end.at[bidx].set(up_end, mode="drop"),
            st.queued.at[bidx].set(~stage_ok, mode="drop"),  # padding stages never queue
            st.node.at[bidx].set(jnp.full((A, S), -1, INT), mode="drop"),
            st.finish.at[bidx].set(jnp.full((A, S), INF), mode="drop"),
            st.parents_known.at[bidx].set(jnp.zeros((A, S), INT), mode="drop"),
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


def _short_when_few(compact: bool, count, chunk: int, full: int, build):
    """`build(n)` with lists of n entries: n = `chunk` when ``compact`` (no batch axis) and `count`
    (the live entries) is at most `chunk`, else the `full` static size; a `cond` picks at run time.
    With a batch axis both branches of a `cond` would run, so the full lists are used directly."""
    K = min(chunk, full)
    if compact and K < full:
        return lax.cond(count <= K, lambda: build(K), lambda: build(full))
    return build(full)


def _in_chunks(compact: bool, mask, chunk: int, body, carry, first=None):
    """`body(carry, sel) -> carry` over the true entries of the 1-D ``mask`` (``sel``: indices into
    it, ``len(mask)`` for no entry). With ``compact`` (no batch axis), `chunk` entries at a time:
    the first chunk directly (``first``: its indices, if already known), the others in a loop that
    runs only while entries remain; else one call over the whole list. Writes stay out of `cond`
    branches (a branch that writes into the buffer's arrays makes XLA copy them every slot)."""
    n = mask.shape[0]
    K = min(chunk, n)
    if not compact or K == n:
        return body(carry, jnp.where(mask, jnp.arange(n), n))
    sel = jnp.nonzero(mask, size=K, fill_value=n)[0] if first is None else first
    carry = body(carry, sel)

    def more(c):
        todo, carry = c
        sel = jnp.nonzero(todo, size=K, fill_value=n)[0]
        return todo.at[sel].set(False, mode="drop"), body(carry, sel)

    return lax.while_loop(lambda c: jnp.any(c[0]), more, (mask.at[sel].set(False, mode="drop"), carry))[1]


ENQUEUE_CHUNK = 256  # newly ready stages handled together when few (the engine's sequential layout)


def enqueue_ready(st: SimState, arrays: ScenarioArrays, sizes: SimSizes, t, now, compact: bool = False) -> SimState:
    """Append the stages that became ready at this boundary to the core and light queues. With
    ``compact`` (no batch axis) and at most `ENQUEUE_CHUNK` of them, the lists are that long instead
    of `SimSizes.Ln` (a `cond`; the same results)."""
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
            return queue.at[idx].set(ref, mode="drop"), qslot.at[idx].set(t, mode="drop"), ok, (mask & ~ok).sum()

        core_q, core_q_slot, core_ok, core_over = append(st.core_q, st.core_q_slot, core)
        light_q, light_q_slot, light_ok, light_over = append(st.light_q, st.light_q_slot, light)
        queued = _flat_set(st.queued, jnp.where(core_ok | light_ok, ref, B * S), True)
        return core_q, core_q_slot, light_q, light_q_slot, queued, st.overflow + missed + core_over + light_over

    new = _short_when_few(compact, n_ready, ENQUEUE_CHUNK, Ln, take)
    return eqx.tree_at(lambda q: (q.core_q, q.core_q_slot, q.light_q, q.light_q_slot, q.queued, q.overflow), st, new)


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


DISPATCH_CHUNK = 64  # queued core stages whose data-ready times are computed together (sequential layout)


def dispatch_core(st: SimState, arrays: ScenarioArrays, sizes: SimSizes, now, up=None, compact: bool = False) -> SimState:
    """Dispatch the queued core stages in order (SEMANTICS §2.5); with failures (``up`` [V], §12)
    only instances on nodes that are up and with a finite start are candidates.

    With ``compact`` (no batch axis) the queue is taken `DISPATCH_CHUNK` entries at a time: the
    data-ready times and the writes cover one chunk, the first directly, the next ones in a loop
    that runs only while queued stages remain (the queue's entries are contiguous from 0)."""
    S, BS, Lc = sizes.S, sizes.B * sizes.S, sizes.Lc
    K = min(DISPATCH_CHUNK, Lc) if compact else Lc
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

        if compact:  # [K,Ic] tables for the chunk
            full = tables(dr, svc)
            row = lambda i: tuple(a[i] for a in full)  # noqa: E731
        else:  # row by row: for a whole list the tables would take Lc x Ic per realisation of a batch
            row = lambda i: tables(dr[i], svc[i])  # noqa: E731
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
            (ci_free, _flat_set(st.node, at, node), _flat_set(st.disp, at, now), _flat_set(st.rdy, at, dr_node),
             _flat_set(st.start, at, start)),
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


APPLY_CHUNK = 256  # assignments validated and written together (the engine's sequential layout)


def apply_light_action(st: SimState, obs: Observation, action: Action, arrays: ScenarioArrays, sizes: SimSizes,
                       compact: bool = False):
    """Validate the controller's decision, append admitted stages to their instances' FIFOs.

    With ``compact`` (realisations run one at a time) the assigned entries are checked and written
    `APPLY_CHUNK` at a time (`_in_chunks`); the same results as over the whole list."""
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
            _flat_set(job_ref, slot, ref),
            _flat_set(job_ready, slot, jnp.maximum(obs.now, ready)),  # t0 (§2.7)
            _flat_set(job_rem, slot, arrays.work[arrays.light_service[light]]),
            _flat_set(node, at, v),
            _flat_set(disp, at, obs.now),
            _flat_set(rdy, at, ready),
            _flat_set(bound, at, bound_all[selc]),
            ok_all.at[sel].set(ok, mode="drop"),
            invalid + jnp.sum(asked & ~ok),
        )

    carry = (st.job_ref, st.job_ready, st.job_rem, st.node, st.disp, st.rdy, st.bound, jnp.zeros(L, bool), st.invalid)
    K = min(APPLY_CHUNK, L)
    # the first chunk's entries (also the instances' checks when it holds every assignment)
    first = jnp.nonzero(asked_all, size=K, fill_value=L)[0] if compact and K < L else None
    consistent = _short_when_few(compact, asked_all.sum(), APPLY_CHUNK, L,
                                 lambda n: instances_ok(first if n < L else jnp.arange(L)))
    carry = _in_chunks(compact, asked_all, APPLY_CHUNK, lambda c, sel: write(c, sel, consistent), carry, first)
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


EXECUTE_CHUNK = 128  # finished or newly started light jobs recorded together (sequential layout)


def execute_light(st: SimState, rates, arrays: ScenarioArrays, sizes: SimSizes, now, slot_ms,
                  compact: bool = False) -> SimState:
    """Every light instance works through its FIFO at this slot's rate (SEMANTICS §2.7). With
    ``compact`` (no batch axis) the stages of finished and newly started jobs are written
    `EXECUTE_CHUNK` at a time (`_in_chunks`), not over all I·Q FIFO positions."""
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
            (first_start, st.bounded + per_service(counted), st.bound_violations + per_service(late)),
        )
        return record_finish(st, arrays, sizes, ref, fin[selc], d)

    st = eqx.tree_at(lambda q: (q.job_ref, q.job_ready, q.job_rem), st,
                     (shift(st.job_ref, -1), shift(st.job_ready, 0.0), shift(rem, 0.0)))
    return _in_chunks(compact, done | fresh, EXECUTE_CHUNK, write, st)


def failing(failure) -> bool:
    """Whether the engine handles failures (static): a failure model that can fail something."""
    return failure is not None and bool(failure.active())


def draw_failures(key, t, failure_state, arrays: ScenarioArrays, params, failure):
    """(up [V] bool, new state): the nodes up in slot t, the schedule and the random draws."""
    up, failure_state = failure.sample(
        failure_state, stream(key, STREAM_FAILURES, t), t, arrays.random_nodes, params.slot_ms)
    return arrays.node_sched[t] & up, failure_state


def make_step(sizes: SimSizes, channel, workload, controller, failure=None, *, trace_counter=None, compact=False):
    """Build `step(carry, t) -> (carry, per-slot outputs)` for `lax.scan`, one realisation.
    ``compact``: the step runs without a batch axis (see `apply_light_action`)."""
    fails = failing(failure)

    def step(carry, t):
        if trace_counter is not None:
            trace_counter["step"] += 1  # runs at trace time only: counts compilations
        st, key, arrays_all, params = carry
        now = t * params.slot_ms
        arrays, up, n_lost = arrays_all, None, jnp.zeros((), INT)
        if fails:  # SEMANTICS §12: this slot's network state and nodes up, then step 1b
            g = arrays_all.net_state[t]
            arrays = eqx.tree_at(lambda a: (a.xfer, a.fwd), arrays_all,
                                 (arrays_all.xfer_states[g], arrays_all.fwd_states[g]))
            with jax.named_scope("completions"):
                st = observe_completions(st, arrays, sizes, now, params.slot_ms, compact)
            up, fstate = draw_failures(key, t, st.failure_state, arrays, params, failure)
            st = eqx.tree_at(lambda q: q.failure_state, st, fstate, is_leaf=lambda x: x is None)
            st, n_lost = fail_nodes(st, arrays, sizes, up, now)
        else:
            with jax.named_scope("completions"):
                st = observe_completions(st, arrays, sizes, now, compact=compact)
        with jax.named_scope("draws"):
            counts, uplink, rates, wstate = draw_slot(
                key, t, st.workload_state, arrays, params, sizes, channel, workload
            )
        with jax.named_scope("arrivals"):
            st = admit_arrivals(st, counts, uplink, arrays, sizes, t, params.slot_ms)
        st = eqx.tree_at(lambda q: q.workload_state, st, wstate, is_leaf=lambda x: x is None)
        with jax.named_scope("enqueue"):
            st = enqueue_ready(st, arrays, sizes, t, now, compact)
        with jax.named_scope("dispatch_core"):
            st = dispatch_core(st, arrays, sizes, now, up, compact)

        with jax.named_scope("observation"):
            obs = light_observation(st, arrays, sizes, t, now, up)
        with jax.named_scope("controller"):
            action, cstate = controller.act(
                st.controller_state, obs, ControllerContext.of(sizes, arrays), params, stream(key, STREAM_CONTROLLER, t)
            )
        st = eqx.tree_at(lambda q: q.controller_state, st, cstate, is_leaf=lambda x: x is None)
        with jax.named_scope("apply"):
            st, alive, y = apply_light_action(st, obs, action, arrays, sizes, compact)

        counts_l = alive.sum(-1).astype(INT)  # [V,Ml]
        prev = st.prev_alive.sum(-1).astype(INT)
        cdep = arrays.cost_deploy[arrays.light_service][None, :]
        crun = arrays.cost_run[arrays.light_service][None, :]
        cost = jnp.sum(cdep * jnp.maximum(counts_l - prev, 0) + crun * counts_l)
        usage = resource_usage(counts_l, arrays.resource[arrays.light_service], arrays.core_usage)
        violated = jnp.any(usage > arrays.capacity + CAPACITY_TOL)

        with jax.named_scope("execute_light"):
            st = execute_light(st, rates, arrays, sizes, now, params.slot_ms, compact)
        st = eqx.tree_at(lambda q: (q.prev_alive, q.violations), st, (alive, st.violations + violated))
        y_out = jnp.max(jnp.where(alive, y, 0), axis=-1)
        outputs = {
            "x_light": counts_l.astype(jnp.int32),
            "parallelism": y_out.astype(jnp.int32),
            "cost_light_slot": cost,
            "tasks_in_flight": st.alive.sum().astype(jnp.int32),
            "uplink_rate": uplink,
            "arrivals": counts,
            "controller_info": action.info,
            "node_up": (jnp.ones(sizes.V, bool) if up is None else up).astype(jnp.int8),
            "jobs_lost": n_lost.astype(jnp.int32),
        }
        return (st, key, arrays_all, params), outputs

    return step
