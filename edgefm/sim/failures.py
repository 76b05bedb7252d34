"""Failures in a slot (docs/SEMANTICS.md §12): the nodes up, and the work lost on a node that
goes down (its stages go back to the waiting queues)."""

from __future__ import annotations

import equinox as eqx
import jax.numpy as jnp
from jax import lax

from edgefm.sim.keys import STREAM_FAILURES, stream
from edgefm.sim.state import INF, SimState
from edgefm.sim.types import COUNT, ScenarioArrays, SimSizes


def failing(failure) -> bool:
    """Whether the engine handles failures (static): a failure model that can fail something."""
    return failure is not None and bool(failure.active())


def draw_failures(key, t, failure_state, arrays: ScenarioArrays, params, failure):
    """(up [V] bool, new state): the nodes up in slot t, the schedule and the random draws."""
    up, failure_state = failure.sample(
        failure_state, stream(key, STREAM_FAILURES, t), t, arrays.random_nodes, params.slot_ms)
    return arrays.node_sched[t] & up, failure_state


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
                st.queued & ~lost, known.sum(-1).astype(COUNT),
                jnp.where(root, st.inputs_at, jnp.max(jnp.where(known, pf, -INF), axis=-1)),
                jnp.where(down_inst, -1, st.job_ref), jnp.where(down_inst, 0.0, st.job_ready),
                jnp.where(down_inst, 0.0, st.job_rem), jnp.where(up[arrays.ci_node], st.ci_free, now),
            ),
        )

    st = lax.cond(n_lost > 0, apply, lambda q: q, st)
    st = eqx.tree_at(lambda q: q.prev_alive, st, st.prev_alive & up[:, None, None])
    return st, n_lost
