"""The plain-Python reference simulator against hand computations (docs/SEMANTICS.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgefm.errors import SolverError
from edgefm.reference import (
    ReferenceResult,
    least_loaded_placement,
    shortest_path_delays,
    simulate_reference,
)
from edgefm.scenario import Scenario

INF = math.inf


def make_scenario(
    *,
    capacity,
    links,  # [(a, b, bandwidth, length)]
    services,  # [dict(core, r, a, b, f | (shape, scale), dp, mt, pl)]
    types,  # [dict(services=[ids sorted], parents={stage: [stages]}, A, D)]
    gateways,
    arrival_rate,
    propagation_speed=INF,
    is_server=None,
) -> Scenario:
    V = len(capacity)
    N = len(types)
    S = max(len(t["services"]) for t in types)
    P = max([1] + [len(p) for t in types for p in t.get("parents", {}).values()])
    stage_service = np.full((N, S), -1, dtype=int)
    stage_parents = np.full((N, S, P), -1, dtype=int)
    stage_child = np.full((N, S), -1, dtype=int)
    sink = np.zeros(N, dtype=int)
    for n, ty in enumerate(types):
        assert list(ty["services"]) == sorted(ty["services"])
        for s, m in enumerate(ty["services"]):
            stage_service[n, s] = m
        for s, parents in ty.get("parents", {}).items():
            for i, p in enumerate(parents):
                stage_parents[n, s, i] = p
                stage_child[n, p] = s
        sinks = [s for s in range(len(ty["services"])) if stage_child[n, s] < 0]
        assert len(sinks) == 1
        sink[n] = sinks[0]
    core = np.array([s["core"] for s in services])
    return Scenario(
        name="hand",
        node_names=tuple(f"n{v}" for v in range(V)),
        node_is_server=np.array(is_server if is_server is not None else [True] * V),
        capacity=np.array(capacity, dtype=float),
        link_ends=np.array([[a, b] for a, b, _, _ in links], dtype=int).reshape(-1, 2),
        link_bandwidth=np.array([w for _, _, w, _ in links], dtype=float),
        link_length=np.array([ln for _, _, _, ln in links], dtype=float),
        propagation_speed=float(propagation_speed),
        service_names=tuple(f"s{m}" for m in range(len(services))),
        service_is_core=core,
        resource=np.array([s["r"] for s in services], dtype=float),
        work=np.array([s["a"] for s in services], dtype=float),
        output_size=np.array([s["b"] for s in services], dtype=float),
        core_rate=np.array([s["f"] if s["core"] else np.nan for s in services], dtype=float),
        light_shape=np.array([np.nan if s["core"] else s["shape"] for s in services], dtype=float),
        light_scale=np.array([np.nan if s["core"] else s["scale"] for s in services], dtype=float),
        cost_deploy=np.array([s["dp"] for s in services], dtype=float),
        cost_maintain=np.array([s["mt"] for s in services], dtype=float),
        cost_payload=np.array([s["pl"] for s in services], dtype=float),
        type_names=tuple(f"t{n}" for n in range(N)),
        input_size=np.array([t["A"] for t in types], dtype=float),
        deadline=np.array([t["D"] for t in types], dtype=float),
        stage_service=stage_service,
        stage_parents=stage_parents,
        stage_child=stage_child,
        sink_stage=sink,
        user_gateway=np.array(gateways, dtype=int),
        arrival_rate=np.array(arrival_rate, dtype=float),
        nakagami_m=np.full(len(gateways), 2.0),
        nakagami_omega=np.full(len(gateways), 1.0),
    )


def light(r, a, b, dp=4.0, mt=1.0, pl=0.5):
    return dict(core=False, r=r, a=a, b=b, shape=1.0, scale=1.0, dp=dp, mt=mt, pl=pl)


def core(r, a, b, f, dp=20.0, mt=4.0):
    return dict(core=True, r=r, a=a, b=b, f=f, dp=dp, mt=mt, pl=0.0)


# ------------------------------------------------------------------------------------------------
# chain light(0) -> core(1) -> light(2); gateway node 0 hosts nothing, node 1 holds the one core
# instance (full), node 2 (2 CPUs) hosts the light instances.  Links 0-1 (1 MB/ms), 1-2 (0.5 MB/ms).
def chain_scenario(node2_cpu=2.0):
    return make_scenario(
        capacity=[[0.5, 1, 1, 1], [4, 1, 1, 1], [node2_cpu, 1, 1, 1]],
        links=[(0, 1, 1.0, 0.0), (1, 2, 0.5, 0.0)],
        services=[
            light([1, 0, 0, 0], a=1.5, b=0.25),
            core([4, 0, 0, 0], a=2.0, b=0.5, f=4.0),
            light([1, 0, 0, 0], a=1.0, b=0.1),
        ],
        types=[dict(services=[0, 1, 2], parents={1: [0], 2: [1]}, A=1.0, D=7.0)],
        gateways=[0],
        arrival_rate=[[0.1]],
    )


CHAIN_X_CORE = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]])

# The semantics several hand cases below were computed with, before the defaults became roots ready
# at their uplink end and work-conserving light FIFOs (SEMANTICS.md §2 steps 3 and 7): roots ready
# at their arrival boundary, light FIFOs in dispatch order. Those cases pass them explicitly.
ARRIVAL_DISPATCH = dict(root_ready="arrival", light_order="dispatch")


def run_chain(arrivals_at, rates, *, T=12, y_max=20, X=2, node2_cpu=2.0, **kw) -> ReferenceResult:
    sc = chain_scenario(node2_cpu)
    arrivals = np.zeros((T, 1, 1), dtype=int)
    for t, count in arrivals_at.items():
        arrivals[t, 0, 0] = count
    uplink = np.full((T, 1), 2.0)  # A = 1 MB -> 0.5 ms
    light_rate = np.ones((T, 3, 2, X))
    for (t, v, ml, k), f in rates.items():
        light_rate[t, v, ml, k] = f
    return simulate_reference(
        sc, CHAIN_X_CORE, arrivals, uplink, light_rate, slot_ms=1.0, arrival_slots=2, total_slots=T,
        y_max=y_max, max_light_instances=X, **kw,
    )


def test_network_delays_of_chain():
    sc = chain_scenario()
    assert shortest_path_delays(sc, 1.0)[0, 2] == pytest.approx(3.0, abs=1e-12)  # 1/1 + 1/0.5
    assert shortest_path_delays(sc, 0.25)[2, 1] == pytest.approx(0.5, abs=1e-12)
    assert shortest_path_delays(sc, 0.5)[1, 2] == pytest.approx(1.0, abs=1e-12)


def test_chain_two_tasks_shared_instance():
    # task 0 arrives at 0, task 1 at 1.  Uplink 0.5 ms, forwarding 0 -> 2 of A = 1 MB: 3 ms, so the
    # roots' data are ready on node 2 at 3.5 and 4.5.  Both share light instance (2, s0, k0):
    #   slot 3, f = 1: job 0 runs 3.5..4, remaining 1.5 - 0.5 = 1.0
    #   slot 4, f = 4: job 0 finishes 4.25; job 1 starts 4.5, finishes 4.5 + 1.5/4 = 4.875
    # core (node 1, 0.5 ms; transfer 2 -> 1 of 0.25 MB: 0.5 ms), both ready at boundary 5:
    #   task 0: data 4.75, start 5, finish 5.5;  task 1: data 5.375, instance free 5.5 -> 6.0
    # post (transfer 1 -> 2 of 0.5 MB: 1 ms), new instance (2, s2, k0) started at boundary 6:
    #   slot 6, f = 1: job 0 data 6.5, runs 6.5..7, remaining 0.5
    #   slot 7, f = 2: job 0 finishes 7.25; job 1 (data 7.0) starts 7.25, finishes 7.75
    res = run_chain(
        {0: 1, 1: 1}, {(3, 2, 0, 0): 1.0, (4, 2, 0, 0): 4.0, (6, 2, 1, 0): 1.0, (7, 2, 1, 0): 2.0}, **ARRIVAL_DISPATCH
    )
    assert res.tasks_arrived == 2
    np.testing.assert_allclose(res.task_arrival, [0.0, 1.0], atol=1e-12)
    np.testing.assert_array_equal(res.stage_node, [[2, 1, 2], [2, 1, 2]])
    np.testing.assert_allclose(res.stage_finish, [[4.25, 5.5, 7.25], [4.875, 6.0, 7.75]], atol=1e-9)
    np.testing.assert_allclose(res.task_finish, [7.25, 7.75], atol=1e-9)
    # deadline 7: task 0 (7.25 ms) is late, task 1 (6.75 ms) on time
    assert (res.tasks_ontime, res.tasks_late, res.tasks_unfinished, res.tasks_dropped) == (1, 1, 0, 0)
    # light instances: s0 on node 2 in slots 0..4, s2 on node 2 in slots 6..7
    expected_x = np.zeros((12, 3, 3), dtype=int)
    expected_x[0:5, 2, 0] = 1
    expected_x[6:8, 2, 2] = 1
    np.testing.assert_array_equal(res.x_light, expected_x)
    # costs: start 4, every slot 1 + 0.5; core 20 + 12 * 4
    np.testing.assert_allclose(
        res.cost_light_per_slot, [5.5, 1.5, 1.5, 1.5, 1.5, 0, 5.5, 1.5, 0, 0, 0, 0], atol=1e-12
    )
    assert res.cost_light == pytest.approx(18.5, abs=1e-9)
    assert res.cost_core == pytest.approx(68.0, abs=1e-9)
    assert res.cost_total == pytest.approx(86.5, abs=1e-9)
    assert res.capacity_violations == 0


def test_chain_parallelism_one_round_robin_over_slots():
    # y_max = 1, both tasks arrive at 0 (data on node 2 at 3.5): lbrr starts s0 on node 2 in slots
    # k0 and k1 (node 2 has 2 CPUs), routes task 0 -> k0, task 1 -> k1 (pointer moves 4 -> 5 -> 0).
    #   k0: slot 3 f=1: 3.5..4, remaining 1.0; slot 4 f=1: finishes 5.0 (exactly at the boundary)
    #   k1: slot 3 f=3: finishes 3.5 + 0.5 = 4.0
    # core: task 1 ready at 4, data 4.5 -> 4.5..5.0; task 0 ready at 5, data 5.5 -> 5.5..6.0
    # post: task 1 ready at 5, data 6.0, new s2 instance k0; slot 5: start 6.0 >= 6, nothing done.
    #   boundary 6: task 0 ready (data 7.0); k0 is full (y=1) -> start k1; pointer 5 -> k1.
    #   k0 slot 6 f=2: task 1 finishes 6.5.  k1: slot 6 data 7.0 >= 7 waits; slot 7 f=0.5:
    #   7..8, remaining 0.5; slot 8 f=1: finishes 8.5.
    rates = {
        (3, 2, 0, 0): 1.0, (4, 2, 0, 0): 1.0, (3, 2, 0, 1): 3.0,
        (5, 2, 1, 0): 1.0, (6, 2, 1, 0): 2.0, (6, 2, 1, 1): 1.0, (7, 2, 1, 1): 0.5, (8, 2, 1, 1): 1.0,
    }
    res = run_chain({0: 2}, rates, y_max=1, **ARRIVAL_DISPATCH)
    np.testing.assert_array_equal(res.stage_node, [[2, 1, 2], [2, 1, 2]])
    np.testing.assert_allclose(res.stage_finish, [[5.0, 6.0, 8.5], [4.0, 5.0, 6.5]], atol=1e-9)
    np.testing.assert_allclose(res.task_finish, [8.5, 6.5], atol=1e-9)
    assert (res.tasks_ontime, res.tasks_late) == (1, 1)
    np.testing.assert_array_equal(res.x_light[:10, 2, 0], [2, 2, 2, 2, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(res.x_light[:10, 2, 2], [0, 0, 0, 0, 0, 1, 2, 1, 1, 0])
    np.testing.assert_allclose(
        res.cost_light_per_slot[:10], [11, 3, 3, 3, 1.5, 5.5, 7, 1.5, 1.5, 0], atol=1e-12
    )
    assert res.cost_light == pytest.approx(37.0, abs=1e-9)
    assert res.cost_total == pytest.approx(37.0 + 68.0, abs=1e-9)


def test_chain_no_room_stage_waits():
    # node 2 holds one light instance at a time, y_max = 1, both tasks at 0, every rate 1.
    # boundary 0: s0 k0 started for task 0; no room for a second -> task 1 waits.
    #   task 0: slot 3 3.5..4 (rem 1.0), slot 4 -> 5.0.  core: data 5.5 -> 6.0.
    # boundary 5: k0 idle (so it stops), restarted for task 1 (pointer 5 wraps to k0): 5..6.5.
    # boundary 6: task 0's post (data 7.0) waits: node 2 is taken by task 1's s0 job.
    # boundary 7: s2 k0 started: 7..8.  Task 1's core: data 7.0 -> 7.5.
    # boundary 8: s2 k0 idle, restarted for task 1 (data 8.5): 8.5..9 (rem 0.5), -> 9.5.
    res = run_chain({0: 2}, {}, y_max=1, node2_cpu=1.0, **ARRIVAL_DISPATCH)
    np.testing.assert_allclose(res.stage_finish, [[5.0, 6.0, 8.0], [6.5, 7.5, 9.5]], atol=1e-9)
    assert (res.tasks_ontime, res.tasks_late) == (0, 2)
    np.testing.assert_array_equal(res.x_light[:, 2, 0], [1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(res.x_light[:, 2, 2], [0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 0, 0])
    # a restart on the same (v, m) in consecutive slots is no new deployment
    assert res.cost_light == pytest.approx(5.5 + 6 * 1.5 + 5.5 + 2 * 1.5, abs=1e-9)
    assert res.capacity_violations == 0


def test_unfinished_at_horizon():
    # same as the first chain case, but the horizon ends at 7 ms: both sinks are still running
    res = run_chain({0: 1, 1: 1}, {(3, 2, 0, 0): 1.0, (4, 2, 0, 0): 4.0}, T=7)
    assert (res.tasks_ontime, res.tasks_late, res.tasks_unfinished) == (0, 0, 2)
    assert np.all(np.isnan(res.task_finish))
    np.testing.assert_allclose(res.stage_finish[:, :2], [[4.25, 5.5], [4.875, 6.0]], atol=1e-9)
    assert np.all(np.isnan(res.stage_finish[:, 2]))
    np.testing.assert_array_equal(res.stage_node[:, 2], [2, 2])  # dispatched, not finished


# ------------------------------------------------------------------------------------------------
# one core service, one instance on node 0 (the gateway) and one on node 1 behind a slow link
# (0.25 MB/ms, A = 1 MB -> 4 ms).  Processing 2 ms.  Task 0 arrives at 0, tasks 1 and 2 at 1.
def core_scenario():
    return make_scenario(
        capacity=[[8, 8, 8, 8], [8, 8, 8, 8]],
        links=[(0, 1, 0.25, 0.0)],
        services=[core([1, 1, 1, 1], a=2.0, b=0.1, f=1.0, dp=20.0, mt=4.0)],
        types=[dict(services=[0], A=1.0, D=4.5)],
        gateways=[0],
        arrival_rate=[[0.5]],
    )


def run_core(rule, arrivals_at, T=10, **kw):
    sc = core_scenario()
    arrivals = np.zeros((T, 1, 1), dtype=int)
    for t, count in arrivals_at.items():
        arrivals[t, 0, 0] = count
    return simulate_reference(
        sc, np.array([[1], [1]]), arrivals, np.full((T, 1), np.inf), np.ones((T, 2, 0, 8)),
        slot_ms=1.0, arrival_slots=5, total_slots=T, core_dispatch=rule, **kw,
    )


def test_core_dispatch_earliest_start():
    # task 0: node 0 starts 0 -> 2.  task 1: node 0 max(1, 1, 2) = 2 beats node 1 max(1, 5, 0) = 5
    # -> 4.  task 2: node 0 starts 4 (-> 6) beats node 1 at 5 (-> 7).
    res = run_core("earliest_start", {0: 1, 1: 2})
    np.testing.assert_array_equal(res.stage_node[:, 0], [0, 0, 0])
    np.testing.assert_allclose(res.task_finish, [2.0, 4.0, 6.0], atol=1e-12)
    # latencies 2, 3, 5 against D = 4.5
    assert (res.tasks_ontime, res.tasks_late) == (2, 1)
    assert res.cost_core == pytest.approx(2 * (20 + 10 * 4), abs=1e-12)
    assert res.cost_light == 0.0


def test_core_dispatch_idle_only():
    # task 0: both idle, node 0 has the earlier data -> 0..2.  Boundary 1: node 0 is busy until 2,
    # node 1 idle -> task 1 waits for its input over the slow link: 5..7.  Task 2 finds no idle
    # instance and waits; boundary 2: node 0 is free (2 <= 2) -> 2..4.
    res = run_core("idle_only", {0: 1, 1: 2})
    np.testing.assert_array_equal(res.stage_node[:, 0], [0, 1, 0])
    np.testing.assert_allclose(res.task_finish, [2.0, 7.0, 4.0], atol=1e-12)
    # latencies 2, 6, 3
    assert (res.tasks_ontime, res.tasks_late) == (2, 1)


def test_buffer_overflow_drops_and_readmits():
    # capacity 1: of the two tasks at 0 the second is dropped; task 0 completes at 2, observed at
    # boundary 2 before the arrivals, so the task arriving at 2 is admitted (node 0, 2..4).
    res = run_core("earliest_start", {0: 2, 2: 1}, buffer_capacity=1)
    np.testing.assert_array_equal(res.task_dropped, [False, True, False])
    assert res.tasks_dropped == 1
    assert np.isnan(res.task_finish[1]) and res.stage_node[1, 0] == -1
    np.testing.assert_allclose(res.task_finish[[0, 2]], [2.0, 4.0], atol=1e-12)
    assert res.tasks_arrived == 3 and res.tasks_ontime == 2


# ------------------------------------------------------------------------------------------------
def test_shortest_path_two_competing_routes():
    # 0-1-3: links (w=1, W=1); 0-2-3: links (w=2, W=3); propagation speed 1 -> per hop s/w + W.
    # route via 1: 2s + 2, via 2: s + 6.
    sc = make_scenario(
        capacity=[[1, 1, 1, 1]] * 4,
        links=[(0, 1, 1.0, 1.0), (1, 3, 1.0, 1.0), (0, 2, 2.0, 3.0), (2, 3, 2.0, 3.0)],
        services=[core([1, 1, 1, 1], a=1, b=1, f=1)],
        types=[dict(services=[0], A=1.0, D=10.0)],
        gateways=[0],
        arrival_rate=[[0.1]],
        propagation_speed=1.0,
    )
    d1 = shortest_path_delays(sc, 1.0)
    expected = np.array(
        [
            [0.0, 2.0, 3.5, 4.0],
            [2.0, 0.0, 5.5, 2.0],
            [3.5, 5.5, 0.0, 3.5],
            [4.0, 2.0, 3.5, 0.0],
        ]
    )
    np.testing.assert_allclose(d1, expected, atol=1e-12)
    d10 = shortest_path_delays(sc, 10.0)
    assert d10[0, 3] == pytest.approx(16.0, abs=1e-12)  # the wide route wins (22 via node 1)
    assert d10[3, 0] == pytest.approx(16.0, abs=1e-12)
    # without propagation: via 1 = 2s, via 2 = s
    sc_inf = make_scenario(
        capacity=[[1, 1, 1, 1]] * 4,
        links=[(0, 1, 1.0, 1.0), (1, 3, 1.0, 1.0), (0, 2, 2.0, 3.0), (2, 3, 2.0, 3.0)],
        services=[core([1, 1, 1, 1], a=1, b=1, f=1)],
        types=[dict(services=[0], A=1.0, D=10.0)],
        gateways=[0],
        arrival_rate=[[0.1]],
    )
    assert shortest_path_delays(sc_inf, 1.0)[0, 3] == pytest.approx(1.0, abs=1e-12)
    # a disconnected node is unreachable
    sc_cut = make_scenario(
        capacity=[[1, 1, 1, 1]] * 3,
        links=[(0, 1, 1.0, 0.0)],
        services=[core([1, 1, 1, 1], a=1, b=1, f=1)],
        types=[dict(services=[0], A=1.0, D=10.0)],
        gateways=[0],
        arrival_rate=[[0.1]],
    )
    assert math.isinf(shortest_path_delays(sc_cut, 1.0)[0, 2])


# ------------------------------------------------------------------------------------------------
def placement_scenario(capacity):
    # core 0: r = (4, 1, 0, 2), a/f = 2, used by type 0 (lambda 0.6) -> req = ceil(1.2) = 2
    # core 1: r = (3, 0, 0, 1), a/f = 1, used by type 1 (lambda 2.5) -> req = ceil(2.5) = 3
    # light 2 (ignored by the placement)
    return make_scenario(
        capacity=capacity,
        links=[(0, 1, 1.0, 0.0)],
        services=[
            core([4, 1, 0, 2], a=2.0, b=0.1, f=1.0),
            core([3, 0, 0, 1], a=1.0, b=0.1, f=1.0),
            light([1, 0, 0, 0], a=1.0, b=0.1),
        ],
        types=[
            dict(services=[0, 2], parents={1: [0]}, A=1.0, D=10.0),
            dict(services=[1], A=1.0, D=10.0),
        ],
        gateways=[0],
        arrival_rate=[[0.6, 2.5]],
    )


def test_least_loaded_placement_by_hand():
    # node 0 (10, 10, 10, 10); node 1 (20, 10, 0, 10) (its GPU is left out of the utilisation).
    # core 1 first (req 3 > 2): node 0 (tie at 0, lowest index) -> util0 = (0.3 + 0.1) / 4 = 0.1;
    #   node 1 (0) -> util1 = (0.15 + 0.1) / 3 = 0.0833; node 1 again -> util1 = 0.1667.
    # core 0: node 0 (0.1) -> used0 = (7, 1, 0, 3); then node 0 lacks CPU (11 > 10) -> node 1.
    sc = placement_scenario([[10, 10, 10, 10], [20, 10, 0, 10]])
    x = least_loaded_placement(sc)
    np.testing.assert_array_equal(x, [[1, 1, 0], [1, 2, 0]])


def test_least_loaded_placement_infeasible_names_service():
    sc = placement_scenario([[10, 10, 10, 10], [5, 10, 0, 10]])
    # core 1 x3: node0, node1, node0 (util0 0.1 vs util1 (0.6 + 0.1)/3) -> used0 = (6, 0, 0, 2);
    # core 0 x2: node 0 (10 <= 10) then nowhere (node 0 full, node 1 CPU 3 + 4 > 5)
    with pytest.raises(SolverError, match="s0"):
        least_loaded_placement(sc)


# ------------------------------------------------------------------------------------------------
def random_case(seed, rule, *, T=40, T_arr=25, X=2, y_max=2, load=3.0, buffer_capacity=10**9):
    """A 4-node scenario with a merge DAG (two light roots -> core -> light sink) and a chain, random
    arrivals and Gamma rates; capacities tight enough that lbrr runs out of room."""
    rng = np.random.default_rng(seed)
    sc = make_scenario(
        capacity=[[3, 4, 4, 4], [6, 8, 8, 8], [6, 8, 8, 8], [2, 2, 2, 2]],
        links=[(0, 1, 0.8, 1.0), (1, 2, 0.4, 1.0), (0, 2, 0.3, 0.0), (2, 3, 1.0, 0.5)],
        propagation_speed=2.0,
        services=[
            light([1, 0.5, 0.5, 0.2], a=0.8, b=0.6),
            light([1, 0.5, 1, 0.5], a=1.2, b=0.4),
            core([3, 2, 4, 4], a=3.0, b=0.3, f=6.0),
            light([1, 0.2, 0.5, 0.5], a=0.5, b=0.1),
            core([2, 2, 2, 2], a=2.0, b=0.2, f=4.0),
        ],
        types=[
            dict(services=[0, 1, 2, 3], parents={2: [0, 1], 3: [2]}, A=1.5, D=25.0),
            dict(services=[0, 4], parents={1: [0]}, A=0.7, D=12.0),
        ],
        gateways=[0, 3],
        arrival_rate=[[0.3, 0.4], [0.2, 0.5]],
    )
    x_core = np.zeros((4, 5), dtype=int)
    x_core[1, 2] = 1
    x_core[2, 2] = 1
    x_core[2, 4] = 1
    arrivals = np.zeros((T, 2, 2), dtype=int)
    arrivals[:T_arr] = rng.poisson(load * sc.arrival_rate, size=(T_arr, 2, 2))
    uplink = rng.uniform(0.5, 3.0, size=(T, 2))
    uplink[:, 1] = np.inf
    light_rate = rng.gamma(1.5, 1.0, size=(T, 4, 3, X))
    res = simulate_reference(
        sc, x_core, arrivals, uplink, light_rate, slot_ms=1.0, arrival_slots=T_arr, total_slots=T,
        core_dispatch=rule, y_max=y_max, max_light_instances=X, buffer_capacity=buffer_capacity,
    )
    return sc, x_core, arrivals, res


@pytest.mark.parametrize("rule", ["earliest_start", "idle_only"])
@pytest.mark.parametrize("seed", [0, 1])
def test_invariants_on_random_case(seed, rule):
    sc, x_core, arrivals, res = random_case(seed, rule)
    T = res.x_light.shape[0]
    # conservation
    assert res.tasks_arrived == int(arrivals.sum()) == len(res.task_type)
    assert res.tasks_arrived == res.tasks_ontime + res.tasks_late + res.tasks_unfinished + res.tasks_dropped
    assert res.tasks_ontime > 0
    # Eq. 8 in every slot, recomputed here
    assert res.capacity_violations == 0
    for t in range(T):
        used = (x_core + res.x_light[t]) @ sc.resource
        assert np.all(used <= sc.capacity + 1e-9)
    assert np.all(res.x_light[:, :, sc.core_services] == 0)
    assert np.all(res.x_light <= 2)
    # cost recomputed from x_light
    prev = np.zeros_like(res.x_light[0])
    per_slot = []
    for t in range(T):
        x = res.x_light[t]
        per_slot.append(
            float(np.sum(sc.cost_deploy * np.maximum(0, x - prev) + (sc.cost_maintain + sc.cost_payload) * x))
        )
        prev = x
    np.testing.assert_allclose(res.cost_light_per_slot, per_slot, atol=1e-9)
    assert res.cost_light == pytest.approx(sum(per_slot), abs=1e-9)
    assert res.cost_core == pytest.approx(float(np.sum(x_core * (sc.cost_deploy + T * sc.cost_maintain))))
    assert res.cost_total == pytest.approx(res.cost_core + res.cost_light)
    # task ids in (slot, user, type) order; finished tasks respect precedence and processing time
    order = list(zip(res.task_arrival, res.task_user, res.task_type))
    assert order == sorted(order)
    finished = ~np.isnan(res.task_finish)
    for j in np.flatnonzero(finished):
        n = res.task_type[j]
        for s in sc.stages_of(n):
            m = sc.stage_service[n, s]
            assert res.stage_node[j, s] >= 0
            for p in sc.stage_parents[n, s]:
                if p >= 0:
                    b = sc.output_size[sc.stage_service[n, p]]
                    xfer = shortest_path_delays(sc, b)[res.stage_node[j, p], res.stage_node[j, s]]
                    rate = sc.core_rate[m] if sc.service_is_core[m] else np.inf
                    assert res.stage_finish[j, s] >= res.stage_finish[j, p] + xfer + sc.work[m] / rate - 1e-9
        assert res.task_finish[j] == res.stage_finish[j, sc.sink_stage[n]]
        assert res.task_finish[j] <= T * 1.0
    late = res.task_finish[finished] - res.task_arrival[finished] > sc.deadline[res.task_type[finished]]
    assert int(late.sum()) == res.tasks_late


def test_random_case_with_small_buffer():
    _, _, arrivals, res = random_case(3, "earliest_start", buffer_capacity=4)
    assert res.tasks_dropped > 0
    assert res.tasks_arrived == res.tasks_ontime + res.tasks_late + res.tasks_unfinished + res.tasks_dropped
    assert np.all(res.stage_node[res.task_dropped] == -1)
    assert np.all(np.isnan(res.task_finish[res.task_dropped]))


def test_pluggable_controller_and_errors():
    from edgefm.errors import ConfigError
    from edgefm.reference.controllers import CONTROLLERS

    calls = []

    def spy(obs, state):
        calls.append((obs.t, len(obs.waiting)))
        return CONTROLLERS["lbrr"](obs, state)

    rates = {(3, 2, 0, 0): 1.0, (4, 2, 0, 0): 4.0, (6, 2, 1, 0): 1.0, (7, 2, 1, 0): 2.0}
    ref = run_chain({0: 1, 1: 1}, rates, **ARRIVAL_DISPATCH)
    res = run_chain({0: 1, 1: 1}, rates, controller=spy, **ARRIVAL_DISPATCH)
    np.testing.assert_array_equal(res.task_finish, ref.task_finish)
    assert calls[:2] == [(0, 1), (1, 1)] and calls[6] == (6, 2)
    with pytest.raises(ConfigError):
        run_chain({0: 1}, {}, controller="nope")
    with pytest.raises(ConfigError):
        run_chain({0: 1}, {}, core_dispatch="fastest")
