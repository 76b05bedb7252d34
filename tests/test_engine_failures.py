"""Failures in the JAX engine (docs/SEMANTICS.md §12), against the reference simulator task by task.

The engine draws the failures (node_up [T,V] per realisation, from the failure stream; link_up [T,E]
from the model's host-side schedule); the reference simulator gets exactly these arrays with the
other exogenous samples and must agree on every task's completion time, the light instances of every
slot, the stages lost at every boundary, costs and outcome counts. Realisations are the seeds
(20 per case, on the small scenario). Also: a failure model that fails nothing gives the results of
a run without one, bit for bit, and a node down from the first slot on is never used.
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import CHANNEL, HORIZON, LBRR, REALISATIONS, WORKLOAD, engine_run, run_case, scenario_instances, sim_settings
from edgefm_failures import NodeDown, RandomFailures
from edgefm_lyapunov import ProposedController

from edgefm.reference import make_controller, simulate_reference
from edgefm.runner import failure_schedules
from edgefm.sim.prepare import make_params

FINISH_TOL_MS = 1e-4
LOAD = 1.0
SEED = 0  # with the standard horizon of the small scenario: the run without failures is `engine_run("small")`
# nodes of the small scenario: ED1, ED2, ES1 with links ED1-ES1, ED2-ES1
RANDOM = RandomFailures(mtbf_ms=60.0, mttr_ms=15.0)  # every node ~20 % of the time down
ISOLATE_ED1 = NodeDown(nodes=["ED1"], start_ms=30.0, duration_ms=50.0, isolate=True)
PROPOSED = ProposedController()

CASES = {
    # name: (failure model, controller, core dispatch rule)
    "random-lbrr": (RANDOM, LBRR, "earliest_start"),
    "isolate-lbrr-idle_only": (ISOLATE_ED1, LBRR, "idle_only"),
    "random-proposed": (RANDOM, PROPOSED, "earliest_start"),
}
_RUNS: dict = {}


def failure_run(name):
    if name not in _RUNS:
        failure, controller, rule = CASES[name]
        scs, x_core = scenario_instances("small")
        arrival_ms, drain_ms = HORIZON["small"]
        sim = sim_settings(rule=rule, arrival_ms=arrival_ms, drain_ms=drain_ms)
        _RUNS[name] = run_case(scs, x_core, sim, load=LOAD, seed=SEED, realisations=REALISATIONS, channel=CHANNEL,
                               workload=WORKLOAD, controller=controller, failure=failure)
    return _RUNS[name]


@pytest.fixture(scope="module", params=list(CASES))
def compared(request):
    case = failure_run(request.param)
    _, controller, rule = CASES[request.param]
    arrivals, uplink, light_rate = case.exogenous()
    node_up, link_up = case.failures()
    sc, x_core, sizes = case.scenarios[0], case.x_core[0], case.sizes
    ref_controller = "lbrr" if controller is LBRR else make_controller("ec")
    refs = [
        simulate_reference(
            sc, x_core, arrivals[r], uplink[r], light_rate[r], slot_ms=case.sim.slot_ms,
            arrival_slots=sizes.T_arr, total_slots=sizes.T, core_dispatch=rule, y_max=case.sim.y_max,
            max_light_instances=sizes.X, buffer_capacity=sizes.task_capacity, controller=ref_controller,
            node_up=node_up[r], link_up=link_up,
        )
        for r in range(case.R)
    ]
    return request.param, case, refs, node_up, link_up


def test_failures_happen_and_results_are_exact(compared):
    name, case, refs, node_up, link_up = compared
    np.testing.assert_array_equal(case.out["list_overflow"], 0)
    np.testing.assert_array_equal(case.out["invalid_actions"], 0)
    np.testing.assert_array_equal(case.out["node_up"][0], node_up.astype(np.int8))  # what the engine recorded
    # the comparison is not vacuous: nodes go down, jobs are lost, tasks still finish
    assert (~node_up).any()
    assert sum(int(ref.jobs_lost.sum()) for ref in refs) > 0
    assert sum(ref.tasks_ontime for ref in refs) > 0
    if name.startswith("isolate"):
        assert (~link_up).any() and (~link_up).all(axis=0).sum() == 0  # links come back
    else:
        assert link_up.all()
        # every node fails in some realisation, and is down about MTTR / (MTBF + MTTR) of the time
        assert (~node_up).any(axis=(0, 1)).all()
        assert 0.1 < (~node_up).mean() < 0.3


def test_completion_times_agree_with_the_reference(compared):
    _, case, refs, _, _ = compared
    for r, ref in enumerate(refs):
        n = int(case.out["num_tasks"][0, r])
        assert n == ref.tasks_arrived
        fe, fr = case.out["task_finish"][0, r][:n], ref.task_finish
        assert np.array_equal(np.isnan(fe), np.isnan(fr)), f"r={r}: finished in one simulator only"
        done = ~np.isnan(fe)
        bad = np.flatnonzero(np.abs(fe[done] - fr[done]) > FINISH_TOL_MS)
        assert bad.size == 0, f"r={r}: task ids {np.flatnonzero(done)[bad][:10]}"


def test_lost_jobs_instances_costs_and_outcomes_agree(compared):
    _, case, refs, node_up, _ = compared
    light = case.scenarios[0].light_services
    for r, ref in enumerate(refs):
        np.testing.assert_array_equal(case.out["jobs_lost"][0, r], ref.jobs_lost, err_msg=f"r={r}")
        np.testing.assert_array_equal(case.out["x_light"][0, r], ref.x_light[:, :, light], err_msg=f"r={r}")
        # no light instance on a down node
        assert not np.any(case.out["x_light"][0, r][~node_up[r]])
        np.testing.assert_allclose(case.out["cost_light_slot"][0, r], ref.cost_light_per_slot, rtol=1e-12, atol=1e-9)
        got = [int(case.out[k][0, r]) for k in
               ("tasks_arrived", "tasks_ontime", "tasks_late", "tasks_unfinished", "tasks_dropped")]
        want = [ref.tasks_arrived, ref.tasks_ontime, ref.tasks_late, ref.tasks_unfinished, ref.tasks_dropped]
        assert got == want, f"r={r}"
        assert got[0] == sum(got[1:])  # conservation with lost jobs re-dispatched


def test_latency_breakdown_agrees_with_the_reference(compared):
    _, case, refs, _, _ = compared
    deadline = case.scenarios[0].deadline
    for r, ref in enumerate(refs):
        fin, arr = np.asarray(ref.task_finish), np.asarray(ref.task_arrival)
        done = ~np.isnan(fin)
        # the parts still sum to the latency, task by task
        np.testing.assert_allclose(ref.task_breakdown[done].sum(1), (fin - arr)[done], atol=1e-9)
        ontime = done & (fin - arr <= deadline[np.asarray(ref.task_type)])
        for row, mask in ((0, ontime), (1, done & ~ontime)):
            want = ref.task_breakdown[mask].mean(0) if mask.any() else np.full(ref.task_breakdown.shape[1], np.nan)
            np.testing.assert_allclose(case.out["latency_breakdown"][0, r][row], want, atol=FINISH_TOL_MS,
                                       err_msg=f"r={r}, row={row}")


def _rerun(case, failure):
    """The same run with another random failure model: only traced options change (no compile)."""
    params = make_params(case.sim)
    from edgefm.sim import simulate
    from edgefm.sim.prepare import stack_arrays

    schedules = failure_schedules(case.scenarios, failure, case.sim)
    arrays = stack_arrays(case.scenarios, case.x_core, case.sizes.Ic, case.sizes.T, schedules)
    out = simulate(case.keys, arrays, params, case.sizes, case.channel, case.workload, case.controller, failure=failure)
    return {k: np.asarray(v) for k, v in out.items()}


def test_a_failure_model_that_fails_nothing_changes_nothing():
    """The failure code path with nothing failing (MTBF of 10^15 ms) gives the run without a failure
    model, bit for bit (and the model `none` skips the failure handling altogether)."""
    case = failure_run("random-lbrr")
    out = _rerun(case, RandomFailures(mtbf_ms=1e15, mttr_ms=15.0))
    assert out["node_up"].all() and not out["jobs_lost"].any()
    plain = engine_run("small")  # the same scenario, placement, horizon, seeds and components, no failure model
    assert (plain.seed, plain.R, plain.load, plain.sim.core_dispatch) == (SEED, REALISATIONS, LOAD, "earliest_start")
    for name, value in plain.out.items():
        np.testing.assert_array_equal(out[name], value, err_msg=name)


def test_a_node_down_from_the_start_is_never_used():
    """ED2 fails before any arrival and never recovers (MTBF 10^-9 ms, MTTR 10^15 ms, only ED2): no
    light instance on it, no job lost (none is ever placed there), and tasks still finish."""
    case = failure_run("random-lbrr")
    out = _rerun(case, RandomFailures(mtbf_ms=1e-9, mttr_ms=1e15, nodes=["ED2"]))
    node_up = out["node_up"][0]  # [R,T,V]
    assert not node_up[:, :, 1].any() and node_up[:, :, [0, 2]].all()
    assert not out["x_light"][0][:, :, 1].any()
    assert not out["jobs_lost"].any()
    assert out["tasks_ontime"].sum() > 0
    np.testing.assert_array_equal(out["invalid_actions"], 0)


def test_random_failures_follow_the_two_state_markov_chain():
    """`random` (SEMANTICS §12): each node is up before slot 0 and then a two-state chain with
    p_f = 1 − exp(−Δt/MTBF), p_r = 1 − exp(−Δt/MTTR), so P(down in slot t) = π (1 − λ^(t+1)) with
    π = p_f / (p_f + p_r) and λ = 1 − p_f − p_r; a node not in `nodes` never fails. Checked over
    4 000 realisations (12 000 chains, two of them per realisation) against the closed form."""
    import jax

    from edgefm.sim import failure_samples
    from edgefm.sim.keys import realisation_keys
    from edgefm.sim.prepare import compute_sizes, slice_instance, stack_arrays

    scs, x_core = scenario_instances("small")
    sim = sim_settings(rule="earliest_start", arrival_ms=60.0, drain_ms=60.0)
    failure = RandomFailures(mtbf_ms=40.0, mttr_ms=10.0, nodes=["ED1", "ES1"])
    sizes = compute_sizes(scs, x_core, sim, load=LOAD, peak_factor=1.0, failures=True)
    schedules = failure_schedules(scs, failure, sim)
    arrays = slice_instance(stack_arrays(scs, x_core, sizes.Ic, sizes.T, schedules), 0)
    params = make_params(sim)
    keys = realisation_keys(3, 1, 4000)[0]
    up = np.asarray(jax.jit(jax.vmap(lambda k: failure_samples(k, arrays, params, sizes, failure)))(keys))
    assert up.shape == (4000, sizes.T, 3) and up.dtype == bool
    assert up[:, :, 1].all()  # ED2 is not in `nodes`
    p_f, p_r = -np.expm1(-1.0 / 40.0), -np.expm1(-1.0 / 10.0)
    pi, lam = p_f / (p_f + p_r), 1.0 - p_f - p_r
    t = np.arange(sizes.T)
    want = pi * (1.0 - lam ** (t + 1))
    down = 1.0 - up[:, :, [0, 2]].mean(axis=(0, 2))  # [T]
    sigma = np.sqrt(want * (1 - want) / 8000)
    assert np.all(np.abs(down - want) < 5 * sigma + 1e-12), np.max(np.abs(down - want) / sigma)
    # mean down time = Δt / p_r: the lengths of completed down spells
    spells = []
    for chain in (~up[:, :, [0, 2]]).transpose(0, 2, 1).reshape(-1, sizes.T)[:2000]:
        edges = np.diff(np.concatenate([[0], chain.astype(int), [0]]))
        starts, ends = np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)
        spells += [e - s for s, e in zip(starts, ends) if e < sizes.T]
    assert np.mean(spells) == pytest.approx(1.0 / p_r, rel=0.1)
