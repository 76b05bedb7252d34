"""The conformance kit: checks that any component, built-in or third-party, can run in its tests.

    from edgefm.testing import check_workload
    def test_my_workload():
        check_workload(MyWorkload())

One check per hook kind, each on the small scenario that comes with edgefm (`small_scenario_path`:
``conf/scenario/small.yaml``, shipped in the wheel as package data, so the kit needs no checkout):

- `check_placement`: ``solve`` returns a feasible core placement ``x_core[V,M]``;
- `check_controller`: a run of the real engine with the controller keeps the invariants
  (`check_run_invariants`: conservation of tasks, node capacity, no refused decision, costs);
- `check_channel`: ``uplink_rate`` and ``mean_rate`` shapes and positivity, ``fading_mode`` in
  `edgefm.interfaces.FADING_MODES`, the mean of the sampled rates against ``mean_rate``;
- `check_workload`: the options (``load``, checks), then the arrivals at several loads and slot
  lengths: their mean per (user, type) against the configured rates, their variance and their
  peaks against what ``peak_factor()`` allows;
- `check_failure`: schedule and sample shapes, random failures only where the schedule allows
  them, and an inactive model that fails nothing.

`check(component)` runs the check of the component's kind. Every check raises `AssertionError` with
a one-line message that names the component, what failed and the numbers. The statistical checks
draw with fixed keys (a check's result never changes between runs) and derive their tolerances
from the samples, at a family-wise false-alarm probability ``alpha`` stated with each check.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import math
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from edgefm.errors import ConfigError
from edgefm.interfaces import FADING_MODES

ALPHA = 1e-6  # family-wise false-alarm probability of each statistical check
MEAN_RATE_DRAWS = 256  # draws of the default `AbstractChannelModel.mean_rate` (its own sampling error)

__all__ = [
    "ALPHA", "check", "check_channel", "check_controller", "check_failure", "check_placement",
    "check_run_invariants", "check_workload", "small_scenario_path", "small_scenarios",
]


# ----------------------------------------------------------------------------------------------
# The scenario


def small_scenario_path() -> Path:
    """``scenario/small.yaml`` of the ``conf/`` that comes with edgefm: the checkout's in a source
    tree, the packaged copy in an installed wheel (``$EDGEFM_CONFIG_DIR`` is not read: the kit's
    scenario is the same whatever config a user points the CLI at)."""
    from edgefm.config.schema import default_config_dir

    return default_config_dir(environment=False) / "scenario" / "small.yaml"


@functools.lru_cache(maxsize=8)
def _scenarios(seed: int) -> tuple:
    from edgefm.scenario import build_scenarios, load_spec

    path = small_scenario_path()
    if not path.is_file():
        raise FileNotFoundError(f"the kit's scenario {path} is missing: reinstall edgefm (the wheel ships conf/)")
    return tuple(build_scenarios(load_spec(path), seed=seed))


def small_scenarios(seed: int = 0) -> list:
    """The small scenario's instances (`edgefm.scenario.Scenario`) sampled with ``seed``."""
    return list(_scenarios(int(seed)))


def _label(component) -> str:
    return f"{getattr(component, 'kind', '') or 'component'} {getattr(component, 'name', type(component).__name__)!r}"


def _fmt(x) -> str:
    """A number or an array on one line."""
    a = np.asarray(x)
    if a.ndim == 0:
        return f"{a.item():.6g}" if a.dtype.kind == "f" else str(a.item())
    return np.array2string(a, max_line_width=10**9, precision=6, separator=", ").replace("\n", "")


def _fail(component, message: str, cause: BaseException | None = None):
    raise AssertionError(f"{_label(component)}: {message}") from cause


def _traced(component, what: str, run):
    """``run()``, an error of the traced code reported as the component's failure (one line)."""
    try:
        return run()
    except Exception as exc:  # noqa: BLE001 - a tracing or shape error of the plugin's code
        first = (str(exc).strip().splitlines() or [""])[0]
        _fail(component, f"{what} does not run as the engine runs it: {type(exc).__name__}: {first}", exc)


def _t_quantile(level: float, dof: int) -> float:
    """The ``level`` quantile of Student's t with ``dof`` degrees of freedom."""
    from scipy.stats import t

    return float(t.ppf(level, dof))


# ----------------------------------------------------------------------------------------------
# Runs of the engine: controllers


def _default_components():
    from edgefm_baselines import LBRRController, LeastLoadedPlacement
    from edgefm_channels import NakagamiChannel
    from edgefm_workloads import PoissonWorkload

    return dict(placement=LeastLoadedPlacement(), controller=LBRRController(), channel=NakagamiChannel(),
                workload=PoissonWorkload())


def check_run_invariants(run) -> None:
    """The invariants of an engine run (`edgefm.runner.EngineRun`) that no component may break:
    every task arrived is on time, late, unfinished or dropped; no slot has a node over its capacity
    (Eq. 8, ``capacity_violations``); the engine refused no decision (``invalid_actions``: an
    assignment to an instance that is not alive, of another service, over its room ``y - occupancy``,
    or with inconsistent FIFO ranks); the light cost equals the one recomputed from the instance
    counts; the recorded instance counts with the core placement fit every node."""
    out = run.outputs
    total = out["tasks_ontime"] + out["tasks_late"] + out["tasks_unfinished"] + out["tasks_dropped"]
    if not np.array_equal(total, out["tasks_arrived"]):
        raise AssertionError(f"tasks not conserved: on time + late + unfinished + dropped = {_fmt(total)}, "
                             f"arrived {_fmt(out['tasks_arrived'])}")
    if not (out["capacity_violations"] == 0).all():
        raise AssertionError(f"Eq. 8 violated (a node over its capacity) in {_fmt(out['capacity_violations'])} slots "
                             "[instance, realisation]")
    if not (out["invalid_actions"] == 0).all():
        raise AssertionError(f"the engine refused {_fmt(out['invalid_actions'])} decisions [instance, realisation]: "
                             "assignments to an instance not alive, of another service, past its room "
                             "y - occupancy, or with inconsistent ranks")
    for i, sc in enumerate(run.scenarios):
        light = sc.light_services
        x = out["x_light"][i]  # [R,T,V,Ml]
        prev = np.concatenate([np.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
        cost = (sc.cost_deploy[light] * np.maximum(x - prev, 0) + (sc.cost_maintain + sc.cost_payload)[light] * x)
        want, got = cost.sum(axis=(1, 2, 3)), out["cost_light"][i]
        if not np.allclose(got, want, rtol=1e-12, atol=0):
            raise AssertionError(f"light cost {_fmt(got)} differs from {_fmt(want)} recomputed from the instance counts")
        usage = np.einsum("rtvl,lk->rtvk", x, sc.resource[light]) + (run.x_core[i] @ sc.resource)[None, None]
        over = usage > sc.capacity[None, None] + 1e-9
        if over.any():
            r, t, v, k = np.argwhere(over)[0]
            raise AssertionError(f"Eq. 8 violated by the recorded instance counts: node {v}, resource {k}, "
                                 f"realisation {r}, slot {t}: {usage[r, t, v, k]:.6g} > {sc.capacity[v, k]:.6g}")


def check_controller(controller, *, seed: int = 0, realisations: int = 20) -> None:
    """Run ``controller`` through the real engine with the baseline placement (``least_loaded``),
    channel (``nakagami``) and workload (``poisson``) on the small scenario (200 ms of arrivals,
    100 ms of drain), and check `check_run_invariants`. A controller must keep every node within its
    capacity with the instances it keeps alive (Eq. 8, with ``edgefm.types.CAPACITY_TOL``) and
    never send an instance more jobs than its room ``y - occupancy``."""
    from edgefm.runner import Components, SimSettings, run_engine

    comps = _default_components()
    comps["controller"] = controller
    sim = SimSettings(realisations=realisations, arrival_ms=200.0, drain_ms=100.0, progress=False)
    try:
        check_run_invariants(run_engine(small_scenarios(seed), Components(**comps), sim, seed=seed))
    except AssertionError as exc:
        _fail(controller, str(exc))


# ----------------------------------------------------------------------------------------------
# Placements


def _accepts(fn, keyword: str) -> bool:
    params = inspect.signature(fn).parameters
    return keyword in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def check_placement(placement, *, seed: int = 0) -> None:
    """``solve`` (called as the runner calls it: with ``uplink_rate``, the ``nakagami`` channel's
    mean-value rate, when its signature takes it) returns an ``x_core[V,M]`` of non-negative
    integers, zero in the light columns, within every node's capacity (Eq. 8)."""
    from edgefm_channels import NakagamiChannel

    channel = NakagamiChannel()
    for sc in small_scenarios(seed):
        extra = {}
        if _accepts(placement.solve, "uplink_rate"):
            extra["uplink_rate"] = np.asarray(channel.mean_rate(
                {"nakagami_m": sc.nakagami_m, "nakagami_omega": sc.nakagami_omega}), float)
        result = placement.solve(sc, slot_ms=1.0, **extra)
        if not hasattr(result, "x_core"):
            _fail(placement, f"solve returned {type(result).__name__}, not an edgefm.interfaces.PlacementResult")
        x = np.asarray(result.x_core)
        if x.shape != (sc.num_nodes, sc.num_services):
            _fail(placement, f"x_core shape {x.shape}, expected [V,M] = {(sc.num_nodes, sc.num_services)}")
        if not (np.issubdtype(x.dtype, np.number) and np.all(np.isfinite(x)) and np.all(x == np.round(x))):
            _fail(placement, f"x_core holds values that are not whole numbers: {_fmt(x)}")
        if (x < 0).any() or (x[:, ~sc.service_is_core] != 0).any():
            _fail(placement, f"x_core has negative counts or light-service columns that are not 0: {_fmt(x)}")
        usage = x @ sc.resource
        if (usage > sc.capacity + 1e-9).any():
            v, k = np.argwhere(usage > sc.capacity + 1e-9)[0]
            _fail(placement, f"core placement exceeds a node's capacity: node {v}, resource {k}: "
                             f"{usage[v, k]:.6g} > {sc.capacity[v, k]:.6g}")


# ----------------------------------------------------------------------------------------------
# Channels


def _users(sc) -> dict[str, np.ndarray]:
    """The small scenario's users and three more of other Nakagami shapes and spreads."""
    return {"nakagami_m": np.concatenate([sc.nakagami_m, [0.5, 1.0, 4.0]]),
            "nakagami_omega": np.concatenate([sc.nakagami_omega, [0.25, 1.0, 2.0]])}


@eqx.filter_jit
def _draw_rates(channel, users, keys):
    return jax.vmap(lambda k: channel.uplink_rate(k, users))(keys)


def check_channel(channel, *, draws: int = 4096, seed: int = 0, alpha: float = ALPHA) -> None:
    """A channel model as the engine and the placements use it, for the small scenario's users and
    three more (``U = 5``):

    - ``fading_mode()`` is one of `edgefm.interfaces.FADING_MODES`;
    - ``uplink_rate(key, users)`` (traced, the compiled copy ``for_engine()``) is ``[U]`` floats,
      > 0 (``inf``: no uplink delay), never NaN, and the same for the same key;
    - ``mean_rate(users)`` (host) is ``[U]``, > 0, never NaN, ``inf`` exactly for the users whose
      every draw is ``inf``;
    - for the other users, ``mean_rate`` lies between the mean of ``draws`` sampled rates and the
      largest of them: it is the rate at the mean channel gain, at least the mean rate when the rate
      is concave in the gain (Jensen), or the default, a mean of 256 draws. The lower side allows
      the sampling error of both means: ``q s sqrt(1/draws + 1/256)`` with ``s`` the draws'
      standard deviation and ``q`` the one-sided normal quantile at ``alpha / U``.
    """
    from scipy.stats import norm

    mode = channel.fading_mode()
    if mode not in FADING_MODES:
        _fail(channel, f"fading_mode() = {mode!r}, expected one of {', '.join(FADING_MODES)}")
    users = _users(small_scenarios(seed)[0])
    U = users["nakagami_m"].shape[0]
    keys = jax.random.split(jax.random.key(seed), draws)
    engine = channel.for_engine()
    traced_users = {k: jnp.asarray(v, float) for k, v in users.items()}
    rates = np.asarray(_traced(channel, "uplink_rate", lambda: _draw_rates(engine, traced_users, keys)))
    if rates.shape != (draws, U):
        _fail(channel, f"uplink_rate returned shape {rates.shape[1:]} for {U} users, expected ({U},)")
    if rates.dtype.kind != "f":
        _fail(channel, f"uplink_rate returned dtype {rates.dtype}, expected floats (MB/ms)")
    if np.isnan(rates).any() or (rates <= 0).any():
        bad = np.argwhere(np.isnan(rates) | (rates <= 0))[0]
        _fail(channel, f"uplink_rate drew {rates[tuple(bad)]} for user {bad[1]}: rates must be > 0 (inf: no delay)")
    again = np.asarray(_draw_rates(engine, traced_users, keys[:8]))
    if not np.array_equal(again, rates[:8]):
        _fail(channel, "uplink_rate is not a function of its key (two calls with the same key differ)")
    mean = np.asarray(channel.mean_rate({k: np.asarray(v, float) for k, v in users.items()}), float)
    if mean.shape != (U,):
        _fail(channel, f"mean_rate returned shape {mean.shape} for {U} users, expected ({U},)")
    if np.isnan(mean).any() or (mean <= 0).any():
        _fail(channel, f"mean_rate = {_fmt(mean)}: rates must be > 0 (inf: no delay), never NaN")
    always_inf = np.isinf(rates).all(axis=0)
    if not np.array_equal(np.isinf(mean), always_inf):
        _fail(channel, f"mean_rate is inf for users {np.flatnonzero(np.isinf(mean)).tolist()}, but the draws are inf "
                       f"for users {np.flatnonzero(always_inf).tolist()}: both must say where the uplink takes no time")
    q = float(norm.isf(alpha / U))
    for u in np.flatnonzero(~always_inf):
        r = rates[:, u]
        if np.isinf(r).any():
            _fail(channel, f"user {u}: some draws of uplink_rate are inf and others finite")
        low = r.mean() - q * r.std(ddof=1) * math.sqrt(1 / draws + 1 / MEAN_RATE_DRAWS)
        if mean[u] < low * (1 - 1e-12):
            _fail(channel, f"user {u}: mean_rate {mean[u]:.6g} MB/ms is below the mean of {draws} draws of "
                           f"uplink_rate {r.mean():.6g} (tolerance {r.mean() - low:.3g}, alpha {alpha:g})")
        if mean[u] > r.max() * (1 + 1e-12):
            _fail(channel, f"user {u}: mean_rate {mean[u]:.6g} MB/ms is above the largest of {draws} draws of "
                           f"uplink_rate, {r.max():.6g}")


# ----------------------------------------------------------------------------------------------
# Workloads


@eqx.filter_jit
def _roll(component, init_arg, slot_ms, keys, slots: int, sample):
    """[R,T,...]: per realisation (``keys`` [R]), ``component.init(key, init_arg)`` once, then
    ``sample(component, state, key, t, init_arg, slot_ms) -> (draw, state)`` slot after slot under
    `lax.scan`, as the engine runs it (a state that changes structure, shape or dtype is an error)."""

    def one(key):
        k_init, k_slots = jax.random.split(key)
        state = component.init(k_init, init_arg)

        def step(state, t):
            draw, state = sample(component, state, jax.random.fold_in(k_slots, t), t, init_arg, slot_ms)
            return state, draw

        return lax.scan(step, state, jnp.arange(slots))[1]

    return jax.vmap(one)(keys)


def _sample_arrivals(workload, state, key, t, rate, slot_ms):
    return workload.sample(state, key, rate, slot_ms)


def _sample_up(failure, state, key, t, random_nodes, slot_ms):
    return failure.sample(state, key, t, random_nodes, slot_ms)


def _check_workload_options(workload) -> None:
    """``load`` is an option (a `Config` field the CLI fills from ``workload.load``), the component
    builds from its ``Config``, and a negative load is a one-line `ConfigError` naming it."""
    cls = type(workload)
    fields = [f.name for f in dataclasses.fields(cls.Config)]
    if "load" not in fields:
        _fail(workload, f"its Config has no field `load` (fields: {', '.join(fields) or 'none'}): the CLI rejects "
                        "workload.load and every run is at 1x; declare `load: float = traced(1.0)` and scale the rates by it")
    try:
        cls.from_config(cls.Config())
    except Exception as exc:  # noqa: BLE001 - reported as the failure
        _fail(workload, f"building it from its default Config raised {type(exc).__name__}: {exc}")
    try:
        bad = dataclasses.replace(workload, load=-1.0)
    except ConfigError as exc:
        if "load" not in str(exc) or "\n" in str(exc):
            _fail(workload, f"a negative load raised a ConfigError that does not name `load` on one line: {exc}")
    except Exception as exc:  # noqa: BLE001
        _fail(workload, f"a negative load raised {type(exc).__name__} ({exc}), expected an edgefm.errors.ConfigError "
                        "from __check_init__ naming workload.load")
    else:
        _fail(workload, f"accepted load = -1 (load = {_fmt(bad.load)}): reject it in __check_init__ "
                        "(check_number(self.load, 'workload.load', ...))")
    peak = workload.peak_factor()
    if not (isinstance(peak, int | float | np.number) and math.isfinite(float(peak)) and float(peak) >= 1):
        _fail(workload, f"peak_factor() = {peak!r}, expected a finite number >= 1 (host side, it sizes the engine's lists)")


def check_workload(workload, *, loads=(0.5, 1.0, 2.0), slot_ms=(1.0, 0.5), realisations: int = 128,
                   slots: int = 1000, windows=(1, 10, 100), seed: int = 0, alpha: float = ALPHA) -> None:
    """A workload generator at each load in ``loads`` and slot length in ``slot_ms``, for the small
    scenario's configured rates ``rate[U,N]`` (tasks/ms at load 1): ``realisations`` independent
    runs of ``slots`` slots each (``init`` once, then ``sample`` per slot, traced, the compiled copy
    ``for_engine()``), the load set as the CLI sets it (``dataclasses.replace(workload, load=...)``).

    - Options: ``load`` is a field of its ``Config``; it builds from its default ``Config``; a
      negative load is a `ConfigError` naming it; ``peak_factor()`` is a finite number >= 1.
    - Counts are ``[U,N]`` non-negative integers; at load 0 there are none.
    - Mean: per (user, type), the mean count per slot is ``mu = rate * load * slot_ms``, within
      ``q s / sqrt(R) + 1 / slots``: ``s`` is the standard deviation over the R realisations of
      their per-slot means (independent whatever the correlation over slots), ``q`` Student's t
      quantile at ``alpha / 3`` split over the cells two-sided, and ``1 / slots`` the resolution of
      a count over the horizon (a deterministic generator may miss ``mu * slots`` by less than one).
    - Variance: the arrivals of a slot are Poisson given the generator's rate over the slot, which
      lies in ``[0, peak_factor * mu]``; so Var <= ``mu + (peak_factor - 1) mu^2`` (Bhatia-Davis on
      the rate). Checked on the per-realisation mean of ``(count - mu)^2``, one-sided, as the mean.
    - Peaks: over every window of ``W`` slots (each of ``windows``), the count of a (user, type) is
      at most the ``alpha / 3`` (split over every window) upper quantile of Poisson(``peak_factor *
      mu * W``): a count given a rate at most ``peak_factor`` times the mean is dominated by it.
      This is what the engine assumes when it sizes its arrival lists from ``peak_factor()``.
    """
    from scipy.stats import poisson

    _check_workload_options(workload)
    sc = small_scenarios(seed)[0]
    rate = np.asarray(sc.arrival_rate, float)  # [U,N] tasks/ms at load 1
    U, N = rate.shape
    peak = float(workload.peak_factor())
    keys = jax.random.split(jax.random.key(seed), realisations)
    R, T = realisations, slots

    def draw(load, dt, n_slots=T):
        w = dataclasses.replace(workload, load=load).for_engine()
        counts = np.asarray(_traced(workload, "init/sample", lambda: _roll(
            w, jnp.asarray(rate), jnp.asarray(float(dt)), keys, n_slots, _sample_arrivals)))
        if counts.shape != (R, n_slots, U, N):
            _fail(workload, f"sample returned counts of shape {counts.shape[2:]}, expected [U,N] = ({U}, {N})")
        if counts.dtype.kind not in "iu":
            _fail(workload, f"sample returned counts of dtype {counts.dtype}, expected integers (int32)")
        if (counts < 0).any():
            _fail(workload, f"sample drew a negative count ({counts.min()})")
        return counts

    zero = draw(0.0, slot_ms[0], n_slots=min(T, 100))
    if zero.any():
        _fail(workload, f"at load 0 it drew {int(zero.sum())} arrivals, expected none (load scales every rate)")

    configs = [(float(L), float(dt)) for L in loads for dt in slot_ms]
    cells = len(configs) * U * N
    q_mean = _t_quantile(1 - alpha / 3 / cells / 2, R - 1)
    q_var = _t_quantile(1 - alpha / 3 / cells, R - 1)
    n_windows = sum(R * (T // W) * U * N * len(configs) for W in windows if W <= T)
    for L, dt in configs:
        counts = draw(L, dt)
        mu = rate * L * dt  # [U,N] expected arrivals per slot
        where = f"at load {L:g}, slot {dt:g} ms"
        per_run = counts.mean(axis=1)  # [R,U,N]
        mean, s = per_run.mean(axis=0), per_run.std(axis=0, ddof=1)
        tol = q_mean * s / math.sqrt(R) + 1.0 / T
        for u, n in zip(*np.nonzero(np.abs(mean - mu) > tol)):
            _fail(workload, f"mean arrivals of (user {u}, type {n}) {where}: {mean[u, n]:.6g} per slot over {R} x {T} "
                            f"slots, expected rate x load x slot = {mu[u, n]:.6g} ± {tol[u, n]:.3g} (alpha {alpha:g})")
        dev = ((counts - mu[None, None]) ** 2).mean(axis=1)  # [R,U,N]
        var, s_var = dev.mean(axis=0), dev.std(axis=0, ddof=1)
        bound = mu + (peak - 1.0) * mu**2
        tol = q_var * s_var / math.sqrt(R)
        for u, n in zip(*np.nonzero(var > bound + tol)):
            _fail(workload, f"variance of the arrivals per slot of (user {u}, type {n}) {where}: {var[u, n]:.6g} > "
                            f"mean + (peak_factor - 1) mean^2 = {bound[u, n]:.6g} + {tol[u, n]:.3g} (alpha {alpha:g}): "
                            f"the rate varies more than peak_factor() = {peak:g} allows")
        for W in (W for W in windows if W <= T):
            n_w = T // W
            window = counts[:, : n_w * W].reshape(R, n_w, W, U, N).sum(axis=2).max(axis=(0, 1))  # [U,N]
            top = poisson.isf(alpha / 3 / n_windows, peak * mu * W)
            for u, n in zip(*np.nonzero(window > top)):
                _fail(workload, f"{int(window[u, n])} arrivals of (user {u}, type {n}) in {W} slots {where}, at most "
                                f"{int(top[u, n])} with a rate <= peak_factor() = {peak:g} x the mean {mu[u, n] * W:.4g} "
                                f"(Poisson bound, alpha {alpha:g}): raise peak_factor()")


# ----------------------------------------------------------------------------------------------
# Failure models


def check_failure(failure, *, slots: int = 300, slot_ms: float = 1.0, realisations: int = 16, seed: int = 0) -> None:
    """A failure model on the small scenario (nodes ``ED1, ED2, ES1``, links ``ED1-ES1, ED2-ES1``:
    give a model of named nodes or links those names):

    - ``active()`` is a bool;
    - ``schedule(scenario, total_slots=T, slot_ms=...)`` returns bool ``node_up[T,V]``,
      ``link_up[T,E]`` and ``random_nodes[V]``;
    - ``init``/``sample`` (traced, the compiled copy ``for_engine()``, carried over ``slots`` slots
      of ``realisations`` realisations: the state keeps its structure) give ``up[V]`` bool, and a
      node outside ``random_nodes`` is never down in them;
    - an inactive model (``active()`` False: the engine skips failure handling) fails nothing:
      every node and link up in the schedule, no random node, every node up in the samples.
    """
    active = failure.active()
    if not isinstance(active, bool | np.bool_):
        _fail(failure, f"active() = {active!r}, expected a bool (static)")
    sc = small_scenarios(seed)[0]
    V, E, T = sc.num_nodes, int(np.asarray(sc.link_ends).shape[0]), int(slots)
    sched = failure.schedule(sc, total_slots=T, slot_ms=float(slot_ms))
    for name, shape in (("node_up", (T, V)), ("link_up", (T, E)), ("random_nodes", (V,))):
        value = np.asarray(getattr(sched, name, None))
        if value.shape != shape or value.dtype != bool:
            _fail(failure, f"schedule().{name} is {value.dtype}{list(value.shape)}, expected bool{list(shape)}")
    random_nodes = np.asarray(sched.random_nodes)
    keys = jax.random.split(jax.random.key(seed), realisations)
    # (lax.scan: a state that changes structure, shape or dtype from slot to slot is an error)
    up = np.asarray(_traced(failure, "init/sample", lambda: _roll(
        failure.for_engine(), jnp.asarray(random_nodes), jnp.asarray(float(slot_ms)), keys, T, _sample_up)))
    if up.shape != (realisations, T, V) or up.dtype != bool:
        _fail(failure, f"sample returned {up.dtype}{list(up.shape[2:])}, expected bool[{V}]")
    down = ~up & ~random_nodes[None, None]
    if down.any():
        r, t, v = np.argwhere(down)[0]
        _fail(failure, f"sample took down node {v} ({sc.node_names[v]}) in slot {t}, which schedule().random_nodes "
                       "does not allow")
    if not active:
        for name in ("node_up", "link_up"):
            value = np.asarray(getattr(sched, name))
            if not value.all():
                t, e = np.argwhere(~value)[0]
                _fail(failure, f"active() is False but schedule().{name} is down at slot {t}, index {e}")
        if random_nodes.any() or not up.all():
            _fail(failure, "active() is False but it may fail nodes at random (random_nodes or sample)")


# ----------------------------------------------------------------------------------------------


CHECKS = {"placement": check_placement, "controller": check_controller, "channel": check_channel,
          "workload": check_workload, "failure": check_failure}


def check(component, **options) -> None:
    """Run the check of ``component``'s kind (``component.kind``) with ``options``."""
    kind = getattr(component, "kind", None)
    if kind not in CHECKS:
        raise TypeError(f"{component!r} has kind {kind!r}, expected one of {', '.join(CHECKS)}")
    CHECKS[kind](component, **options)
