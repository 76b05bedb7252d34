"""Conformance checks any plugin, ours or third-party, can run in its own tests.

    from edgefm.testing import check_controller
    def test_my_controller():
        check_controller(MyController())

Each check runs the component through the real engine on the small scenario (one compile, ~30 s on
2 CPU cores) and asserts the invariants every component must keep; it raises AssertionError with the
numbers that broke.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from edgefm.runner import Components, SimSettings, run_engine

SMALL = Path(__file__).resolve().parents[2] / "conf" / "scenario" / "small.yaml"


def _small_scenarios(seed: int):
    from edgefm.scenario import build_scenarios, load_spec

    return build_scenarios(load_spec(SMALL), seed=seed)


def _default_components():
    from edgefm_baselines import LBRRController, LeastLoadedPlacement
    from edgefm_channels import NakagamiChannel
    from edgefm_workloads import PoissonWorkload

    return dict(placement=LeastLoadedPlacement(), controller=LBRRController(), channel=NakagamiChannel(),
                workload=PoissonWorkload())


def check_run_invariants(run) -> None:
    """Conservation, Eq. 8, costs recomputed from the instance counts, no refused decisions."""
    out = run.outputs
    total = out["tasks_ontime"] + out["tasks_late"] + out["tasks_unfinished"] + out["tasks_dropped"]
    assert np.array_equal(total, out["tasks_arrived"]), f"tasks not conserved: {total} vs {out['tasks_arrived']}"
    assert (out["capacity_violations"] == 0).all(), f"Eq. 8 violated in {out['capacity_violations']} slots"
    assert (out["invalid_actions"] == 0).all(), f"the engine refused {out['invalid_actions']} decisions"
    for i, sc in enumerate(run.scenarios):
        light = sc.light_services
        x = out["x_light"][i]  # [R,T,V,Ml]
        prev = np.concatenate([np.zeros_like(x[:, :1]), x[:, :-1]], axis=1)
        cost = (sc.cost_deploy[light] * np.maximum(x - prev, 0) + (sc.cost_maintain + sc.cost_payload)[light] * x)
        np.testing.assert_allclose(cost.sum(axis=(1, 2, 3)), out["cost_light"][i], rtol=1e-12, err_msg="light cost")
        usage = np.einsum("rtvl,lk->rtvk", x, sc.resource[light]) + (run.x_core[i] @ sc.resource)[None, None]
        assert (usage <= sc.capacity[None, None] + 1e-9).all(), "Eq. 8 violated by the recorded instance counts"


def check_controller(controller, *, seed: int = 0, realisations: int = 20) -> None:
    """Run `controller` with the baseline placement, channel and workload on the small scenario at
    its default horizon, and check the invariants."""
    comps = _default_components()
    comps["controller"] = controller
    sim = SimSettings(realisations=realisations, arrival_ms=200.0, drain_ms=100.0)
    check_run_invariants(run_engine(_small_scenarios(seed), Components(**comps), sim, seed=seed))


def check_placement(placement, *, seed: int = 0) -> None:
    """A placement must return a feasible x_core[V,M] (zero light columns, capacity respected)."""
    for sc in _small_scenarios(seed):
        x = np.asarray(placement.solve(sc, slot_ms=1.0).x_core)
        assert x.shape == (sc.num_nodes, sc.num_services), f"x_core shape {x.shape}"
        assert (x >= 0).all() and (x[:, ~sc.service_is_core] == 0).all(), "negative counts or light columns"
        assert (x @ sc.resource <= sc.capacity + 1e-9).all(), "core placement exceeds a node's capacity"
