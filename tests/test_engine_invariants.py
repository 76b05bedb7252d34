"""Invariants of the JAX engine that need no oracle: conservation of tasks, Eq. 8, the cost formulas,
reproducibility, common random numbers across controllers, one trace per compiled program, and a
tiny scenario computed by hand (docs/SEMANTICS.md)."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edgefm.interfaces import AbstractController, AbstractWorkloadGenerator
from edgefm.scenario import Scenario
from edgefm.sim import TRACE_COUNTER
from edgefm.sim.state import BREAKDOWN_COMPONENTS
from edgefm.sim.types import Action, ranks_in_list_order
from edgefm_baselines import LBRRController
from edgefm_channels import OffChannel


class MostRoomController(AbstractController):
    """Keeps every light instance slot of every light service alive on the node with the most room
    for light instances, and fills the instances of a service one after the other in list order."""

    name = "most_room_test"

    def act(self, state, obs, ctx, params, key):
        V, Ml, X = ctx.V, ctx.Ml, ctx.X
        need = ctx.light_resource.sum(0)  # [K] one instance of every light service
        room = ctx.capacity - obs.core_usage  # [V,K]
        sets = jnp.min(jnp.where(need > 0, room / jnp.where(need > 0, need, 1.0), jnp.inf), axis=1)
        v = jnp.argmax(sets)
        alive = jnp.zeros((V, Ml, X), bool).at[v].set(True)
        free = jnp.maximum(params.y_max - obs.occupancy[v], 0)  # [Ml,X]
        cum = jnp.cumsum(free, axis=1)
        onehot = (obs.light[:, None] == jnp.arange(Ml)[None, :]) & obs.valid[:, None]
        j = (jnp.cumsum(onehot, axis=0) - onehot)[jnp.arange(obs.light.shape[0]), obs.light]  # rank in service
        k = jnp.sum(cum[obs.light] <= j[:, None], axis=1)  # first slot whose cumulative room exceeds j
        ok = obs.valid & (k < X)
        assign = jnp.where(ok, (v * Ml + obs.light) * X + jnp.minimum(k, X - 1), -1)
        action = Action(
            alive=alive,
            assign=assign,
            rank=ranks_in_list_order(assign),
            parallelism=jnp.full((V, Ml), params.y_max),
        )
        return action, state


MOST_ROOM = MostRoomController()

CASES = {
    "small-earliest_start": dict(name="small", rule="earliest_start"),
    "small-idle_only": dict(name="small", rule="idle_only"),
    "small-most_room": dict(name="small", rule="earliest_start", controller=MOST_ROOM),
    # the paper scenario at 1x, at the horizon and seed count of the differential tests (the same
    # compiled program when both files run in one process)
    "paper-load1": dict(name="paper", rule="earliest_start", load=1.0, realisations=8),
}


@pytest.fixture(scope="module", params=list(CASES), ids=list(CASES))
def case(request, engine):
    kw = dict(CASES[request.param])
    return engine(kw.pop("name"), **kw)


def per_realisation(case):
    """Yield (r, outputs of realisation r of instance 0)."""
    for r in range(case.R):
        yield r, {k: v[0, r] for k, v in case.out.items()}


# ------------------------------------------------------------------------------------------------
def test_conservation_of_tasks(case):
    sc, dt = case.scenarios[0], case.sim.slot_ms
    T = case.sizes.T
    np.testing.assert_array_equal(case.out["list_overflow"], 0)  # every task is recorded
    total_arrived = 0
    for r, o in per_realisation(case):
        counts = [int(o[k]) for k in ("tasks_ontime", "tasks_late", "tasks_unfinished", "tasks_dropped")]
        assert min(counts) >= 0 and int(o["tasks_arrived"]) == sum(counts), f"r={r}: {counts}"
        # recount from the per-task records
        n = int(o["num_tasks"])
        assert n == int(o["tasks_arrived"]) == int(o["arrivals"].sum()) and n <= case.sizes.J
        ty, arr, fin, drop = o["task_type"][:n], o["task_arrival"][:n], o["task_finish"][:n], o["task_dropped"][:n]
        done = ~np.isnan(fin)
        assert not np.any(done & drop), f"r={r}: a dropped task finished"
        assert np.all(fin[done] >= arr[done]) and np.all(fin[done] <= T * dt + 1e-9)
        ontime = done & (fin - arr <= sc.deadline[ty])
        late = done & ~ontime
        unfinished = ~done & ~drop
        assert counts == [int(ontime.sum()), int(late.sum()), int(unfinished.sum()), int(drop.sum())], f"r={r}"
        # per type
        by_type = np.bincount(ty, minlength=sc.num_types)
        np.testing.assert_array_equal(o["tasks_arrived_by_type"], by_type)
        np.testing.assert_array_equal(o["tasks_arrived_by_type"], o["arrivals"].sum((0, 1)))
        np.testing.assert_array_equal(o["tasks_ontime_by_type"], np.bincount(ty[ontime], minlength=sc.num_types))
        for m, name in ((late, "late"), (unfinished, "unfinished"), (drop, "dropped")):
            assert np.bincount(ty[m], minlength=sc.num_types).sum() == m.sum(), name
        parts = sum(np.bincount(ty[m], minlength=sc.num_types) for m in (ontime, late, unfinished, drop))
        np.testing.assert_array_equal(parts, by_type)
        total_arrived += n
    assert total_arrived > 0


def test_latency_breakdown_sums_to_the_latencies(case):
    """SEMANTICS §11: the critical-path parts of every finished task sum to its latency, so the
    per-outcome means times the counts give the summed latencies of the task records."""
    sc = case.scenarios[0]
    checked = 0
    for r, o in per_realisation(case):
        n = int(o["num_tasks"])
        ty, arr, fin = o["task_type"][:n], o["task_arrival"][:n], o["task_finish"][:n]
        done = ~np.isnan(fin)
        latency = fin - arr
        ontime = done & (latency <= sc.deadline[ty])
        late = done & ~ontime
        for row, mask in ((0, ontime), (1, late)):
            parts = o["latency_breakdown"][row]
            if not mask.any():
                assert np.all(np.isnan(parts))
                continue
            assert np.all(parts >= -1e-9), f"r={r}: {parts}"
            assert parts.sum() * mask.sum() == pytest.approx(latency[mask].sum(), rel=1e-9), f"r={r} row={row}"
            checked += 1
        np.testing.assert_array_equal(o["light_bounded"], 0)  # lbrr / the test controller state no bound
        q = np.quantile(latency[done], case.sizes.quantiles) if done.any() else np.nan
        np.testing.assert_allclose(o["latency_quantile_all"], q, rtol=1e-12)
    assert checked > 0


@pytest.mark.slow
def test_the_horizon_in_pieces_gives_the_same_results(engine):
    """`simulate(chunk_slots=...)` (the progress-bar path) carries the state between pieces (the
    engine's and lbrr's round-robin pointers): every output is identical to one piece."""
    from edgefm.sim.rollout import chunk_length, simulate

    case = engine("small", rule="earliest_start")
    seen = []
    out = simulate(case.keys, case.arrays, case.params, case.sizes, case.channel, case.workload, case.controller,
                   chunk_slots=7, progress=lambda done, total: seen.append((done, total)))
    chunk = chunk_length(case.sizes.T, 7)
    assert 1 < chunk <= 7 and case.sizes.T % chunk == 0
    assert seen == [(t, case.sizes.T) for t in range(chunk, case.sizes.T + 1, chunk)]
    assert out.keys() == case.out.keys()
    for name in case.out:
        np.testing.assert_array_equal(np.asarray(out[name]), case.out[name], err_msg=name)


def test_eq8_capacity_in_every_slot(case):
    sc, x_core = case.scenarios[0], case.x_core[0]
    light = sc.light_services
    np.testing.assert_array_equal(case.out["capacity_violations"], 0)
    x_light = case.out["x_light"][0]  # [R,T,V,Ml]
    assert np.all(x_light >= 0) and np.all(x_light <= case.sizes.X)
    usage = (x_core @ sc.resource)[None, None] + np.einsum("rtvl,lk->rtvk", x_light, sc.resource[light])
    assert np.all(usage <= sc.capacity[None, None] + 1e-9)
    assert x_light.sum() > 0  # light instances were used


def test_costs_recomputed_from_the_instances(case):
    sc, x_core, T = case.scenarios[0], case.x_core[0], case.sizes.T
    light = sc.light_services
    core_cost = float(np.sum(x_core * (sc.cost_deploy + T * sc.cost_maintain)[None, :]))
    x = case.out["x_light"][0].astype(float)  # [R,T,V,Ml]
    prev = np.concatenate([np.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
    per_slot = (
        sc.cost_deploy[light] * np.maximum(0.0, x - prev) + (sc.cost_maintain[light] + sc.cost_payload[light]) * x
    ).sum((2, 3))  # [R,T]
    np.testing.assert_allclose(case.out["cost_light_slot"][0], per_slot, rtol=1e-12, atol=1e-9)
    np.testing.assert_allclose(case.out["cost_light"][0], per_slot.sum(1), rtol=1e-12)
    np.testing.assert_allclose(case.out["cost_core"][0], core_cost, rtol=1e-12)
    np.testing.assert_allclose(case.out["cost_total"][0], core_cost + per_slot.sum(1), rtol=1e-12)


# ------------------------------------------------------------------------------------------------
def assert_same_outputs(a: dict, b: dict):
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)  # nan == nan for array_equal on floats


def test_same_seed_gives_identical_outputs(engine):
    base = engine("small")
    again = engine("small", fresh=True)
    assert again is not base
    assert_same_outputs(base.out, again.out)


def test_different_seed_gives_different_arrivals(engine):
    base = engine("small")
    other = engine("small", seed=1, fresh=True)
    assert not np.array_equal(base.out["arrivals"], other.out["arrivals"])
    assert not np.array_equal(base.out["uplink_rate"], other.out["uplink_rate"])
    # and realisations of one run are distinct draws too
    arr = base.out["arrivals"][0]
    assert len({a.tobytes() for a in arr}) == base.R


def test_two_controllers_see_identical_exogenous_samples(engine):
    lbrr = engine("small")
    other = engine("small", controller=MOST_ROOM)
    assert lbrr.sizes == other.sizes
    np.testing.assert_array_equal(other.out["arrivals"], lbrr.out["arrivals"])
    np.testing.assert_array_equal(other.out["uplink_rate"], lbrr.out["uplink_rate"])
    # and they are the samples `exogenous_samples` returns (floats: up to the last bits, as the
    # transforms of the draws are compiled in another program)
    arrivals, uplink, _ = lbrr.exogenous()
    np.testing.assert_array_equal(lbrr.out["arrivals"][0], arrivals)
    np.testing.assert_allclose(lbrr.out["uplink_rate"][0], uplink, rtol=1e-13, atol=0)
    # the controller's decisions are its own: every realisation costs differently
    np.testing.assert_array_equal(other.out["invalid_actions"], 0)
    assert np.all(lbrr.out["cost_light"] != other.out["cost_light"])
    X, Ml = other.sizes.X, other.sizes.Ml
    assert np.all(other.out["x_light"][0].sum((2, 3)) == X * Ml)  # every slot of one node, always


def test_the_step_is_traced_once_per_compiled_program(engine, engine_tools):
    base = engine("small")
    # every run so far: a new program costs exactly one trace of the step, a cached one none
    assert any(c.new_program for c in engine_tools.log)
    for c in engine_tools.log:
        assert c.traces == (1 if c.new_program else 0), (c.sizes, c.controller, c.traces, c.new_program)
    # other traced parameters within the same size class: a different load and seed
    programs, traces = TRACE_COUNTER["program"], TRACE_COUNTER["step"]
    other = engine_tools.run_case(base.scenarios, base.x_core, base.sim, load=0.6, seed=7, realisations=base.R,
                     channel=base.channel, workload=base.workload, controller=base.controller)
    assert other.sizes == base.sizes
    assert TRACE_COUNTER["step"] == traces and TRACE_COUNTER["program"] == programs
    assert other.traces == 0 and not other.new_program
    assert other.out["tasks_arrived"].sum() < 0.8 * base.out["tasks_arrived"].sum()  # the load did change


# ------------------------------------------------------------------------------------------------
# A tiny scenario by hand: nodes 0 (gateway, no room), 1 (the one core instance, full), 2 (room for
# two light instances); links 0-1 at 1 MB/ms and 1-2 at 0.5 MB/ms, no propagation delay.
# One task type: light s0 -> core s1 -> light s2, A = 1 MB, D = 12 ms; one task at t = 0 from user 0.
A_IN, D = 1.0, 12.0
WORK = [3.0, 2.0, 1.0]  # MB
OUT = [0.25, 0.5, 0.1]  # MB
CORE_RATE = 4.0
LIGHT_COST = (4.0, 1.0, 0.5)  # c_dp, c_mt, c_pl
CORE_COST = (20.0, 4.0)
FWD_0_TO_2 = A_IN / 1.0 + A_IN / 0.5  # 3 ms: store-and-forward over 0-1-2
XFER_S0_2_TO_1 = OUT[0] / 0.5  # 0.5 ms
XFER_S1_1_TO_2 = OUT[1] / 0.5  # 1 ms
TINY_R, TINY_ARRIVAL_MS, TINY_DRAIN_MS = 8, 5.0, 35.0


def tiny_scenario() -> Scenario:
    light = dict(dp=LIGHT_COST[0], mt=LIGHT_COST[1], pl=LIGHT_COST[2])
    return Scenario(
        name="tiny",
        node_names=("n0", "n1", "n2"),
        node_is_server=np.array([False, True, True]),
        capacity=np.array([[0.5, 1, 1, 1], [4, 1, 1, 1], [2, 1, 1, 1]], float),
        link_ends=np.array([[0, 1], [1, 2]]),
        link_bandwidth=np.array([1.0, 0.5]),
        link_length=np.array([0.0, 0.0]),
        propagation_speed=math.inf,
        service_names=("s0", "s1", "s2"),
        service_is_core=np.array([False, True, False]),
        resource=np.array([[1, 0, 0, 0], [4, 0, 0, 0], [1, 0, 0, 0]], float),
        work=np.array(WORK),
        output_size=np.array(OUT),
        core_rate=np.array([np.nan, CORE_RATE, np.nan]),
        light_shape=np.array([1.0, np.nan, 2.0]),
        light_scale=np.array([1.0, np.nan, 0.5]),
        cost_deploy=np.array([light["dp"], CORE_COST[0], light["dp"]]),
        cost_maintain=np.array([light["mt"], CORE_COST[1], light["mt"]]),
        cost_payload=np.array([light["pl"], 0.0, light["pl"]]),
        type_names=("chain",),
        input_size=np.array([A_IN]),
        deadline=np.array([D]),
        stage_service=np.array([[0, 1, 2]]),
        stage_parents=np.array([[[-1], [0], [1]]]),
        stage_child=np.array([[1, 2, -1]]),
        sink_stage=np.array([2]),
        user_gateway=np.array([0]),
        arrival_rate=np.array([[0.1]]),
        nakagami_m=np.array([2.0]),
        nakagami_omega=np.array([1.0]),
    )


TINY_X_CORE = np.array([[0, 0, 0], [0, 1, 0], [0, 0, 0]])


class OneTaskWorkload(AbstractWorkloadGenerator):
    """Exactly one task of type 0 from user 0 in slot 0, nothing else."""

    name = "one_task_test"

    def init(self, key, rate):
        return jnp.zeros((), jnp.int32)  # slot index

    def sample(self, state, key, rate, slot_ms):
        counts = jnp.zeros(rate.shape, jnp.int32).at[0, 0].set(jnp.where(state == 0, 1, 0))
        return counts, state + 1


def light_job(rates, first_slot, data_ready, work, T, dt=1.0):
    """SEMANTICS §2.7 for the only job of an instance: (finish or inf, slots in which it ran)."""
    remaining, ran = work, []
    for t in range(first_slot, T):
        start = max(t * dt, data_ready)
        if start >= (t + 1) * dt:
            continue
        ran.append(t)
        if start + remaining / rates[t] <= (t + 1) * dt:
            return start + remaining / rates[t], ran
        remaining -= rates[t] * ((t + 1) * dt - start)
    return math.inf, ran


@pytest.fixture(scope="module")
def tiny(engine_tools):
    sim = engine_tools.sim_settings(rule="earliest_start", arrival_ms=TINY_ARRIVAL_MS, drain_ms=TINY_DRAIN_MS)
    return engine_tools.run_case([tiny_scenario()], [TINY_X_CORE], sim, load=1.0, seed=3, realisations=TINY_R,
                    channel=OffChannel(), workload=OneTaskWorkload(), controller=LBRRController())


def test_tiny_scenario_by_hand(tiny):
    T, dt = tiny.sizes.T, 1.0
    arrivals, uplink, light_rate = tiny.exogenous()  # light_rate [R,T,V=3,Ml=2,X]
    assert arrivals.sum((1, 2, 3)).tolist() == [1] * TINY_R and np.all(arrivals[:, 0, 0, 0] == 1)
    assert np.all(np.isinf(uplink))
    spans = finished = 0
    for r in range(TINY_R):
        o = {k: v[0, r] for k, v in tiny.out.items()}
        rate0, rate2 = light_rate[r, :, 2, 0, 0], light_rate[r, :, 2, 1, 0]  # node 2, slot k = 0
        # s0: admitted at boundary 0 on node 2 (the only node with room); input there at 0 + 0 + fwd
        f0, ran0 = light_job(rate0, 0, 0.0 + FWD_0_TO_2, WORK[0], T)
        spans += len(ran0) > 1
        expected_x = np.zeros((T, 3, 2), int)
        expected_x[: min(T, math.ceil(f0)), 2, 0] = 1  # alive while its job is not done at a boundary
        f2 = math.inf
        t1 = math.ceil(f0 / dt)  # s1 ready at the first boundary at or after f0
        if t1 < T:
            f1 = max(t1 * dt, f0 + XFER_S0_2_TO_1) + WORK[1] / CORE_RATE  # one idle core instance
            t2 = math.ceil(f1 / dt)
            if t2 < T:
                f2, _ = light_job(rate2, t2, f1 + XFER_S1_1_TO_2, WORK[2], T)
                expected_x[t2: min(T, math.ceil(f2)), 2, 1] = 1
        if f2 <= T * dt:
            finished += 1
            assert o["task_finish"][0] == pytest.approx(f2, abs=1e-9), f"r={r}"
            ontime = f2 - 0.0 <= D
            assert (int(o["tasks_ontime"]), int(o["tasks_late"])) == (int(ontime), int(not ontime))
            # SEMANTICS §11, by hand: no uplink (channel off); each stage starts as soon as it is
            # at its instance with its input (no queue); the dispatch waits are boundary alignment
            r1, r2 = f0 + XFER_S0_2_TO_1, f1 + XFER_S1_1_TO_2
            s1, s2 = max(t1 * dt, r1), max(t2 * dt, r2)
            expected = dict(
                uplink=0.0, network=FWD_0_TO_2 + XFER_S0_2_TO_1 + XFER_S1_1_TO_2,
                core_dispatch_wait=s1 - r1, core_queue=0.0, core_service=WORK[1] / CORE_RATE,
                light_dispatch_wait=s2 - r2, light_queue=0.0, light_service=(f0 - FWD_0_TO_2) + (f2 - s2),
            )
            row = o["latency_breakdown"][0 if ontime else 1]
            np.testing.assert_allclose(row, [expected[c] for c in BREAKDOWN_COMPONENTS], atol=1e-9, err_msg=f"r={r}")
            assert np.all(np.isnan(o["latency_breakdown"][1 if ontime else 0]))
        else:
            assert np.isnan(o["task_finish"][0]) and int(o["tasks_unfinished"]) == 1
        assert int(o["num_tasks"]) == int(o["tasks_arrived"]) == 1 and int(o["tasks_dropped"]) == 0
        np.testing.assert_array_equal(o["x_light"], expected_x, err_msg=f"r={r}")
        prev = np.concatenate([np.zeros((1, 3, 2), int), expected_x[:-1]])
        c_dp, c_mt, c_pl = LIGHT_COST
        slot_cost = (c_dp * np.maximum(0, expected_x - prev) + (c_mt + c_pl) * expected_x).sum((1, 2))
        np.testing.assert_allclose(o["cost_light_slot"], slot_cost, atol=1e-9)
        assert float(o["cost_light"]) == pytest.approx(slot_cost.sum(), abs=1e-9)
        assert float(o["cost_core"]) == pytest.approx(CORE_COST[0] + T * CORE_COST[1], abs=1e-9)
        assert float(o["cost_total"]) == pytest.approx(slot_cost.sum() + CORE_COST[0] + T * CORE_COST[1], abs=1e-9)
        assert int(o["capacity_violations"]) == int(o["invalid_actions"]) == int(o["list_overflow"]) == 0
    assert spans > 0 and finished > 0  # the multi-slot light path and completions are exercised


def test_realisation_layout():
    """How R realisations are split over devices and grouped: the most devices that divide R, then the
    largest group that divides the per-device count and is at most `batch` (0: all at once)."""
    from edgefm.sim.rollout import realisation_layout

    assert realisation_layout(20, 1, 2) == (1, 2)
    assert realisation_layout(20, 0, 2) == (10, 2)
    assert realisation_layout(12, 5, 2) == (3, 2)  # 6 per device: groups of 3
    assert realisation_layout(12, 6, 4) == (3, 4)  # 3 per device: the batch is capped at what a device has
    assert realisation_layout(7, 2, 2) == (1, 1)  # 7 does not split over 2 devices
    assert realisation_layout(9, 4, 8) == (3, 3)  # 3 devices of 8 divide 9; 3 each, batched
    assert realisation_layout(1, None, 2) == (1, 1)


def assert_same_results(out, want):
    """Every output of `want`: integers and flags identical, floats within 1e-12 (relative)."""
    assert out.keys() == want.keys()
    for name, w in want.items():
        got = np.asarray(out[name])
        if np.issubdtype(w.dtype, np.floating):
            np.testing.assert_allclose(got, w, rtol=1e-12, atol=1e-12, err_msg=name)
        else:
            np.testing.assert_array_equal(got, w, err_msg=name)


@pytest.mark.slow
def test_the_realisation_layout_does_not_change_the_results(engine):
    """The same realisations run all vmapped on one device (the accelerator layout) and in vmapped
    groups of 5 over two devices give the results of the default CPU layout (one realisation at a time,
    on every device): counts and decisions exactly, floats to a few ulps (XLA's vector and scalar
    versions of log2 round differently, and reductions such as means add in another order)."""
    from edgefm.sim.rollout import realisation_layout, simulate

    case = engine("small", rule="earliest_start")
    assert case.R == 20
    for batch, devices in ((0, 1), (5, 2)):
        group, shards = realisation_layout(case.R, batch, devices)
        assert group > 1 and shards == min(devices, len(jax.devices()))
        out = simulate(case.keys, case.arrays, case.params, case.sizes, case.channel, case.workload, case.controller,
                       batch=batch, devices=devices)
        assert_same_results(out, case.out)


def test_compact_lists_match_the_whole_lists(engine):
    """Without a batch axis the engine (`layout.Sequential`) takes the lists a chunk at a time:
    completing tasks (`completion`), queued core stages (`dispatch`), light assignments (`apply`),
    finished or newly started light jobs (`execute`): the first chunk directly, the others in a loop,
    or a `cond` to the whole list; newly ready stages are enqueued with `enqueue`-entry lists when
    there are at most that many (a `cond` to `SimSizes.Ln`). With every chunk at 1 the loops run and
    the `cond`s take both branches: every realisation has slots with two or more arrivals and
    boundaries where two or more tasks complete (asserted below), lbrr assigns more than one stage in
    some slots (0 to 12 per slot, more than 2 in 228 of the 6 000, counted once with
    `edgefm.testing.recording`), no stage is ready at slot 0, and a `merge` task's two roots become
    ready together. The results equal the default run's."""
    from edgefm.sim.layout import Sequential
    from edgefm.sim.rollout import realisation_layout, simulate

    case = engine("small", rule="earliest_start")
    assert realisation_layout(case.R)[0] == 1  # the default run went through the sequential layout
    merge = case.scenarios[0].type_names.index("merge")
    assert (case.out["arrivals"][0, ..., merge].sum((1, 2)) > 0).all()  # [R]: merge tasks everywhere
    assert (case.out["arrivals"][0].sum((2, 3)).max(1) >= 2).all()  # [R]: some slot with 2+ arrivals
    boundary = np.ceil(case.out["task_finish"][0] / float(case.sim.slot_ms))  # [R,J]: when each task left
    assert all(np.unique(b[np.isfinite(b)], return_counts=True)[1].max() >= 2 for b in boundary)
    ones = Sequential(completion=1, enqueue=1, dispatch=1, apply=1, execute=1)
    out = simulate(case.keys, case.arrays, case.params, case.sizes, case.channel, case.workload, case.controller,
                   lists=ones)
    assert_same_results(out, case.out)


def test_a_chunk_size_below_one_is_refused():
    from edgefm.sim.layout import Batched, Sequential

    for cls in (Sequential, Batched):
        with pytest.raises(ValueError, match=rf"{cls.__name__}.dispatch=0: a chunk size must be >= 1"):
            cls(dispatch=0)
    assert Sequential().chunk(64, 10) == 10 and Batched().chunk(64, 1285) == 1285


def test_sizes_past_the_states_integer_widths_are_refused():
    """The state keeps references as int32 and parent counts as int8: sizes they cannot hold are
    refused when the sizes are made, before any trace."""
    from dataclasses import replace

    from edgefm.sim.types import SimSizes

    ok = SimSizes(V=10, K=4, M=15, Ml=9, N=4, S=8, P=2, U=7, B=2048, X=8, Q=20, Ic=64, Lc=512, Lw=2048,
                  Ln=512, A=74, J=5656, T=300, T_arr=200, core_dispatch="earliest_start")
    replace(ok, B=2**31 // 8 - 1)  # B*S just below the limit
    with pytest.raises(ValueError, match=r"engine size B\*S=2147483648: .*< 2\*\*31 - 1"):
        replace(ok, B=2**31 // 8)
    with pytest.raises(ValueError, match=r"engine size J\*S=2147483648"):  # task id x S + stage: a sort key
        replace(ok, J=2**31 // 8)
    replace(ok, P=127)
    with pytest.raises(ValueError, match=r"engine size P=128 \(parents of one stage\): at most 127"):
        replace(ok, P=128)


def test_cpu_device_count_from_the_environment():
    """`import edgefm` gives JAX one CPU device per usable core, or $EDGEFM_CPU_DEVICES of them; a bad
    value ends the import with a message naming the variable and what it accepts."""
    import os
    import subprocess
    import sys

    probe = "import edgefm, jax; print(len(jax.devices('cpu')))"
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEFM_CPU_DEVICES", "XLA_FLAGS")}
    run = lambda extra: subprocess.run([sys.executable, "-c", probe], env={**env, **extra},  # noqa: E731
                                       capture_output=True, text=True)
    assert run({}).stdout.strip() == str(len(os.sched_getaffinity(0)))
    assert run({"EDGEFM_CPU_DEVICES": "3"}).stdout.strip() == "3"
    bad = run({"EDGEFM_CPU_DEVICES": "zero"})
    assert bad.returncode != 0 and "EDGEFM_CPU_DEVICES='zero'" in bad.stderr and "positive integer" in bad.stderr


@pytest.mark.parametrize("L,groups", [(1, 1), (7, 3), (5140, 9), (300, 20), (70000, 5)])
def test_rank_in_group_counts_earlier_valid_entries_of_the_group(L, groups):
    """`rank_in_group` (bit-packed counts) equals the count by brute force: for each entry, the
    earlier valid entries of its group; several fields per int64 word, several words, counts up
    to L (all entries in one group when groups = 1)."""
    from edgefm.sim.types import rank_in_group

    rng = np.random.default_rng(L + groups)
    group = rng.integers(0, groups, L)
    valid = rng.random(L) < 0.8
    expect = np.array([np.sum(valid[:i] & (group[:i] == group[i])) for i in range(L)]) if L < 6000 else None
    if expect is None:  # the same count with a cumulative sum per group
        onehot = (group[:, None] == np.arange(groups)[None, :]) & valid[:, None]
        expect = (np.cumsum(onehot, 0) - onehot)[np.arange(L), group]
    got = np.asarray(rank_in_group(jnp.asarray(group), jnp.asarray(valid), groups))
    np.testing.assert_array_equal(got, expect)


@pytest.mark.parametrize("load,buffer_factor", [pytest.param(2.0, 2.0, marks=pytest.mark.slow), (6.0, 0.05)])
def test_adaptive_capacities_redo_an_overflowing_run_until_it_equals_a_run_sized_for_the_worst_case(
        load, buffer_factor, engine_tools, monkeypatch):
    """`sim.capacities=adaptive` started with half the task rows it needs: each run that overflowed
    is redone with twice the rows, and the run kept equals, value by value, the one that held the
    whole task buffer from the start (`worst_case`), tasks dropped by a full buffer included
    (6x into a buffer of buffer_factor 0.05)."""
    from edgefm import runner
    from conftest import CHANNEL, LBRR, PLACEMENT, WORKLOAD, scenario_instances, with_load

    scs, x_core = scenario_instances("small")
    components = runner.Components(placement=PLACEMENT, controller=LBRR, channel=CHANNEL,
                                   workload=with_load(WORKLOAD, load))

    def run(capacities):
        sim = engine_tools.sim_settings(rule="earliest_start", arrival_ms=100.0, drain_ms=60.0, realisations=3,
                                        buffer_factor=buffer_factor, capacities=capacities)
        return runner.run_engine(scs, components, sim, seed=5, x_core=x_core, placement_info=[{}])

    full = run("worst_case")
    capacity, peak = full.sizes.task_capacity, int(full.outputs["buffer_peak"].max())
    start = -(-peak // 2)  # half the rows needed: one run short of rows
    monkeypatch.setattr(runner, "initial_rows", lambda *a, **k: start)
    grown = run("adaptive")
    assert full.rows_tried == (capacity,) and int(full.outputs["list_overflow"].sum()) == 0
    rows = grown.rows_tried
    assert len(rows) >= 2 and rows[0] == start and all(b == min(2 * a, capacity) for a, b in zip(rows, rows[1:]))
    assert rows[-2] < peak <= rows[-1]  # each run before the last one was short of rows, the last one is not
    assert grown.sizes.B == rows[-1] and int(grown.outputs["list_overflow"].sum()) == 0
    if buffer_factor < 1:
        assert int(full.outputs["tasks_dropped"].sum()) > 0 and rows[-1] == capacity
    else:
        assert int(full.outputs["tasks_dropped"].sum()) == 0 and rows[-1] < capacity
    assert full.outputs.keys() == grown.outputs.keys()
    for name, value in full.outputs.items():
        np.testing.assert_allclose(grown.outputs[name], value, rtol=1e-12, atol=0, err_msg=name)
