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
EXPERIMENTS = ("fig3_strategies", "fig4_load", "v_tradeoff", "sensitivity", "resilience", "crossval", "headline",
               "ladder", "breaking_point", "breaking_point_epsilon", "breaking_point_v", "breaking_point_mmpp",
               "light_tier")


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
    sizes = {"fig3_strategies": 4, "fig4_load": 20, "v_tradeoff": 14, "sensitivity": 13, "resilience": 24,
             "crossval": 4 * 3 * 3, "headline": 4 * 2 * 4, "ladder": 4 * 12 * 2, "breaking_point": 4 * 6,
             "breaking_point_epsilon": 2 * 3 * 6, "breaking_point_v": 2 * 7, "breaking_point_mmpp": 4 * 6, "light_tier": 2 * 6}
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
    others = {p.stem for p in (CONF / "variant").glob("*.yaml")} - set(VARIANTS)
    assert others == set(LADDER) | set(BACKBONE_VARIANTS) | set(LIGHT_TIER)  # ladders' rungs, headline's backbones


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


# ------------------------------------------------------------------------------------------------
# The closure ladder (experiment=ladder): each rung is the one before plus the closures it names.
LADDER = {  # rung: (the rung it builds on, the closures fields it flips, to these in-force values)
    "ladder_0_authors_code": (None, {}),
    "ladder_1_uplink": ("ladder_0_authors_code", {"channel": "nakagami", "fading": "block"}),  # fading: off has none
    "ladder_1b_roots_at_arrival": ("ladder_1_uplink", {"root_ready": "arrival"}),
    "ladder_2_light_order": ("ladder_1_uplink", {"light_order": "input_arrival"}),
    "ladder_3_core_dispatch": ("ladder_2_light_order", {"core_dispatch": "earliest_start"}),
    "ladder_4_candidates": ("ladder_3_core_dispatch", {"candidates": "all"}),
    "ladder_5_instance_ready": ("ladder_4_candidates", {"instance_ready": "none"}),
    "ladder_6_reserve": ("ladder_5_instance_ready", {"light_reserve": {"server": 0.25, "device": 0.0}}),
    "ladder_7_paper": ("ladder_6_reserve", {"arrival_ms": 200.0}),
    "ladder_8_growth": ("ladder_7_paper", {"plan_load": 2.0, "target_utilisation": 0.8, "plan_fit": "largest"}),
    "ladder_9_per_slot": ("ladder_8_growth", {"fading": "per_slot"}),
    "ladder_10_window_1s": ("ladder_9_per_slot", {"arrival_ms": 1000.0}),
}
BACKBONE_VARIANTS = {
    "backbone_1x": {"plan_load": 1.0, "target_utilisation": 1.0, "plan_fit": "exact"},
    "backbone_2x": {"plan_load": 2.0, "target_utilisation": 0.8, "plan_fit": "largest"},
}


@functools.cache
def rung_in_force(rung: str, strategy: str = "proposed") -> dict:
    from edgefm.config.closures import closures_in_force

    return closures_in_force(compose_with(["closures=authors_code", f"strategy={strategy}", f"variant={rung}"]))


@pytest.mark.parametrize("rung", list(LADDER))
def test_each_rung_of_the_ladder_flips_exactly_the_closures_it_names(rung):
    before, flips = LADDER[rung]
    got = rung_in_force(rung)
    base = rung_in_force(before) if before else rung_in_force("ladder_0_authors_code")
    changed = {k: v for k, v in got.items() if base.get(k) != v}
    assert changed == {k: (float(v) if isinstance(v, int) else v) for k, v in flips.items()}


def test_the_ladder_runs_from_authors_code_through_paper_to_realistic():
    from edgefm.config.closures import closures_in_force

    for strategy in ("proposed", "lbrr"):  # a least_loaded placement too: the rungs compose with every strategy
        for rung, preset in (("ladder_0_authors_code", "authors_code"), ("ladder_7_paper", "paper"),
                             ("ladder_10_window_1s", "realistic")):
            want = closures_in_force(compose_with([f"closures={preset}", f"strategy={strategy}"]))
            assert rung_in_force(rung, strategy) == want, (rung, strategy)
    swept = {o.split("=")[1] for job in job_overrides("ladder") for o in job if o.startswith("variant=")}
    assert swept == set(LADDER)
    loads = {float(o.split("=")[1]) for job in job_overrides("ladder") for o in job if o.startswith("workload.load=")}
    assert loads == {1.0, 1.5}


# The light-tier ladder (experiment=light_tier): each rung is the one before plus the fields it names.
LIGHT_TIER = {  # rung: (the rung it builds on, the config fields it changes, to these values)
    "light_tier_0_base": (None, {}),
    "light_tier_1_work_4x": ("light_tier_0_base", {"scenario.service_kinds.light.work": [2.0, 8.0]}),
    "light_tier_2_bursty": ("light_tier_1_work_4x", {
        "workload.name": "mmpp", "workload.burst_factor": 3.0, "workload.burst_fraction": 0.1,
        "workload.mean_burst_ms": 20.0}),
    "light_tier_3_epsilon": ("light_tier_2_bursty", {"controller.epsilon": 0.05}),
    "light_tier_4_work_16x": ("light_tier_3_epsilon", {"scenario.service_kinds.light.work": [8.0, 32.0]}),
    "light_tier_5_window": ("light_tier_4_work_16x", {"controller.window_ms": 5.0}),
}


@pytest.mark.parametrize("rung", list(LIGHT_TIER))
def test_each_rung_of_the_light_tier_ladder_changes_exactly_what_it_names(rung):
    before, changes = LIGHT_TIER[rung]
    got = flat(compose_with(["experiment=light_tier", "strategy=proposed", f"variant={rung}"]))
    base = flat(compose_with(["experiment=light_tier", "strategy=proposed", *([f"variant={before}"] if before else [])]))
    assert {k: got.get(k) for k in set(base) | set(got) if base.get(k) != got.get(k)} == changes
    assert (got["closures.name"], got["sim.arrival_ms"], got["placement.plan_load"]) == ("realistic", 200.0, 2.0)
    swept = {o.split("=")[1] for job in job_overrides("light_tier") for o in job if o.startswith("variant=")}
    assert swept == set(LIGHT_TIER)


@pytest.mark.parametrize("variant", list(BACKBONE_VARIANTS))
def test_each_backbone_of_the_headline_is_the_sizing_it_names(variant):
    cfg = compose_with(["experiment=headline", f"variant={variant}"])
    got = {k: cfg.placement[k] for k in BACKBONE_VARIANTS[variant]}
    assert got == BACKBONE_VARIANTS[variant] and cfg.closures.name == "paper"


def test_the_new_experiments_run_the_issues_grids():
    def values(experiment, key):
        return {o.split("=", 1)[1] for job in job_overrides(experiment) for o in job if o.startswith(key + "=")}

    cross = compose_with(["experiment=crossval"])
    assert (cross.closures.name, cross.scenario.name, cross.channel.name) == ("authors_code", "icc2026", "off")
    assert (cross.sim.arrival_ms, cross.sim.drain_ms) == (100.0, 100.0)
    assert values("crossval", "seed") == {"1", "2", "3"}
    assert {float(v) for v in values("crossval", "workload.load")} == {0.5, 1.0, 1.5}
    head = compose_with(["experiment=headline"])
    assert head.closures.name == "paper" and head.scenario.instances >= 30  # Fig. 3's full value
    assert {float(v) for v in values("headline", "workload.load")} == {1.0, 1.25, 1.5, 2.0}
    assert values("headline", "variant") == set(BACKBONE_VARIANTS)
    for experiment in ("breaking_point", "breaking_point_epsilon", "breaking_point_mmpp"):
        assert {float(v) for v in values(experiment, "workload.load")} == {0.5, 1.0, 1.5, 2.0, 2.5, 3.0}
    for load in (0.5, 3.0):  # the backbone sized for each load
        cfg = compose_with(["experiment=breaking_point", f"workload.load={load}"])
        assert (cfg.closures.name, cfg.placement.plan_load) == ("realistic", load)
    assert {float(v) for v in values("breaking_point_epsilon", "controller.epsilon")} == {0.05, 0.2, 0.4}
    v = compose_with(["experiment=breaking_point_v"])
    assert v.placement.plan_load == v.workload.load and not values("breaking_point_v", "workload.load")
    assert compose_with(["experiment=breaking_point_mmpp"]).workload.name == "mmpp"
