"""Controller `ga` (docs/SEMANTICS.md §10): fitness by hand, repair, the search against brute force,
reproducibility, config, and one end-to-end engine run on the small scenario."""

from __future__ import annotations

import dataclasses
import itertools
from pathlib import Path
from types import SimpleNamespace

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from omegaconf import OmegaConf

import edgefm  # noqa: F401  (x64)
from edgefm.errors import ConfigError
from edgefm.interfaces import OPTION
from edgefm.io import get_variable
from edgefm.plugins import Registry
from edgefm.runner import Components, SimSettings, run_engine
from edgefm.scenario import build_scenarios, load_spec
from edgefm.sim import TRACE_COUNTER, simulate
from edgefm.sim.keys import realisation_keys
from edgefm.sim.prepare import make_params, stack_arrays
from edgefm.sim.types import Observation
from edgefm_baselines import LeastLoadedPlacement
from edgefm_channels import NakagamiChannel
from edgefm_ga import GAController
from edgefm_ga.controller import Problem, alive_of, evolve, fitness, prepare, repair, route
from edgefm_workloads import PoissonWorkload

CONF = Path(__file__).resolve().parents[1] / "conf"


# ------------------------------------------------------------------------------------------------
# A hand-built boundary: 2 nodes, 1 light service, X = 3 slots, 2 resources, y_max = 3, now = 10 ms.
# Service: a = 1 MB, E f = k*beta = 2*1 MB/ms -> a/E f = 0.5 ms; c_dp = 4, c_mt + c_pl = 1.5.
# Node 0: cpu 2, no core usage (room for 2 instances); node 1: cpu 3, core uses 1 (room for 2).
# Node 0 slot 0 is busy (2 jobs, predicted to finish at 13 ms: backlog 3 ms); it existed before.
# Waiting stages (list position: arrival, D_n, data-ready on node 0 / node 1):
#   0: arrival 0, D 10, ready 10 / 12     (slack 0, deferral charge 21)
#   1: arrival 8, D 10, ready 14 / 11     (slack 8, deferral charge 21)
#   2: arrival 9, D 20, ready 10 / 10     (slack 19, deferral charge 41)
#   3: padding
NOW, DT, Y = 10.0, 1.0, 3


def hand_case():
    V, Ml, X, Lw = 2, 1, 3, 4
    ctx = SimpleNamespace(  # the ControllerContext fields the GA reads
        V=V, Ml=Ml, X=X,
        capacity=jnp.array([[2.0, 8.0], [3.0, 8.0]]),
        light_resource=jnp.array([[1.0, 0.5]]),
        light_work=jnp.array([1.0]),
        light_shape=jnp.array([2.0]),
        light_scale=jnp.array([1.0]),
        light_cost_deploy=jnp.array([4.0]),
        light_cost_run=jnp.array([1.5]),
    )
    occupancy = jnp.zeros((V, Ml, X), jnp.int64).at[0, 0, 0].set(2)
    obs = Observation(
        t=jnp.asarray(10), now=jnp.asarray(NOW),
        valid=jnp.array([True, True, True, False]),
        light=jnp.zeros(Lw, jnp.int64),
        task_type=jnp.zeros(Lw, jnp.int64), task_id=jnp.arange(Lw), buffer_slot=jnp.arange(Lw),
        arrival=jnp.array([0.0, 8.0, 9.0, 0.0]),
        deadline=jnp.array([10.0, 10.0, 20.0, 0.0]),
        ready_slot=jnp.zeros(Lw, jnp.int64),
        waiting_total=jnp.array([3]),
        data_ready=jnp.array([[10.0, 12.0], [14.0, 11.0], [10.0, 10.0], [0.0, 0.0]]),
        occupancy=occupancy,
        exists=occupancy > 0,
        prev_count=jnp.array([[1], [0]]),
        core_usage=jnp.array([[0.0, 0.0], [1.0, 0.0]]),
        task_alive=jnp.zeros(2, bool), task_arrival=jnp.zeros(2), task_type_buf=jnp.zeros(2, jnp.int64),
    )
    free = jnp.zeros((V, Ml, X)).at[0, 0, 0].set(13.0)
    params = SimpleNamespace(y_max=jnp.asarray(Y, jnp.int32), slot_ms=jnp.asarray(DT))  # SimParams: the options are the controller's
    return ctx, obs, free, params


_route = jax.jit(route, static_argnums=2)


@pytest.fixture(scope="module")
def hand():
    ctx, obs, free, params = hand_case()
    pb = jax.jit(lambda o, f: prepare(o, ctx, Y, DT, L=4, free=f))(obs, free)
    return ctx, obs, free, params, pb


def test_fitness_by_hand(hand):
    ctx, obs, free, params, pb = hand
    np.testing.assert_array_equal(pb.sidx, [[0, 1, 2, 4]])
    np.testing.assert_allclose(pb.backlog[0, 0], [3.0, 0.0, 0.0])
    # one new instance on each node: flat instances v*X + k = 0 (busy), 1 (new on node 0), 3 (new on node 1)
    d = jnp.array([[1], [1]])
    np.testing.assert_array_equal(alive_of(pb, d)[:, 0], [[True, True, False], [True, False, False]])
    fit, delay, inst, rank, back = _route(pb, d, True)
    # stage 0: instance 0 max(3,0)+.5 = 3.5, instance 1 max(0,0)+.5 = 0.5, instance 3 max(0,2)+.5 = 2.5 -> 1
    # stage 1: 0: max(3,4)+.5 = 4.5, 1: max(.5,4)+.5 = 4.5, 3: max(0,1)+.5 = 1.5 -> 3
    # stage 2: 0: 3.5, 1: max(.5,0)+.5 = 1.0, 3: max(1.5,0)+.5 = 2.0 -> 1 (behind stage 0: rank 1)
    np.testing.assert_array_equal(inst[0, :3], [1, 3, 1])
    np.testing.assert_array_equal(rank[0, :3], [0, 0, 1])
    np.testing.assert_allclose(delay[0, :3], [0.5, 1.5, 1.0])
    np.testing.assert_allclose(back[0], [3.0, 1.0, 0.0, 1.5, 0.0, 0.0])
    # cost: node 0 has 2 instances (1 before): 4*1 + 1.5*2; node 1: 4*1 + 1.5*1 -> 12.5
    # delays 0.5 + 1.5 + 1.0; excess: stage 0 max(0, 0.5 - 0) = 0.5, others 0
    assert float(fit) == pytest.approx(12.5 + 3.0 + 0.5, abs=1e-12)
    assert float(_route(pb, d, False)[0]) == float(fit)
    # no new instance: instance 0 takes stage 0 (3.5, occupancy 3 = y); stages 1 and 2 are deferred
    # cost 1.5; stage 0: 3.5 + excess 3.5; stage 1: 21 + (21 - 8); stage 2: 41 + (41 - 19)
    fit0, delay0, inst0, _, _ = _route(pb, jnp.zeros((2, 1), jnp.int64), True)
    np.testing.assert_array_equal(inst0[0, :3], [0, -1, -1])
    np.testing.assert_allclose(delay0[0, :3], [3.5, 21.0, 41.0])
    assert float(fit0) == pytest.approx(1.5 + 3.5 + 3.5 + 21 + 13 + 41 + 22, abs=1e-12)


def test_act_decodes_the_best_genome(hand):
    ctx, obs, free, params, pb = hand
    ctrl = GAController(max_stages_per_service=4)
    act = jax.jit(lambda key: ctrl.act(free, obs, ctx, params, key))
    action, new_free = act(jax.random.key(0))
    counts = np.asarray(action.alive).sum(-1)  # [V,Ml]
    d = jnp.asarray(counts - np.asarray(pb.busy))
    assert np.all(d >= 0) and bool(action.alive[0, 0, 0])  # the busy instance stays
    np.testing.assert_array_equal(repair(pb, d, 3), d)
    fit, _, inst, rank, back = _route(pb, d, True)
    assert float(action.info["ga_fitness"]) == pytest.approx(float(fit))
    X, Ml = 3, 1
    expect = [int((i // X * Ml + 0) * X + i % X) if i >= 0 else -1 for i in np.asarray(inst[0])][:3] + [-1]
    np.testing.assert_array_equal(action.assign, expect)
    placed = np.asarray(action.assign) >= 0
    np.testing.assert_array_equal(np.asarray(action.rank)[placed], np.asarray(rank[0, :3])[placed[:3]])
    np.testing.assert_array_equal(action.parallelism, Y)
    np.testing.assert_allclose(np.asarray(new_free)[:, 0].reshape(-1), NOW + np.asarray(back[0]))
    # the GA found the best of the 16 genomes of this boundary
    genomes = jnp.array(list(itertools.product(range(4), repeat=2))).reshape(-1, 2, 1)
    fits = jax.jit(jax.vmap(lambda g: fitness(pb, repair(pb, g, 3))))(genomes)
    assert float(fit) == pytest.approx(float(fits.min()), abs=1e-12)


# ------------------------------------------------------------------------------------------------
# Repair: property test over random problems and genomes (fixed shapes: one compile)
V_R, ML_R, X_R, K_R, A_R = 3, 4, 3, 2, 3


def bare_problem(occ, need, room, has_waiting):
    V, Ml, X = occ.shape
    busy = (occ > 0).sum(-1)
    z = jnp.zeros((Ml, 1))
    return Problem(
        occ=occ, backlog=jnp.zeros(occ.shape), busy=busy,
        free_rank=jnp.where(occ > 0, X, jnp.cumsum(occ == 0, axis=-1) - 1),
        prev=jnp.zeros((V, Ml), jnp.int64), has_waiting=has_waiting, room=room, need=need,
        c_dp=jnp.zeros(Ml), c_run=jnp.zeros(Ml), tau=jnp.ones(Ml), y=jnp.asarray(1),
        sidx=jnp.zeros((Ml, 1), jnp.int64), svalid=jnp.zeros((Ml, 1), bool), wait=jnp.zeros((1, Ml, V * X)),
        defer=z, slack=z, n_stages=jnp.asarray(0),
    )


_repair = jax.jit(lambda occ, need, room, hw, d: repair(bare_problem(occ, need, room, hw), d, A_R))


def check_repair(rng):
    occ = rng.integers(0, 3, (V_R, ML_R, X_R)) * (rng.random((V_R, ML_R, X_R)) < 0.4)
    need = np.round(rng.random((ML_R, K_R)) * 2, 1) * (rng.random((ML_R, K_R)) < 0.8)
    room = np.round(rng.random((V_R, K_R)) * 6 - 0.5, 1)
    hw = rng.random(ML_R) < 0.7
    d = rng.integers(-2, 7, (V_R, ML_R))
    out = np.asarray(_repair(occ, need, room, hw, d))
    busy = (occ > 0).sum(-1)
    assert out.dtype == np.int64 and np.all(out >= 0) and np.all(out <= A_R)
    assert np.all(out <= X_R - busy) and np.all(out[:, ~hw] == 0)
    assert np.all(out <= np.clip(d, 0, None))
    added = out @ need  # [V,K] needs of the new instances
    assert np.all((added <= room + 1e-9) | (added == 0))
    # the kept units are the longest fitting prefix in the order (ml, unit): the next one does not fit
    cap = np.where(hw[None, :], np.minimum(np.clip(d, 0, A_R), X_R - busy), 0)
    for v in range(V_R):
        dropped = [m for m in range(ML_R) if out[v, m] < cap[v, m]]
        if dropped:
            m = dropped[0]
            assert all(out[v, n] == 0 for n in range(m + 1, ML_R))
            more = added[v] + need[m]
            assert np.any((more > room[v] + 1e-9) & (more != 0))
    # idempotent, and a feasible genome is left as it is
    np.testing.assert_array_equal(_repair(occ, need, room, hw, out), out)


try:
    from hypothesis import given, settings
    from hypothesis import strategies as st

    @settings(max_examples=150, deadline=None)
    @given(st.integers(0, 2**32 - 1))
    def test_repair_always_feasible(seed):
        check_repair(np.random.default_rng(seed))

except ImportError:  # pragma: no cover

    def test_repair_always_feasible():
        for seed in range(150):
            check_repair(np.random.default_rng(seed))


# ------------------------------------------------------------------------------------------------
# Brute force: 2 nodes x 2 light services, 4^4 = 256 genomes


def brute_case():
    V, Ml, X, Lw = 2, 2, 3, 8
    ctx = SimpleNamespace(
        V=V, Ml=Ml, X=X,
        capacity=jnp.array([[3.0], [4.0]]), light_resource=jnp.array([[1.0], [1.5]]), light_work=jnp.array([1.0, 2.0]),
        light_shape=jnp.array([1.0, 2.0]), light_scale=jnp.array([1.0, 0.5]),
        light_cost_deploy=jnp.array([4.0, 4.0]), light_cost_run=jnp.array([1.5, 1.5]),
    )
    light = jnp.array([0, 1, 0, 0, 1, 0, 1, 0])
    valid = jnp.array([True] * 7 + [False])
    rng = np.random.default_rng(5)
    obs = Observation(
        t=jnp.asarray(20), now=jnp.asarray(20.0), valid=valid, light=light,
        task_type=jnp.zeros(Lw, jnp.int64), task_id=jnp.arange(Lw), buffer_slot=jnp.arange(Lw),
        arrival=jnp.array([2.0, 5, 10, 12, 15, 18, 19, 0]), deadline=jnp.full(Lw, 15.0),
        ready_slot=jnp.zeros(Lw, jnp.int64), waiting_total=jnp.array([5, 2]),
        data_ready=jnp.asarray(20.0 + rng.uniform(0, 4, (Lw, V)).round(1)),
        occupancy=jnp.zeros((V, Ml, X), jnp.int64).at[1, 0, 0].set(1), exists=jnp.zeros((V, Ml, X), bool),
        prev_count=jnp.array([[0, 1], [1, 0]]), core_usage=jnp.array([[0.5], [1.0]]),
        task_alive=jnp.zeros(2, bool), task_arrival=jnp.zeros(2), task_type_buf=jnp.zeros(2, jnp.int64),
    )
    free = jnp.zeros((V, Ml, X)).at[1, 0, 0].set(22.0)
    return prepare(obs, ctx, 3, 1.0, L=8, free=free)


@pytest.fixture(scope="module")
def brute():
    pb = brute_case()
    genomes = jnp.array(list(itertools.product(range(4), repeat=4))).reshape(-1, 2, 2)
    fit_all = jax.jit(jax.vmap(lambda g: fitness(pb, repair(pb, g, 3))))
    fits = fit_all(genomes)
    # one compiled search for every test: keys [n], mutation and generations traced
    search = jax.jit(jax.vmap(
        lambda k, mu, g: evolve(pb, k, mu, population=10, generations=g, elite=5, max_add=3), in_axes=(0, None, None)
    ))
    return pb, float(fits.min()), search, fit_all


KEYS = 8  # every search call takes 8 keys: one compiled program


def test_ga_finds_the_brute_force_optimum(brute):
    pb, optimum, search, fit_all = brute
    # The landscape has a local optimum three genes away from the global one (0,1,1,0 vs 1,1,0,1
    # after repair), which traps about a third of the runs at mutation 0.1; at 0.5 and 100
    # generations every key below reaches the optimum.
    best, fit, _, _ = search(jax.random.split(jax.random.key(11), KEYS), 0.5, 100)
    np.testing.assert_allclose(fit, optimum, rtol=0, atol=1e-9)
    np.testing.assert_allclose(fit_all(best), fit, rtol=0, atol=1e-12)  # repaired genomes, fitness as found
    # not trivial: the zero genome (start nothing) is far worse
    assert float(fit_all(jnp.zeros((1, 2, 2), jnp.int64))[0]) > optimum + 50.0
    # at the default mutation the elite never gets worse and most runs reach the optimum too
    first = search(jax.random.split(jax.random.key(11), KEYS), 0.1, 0)[1]
    fit01 = search(jax.random.split(jax.random.key(11), KEYS), 0.1, 60)[1]
    assert np.all(fit01 <= first) and np.sum(np.abs(fit01 - optimum) < 1e-9) >= 4


def test_same_key_same_decision_different_key_may_differ(brute):
    pb, _, search, _ = brute
    keys = jnp.stack([jax.random.key(1), jax.random.key(1)] + [jax.random.key(2 + i) for i in range(KEYS - 2)])
    best, fit, pop, pop_fit = search(keys, 0.1, 3)
    np.testing.assert_array_equal(best[0], best[1])
    np.testing.assert_array_equal(pop[0], pop[1])
    np.testing.assert_array_equal(pop_fit[0], pop_fit[1])
    assert not np.array_equal(pop[0], pop[2])  # another key: another population
    # the best fitness never worsens over generations (the elite is kept)
    trace = np.stack([search(keys, 0.1, g)[1] for g in (0, 1, 2, 4, 8)])
    assert np.all(np.diff(trace, axis=0) <= 0)


# ------------------------------------------------------------------------------------------------
STATIC = {"population", "generations", "max_add", "elite_fraction", "max_stages_per_service"}


def traced_options(ctrl) -> dict[str, float]:
    """The controller's array leaves (its traced options), as numbers; static fields stay in the
    tree structure of both halves of the partition, so they are not array leaves."""
    arrays, _ = eqx.partition(ctrl, eqx.is_array)
    leaves = {f.name: getattr(arrays, f.name) for f in dataclasses.fields(ctrl)}
    return {k: float(v) for k, v in leaves.items() if eqx.is_array(v)}


def test_config_validation_and_yaml():
    ctrl = GAController()
    # mutation is the only traced option (a float64 scalar leaf); the others are static fields
    assert traced_options(ctrl) == {"mutation": 0.1} and ctrl.elite == 5
    assert ctrl.mutation.shape == () and ctrl.mutation.dtype == jnp.float64
    fields = {f.name: f for f in dataclasses.fields(GAController)}
    assert {n for n, f in fields.items() if f.metadata.get(OPTION) == "static" and f.metadata.get("static")} == STATIC
    assert {n for n, f in fields.items() if f.metadata.get(OPTION) == "traced"} == {"mutation"}
    for field, value in [("population", 1), ("generations", -1), ("max_add", 0), ("mutation", 1.5),
                         ("elite_fraction", 1.0), ("elite_fraction", 0.05), ("max_stages_per_service", 0),
                         ("population", 2.5)]:
        with pytest.raises(ConfigError) as err:
            GAController(**{field: value})
        assert err.value.field == f"controller.{field}"
    node = OmegaConf.load(CONF / "controller" / "ga.yaml")
    yaml = {k: v for k, v in node.items() if k != "defaults"}
    assert yaml == {f.name: getattr(GAController.Config(), f.name) for f in dataclasses.fields(GAController.Config)}
    assert set(yaml) == STATIC | {"mutation"}
    assert list(node.defaults) == ["base_ga", "_self_"]
    registry = Registry.default()
    assert registry.resolve("controller", "ga") is GAController
    # composed by Hydra from conf/controller/ga.yaml, with an override and a bad value
    from hydra import compose, initialize_config_dir

    from edgefm.cli import make_component
    from edgefm.config.schema import register_all

    register_all(registry, conf_dir=CONF)
    with initialize_config_dir(str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=["controller=ga", "controller.mutation=0.25"])
        bad = compose("config", overrides=["controller=ga", "controller.population=1"])
    ctrl = make_component(registry, "controller", cfg.controller)
    assert isinstance(ctrl, GAController) and traced_options(ctrl) == {"mutation": 0.25} and ctrl.generations == 30
    with pytest.raises(ConfigError, match="controller.population"):
        make_component(registry, "controller", bad.controller)
    var = get_variable("ga_fitness")
    assert var.dims == ("instance", "realisation", "slot") and var.dtype == "float64"


# ------------------------------------------------------------------------------------------------
# End to end through the engine: the small scenario, 2 realisations, 40 ms of arrivals + 60 ms drain


@pytest.fixture(scope="module")
def e2e():
    scenarios = build_scenarios(load_spec(CONF / "scenario" / "small.yaml"), seed=0)
    sim = SimSettings(realisations=2, arrival_ms=40.0, drain_ms=60.0)
    comps = Components(LeastLoadedPlacement(), GAController(), NakagamiChannel(), PoissonWorkload())
    run = run_engine(scenarios, comps, sim, seed=0)
    return run, comps, sim


def test_engine_run_is_valid(e2e):
    run, _, _ = e2e
    o, T = run.outputs, run.sizes.T
    for name in ("invalid_actions", "capacity_violations", "list_overflow"):
        np.testing.assert_array_equal(o[name], 0, err_msg=name)
    sc = run.scenarios[0]
    arrived = o["tasks_arrived"]
    assert arrived.sum() > 0
    np.testing.assert_array_equal(
        arrived, o["tasks_ontime"] + o["tasks_late"] + o["tasks_unfinished"] + o["tasks_dropped"]
    )
    for r in range(2):
        n = int(o["num_tasks"][0, r])
        fin, arr = o["task_finish"][0, r, :n], o["task_arrival"][0, r, :n]
        ty = o["task_type"][0, r, :n]
        done = ~np.isnan(fin)
        ontime = done & (fin - arr <= sc.deadline[ty])
        assert int(o["tasks_ontime"][0, r]) == ontime.sum() and int(o["tasks_late"][0, r]) == (done & ~ontime).sum()
    # Eq. 8 recomputed from the light counts, and the light cost
    light = sc.light_services
    x = o["x_light"][0].astype(float)  # [R,T,V,Ml]
    usage = (run.x_core[0] @ sc.resource)[None, None] + np.einsum("rtvl,lk->rtvk", x, sc.resource[light])
    assert np.all(usage <= sc.capacity + 1e-9) and x.sum() > 0
    prev = np.concatenate([np.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
    cost = (sc.cost_deploy[light] * np.maximum(x - prev, 0) + (sc.cost_maintain[light] + sc.cost_payload[light]) * x)
    np.testing.assert_allclose(o["cost_light_slot"][0], cost.sum((2, 3)), atol=1e-9)
    # the diagnostics: one fitness per slot, at least the slot's light cost
    fit = o["ga_fitness"]
    assert fit.shape == (1, 2, T) and np.all(np.isfinite(fit))
    assert np.all(fit[0] >= o["cost_light_slot"][0] - 1e-9)
    # a slot in which a light stage waits has a positive fitness (its delay or deferral charge): a
    # task's roots wait from the first boundary at or after its upload ends (the default closures,
    # SEMANTICS §2.3; block fading: end = t + A_n / rate[t, u]); the types with a light root count
    light_root = {n for n in range(sc.num_types) for s in sc.stages_of(n)
                  if (sc.stage_parents[n, s] < 0).all() and not sc.service_is_core[sc.stage_service[n, s]]}
    assert light_root
    dt = 1.0  # sim.slot_ms of the e2e run
    checked = 0
    for r in range(2):
        for t, u, n in zip(*np.nonzero(o["arrivals"][0, r])):
            if n not in light_root:
                continue
            ready = int(np.ceil((t * dt + sc.input_size[n] / o["uplink_rate"][0, r, t, u]) / dt - 1e-12))
            if ready < T:
                assert fit[0, r, ready] > 0, (r, t, u, n, ready)
                checked += 1
    assert checked > 20


def test_dataset_carries_ga_fitness(e2e):
    from edgefm.results import build_dataset

    run, _, sim = e2e
    names = {"placement": "least_loaded", "controller": "ga", "channel": "nakagami", "workload": "poisson"}
    ds = build_dataset(run, slot_ms=sim.slot_ms, names=names, seed=0, config_yaml="seed: 0\n",
                       plugin_versions={"controller.ga": "edgefm 0.1.0"})
    assert ds["ga_fitness"].dims[-3:] == ("instance", "realisation", "slot")
    np.testing.assert_allclose(ds["ga_fitness"].values.reshape(run.outputs["ga_fitness"].shape),
                               run.outputs["ga_fitness"])
    assert ds["ga_fitness"].attrs["units"] == "price units + ms"


def test_mutation_is_traced(e2e):
    """A different mutation rate reuses the compiled program (and changes the decisions)."""
    run, comps, sim = e2e
    other = GAController(mutation=0.5)
    arrays = stack_arrays(run.scenarios, run.x_core, run.sizes.Ic, run.sizes.T)
    params = make_params(sim)
    programs, traces = TRACE_COUNTER["program"], TRACE_COUNTER["step"]
    assert programs > 0 and traces > 0  # the e2e run was traced and counted
    out = simulate(realisation_keys(0, 1, 2), arrays, params, run.sizes, comps.channel, comps.workload, other)
    out = jax.tree.map(np.asarray, out)
    assert TRACE_COUNTER["program"] == programs and TRACE_COUNTER["step"] == traces
    np.testing.assert_array_equal(out["arrivals"], run.outputs["arrivals"])
    np.testing.assert_array_equal(out["invalid_actions"], 0)
    assert not np.array_equal(out["ga_fitness"], run.outputs["ga_fitness"])
