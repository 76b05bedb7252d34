"""The reference Algorithm 1 (edgefm/reference/algorithm1.py) against hand computations and brute
force (docs/SEMANTICS.md §9, MODEL.md §7)."""

from __future__ import annotations

import math
from decimal import Decimal, getcontext
from pathlib import Path

import numpy as np
import pytest

from edgefm.errors import ConfigError
from edgefm.reference import (
    CONTROLLERS,
    Algorithm1Params,
    LightObservation,
    WaitingStage,
    algorithm1,
    delay_table,
    evaluate,
    evaluate_service,
    least_loaded_placement,
    make_controller,
    simulate_reference,
    virtual_queue,
)
from edgefm.scenario import Scenario, build_scenarios, load_spec

INF = math.inf
CONF = Path(__file__).resolve().parents[1] / "conf"


# ------------------------------------------------------------------------------------------------
# delay function (MODEL §7.2)
def _g_ec_decimal(y: int, a: float, k: float, beta: float, eps: float, dt: float, window: float) -> float:
    """g^EC(y) at 50 digits: bisection on ln(1+z)/z = r/(kβ), z = θβΔt (independent of the module)."""
    getcontext().prec = 50
    a, k, beta, eps, dt, window = (Decimal(repr(x)) for x in (a, k, beta, eps, dt, window))
    mean = k * beta
    r = y * a / window
    rho = r / mean
    lo, hi = Decimal("1e-30"), Decimal("1e6")
    for _ in range(400):
        mid = (lo + hi) / 2
        if (1 + mid).ln() / mid > rho:
            lo = mid
        else:
            hi = mid
    theta = (lo + hi) / 2 / (beta * dt)
    d_tail = (r / (mean * eps)).ln() / (theta * r)
    return float(max(dt, y * a / mean, d_tail))


def test_delay_table_check_values_of_model():
    g = delay_table(1.0, 1.5, 10.0, 0.2, 1.0, 0.0, 20, "ec")
    assert len(g) == 21
    assert g[0] == 0.0
    assert g[1] == g[2] == g[4] == g[8] == 1.0
    assert g[12] == pytest.approx(2.15, abs=5e-3)
    assert g[14] == pytest.approx(7.53, abs=5e-3)
    assert all(math.isinf(x) for x in g[15:])
    # relative accuracy 1e-10 (we ask 1e-12) against a 50-digit solve, wherever the tail term binds
    for y in (10, 11, 12, 13, 14):
        assert g[y] == pytest.approx(_g_ec_decimal(y, 1.0, 1.5, 10.0, 0.2, 1.0, 1.0), rel=1e-12)
    # window W = 0 means Δt; W = 2 halves the offered rate: g(y) with W = 2 has r = y/2
    assert delay_table(1.0, 1.5, 10.0, 0.2, 1.0, 1.0, 20, "ec") == g
    g2 = delay_table(1.0, 1.5, 10.0, 0.2, 1.0, 2.0, 20, "ec")
    assert all(math.isfinite(x) for x in g2)
    assert g2[20] == pytest.approx(_g_ec_decimal(20, 1.0, 1.5, 10.0, 0.2, 1.0, 2.0), rel=1e-12)


@pytest.mark.parametrize(
    "a, k, beta, eps, dt, window",
    [(1.0, 1.5, 10.0, 0.2, 1.0, 0.0), (0.7, 1.2, 3.3, 0.05, 0.5, 0.0), (1.9, 2.0, 14.0, 0.2, 1.0, 3.0)],
)
def test_delay_table_monotone_and_avg_closed_form(a, k, beta, eps, dt, window):
    ec = delay_table(a, k, beta, eps, dt, window, 30, "ec")
    avg = delay_table(a, k, beta, eps, dt, window, 30, "avg")
    assert ec[0] == avg[0] == 0.0
    assert all(ec[y] <= ec[y + 1] for y in range(30))
    assert all(avg[y] <= avg[y + 1] for y in range(30))
    mean = k * beta
    w = window if window > 0 else dt
    for y in range(1, 31):
        assert avg[y] == max(dt, y * a / mean)
        assert ec[y] >= avg[y]
        assert math.isinf(ec[y]) == (y * a / w >= mean)
        if math.isfinite(ec[y]) and ec[y] > avg[y]:
            assert ec[y] == pytest.approx(_g_ec_decimal(y, a, k, beta, eps, dt, w), rel=1e-11)


def test_delay_table_errors_name_the_field():
    with pytest.raises(ConfigError, match="kind"):
        delay_table(1.0, 1.5, 10.0, 0.2, 1.0, 0.0, 20, "tail")
    with pytest.raises(ConfigError, match="epsilon"):
        delay_table(1.0, 1.5, 10.0, 1.0, 1.0, 0.0, 20, "ec")
    with pytest.raises(ConfigError, match="window_ms"):
        delay_table(1.0, 1.5, 10.0, 0.2, 1.0, -1.0, 20, "ec")


# ------------------------------------------------------------------------------------------------
# virtual queues (SEMANTICS §9)
def test_virtual_queue_of_a_late_task():
    # D = 3, Δt = 1, arrival 0: H(t) = max(1, H(t-1) + (t-1) - 3); stays 1 while the age t-1 <= 3
    got = [virtual_queue(0.0, 3.0, t, 1.0, 1.0) for t in range(9)]
    assert got == [1.0, 1.0, 1.0, 1.0, 1.0, 2.0, 4.0, 7.0, 11.0]
    # arrival 2 ms = boundary 4 with Δt = 0.5 ms, D = 1: H(t) adds the age (t-1)·0.5 - 2 minus 1,
    # positive from t = 8 (age 1.5 ms): 0.5, then 1, 1.5, 2
    got = [virtual_queue(2.0, 1.0, t, 0.5, 1.0) for t in range(4, 12)]
    assert got == [1.0, 1.0, 1.0, 1.0, 1.5, 2.5, 4.0, 6.0]
    # H_min = 2: 2, 2, 2, 2, 2 (= 2 + 3 - 3), 3 (= 2 + 4 - 3), 5 (= 3 + 5 - 3)
    assert [virtual_queue(0.0, 3.0, t, 1.0, 2.0) for t in range(7)] == [2.0] * 5 + [3.0, 5.0]
    with pytest.raises(ConfigError, match="arrival boundary"):
        virtual_queue(2.0, 3.0, 1, 1.0, 1.0)


# ------------------------------------------------------------------------------------------------
# hand-built observations
def make_scenario(capacity, services) -> Scenario:
    """A scenario with the given nodes and services; one task type per service (one stage)."""
    V, M = len(capacity), len(services)
    core = np.array([s["core"] for s in services])
    return Scenario(
        name="alg1",
        node_names=tuple(f"n{v}" for v in range(V)),
        node_is_server=np.ones(V, dtype=bool),
        capacity=np.array(capacity, dtype=float),
        link_ends=np.array([[v, v + 1] for v in range(V - 1)], dtype=int).reshape(-1, 2),
        link_bandwidth=np.ones(V - 1),
        link_length=np.zeros(V - 1),
        propagation_speed=INF,
        service_names=tuple(f"s{m}" for m in range(M)),
        service_is_core=core,
        resource=np.array([s["r"] for s in services], dtype=float),
        work=np.array([s["a"] for s in services], dtype=float),
        output_size=np.full(M, 0.1),
        core_rate=np.array([s.get("f", np.nan) for s in services], dtype=float),
        light_shape=np.array([s.get("shape", np.nan) for s in services], dtype=float),
        light_scale=np.array([s.get("scale", np.nan) for s in services], dtype=float),
        cost_deploy=np.array([s["dp"] for s in services], dtype=float),
        cost_maintain=np.array([s["mt"] for s in services], dtype=float),
        cost_payload=np.array([s["pl"] for s in services], dtype=float),
        type_names=tuple(f"t{m}" for m in range(M)),
        input_size=np.ones(M),
        deadline=np.full(M, 10.0),
        stage_service=np.arange(M).reshape(M, 1),
        stage_parents=np.full((M, 1, 1), -1, dtype=int),
        stage_child=np.full((M, 1), -1, dtype=int),
        sink_stage=np.zeros(M, dtype=int),
        user_gateway=np.zeros(1, dtype=int),
        arrival_rate=np.full((1, M), 0.1),
        nakagami_m=np.full(1, 2.0),
        nakagami_omega=np.full(1, 1.0),
    )


def light(r=(1, 0, 0, 0), a=1.0, shape=1.0, scale=1.0, dp=4.0, mt=1.0, pl=0.5):
    return dict(core=False, r=r, a=a, shape=shape, scale=scale, dp=dp, mt=mt, pl=pl)


def core(r=(1, 0, 0, 0), a=1.0, f=1.0, dp=20.0, mt=4.0):
    return dict(core=True, r=r, a=a, f=f, dp=dp, mt=mt, pl=0.0)


def make_obs(sc, waiting, *, t=0, busy=None, prev=None, x_core=None, y_max=2, X=2, dt=1.0) -> LightObservation:
    """``waiting``: [(task, service, data_ready [V], deadline)], in queue order; ``busy``: {(v,m,k): o};
    ``prev``: the (v,m,k) alive during slot t-1."""
    V, M = sc.num_nodes, sc.num_services
    occupancy = np.zeros((V, M, X), dtype=int)
    for key, o in (busy or {}).items():
        occupancy[key] = o
    alive_prev = np.zeros((V, M, X), dtype=bool)
    for key in prev or []:
        alive_prev[key] = True
    stages = [
        WaitingStage(task=j, stage=0, service=m, task_type=m, ready_slot=t, arrival=0.0, deadline=float(d),
                     data_ready=np.asarray(dr, dtype=float) + t * dt)
        for j, m, dr, d in waiting
    ]
    return LightObservation(
        t=t, slot_ms=dt, scenario=sc, x_core=np.zeros((V, M), dtype=int) if x_core is None else x_core,
        waiting=stages, occupancy=occupancy, alive_prev=alive_prev, y_max=y_max, max_light_instances=X,
    )


AVG = Algorithm1Params(kind="avg")  # g(y) = max(1, y·a/(kβ)) = y for a = k = β = 1


def test_phi_by_hand_with_deferral_and_rescore():
    sc = make_scenario([[4, 1, 1, 1], [4, 1, 1, 1]], [light()])
    # t = 3 (data_ready given relative to 3 ms), instance (0, k0) busy with 1 job and alive in slot 2
    obs = make_obs(
        sc,
        [(0, 0, [0, 3], 10), (1, 0, [0, 0.5], 10), (2, 0, [0, 0], 0.4), (3, 0, [0, 0], 10)],
        t=3, busy={(0, 0, 0): 1}, prev=[(0, 0, 0)],
    )
    H = {0: 1.0, 1: 2.0, 2: 1.0, 3: 1.5}
    ev = evaluate_service(obs, AVG, H, 0, [(1, 0), (0, 0)])
    # s0: (0,0) 0 + g(2) = 2, (1,0) 3 + g(1) = 4 -> (0,0), now full (y_max 2)
    # s1: (1,0) 0.5 + g(1) = 1.5 < 21 -> placed;  s2: (1,0) 0 + g(2) = 2 >= c = 1.8 -> deferred
    # s3: (1,0) 0 + g(2) = 2 < 21 -> placed; re-score s1 with o_final 2: 0.5 + 2 = 2.5
    assert [(w, v, k) for w, v, k, _ in ev.placed] == [(0, 0, 0), (1, 1, 0), (3, 1, 0)]
    assert [d for *_, d in ev.placed] == [2.0, 2.5, 2.0]
    assert ev.deferred == [2]
    assert ev.occupancy == {(0, 0): 2, (1, 0): 2}
    # C = c_dp·(0 + 1) + (c_mt + c_pl)·2 = 4 + 3 = 7
    assert ev.cost == 7.0
    assert ev.phi == pytest.approx(7.0 + 1 * 2.0 + 2 * 2.5 + 1 * 1.8 + 1.5 * 2.0, abs=1e-12)
    # V and π scale their terms
    ev2 = evaluate_service(obs, Algorithm1Params(kind="avg", V=2.0, pi=0.5), H, 0, [(0, 0), (1, 0)])
    assert ev2.phi == pytest.approx(14.0 + 0.5 * 11.8, abs=1e-12)
    # L = 2: only s0, s1 are seen; s1's re-score is then 0.5 + g(1) = 1.5
    ev3 = evaluate_service(obs, Algorithm1Params(kind="avg", max_stages_per_service=2), H, 0, [(0, 0), (1, 0)])
    assert ev3.deferred == [] and [w for w, *_ in ev3.placed] == [0, 1]
    assert ev3.phi == pytest.approx(7.0 + 2.0 + 2 * 1.5, abs=1e-12)
    # no instance at all: every stage deferred, C = 0 (the instance alive in slot t-1 is gone)
    ev4 = evaluate_service(obs, AVG, H, 0, [])
    assert ev4.placed == [] and ev4.deferred == [0, 1, 2, 3]
    assert ev4.phi == pytest.approx(21 + 2 * 21 + 1.8 + 1.5 * 21, abs=1e-12)
    # Φ(X) sums the services
    mask = np.zeros((2, 1, 2), dtype=bool)
    mask[0, 0, 0] = mask[1, 0, 0] = True
    total, per = evaluate(obs, AVG, H, mask)
    assert total == per[0].phi == ev.phi


def test_phi_tie_breaks():
    sc = make_scenario([[4, 1, 1, 1], [4, 1, 1, 1]], [light()])
    H = {j: 1.0 for j in range(8)}
    # equal scores 2 = 0 + g(2) on (0,0) [o = 1] and 1 + g(1) on (1,0) [o = 0]: lower occupancy wins
    obs = make_obs(sc, [(0, 0, [0, 1], 10)], busy={(0, 0, 0): 1}, y_max=3)
    assert evaluate_service(obs, AVG, H, 0, [(0, 0), (1, 0)]).placed[0][:3] == (0, 1, 0)
    # within 1e-9 still ties (the larger score with the lower occupancy wins); beyond it does not
    obs = make_obs(sc, [(0, 0, [0, 1 + 5e-10], 10)], busy={(0, 0, 0): 1}, y_max=3)
    assert evaluate_service(obs, AVG, H, 0, [(0, 0), (1, 0)]).placed[0][:3] == (0, 1, 0)
    obs = make_obs(sc, [(0, 0, [0, 1 + 3e-9], 10)], busy={(0, 0, 0): 1}, y_max=3)
    assert evaluate_service(obs, AVG, H, 0, [(0, 0), (1, 0)]).placed[0][:3] == (0, 0, 0)
    # equal scores and occupancies: lowest flat index v·X + k, (0,1) -> 1 before (1,0) -> 2
    obs = make_obs(sc, [(0, 0, [0, 0], 10), (1, 0, [0, 0], 10)], y_max=3)
    ev = evaluate_service(obs, AVG, H, 0, [(1, 0), (0, 1)])
    assert [p[:3] for p in ev.placed] == [(0, 0, 1), (1, 1, 0)]  # the second goes to the emptier one
    # strict s* < c_s: score 2 with c = 2·0.5 + 1 = 2 is deferred, with D = 0.5001 placed
    obs = make_obs(sc, [(0, 0, [0, 0], 0.5), (1, 0, [0, 0], 0.5001)], busy={(0, 0, 0): 1}, y_max=2)
    ev = evaluate_service(obs, AVG, H, 0, [(0, 0)])
    assert ev.deferred == [0] and [p[0] for p in ev.placed] == [1]
    # a full instance (o = y_max) is no candidate
    obs = make_obs(sc, [(0, 0, [0, 0], 10)], busy={(0, 0, 0): 2}, y_max=2)
    assert evaluate_service(obs, AVG, H, 0, [(0, 0)]).deferred == [0]


def test_greedy_by_hand_and_node_tie():
    # two identical nodes, one stage: adding on node 0 or 1 gives the same Δ -> the lower node
    sc = make_scenario([[1, 1, 1, 1], [1, 1, 1, 1]], [light()])
    obs = make_obs(sc, [(0, 0, [0, 0], 10)])
    decision, info = algorithm1(obs, AVG, {0: 1.0})
    # Φ(∅) = 21; adding one instance: 4 + 1.5 + g(1) = 6.5; a second one cannot help (it costs)
    assert info["steps"] == 1 and info["objective"] == pytest.approx(6.5, abs=1e-12)
    assert np.flatnonzero(decision.alive.ravel()).tolist() == [0]  # (v0, m0, k0)
    assert decision.assignment == [(0, 0, 0)]
    assert decision.parallelism.tolist() == [[1], [0]]
    # Δ within tol = 1e-9·(1 + 21) of the best: still the lower node, not the strict argmin (node 1)
    decision, info = algorithm1(make_obs(sc, [(0, 0, [1e-11, 0], 10)]), AVG, {0: 1.0})
    assert decision.alive[0, 0, 0] and not decision.alive[1].any()
    decision, info = algorithm1(make_obs(sc, [(0, 0, [1e-7, 0], 10)]), AVG, {0: 1.0})
    assert decision.alive[1, 0, 0] and not decision.alive[0].any()
    # expensive instances: deferring is cheaper, nothing is added
    sc = make_scenario([[1, 1, 1, 1], [1, 1, 1, 1]], [light(dp=30.0)])
    decision, info = algorithm1(make_obs(sc, [(0, 0, [0, 0], 10)]), AVG, {0: 1.0})
    assert info["steps"] == 0 and not decision.alive.any() and decision.assignment == []
    assert info["objective"] == 21.0 and info["deferred"] == 1
    # ...unless the virtual queue is large: w = 3 -> 63 deferred vs 31.5 + 3·1 placed
    decision, info = algorithm1(make_obs(sc, [(0, 0, [0, 0], 10)]), AVG, {0: 3.0})
    assert info["steps"] == 1 and info["objective"] == pytest.approx(34.5, abs=1e-12)
    # the cap on steps, and an instance that was alive in slot t-1 is restarted without c_dp
    sc = make_scenario([[1, 1, 1, 1], [1, 1, 1, 1]], [light()])
    obs = make_obs(sc, [(0, 0, [0, 0], 10)], prev=[(1, 0, 1)])
    decision, info = algorithm1(obs, AVG, {0: 1.0})
    assert decision.alive[1, 0, 0] and info["objective"] == pytest.approx(2.5, abs=1e-12)
    decision, info = algorithm1(obs, Algorithm1Params(kind="avg", max_steps=0), {0: 1.0})
    assert info["steps"] == 0 and not decision.alive.any()


# ------------------------------------------------------------------------------------------------
# brute force on random tiny observations
def random_obs(rng: np.random.Generator):
    """Nodes 2-3; services light 0, core 1, light 2; X = 2; busy instances that fit; 0-7 stages."""
    V, X = int(rng.integers(2, 4)), 2
    services = [
        light(r=(1.0, 0.5, 0, 0), a=float(rng.uniform(0.5, 1.5)), shape=1.5, scale=float(rng.uniform(1, 3)),
              dp=float(rng.uniform(0, 5)), mt=float(rng.uniform(0, 1)), pl=0.5),
        core(r=(2.0, 1.0, 0, 0)),
        light(r=(1.5, 0.25, 0, 0), a=float(rng.uniform(0.5, 1.5)), shape=1.2, scale=float(rng.uniform(1, 4)),
              dp=float(rng.uniform(0, 5)), mt=float(rng.uniform(0, 1)), pl=0.5),
    ]
    x_core = np.zeros((V, 3), dtype=int)
    x_core[:, 1] = rng.integers(0, 2, size=V)
    busy = {}
    for v in range(V):
        for m in (0, 2):
            for k in range(X):
                if rng.random() < 0.25:
                    busy[(v, m, k)] = int(rng.integers(1, 4))
    prev = [key for key in busy] + [(v, m, k) for v in range(V) for m in (0, 2) for k in range(X) if rng.random() < 0.2]
    occ = np.zeros((V, 3, X))
    for key in busy:
        occ[key] = 1
    used = (x_core + occ.sum(axis=2)) @ np.array([s["r"] for s in services])
    capacity = used + rng.uniform(0, 4, size=(V, 4))
    sc = make_scenario(capacity.tolist(), services)
    n_wait = int(rng.integers(0, 8))
    waiting = [
        (j, int(rng.choice([0, 2])), rng.uniform(0, 4, size=V).tolist(), float(rng.uniform(0.5, 5)))
        for j in range(n_wait)
    ]
    obs = make_obs(sc, waiting, t=int(rng.integers(0, 5)), busy=busy, prev=prev, x_core=x_core, y_max=4, X=X)
    H = {j: float(rng.uniform(1, 6)) for j in range(n_wait)}
    kind = str(rng.choice(["ec", "avg"]))
    return obs, H, kind


def single_additions(obs, members):
    """Every feasible single addition (m, v, k) to the [V,M,X] mask, by an independent usage formula."""
    sc = obs.scenario
    used = (obs.x_core + members.sum(axis=2)) @ sc.resource
    waiting = {w.service for w in obs.waiting}
    out = []
    for m in sc.light_services:
        if m not in waiting:
            continue
        for v in range(sc.num_nodes):
            free = [k for k in range(obs.max_light_instances) if not members[v, m, k]]
            if free and np.all(used[v] + sc.resource[m] <= sc.capacity[v]):
                out.append((int(m), v, free[0]))
    return out


def first_step_deltas(obs, params, H):
    """(busy, Φ(busy), [(ΔΦ, m, v, k)] for every single feasible addition): the brute force of a
    greedy step."""
    busy = obs.occupancy > 0
    phi0, _ = evaluate(obs, params, H, busy)
    deltas = []
    for m, v, k in single_additions(obs, busy):
        mask = busy.copy()
        mask[v, m, k] = True
        deltas.append((evaluate(obs, params, H, mask)[0] - phi0, m, v, k))
    return busy, phi0, deltas


@pytest.mark.parametrize("seed", range(40))
def test_greedy_first_step_is_brute_force_argmin(seed):
    obs, H, kind = random_obs(np.random.default_rng(seed))
    params = Algorithm1Params(kind=kind, max_steps=1)
    busy, phi0, deltas = first_step_deltas(obs, params, H)
    decision, info = algorithm1(obs, params, H)
    tol = 1e-9 * (1 + abs(phi0))
    if not deltas or min(d for d, *_ in deltas) >= -tol:
        assert info["steps"] == 0
        np.testing.assert_array_equal(decision.alive, busy)
    else:
        best = min(d for d, *_ in deltas)
        _, m, v, k = min((c for c in deltas if c[0] <= best + tol), key=lambda c: (c[1], c[2]))
        expected = busy.copy()
        expected[v, m, k] = True
        assert info["steps"] == 1
        np.testing.assert_array_equal(decision.alive, expected)
        assert info["objective"] == pytest.approx(phi0 + best, abs=1e-9)


@pytest.mark.parametrize("seed", range(40))
def test_greedy_final_state_invariants(seed):
    obs, H, kind = random_obs(np.random.default_rng(1000 + seed))
    params = Algorithm1Params(kind=kind)
    decision, info = algorithm1(obs, params, H)
    sc = obs.scenario
    alive = decision.alive
    busy = obs.occupancy > 0
    assert alive.shape == busy.shape and not np.any(busy & ~alive)  # busy instances are never stopped
    assert not alive[:, sc.service_is_core, :].any()
    assert np.all((obs.x_core + alive.sum(axis=2)) @ sc.resource <= sc.capacity)  # Eq. 8
    assert info["steps"] == int(alive.sum() - busy.sum())
    # the objective is Φ of the final X, and X is a local minimum
    phi, per = evaluate(obs, params, H, alive)
    assert info["objective"] == pytest.approx(phi, abs=1e-12)
    assert info["phi"] == pytest.approx({m: ev.phi for m, ev in per.items()}, abs=1e-12)
    tol = 1e-9 * (1 + abs(phi))
    for m, v, k in single_additions(obs, alive):
        mask = alive.copy()
        mask[v, m, k] = True
        assert evaluate(obs, params, H, mask)[0] >= phi - tol
    # assignment: queue order, to alive instances of the stage's service, as evaluated on the final X
    assert [a[0] for a in decision.assignment] == sorted({a[0] for a in decision.assignment})
    final = obs.occupancy.copy()
    for w_idx, v, k in decision.assignment:
        m = obs.waiting[w_idx].service
        assert alive[v, m, k]
        final[v, m, k] += 1
    assert decision.assignment == sorted((w, v, k) for ev in per.values() for w, v, k, _ in ev.placed)
    assert np.all(final <= obs.y_max)
    # y = the largest final occupancy over the instances of (v, m) in X, 0 where there is none
    expected_y = np.where(alive, final, 0).max(axis=2)
    np.testing.assert_array_equal(decision.parallelism, expected_y)


# ------------------------------------------------------------------------------------------------
# the controller
def test_controller_virtual_queues_and_log():
    sc = make_scenario([[4, 1, 1, 1], [4, 1, 1, 1]], [light()])
    log: list = []
    control = make_controller("avg", log=log, H_min=1.0)
    obs = make_obs(sc, [(7, 0, [0, 0], 2.0)], t=5)
    decision, state = control(obs, None)
    assert state["H"][7] == (5, virtual_queue(0.0, 2.0, 5, 1.0, 1.0)) == (5, 4.0)  # 1, 1, 1, 1, 2, 4
    obs = make_obs(sc, [(7, 0, [0, 0], 2.0)], t=9)
    decision, state = control(obs, state)
    assert state["H"][7] == (9, virtual_queue(0.0, 2.0, 9, 1.0, 1.0))
    assert [entry["t"] for entry in log] == [5, 9] and state["info"] == {k: v for k, v in log[1].items() if k != "t"}
    with pytest.raises(ConfigError, match="obs.t"):
        control(make_obs(sc, [(7, 0, [0, 0], 2.0)], t=3), state)
    with pytest.raises(ConfigError, match="controller parameter"):
        make_controller("ec", lambda_=1.0)
    with pytest.raises(ConfigError, match="kind"):
        make_controller("tail")
    with pytest.raises(ConfigError, match="max_steps"):
        Algorithm1Params(max_steps=-1)
    assert CONTROLLERS["proposed"].__name__ == "proposed" and CONTROLLERS["propavg"].__name__ == "propavg"


def small_case(seed: int, load: float, *, arrival_slots=40, drain_slots=60, X=8):
    sc = build_scenarios(load_spec(CONF / "scenario" / "small.yaml"), seed=0)[0]
    x_core = least_loaded_placement(sc)
    rng = np.random.default_rng(seed)
    T = arrival_slots + drain_slots
    arrivals = np.zeros((T, sc.num_users, sc.num_types), dtype=int)
    arrivals[:arrival_slots] = rng.poisson(load * sc.arrival_rate, size=(arrival_slots, sc.num_users, sc.num_types))
    uplink = rng.uniform(0.5, 3.0, size=(T, sc.num_users))
    light_ids = sc.light_services
    shape = sc.light_shape[light_ids][None, None, :, None]
    scale = sc.light_scale[light_ids][None, None, :, None]
    light_rate = rng.gamma(shape, scale, size=(T, sc.num_nodes, len(light_ids), X))
    sim = dict(slot_ms=1.0, arrival_slots=arrival_slots, total_slots=T, y_max=20, max_light_instances=X)
    return sc, x_core, arrivals, uplink, light_rate, sim


@pytest.mark.parametrize("seed, load, X", [(0, 1.0, 8), (1, 1.0, 8), (2, 8.0, 8), (3, 40.0, 2)])
@pytest.mark.parametrize("kind", ["proposed", "propavg"])
def test_end_to_end_small_scenario(seed, load, X, kind):
    # load 40 with 2 instance slots per (v, m): a backlog, late tasks, full instances
    sc, x_core, arrivals, uplink, light_rate, sim = small_case(seed, load, X=X)
    log: list = []
    controller = make_controller("ec" if kind == "proposed" else "avg", log=log)
    res = simulate_reference(sc, x_core, arrivals, uplink, light_rate, controller=controller, **sim)
    assert res.tasks_arrived == int(arrivals.sum()) > 0
    assert res.tasks_arrived == res.tasks_ontime + res.tasks_late + res.tasks_unfinished + res.tasks_dropped
    assert res.capacity_violations == 0 and res.tasks_ontime > 0
    assert [entry["t"] for entry in log] == list(range(sim["total_slots"]))
    assert all(math.isfinite(entry["objective"]) for entry in log)
    assert sum(entry["steps"] for entry in log) > 0
    # the registered default controller takes the same decisions
    ref = simulate_reference(sc, x_core, arrivals, uplink, light_rate, controller=kind, **sim)
    np.testing.assert_array_equal(ref.task_finish, res.task_finish)
    np.testing.assert_array_equal(ref.x_light, res.x_light)
