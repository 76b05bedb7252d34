"""A sweep equals fresh runs: for every built-in component and every option a sweep may change, the
values run one after another in one process (the compiled program reused, as in a multirun) give the
same results, value by value, as each value run fresh.

"Fresh" is the same run after `jax.clear_caches()` and with the runner's placement cache emptied:
nothing traced, compiled or solved for an earlier value survives (the engine keeps no other cache:
its programs are `equinox.filter_jit` functions of the components, whose traced options are array
arguments; the test processes keep JAX's on-disk cache off, tests/conftest.py). The CLI multirun of
a bursty workload, the case that once computed with a stale option, is checked against fresh
processes in `tests/test_sweep.py`.

The default run sweeps the Poisson workload's load (and checks that proposed and propavg share one
program); the other groups are marked slow (`pytest -m slow`): each fresh run is a compile.

Every traced option of every built-in component must have a case here (checked), and every case must
change the results (so a stale value could not pass unnoticed).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest
from conftest import scenario_instances, slow_ones
from edgefm_baselines import LBRRController, LeastLoadedPlacement
from edgefm_channels import NakagamiChannel, RayleighChannel
from edgefm_failures import RandomFailures
from edgefm_ga import GAController
from edgefm_lyapunov import PropAvgController, ProposedController
from edgefm_milp_scip import MilpPlacement
from edgefm_workloads import MMPPWorkload, PoissonWorkload

from edgefm import runner
from edgefm.interfaces import OPTION
from edgefm.plugins import Registry
from edgefm.runner import Components, SimSettings, run_engine

SIM = SimSettings(realisations=2, arrival_ms=40.0, drain_ms=30.0, progress=False)
BASE = dict(placement=LeastLoadedPlacement(), controller=LBRRController(), channel=NakagamiChannel(),
            workload=PoissonWorkload(), failure=None)

# group: (the base components of the group (changes to BASE), [(kind, option, value), ...]); the
# values of one group run as one sweep (one compiled program, or one placement per value)
GROUPS = {
    "nakagami": ({}, [("channel", "bandwidth", 0.05), ("channel", "snr0", 4.0)]),
    "rayleigh": ({"channel": RayleighChannel()}, [("channel", "bandwidth", 0.05), ("channel", "snr0", 4.0)]),
    "poisson": ({}, [("workload", "load", 1.7)]),
    "mmpp": ({"workload": MMPPWorkload(burst_factor=1.9, mean_burst_ms=1000.0)},
             [("workload", "load", 0.6), ("workload", "burst_factor", 1.2), ("workload", "burst_fraction", 0.5),
              ("workload", "mean_burst_ms", 1.0)]),
    "random failures": ({"failure": RandomFailures(mtbf_ms=60.0, mttr_ms=15.0)},
                        [("failure", "mtbf_ms", 25.0), ("failure", "mttr_ms", 5.0)]),
    "proposed": ({"controller": ProposedController(), "workload": PoissonWorkload(load=2.0)},
                 [("controller", "V", 50.0), ("controller", "epsilon", 1e-6), ("controller", "window_ms", 0.1),
                  ("controller", "pi", 3.0), ("controller", "H_min", 8.0), ("controller", "max_steps", 1)]),
    # the delay function (0: propavg, the same program), where g^EC is above g^avg at every occupancy
    "propavg": ({"controller": ProposedController(epsilon=1e-4), "workload": PoissonWorkload(load=2.0)},
                [("controller", "effective_capacity", 0.0)]),
    "ga": ({"controller": GAController(generations=3), "workload": PoissonWorkload(load=2.0)},
           [("controller", "mutation", 0.9)]),
    "least_loaded": ({"workload": PoissonWorkload(load=2.0)},
                     [("placement", "plan_load", 20.0), ("placement", "target_utilisation", 0.05)]),
    "milp": ({"placement": MilpPlacement(time_limit_s=20.0)},
             [("placement", "xi", 0.0), ("placement", "reserve", 0.6), ("placement", "kappa_mode", "off")]),
    # static options: a sweep over one compiles a program per value, which must not be confused either
    "static": ({"controller": ProposedController(), "workload": PoissonWorkload(load=2.0)},
               [("channel", "fading", "per_slot"), ("controller", "instance_ready", "max_input"),
                ("controller", "max_stages_per_service", 2)]),
}


def changed(base: dict, kind: str, option: str, value) -> dict:
    """The components of ``base`` with one option of one component changed."""
    comp = base[kind]
    new = type(comp)(**{**{f.name: getattr(comp, f.name) for f in dataclasses.fields(comp)}, option: value})
    return {**base, kind: new}


def run(components: dict) -> dict:
    scs, _ = scenario_instances("small")
    return run_engine(scs, Components(**components), SIM, seed=0).outputs


def fresh(components: dict) -> dict:
    jax.clear_caches()
    runner._PLACEMENTS.clear()
    return run(components)


def assert_same(a: dict, b: dict, where: str) -> None:
    assert a.keys() == b.keys(), where
    for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=f"{where}: {name}")


def differs(a: dict, b: dict) -> bool:
    return any(not np.array_equal(a[k], b[k], equal_nan=True) for k in a)


def test_every_traced_option_of_every_builtin_component_has_a_case():
    registry = Registry.default()
    covered = {}
    for base_changes, cases in GROUPS.values():
        base = {**BASE, **base_changes}
        for kind, option, _ in cases:
            covered.setdefault(type(base[kind]), set()).add(option)
    missing = []
    for kind in ("channel", "workload", "failure", "controller"):
        for row in registry.entries(kind):
            cls = registry.resolve(kind, row.name)
            cls = getattr(cls, "builds", cls)
            for f in dataclasses.fields(cls):
                if f.metadata.get(OPTION) == "traced" and f.name not in covered.get(cls, set()):
                    missing.append(f"{kind} {row.name}: {f.name}")
    assert missing == []


@pytest.mark.parametrize("group", slow_ones(GROUPS, [g for g in GROUPS if g != "poisson"]))
def test_a_sweep_equals_fresh_runs(group):
    base_changes, cases = GROUPS[group]
    base = {**BASE, **base_changes}
    configs = [base] + [changed(base, kind, option, value) for kind, option, value in cases]
    swept = [run(c) for c in configs]  # one after another, as the jobs of a multirun in one process
    for (kind, option, value), out in zip(cases, swept[1:]):
        where = f"{group}: {kind}.{option}={value}"
        assert differs(out, swept[0]), f"{where} changes nothing: the case could not catch a stale value"
    for i, c in enumerate(configs):
        where = f"{group}: " + ("base" if i == 0 else "{}.{}={}".format(*cases[i - 1]))
        assert_same(swept[i], fresh(c), where)


def test_proposed_and_propavg_are_the_same_program():
    """The registry's two names build one class; its flag is traced, so a sweep over the two
    strategies compiles once (checked by the trace counter) and equals fresh runs (above)."""
    from edgefm.sim.rollout import TRACE_COUNTER

    base = {**BASE, "controller": ProposedController(), "workload": PoissonWorkload(load=2.0)}
    run(base)
    before = TRACE_COUNTER["program"]
    run({**base, "controller": PropAvgController()})
    assert TRACE_COUNTER["program"] == before
