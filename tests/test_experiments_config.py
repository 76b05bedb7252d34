"""The strategy, variant and experiment groups (issue: reproduce the paper's evaluation): every job
of every experiment composes to a valid config, strategies are MODEL.md §8's pairs, each variant
changes exactly what it says, and the launcher configs compose."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from edgefm.cli import make_component
from edgefm.config.schema import register_all
from edgefm.plugins import KINDS, Registry
from edgefm.sweep import expected_jobs

CONF = Path(__file__).resolve().parents[1] / "conf"
EXPERIMENTS = ("fig3_strategies", "fig4_load", "v_tradeoff", "sensitivity", "resilience")


@pytest.fixture(scope="module")
def registry() -> Registry:
    registry = Registry.default()
    register_all(registry, conf_dir=CONF)
    return registry


def compose_with(overrides, hydra=False):
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=hydra)


def job_overrides(experiment: str) -> list[list[str]]:
    cfg = compose_with([f"experiment={experiment}"], hydra=True)
    OmegaConf.set_struct(cfg, False)
    cfg.hydra.overrides.task = [f"experiment={experiment}"]
    return [[f"{k}={v}" for k, v in job.items()] for job in expected_jobs(cfg)]


@pytest.mark.parametrize("name,pair", [
    ("proposed", ("milp", "proposed")), ("propavg", ("milp", "propavg")),
    ("lbrr", ("least_loaded", "lbrr")), ("ga", ("least_loaded", "ga")),
])
def test_strategies_are_the_papers_pairs(registry, name, pair):
    cfg = compose_with([f"strategy={name}"])
    assert (cfg.placement.name, cfg.controller.name, cfg.strategy) == (*pair, name)


def star(jobs: list[list[str]]) -> list[list[str]]:
    """The jobs that differ from the first in at most one swept key: every value of every key
    appears (composing costs ~0.4 s, and a failure belongs to a value, not to a combination)."""
    first = set(jobs[0])
    return [job for job in jobs if len(set(job) - first) <= 1]


@pytest.mark.parametrize("experiment", EXPERIMENTS)
def test_every_value_of_every_experiment_composes_and_builds_its_components(registry, experiment):
    jobs = job_overrides(experiment)
    sizes = {"fig3_strategies": 4, "fig4_load": 20, "v_tradeoff": 14, "sensitivity": 13, "resilience": 24}
    assert len(jobs) == sizes[experiment]
    assert len({tuple(sorted(j)) for j in jobs}) == len(jobs)
    for overrides in star(jobs):
        cfg = compose_with(overrides, hydra=True)
        assert cfg.task == experiment
        assert cfg.hydra.sweep.dir == f"outputs/{experiment}/sweep"  # fixed: a rerun resumes there
        for kind in KINDS:
            make_component(registry, kind, cfg[kind])  # checks the options


def test_fig3_has_30_instances_and_fig4_reaches_3x(registry):
    assert compose_with(["experiment=fig3_strategies"]).scenario.instances >= 30
    loads = {float(o.split("=")[1]) for job in job_overrides("fig4_load") for o in job if o.startswith("workload.load=")}
    assert loads == {1.0, 1.5, 2.0, 2.5, 3.0}
    vs = {float(o.split("=")[1]) for job in job_overrides("v_tradeoff") for o in job if o.startswith("controller.V=")}
    assert max(vs) / min(vs) >= 100  # at least two decades


VARIANTS = {
    "base": {},
    "idle_only": {"sim.core_dispatch": "idle_only"},
    # the default reserve is a mapping by node kind: a scalar replaces it (its two keys go)
    "reserve_0": {"placement.reserve": 0.0, "placement.reserve.server": None, "placement.reserve.device": None},
    "reserve_0.25": {"placement.reserve": 0.25, "placement.reserve.server": None, "placement.reserve.device": None},
    "channel_off": {"channel.name": "off", "channel.bandwidth": None, "channel.snr0": None, "channel.fading": None},
    "xi_0": {"placement.xi": 0.0},
    "xi_10": {"placement.xi": 10.0},
    "epsilon_0.05": {"controller.epsilon": 0.05},
    "epsilon_0.4": {"controller.epsilon": 0.4},
    "window_5ms": {"controller.window_ms": 5.0},
    "arrival_100ms": {"sim.arrival_ms": 100.0},
    "arrival_1000ms": {"sim.arrival_ms": 1000.0},
    "instance_ready": {"controller.instance_ready": "drain"},
}


def flat(cfg) -> dict:
    out = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value

    walk(OmegaConf.to_container(cfg, resolve=True, enum_to_str=True), "")
    return out


@functools.cache
def proposed_base() -> dict:
    return flat(compose_with(["strategy=proposed"]))


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_each_variant_changes_exactly_what_it_names(registry, variant):
    base = proposed_base()
    got = flat(compose_with(["strategy=proposed", f"variant={variant}"]))
    changed = {k: got.get(k) for k in set(base) | set(got) if base.get(k) != got.get(k)}
    assert changed == VARIANTS[variant]


def test_every_variant_is_in_the_sensitivity_experiment():
    swept = {o.split("=")[1] for job in job_overrides("sensitivity") for o in job if o.startswith("variant=")}
    assert swept == set(VARIANTS)


def test_the_joblib_launcher_config_composes_with_safe_jax_settings():
    cfg = compose_with(["hydra/launcher=joblib_jax"], hydra=True)
    assert cfg.hydra.launcher._target_.endswith("JoblibLauncher") and cfg.hydra.launcher.n_jobs == 2
    env = cfg.hydra.job.env_set
    assert env.XLA_PYTHON_CLIENT_PREALLOCATE == "false" and "intra_op_parallelism_threads=1" in env.XLA_FLAGS


FAULTS = {
    "none": {"name": "none"},
    "ES1": {"name": "node_down", "nodes": ["ES1"], "start_ms": 50.0, "duration_ms": None, "isolate": False},
    "ES2": {"name": "node_down", "nodes": ["ES2"], "start_ms": 50.0, "duration_ms": None, "isolate": False},
    "ES3": {"name": "node_down", "nodes": ["ES3"], "start_ms": 50.0, "duration_ms": None, "isolate": False},
    "random_low": {"name": "random", "mtbf_ms": 2000.0, "mttr_ms": 50.0, "nodes": None},
    "random_high": {"name": "random", "mtbf_ms": 500.0, "mttr_ms": 50.0, "nodes": None},
}
BACKBONES = {
    "no_diversity": ("milp", {"kappa_mode": "off"}),
    "retention": ("milp", {"sparsity": "global", "kappa_mode": "retention"}),
    "per_service_2": ("milp", {"sparsity": "per_service", "kappa_mode": "fixed", "kappa": 2}),
    "least_loaded": ("least_loaded", {}),
}


def test_resilience_crosses_every_backbone_with_every_fault(registry):
    jobs = {tuple(sorted(o for o in job if not o.startswith("experiment="))) for job in job_overrides("resilience")}
    assert jobs == {tuple(sorted([f"backbone={b}", f"fault={f}"])) for b in BACKBONES for f in FAULTS}
    cfg = compose_with(["experiment=resilience"])
    assert (cfg.controller.name, cfg.scenario.name) == ("proposed", "paper")  # only the placement differs


@pytest.mark.parametrize("fault", list(FAULTS))
def test_each_fault_is_the_failure_model_it_names(registry, fault):
    cfg = compose_with([f"fault={fault}"])
    assert OmegaConf.to_container(cfg.failure) == FAULTS[fault]


@pytest.mark.parametrize("backbone", list(BACKBONES))
def test_each_backbone_is_the_placement_it_names(registry, backbone):
    name, options = BACKBONES[backbone]
    cfg = compose_with([f"backbone={backbone}"])
    assert cfg.placement.name == name
    assert {k: cfg.placement[k] for k in options} == options
