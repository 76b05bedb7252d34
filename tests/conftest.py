"""Shared engine runs for the engine tests.

A compiled engine program costs tens of seconds on a CPU, so runs are memoised for the whole session:
every test module asking for the same (scenario, sim settings, load, seed, realisations, components)
gets the same run, and runs that share `SimSizes` and components share the compiled program (the
cache in `edgefm.sim.rollout`). Each kind of component is one instance here so that the engine's
cache key (which includes the component configs) is the same for every load: the load reaches the
engine as the traced `SimParams.load`, not through the workload config.

Realisation r of a run is an independent seed, so the seeds of a test are vectorised as the
realisations of one run.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import jax
import numpy as np
import pytest

import edgefm  # noqa: F401  (turns on x64)
from edgefm.interfaces import options
from edgefm.runner import SimSettings, failure_schedules
from edgefm.scenario import build_scenarios, load_spec
from edgefm.sim import TRACE_COUNTER, exogenous_samples, failure_samples, simulate
from edgefm.sim.keys import realisation_keys
from edgefm.sim.prepare import compute_sizes, make_params, slice_instance, stack_arrays
from edgefm.sim.failures import failing
from edgefm_baselines import LBRRController, LeastLoadedPlacement
from edgefm_channels import NakagamiChannel
from edgefm_workloads import PoissonWorkload

CONF = Path(__file__).resolve().parents[1] / "conf"

# The test processes keep JAX's on-disk compile cache off, even where a test runs the CLI in this
# process (which turns it on for $EDGEFM_JAX_CACHE): serialising an executable into the cache once
# crashed a test process (a segfault inside XLA's serialisation). The CLI runs in subprocesses still
# share the cache, as a user's runs do.
jax.config.update("jax_enable_compilation_cache", False)

CHANNEL = NakagamiChannel()
WORKLOAD = PoissonWorkload()
LBRR = LBRRController()
PLACEMENT = LeastLoadedPlacement()

REALISATIONS = 20
# (arrival_ms, drain_ms) per scenario: the small one at its default horizon, the paper one shorter so
# that the plain-Python reference stays fast
HORIZON = {"small": (200.0, 100.0), "paper": (40.0, 100.0)}


def sim_settings(*, rule: str, arrival_ms: float, drain_ms: float, **changes) -> SimSettings:
    """The sim defaults (`SimConfig`, through `SimSettings`) with this horizon, dispatch rule and changes."""
    return SimSettings(arrival_ms=arrival_ms, drain_ms=drain_ms, core_dispatch=rule, **changes)


@dataclasses.dataclass
class EngineCase:
    """One engine run, with everything needed to redo it or to feed the reference simulator."""

    scenarios: list
    x_core: list
    sim: Any
    load: float
    seed: int
    channel: Any
    workload: Any
    controller: Any
    sizes: Any
    arrays: Any
    params: Any
    keys: Any
    out: dict  # host arrays, leading axes [I,R]
    traces: int  # increase of TRACE_COUNTER["step"] during the simulate call
    new_program: bool  # whether the call added a program to the engine's compile cache
    exo_key: Any = None  # memo key of the exogenous samples (None: not shared)
    failure: Any = None  # the failure model (None: nothing fails)
    schedules: Any = None  # its FailureSchedule per instance

    def failures(self):
        """(node_up [R,T,V], link_up [T,E]) of instance 0 as the reference simulator takes them."""
        a0 = slice_instance(self.arrays, 0)
        up = jax.jit(jax.vmap(lambda k: failure_samples(k, a0, self.params, self.sizes, self.failure)))(self.keys[0])
        return np.asarray(up, bool), np.asarray(self.schedules[0].link_up, bool)

    @property
    def R(self) -> int:
        return int(self.keys.shape[1])

    def exogenous(self):
        """(arrivals [R,T,U,N], uplink_rate [R,T,U], light_rate [R,T,V,Ml,X]) of instance 0, from
        `edgefm.sim.exogenous_samples`, one vmapped call for all realisations."""
        key = self.exo_key if self.exo_key is not None else ("case", id(self))
        if key not in _EXOGENOUS:
            a0 = slice_instance(self.arrays, 0)
            draws = jax.jit(jax.vmap(
                lambda k: exogenous_samples(k, a0, self.params, self.sizes, self.channel, self.workload)
            ))(self.keys[0])
            _EXOGENOUS[key] = tuple(np.asarray(d) for d in draws)
        return _EXOGENOUS[key]


_EXOGENOUS: dict = {}
_RUNS: dict = {}
RUN_LOG: list = []  # every EngineCase made in this session, in order


def with_load(workload, load: float):
    """``workload`` with its option ``load`` set to ``load`` (a traced option: the same program); a
    generator without the option runs at 1x only."""
    opts = options(workload)
    if "load" not in opts:
        assert float(load) == 1.0, f"{type(workload).__name__} has no option load"
        return workload
    return type(workload)(**{**opts, "load": float(load)})


def run_case(scenarios, x_core, sim, *, load, seed, realisations, channel, workload, controller, exo_key=None,
             failure=None):
    """Simulate (not memoised) with ``workload`` at ``load``; records the trace count and whether
    a program was compiled."""
    workload = with_load(workload, load)
    sizes = compute_sizes(scenarios, x_core, sim, load=load, peak_factor=workload.peak_factor(),
                          failures=failing(failure))
    schedules = failure_schedules(scenarios, failure, sim)
    arrays = stack_arrays(scenarios, x_core, sizes.Ic, sizes.T, schedules)
    params = make_params(sim)
    keys = realisation_keys(seed, len(scenarios), realisations)
    traces0, programs0 = TRACE_COUNTER["step"], TRACE_COUNTER["program"]
    out = simulate(keys, arrays, params, sizes, channel, workload, controller, failure=failure)
    out = jax.tree.map(np.asarray, jax.block_until_ready(out))
    case = EngineCase(
        scenarios=list(scenarios), x_core=list(x_core), sim=sim, load=load, seed=seed, channel=channel,
        workload=workload, controller=controller, sizes=sizes, arrays=arrays, params=params, keys=keys,
        out=out, traces=TRACE_COUNTER["step"] - traces0, new_program=TRACE_COUNTER["program"] > programs0,
        exo_key=exo_key, failure=failure, schedules=schedules,
    )
    RUN_LOG.append(case)
    return case


def resolved_option(group: str, name: str):
    """``conf/<group>/<name>.yaml`` without its defaults list, its interpolations of the closures
    (``${closures.x}``) resolved under the default preset ``conf/closures/paper.yaml``."""
    from omegaconf import OmegaConf

    values = OmegaConf.load(CONF / group / f"{name}.yaml")
    values.pop("defaults", None)
    root = OmegaConf.create({"closures": OmegaConf.load(CONF / "closures" / "paper.yaml").closures, "node": values})
    return OmegaConf.create(OmegaConf.to_container(root, resolve=True)["node"])


_SCENARIOS: dict = {}


def slow_ones(values, slow) -> list:
    """``values`` as parametrize or fixture params, those in ``slow`` marked `slow` (`pytest -m slow`)."""
    return [pytest.param(v, marks=pytest.mark.slow) if v in slow else v for v in values]


class Lazy(dict):
    """A mapping whose value for a key is ``make(key)``, made when first asked for (a fixture of runs
    of which the selected tests may need only some)."""

    def __init__(self, make) -> None:
        super().__init__()
        self.make = make

    def __missing__(self, key):
        self[key] = self.make(key)
        return self[key]


def scenario_instances(name: str):
    """(scenarios, least_loaded placements) of conf/scenario/<name>.yaml, instance 0 only, seed 0."""
    if name not in _SCENARIOS:
        scs = build_scenarios(load_spec(CONF / "scenario" / f"{name}.yaml"), seed=0)
        _SCENARIOS[name] = (scs, [np.asarray(PLACEMENT.solve(s, slot_ms=1.0).x_core) for s in scs])
    return _SCENARIOS[name]


def engine_run(name: str, *, rule="earliest_start", load=1.0, seed=0, realisations=REALISATIONS,
               controller=LBRR, fresh=False) -> EngineCase:
    """The memoised run of scenario `name` (lbrr, nakagami, poisson unless said otherwise) at the
    scenario's standard horizon. `fresh=True` simulates again (not memoised)."""
    arrival_ms, drain_ms = HORIZON[name]
    key = (name, rule, float(load), int(seed), int(realisations), id(controller))
    if fresh or key not in _RUNS:
        scs, x_core = scenario_instances(name)
        sim = sim_settings(rule=rule, arrival_ms=arrival_ms, drain_ms=drain_ms)
        # the exogenous samples do not depend on the dispatch rule or the controller
        exo_key = (name, float(load), int(seed), int(realisations))
        case = run_case(scs, x_core, sim, load=load, seed=seed, realisations=realisations, channel=CHANNEL,
                        workload=WORKLOAD, controller=controller, exo_key=exo_key)
        if fresh:
            return case
        _RUNS[key] = case
    return _RUNS[key]


# Test files that share compiled engines run in one xdist process, in this order (the engine's
# programs are cached per process: the same program in two processes compiles twice; the CLI tests
# that start subprocesses come after the in-process multiruns, whose programs they then load from
# the on-disk cache). Every other file is a group of its own, as with `--dist loadfile`. The groups
# are listed longest first, so that the two CI processes finish together (xdist hands out the
# groups in collection order).
SHARED_PROGRAMS = {
    "engine-lbrr": ("test_engine_differential.py", "test_engine_invariants.py", "test_engine_failures.py",
                    "test_testing.py"),
    "cli": ("test_sweep.py", "test_cli.py", "test_milp.py"),
    "engine-proposed": ("test_algorithm1_differential.py", "test_lyapunov.py"),
}
_GROUP_OF = {f: (g, rank, i) for rank, (g, files) in enumerate(SHARED_PROGRAMS.items()) for i, f in enumerate(files)}


def pytest_configure(config):
    # known also when xdist is not installed, so that the marks below raise no warning
    config.addinivalue_line("markers", "xdist_group(name): run in the same xdist process as the group")


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(items):
    last = (None, len(SHARED_PROGRAMS), 0)
    for item in items:
        item.add_marker(pytest.mark.xdist_group(_GROUP_OF.get(item.path.name, last)[0] or item.path.name))
    items.sort(key=lambda item: _GROUP_OF.get(item.path.name, last)[1:])  # stable: file order otherwise


@pytest.fixture(scope="session")
def engine():
    """The memoised engine runs: `engine(name, rule=..., load=..., seed=..., controller=...)`."""
    return engine_run


@pytest.fixture(scope="session")
def engine_tools():
    """`run_case` (not memoised), `sim_settings`, and `log`: every run made in this session."""
    return SimpleNamespace(run_case=run_case, sim_settings=sim_settings, log=RUN_LOG)
