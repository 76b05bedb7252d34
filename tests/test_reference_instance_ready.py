"""The option `instance_ready` of the reference Algorithm 1 (docs/SEMANTICS.md §9): MODEL's
"instance-ready − t" term as each light instance's predicted drain time, by hand and against brute
force (`instance_ready: drain`); with `instance_ready: none` (the default) nothing changes. The
value `max_input` is tested in test_reference_algorithm1_options.py."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from test_reference_algorithm1 import first_step_deltas, light, make_obs, make_scenario, random_obs, small_case

from edgefm.errors import ConfigError
from edgefm.reference import (
    Algorithm1Params,
    algorithm1,
    evaluate,
    evaluate_service,
    instance_drains,
    make_controller,
    simulate_reference,
)

AVG = Algorithm1Params(kind="avg")
READY = Algorithm1Params(kind="avg", instance_ready="drain")


def test_instance_ready_is_validated_and_passed_through():
    for value in ("none", "drain", "max_input"):
        assert Algorithm1Params(instance_ready=value).instance_ready == value
    assert Algorithm1Params().instance_ready == "none"
    # named values only: the former numbers 0 / 1 (and every other number, bool or string) are refused
    for value in (0, 1, 0.0, 1.0, 0.5, 2, -1, math.nan, True, False, np.int64(1), "1", "Drain", "", None):
        with pytest.raises(ConfigError, match=r"controller\.instance_ready = .* one of: none, drain, max_input"):
            Algorithm1Params(instance_ready=value)
    with pytest.raises(ConfigError, match=r"controller\.instance_ready"):
        make_controller("ec", instance_ready=1)
    assert "instance_ready='drain'" in make_controller("ec", instance_ready="drain").__doc__


# ------------------------------------------------------------------------------------------------
# by hand: two nodes, one light service with a = 2 MB and E f = kβ = 2·1 MB/ms, so that
# g^avg(y) = max(Δt, y·a/E f) = max(1, y); y_max = 3, X = 2, boundary t = 2 (now = 2 ms).
# (0,0,0) is busy with 2 jobs: (remaining 1 MB, data ready at 1 ms), (2 MB, 4 ms)
#   drain = max(max(2, 1) + 1/2, 4) + 2/2 = 5 ms, so the drain term is 3 ms;
# (1,0,0) is busy with 1 job: (2 MB, 2.5 ms): drain = max(2, 2.5) + 2/2 = 3.5 ms, term 1.5 ms.
# Both were alive in slot 1. Stages (deadline 10, c = 21, H = 1): s0 with its input at now + 0 on
# node 0 and now + 2 on node 1, s1 at now on both.
FIFO = {(0, 0, 0): [(1.0, 1.0), (2.0, 4.0)], (1, 0, 0): [(2.0, 2.5)], (0, 0, 1): [], (1, 0, 1): []}
H = {0: 1.0, 1: 1.0}


def hand_obs(**changes):
    sc = make_scenario([[4, 1, 1, 1], [4, 1, 1, 1]], [light(a=2.0, shape=2.0, scale=1.0, dp=1.0)])
    obs = make_obs(sc, [(0, 0, [0, 2], 10), (1, 0, [0, 0], 10)], t=2, busy={(0, 0, 0): 2, (1, 0, 0): 1},
                   prev=[(0, 0, 0), (1, 0, 0)], y_max=3, X=2)
    return dataclasses.replace(obs, fifo=FIFO, **changes)


def test_drain_times_by_hand():
    obs = hand_obs()
    drain = instance_drains(obs)
    assert drain.shape == (2, 1, 2)
    assert drain[:, 0, :].tolist() == [[5.0, 2.0], [3.5, 2.0]]  # idle instances drain at now
    # the engine's precomputed drain is the alternative input (used only without the FIFOs)
    given = np.array([[[5.0, 2.0]], [[3.5, 2.0]]]).reshape(2, 1, 2)
    alt = dataclasses.replace(obs, fifo=None, drain=given)
    np.testing.assert_array_equal(instance_drains(alt), drain)
    assert algorithm1(alt, READY, H)[1] == algorithm1(obs, READY, H)[1]
    # the FIFO must match the occupancy, and instance_ready = drain needs one of the two inputs
    with pytest.raises(ConfigError, match=r"obs\.fifo\[\(0, 0, 0\)\]"):
        instance_drains(dataclasses.replace(obs, fifo={**FIFO, (0, 0, 0): [(1.0, 1.0)]}))
    with pytest.raises(ConfigError, match=r"obs\.fifo"):
        algorithm1(dataclasses.replace(obs, fifo=None), READY, H)
    with pytest.raises(ConfigError, match=r"obs\.drain\.shape"):
        instance_drains(dataclasses.replace(obs, fifo=None, drain=np.zeros((2, 2))))
    # ...but not when nothing is busy (every drain is now), and instance_ready = none needs neither
    idle = dataclasses.replace(obs, fifo=None, occupancy=np.zeros((2, 1, 2), dtype=int))
    assert instance_drains(idle).tolist() == [[[2.0, 2.0]], [[2.0, 2.0]]]
    algorithm1(dataclasses.replace(obs, fifo=None), AVG, H)


def test_phi_with_drain_by_hand():
    obs = hand_obs()
    ev = evaluate_service(obs, READY, H, 0, [(0, 0), (1, 0)])
    # s0: (0,0) max(0, 3) + g(3) = 6; (1,0) max(2, 1.5) + g(2) = 4 -> (1,0)
    # s1: (0,0) max(0, 3) + g(3) = 6; (1,0) max(0, 1.5) + g(3) = 4.5 -> (1,0), now full
    # re-score at o_final = 3: s0 2 + 3 = 5, s1 1.5 + 3 = 4.5; C = 1.5·2 (both alive in slot 1)
    assert [p[:3] for p in ev.placed] == [(0, 1, 0), (1, 1, 0)]
    assert [p[3] for p in ev.placed] == [5.0, 4.5]
    assert ev.cost == 3.0 and ev.phi == 12.5
    # without the term: s0 (0,0) 0 + g(3) = 3 vs (1,0) 2 + g(2) = 4 -> (0,0), full; s1 (1,0) 0 + g(2)
    ev0 = evaluate_service(obs, AVG, H, 0, [(0, 0), (1, 0)])
    assert [p[:3] for p in ev0.placed] == [(0, 0, 0), (1, 1, 0)]
    assert [p[3] for p in ev0.placed] == [3.0, 2.0] and ev0.phi == 8.0
    # a precomputed drain passed in directly is used as is
    drain = instance_drains(obs)
    assert evaluate_service(obs, READY, H, 0, [(0, 0), (1, 0)], drain=drain) == ev


def test_greedy_with_drain_by_hand():
    obs = hand_obs()
    decision, info = algorithm1(obs, READY, H)
    # X = {(0,0), (1,0)}: Φ = 12.5. Add (0,1): C = c_dp + 1.5·3 = 5.5;
    #   s0: (0,1) 0 + g(1) = 1 is best -> (0,1); s1: (0,1) 0 + g(2) = 2 < (1,0) 1.5 + g(2) = 3.5 -> (0,1)
    #   re-scored 2 + 2: Φ = 9.5, Δ = -3.
    # Add (1,1): C = 5.5; s0: (1,1) max(2, 0) + g(1) = 3 < (1,0) 4 -> (1,1); s1: (1,1) 0 + g(2) = 2 -> (1,1)
    #   re-scored 2 + g(2) = 4 and 2: Φ = 11.5, Δ = -1.  -> add (0,1).
    # Then add (1,1): C = 2·(1 + 3) = 8; s0 -> (0,1) at 1, s1 -> (1,1) at 1: Φ = 10, Δ = +0.5 -> stop.
    assert info["steps"] == 1 and info["objective"] == 9.5
    assert sorted(map(tuple, np.argwhere(decision.alive))) == [(0, 0, 0), (0, 0, 1), (1, 0, 0)]
    assert decision.assignment == [(0, 0, 1), (1, 0, 1)]
    assert decision.bounds == [2.0, 2.0]  # the stated bound stays g(o_final) (§11), not d̂
    assert decision.parallelism.tolist() == [[2], [1]]
    # instance_ready = none on the same observation (its FIFOs are ignored): Φ = 8 and no addition pays
    # (add (0,1): s0 -> (0,1) at 1, s1 ties at 2 between (0,1) and (1,0), same o -> (0,1): Φ = 9.5;
    #  add (1,1): s0 ties at 3, (1,1) emptier; s1 ties at 2, (1,0) lower index: Φ = 10.5)
    decision0, info0 = algorithm1(obs, AVG, H)
    assert info0["steps"] == 0 and info0["objective"] == 8.0
    assert sorted(map(tuple, np.argwhere(decision0.alive))) == [(0, 0, 0), (1, 0, 0)]
    assert decision0.assignment == [(0, 0, 0), (1, 1, 0)]
    assert decision0.bounds == [3.0, 2.0] and decision0.parallelism.tolist() == [[3], [2]]
    # the controller of the reference simulator passes the option through
    decision1, state = make_controller("avg", instance_ready="drain")(obs, None)
    assert decision1.assignment == decision.assignment and state["info"] == info
    decision1, state = make_controller("avg")(obs, None)
    assert decision1.assignment == decision0.assignment and state["info"] == info0


# ------------------------------------------------------------------------------------------------
# random tiny observations with random FIFOs
def with_fifo(obs, rng):
    """``obs`` with a FIFO for every busy light instance: remaining work in (0, a_m], data ready
    within [now − 1, now + 4] ms."""
    sc, now = obs.scenario, obs.t * obs.slot_ms
    fifo = {}
    for v, m, k in np.argwhere(obs.occupancy > 0):
        fifo[(int(v), int(m), int(k))] = [
            (float(rng.uniform(0.05, 1.0)) * float(sc.work[m]), now + float(rng.uniform(-1.0, 4.0)))
            for _ in range(int(obs.occupancy[v, m, k]))
        ]
    return dataclasses.replace(obs, fifo=fifo)


@pytest.mark.parametrize("seed", range(30))
def test_instance_ready_none_is_unchanged_and_drain_is_the_brute_force_argmin(seed):
    rng = np.random.default_rng(2000 + seed)
    bare, H, kind = random_obs(rng)
    obs = with_fifo(bare, rng)
    # none: the FIFOs do not matter, and the default is none
    d0, i0 = algorithm1(bare, Algorithm1Params(kind=kind), H)
    d1, i1 = algorithm1(obs, Algorithm1Params(kind=kind, instance_ready="none"), H)
    assert i0 == i1 and d0.assignment == d1.assignment and d0.bounds == d1.bounds
    np.testing.assert_array_equal(d0.alive, d1.alive)
    np.testing.assert_array_equal(d0.parallelism, d1.parallelism)
    # drain with no busy instance: every drain is now, so the decisions are those of none, bit for bit
    idle = dataclasses.replace(bare, occupancy=np.zeros_like(bare.occupancy))
    a, ia = algorithm1(idle, Algorithm1Params(kind=kind), H)
    b, ib = algorithm1(idle, Algorithm1Params(kind=kind, instance_ready="drain"), H)
    assert ia == ib and a.assignment == b.assignment and a.bounds == b.bounds
    # drain: the drain is >= now, = now exactly for the idle instances, and the first greedy step is
    # the brute-force argmin of Φ
    now = obs.t * obs.slot_ms
    drain = instance_drains(obs)
    assert np.all(drain >= now) and np.all((drain == now) | (obs.occupancy > 0))
    params = Algorithm1Params(kind=kind, instance_ready="drain", max_steps=1)
    busy, phi0, deltas = first_step_deltas(obs, params, H)
    decision, info = algorithm1(obs, params, H)
    tol = 1e-9 * (1 + abs(phi0))
    expected = busy.copy()
    if deltas and min(d for d, *_ in deltas) < -tol:
        best = min(d for d, *_ in deltas)
        _, m, v, k = min((c for c in deltas if c[0] <= best + tol), key=lambda c: (c[1], c[2]))
        expected[v, m, k] = True
        assert info["objective"] == pytest.approx(phi0 + best, abs=1e-9)
    np.testing.assert_array_equal(decision.alive, expected)
    # every placed stage's d̂ is max(data ready − now, drain − now) + g(o_final), its bound g(o_final)
    _, per = evaluate(obs, params, H, decision.alive)
    for ev in per.values():
        for w_idx, v, k, d_hat in ev.placed:
            ready = float(obs.waiting[w_idx].data_ready[v]) - now
            bound = decision.bounds[decision.assignment.index((w_idx, v, k))]
            assert d_hat == max(ready, float(drain[v, ev.service, k]) - now) + bound


# ------------------------------------------------------------------------------------------------
# through the reference simulator: it hands the controller each instance's FIFO
def test_simulator_passes_the_fifos():
    # computed with roots ready at arrival and FIFOs in dispatch order (the defaults until
    # SEMANTICS.md §2 steps 3 and 7 changed them): roots held through their upload fill the FIFOs
    sc, x_core, arrivals, uplink, light_rate, sim = small_case(3, 40.0, X=2)
    sim = dict(sim, root_ready="arrival", light_order="dispatch")
    seen = {"busy": 0, "waiting_on_busy": 0}
    inner = make_controller("ec", instance_ready="drain")

    def control(obs, state):
        now = obs.t * obs.slot_ms
        for (v, m, k), jobs in obs.fifo.items():
            assert len(jobs) == obs.occupancy[v, m, k]
            for remaining, ready in jobs:
                assert 0.0 < remaining <= sc.work[m] and math.isfinite(ready)
        drain = instance_drains(obs)
        assert np.all(np.where(obs.occupancy > 0, drain > now, drain == now))
        seen["busy"] += int(np.sum(obs.occupancy > 0))
        seen["waiting_on_busy"] += int(np.sum(drain > now + obs.slot_ms))
        return inner(obs, state)

    ready = simulate_reference(sc, x_core, arrivals, uplink, light_rate, controller=control, **sim)
    # (the small scenario's light stages are short: few FIFOs hold more than a slot of work)
    assert seen["busy"] > 50 and seen["waiting_on_busy"] > 0
    assert ready.capacity_violations == 0 and ready.tasks_ontime > 0
    # instance_ready = none through the simulator is the default controller, decision for decision
    base = simulate_reference(sc, x_core, arrivals, uplink, light_rate, controller="proposed", **sim)
    zero = simulate_reference(sc, x_core, arrivals, uplink, light_rate,
                              controller=make_controller("ec", instance_ready="none"), **sim)
    np.testing.assert_array_equal(zero.task_finish, base.task_finish)
    np.testing.assert_array_equal(zero.x_light, base.x_light)
    # ...and the drain term changes what happens
    assert not np.array_equal(ready.task_finish, base.task_finish, equal_nan=True)
