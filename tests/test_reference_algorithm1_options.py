"""The options `instance_ready: max_input` and `candidates: least_occupied` of the reference
Algorithm 1 (docs/SEMANTICS.md §9 "Evaluating one service"): hand cases where they change the
decision against `none` / `all`, a brute-force replay of the per-stage choice on random
observations for every combination of the two options, and the greedy's first step."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from test_reference_algorithm1 import first_step_deltas, light, make_obs, make_scenario, random_obs, single_additions
from test_reference_instance_ready import with_fifo

from edgefm.errors import ConfigError
from edgefm.reference import (
    Algorithm1Params,
    algorithm1,
    delay_table,
    evaluate,
    evaluate_service,
    instance_drains,
    instance_latest_inputs,
    instance_ready_times,
    make_controller,
)

INSTANCE_READY = ("none", "drain", "max_input")
CANDIDATES = ("all", "least_occupied")


def params(instance_ready="none", candidates="all", kind="avg", **kw) -> Algorithm1Params:
    return Algorithm1Params(kind=kind, instance_ready=instance_ready, candidates=candidates, **kw)


def test_options_are_validated_and_passed_through():
    assert Algorithm1Params().candidates == "all" and Algorithm1Params().instance_ready == "none"
    for value in CANDIDATES:
        assert Algorithm1Params(candidates=value).candidates == value
    for value in ("least", "All", "", 0, 1, True, None, ("all",)):
        with pytest.raises(ConfigError, match=r"controller\.candidates = .* one of: all, least_occupied"):
            Algorithm1Params(candidates=value)
    with pytest.raises(ConfigError, match=r"controller\.candidates"):
        make_controller("avg", candidates="lowest")
    control = make_controller("avg", instance_ready="max_input", candidates="least_occupied")
    assert "instance_ready='max_input'" in control.__doc__ and "candidates='least_occupied'" in control.__doc__


def with_fifos(obs, fifo):
    return dataclasses.replace(obs, fifo=fifo)


# ------------------------------------------------------------------------------------------------
# by hand. One light service with a = k = β = 1: g^avg(y) = max(Δt, y·a/(kβ)) = y; Δt = 1, t = 0
# (now = 0 ms), deadline 10 (c_s = 21), H = 1, c_dp = 4, c_mt + c_pl = 1.5. The FIFO jobs are
# (remaining MB, data-ready ms).
def two_nodes():
    return make_scenario([[4, 1, 1, 1], [4, 1, 1, 1]], [light()])


def test_max_input_changes_the_choice_by_hand():
    # (0,0) busy with 1 job (1 MB, input at 2.5): R = 2.5, drain = max(0, 2.5) + 1 = 3.5
    # (1,0) busy with 3 jobs (1 MB each, inputs there at 0): R = 0, drain = 3
    # one stage with its input on both nodes at 0; both instances alive in slot t-1 (C = 3)
    sc = two_nodes()
    obs = make_obs(sc, [(0, 0, [0, 0], 10)], busy={(0, 0, 0): 1, (1, 0, 0): 3}, prev=[(0, 0, 0), (1, 0, 0)], y_max=5)
    obs = with_fifos(obs, {(0, 0, 0): [(1.0, 2.5)], (1, 0, 0): [(1.0, 0.0)] * 3})
    H = {0: 1.0}
    members = [(0, 0), (1, 0)]
    assert instance_latest_inputs(obs)[:, 0, 0].tolist() == [2.5, 0.0]
    assert instance_drains(obs)[:, 0, 0].tolist() == [3.5, 3.0]
    assert instance_ready_times(obs, "none")[:, 0, 0].tolist() == [0.0, 0.0]
    # none: (0,0) 0 + g(2) = 2, (1,0) 0 + g(4) = 4 -> (0,0); Φ = 3 + 2
    ev = evaluate_service(obs, params("none"), H, 0, members)
    assert ev.placed == [(0, 0, 0, 2.0)] and ev.phi == 5.0 and ev.ready == {(0, 0): 0.0, (1, 0): 0.0}
    # max_input: (0,0) max(0, 0, 2.5) + g(2) = 4.5, (1,0) max(0, 0, 0) + g(4) = 4 -> (1,0); Φ = 3 + 4
    ev = evaluate_service(obs, params("max_input"), H, 0, members)
    assert ev.placed == [(0, 1, 0, 4.0)] and ev.phi == 7.0
    assert ev.ready == {(0, 0): 2.5, (1, 0): 0.0} and ev.occupancy == {(0, 0): 1, (1, 0): 4}
    # drain: (0,0) 3.5 + g(2) = 5.5, (1,0) 3 + g(4) = 7 -> (0,0); Φ = 3 + 5.5
    ev = evaluate_service(obs, params("drain"), H, 0, members)
    assert ev.placed == [(0, 0, 0, 5.5)] and ev.phi == 8.5
    # the precomputed alternative to the FIFOs gives the same
    alt = dataclasses.replace(obs, fifo=None, latest_input=np.array([2.5, 2.5, 0.0, 7.0]).reshape(2, 1, 2))
    assert instance_latest_inputs(alt)[:, 0, :].tolist() == [[2.5, 0.0], [0.0, 0.0]]  # idle (·, k1): now
    assert evaluate_service(alt, params("max_input"), H, 0, members) == evaluate_service(obs, params("max_input"), H, 0, members)
    # max_input needs the FIFOs (or latest_input) of the busy instances; drain= is for drain only
    with pytest.raises(ConfigError, match=r"obs\.fifo.*max_input"):
        evaluate_service(dataclasses.replace(obs, fifo=None), params("max_input"), H, 0, members)
    with pytest.raises(ConfigError, match=r"drain"):
        evaluate_service(obs, params("max_input"), H, 0, members, drain=instance_drains(obs))
    # a starting R table passed in directly is used as is
    expected = evaluate_service(obs, params("max_input"), H, 0, members)
    assert evaluate_service(obs, params("max_input"), H, 0, members, ready=instance_latest_inputs(obs)) == expected


def test_max_input_is_raised_during_the_evaluation_by_hand():
    # two added instances (0,0) and (1,0) (idle: R = now = 0; not alive in slot t-1: C = 2·5.5 = 11)
    # stage a: input at 2 on node 0, 5 on node 1; stage b: input at 0 on node 0, 1.5 on node 1
    sc = two_nodes()
    obs = make_obs(sc, [(0, 0, [2, 5], 10), (1, 0, [0, 1.5], 10)], y_max=3)
    H = {0: 1.0, 1: 1.0}
    members = [(0, 0), (1, 0)]
    # none: a -> (0,0) (2 + g(1) = 3 vs 5 + 1 = 6); b: (0,0) 0 + g(2) = 2 vs (1,0) 1.5 + g(1) = 2.5
    #   -> (0,0). Re-scored at o = 2: a 2 + 2 = 4, b 0 + 2 = 2; Φ = 11 + 6
    ev = evaluate_service(obs, params("none"), H, 0, members)
    assert ev.placed == [(0, 0, 0, 4.0), (1, 0, 0, 2.0)] and ev.phi == 17.0
    # max_input: a -> (0,0), which raises R(0,0) to 2; b: (0,0) max(0, 0, 2) + g(2) = 4 vs (1,0)
    #   1.5 + g(1) = 2.5 -> (1,0), R(1,0) = 1.5. Re-scored: a max(0, 2, 2) + g(1) = 3, b 2.5; Φ = 11 + 5.5
    ev = evaluate_service(obs, params("max_input"), H, 0, members)
    assert ev.placed == [(0, 0, 0, 3.0), (1, 1, 0, 2.5)] and ev.phi == 16.5
    assert ev.ready == {(0, 0): 2.0, (1, 0): 1.5}
    # drain: the instances have no jobs, R = now and fixed: the choices of none
    assert evaluate_service(obs, params("drain"), H, 0, members).placed == [(0, 0, 0, 4.0), (1, 0, 0, 2.0)]
    # the re-score uses the final R: one instance, stage b (input 0) first, then a (input 2):
    #   b scores 0 + g(1) = 1 (R stays 0), a scores 2 + g(2) = 4 and raises R to 2; re-scored
    #   b max(0, 0, 2) + g(2) = 4 (not 0 + 2), a 2 + 2 = 4; C = 5.5, Φ = 13.5 (none: 5.5 + 2 + 4)
    obs = make_obs(sc, [(1, 0, [0, 1.5], 10), (0, 0, [2, 5], 10)], y_max=3)
    ev = evaluate_service(obs, params("max_input"), H, 0, [(0, 0)])
    assert ev.placed == [(0, 0, 0, 4.0), (1, 0, 0, 4.0)] and ev.phi == 13.5 and ev.ready == {(0, 0): 2.0}
    assert evaluate_service(obs, params("none"), H, 0, [(0, 0)]).phi == 11.5


def test_max_input_changes_the_greedy_by_hand():
    # (0,0,0) busy with 1 job whose input arrives at 5 (alive in slot t-1); one stage, input at 0 on
    # both nodes; y_max = 3. Adding an instance costs c_dp + 1.5 = 5.5.
    sc = two_nodes()
    obs = make_obs(sc, [(0, 0, [0, 0], 10)], busy={(0, 0, 0): 1}, prev=[(0, 0, 0)], y_max=3)
    obs = with_fifos(obs, {(0, 0, 0): [(1.0, 5.0)]})
    H = {0: 1.0}
    # none: on the busy instance 0 + g(2) = 2: Φ = 1.5 + 2 = 3.5; with a new instance 7 + g(1) = 8: stop
    decision, info = algorithm1(obs, params("none"), H)
    assert info["steps"] == 0 and info["objective"] == 3.5
    assert decision.assignment == [(0, 0, 0)] and decision.bounds == [2.0]
    # max_input: on the busy instance 5 + g(2) = 7: Φ = 8.5; adding (0,1) or (1,0): 7 + g(1) = 8
    #   (Δ = -0.5 each, a tie: the lower node) -> (0,0,1); a third instance only costs: stop
    decision, info = algorithm1(obs, params("max_input"), H)
    assert info["steps"] == 1 and info["objective"] == 8.0
    assert sorted(map(tuple, np.argwhere(decision.alive))) == [(0, 0, 0), (0, 0, 1)]
    assert decision.assignment == [(0, 0, 1)] and decision.bounds == [1.0]  # the bound is g(o_final)
    assert decision.parallelism.tolist() == [[1], [0]]
    # drain (6 + g(2) = 8 on the busy one) decides as max_input here; the controller passes it through
    assert algorithm1(obs, params("drain"), H)[0].assignment == [(0, 0, 1)]
    d, state = make_controller("avg", instance_ready="max_input")(obs, None)
    assert d.assignment == decision.assignment and state["info"] == info


def test_least_occupied_by_hand():
    sc = two_nodes()
    H = {0: 1.0}
    # a tie across nodes: (0,0) busy (o = 1), input at 0: 0 + g(2) = 2; (1,0) added (o = 0), input at
    # 1: 1 + g(1) = 2. all: the lower occupancy, (1,0); least_occupied: the lower node, (0,0)
    obs = make_obs(sc, [(0, 0, [0, 1], 10)], busy={(0, 0, 0): 1}, prev=[(0, 0, 0)], y_max=3)
    assert evaluate_service(obs, params(candidates="all"), H, 0, [(0, 0), (1, 0)]).placed == [(0, 1, 0, 2.0)]
    assert evaluate_service(obs, params(candidates="least_occupied"), H, 0, [(0, 0), (1, 0)]).placed == [(0, 0, 0, 2.0)]
    # only the least-occupied instance of a node is a candidate. Node 0: k0 busy with 1 job (input at
    # 5: R = 5 under max_input), k1 with 2 jobs (inputs there: R = 0); y_max = 4, both alive before.
    # all: k0 5 + g(2) = 7, k1 0 + g(3) = 3 -> k1, Φ = 3 + 3; least_occupied: k0 only -> 7, Φ = 3 + 7
    fifo = {(0, 0, 0): [(1.0, 5.0)], (0, 0, 1): [(1.0, 0.0), (1.0, 0.0)]}
    obs = with_fifos(make_obs(sc, [(0, 0, [0, 0], 10)], busy={(0, 0, 0): 1, (0, 0, 1): 2},
                              prev=[(0, 0, 0), (0, 0, 1)], y_max=4), fifo)
    members = [(0, 0), (0, 1)]
    ev = evaluate_service(obs, params("max_input", "all"), H, 0, members)
    assert ev.placed == [(0, 0, 1, 3.0)] and ev.phi == 6.0
    ev = evaluate_service(obs, params("max_input", "least_occupied"), H, 0, members)
    assert ev.placed == [(0, 0, 0, 7.0)] and ev.phi == 10.0
    # equal occupancies on a node: the lower k (k0, R = 5) is the node's candidate
    fifo = {(0, 0, 0): [(1.0, 5.0)], (0, 0, 1): [(1.0, 0.0)]}
    obs = with_fifos(make_obs(sc, [(0, 0, [0, 0], 10)], busy={(0, 0, 0): 1, (0, 0, 1): 1},
                              prev=[(0, 0, 0), (0, 0, 1)], y_max=4), fifo)
    assert evaluate_service(obs, params("max_input", "all"), H, 0, members).placed == [(0, 0, 1, 2.0)]
    assert evaluate_service(obs, params("max_input", "least_occupied"), H, 0, members).placed == [(0, 0, 0, 7.0)]
    # a node whose least-occupied instance is full offers none: deferred (Φ = C + w·c_s = 3 + 21)
    obs = make_obs(sc, [(0, 0, [0, 0], 10)], busy={(0, 0, 0): 2, (0, 0, 1): 2}, prev=[(0, 0, 0), (0, 0, 1)], y_max=2)
    ev = evaluate_service(obs, params(candidates="least_occupied"), H, 0, members)
    assert ev.placed == [] and ev.deferred == [0] and ev.phi == 24.0
    # the greedy with least_occupied: the per-node filter is what Φ_m sees in every evaluation. With the
    # first observation above, all places on (0,1) with Φ = 6 and adds nothing (a new instance: 5.5 +
    # g(1) = 1 on top of 3); least_occupied prices k0 at 7 (Φ = 10), and a new instance on node 1
    # (Φ = 3 + 5.5 + 1 = 9.5) pays: it is added and takes the stage
    fifo = {(0, 0, 0): [(1.0, 5.0)], (0, 0, 1): [(1.0, 0.0), (1.0, 0.0)]}
    obs = with_fifos(make_obs(sc, [(0, 0, [0, 0], 10)], busy={(0, 0, 0): 1, (0, 0, 1): 2},
                              prev=[(0, 0, 0), (0, 0, 1)], y_max=4), fifo)
    decision, info = algorithm1(obs, params("max_input", "all"), H)
    assert info["steps"] == 0 and decision.assignment == [(0, 0, 1)] and info["objective"] == 6.0
    decision, info = algorithm1(obs, params("max_input", "least_occupied"), H)
    assert info["steps"] == 1 and decision.assignment == [(0, 1, 0)] and info["objective"] == 9.5
    assert decision.bounds == [1.0]


# ------------------------------------------------------------------------------------------------
# brute force: the per-stage choice replayed over every instance slot, by the text of §9
def replay(obs, prm, H, m, members):
    """(placed [(w, v, k, d̂)], deferred, Φ_m, final o, final R) of Φ_m(members), recomputed over the
    [V, X] grid of instance slots with masks (independently of `evaluate_service`)."""
    sc = obs.scenario
    V, X, now = sc.num_nodes, obs.max_light_instances, obs.t * obs.slot_ms
    g = delay_table(float(sc.work[m]), float(sc.light_shape[m]), float(sc.light_scale[m]), prm.epsilon,
                    obs.slot_ms, prm.window_ms, obs.y_max, prm.kind)
    member = np.zeros((V, X), dtype=bool)
    for v, k in members:
        member[v, k] = True
    o = np.where(member, obs.occupancy[:, m, :], 0).astype(int)
    R = np.full((V, X), now)
    if prm.instance_ready != "none" and obs.fifo is not None:
        for (v, mm, k), jobs in obs.fifo.items():
            if mm != m or not jobs:
                continue
            if prm.instance_ready == "max_input":
                R[v, k] = max(ready for _, ready in jobs)
            else:  # drain at E f = kβ
                cursor, rate = now, float(sc.light_shape[m] * sc.light_scale[m])
                for remaining, ready in jobs:
                    cursor = max(cursor, ready) + remaining / rate
                R[v, k] = cursor
    flat = np.arange(V * X).reshape(V, X)
    node = np.repeat(np.arange(V)[:, None], X, axis=1)
    placed, deferred = [], []
    considered = [i for i, w in enumerate(obs.waiting) if w.service == m][: prm.max_stages_per_service]
    for w_idx in considered:
        stage = obs.waiting[w_idx]
        if prm.candidates == "all":
            cand = member & (o < obs.y_max)
        else:
            cand = np.zeros((V, X), dtype=bool)
            for v in range(V):
                ks = [k for k in range(X) if member[v, k]]
                if ks:
                    k = min(ks, key=lambda k: (o[v, k], k))
                    cand[v, k] = o[v, k] < obs.y_max
        if not cand.any():
            deferred.append(w_idx)
            continue
        late = np.asarray(stage.data_ready, dtype=float)[:, None] - now
        score = np.maximum(np.maximum(0.0, late), R - now) + np.array(g)[np.minimum(o + 1, obs.y_max)]
        score = np.where(cand, score, np.inf)
        best = score.min()
        tied = cand & (score <= best + 1e-9)
        key = (o * V * X + flat) if prm.candidates == "all" else node * X  # one candidate per node
        v, k = np.unravel_index(np.argmin(np.where(tied, key, np.iinfo(int).max)), (V, X))
        if math.isfinite(best) and best < 2 * stage.deadline + obs.slot_ms:
            o[v, k] += 1
            if prm.instance_ready == "max_input":
                R[v, k] = max(R[v, k], float(stage.data_ready[v]))
            placed.append((w_idx, int(v), int(k)))
        else:
            deferred.append(w_idx)
    rescored = []
    phi = 0.0
    for v in range(V):
        count = int(member[v].sum())
        prev = int(obs.alive_prev[v, m].sum())
        phi += prm.V * (float(sc.cost_deploy[m]) * max(0, count - prev)
                        + (float(sc.cost_maintain[m]) + float(sc.cost_payload[m])) * count)
    for w_idx, v, k in placed:
        late = float(obs.waiting[w_idx].data_ready[v]) - now
        d_hat = max(0.0, late, R[v, k] - now) + g[o[v, k]]
        rescored.append((w_idx, v, k, d_hat))
        phi += prm.pi * H[obs.waiting[w_idx].task] * d_hat
    for w_idx in deferred:
        phi += prm.pi * H[obs.waiting[w_idx].task] * (2 * obs.waiting[w_idx].deadline + obs.slot_ms)
    final_o = {(v, k): int(o[v, k]) for v, k in members}
    final_R = {(v, k): float(R[v, k]) for v, k in members}
    return rescored, deferred, phi, final_o, final_R


@pytest.mark.parametrize("seed", range(40))
def test_per_stage_choice_is_the_brute_force_one(seed):
    rng = np.random.default_rng(5000 + seed)
    bare, H, kind = random_obs(rng)
    obs = with_fifo(bare, rng)
    sc = obs.scenario
    for m in sc.light_services:
        m = int(m)
        busy = [(v, k) for v in range(sc.num_nodes) for k in range(obs.max_light_instances) if obs.occupancy[v, m, k] > 0]
        idle = [(v, k) for v in range(sc.num_nodes) for k in range(obs.max_light_instances) if obs.occupancy[v, m, k] == 0]
        added = [vk for vk in idle if rng.random() < 0.5]
        members = busy + added
        for instance_ready in INSTANCE_READY:
            for candidates in CANDIDATES:
                prm = params(instance_ready, candidates, kind=kind, max_stages_per_service=int(rng.integers(1, 8)))
                ev = evaluate_service(obs, prm, H, m, members)
                placed, deferred, phi, final_o, final_R = replay(obs, prm, H, m, members)
                assert [p[:3] for p in ev.placed] == [p[:3] for p in placed], (instance_ready, candidates)
                assert [p[3] for p in ev.placed] == pytest.approx([p[3] for p in placed], rel=0, abs=1e-12)
                assert ev.deferred == deferred
                assert ev.phi == pytest.approx(phi, rel=1e-12, abs=1e-12)
                assert ev.occupancy == final_o
                assert ev.ready == pytest.approx(final_R, rel=0, abs=1e-12)


def test_brute_force_replay_sees_the_options():
    # the random observations above are not all alike under the options: over the seeds, max_input
    # changes some placement against none, and least_occupied against all (with an instance-ready
    # term: under none the instances of one node differ only by o, so the least-occupied one scores
    # best on its node anyway, and the two rules part only on a tie across nodes)
    changed = {"max_input": 0, "least_occupied": 0}
    for seed in range(40):
        rng = np.random.default_rng(5000 + seed)
        bare, H, kind = random_obs(rng)
        obs = with_fifo(bare, rng)
        members = [(v, k) for v in range(obs.scenario.num_nodes) for k in range(obs.max_light_instances)]
        for m in obs.scenario.light_services:
            def placed(instance_ready, candidates):
                return evaluate_service(obs, params(instance_ready, candidates, kind=kind), H, int(m), members).placed

            changed["max_input"] += placed("max_input", "all") != placed("none", "all")
            changed["least_occupied"] += placed("max_input", "least_occupied") != placed("max_input", "all")
            changed["least_occupied"] += placed("drain", "least_occupied") != placed("drain", "all")
    assert changed["max_input"] > 0 and changed["least_occupied"] > 0


@pytest.mark.parametrize("seed", range(20))
@pytest.mark.parametrize("instance_ready, candidates", [("max_input", "all"), ("none", "least_occupied"),
                                                        ("max_input", "least_occupied"), ("drain", "least_occupied")])
def test_greedy_first_step_is_the_brute_force_argmin(seed, instance_ready, candidates):
    rng = np.random.default_rng(6000 + seed)
    bare, H, kind = random_obs(rng)
    obs = with_fifo(bare, rng)
    prm = params(instance_ready, candidates, kind=kind, max_steps=1)
    busy, phi0, deltas = first_step_deltas(obs, prm, H)
    decision, info = algorithm1(obs, prm, H)
    tol = 1e-9 * (1 + abs(phi0))
    expected = busy.copy()
    if deltas and min(d for d, *_ in deltas) < -tol:
        best = min(d for d, *_ in deltas)
        _, m, v, k = min((c for c in deltas if c[0] <= best + tol), key=lambda c: (c[1], c[2]))
        expected[v, m, k] = True
        assert info["objective"] == pytest.approx(phi0 + best, abs=1e-9)
    np.testing.assert_array_equal(decision.alive, expected)
    # the full greedy ends in a local minimum of Φ under the same options, and states g(o_final)
    prm = params(instance_ready, candidates, kind=kind)
    decision, info = algorithm1(obs, prm, H)
    phi, per = evaluate(obs, prm, H, decision.alive)
    assert info["objective"] == pytest.approx(phi, abs=1e-12)
    for m, v, k in single_additions(obs, decision.alive):
        mask = decision.alive.copy()
        mask[v, m, k] = True
        assert evaluate(obs, prm, H, mask)[0] >= phi - 1e-9 * (1 + abs(phi))
    sc = obs.scenario
    for (w_idx, v, k), bound in zip(decision.assignment, decision.bounds):
        m = obs.waiting[w_idx].service
        g = delay_table(float(sc.work[m]), float(sc.light_shape[m]), float(sc.light_scale[m]), prm.epsilon,
                        obs.slot_ms, prm.window_ms, obs.y_max, kind)
        assert bound == g[per[m].occupancy[(v, k)]]


# ------------------------------------------------------------------------------------------------
# through the reference simulator
@pytest.mark.parametrize("light_order", ["input_arrival", "dispatch"])
def test_end_to_end_options(light_order):
    from test_reference_algorithm1 import small_case

    from edgefm.reference import simulate_reference

    sc, x_core, arrivals, uplink, light_rate, sim = small_case(3, 40.0, arrival_slots=20, drain_slots=15, X=2)
    results = {}
    for instance_ready in INSTANCE_READY:
        for candidates in CANDIDATES:
            log: list = []
            control = make_controller("ec", log=log, instance_ready=instance_ready, candidates=candidates)
            res = simulate_reference(sc, x_core, arrivals, uplink, light_rate, controller=control,
                                     light_order=light_order, **sim)
            assert res.tasks_arrived == res.tasks_ontime + res.tasks_late + res.tasks_unfinished + res.tasks_dropped
            assert res.capacity_violations == 0 and res.invalid_actions == 0 and res.tasks_ontime > 0
            assert [entry["t"] for entry in log] == list(range(sim["total_slots"]))
            results[(instance_ready, candidates)] = res
    base = results[("none", "all")]
    default = simulate_reference(sc, x_core, arrivals, uplink, light_rate, controller="proposed",
                                 light_order=light_order, **sim)
    np.testing.assert_array_equal(default.task_finish, base.task_finish)
    # the options change what happens on this loaded case
    for key in (("max_input", "all"), ("drain", "least_occupied"), ("max_input", "least_occupied")):
        assert not np.array_equal(results[key].task_finish, base.task_finish, equal_nan=True), key
