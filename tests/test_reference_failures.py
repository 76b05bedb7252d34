"""Node and link failures in the plain-Python reference simulator (docs/SEMANTICS.md §12).

Hand-computed cases (a core job and a light job lost mid-execution, a stage waiting for a link to
come back, the critical parent chosen with the delays of the dispatch boundary, refused decisions)
and invariants under random failure arrays. Reference only: nothing here touches the engine.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from test_reference import core, light, make_scenario, random_case
from test_reference_algorithm1 import AVG, make_obs, small_case
from test_reference_algorithm1 import light as light_service
from test_reference_algorithm1 import make_scenario as make_light_scenario

from edgefm.errors import ConfigError
from edgefm.reference import (
    BREAKDOWN_COMPONENTS,
    LightDecision,
    NetworkDelays,
    algorithm1,
    lbrr,
    make_controller,
    shortest_path_delays,
    simulate_reference,
)

TOL = 1e-9
INF = math.inf


def breakdown(res, j) -> dict[str, float]:
    return dict(zip(BREAKDOWN_COMPONENTS, res.task_breakdown[j].tolist()))


def parts(**nonzero) -> dict[str, float]:
    """A breakdown with the given components and 0 elsewhere."""
    return dict.fromkeys(BREAKDOWN_COMPONENTS, 0.0) | nonzero


def assert_same_result(a, b):
    """Every field of two ReferenceResults equal (nan == nan)."""
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=f.name)
        else:
            assert x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y)), f.name


# ------------------------------------------------------------------------------------------------
# network delays over a link mask
def test_network_delays_with_a_link_mask():
    # triangle 0-1 (1 MB/ms), 1-2 (1 MB/ms), 0-2 (0.25 MB/ms); payload 1 MB
    sc = make_scenario(
        capacity=[[1, 1, 1, 1]] * 3,
        links=[(0, 1, 1.0, 0.0), (1, 2, 1.0, 0.0), (0, 2, 0.25, 0.0)],
        services=[core([1, 1, 1, 1], a=1, b=1, f=1)],
        types=[dict(services=[0], A=1.0, D=10.0)],
        gateways=[0],
        arrival_rate=[[0.1]],
    )
    np.testing.assert_array_equal(shortest_path_delays(sc, 1.0, np.ones(3, dtype=bool)), shortest_path_delays(sc, 1.0))
    assert shortest_path_delays(sc, 1.0)[0, 2] == pytest.approx(2.0)  # via node 1
    assert shortest_path_delays(sc, 1.0, np.array([True, False, True]))[0, 2] == pytest.approx(4.0)  # direct
    cut = shortest_path_delays(sc, 1.0, np.array([True, False, False]))
    assert math.isinf(cut[0, 2]) and math.isinf(cut[2, 1]) and cut[0, 1] == pytest.approx(1.0)
    assert cut[2, 2] == 0.0
    # one table pair per distinct link state
    network = NetworkDelays(sc)
    fwd, xfer = network.tables(np.array([True, False, True]))
    assert fwd.shape == (1, 3, 3) and xfer.shape == (1, 3, 3)
    assert network.tables(np.array([True, False, True]))[0] is fwd
    assert network.tables(None)[0][0, 0, 2] == pytest.approx(2.0)
    with pytest.raises(ConfigError, match="link_up"):
        network.tables(np.ones(2, dtype=bool))


# ------------------------------------------------------------------------------------------------
# the 4-node scenario of test_reference.random_case (a merge DAG and a chain; core s2 on nodes 1 and
# 2, core s4 on node 2; links 0-1, 1-2, 0-2, 2-3), with random arrivals, channel and light rates
MERGE_SC, MERGE_X_CORE = random_case(0, "earliest_start", T=2, T_arr=1)[:2]


def random_run(
    seed, rule="earliest_start", controller="lbrr", *, T=40, T_arr=25, failures=None, node_up=None, link_up=None, **kw
):
    """(arrivals, node_up, link_up, result); ``failures``: None (``node_up`` / ``link_up`` as given),
    "up" (all-True arrays) or "random" (`random_failures` drawn after the exogenous samples)."""
    sc = MERGE_SC
    rng = np.random.default_rng(seed)
    arrivals = np.zeros((T, 2, 2), dtype=int)
    arrivals[:T_arr] = rng.poisson(3.0 * sc.arrival_rate, size=(T_arr, 2, 2))
    uplink = rng.uniform(0.5, 3.0, size=(T, 2))
    uplink[:, 1] = np.inf
    light_rate = rng.gamma(1.5, 1.0, size=(T, 4, 3, 2))
    if failures == "up":
        node_up, link_up = np.ones((T, 4), dtype=bool), np.ones((T, 4), dtype=bool)
    elif failures == "random":
        node_up, link_up = random_failures(rng, T, 4, 4)
    res = simulate_reference(
        sc, MERGE_X_CORE, arrivals, uplink, light_rate, slot_ms=1.0, arrival_slots=T_arr, total_slots=T,
        core_dispatch=rule, y_max=2, max_light_instances=2, controller=controller,
        node_up=node_up, link_up=link_up, **kw,
    )
    return arrivals, node_up, link_up, res


def random_failures(rng, T, V, E, p_fail=0.15, p_repair=0.4, p_link=0.1):
    """Markov node states (up at t = -1) and independent link outages."""
    node_up = np.ones((T, V), dtype=bool)
    state = np.ones(V, dtype=bool)
    for t in range(T):
        u = rng.random(V)
        state = np.where(state, u >= p_fail, u < p_repair)
        node_up[t] = state
    link_up = rng.random((T, E)) >= p_link
    return node_up, link_up


# ------------------------------------------------------------------------------------------------
# all up changes nothing
@pytest.mark.parametrize("rule", ["earliest_start", "idle_only"])
def test_all_up_is_identical_to_no_failures_lbrr(rule):
    _, _, _, plain = random_run(0, rule)
    _, _, _, up = random_run(0, rule, failures="up")
    assert_same_result(plain, up)
    # and the same as before failures existed: test_reference.random_case's realisation
    assert_same_result(plain, random_case(0, rule)[3])
    assert plain.tasks_ontime > 0
    np.testing.assert_array_equal(plain.jobs_lost, np.zeros(40, dtype=int))
    assert plain.invalid_actions == 0


@pytest.mark.parametrize("kind", ["ec", "avg"])
def test_all_up_is_identical_to_no_failures_algorithm1(kind):
    sc, x_core, arrivals, uplink, light_rate, sim = small_case(1, 4.0, arrival_slots=20, drain_slots=30)
    T = sim["total_slots"]
    plain = simulate_reference(sc, x_core, arrivals, uplink, light_rate, controller=make_controller(kind), **sim)
    up = simulate_reference(
        sc, x_core, arrivals, uplink, light_rate, controller=make_controller(kind), **sim,
        node_up=np.ones((T, sc.num_nodes), dtype=bool), link_up=np.ones((T, len(sc.link_ends)), dtype=bool),
    )
    assert_same_result(plain, up)
    assert plain.tasks_ontime > 0 and plain.jobs_lost.sum() == 0 and plain.invalid_actions == 0


# ------------------------------------------------------------------------------------------------
# a node down in every slot is never used
@pytest.mark.parametrize("rule", ["earliest_start", "idle_only"])
def test_node_down_in_every_slot_is_never_used_lbrr(rule):
    # node 1 (one of the two core s2 instances) down throughout
    T = 40
    node_up = np.ones((T, 4), dtype=bool)
    node_up[:, 1] = False
    _, _, _, plain = random_run(1, rule)
    assert np.any(plain.stage_node == 1)  # without the failure node 1 is used
    arrivals, _, _, res = random_run(1, rule, node_up=node_up)
    assert res.tasks_arrived == int(arrivals.sum())
    assert not np.any(res.stage_node == 1)  # nothing is ever dispatched there
    assert np.all(res.x_light[:, 1, :] == 0)
    assert res.jobs_lost.sum() == 0 and res.invalid_actions == 0
    assert res.tasks_ontime + res.tasks_late > 0
    assert res.tasks_arrived == res.tasks_ontime + res.tasks_late + res.tasks_unfinished + res.tasks_dropped


@pytest.mark.parametrize("kind", ["ec", "avg"])
def test_node_down_in_every_slot_is_never_used_algorithm1(kind):
    # small.yaml: node 2 hosts no core instance and is the hub of the star 0 - 2 - 1; down, it
    # still forwards traffic, but no light instance may live there
    sc, x_core, arrivals, uplink, light_rate, sim = small_case(0, 4.0, arrival_slots=20, drain_slots=30)
    T = sim["total_slots"]
    node_up = np.ones((T, sc.num_nodes), dtype=bool)
    node_up[:, 2] = False
    plain = simulate_reference(sc, x_core, arrivals, uplink, light_rate, controller=make_controller(kind), **sim)
    assert np.any(plain.x_light[:, 2, :] > 0)  # without the failure node 2 is used
    res = simulate_reference(
        sc, x_core, arrivals, uplink, light_rate, controller=make_controller(kind), **sim, node_up=node_up
    )
    assert not np.any(res.stage_node == 2)
    assert np.all(res.x_light[:, 2, :] == 0)
    assert res.jobs_lost.sum() == 0 and res.invalid_actions == 0
    assert res.tasks_ontime + res.tasks_late > 0
    assert res.tasks_arrived == res.tasks_ontime + res.tasks_late + res.tasks_unfinished + res.tasks_dropped


# ------------------------------------------------------------------------------------------------
# a core job lost mid-execution.  One core service (2 ms of work), instances on node 0 (the gateway)
# and on node 1 behind a slow link (A = 1 MB at 0.25 MB/ms: 4 ms); infinite uplink rate.
def core_scenario():
    return make_scenario(
        capacity=[[8, 8, 8, 8], [8, 8, 8, 8]],
        links=[(0, 1, 0.25, 0.0)],
        services=[core([1, 1, 1, 1], a=2.0, b=0.1, f=1.0, dp=20.0, mt=4.0)],
        types=[dict(services=[0], A=1.0, D=4.5)],
        gateways=[0],
        arrival_rate=[[0.5]],
    )


def run_core(rule, arrivals_at, *, x_core=((1,), (1,)), T=12, **kw):
    sc = core_scenario()
    arrivals = np.zeros((T, 1, 1), dtype=int)
    for t, count in arrivals_at.items():
        arrivals[t, 0, 0] = count
    return simulate_reference(
        sc, np.array(x_core), arrivals, np.full((T, 1), np.inf), np.ones((T, 2, 0, 8)),
        slot_ms=1.0, arrival_slots=6, total_slots=T, core_dispatch=rule, **kw,
    )


def test_core_job_lost_earliest_start():
    # node 0 down in slot 1 only.  Tasks at 0, 1, 2.
    # t=0: task 0 on node 0, 0..2.
    # t=1 (1b): node 0 down, task 0's stage (finish 2 > 1) is lost, node 0's instance empties.
    #   Waiting (ready_slot 1): task 0, then task 1 (arrived at 1).  Node 0 is down:
    #   task 0 -> node 1: start max(1, 0 + 4, 0) = 4 -> 6; task 1 -> node 1: max(1, 5, 6) = 6 -> 8.
    # t=2: node 0 up again (free = 1): task 2 -> node 0: max(2, 2, 1) = 2 -> 4 (node 1: 8).
    T = 12
    node_up = np.ones((T, 2), dtype=bool)
    node_up[1, 0] = False
    res = run_core("earliest_start", {0: 1, 1: 1, 2: 1}, node_up=node_up)
    np.testing.assert_array_equal(res.stage_node[:, 0], [1, 1, 0])
    np.testing.assert_allclose(res.task_finish, [6.0, 8.0, 4.0], atol=1e-12)
    np.testing.assert_array_equal(res.stage_dispatch_slot[:, 0], [1, 1, 2])
    np.testing.assert_allclose(res.stage_data_ready[:, 0], [4.0, 5.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(res.stage_start[:, 0], [4.0, 6.0, 2.0], atol=1e-12)
    expected_lost = np.zeros(T, dtype=int)
    expected_lost[1] = 1
    np.testing.assert_array_equal(res.jobs_lost, expected_lost)
    # latencies 6, 7, 2 against D = 4.5
    assert (res.tasks_ontime, res.tasks_late, res.tasks_unfinished) == (1, 2, 0)
    # the core instances stay placed and are charged in every slot
    assert res.cost_core == pytest.approx(2 * (20 + T * 4), abs=1e-12)
    # breakdown from the last dispatch: task 0 network 4 (forwarding to node 1), service 2;
    # task 1: network 4, queue 1 (behind task 0 on node 1), service 2
    assert breakdown(res, 0) == pytest.approx(parts(network=4.0, core_service=2.0))
    assert breakdown(res, 1) == pytest.approx(
        parts(network=4.0, core_queue=1.0, core_service=2.0)
    )
    # without the failure task 0 finishes on node 0 at 2
    plain = run_core("earliest_start", {0: 1, 1: 1, 2: 1})
    assert plain.task_finish[0] == 2.0 and plain.jobs_lost.sum() == 0


def test_core_job_lost_idle_only():
    # idle_only, node 0 down in slot 1 only.
    # t=0: task 0 on node 0 (data 0 < 4), 0..2.
    # t=1: lost; node 0 down, node 1 idle: task 0 -> node 1, 4..6; task 1 finds no idle instance.
    # t=2: node 0 up and idle (free = 1): task 1 (ready_slot 1) -> node 0, data 1, 2..4;
    #   task 2 finds none idle.  t=3: none idle.  t=4: node 0 free at 4: task 2 -> 4..6.
    T = 12
    node_up = np.ones((T, 2), dtype=bool)
    node_up[1, 0] = False
    res = run_core("idle_only", {0: 1, 1: 1, 2: 1}, node_up=node_up)
    np.testing.assert_array_equal(res.stage_node[:, 0], [1, 0, 0])
    np.testing.assert_allclose(res.task_finish, [6.0, 4.0, 6.0], atol=1e-12)
    np.testing.assert_array_equal(res.stage_dispatch_slot[:, 0], [1, 2, 4])
    assert res.jobs_lost[1] == 1 and res.jobs_lost.sum() == 1
    # task 1: data ready on node 0 at 1, dispatched at 2: dispatch wait 1, service 2
    assert breakdown(res, 1) == pytest.approx(
        parts(core_dispatch_wait=1.0, core_service=2.0)
    )


def test_core_job_lost_twice_and_queued_jobs():
    # only node 0 has an instance; node 0 down in slots 1 and 3.  Two tasks at 0.
    # t=0: task 0 0..2, task 1 queued 2..4.
    # t=1: both lost (running and queued): jobs_lost[1] = 2; no candidate, both wait.
    # t=2: task 0 2..4, task 1 4..6.  t=3: both lost again (finish 4 > 3): jobs_lost[3] = 2.
    # t=4: task 0 4..6, task 1 6..8.
    T = 12
    node_up = np.ones((T, 2), dtype=bool)
    node_up[[1, 3], 0] = False
    res = run_core("earliest_start", {0: 2}, x_core=((1,), (0,)), node_up=node_up)
    np.testing.assert_allclose(res.task_finish, [6.0, 8.0], atol=1e-12)
    np.testing.assert_array_equal(res.stage_dispatch_slot[:, 0], [4, 4])
    np.testing.assert_array_equal(res.jobs_lost[:5], [0, 2, 0, 2, 0])
    # task 1: dispatched at 4 (data ready at 0): dispatch wait 4, queue 2 (behind task 0), service 2
    assert breakdown(res, 1) == pytest.approx(
        parts(core_dispatch_wait=4.0, core_queue=2.0, core_service=2.0)
    )
    # a job done exactly at the failure boundary is not lost: node 0 down at 2 only -> task 0 is done
    # at 2, task 1 (2..4) is lost and redone 3..5
    node_up = np.ones((T, 2), dtype=bool)
    node_up[2, 0] = False
    res = run_core("earliest_start", {0: 2}, x_core=((1,), (0,)), node_up=node_up)
    np.testing.assert_allclose(res.task_finish, [2.0, 5.0], atol=1e-12)
    assert res.jobs_lost[2] == 1 and res.jobs_lost.sum() == 1


# ------------------------------------------------------------------------------------------------
# a light job lost.  One light service (a = 2 MB), nodes 0 (the gateway) and 1, link 0-1 at 1 MB/ms
# (A = 1 MB: 1 ms); infinite uplink rate; light costs dp 4, mt + pl 1.5.
def light_scenario(deadline=3.0, scale=1.0):
    service = light([1, 0, 0, 0], a=2.0, b=0.1)
    service["scale"] = scale  # the mean rate Algorithm 1 plans with; the drawn rates are given below
    return make_scenario(
        capacity=[[2, 1, 1, 1], [2, 1, 1, 1]],
        links=[(0, 1, 1.0, 0.0)],
        services=[service],
        types=[dict(services=[0], A=1.0, D=deadline)],
        gateways=[0],
        arrival_rate=[[0.5]],
    )


def run_light(arrivals_at, rates, *, T=8, X=2, y_max=1, controller="lbrr", deadline=3.0, scale=1.0, **kw):
    sc = light_scenario(deadline, scale)
    arrivals = np.zeros((T, 1, 1), dtype=int)
    for t, count in arrivals_at.items():
        arrivals[t, 0, 0] = count
    light_rate = np.ones((T, 2, 1, X))
    for (t, v, k), f in rates.items():
        light_rate[t, v, 0, k] = f
    return simulate_reference(
        sc, np.zeros((2, 1), dtype=int), arrivals, np.full((T, 1), np.inf), light_rate,
        slot_ms=1.0, arrival_slots=4, total_slots=T, y_max=y_max, max_light_instances=X,
        controller=controller, **kw,
    )


def test_light_job_lost_lbrr():
    # node 0 down in slot 1 only; y_max = 1, X = 2 (instances i = 2v + k); tasks at 0 and 2.
    # t=0: lbrr starts (0, k0) (tie of utilisations -> node 0), routes task 0 there (pointer 1);
    #   slot 0, f = 1: 0..1, remaining 2 - 1 = 1.
    # t=1 (1b): node 0 down: task 0's job is lost (remaining back to a = 2), the instance stops.
    #   lbrr: node 0 may not host; starts (1, k0), routes task 0 (pointer 1 -> i = 2, then 3).
    #   Data ready on node 1: 0 + 1 = 1.  slot 1, f = 1: 1..2, remaining 1; slot 2, f = 2: 2..2.5.
    # t=2: node 0 up.  Task 1 arrives; (1, k0) is full (y = 1): start on the least-utilised node,
    #   node 0 (0 < 0.125) in k0; round robin from 3: 3 (absent), 0 = (0, k0): data ready 2.
    #   slot 2, f = 1: 2..3, remaining 1; slot 3, f = 1: 3..4.
    T = 8
    node_up = np.ones((T, 2), dtype=bool)
    node_up[1, 0] = False
    res = run_light({0: 1, 2: 1}, {(2, 1, 0): 2.0}, node_up=node_up)
    np.testing.assert_array_equal(res.stage_node[:, 0], [1, 0])
    np.testing.assert_allclose(res.task_finish, [2.5, 4.0], atol=1e-12)
    np.testing.assert_array_equal(res.stage_dispatch_slot[:, 0], [1, 2])
    np.testing.assert_allclose(res.stage_data_ready[:, 0], [1.0, 2.0], atol=1e-12)
    np.testing.assert_allclose(res.stage_start[:, 0], [1.0, 2.0], atol=1e-12)  # from the last dispatch
    expected_lost = np.zeros(T, dtype=int)
    expected_lost[1] = 1
    np.testing.assert_array_equal(res.jobs_lost, expected_lost)
    # latencies 2.5 and 2 against D = 3
    assert (res.tasks_ontime, res.tasks_late, res.tasks_unfinished) == (2, 0, 0)
    np.testing.assert_array_equal(res.x_light[:6, :, 0], [[1, 0], [0, 1], [1, 1], [1, 0], [0, 0], [0, 0]])
    # the restart on node 0 at slot 2 pays c_dp again (node 0 had no instance in slot 1)
    np.testing.assert_allclose(res.cost_light_per_slot[:6], [5.5, 5.5, 5.5 + 1.5, 1.5, 0, 0], atol=1e-12)
    assert res.invalid_actions == 0
    assert breakdown(res, 0) == pytest.approx(
        parts(network=1.0, light_service=1.5)
    )
    # without the failure task 0 finishes on node 0 in slot 1 (0..2)
    plain = run_light({0: 1, 2: 1}, {(2, 1, 0): 2.0})
    assert plain.task_finish[0] == pytest.approx(2.0) and plain.stage_node[0, 0] == 0


@pytest.mark.parametrize("kind", ["ec", "avg"])
def test_light_job_lost_algorithm1(kind):
    # the same failure with Algorithm 1 (y_max = 1; D = 10 and a planned mean rate of 4 MB/ms, so
    # that placing beats deferring): task 0 starts on node 0 at 0 (data ready 0 there, 1 on node 1),
    # is lost at 1 and goes to node 1 (data ready 1; node 0 may not host): 1..2 (rem 1), slot 2 at
    # f = 2: 2..2.5
    T = 8
    node_up = np.ones((T, 2), dtype=bool)
    node_up[1, 0] = False
    kw = dict(controller=make_controller(kind), deadline=10.0, scale=4.0)
    plain = run_light({0: 1}, {(2, 1, 0): 2.0}, **kw)
    assert plain.stage_node[0, 0] == 0 and plain.task_finish[0] == pytest.approx(2.0)
    res = run_light({0: 1}, {(2, 1, 0): 2.0}, node_up=node_up, **kw)
    np.testing.assert_array_equal(res.stage_node[:, 0], [1])
    np.testing.assert_allclose(res.task_finish, [2.5], atol=1e-12)
    assert res.jobs_lost[1] == 1 and res.jobs_lost.sum() == 1
    np.testing.assert_array_equal(res.x_light[:4, :, 0], [[1, 0], [0, 1], [0, 1], [0, 0]])
    assert res.invalid_actions == 0


# ------------------------------------------------------------------------------------------------
# a link failure that cuts the gateway off
def test_stage_waits_for_the_path_to_return():
    # the core scenario with the only instance on node 1; link 0-1 down in slots 0..5.  Task 0
    # arrives at 0: its input reaches no instance (data-ready time inf on node 1) until boundary 6;
    # there r = 0 + 4 = 4 (the delays of boundary 6), start max(6, 4) = 6, finish 8.
    T = 12
    link_up = np.ones((T, 1), dtype=bool)
    link_up[:6, 0] = False
    for rule in ("earliest_start", "idle_only"):
        res = run_core(rule, {0: 1}, x_core=((0,), (1,)), link_up=link_up)
        assert res.stage_node[0, 0] == 1 and res.stage_dispatch_slot[0, 0] == 6
        assert res.stage_data_ready[0, 0] == pytest.approx(4.0)
        assert res.task_finish[0] == pytest.approx(8.0)
        assert breakdown(res, 0) == pytest.approx(
            parts(network=4.0, core_dispatch_wait=2.0, core_service=2.0)
        )
        assert res.jobs_lost.sum() == 0
    # never back: unfinished
    res = run_core("earliest_start", {0: 1}, x_core=((0,), (1,)), link_up=np.zeros((T, 1), dtype=bool))
    assert res.tasks_unfinished == 1 and res.stage_node[0, 0] == -1 and np.isnan(res.task_finish[0])


def test_light_stage_waits_for_the_path_to_return_lbrr():
    # the light scenario with node 0 down throughout and link 0-1 down in slots 0..2: the only node
    # that may host cannot receive the input; lbrr starts an instance on node 1 but routes nothing to
    # it (so it never exists).  At t=3: data ready 0 + 1 = 1, start 3, 3..5 (f = 1).
    T = 8
    node_up = np.ones((T, 2), dtype=bool)
    node_up[:, 0] = False
    link_up = np.ones((T, 1), dtype=bool)
    link_up[:3, 0] = False
    res = run_light({0: 1}, {}, node_up=node_up, link_up=link_up)
    assert res.stage_node[0, 0] == 1 and res.stage_dispatch_slot[0, 0] == 3
    assert res.task_finish[0] == pytest.approx(5.0)
    np.testing.assert_array_equal(res.x_light[:6, :, 0], [[0, 0], [0, 0], [0, 0], [0, 1], [0, 1], [0, 0]])
    assert res.invalid_actions == 0
    assert breakdown(res, 0) == pytest.approx(
        parts(network=1.0, light_dispatch_wait=2.0, light_service=2.0)
    )


# ------------------------------------------------------------------------------------------------
def test_critical_parent_uses_the_delays_of_the_dispatch_boundary():
    # roots core s0 (node 1, 1 ms) and s1 (node 2, 2 ms) -> core s2 (node 2, 1 ms); links 0-1, 0-2 at
    # 1 MB/ms, 1-2 at 10 MB/ms; A = 1 MB (forwarding 1 ms), b_0 = 1 MB.  Task at 0, infinite uplink.
    # Roots: s0 1..2 on node 1, s1 1..3 on node 2.  s2 ready at boundary 3, where link 1-2 is down:
    # xfer_0(1 -> 2) = 2 (via node 0), so r = max(2 + 2, 3 + 0) = 4, start 4, finish 5, and the
    # critical parent is s0 (with all links up it would be s1: 2 + 0.1 < 3).
    sc = make_scenario(
        capacity=[[8, 8, 8, 8]] * 3,
        links=[(0, 1, 1.0, 0.0), (0, 2, 1.0, 0.0), (1, 2, 10.0, 0.0)],
        services=[
            core([1, 1, 1, 1], a=1.0, b=1.0, f=1.0),
            core([1, 1, 1, 1], a=2.0, b=1.0, f=1.0),
            core([1, 1, 1, 1], a=1.0, b=0.1, f=1.0),
        ],
        types=[dict(services=[0, 1, 2], parents={2: [0, 1]}, A=1.0, D=10.0)],
        gateways=[0],
        arrival_rate=[[0.1]],
    )
    x_core = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 1]])
    T = 8
    arrivals = np.zeros((T, 1, 1), dtype=int)
    arrivals[0] = 1
    link_up = np.ones((T, 3), dtype=bool)
    link_up[3, 2] = False
    kw = dict(slot_ms=1.0, arrival_slots=1, total_slots=T)
    res = simulate_reference(
        sc, x_core, arrivals, np.full((T, 1), np.inf), np.ones((T, 3, 0, 8)), **kw, link_up=link_up
    )
    np.testing.assert_allclose(res.stage_finish[0], [2.0, 3.0, 5.0], atol=1e-12)
    assert res.stage_data_ready[0, 2] == pytest.approx(4.0)
    # path s2 <- s0: network 1 (forwarding) + 2 (transfer), service 1 + 1
    assert breakdown(res, 0) == pytest.approx(
        parts(network=3.0, core_service=2.0)
    )
    # all up: r = max(2.1, 3) = 3, finish 4, critical parent s1: network 1, service 2 + 1
    plain = simulate_reference(sc, x_core, arrivals, np.full((T, 1), np.inf), np.ones((T, 3, 0, 8)), **kw)
    assert plain.task_finish[0] == pytest.approx(4.0)
    assert breakdown(plain, 0) == pytest.approx(
        parts(network=1.0, core_service=3.0)
    )


# ------------------------------------------------------------------------------------------------
# decisions the simulator refuses
def fixed_node(v):
    """A controller that keeps instance (v, 0, k0) alive and assigns every waiting stage to it."""

    def control(obs, state):
        alive = np.zeros_like(obs.occupancy, dtype=bool)
        alive[v, 0, 0] = True
        assignment = [(i, v, 0) for i in range(len(obs.waiting))]
        return LightDecision(alive=alive, assignment=assignment), state

    return control


def test_assignment_to_a_down_node_is_refused():
    # node 0 down in slots 0 and 1: the controller's instance there does not exist, its assignments
    # are refused (one per boundary), the stage waits; at t=2 it runs 2..4 on node 0 (data ready 0)
    T = 8
    node_up = np.ones((T, 2), dtype=bool)
    node_up[:2, 0] = False
    res = run_light({0: 1}, {}, y_max=4, controller=fixed_node(0), node_up=node_up)
    assert res.invalid_actions == 2
    assert res.stage_dispatch_slot[0, 0] == 2 and res.task_finish[0] == pytest.approx(4.0)
    np.testing.assert_array_equal(res.x_light[:5, 0, 0], [0, 0, 1, 1, 1])  # kept alive from slot 2 on
    assert breakdown(res, 0) == pytest.approx(
        parts(light_dispatch_wait=2.0, light_service=2.0)
    )


def test_assignment_to_an_unreachable_node_is_refused():
    # link 0-1 down in slots 0..2: node 1 cannot receive the input; refused at 0, 1, 2 (the instance
    # on node 1 exists, empty); at t=3 data ready 1 -> 3..5
    T = 8
    link_up = np.ones((T, 1), dtype=bool)
    link_up[:3, 0] = False
    res = run_light({0: 1}, {}, y_max=4, controller=fixed_node(1), link_up=link_up)
    assert res.invalid_actions == 3
    assert res.stage_dispatch_slot[0, 0] == 3 and res.task_finish[0] == pytest.approx(5.0)
    np.testing.assert_array_equal(res.x_light[:4, 1, 0], [1, 1, 1, 1])


# ------------------------------------------------------------------------------------------------
# the controllers on hand-built observations
def test_lbrr_and_algorithm1_skip_down_and_unreachable_nodes():
    sc = make_light_scenario([[4, 4, 4, 4], [4, 4, 4, 4], [4, 4, 4, 4]], [light_service()])
    # one waiting stage, input on every node at t = 0
    obs = make_obs(sc, [(0, 0, [0.0, 0.0, 0.0], 10.0)], y_max=2)
    decision, _ = lbrr(obs, None)
    assert decision.assignment == [(0, 0, 0)]
    decision, _ = algorithm1(obs, AVG, {0: 1.0})
    assert decision.assignment == [(0, 0, 0)]
    # node 0 down: both go to node 1
    obs.node_up = np.array([False, True, True])
    decision, _ = lbrr(obs, None)
    assert decision.assignment == [(0, 1, 0)] and not decision.alive[0].any()
    decision, info = algorithm1(obs, AVG, {0: 1.0})
    assert decision.assignment == [(0, 1, 0)] and not decision.alive[0].any()
    # node 0 down, the input cannot reach nodes 1 and 2: lbrr starts an instance on node 1 (its
    # scaling step does not look at the stages) but routes nothing there, so none exists; Algorithm 1
    # adds nothing (every score is inf) and defers the stage: Φ = w·c_s = 1·(2·10 + 1)
    obs = make_obs(sc, [(0, 0, [0.0, INF, INF], 10.0)], y_max=2)
    obs.node_up = np.array([False, True, True])
    decision, _ = lbrr(obs, None)
    assert decision.assignment == [] and not decision.alive.any()
    decision, info = algorithm1(obs, AVG, {0: 1.0})
    assert decision.assignment == [] and info["deferred"] == 1 and not decision.alive.any()
    assert info["objective"] == pytest.approx(21.0) and info["steps"] == 0
    # reachable on node 2 only (data ready 0.5): Algorithm 1 adds (2, k0): Φ = 5.5 + (0.5 + g(1) = 1);
    # lbrr still starts on node 1, the least-utilised up node, and the stage waits (§6 as pinned)
    obs.waiting[0].data_ready = np.array([0.0, INF, 0.5])
    decision, info = algorithm1(obs, AVG, {0: 1.0})
    assert decision.assignment == [(0, 2, 0)] and info["objective"] == pytest.approx(7.0)
    decision, _ = lbrr(obs, None)
    assert decision.assignment == []
    # node 1 down too: lbrr starts on node 2 and routes the stage there
    obs.node_up = np.array([False, False, True])
    decision, _ = lbrr(obs, None)
    assert decision.assignment == [(0, 2, 0)]
    decision, info = algorithm1(obs, AVG, {0: 1.0})
    assert decision.assignment == [(0, 2, 0)] and info["objective"] == pytest.approx(7.0)


def test_lbrr_routing_skips_unreachable_instances():
    # two busy instances (0, k0) and (1, k0) with room; the stage cannot reach node 0: the pointer
    # (0) passes instance 0 and lands on instance 2 = (1, k0); the next stage (reachable everywhere)
    # starts from 3 and wraps to 0
    sc = make_light_scenario([[4, 4, 4, 4], [4, 4, 4, 4]], [light_service()])
    obs = make_obs(
        sc, [(0, 0, [INF, 0.0], 10.0), (1, 0, [0.0, 0.0], 10.0)], busy={(0, 0, 0): 1, (1, 0, 0): 1}, y_max=3
    )
    decision, pointer = lbrr(obs, None)
    assert decision.assignment == [(0, 1, 0), (1, 0, 0)] and pointer[0] == 1


# ------------------------------------------------------------------------------------------------
def test_failure_arrays_are_validated():
    T = 12
    with pytest.raises(ConfigError, match="node_up.shape"):
        run_core("earliest_start", {0: 1}, node_up=np.ones((T, 3), dtype=bool))
    with pytest.raises(ConfigError, match="node_up.dtype"):
        run_core("earliest_start", {0: 1}, node_up=np.ones((T, 2), dtype=int))
    with pytest.raises(ConfigError, match="link_up.shape"):
        run_core("earliest_start", {0: 1}, link_up=np.ones((T - 1, 1), dtype=bool))
    with pytest.raises(ConfigError, match="link_up.dtype"):
        run_core("earliest_start", {0: 1}, link_up=np.ones((T, 1), dtype=float))


# ------------------------------------------------------------------------------------------------
# invariants under random failures
def check_invariants(sc, arrivals, res, node_up, link_up, slot_ms=1.0):
    T = node_up.shape[0]
    assert res.tasks_arrived == int(arrivals.sum())
    assert res.tasks_arrived == res.tasks_ontime + res.tasks_late + res.tasks_unfinished + res.tasks_dropped
    assert res.capacity_violations == 0
    assert res.invalid_actions == 0  # the built-in controllers never ask for a refused assignment
    assert res.jobs_lost.shape == (T,) and np.all(res.jobs_lost >= 0)
    # no light instance on a down node
    assert np.all(res.x_light[~node_up] == 0)
    finished = ~np.isnan(res.task_finish)
    latency = res.task_finish[finished] - res.task_arrival[finished]
    assert np.all(np.isfinite(latency)) and np.all(latency >= 0)
    # the breakdown sums to the latency, componentwise >= 0
    parts = res.task_breakdown[finished]
    assert np.all(np.isfinite(parts)) and parts.min() >= -TOL
    np.testing.assert_allclose(parts.sum(axis=1), latency, rtol=0, atol=1e-8)
    late = latency > sc.deadline[res.task_type[finished]]
    assert int(late.sum()) == res.tasks_late
    # a stage that finished did so on a node up at every boundary from its dispatch to its finish,
    # with a finite data-ready time that its start respects
    network = NetworkDelays(sc)
    J, S = res.stage_finish.shape
    for j in range(J):
        for s in range(S):
            f = res.stage_finish[j, s]
            if np.isnan(f):
                continue
            v, t_s = res.stage_node[j, s], res.stage_dispatch_slot[j, s]
            assert v >= 0 and t_s >= 0
            boundaries = [t for t in range(t_s, T) if t * slot_ms < f]
            assert all(node_up[t, v] for t in boundaries), (j, s, v, t_s, f)
            r = res.stage_data_ready[j, s]
            assert math.isfinite(r) and res.stage_start[j, s] >= max(t_s * slot_ms, r) - TOL
            # a root's data-ready time is the forwarding over the links up at its dispatch boundary
            n = res.task_type[j]
            if np.all(sc.stage_parents[n, s] < 0):
                fwd, _ = network.tables(link_up[t_s])
                g = sc.user_gateway[res.task_user[j]]
                assert math.isfinite(fwd[n, g, v])
    return finished


@pytest.mark.parametrize("seed", range(20))
def test_invariants_under_random_failures(seed):
    rule = ("earliest_start", "idle_only")[seed % 2]
    controller = ("lbrr", "lbrr", "proposed", "propavg")[seed % 4]
    arrivals, node_up, link_up, res = random_run(
        100 + seed, rule, controller, failures="random", buffer_capacity=30
    )
    assert not node_up.all() and not link_up.all()
    finished = check_invariants(MERGE_SC, arrivals, res, node_up, link_up)
    assert finished.sum() > 0


def test_random_failures_lose_jobs():
    # failures do strike running and queued work (the invariants above are not vacuous)
    lost = 0
    for seed in range(4):
        _, _, _, res = random_run(100 + seed, failures="random", buffer_capacity=30)
        lost += int(res.jobs_lost.sum())
    assert lost > 0
