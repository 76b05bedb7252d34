"""One slot of the engine for one realisation: the phases of docs/SEMANTICS.md §2 in their order.

Each phase is a function of the state in its own module — `completions` (step 1), `failures`
(§12), `arrivals` (step 2), `core` (steps 3-4), `light` (steps 5-7), the state and its shared
updates in `state` — and `make_step` composes them. All shapes are static (`SimSizes`); the batch
axes (realisations, instances) are added outside the step, in `rollout.py` (a loop over
realisations on the CPU, `vmap` elsewhere), and how the phases go through their lists under each
is the `layout` object `make_step` is given (`layout.py`): the phases say what they do with the
live entries of a list, the layout how the list is gone through.

Choices that keep a slot cheap:
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

import equinox as eqx
import jax
import jax.numpy as jnp

from edgefm.sim.arrivals import admit_arrivals
from edgefm.sim.completions import observe_completions
from edgefm.sim.core import dispatch_core, enqueue_ready
from edgefm.sim.failures import draw_failures, fail_nodes, failing
from edgefm.sim.keys import STREAM_CONTROLLER, draw_slot, stream
from edgefm.sim.layout import ListLayout
from edgefm.sim.light import apply_light_action, execute_light, light_observation
from edgefm.sim.state import INT
from edgefm.sim.types import CAPACITY_TOL, ControllerContext, SimSizes, resource_usage


def make_step(sizes: SimSizes, channel, workload, controller, failure=None, *, layout: ListLayout,
              trace_counter=None):
    """Build `step(carry, t) -> (carry, per-slot outputs)` for `lax.scan`, one realisation.
    ``layout``: how the phases go through their lists (`layout.py`: `Sequential()` when the step
    runs without a batch axis, `Batched()` under `vmap`); it does not change the results."""
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
                st = observe_completions(st, arrays, sizes, now, params.slot_ms, layout=layout)
            up, fstate = draw_failures(key, t, st.failure_state, arrays, params, failure)
            st = eqx.tree_at(lambda q: q.failure_state, st, fstate, is_leaf=lambda x: x is None)
            st, n_lost = fail_nodes(st, arrays, sizes, up, now)
        else:
            with jax.named_scope("completions"):
                st = observe_completions(st, arrays, sizes, now, layout=layout)
        with jax.named_scope("draws"):
            counts, uplink, rates, wstate = draw_slot(
                key, t, st.workload_state, arrays, params, sizes, channel, workload
            )
        with jax.named_scope("arrivals"):
            st = admit_arrivals(st, counts, uplink, arrays, sizes, t, params.slot_ms)
        st = eqx.tree_at(lambda q: q.workload_state, st, wstate, is_leaf=lambda x: x is None)
        with jax.named_scope("enqueue"):
            st = enqueue_ready(st, arrays, sizes, t, now, layout=layout)
        with jax.named_scope("dispatch_core"):
            st = dispatch_core(st, arrays, sizes, now, up, layout=layout)

        with jax.named_scope("observation"):
            obs = light_observation(st, arrays, sizes, t, now, up)
        with jax.named_scope("controller"):
            action, cstate = controller.act(
                st.controller_state, obs, ControllerContext.of(sizes, arrays), params, stream(key, STREAM_CONTROLLER, t)
            )
        st = eqx.tree_at(lambda q: q.controller_state, st, cstate, is_leaf=lambda x: x is None)
        with jax.named_scope("apply"):
            st, alive, y = apply_light_action(st, obs, action, arrays, sizes, layout=layout)

        counts_l = alive.sum(-1).astype(INT)  # [V,Ml]
        prev = st.prev_alive.sum(-1).astype(INT)
        cdep = arrays.cost_deploy[arrays.light_service][None, :]
        crun = arrays.cost_run[arrays.light_service][None, :]
        cost = jnp.sum(cdep * jnp.maximum(counts_l - prev, 0) + crun * counts_l)
        usage = resource_usage(counts_l, arrays.resource[arrays.light_service], arrays.core_usage)
        violated = jnp.any(usage > arrays.capacity + CAPACITY_TOL)

        with jax.named_scope("execute_light"):
            st = execute_light(st, rates, arrays, sizes, now, params.slot_ms, layout=layout)
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
