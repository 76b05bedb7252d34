"""Controller `lbrr`: least-utilised scale-out and round-robin routing (MODEL.md §8,
docs/SEMANTICS.md §6), in JAX with static shapes."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from edgefm.interfaces import AbstractController
from edgefm.types import Action, rank_in_group, ranks_in_list_order, resource_usage


def node_utilisation(usage, capacity):
    """[V] mean over resources with R > 0 of usage / R."""
    has = capacity > 0
    ratio = jnp.where(has, usage / jnp.where(has, capacity, 1.0), 0.0)
    return ratio.sum(1) / jnp.maximum(has.sum(1), 1)


class LBRRController(AbstractController):
    """Adds light instances on the least-utilised feasible node until the free admission slots cover
    the waiting stages, routes stages round-robin, and stops instances left idle."""

    name = "lbrr"
    description = "least-utilised scale-out, round-robin routing (baseline)"

    def init(self, ctx):
        return jnp.zeros(ctx.Ml, jnp.int64)  # round-robin pointer per light service

    def act(self, state, obs, ctx, params, key):
        V, Ml, X = ctx.V, ctx.Ml, ctx.X
        y_max = params.y_max
        light_r = ctx.light_resource  # [Ml,K]
        occ = obs.occupancy
        waiting = obs.waiting_total  # all waiting stages, also those beyond the head shown
        up = jnp.ones(V, bool) if obs.node_up is None else obs.node_up  # SEMANTICS §12

        def scale_out(ml, live):
            def body(carry):
                live, free, _ = carry
                counts = live.sum(-1)
                usage = resource_usage(counts, light_r, obs.core_usage)
                feasible = jnp.all(usage + light_r[ml] <= ctx.capacity, axis=1) & (counts[:, ml] < X) & up
                util = jnp.where(feasible, node_utilisation(usage, ctx.capacity), jnp.inf)
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
        if obs.node_up is None:
            return self._route(state, obs, live, occ, y_max, ctx)
        # with failures a stage may be unable to reach some nodes: then route one stage at a time
        unreachable = jnp.any(obs.valid[:, None] & ~(obs.data_ready < jnp.inf))
        return lax.cond(unreachable, lambda *a: self._route_sequential(*a, ctx), lambda *a: self._route(*a, ctx),
                        state, obs, live, occ, y_max)

    @staticmethod
    def _route_sequential(state, obs, live, occ, y_max, ctx):
        """Round-robin one stage at a time, skipping instances the stage's input cannot reach
        (SEMANTICS §12); the same decisions as `_route` when every node is reachable."""
        V, Ml, X = ctx.V, ctx.Ml, ctx.X
        VX = V * X

        def body(i, carry):
            room, ptr, assign = carry
            ml = obs.light[i]
            order = (ptr[ml] + jnp.arange(VX)) % VX  # instances v*X + k in visiting order
            v, k = order // X, order % X
            fits = (room[v, ml, k] > 0) & (obs.data_ready[i, v] < jnp.inf)
            ok = obs.valid[i] & fits.any()
            inst = order[jnp.argmax(fits)]
            vi, ki = inst // X, inst % X
            assign = assign.at[i].set(jnp.where(ok, (vi * Ml + ml) * X + ki, -1))
            room = room.at[vi, ml, ki].add(-ok.astype(room.dtype))
            ptr = ptr.at[ml].set(jnp.where(ok, (inst + 1) % VX, ptr[ml]))
            return room, ptr, assign

        L = obs.valid.shape[0]
        room0 = jnp.where(live, y_max - occ, 0)
        _, ptr, assign = lax.fori_loop(0, L, body, (room0, state, jnp.full(L, -1, jnp.int64)))
        ok = assign >= 0
        flat = jnp.clip(assign, 0)
        occ2 = occ.reshape(-1).at[jnp.where(ok, flat, V * Ml * X)].add(1, mode="drop").reshape(occ.shape)
        action = Action(
            alive=occ2 > 0,
            assign=assign,
            rank=ranks_in_list_order(assign),
            parallelism=jnp.full((V, Ml), y_max, jnp.int64),
        )
        return action, ptr

    @staticmethod
    def _route(state, obs, live, occ, y_max, ctx):
        V, Ml, X = ctx.V, ctx.Ml, ctx.X

        # Round-robin, vectorised: with the pointer at p, instances are visited in the cyclic order
        # p, p+1, ...; a stage goes to the next instance with room. Equivalently, in round c the
        # instances whose room exceeds c each take one stage, in cyclic order; so the j-th waiting
        # stage of a service falls in round c_j = max{c : sum_i min(room_i, c) <= j}, at position
        # j - sum_i min(room_i, c_j) among the instances with room > c_j.
        VX, Q = V * X, ctx.Q
        perm = (state[:, None] + jnp.arange(VX)[None, :]) % VX  # [Ml,VX] cyclic order per service
        room_flat = jnp.where(live, y_max - occ, 0).transpose(1, 0, 2).reshape(Ml, VX)
        room = jnp.take_along_axis(room_flat, perm, axis=1)  # [Ml,VX] in visiting order
        rounds = jnp.arange(Q + 1)
        filled = jnp.minimum(room[:, None, :], rounds[None, :, None]).sum(-1)  # [Ml,Q+1]
        takers = room[:, None, :] > rounds[None, :Q, None]  # [Ml,Q,VX]
        nth = jnp.cumsum(takers, axis=-1) - 1  # position of each taker within its round
        # table[ml, c, q] = visiting index of the q-th taker of round c
        ml_i, c_i, i_i = jnp.meshgrid(jnp.arange(Ml), jnp.arange(Q), jnp.arange(VX), indexing="ij")
        table = jnp.zeros((Ml, Q, VX + 1), jnp.int64).at[
            ml_i, c_i, jnp.where(takers, nth, VX)
        ].set(i_i)
        j = rank_in_group(obs.light, obs.valid, Ml)  # rank in service
        cum = filled[obs.light]  # [L,Q+1]
        c = jnp.clip(jnp.sum(cum[:, 1:] <= j[:, None], axis=1), 0, Q - 1)
        ok = obs.valid & (j < cum[:, Q])
        q = j - jnp.take_along_axis(cum, c[:, None], axis=1)[:, 0]
        visit = table[obs.light, c, jnp.clip(q, 0, VX)]
        inst = perm[obs.light, jnp.clip(visit, 0, VX - 1)]  # v*X + k
        v, k = inst // X, inst % X
        assign = jnp.where(ok, (v * Ml + obs.light) * X + k, -1)
        occ2 = occ.at[jnp.where(ok, v, V), obs.light, k].add(1, mode="drop")
        # the pointer moves past the instance that took the service's last stage
        last = jnp.where(ok, j, -1)
        last_of = jnp.full(Ml, -1, jnp.int64).at[obs.light].max(last)
        is_last = ok & (j == last_of[obs.light])
        ptr = state.at[jnp.where(is_last, obs.light, Ml)].set((inst + 1) % VX, mode="drop")
        action = Action(
            alive=occ2 > 0,
            assign=assign,
            rank=c,  # one stage per instance per round
            parallelism=jnp.full((V, Ml), y_max, jnp.int64),
        )
        return action, ptr
