"""Controller `lbrr`: least-utilised scale-out and round-robin routing (MODEL.md §8,
docs/SEMANTICS.md §6), in JAX with static shapes."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
from jax import lax

from edgefm.interfaces import AbstractController
from edgefm.sim.types import Action, resource_usage


@dataclass
class LBRRConfig:
    pass


def node_utilisation(usage, capacity):
    """[V] mean over resources with R > 0 of usage / R."""
    has = capacity > 0
    ratio = jnp.where(has, usage / jnp.where(has, capacity, 1.0), 0.0)
    return ratio.sum(1) / jnp.maximum(has.sum(1), 1)


class LBRRController(AbstractController):
    """Adds light instances on the least-utilised feasible node until the free admission slots cover
    the waiting stages, routes stages round-robin, and stops instances left idle."""

    name = "lbrr"
    Config = LBRRConfig
    description = "least-utilised scale-out, round-robin routing (baseline)"

    def init(self, ctx):
        sizes, _ = ctx
        return jnp.zeros(sizes.Ml, jnp.int32)  # round-robin pointer per light service

    def act(self, state, obs, ctx, params, key):
        sizes, arrays = ctx
        V, Ml, X = sizes.V, sizes.Ml, sizes.X
        y_max = params.y_max
        light_r = arrays.resource[arrays.light_service]  # [Ml,K]
        occ = obs.occupancy
        waiting = jnp.zeros(Ml, jnp.int32).at[obs.light].add(obs.valid.astype(jnp.int32))

        def scale_out(ml, live):
            def body(carry):
                live, free, _ = carry
                counts = live.sum(-1)
                usage = resource_usage(counts, light_r, arrays.core_usage)
                feasible = jnp.all(usage + light_r[ml] <= arrays.capacity, axis=1) & (counts[:, ml] < X)
                util = jnp.where(feasible, node_utilisation(usage, arrays.capacity), jnp.inf)
                v = jnp.argmin(util)
                k = jnp.argmin(live[v, ml])  # lowest free slot
                ok = feasible.any()
                live = live.at[v, ml, k].set(live[v, ml, k] | ok)
                return live, free + jnp.where(ok, y_max, 0), ok

            free0 = jnp.sum(jnp.where(live[:, ml], y_max - occ[:, ml], 0))
            live, _, _ = lax.while_loop(
                lambda c: (c[1] < waiting[ml]) & c[2], body, (live, free0, jnp.array(True))
            )
            return live

        live = lax.fori_loop(0, Ml, scale_out, occ > 0)

        VX = V * X
        count = obs.valid.sum()
        pos = jnp.arange(VX)

        def route(carry):
            i, occ2, ptr, assign = carry
            ml = obs.light[i]
            cand = (live[:, ml, :] & (occ2[:, ml, :] < y_max)).reshape(VX)
            order = jnp.where(cand, (pos - ptr[ml]) % VX, VX)
            j = jnp.argmin(order)
            ok = obs.valid[i] & cand.any()
            v, k = j // X, j % X
            occ2 = occ2.at[v, ml, k].add(ok.astype(occ2.dtype))
            ptr = ptr.at[ml].set(jnp.where(ok, (j + 1) % VX, ptr[ml]))
            assign = assign.at[i].set(jnp.where(ok, (v * Ml + ml) * X + k, -1))
            return i + 1, occ2, ptr, assign

        _, occ2, ptr, assign = lax.while_loop(
            lambda c: c[0] < count, route, (0, occ, state, jnp.full(sizes.Lw, -1, jnp.int32))
        )
        action = Action(
            alive=occ2 > 0,
            assign=assign,
            parallelism=jnp.full((V, Ml), y_max, jnp.int32),
        )
        return action, ptr
