"""Controllers `proposed` and `propavg`: Algorithm 1 of the paper (MODEL.md §7.4), exactly as pinned
down by docs/SEMANTICS.md §9, in JAX with static shapes.

Layout of one boundary (per realisation; the engine adds the batch axes):

- `update_queues`: the virtual queues H[B] of the task buffer (the controller state).
- `stage_tables`: the first L = `max_stages_per_service` waiting stages of every light service, in
  queue order, as [Ml, L] tables (queue index, validity, data-ready delay per node [Ml, L, V],
  weight w = πH, deferral cost c = 2D + Δt), and n[Ml] = how many are valid.
- `delay_table`: g[Ml, Q+1] for y = 0 … Q (Q = the static FIFO length >= the traced y_max).
- `evaluate_service`: Φ_m for one set X_m of instances of service m: a `lax.while_loop` over the
  n_m stages of m (sequential: each placement changes the occupancies seen by the next stage) with
  the V·X candidate instances vectorised, then the re-score with the final occupancies.
- `greedy`: the table Φ_m(X_m + one instance on v) for every (m, v) ([Ml, V]: a vmap over the
  nodes; over the services a loop on the CPU and a vmap elsewhere, `over_services`), then a
  bounded `lax.while_loop` that adds the best feasible pair and recomputes only the changed
  service's row (one vmap over the V nodes).
- `LyapunovController.act`: queues, tables, greedy, final dispatch from Φ_m on the final X.

The time goes into `evaluate_service`'s loop: (Ml·(V+1) evaluations vmapped, then V per greedy step,
then Ml for the dispatch) × n_m iterations of a few [V·X]-wide vector operations.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from edgefm.capacity import delay_bound, mean_delay
from edgefm.interfaces import AbstractController, check_choice, check_integer, check_number, preset, static, traced
from edgefm.types import Action, rank_in_group, resource_usage

INT = jnp.int64
TIE_TOL = 1e-9  # §9: absolute tolerance of the per-stage score ties; relative one of the greedy's Δ


INSTANCE_READY = ("none", "drain", "max_input")
CANDIDATES = ("all", "least_occupied")


def _check(c: LyapunovController, group: str = "controller") -> None:
    """The option checks of `LyapunovController.__check_init__` (one-line `ConfigError`s)."""
    check_number(c.V, f"{group}.V", "a finite number >= 0", lambda x: x >= 0)
    check_number(c.epsilon, f"{group}.epsilon", "a number in (0, 1)", lambda x: 0 < x < 1)
    check_number(c.window_ms, f"{group}.window_ms", "a finite number >= 0 (ms; 0 = the slot length)", lambda x: x >= 0)
    check_number(c.pi, f"{group}.pi", "a finite number >= 0", lambda x: x >= 0)
    check_number(c.H_min, f"{group}.H_min", "a finite number >= 0", lambda x: x >= 0)
    check_number(c.effective_capacity, f"{group}.effective_capacity", "1 (g^EC, proposed) or 0 (g^avg, propavg)",
                 lambda x: x in (0.0, 1.0))
    check_integer(c.max_steps, f"{group}.max_steps", 0)
    check_integer(c.max_stages_per_service, f"{group}.max_stages_per_service", 1)
    check_choice(c.instance_ready, f"{group}.instance_ready", INSTANCE_READY)
    check_choice(c.candidates, f"{group}.candidates", CANDIDATES)


class StageTables(NamedTuple):
    """The first L waiting stages of each light service, in queue order."""

    idx: jax.Array  # [Ml,L] int: index into the observation's waiting list (Lw = none)
    valid: jax.Array  # [Ml,L] bool
    n: jax.Array  # [Ml] int: valid entries (a prefix)
    delay: jax.Array  # [Ml,L,V] ms: max(0, data_ready(v) - now)
    weight: jax.Array  # [Ml,L] π·H of the stage's task
    defer: jax.Array  # [Ml,L] ms: 2·D_n + Δt


class ServiceData(NamedTuple):
    """Everything Φ_m needs about one light service m (the slices of the per-boundary tables)."""

    delay: jax.Array  # [L,V]
    weight: jax.Array  # [L]
    defer: jax.Array  # [L]
    valid: jax.Array  # [L] bool
    n: jax.Array  # [] int
    g: jax.Array  # [Q+1]
    cost_deploy: jax.Array  # [] c_dp
    cost_run: jax.Array  # [] c_mt + c_pl
    prev: jax.Array  # [V] instances of (v, m) in the previous slot
    ready: jax.Array | None = None  # [V,X] ms: R_i - now of each instance at the boundary (None: 0, §9)


def delay_table(ctx, params, Q: int, c):
    """[Ml, Q+1] g(y) for y = 0 … Q of every light service (g(0) = 0): g^EC where the traced
    ``c.effective_capacity`` is 1 (`proposed`), g^avg where it is 0 (`propavg`), so both
    controllers share one compiled program. ``ctx`` is the `ControllerContext`, ``c`` the
    `LyapunovController`."""
    dt = params.slot_ms
    window = jnp.where(c.window_ms > 0, c.window_ms, dt)
    a = ctx.light_work[:, None]
    k = ctx.light_shape[:, None]
    beta = ctx.light_scale[:, None]
    y = jnp.arange(Q + 1, dtype=jnp.float64)[None, :]
    g_ec = delay_bound(y, a, k, beta, c.epsilon, dt, window)
    return jnp.where(c.effective_capacity > 0, g_ec, mean_delay(y, a, k, beta, dt))


def update_queues(H_prev, obs, deadline_of_type, params, H_min):
    """[B] H_j(t) (SEMANTICS §9): H_min at the arrival boundary, then
    max(H_min, H_j(t-1) + ((t-1)Δt - arrival_j) - D_n)."""
    age_prev = (obs.now - params.slot_ms) - obs.task_arrival
    grown = jnp.maximum(H_min, H_prev + age_prev - deadline_of_type[obs.task_type_buf])
    H = jnp.where(obs.task_arrival == obs.now, H_min, grown)
    return jnp.where(obs.task_alive, H, H_min)


def stage_tables(obs, H, params, Ml: int, L: int, pi) -> StageTables:
    Lw = obs.valid.shape[0]
    # rank j of each waiting stage among those of its service, then idx[m, j] = its list position
    j = rank_in_group(obs.light, obs.valid, Ml)
    ok = obs.valid & (j < L)
    idx = jnp.full((Ml, L), Lw, INT).at[jnp.where(ok, obs.light, Ml), jnp.where(ok, j, 0)].set(
        jnp.arange(Lw, dtype=INT), mode="drop")  # [Ml,L], in queue order
    valid = idx < Lw
    i = jnp.clip(idx, 0, Lw - 1)
    delay = jnp.maximum(0.0, obs.data_ready[i] - obs.now)  # [Ml,L,V]
    weight = pi * H[obs.buffer_slot[i]]
    defer = 2.0 * obs.deadline[i] + params.slot_ms
    return StageTables(
        idx=idx,
        valid=valid,
        n=valid.sum(1).astype(INT),
        delay=jnp.where(valid[..., None], delay, 0.0),
        weight=jnp.where(valid, weight, 0.0),
        defer=jnp.where(valid, defer, 0.0),
    )


def evaluate_service(d: ServiceData, in_x, occ0, y_max, V_weight, raise_ready: bool = False,
                     candidates: str = "all"):
    """Φ_m(X_m) (SEMANTICS §9).

    in_x [V,X] bool: the instances of X_m; occ0 [V,X] int: their occupancy at the boundary (0 for
    added ones). ``raise_ready`` (static; `instance_ready: max_input`): a stage placed on an instance
    raises its R_i to the stage's data-ready time. ``candidates`` (static): "all" instances with
    room, or "least_occupied": per node the member with the lowest occupancy (then lowest k).
    Returns (phi, placed [L] flat v·X+k or -1, rank [L], occ_final [V,X]).
    """
    Vn, X = in_x.shape
    L = d.weight.shape[0]
    Q = d.g.shape[0] - 1
    VX = Vn * X
    member = in_x.reshape(VX)
    node = jnp.arange(VX) // X
    flat = jnp.arange(VX, dtype=INT)
    big = jnp.iinfo(INT).max
    o_start = jnp.where(member, occ0.reshape(VX), 0).astype(INT)
    wait0 = jnp.zeros(VX) if d.ready is None else d.ready.reshape(VX)

    def allowed(o):
        """[VX] bool: the instances that may take the next stage."""
        room = member & (o < y_max)
        if candidates == "all":
            return room
        # per node, the member of lowest occupancy, ties the lowest k (one per node)
        key = jnp.where(member, o * X + flat % X, big).reshape(Vn, X)
        first = jnp.argmin(key, axis=1)
        least = jnp.zeros((Vn, X), bool).at[jnp.arange(Vn), first].set(True).reshape(VX)
        return room & least

    def body(carry):
        s, o, wait, placed, rank = carry
        cand = allowed(o)
        here = d.delay[s][node]
        score = jnp.maximum(here, wait) + d.g[jnp.clip(o + 1, 0, Q)]
        score = jnp.where(cand, score, jnp.inf)
        best = jnp.min(score)
        tie = cand & (score <= best + TIE_TOL)
        # ties: lowest occupancy, then lowest flat index (all); lowest node (least_occupied: one per node)
        key = jnp.where(tie, (o * VX + flat) if candidates == "all" else flat, big)
        i = jnp.argmin(key)
        place = d.valid[s] & cand.any() & (best < d.defer[s])
        placed = placed.at[s].set(jnp.where(place, i, -1))
        rank = rank.at[s].set(jnp.where(place, o[i] - o_start[i], -1))
        o = o.at[i].add(place.astype(INT))
        if raise_ready:
            wait = wait.at[i].max(jnp.where(place, here[i], 0.0))
        return s + 1, o, wait, placed, rank

    init = (jnp.zeros((), INT), o_start, wait0, jnp.full(L, -1, INT), jnp.full(L, -1, INT))
    _, o, wait, placed, rank = lax.while_loop(lambda c: c[0] < d.n, body, init)
    ok = placed >= 0
    pc = jnp.clip(placed, 0, VX - 1)
    d_in = jnp.take_along_axis(d.delay, node[pc][:, None], axis=1)[:, 0]
    d_hat = jnp.maximum(d_in, wait[pc]) + d.g[jnp.clip(o[pc], 0, Q)]
    terms = jnp.where(ok, d.weight * d_hat, jnp.where(d.valid, d.weight * d.defer, 0.0))
    x = in_x.sum(1).astype(d.prev.dtype)  # [V]
    cost = jnp.sum(d.cost_deploy * jnp.maximum(0, x - d.prev) + d.cost_run * x)
    phi = V_weight * cost + jnp.sum(terms)
    return phi, placed, rank, o.reshape(Vn, X)


def _service_data(tabs: StageTables, g, cost_deploy, cost_run, prev_count, m, ready=None) -> ServiceData:
    return ServiceData(
        delay=tabs.delay[m], weight=tabs.weight[m], defer=tabs.defer[m], valid=tabs.valid[m], n=tabs.n[m],
        g=g[m], cost_deploy=cost_deploy[m], cost_run=cost_run[m], prev=prev_count[:, m],
        ready=None if ready is None else ready[m],
    )


class Options(NamedTuple):
    """The static options of one Algorithm 1 evaluation (SEMANTICS §9)."""

    instance_ready: str = "none"  # none | drain | max_input
    candidates: str = "all"  # all | least_occupied


def service_evaluator(tabs: StageTables, g, obs, ctx, y_max, V_weight, ready=None, opts: Options = Options()):
    """``evaluate(m, in_x_m)`` = `evaluate_service` of light service m on the instance set in_x_m
    [V,X] at this boundary (the per-service slices of the boundary's tables)."""
    cdep, crun = ctx.light_cost_deploy, ctx.light_cost_run
    occ_m = obs.occupancy.transpose(1, 0, 2)  # [Ml,V,X]

    def evaluate(m, in_x_m):
        d = _service_data(tabs, g, cdep, crun, obs.prev_count, m, ready)
        return evaluate_service(d, in_x_m, occ_m[m], y_max, V_weight, opts.instance_ready == "max_input",
                                opts.candidates)

    return evaluate


def instance_ready(obs, mode: str):
    """[Ml,V,X] ms: R_i − now of each light instance at the boundary (SEMANTICS §9): None for
    `none` (0), the predicted drain time (`drain`) or the latest data-ready time of its jobs
    (`max_input`) after now. An instance without jobs (every added one) has 0."""
    if mode == "none":
        return None
    ready = obs.drain if mode == "drain" else obs.input_ready
    return jnp.maximum(0.0, ready - obs.now).transpose(1, 0, 2)


def add_instance(in_x_m, v):
    """X_m plus a new instance of (v, m) in its lowest slot k not in X_m (unchanged if none is free)."""
    k = jnp.argmin(in_x_m[v])
    return in_x_m.at[v, k].set(True)


class GreedyResult(NamedTuple):
    in_x: jax.Array  # [V,Ml,X] bool: the final X
    steps: jax.Array  # [] int: instances added
    phi: jax.Array  # [Ml] Φ_m of the final X


def feasible_pairs(in_x, light_r, core_usage, capacity, waiting_total, up=None):
    """[Ml,V] bool: (m, v) may get one more instance (SEMANTICS §9 step 3, Eq. 8 with exact <=;
    with failures, ``up`` [V], only on nodes that are up: §12)."""
    X = in_x.shape[2]
    counts = in_x.sum(-1)  # [V,Ml]
    usage = resource_usage(counts, light_r, core_usage)  # [V,K]
    fits = jnp.all(usage[:, None, :] + light_r[None, :, :] <= capacity[:, None, :], axis=-1)  # [V,Ml]
    ok = fits & (counts < X) & (waiting_total > 0)[None, :]
    if up is not None:
        ok = ok & up[:, None]
    return ok.T


def over_services(f, *xs):
    """f over the leading (service) axis of xs: a loop (`lax.map`) on the CPU, `vmap` elsewhere. On
    XLA:CPU the Ml services' stage loops run faster one after another than batched (a batched
    `while_loop` runs as long as its longest service, and carries batch indices in every gather and
    scatter); on a GPU the batch is what fills the device. Same arithmetic, same decisions."""
    if jax.default_backend() == "cpu":
        return lax.map(lambda a: f(*a), xs)
    return jax.vmap(f)(*xs)


def greedy(tabs: StageTables, g, obs, ctx, y_max, V_weight, max_steps, ready=None,
           opts: Options = Options()) -> GreedyResult:
    Vn, Ml, X = obs.occupancy.shape
    light_r = ctx.light_resource
    nodes = jnp.arange(Vn)
    evaluate = service_evaluator(tabs, g, obs, ctx, y_max, V_weight, ready, opts)

    def phi_of(m, in_x_m):
        return evaluate(m, in_x_m)[0]

    def additions(m, in_x_m):  # [V] Φ_m(X_m + one instance on v)
        return jax.vmap(lambda v: phi_of(m, add_instance(in_x_m, v)))(nodes)

    in_x0 = obs.occupancy > 0  # busy instances; idle ones stop unless re-added
    in_x0_m = in_x0.transpose(1, 0, 2)

    def base_and_additions(m, in_x_m):  # one vmap of V + 1 configurations: X_m, then X_m + (v, ·)
        configs = jnp.concatenate([in_x_m[None], jax.vmap(lambda v: add_instance(in_x_m, v))(nodes)])
        return jax.vmap(lambda c: phi_of(m, c))(configs)

    table = over_services(base_and_additions, jnp.arange(Ml), in_x0_m)  # [Ml,V+1]
    phi0, add0 = table[:, 0], table[:, 1:]

    def decide(in_x, phi, add):
        feas = feasible_pairs(in_x, light_r, obs.core_usage, ctx.capacity, obs.waiting_total, obs.node_up)
        delta = add - phi[:, None]
        best = jnp.min(jnp.where(feas, delta, jnp.inf))
        tol = TIE_TOL * (1.0 + jnp.abs(jnp.sum(phi)))
        go = feas.any() & (best < -tol)
        pick = jnp.argmax((feas & (delta <= best + tol)).reshape(-1))  # lowest (m, v), row-major
        return go, pick // Vn, pick % Vn

    def cond(carry):
        steps, in_x, phi, add = carry
        return (steps < max_steps) & decide(in_x, phi, add)[0]

    def body(carry):
        steps, in_x, phi, add = carry
        _, m, v = decide(in_x, phi, add)
        new_m = add_instance(in_x[:, m, :], v)
        in_x = in_x.at[:, m, :].set(new_m)
        phi = phi.at[m].set(add[m, v])
        add = add.at[m].set(additions(m, new_m))
        return steps + 1, in_x, phi, add

    steps, in_x, phi, _ = lax.while_loop(cond, body, (jnp.zeros((), INT), in_x0, phi0, add0))
    return GreedyResult(in_x=in_x, steps=steps, phi=phi)


def dispatch(tabs: StageTables, g, obs, ctx, in_x, y_max, V_weight, ready=None, opts: Options = Options()):
    """Φ_m on the final X for every m: (phi [Ml], assign [Lw], rank [Lw], parallelism [V,Ml],
    bound [Lw]: g at the final occupancy of each placed stage's instance, nan elsewhere)."""
    Vn, Ml, X = in_x.shape
    Lw = obs.valid.shape[0]
    evaluate = service_evaluator(tabs, g, obs, ctx, y_max, V_weight, ready, opts)
    phi, placed, rank, occ_final = over_services(evaluate, jnp.arange(Ml), in_x.transpose(1, 0, 2))
    # placed [Ml,L] = v*X + k within service m -> the engine's flat index (v*Ml + m)*X + k
    m_of = jnp.arange(Ml)[:, None]
    inst = ((placed // X) * Ml + m_of) * X + placed % X
    ok = placed >= 0
    target = jnp.where(ok, tabs.idx, Lw)
    assign = jnp.full(Lw, -1, INT).at[target].set(inst, mode="drop")
    ranks = jnp.zeros(Lw, INT).at[target].set(rank, mode="drop")
    y = jnp.max(jnp.where(in_x.transpose(1, 0, 2), occ_final, 0), axis=-1).T  # [V,Ml]
    occ_of = jnp.take_along_axis(occ_final.reshape(Ml, -1), jnp.clip(placed, 0), axis=1)  # [Ml,L]
    g_of = jnp.take_along_axis(g, occ_of, axis=1)
    bound = jnp.full(Lw, jnp.nan).at[target].set(g_of, mode="drop")
    return phi, assign, ranks, y, bound


class LyapunovController(AbstractController):
    """Algorithm 1 (drift-plus-penalty greedy). One final class for `proposed` and `propavg`: the
    delay function is the traced option ``effective_capacity`` (1: g^EC, 0: g^avg), fixed by the
    two registry entries (`edgefm.interfaces.preset`), so both share one compiled program."""

    description = "Algorithm 1: Lyapunov drift-plus-penalty greedy"

    V: float = traced(1.0)  # weight of the light cost against the queue-weighted delays, >= 0
    epsilon: float = traced(0.2)  # delay-violation probability of g^EC, in (0, 1) (unused by propavg)
    window_ms: float = traced(0.0)  # admission window W of g^EC in ms; 0 = the slot length
    pi: float = traced(1.0)  # weight π of every task type in the stage weights π·H
    H_min: float = traced(1.0)  # floor (and initial value) of the virtual queues
    max_steps: int = traced(1000, dtype=jnp.int64)  # cap on the greedy's steps (instances added) per boundary
    max_stages_per_service: int = static(64)  # L: waiting stages per light service considered
    instance_ready: str = static("none")  # MODEL's instance-ready term of d̂ (SEMANTICS §9): none | drain | max_input
    candidates: str = static("all")  # the instances a stage may go to (SEMANTICS §9): all | least_occupied
    effective_capacity: float = traced(1.0)  # the delay function: 1 = g^EC (proposed), 0 = g^avg (propavg)

    def __check_init__(self):
        _check(self)

    @property
    def name(self) -> str:
        """The registry name of this delay function (host side)."""
        return "proposed" if float(self.effective_capacity) > 0 else "propavg"

    def init(self, ctx):
        return jnp.zeros(ctx.B)  # H[B]; every task is reset to H_min at its arrival boundary

    def act(self, state, obs, ctx, params, key):
        L = int(self.max_stages_per_service)
        y_max = params.y_max
        H = update_queues(state, obs, ctx.deadline, params, self.H_min)
        tabs = stage_tables(obs, H, params, ctx.Ml, L, self.pi)
        g = delay_table(ctx, params, ctx.Q, self)
        opts = Options(instance_ready=self.instance_ready, candidates=self.candidates)
        ready = instance_ready(obs, opts.instance_ready)
        res = greedy(tabs, g, obs, ctx, y_max, self.V, self.max_steps, ready, opts)
        phi, assign, rank, y, bound = dispatch(tabs, g, obs, ctx, res.in_x, y_max, self.V, ready, opts)
        alive = obs.task_alive
        n_alive = alive.sum()
        info = {
            "controller_objective": jnp.sum(phi),
            "vq_mean": jnp.where(n_alive > 0, jnp.sum(jnp.where(alive, H, 0.0)) / jnp.maximum(n_alive, 1), 0.0),
            "vq_sum": jnp.sum(jnp.where(alive, H, 0.0)),
            "vq_max": jnp.where(n_alive > 0, jnp.max(jnp.where(alive, H, -jnp.inf)), 0.0),
            "greedy_steps": res.steps.astype(INT),
        }
        action = Action(alive=res.in_x, assign=assign, rank=rank, parallelism=y.astype(INT), info=info, bound=bound)
        return action, H


ProposedController = preset(
    LyapunovController, "proposed",
    "Algorithm 1: Lyapunov drift-plus-penalty greedy with the effective-capacity delay g^EC",
    effective_capacity=1.0,
)
PropAvgController = preset(
    LyapunovController, "propavg",
    "Algorithm 1 with the mean-only delay g^avg (ablation of the effective capacity)",
    effective_capacity=0.0,
)
LyapunovConfig = ProposedController.Config  # the options of both (the schema of their config groups)
