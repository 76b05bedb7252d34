"""The JAX controllers `proposed` / `propavg` against the plain-Python reference Algorithm 1.

Two independent implementations of docs/SEMANTICS.md §9 (the JAX one in `plugins/edgefm_lyapunov`,
the reference in `edgefm/reference/algorithm1.py`, written without reading each other):

1. decision by decision: the engine runs the paper scenario with `proposed` wrapped in a
   `RecordingController`; at every recorded boundary the reference Algorithm 1 is given the same
   observation and must take the same decision (instances alive, stage assignments, parallelism)
   and compute the same objective;
2. run by run: on the small scenario the engine and the reference simulator, both driven by their
   own Algorithm 1, must give the same per-task completion times.

Both are also run with the option `instance_ready: 1` (§9: each instance's predicted drain time
enters the score). Decision by decision the reference gets the engine's recorded drain times
(`Observation.drain`; the recording has no FIFO contents); run by run the reference computes the
drain from its own FIFOs, so that case checks the drain itself against the engine's.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CHANNEL, WORKLOAD, scenario_instances
from edgefm_lyapunov import LyapunovConfig, PropAvgController, ProposedController

from edgefm.reference import (
    Algorithm1Params,
    LightObservation,
    WaitingStage,
    algorithm1,
    make_controller,
    simulate_reference,
)
from edgefm.reference.algorithm1 import virtual_queue
from edgefm.reference.simulator import BREAKDOWN_COMPONENTS as REF_COMPONENTS
from edgefm.sim.step import BREAKDOWN_COMPONENTS
from edgefm.testing.recording import RecordingController, recorded

PROPOSED = ProposedController()
PROPAVG = PropAvgController()
# the option is traced: the same compiled program as PROPOSED
PROPOSED_READY = ProposedController(LyapunovConfig(instance_ready=1.0))
RECORDING = RecordingController(PROPOSED)
RECORDING_READY = RecordingController(PROPOSED_READY)
OBJECTIVE_RTOL = 1e-9
FINISH_TOL_MS = 1e-4

# the paper scenario, 100 ms of arrivals + 20 ms of drain, at two loads: 240 boundaries
DECISION_CASES = [0.5, 1.0]
DECISION_HORIZON = dict(arrival_ms=100.0, drain_ms=20.0)
READY_LOAD = 1.0  # instance_ready = 1 is compared at this load only (one more run, no new program)


@pytest.fixture(scope="module")
def decision_runs(engine_tools):
    scs, x_core = scenario_instances("paper")
    sim = engine_tools.sim_settings(rule="earliest_start", **DECISION_HORIZON)
    runs = {
        load: engine_tools.run_case(scs, x_core, sim, load=load, seed=3, realisations=1, channel=CHANNEL,
                                    workload=WORKLOAD, controller=RECORDING)
        for load in DECISION_CASES
    }
    runs["ready"] = engine_tools.run_case(scs, x_core, sim, load=READY_LOAD, seed=3, realisations=1, channel=CHANNEL,
                                          workload=WORKLOAD, controller=RECORDING_READY)
    assert not runs["ready"].new_program  # the traced option reuses the program just compiled
    return runs


def reference_observation(case, obs: dict, t: int) -> LightObservation:
    """The engine's observation at boundary t (instance 0, realisation 0) as the reference sees it."""
    sc, x_core, sizes = case.scenarios[0], case.x_core[0], case.sizes
    light = np.asarray(sc.light_services)
    at = {name: np.asarray(value[0, 0, t]) for name, value in obs.items()}
    waiting = [
        WaitingStage(
            task=int(at["task_id"][i]), stage=-1, service=int(light[at["light"][i]]),
            task_type=int(at["task_type"][i]), ready_slot=int(at["ready_slot"][i]),
            arrival=float(at["arrival"][i]), deadline=float(at["deadline"][i]),
            data_ready=at["data_ready"][i].astype(float),
        )
        for i in np.flatnonzero(at["valid"])
    ]

    def full(per_light):  # [V,Ml,X] -> [V,M,X]
        out = np.zeros((sizes.V, sc.num_services, sizes.X), per_light.dtype)
        out[:, light, :] = per_light
        return out

    return LightObservation(
        t=t, slot_ms=case.sim.slot_ms, scenario=sc, x_core=np.asarray(x_core), waiting=waiting,
        occupancy=full(at["occupancy"]), alive_prev=full(at["exists"]), y_max=case.sim.y_max,
        max_light_instances=sizes.X,
        drain=full(at["drain"]),  # the engine's drain times (no FIFO contents are recorded)
    )


def compare_decisions(case, kind="ec", instance_ready=0):
    """Yields (t, number of waiting stages, greedy steps, assignment) per boundary after asserting equality."""
    obs, act = recorded(case.out)
    sc, sizes = case.scenarios[0], case.sizes
    light = np.asarray(sc.light_services)
    Ml, X = len(light), sizes.X
    params = Algorithm1Params(kind=kind, instance_ready=instance_ready)
    for t in range(sizes.T):
        ref_obs = reference_observation(case, obs, t)
        H = {w.task: virtual_queue(w.arrival, w.deadline, t, case.sim.slot_ms, params.H_min) for w in ref_obs.waiting}
        decision, info = algorithm1(ref_obs, params, H)
        where = f"load {case.load}, boundary {t}"

        alive = np.asarray(act["alive"][0, 0, t])  # [V,Ml,X]
        np.testing.assert_array_equal(alive.sum(-1), decision.alive[:, light, :].sum(-1), err_msg=where)
        np.testing.assert_array_equal(alive, decision.alive[:, light, :], err_msg=where)

        valid = np.flatnonzero(np.asarray(obs["valid"][0, 0, t]))
        assign = np.asarray(act["assign"][0, 0, t])[valid]
        mine = sorted(
            (i, int(a // X // Ml), int(a % X)) for i, a in enumerate(assign) if a >= 0
        )
        assert mine == sorted(decision.assignment), where
        for i, a in enumerate(assign):  # the service of the instance is the stage's service
            if a >= 0:
                assert (a // X) % Ml == int(obs["light"][0, 0, t][valid[i]]), where

        y = np.asarray(act["parallelism"][0, 0, t])
        np.testing.assert_array_equal(np.where(alive.any(-1), y, 0), decision.parallelism[:, light], err_msg=where)

        objective = float(case.out["controller_objective"][0, 0, t])
        assert objective == pytest.approx(info["objective"], rel=OBJECTIVE_RTOL, abs=1e-9), where
        assert int(case.out["greedy_steps"][0, 0, t]) == info["steps"], where
        yield t, len(ref_obs.waiting), info["steps"], decision.assignment


@pytest.mark.parametrize("load", DECISION_CASES)
def test_jax_and_reference_algorithm1_take_the_same_decisions(decision_runs, load):
    case = decision_runs[load]
    np.testing.assert_array_equal(case.out["list_overflow"], 0)
    np.testing.assert_array_equal(case.out["invalid_actions"], 0)
    # the engine's predicted drain time of each light instance: now when empty, later when busy
    obs, _ = recorded(case.out)
    drain, occ = obs["drain"][0, 0], obs["occupancy"][0, 0]  # [T,V,Ml,X]
    now = obs["now"][0, 0][:, None, None, None]
    assert np.all(np.where(occ == 0, drain == now, drain > now))
    rows = list(compare_decisions(case))
    assert len(rows) == case.sizes.T == 120
    busy = [r for r in rows if r[1] > 0]
    # not vacuous: most boundaries have waiting light stages and the greedy adds instances often
    assert len(busy) >= 100
    assert sum(r[2] > 0 for r in rows) >= 30
    assert max(r[1] for r in rows) >= 10


def test_jax_and_reference_algorithm1_take_the_same_decisions_with_instance_ready(decision_runs):
    """`instance_ready: 1` (§9): the reference, given the engine's drain times, decides as the engine."""
    case = decision_runs["ready"]
    np.testing.assert_array_equal(case.out["list_overflow"], 0)
    np.testing.assert_array_equal(case.out["invalid_actions"], 0)
    rows = list(compare_decisions(case, instance_ready=1))
    assert len(rows) == case.sizes.T == 120
    assert sum(r[1] > 0 for r in rows) >= 100 and sum(r[2] > 0 for r in rows) >= 30
    # not vacuous: at many boundaries the drain term changes the decision on the same observation
    obs, _ = recorded(case.out)
    changed = 0
    for t, n_waiting, _, assignment in rows:
        if not n_waiting:
            continue
        ref_obs = reference_observation(case, obs, t)
        H = {w.task: virtual_queue(w.arrival, w.deadline, t, case.sim.slot_ms, Algorithm1Params().H_min)
             for w in ref_obs.waiting}
        changed += algorithm1(ref_obs, Algorithm1Params(), H)[0].assignment != assignment
    assert changed >= 50, changed  # 119 of the 120 boundaries when written


SMALL_SEEDS = 6


# the engine's controller and the reference's of each case; "proposed_ready" is `proposed` with
# instance_ready = 1: the reference computes the drain times from its own FIFOs
SMALL_CONTROLLERS = {
    "proposed": (PROPOSED, "proposed"),
    "propavg": (PROPAVG, "propavg"),
    "proposed_ready": (PROPOSED_READY, make_controller("ec", instance_ready=1)),
}


@pytest.fixture(scope="module", params=list(SMALL_CONTROLLERS))
def small_runs(request, engine):
    controller, reference_controller = SMALL_CONTROLLERS[request.param]
    case = engine("small", controller=controller, realisations=SMALL_SEEDS)
    arrivals, uplink, light_rate = case.exogenous()
    sc, x_core, sizes = case.scenarios[0], case.x_core[0], case.sizes
    refs = [
        simulate_reference(
            sc, x_core, arrivals[r], uplink[r], light_rate[r], slot_ms=case.sim.slot_ms,
            arrival_slots=sizes.T_arr, total_slots=sizes.T, core_dispatch=case.sim.core_dispatch,
            y_max=case.sim.y_max, max_light_instances=sizes.X, buffer_capacity=sizes.B,
            controller=reference_controller,
        )
        for r in range(case.R)
    ]
    return case, refs


def test_engine_and_reference_agree_task_by_task_with_algorithm1(small_runs):
    case, refs = small_runs
    np.testing.assert_array_equal(case.out["list_overflow"], 0)
    np.testing.assert_array_equal(case.out["invalid_actions"], 0)
    for r, ref in enumerate(refs):
        n = int(case.out["num_tasks"][0, r])
        assert n == ref.tasks_arrived > 50
        fe, fr = case.out["task_finish"][0, r][:n], np.asarray(ref.task_finish)
        assert np.array_equal(np.isnan(fe), np.isnan(fr)), f"r={r}: unfinished tasks differ"
        np.testing.assert_allclose(fe[~np.isnan(fe)], fr[~np.isnan(fr)], atol=FINISH_TOL_MS, rtol=0, err_msg=f"r={r}")
        assert case.out["tasks_ontime"][0, r] == ref.tasks_ontime
        assert case.out["cost_light"][0, r] == pytest.approx(ref.cost_light, rel=1e-12)


def test_the_drain_term_matters_in_the_small_runs(small_runs):
    """Not vacuous: in the `proposed_ready` runs the reference's own drain times (from its FIFOs)
    change Algorithm 1's decision at many boundaries (160 of 594 with waiting stages when written)."""
    case, _ = small_runs
    if case.controller is not PROPOSED_READY:
        pytest.skip("only the instance_ready case")
    arrivals, uplink, light_rate = case.exogenous()
    sc, x_core, sizes = case.scenarios[0], case.x_core[0], case.sizes
    counts = {"waiting": 0, "changed": 0}
    for r in range(case.R):
        inner = make_controller("ec", instance_ready=1)

        def control(obs, state, inner=inner):
            decision, state = inner(obs, state)
            if obs.waiting:
                H = {j: h for j, (_, h) in state["H"].items()}
                plain, _ = algorithm1(obs, Algorithm1Params(), H)
                counts["waiting"] += 1
                counts["changed"] += plain.assignment != decision.assignment
            return decision, state

        simulate_reference(
            sc, x_core, arrivals[r], uplink[r], light_rate[r], slot_ms=case.sim.slot_ms,
            arrival_slots=sizes.T_arr, total_slots=sizes.T, core_dispatch=case.sim.core_dispatch,
            y_max=case.sim.y_max, max_light_instances=sizes.X, buffer_capacity=sizes.B, controller=control,
        )
    assert counts["changed"] >= 50, counts


def breakdown_means(ref, deadline) -> np.ndarray:
    """[2,C] mean critical-path parts of the reference's on-time and late tasks (nan if none)."""
    fin, arr = np.asarray(ref.task_finish), np.asarray(ref.task_arrival)
    done = ~np.isnan(fin)
    ontime = done & (fin - arr <= deadline[np.asarray(ref.task_type)])
    rows = []
    for mask in (ontime, done & ~ontime):
        rows.append(ref.task_breakdown[mask].mean(0) if mask.any() else np.full(len(BREAKDOWN_COMPONENTS), np.nan))
    return np.stack(rows)


def test_engine_and_reference_agree_on_the_diagnostics(small_runs):
    """SEMANTICS §11 in both simulators: the stated bounds and their violations per light service,
    and the latency breakdown, from the same execution."""
    case, refs = small_runs
    sc = case.scenarios[0]
    light = sc.light_services
    assert tuple(BREAKDOWN_COMPONENTS) == tuple(REF_COMPONENTS)
    bounded = 0
    for r, ref in enumerate(refs):
        np.testing.assert_array_equal(case.out["light_bounded"][0, r], ref.light_bounded[light], err_msg=f"r={r}")
        np.testing.assert_array_equal(case.out["light_violations"][0, r], ref.light_violations[light], err_msg=f"r={r}")
        np.testing.assert_allclose(case.out["latency_breakdown"][0, r], breakdown_means(ref, sc.deadline),
                                   atol=FINISH_TOL_MS, rtol=0, err_msg=f"r={r}")
        bounded += int(ref.light_bounded.sum())
    assert bounded > 100
