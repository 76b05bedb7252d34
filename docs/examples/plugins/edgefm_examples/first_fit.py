"""A controller plugin: `first_fit`, one light instance per service on the first node with room."""

from __future__ import annotations

import jax.numpy as jnp
from jax import lax

from edgefm import hookimpl
from edgefm.interfaces import AbstractController, check_number, static, traced
from edgefm.types import CAPACITY_TOL, Action, rank_in_group, resource_usage


class FirstFitController(AbstractController):
    """A light service with waiting stages and no instance gets one, in instance slot 0 of the first
    node (in node order) that is up and has room for it; an instance, once started, is kept while its
    node is up. Each waiting stage goes to its service's instance while that has room (y - occupancy)."""

    name = "first_fit"  # controller=first_fit
    description = "one light instance per service on the first node with room (example plugin)"

    headroom: float = traced(0.0)  # fraction of every node's capacity kept free of light instances
    servers_only: bool = static(True)  # start instances on edge servers only (static: another program)

    def __check_init__(self):
        check_number(self.headroom, "controller.headroom", "a number in [0, 1)", lambda x: 0 <= x < 1)

    def act(self, state, obs, ctx, params, key):  # traced: pure JAX, static shapes
        V, Ml, X = ctx.V, ctx.Ml, ctx.X
        up = jnp.ones(V, bool) if obs.node_up is None else obs.node_up  # [V]; None: nothing fails
        allowed = (up & ctx.node_is_server) if self.servers_only else up
        limit = ctx.capacity * (1.0 - self.headroom)  # [V,K]
        # instances kept: those of the previous slot and any still holding jobs, on nodes that are up
        live = (obs.exists | (obs.occupancy > 0)) & up[:, None, None]  # [V,Ml,X]

        def start(ml, live):  # one service at a time, so each start sees the ones before it
            usage = resource_usage(live.sum(-1), ctx.light_resource, obs.core_usage)  # [V,K] incl. core
            fits = allowed & jnp.all(usage + ctx.light_resource[ml] <= limit + CAPACITY_TOL, axis=1)  # Eq. 8
            needed = (obs.waiting_total[ml] > 0) & ~live[:, ml, 0].any() & fits.any()
            v = jnp.argmax(fits)  # the first node that fits
            return live.at[v, ml, 0].set(live[v, ml, 0] | needed)

        live = lax.fori_loop(0, Ml, start, live)

        # routing: stage i of service ml to the instance in slot 0 of the first node that has one
        has = live[:, :, 0]  # [V,Ml]
        node = jnp.argmax(has, axis=0)  # [Ml]
        room = jnp.where(has.any(0), params.y_max - obs.occupancy[node, jnp.arange(Ml), 0], 0)  # [Ml]
        v = node[obs.light]  # [Lw] the node of each stage's instance
        reachable = jnp.take_along_axis(obs.data_ready, v[:, None], axis=1)[:, 0] < jnp.inf  # input can get there
        wanted = obs.valid & has.any(0)[obs.light] & reachable
        nth = rank_in_group(obs.light, wanted, Ml)  # 0, 1, ... among the wanted stages of its service
        send = wanted & (nth < room[obs.light])  # never more new jobs than the instance has room for
        action = Action(
            alive=live,
            assign=jnp.where(send, (v * Ml + obs.light) * X + 0, -1),  # flat instance (v, ml, slot 0)
            parallelism=jnp.full((V, Ml), params.y_max),
            # rank left out: the engine numbers each instance's new jobs in list order
        )
        return action, state


@hookimpl
def edgefm_register_controllers():
    return [FirstFitController]
