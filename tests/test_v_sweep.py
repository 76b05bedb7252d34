"""The Lyapunov trade-off through the CLI: a Hydra multirun over V reuses one compiled program, and a
larger V buys a lower light cost with a larger virtual-queue backlog (MODEL.md §7.3–7.4)."""

from __future__ import annotations

import numpy as np

from edgefm.cli import main
from edgefm.io import open_run
from edgefm.sim import rollout

V_VALUES = (0.1, 1.0, 100.0, 1000.0, 10000.0)  # five decades


def test_v_sweep_reuses_the_program_and_trades_light_cost_for_backlog(tmp_path, capsys):
    programs, traces = rollout.TRACE_COUNTER["program"], rollout.TRACE_COUNTER["step"]

    status = main([
        "-m", "scenario=small", "controller=proposed", "controller.V=" + ",".join(map(str, V_VALUES)),
        "sim.realisations=32", "sim.arrival_ms=150", "sim.drain_ms=50", "seed=1", f"hydra.sweep.dir={tmp_path}",
    ])

    assert status == 0, capsys.readouterr().err
    # one program for the whole sweep (none if an earlier test compiled the same shapes)
    assert rollout.TRACE_COUNTER["program"] - programs <= 1
    assert rollout.TRACE_COUNTER["step"] - traces <= 1
    runs = [open_run(tmp_path / str(i) / "results.nc") for i in range(len(V_VALUES))]
    for V, ds in zip(V_VALUES, runs, strict=True):
        assert f"V: {V}" in ds.attrs["config"]
        assert int(ds.invalid_actions.sum()) == 0 and int(ds.capacity_violations.sum()) == 0
    # mean light cost per realisation, and the time-averaged Lyapunov backlog Σ_j H_j
    cost = np.array([float(ds.cost_light.mean()) for ds in runs])
    backlog = np.array([float(ds.vq_sum.mean()) for ds in runs])
    ontime = np.array([float(ds.ontime_rate.mean()) for ds in runs])
    # common random numbers across the jobs: the trends are those of V alone
    assert np.all(np.diff(cost) < 0), cost
    assert cost[-1] < 0.5 * cost[0], cost
    assert np.all(np.diff(backlog) > 0), backlog
    assert backlog[-1] > 1.3 * backlog[0], backlog
    assert ontime[-1] < ontime[0], ontime  # the backlog is deadline pressure: fewer tasks on time
