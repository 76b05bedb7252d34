"""Step 1 of a slot (docs/SEMANTICS.md §2.1, §11): tasks whose sink has finished leave the buffer,
with their outcome and the critical-path breakdown of their latency."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jax import lax

from edgefm.sim.layout import ListLayout
from edgefm.sim.state import BREAKDOWN_COMPONENTS, INF, INT, SimState
from edgefm.sim.types import ScenarioArrays, SimSizes

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


def observe_completions(st: SimState, arrays: ScenarioArrays, sizes: SimSizes, now, slot_ms=None,
                        *, layout: ListLayout) -> SimState:
    """Tasks whose sink finished by `now` leave the buffer; their finish is recorded by task id and
    their critical-path breakdown added to the sums of their outcome (on time, late). The breakdown
    is computed for the completing tasks only, gathered in chunks of `layout.completion` rows
    (`layout.walk`)."""
    B = sizes.B
    sink = arrays.sink_stage[st.ttype]  # [B]
    sink_finish = jnp.take_along_axis(st.finish, sink[:, None], axis=1)[:, 0]
    complete = st.alive & (sink_finish <= now)
    idx = jnp.where(complete, st.tid, sizes.J)
    late = sink_finish - st.arrival > arrays.deadline[st.ttype]
    K = min(B, layout.completion)

    def chunk(carry):
        todo, breakdown = carry
        rows = jnp.nonzero(todo, size=K, fill_value=B)[0]
        valid = rows < B
        rc = jnp.clip(rows, 0, B - 1)
        parts = critical_path_breakdown(st, arrays, sizes, slot_ms, rc, valid)
        lt = late[rc][:, None]
        breakdown = breakdown + jnp.stack([jnp.sum(jnp.where(lt, 0.0, parts), 0), jnp.sum(jnp.where(lt, parts, 0.0), 0)])
        return todo.at[rows].set(False, mode="drop"), breakdown

    left, breakdown = layout.walk(complete, K, chunk, st.breakdown)
    # `left` (rows not walked) is all false. The buffer rows leave through it, so that every read of
    # the walk comes before the writes of the next phases in XLA's dependency order: a write into
    # an array that a read is not ordered before makes XLA copy the whole array (twice) every slot.
    return eqx.tree_at(
        lambda s: (s.alive, s.out_finish, s.breakdown),
        st,
        ((st.alive & ~complete) | left, st.out_finish.at[idx].set(sink_finish, mode="drop"), breakdown),
    )
