"""When a root stage may start: the uplink end under `channel.fading` (block | per_slot, SEMANTICS.md
§2 step 2) and root readiness under `sim.root_ready` (uplink_end | arrival, §2 step 3), in the
reference simulator; with failures (§12) too. Reference only."""

from __future__ import annotations

import math

import numpy as np
import pytest
from test_reference import ARRIVAL_DISPATCH, core_scenario, run_chain
from test_reference_algorithm1 import small_case
from test_reference_failures import MERGE_SC, check_invariants, random_run

from edgefm.errors import ConfigError
from edgefm.reference import BREAKDOWN_COMPONENTS, make_controller, simulate_reference, uplink_end_time

INF = math.inf


def parts(**nonzero) -> list[float]:
    """A latency breakdown (BREAKDOWN_COMPONENTS order) with the given components, 0 elsewhere."""
    return [float(nonzero.get(name, 0.0)) for name in BREAKDOWN_COMPONENTS]


# ------------------------------------------------------------------------------------------------
# the uplink end
def test_uplink_end_block_and_per_slot_by_hand():
    # A = 1 MB, Δt = 1 ms; rates 0.25, 0.5, 2, 1, 1 MB/ms in slots 0..4 (T = 5)
    rates = np.array([0.25, 0.5, 2.0, 1.0, 1.0])
    # block: the arrival slot's rate for the whole upload
    assert uplink_end_time(1.0, rates, 0, 1.0, "block") == 0 + 1 / 0.25 == 4.0
    assert uplink_end_time(1.0, rates, 1, 1.0, "block") == 1 + 1 / 0.5 == 3.0
    assert uplink_end_time(1.0, rates, 2, 1.0, "block") == 2.5
    # per_slot from slot 0: 0.25 MB in slot 0 (0.75 left), 0.5 MB in slot 1 (0.25 left), then
    # 0.25 / 2 = 0.125 ms into slot 2
    assert uplink_end_time(1.0, rates, 0, 1.0, "per_slot") == 2.125
    # from slot 1: 0.5 MB in slot 1, then 0.5 / 2 = 0.25 ms into slot 2
    assert uplink_end_time(1.0, rates, 1, 1.0, "per_slot") == 2.25
    # done within the arrival slot: the same as block
    assert uplink_end_time(1.0, rates, 2, 1.0, "per_slot") == 2.5
    # Δt = 0.5 ms: slot 0 carries 0.125 MB, slot 1 0.25 MB (0.625 left), slot 2 1 MB >= 0.625:
    # 2·0.5 + 0.625 / 2 = 1.3125
    assert uplink_end_time(1.0, rates, 0, 0.5, "per_slot") == 1.3125
    # an upload that ends exactly at a slot end, and exactly at TΔt, is complete there
    assert uplink_end_time(1.0, np.array([0.5, 0.5]), 0, 1.0, "per_slot") == 2.0
    # not complete by TΔt: inf (block has no horizon: 1 / 0.1 = 10 ms after the arrival)
    assert uplink_end_time(1.0, np.array([0.1, 0.1, 0.1]), 0, 1.0, "per_slot") == INF
    assert uplink_end_time(1.0, np.array([0.1, 0.1, 0.1]), 0, 1.0, "block") == 10.0
    # an infinite rate needs no time: at the arrival slot in both, or in a later slot of the walk
    assert uplink_end_time(1.0, np.array([1.0, INF]), 1, 1.0, "block") == 1.0
    assert uplink_end_time(1.0, np.array([INF, 1.0]), 0, 1.0, "per_slot") == 0.0
    assert uplink_end_time(1.0, np.array([0.5, INF]), 0, 1.0, "per_slot") == 1.0
    # a slot at rate 0 carries nothing
    assert uplink_end_time(1.0, np.array([0.0, 0.5, 1.0]), 0, 1.0, "per_slot") == 2.5


@pytest.mark.parametrize("seed", range(5))
def test_per_slot_equals_block_at_a_constant_rate(seed):
    rng = np.random.default_rng(seed)
    for _ in range(50):
        rate, size, t = float(rng.uniform(0.05, 3.0)), float(rng.uniform(0.1, 2.0)), int(rng.integers(0, 5))
        rates = np.full(60, rate)
        block = uplink_end_time(size, rates, t, 1.0, "block")
        walk = uplink_end_time(size, rates, t, 1.0, "per_slot")
        assert walk == pytest.approx(block, rel=0, abs=1e-12)
        if size <= rate:  # done within the arrival slot: the same arithmetic, bit for bit
            assert walk == block


# ------------------------------------------------------------------------------------------------
# a core service (2 ms of work) with its one instance on the gateway node 0 (test_reference.core_scenario)
def run_root(uplink_by_slot, *, T=10, x_core=((1,), (0,)), rates=None, **options):
    """One task per slot in ``uplink_by_slot`` (slot -> uplink rate MB/ms of that slot; A = 1 MB),
    or the whole [T] column ``rates``."""
    sc = core_scenario()
    arrivals = np.zeros((T, 1, 1), dtype=int)
    uplink = np.full((T, 1), INF) if rates is None else np.asarray(rates, dtype=float).reshape(T, 1)
    for t, rate in uplink_by_slot.items():
        arrivals[t, 0, 0] = 1
        if rate is not None:
            uplink[t, 0] = rate
    return simulate_reference(
        sc, np.array(x_core), arrivals, uplink, np.ones((T, 2, 0, 8)), slot_ms=1.0, arrival_slots=6,
        total_slots=T, **options,
    )


def test_root_ready_by_hand():
    # task 0 arrives at 0 with rate 0.4: uplink end 2.5; task 1 at 1 with rate 1: uplink end 2.0.
    # uplink_end: task 1 is ready at boundary 2 (2.0 <= 2: at or after the end), 2..4; task 0 at 3
    #   (first boundary >= 2.5): start max(3, 2.5, free 4) = 4, done 6.
    res = run_root({0: 0.4, 1: 1.0})
    np.testing.assert_array_equal(res.stage_dispatch_slot[:, 0], [3, 2])
    np.testing.assert_allclose(res.stage_data_ready[:, 0], [2.5, 2.0], atol=0)
    np.testing.assert_allclose(res.stage_start[:, 0], [4.0, 2.0], atol=0)
    np.testing.assert_allclose(res.task_finish, [6.0, 4.0], atol=0)
    assert res.task_breakdown[0].tolist() == parts(uplink=2.5, core_dispatch_wait=0.5, core_queue=1.0, core_service=2.0)
    assert res.task_breakdown[1].tolist() == parts(uplink=1.0, core_service=2.0)
    # arrival: task 0 is dispatched at 0 and holds the instance through its upload: 2.5..4.5; task 1
    #   at 1 queues behind it: 4.5..6.5
    res = run_root({0: 0.4, 1: 1.0}, root_ready="arrival")
    np.testing.assert_array_equal(res.stage_dispatch_slot[:, 0], [0, 1])
    np.testing.assert_allclose(res.stage_start[:, 0], [2.5, 4.5], atol=0)
    np.testing.assert_allclose(res.task_finish, [4.5, 6.5], atol=0)
    assert res.task_breakdown[1].tolist() == parts(uplink=1.0, core_queue=2.5, core_service=2.0)
    # an upload that ends at the arrival boundary (infinite rate) is ready there under both
    for root_ready in ("uplink_end", "arrival"):
        res = run_root({0: INF}, root_ready=root_ready)
        assert res.stage_dispatch_slot[0, 0] == 0 and res.task_finish[0] == 2.0


def test_root_ready_light_chain_by_hand():
    # test_reference.test_chain_two_tasks_shared_instance under the default root_ready = uplink_end:
    # uplink 0.5 ms, so task 0 (arrival 0) is ready at boundary 1 and task 1 (arrival 1) at 2. Their
    # data reach node 2 at 3.5 and 4.5 as before, so everything runs as before, but lbrr starts the
    # s0 instance at boundary 1, not 0.
    rates = {(3, 2, 0, 0): 1.0, (4, 2, 0, 0): 4.0, (6, 2, 1, 0): 1.0, (7, 2, 1, 0): 2.0}
    old = run_chain({0: 1, 1: 1}, rates, **ARRIVAL_DISPATCH)
    for order in ("input_arrival", "dispatch"):
        res = run_chain({0: 1, 1: 1}, rates, light_order=order)
        np.testing.assert_array_equal(res.stage_dispatch_slot, [[1, 5, 6], [2, 5, 6]])
        np.testing.assert_array_equal(old.stage_dispatch_slot, [[0, 5, 6], [1, 5, 6]])
        np.testing.assert_allclose(res.stage_finish, [[4.25, 5.5, 7.25], [4.875, 6.0, 7.75]], atol=1e-9)
        np.testing.assert_array_equal(res.stage_finish, old.stage_finish)
        np.testing.assert_array_equal(res.x_light[:8, 2, 0], [0, 1, 1, 1, 1, 0, 0, 0])
        # the s0 instance is deployed one slot later and lives one slot less: 5.5 at slot 1, then 1.5
        # per slot; with the s2 instance (5.5 + 1.5 in slots 6, 7) 17 in all, 1.5 below the old 18.5
        np.testing.assert_allclose(res.cost_light_per_slot[:8], [0, 5.5, 1.5, 1.5, 1.5, 0, 5.5, 1.5], atol=1e-12)
        assert res.cost_light == pytest.approx(17.0, abs=1e-9)
        assert old.cost_light == pytest.approx(18.5, abs=1e-9)
        # task 0's root is dispatched at 1 with its data on node 2 at 3.5: no dispatch wait
        np.testing.assert_array_equal(res.task_breakdown, old.task_breakdown)


def test_per_slot_fading_through_the_simulator():
    # one task at 0; rates 0.25, 0.5, 2 then 1: per_slot uplink end 2.125, block 4.0
    rates = [0.25, 0.5, 2.0] + [1.0] * 7
    res = run_root({0: None}, rates=rates, fading="per_slot")  # root_ready = uplink_end: ready at 3
    assert res.stage_dispatch_slot[0, 0] == 3 and res.task_finish[0] == 5.0
    assert res.task_breakdown[0].tolist() == parts(uplink=2.125, core_dispatch_wait=0.875, core_service=2.0)
    res = run_root({0: None}, rates=rates, fading="per_slot", root_ready="arrival")  # held from 0
    assert res.stage_dispatch_slot[0, 0] == 0 and res.stage_start[0, 0] == 2.125 and res.task_finish[0] == 4.125
    # block, explicit and by default: uplink end 4.0, ready at 4, done 6
    for options in ({"fading": "block"}, {}):
        res = run_root({0: None}, rates=rates, **options)
        assert res.stage_dispatch_slot[0, 0] == 4 and res.task_finish[0] == 6.0
        assert res.task_breakdown[0][0] == 4.0


def test_upload_not_done_by_the_horizon():
    # rate 0.01 MB/ms throughout, T = 6: per_slot carries 0.06 MB of 1 by TΔt: uplink end inf. The
    # root is never ready under uplink_end, and never dispatched under arrival (its data-ready time
    # is inf on every node). block gives uplink end 100 ms: never ready before the horizon under
    # uplink_end; under arrival it is dispatched at 0 and starts (at 100) after the horizon.
    rates = [0.01] * 6
    for root_ready in ("uplink_end", "arrival"):
        res = run_root({0: None}, T=6, rates=rates, fading="per_slot", root_ready=root_ready, x_core=((1,), (1,)))
        assert res.tasks_unfinished == 1 and res.stage_node[0, 0] == -1 and res.stage_dispatch_slot[0, 0] == -1
        assert np.isnan(res.task_finish[0]) and np.all(np.isnan(res.task_breakdown[0]))
    res = run_root({0: None}, T=6, rates=rates, root_ready="uplink_end")
    assert res.tasks_unfinished == 1 and res.stage_node[0, 0] == -1
    res = run_root({0: None}, T=6, rates=rates, root_ready="arrival")
    assert res.tasks_unfinished == 1 and res.stage_node[0, 0] == 0 and res.stage_data_ready[0, 0] == 100.0
    assert np.isnan(res.stage_start[0, 0])  # 100 ms is after the horizon


def test_options_are_validated_at_the_start():
    for field, value in (("root_ready", "upload"), ("root_ready", 1), ("root_ready", None),
                         ("fading", "rayleigh"), ("fading", "Block"), ("fading", True)):
        accepted = {"root_ready": "uplink_end, arrival", "fading": "block, per_slot"}[field]
        name = {"root_ready": r"sim\.root_ready", "fading": r"channel\.fading"}[field]
        with pytest.raises(ConfigError, match=rf"{name} = .* one of: {accepted}"):
            run_root({0: 1.0}, **{field: value})
        # before anything else is checked (here an unknown core_dispatch rule)
        with pytest.raises(ConfigError, match=name):
            run_root({0: 1.0}, **{field: value}, core_dispatch="nope")


# ------------------------------------------------------------------------------------------------
# failures: a root lost and ready again at the boundary, under both root_ready values
def test_root_lost_and_ready_again_by_hand():
    # the only instance is on node 0, down in slots 2 and 3; one task at 0 with uplink rate 2 (0.5 ms).
    # uplink_end: ready at 1, 1..3; arrival: dispatched at 0, 0.5..2.5. Either way it is not done at
    # boundary 2: lost there (ready again at 2), waits while node 0 is down, and runs 4..6.
    node_up = np.ones((10, 2), dtype=bool)
    node_up[2:4, 0] = False
    for root_ready in ("uplink_end", "arrival"):
        res = run_root({0: 2.0}, node_up=node_up, root_ready=root_ready)
        assert res.jobs_lost.tolist() == [0, 0, 1] + [0] * 7
        assert res.stage_dispatch_slot[0, 0] == 4 and res.stage_start[0, 0] == 4.0 and res.task_finish[0] == 6.0
        assert res.task_breakdown[0].tolist() == parts(uplink=0.5, core_dispatch_wait=3.5, core_service=2.0)
    plain = run_root({0: 2.0})
    assert plain.stage_dispatch_slot[0, 0] == 1 and plain.task_finish[0] == 3.0


# ------------------------------------------------------------------------------------------------
# invariants on random runs: under uplink_end no root is dispatched before its task's uplink end
def root_dispatches(sc, res, uplink, fading, slot_ms=1.0):
    """[(dispatch boundary·Δt, uplink end)] of every dispatched root stage; the uplink end is
    recomputed here from ``uplink`` (and checked against the breakdown's uplink component)."""
    out = []
    for j in range(res.tasks_arrived):
        if res.task_dropped[j]:
            continue
        n, u = res.task_type[j], res.task_user[j]
        t_a = int(round(res.task_arrival[j] / slot_ms))
        end = uplink_end_time(float(sc.input_size[n]), uplink[:, u], t_a, slot_ms, fading)
        if not np.isnan(res.task_finish[j]):
            assert res.task_breakdown[j][0] == pytest.approx(end - res.task_arrival[j], abs=1e-12)
        for s in sc.stages_of(n):
            if np.all(sc.stage_parents[n, s] < 0) and res.stage_dispatch_slot[j, s] >= 0:
                out.append((res.stage_dispatch_slot[j, s] * slot_ms, end))
    return out


@pytest.mark.parametrize("fading", ["block", "per_slot"])
@pytest.mark.parametrize("controller", ["lbrr", "proposed"])
def test_no_root_before_its_uplink_end(controller, fading):
    sc, x_core, arrivals, uplink, light_rate, sim = small_case(4, 8.0, arrival_slots=25, drain_slots=15, X=4)
    early = 0
    for root_ready in ("uplink_end", "arrival"):
        res = simulate_reference(sc, x_core, arrivals, uplink, light_rate, controller=controller,
                                 root_ready=root_ready, fading=fading, **sim)
        assert res.tasks_ontime > 0 and res.capacity_violations == 0
        roots = root_dispatches(sc, res, uplink, fading)
        assert len(roots) > 50
        if root_ready == "uplink_end":
            assert all(t_s >= end for t_s, end in roots)
            # ...and it is the first such boundary whenever nothing else held the root back:
            # at least some roots go at exactly ceil(uplink end)
            assert any(t_s == math.ceil(end) for t_s, end in roots)
        else:
            early += sum(t_s < end for t_s, end in roots)
    assert early > 0  # under arrival, roots are dispatched during their upload


@pytest.mark.parametrize("seed", range(8))
def test_no_root_before_its_uplink_end_under_random_failures(seed):
    rule = ("earliest_start", "idle_only")[seed % 2]
    controller = ("lbrr", "proposed", "lbrr", make_controller("avg", instance_ready="max_input"))[seed % 4]
    fading = ("block", "per_slot")[(seed // 2) % 2]
    arrivals, node_up, link_up, res = random_run(
        300 + seed, rule, controller, failures="random", buffer_capacity=30, fading=fading
    )
    assert not node_up.all()
    finished = check_invariants(MERGE_SC, arrivals, res, node_up, link_up)
    assert finished.sum() > 0
    # random_run's uplink: uniform(0.5, 3) for user 0, inf for user 1, drawn first after the arrivals
    rng = np.random.default_rng(300 + seed)
    np.testing.assert_array_equal(rng.poisson(3.0 * MERGE_SC.arrival_rate, size=(25, 2, 2)), arrivals[:25])
    uplink = rng.uniform(0.5, 3.0, size=(40, 2))
    uplink[:, 1] = np.inf
    roots = root_dispatches(MERGE_SC, res, uplink, fading)
    assert len(roots) > 20 and all(t_s >= end for t_s, end in roots)
