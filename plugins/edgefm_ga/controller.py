"""Controller `ga`: a genetic algorithm over the light instance counts at each slot boundary
(MODEL.md §8, docs/SEMANTICS.md §10), in JAX with static shapes.

The genome of one slot is the increment d[v, ml] ∈ {0..max_add} of light instances of service ml on
node v over the busy ones (the count is x = busy + d). A population of genomes is one batch axis
(`vmap`); each generation keeps the elite half and refills the rest with one-point crossover of elite
parents and per-gene mutation, then repairs every child to feasibility. A genome's fitness routes the
waiting light stages with a fixed greedy rule (`route`) and adds the slot's light cost, the predicted
stage delays and the predicted deadline excess. The best genome of the last generation is deployed.

The pure functions `prepare`, `repair`, `route`, `fitness` and `evolve` are public so that tests (and
readers) can check each piece on a hand-built observation.
"""

from __future__ import annotations

import math
import numbers

import equinox as eqx
import jax
import jax.numpy as jnp
from jax import lax

from edgefm.errors import ConfigError
from edgefm.interfaces import AbstractController, check_number, static, traced
from edgefm.io.variables import Variable, register_variable
from edgefm.types import CAPACITY_TOL, Action, rank_in_group

INT = jnp.int64  # x64 is on (import edgefm)
FIT_TOL = 0.5 * CAPACITY_TOL  # repair: float round-off never rejects an exact fit, nor passes Eq. 8's check

register_variable(
    Variable(
        "ga_fitness",
        ("instance", "realisation", "slot"),
        "price units + ms",
        "controller ga: fitness of the deployed genome (slot light cost + predicted stage delays + "
        "predicted deadline excess; docs/SEMANTICS.md §10)",
        "float64",
    )
)


def elite_count(population: int, elite_fraction: float) -> int:
    """E = ⌊population · elite_fraction⌋ (with a 1e-9 guard against float round-off)."""
    return int(math.floor(population * elite_fraction + 1e-9))


class Problem(eqx.Module):
    """Everything a genome's repair and fitness need at one boundary (one realisation)."""

    occ: jax.Array  # [V,Ml,X] int: occupancy of each light instance slot at the boundary
    backlog: jax.Array  # [V,Ml,X] ms: predicted time from now until the instance's FIFO is empty
    busy: jax.Array  # [V,Ml] int: instances with occupancy > 0
    free_rank: jax.Array  # [V,Ml,X] int: rank of slot k among the idle slots of (v, ml); X for busy ones
    prev: jax.Array  # [V,Ml] int: instances in the previous slot
    has_waiting: jax.Array  # [Ml] bool: the service has waiting stages
    room: jax.Array  # [V,K]: R_v - core usage - needs of the busy light instances
    need: jax.Array  # [Ml,K]: r_m of each light service
    c_dp: jax.Array  # [Ml] price units per started instance
    c_run: jax.Array  # [Ml] price units per instance and slot (c_mt + c_pl)
    tau: jax.Array  # [Ml] ms: a_m / E f_m
    y: jax.Array  # [] int: occupancy bound of an instance (y_max)
    # the first L waiting stages of each service, in queue order (columns l >= count are padding)
    sidx: jax.Array  # [Ml,L] int: position in the observation's list, Lw for padding
    svalid: jax.Array  # [Ml,L] bool
    wait: jax.Array  # [L,Ml,V*X] ms: max(0, data_ready at the instance's node - now)
    defer: jax.Array  # [Ml,L] ms: 2 D_n + Δt, the delay charged to a deferred stage
    slack: jax.Array  # [Ml,L] ms: arrival + D_n - now (excess = max(0, delay - slack))
    n_stages: jax.Array  # [] int: largest number of considered stages over the services
    up: jax.Array | None = None  # [V] bool: nodes up in this slot (SEMANTICS §12; None: all)


def prepare(obs, ctx, y_max, slot_ms, L: int, free=None) -> Problem:
    """Build the `Problem` of one boundary from the engine's observation and the controller state
    ``free`` [V,Ml,X] (predicted finish time of the last job given to each instance; None: zeros)."""
    Ml, X = ctx.Ml, ctx.X
    Lw = obs.valid.shape[0]
    occ = obs.occupancy.astype(INT)
    is_busy = occ > 0
    busy = is_busy.sum(-1)
    if free is None:
        free = jnp.zeros(occ.shape)
    backlog = jnp.where(is_busy, jnp.maximum(free - obs.now, 0.0), 0.0)
    free_rank = jnp.where(is_busy, X, jnp.cumsum(~is_busy, axis=-1) - 1)
    need = ctx.light_resource  # [Ml,K]
    room = ctx.capacity - obs.core_usage - jnp.einsum("vl,lk->vk", busy.astype(need.dtype), need)
    tau = ctx.light_work / (ctx.light_shape * ctx.light_scale)
    # rank of each listed stage among the stages of its service, in list order
    j = rank_in_group(obs.light, obs.valid, Ml)
    row = jnp.where(obs.valid & (j < L), obs.light, Ml)
    sidx = jnp.full((Ml, L), Lw, INT).at[row, jnp.clip(j, 0, L - 1)].set(jnp.arange(Lw), mode="drop")
    svalid = sidx < Lw
    s = jnp.clip(sidx, 0, Lw - 1)
    now = obs.now
    wait = jnp.maximum(obs.data_ready[s] - now, 0.0)  # [Ml,L,V]
    wait = jnp.where(svalid[..., None], wait, 0.0)
    wait = jnp.repeat(wait, X, axis=-1).transpose(1, 0, 2)  # [L,Ml,V*X]: instance i = v*X + k
    return Problem(
        occ=occ,
        backlog=backlog,
        busy=busy,
        free_rank=free_rank,
        prev=obs.prev_count.astype(INT),
        has_waiting=obs.waiting_total > 0,
        room=room,
        need=need,
        c_dp=ctx.light_cost_deploy,
        c_run=ctx.light_cost_run,
        tau=tau,
        y=jnp.asarray(y_max, INT),
        sidx=sidx,
        svalid=svalid,
        wait=wait,
        defer=2.0 * obs.deadline[s] + slot_ms,
        slack=obs.arrival[s] + obs.deadline[s] - now,
        n_stages=svalid.sum(1).max(),
        up=obs.node_up,
    )


def repair(pb: Problem, d, max_add: int):
    """A feasible genome from any [V,Ml] genome (SEMANTICS §10, repair): clip to {0..max_add}; no
    increment for services without waiting stages; at most X instances per (v, ml); on each node keep
    the longest prefix of the increment units, in the order (ml ascending, unit), whose cumulative
    needs fit the room left by the core and busy light instances (within `FIT_TOL`)."""
    V, Ml = d.shape
    X = pb.occ.shape[-1]
    d = jnp.clip(d.astype(INT), 0, max_add)
    d = jnp.where(pb.has_waiting[None, :], d, 0)
    if pb.up is not None:  # no new instance on a down node (SEMANTICS §12)
        d = jnp.where(pb.up[:, None], d, 0)
    d = jnp.minimum(d, X - pb.busy)
    present = jnp.arange(max_add)[None, None, :] < d[:, :, None]  # [V,Ml,A]
    use = present[..., None] * pb.need[None, :, None, :]  # [V,Ml,A,K]
    cum = jnp.cumsum(use.reshape(V, Ml * max_add, -1), axis=1)
    # a resource no kept unit needs (cum == 0) is not checked: only the new instances are repaired
    fits = jnp.all((cum <= pb.room[:, None, :] + FIT_TOL) | (cum == 0.0), axis=-1)  # [V,Ml*A], a prefix
    return (present.reshape(V, Ml * max_add) & fits).reshape(V, Ml, max_add).sum(-1).astype(INT)


def alive_of(pb: Problem, d):
    """[V,Ml,X] bool: the busy instances plus d[v, ml] new ones in the lowest idle slots."""
    return (pb.occ > 0) | (pb.free_rank < d[:, :, None])


def slot_cost(pb: Problem, d):
    """C_light of the slot for counts x = busy + d."""
    x = pb.busy + d
    return jnp.sum(pb.c_dp[None, :] * jnp.maximum(x - pb.prev, 0) + pb.c_run[None, :] * x)


def route(pb: Problem, d, detail: bool = False):
    """Route the considered stages for the (repaired) genome d (SEMANTICS §10, routing).

    Each service's stages, in queue order, go to the alive instance of the service with occupancy
    below y that gives the earliest predicted finish: delay = max(backlog_i, wait_s(v_i)) + a/E f
    (from now); the instance's backlog becomes that delay. A stage whose best delay is not below
    2 D_n + Δt is deferred. Returns (fitness, delay [Ml,L]) or, with ``detail``, also (inst [Ml,L] =
    v*X + k or -1, rank [Ml,L] = jobs of this boundary placed before it on the same instance,
    backlog [Ml,V*X] after routing)."""
    V, Ml, X = pb.occ.shape
    VX = V * X
    L = pb.sidx.shape[1]
    alive = alive_of(pb, d).transpose(1, 0, 2).reshape(Ml, VX)
    occ0 = pb.occ.transpose(1, 0, 2).reshape(Ml, VX)
    back0 = pb.backlog.transpose(1, 0, 2).reshape(Ml, VX)
    iota = jnp.arange(VX)[None, :]
    svalid, defer = pb.svalid.T, pb.defer.T  # [L,Ml]: one row per step

    def body(l, carry):
        o, back, delay, inst, rank = carry
        score = jnp.maximum(back, pb.wait[l]) + pb.tau[:, None]  # [Ml,VX]
        score = jnp.where(alive & (o < pb.y), score, jnp.inf)
        i = jnp.argmin(score, axis=1)  # ties: lowest flat index v*X + k
        best = jnp.min(score, axis=1)
        ok = svalid[l] & (best < defer[l])
        hit = (iota == i[:, None]) & ok[:, None]  # [Ml,VX] the chosen instance, if placed
        delay = delay.at[l].set(jnp.where(ok, best, defer[l]))
        if detail:
            inst = inst.at[l].set(jnp.where(ok, i, -1))
            rank = rank.at[l].set(jnp.where(ok, jnp.sum(jnp.where(hit, o - occ0, 0), axis=1), -1))
        return o + hit, jnp.where(hit, best[:, None], back), delay, inst, rank

    init = (occ0, back0, defer, jnp.full((L, Ml), -1, INT), jnp.full((L, Ml), -1, INT))
    _, back, delay, inst, rank = lax.fori_loop(0, pb.n_stages, body, init)
    delay, inst, rank = delay.T, inst.T, rank.T
    excess = jnp.maximum(delay - pb.slack, 0.0)
    fit = slot_cost(pb, d) + jnp.sum(jnp.where(pb.svalid, delay + excess, 0.0))
    return (fit, delay, inst, rank, back) if detail else (fit, delay)


def fitness(pb: Problem, d):
    """Fitness (lower is better) of the repaired genome d."""
    return route(pb, d)[0]


def evolve(pb: Problem, key, mutation, *, population: int, generations: int, elite: int, max_add: int):
    """The GA of one boundary (SEMANTICS §10): returns (best genome [V,Ml], its fitness, the final
    population [P,V,Ml] and its fitness [P]). ``population``, ``elite`` and ``max_add`` are static;
    ``mutation`` and ``generations`` may be traced (the controller passes a static ``generations``)."""
    V, Ml = pb.busy.shape
    G = V * Ml
    P, E = population, elite
    C = P - E

    def pick(u, n):  # u ~ U[0, 1) -> uniform integer in 0..n-1
        return jnp.minimum(jnp.floor(u * n), n - 1).astype(INT)

    k_init, k_gen = jax.random.split(key)
    draw = pick(jax.random.uniform(k_init, (P, V, Ml)), max_add + 1)
    pop = jax.vmap(lambda g: repair(pb, g, max_add))(draw.at[0].set(0))
    fit = jax.vmap(lambda g: fitness(pb, g))(pop)

    def generation(g, carry):
        pop, fit = carry
        order = jnp.argsort(fit, stable=True)  # ties: lower index
        elite_pop, elite_fit = pop[order[:E]], fit[order[:E]]
        # one uniform draw per generation: parents, cut, mutation mask, mutated values
        u = jax.random.uniform(jax.random.fold_in(k_gen, g), (C, 3 + 2 * G))
        p1, p2 = pick(u[:, 0], E), pick(u[:, 1], E)
        cut = 1 + pick(u[:, 2], max(G - 1, 1))  # in 1..G-1 (1 when G = 1): child = p1[:cut] ++ p2[cut:]
        flat = elite_pop.reshape(E, G)
        child = jnp.where(jnp.arange(G)[None, :] < cut[:, None], flat[p1], flat[p2])
        mutate = u[:, 3:3 + G] < mutation
        value = pick(u[:, 3 + G:], max_add + 1)
        child = jnp.where(mutate, value, child)
        child = jax.vmap(lambda c: repair(pb, c, max_add))(child.reshape(C, V, Ml))
        child_fit = jax.vmap(lambda c: fitness(pb, c))(child)
        return jnp.concatenate([elite_pop, child]), jnp.concatenate([elite_fit, child_fit])

    pop, fit = lax.fori_loop(0, generations, generation, (pop, fit))
    b = jnp.argmin(fit)  # ties: lowest index (the elites come first, best first)
    return pop[b], fit[b], pop, fit


class GAController(AbstractController):
    """Evolves the light instance counts of each slot with a small genetic algorithm and routes the
    waiting light stages greedily on the best counts."""

    name = "ga"
    description = "genetic algorithm over light instance counts per slot (baseline)"

    # Only `mutation` is traced; the others fix shapes or loop bounds (static).
    population: int = static(10)  # genomes per generation (static: the population axis)
    generations: int = static(30)  # generations per slot (static: the loop bound)
    mutation: float = traced(0.1)  # per-gene probability of resampling the increment (traced)
    max_add: int = static(3)  # largest increment per (node, light service) and slot (static)
    elite_fraction: float = static(0.5)  # elite = floor(population * elite_fraction) genomes (static)
    max_stages_per_service: int = static(64)  # waiting stages of each light service considered (static)

    def __check_init__(self):
        def integer(name, low):
            value = getattr(self, name)
            if (isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value)
                    or int(value) != value or value < low):
                raise ConfigError(f"controller.{name}", value, f"an integer >= {low}")

        integer("population", 2)
        integer("generations", 0)
        integer("max_add", 1)
        integer("max_stages_per_service", 1)
        check_number(self.mutation, "controller.mutation", "a probability in [0, 1]", lambda x: 0.0 <= x <= 1.0)
        f = self.elite_fraction
        if isinstance(f, bool) or not isinstance(f, numbers.Real) or not 0.0 < f < 1.0:
            raise ConfigError("controller.elite_fraction", f, "a number in (0, 1)")
        e = elite_count(int(self.population), float(f))
        if not 1 <= e <= int(self.population) - 1:
            raise ConfigError(
                "controller.elite_fraction", f,
                f"a fraction whose elite floor(population x fraction) is between 1 and population - 1 "
                f"(population = {self.population} gives {e})",
            )

    @property
    def elite(self) -> int:
        return elite_count(int(self.population), float(self.elite_fraction))

    def init(self, ctx):
        return jnp.zeros((ctx.V, ctx.Ml, ctx.X))  # predicted finish of each instance's FIFO (ms)

    def problem(self, state, obs, ctx, params) -> Problem:
        return prepare(obs, ctx, params.y_max, params.slot_ms, int(self.max_stages_per_service), state)

    def search(self, pb: Problem, params, key):
        return evolve(
            pb, key, self.mutation, population=int(self.population),
            generations=int(self.generations), elite=self.elite, max_add=int(self.max_add),
        )

    def act(self, state, obs, ctx, params, key):
        V, Ml, X = ctx.V, ctx.Ml, ctx.X
        Lw = obs.valid.shape[0]
        pb = self.problem(state, obs, ctx, params)
        best, _, _, _ = self.search(pb, params, key)
        fit, _, inst, rank, back = route(pb, best, detail=True)
        ml = jnp.broadcast_to(jnp.arange(Ml)[:, None], inst.shape)
        flat = jnp.where(inst >= 0, ((inst // X) * Ml + ml) * X + inst % X, -1)
        pos = jnp.where(pb.svalid, pb.sidx, Lw)
        action = Action(
            alive=alive_of(pb, best),
            assign=jnp.full(Lw, -1, INT).at[pos].set(flat, mode="drop"),
            rank=jnp.zeros(Lw, INT).at[pos].set(jnp.maximum(rank, 0), mode="drop"),
            parallelism=jnp.full((V, Ml), params.y_max, INT),
            info={"ga_fitness": fit},
        )
        free = obs.now + back.reshape(Ml, V, X).transpose(1, 0, 2)
        return action, free
