"""The Hydra configuration: every option of every group composes to typed nodes; typos and wrong types
are errors at compose time; plugins without a YAML file are group options all the same."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.errors import ConfigCompositionException
from omegaconf import OmegaConf

import edgefm
from edgefm.cli import make_component, sim_settings
from edgefm.config.scenario import ScenarioSpec
from edgefm.config.schema import CoreDispatch, EdgefmConfig, OutputConfig, SimConfig, default_config_dir, register_all
from edgefm.errors import ConfigError, PluginError
from edgefm.interfaces import AbstractController, traced
from edgefm.interfaces import options as component_options
from edgefm.plugins import KINDS, Registry, config_schema, register_configs
from edgefm.runner import SimSettings

from conftest import resolved_option

CONF = Path(__file__).resolve().parents[1] / "conf"
COMPONENT_GROUPS = KINDS  # placement, controller, channel, workload, failure
GLOBAL_GROUPS = ("closures", "strategy", "variant", "fault", "backbone", "experiment", "sweep", "debug")  # `# @package _global_` deltas


@pytest.fixture(scope="module")
def registry() -> Registry:
    registry = Registry.default()
    register_all(registry, conf_dir=CONF)
    return registry


def compose_with(overrides: list[str], conf: Path = CONF, hydra: bool = False):
    with initialize_config_dir(str(conf), version_base="1.3"):
        return compose("config", overrides=overrides, return_hydra_config=hydra)


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_the_repository_conf_is_the_default_config_dir(monkeypatch, tmp_path):
    monkeypatch.delenv("EDGEFM_CONFIG_DIR", raising=False)
    assert default_config_dir() == CONF
    monkeypatch.setenv("EDGEFM_CONFIG_DIR", str(tmp_path))
    assert default_config_dir() == tmp_path.resolve()


def test_every_group_has_its_options():
    groups = sorted(p.name for p in CONF.iterdir() if p.is_dir())
    assert groups == sorted(["scenario", *COMPONENT_GROUPS, "sim", "output", *GLOBAL_GROUPS, "hydra"])
    assert options("strategy") == ["ga", "lbrr", "propavg", "proposed"]
    assert options("experiment") == ["baseline", "breaking_point", "breaking_point_epsilon", "breaking_point_mmpp",
                                     "breaking_point_v", "crossval", "fig3_strategies", "fig4_load", "headline",
                                     "ladder", "light_tier", "resilience", "sensitivity", "v_tradeoff"]
    assert options("failure") == ["link_down", "node_down", "none", "random"]
    assert sorted(p.stem for p in (CONF / "hydra" / "launcher").glob("*.yaml")) == [
        "joblib_jax", "ray_cluster", "slurm"]
    assert options("scenario") == ["icc2026", "paper", "small"]
    assert options("closures") == ["authors_code", "paper", "realistic"]
    assert options("channel") == ["nakagami", "off", "rayleigh"]
    assert options("workload") == ["mmpp", "poisson"]
    assert options("sweep") == ["load", "seeds", "v"]


def test_default_config_is_the_papers_method_on_its_scenario_under_the_paper_closures(registry):
    cfg = compose_with([], hydra=True)

    assert OmegaConf.get_type(cfg) is EdgefmConfig
    assert (cfg.seed, cfg.task, cfg.scenario.name, cfg.closures.name) == (0, "edgefm", "paper", "paper")
    # strategy proposed: the integer program on SCIP for the core tier, Algorithm 1 with g^EC for the light tier
    assert [cfg[k].name for k in COMPONENT_GROUPS] == ["milp", "proposed", "nakagami", "poisson", "none"]
    strategy = compose_with(["strategy=proposed"], hydra=True)
    for group in ("placement", "controller"):
        assert OmegaConf.to_container(cfg[group], resolve=True) == OmegaConf.to_container(strategy[group], resolve=True)
    assert cfg.workload.load == 1.0
    assert cfg.hydra.run.dir.startswith("outputs/edgefm/runs/")
    assert cfg.hydra.sweep.dir.startswith("outputs/edgefm/multiruns/")
    assert cfg.hydra.sweep._get_node("subdir")._value() == "${hydra.job.num}"
    assert cfg.hydra.job.chdir is False


@pytest.mark.parametrize("group", ["scenario", *COMPONENT_GROUPS, "sim", "output"])
def test_every_option_of_every_group_composes_to_its_schema(registry, group):
    for option in options(group):
        cfg = compose_with([f"{group}={option}"])
        node = cfg[group]
        if group in COMPONENT_GROUPS:
            cls = registry.resolve(group, option)
            assert node.name == option
            assert issubclass(OmegaConf.get_type(node), cls.Config)
            component = make_component(registry, group, node)
            assert type(component) is getattr(cls, "builds", cls)  # a preset builds its class
            # built without the `name` field, with the node's options
            values = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "name"}
            assert {k: component_options(component)[k] for k in values} == {
                k: float(v) if isinstance(v, int) and not isinstance(v, bool) else v for k, v in values.items()}
        else:
            expected = {"scenario": ScenarioSpec, "sim": SimConfig, "output": OutputConfig}[group]
            assert OmegaConf.get_type(node) is expected, (group, option)


def test_every_builtin_plugin_has_a_documented_yaml(registry):
    for kind in COMPONENT_GROUPS:
        for row in registry.entries(kind):
            if row.distribution == "edgefm":
                path = CONF / kind / f"{row.name}.yaml"
                assert path.is_file(), path
                text = path.read_text()
                assert text.startswith("#") and f"base_{row.name}" in text


@pytest.mark.parametrize("group", GLOBAL_GROUPS)
def test_every_global_delta_composes(registry, group):
    # variants change options of milp and of the Lyapunov controllers: compose them with those
    extra = ["strategy=proposed"] if group == "variant" else []
    for option in options(group):
        cfg = compose_with([*extra, f"{group}={option}"], hydra=True)
        assert OmegaConf.get_type(cfg) is EdgefmConfig
        if group == "sweep":
            assert len(cfg.hydra.sweeper.params) >= 1


def test_debug_shrinks_the_run(registry):
    cfg = compose_with(["debug=default"])
    assert cfg.scenario.name == "small"
    assert (cfg.sim.realisations, cfg.sim.arrival_ms, cfg.sim.drain_ms) == (2, 20.0, 40.0)


def test_baseline_experiment_is_paper_least_loaded_lbrr_at_load_1(registry):
    cfg = compose_with(["experiment=baseline"])
    assert cfg.scenario.name == "paper"
    assert (cfg.placement.name, cfg.controller.name, cfg.workload.name, cfg.workload.load) == (
        "least_loaded", "lbrr", "poisson", 1.0,
    )


def test_sweeps_sweep_the_keys_users_rely_on(registry):
    load = compose_with(["sweep=load"], hydra=True).hydra.sweeper.params
    seeds = compose_with(["sweep=seeds"], hydra=True).hydra.sweeper.params
    assert list(load) == ["workload.load"] and list(seeds) == ["seed"]


def test_keys_users_rely_on_can_be_overridden(registry):
    cfg = compose_with([
        "seed=7", "sim.realisations=3", "sim.slot_ms=0.5", "sim.arrival_ms=10", "sim.drain_ms=5",
        "workload=mmpp", "workload.load=1.5", "scenario.instances=2", "channel=rayleigh",
        "placement=least_loaded", "controller=lbrr", "sim.core_dispatch=idle_only",
    ])
    assert cfg.seed == 7 and cfg.scenario.instances == 2
    assert (cfg.sim.realisations, cfg.sim.slot_ms, cfg.sim.arrival_ms, cfg.sim.drain_ms) == (3, 0.5, 10.0, 5.0)
    assert (cfg.workload.name, cfg.workload.load, cfg.channel.name) == ("mmpp", 1.5, "rayleigh")
    assert cfg.sim.core_dispatch is CoreDispatch.idle_only
    settings = sim_settings(cfg.sim)
    assert settings.core_dispatch == "idle_only" and settings.quantiles == (0.5, 0.9, 0.95, 0.99)


@pytest.mark.parametrize(
    "override",
    [
        "sim.realisatons=3",  # misspelt key
        "controller.foo=1",  # key the plugin's Config does not have
        "workload.lod=2",
        "scenario.nodez=1",
        "seeed=1",
        "sim.realisations=abc",  # wrong type
        "workload.load=abc",
        "seed=1.5",
        "sim.core_dispatch=fastest",  # not one of the enum values
        "controller=lbrrr",  # not an option of the group
    ],
)
def test_typos_and_wrong_types_fail_when_composing(registry, override):
    with pytest.raises(ConfigCompositionException):
        compose_with([override])


def test_a_typo_inside_a_yaml_file_fails_when_composing(registry, tmp_path):
    conf = tmp_path / "conf"
    shutil.copytree(CONF, conf)
    (conf / "channel" / "typo.yaml").write_text("defaults:\n  - base_nakagami\n  - _self_\nbandwith: 0.2\n")
    (conf / "sim" / "typo.yaml").write_text("defaults:\n  - base_sim\n  - _self_\nrealisations: many\n")

    with pytest.raises(ConfigCompositionException):
        compose_with(["channel=typo"], conf=conf)
    with pytest.raises(ConfigCompositionException):
        compose_with(["sim=typo"], conf=conf)


def test_a_key_added_with_plus_is_rejected_before_the_run(registry):
    cfg = compose_with(["+controller.foo=1"])  # Hydra's `+` bypasses the schema ...

    with pytest.raises(ConfigError, match=r"controller\.foo"):  # ... the run does not
        make_component(registry, "controller", cfg.controller)


def test_a_misspelt_plugin_name_lists_the_known_ones(registry):
    cfg = compose_with(["controller.name=lbrrr"])

    with pytest.raises(ConfigError, match=r"controller = 'lbrrr' is invalid: one of: .*lbrr"):
        make_component(registry, "controller", cfg.controller)


def test_sim_schema_has_the_fields_and_defaults_of_the_runner_settings():
    schema = {f.name: f for f in dataclasses.fields(SimConfig)}
    settings = {f.name: f for f in dataclasses.fields(SimSettings)}
    assert list(schema) == list(settings)
    converted = sim_settings(OmegaConf.structured(SimConfig))
    assert converted == SimSettings()
    # and the documented YAML says what the schema says, except the default number of realisations
    yaml = resolved_option("sim", "default")
    schema_defaults = OmegaConf.to_container(OmegaConf.structured(SimConfig), enum_to_str=True)
    for key in settings:
        if key != "realisations":
            assert yaml[key] == schema_defaults[key], key


# ----------------------------------------------------------------------------------------------
# Component schemas: a `name` field, and an option for a plugin without YAML


class ThirdPartyController(AbstractController):
    name = "third_party_ctrl"

    gain: float = traced(1.5)

    def act(self, state, obs, ctx, params, key):
        return None, state


def test_config_schema_adds_the_plugin_name_and_keeps_the_fields():
    schema = config_schema("controller", ThirdPartyController)

    assert issubclass(schema, ThirdPartyController.Config) and schema.__name__ == "ThirdPartyControllerConfig"
    assert [f.name for f in dataclasses.fields(schema)] == ["gain", "name"]
    assert schema().name == "third_party_ctrl" and schema().gain == 1.5


def test_a_config_with_its_own_name_field_is_a_plugin_error():
    @dataclasses.dataclass
    class Named:
        name: str = "x"

    cls = type("Named", (ThirdPartyController,), {"name": "named", "Config": Named})
    with pytest.raises(PluginError, match="reserves"):
        config_schema("controller", cls)


def _fresh_registry(*classes) -> Registry:
    import pluggy

    from edgefm import hookspecs

    class Plugin:
        @edgefm.hookimpl
        def edgefm_register_controllers(self):
            return list(classes)

    pm = pluggy.PluginManager("edgefm")
    pm.add_hookspecs(hookspecs)
    pm.register(Plugin())
    return Registry.from_plugin_manager(pm)


def test_a_third_party_plugin_without_yaml_is_a_group_option(registry, tmp_path):
    cs = ConfigStore.instance()
    third = _fresh_registry(ThirdPartyController)
    try:
        register_configs(third, cs, yaml_dirs=[CONF])
        assert "third_party_ctrl.yaml" in cs.list("controller")

        cfg = compose_with(["controller=third_party_ctrl", "controller.gain=2.5"])
        assert OmegaConf.get_type(cfg.controller).__name__ == "ThirdPartyControllerConfig"
        assert cfg.controller.name == "third_party_ctrl"
        component = make_component(third, "controller", cfg.controller)
        assert isinstance(component, ThirdPartyController) and float(component.gain) == 2.5
        with pytest.raises(ConfigCompositionException):
            compose_with(["controller=third_party_ctrl", "controller.gian=2.5"])
    finally:
        for name in ("third_party_ctrl.yaml", "base_third_party_ctrl.yaml"):
            cs.repo["controller"].pop(name, None)


def test_a_yaml_file_takes_precedence_over_the_generated_option(tmp_path):
    yaml_dir = tmp_path / "conf"
    (yaml_dir / "controller").mkdir(parents=True)
    (yaml_dir / "controller" / "third_party_ctrl.yaml").write_text("defaults: [base_third_party_ctrl, _self_]\n")
    cs = ConfigStore.instance()
    try:
        register_configs(_fresh_registry(ThirdPartyController), cs, yaml_dirs=[yaml_dir])
        assert "base_third_party_ctrl.yaml" in cs.list("controller")
        assert "third_party_ctrl.yaml" not in cs.list("controller")
    finally:
        cs.repo["controller"].pop("base_third_party_ctrl.yaml", None)


# ----------------------------------------------------------------------------------------------
# Closure presets (docs/SEMANTICS.md §13)


def test_every_preset_sets_every_closure_and_paper_is_every_default(registry):
    """Each preset states every field of `ClosuresConfig`; `paper` equals the schema's defaults and
    the defaults of the Python API (a run without Hydra runs the default preset)."""
    from edgefm_channels import NakagamiChannel
    from edgefm_lyapunov import LyapunovConfig
    from edgefm_milp_scip.milp import MilpConfig

    from edgefm.config.schema import ClosuresConfig

    fields = [f.name for f in dataclasses.fields(ClosuresConfig)]
    for option in options("closures"):
        node = OmegaConf.load(CONF / "closures" / f"{option}.yaml").closures
        assert list(node) == fields, option
        assert node.name == option
    paper = OmegaConf.to_container(OmegaConf.load(CONF / "closures" / "paper.yaml").closures)
    assert paper == dataclasses.asdict(ClosuresConfig())
    sim, milp, ctrl = SimSettings(), MilpConfig(), LyapunovConfig()
    python_api = dict(
        fading=NakagamiChannel.Config().fading, root_ready=sim.root_ready, light_order=sim.light_order,
        core_dispatch=sim.core_dispatch, instance_ready=ctrl.instance_ready, candidates=ctrl.candidates,
        light_reserve=milp.reserve, plan_load=milp.plan_load, target_utilisation=milp.target_utilisation,
        arrival_ms=sim.arrival_ms, drain_ms=sim.drain_ms,
    )
    assert python_api == {k: paper[k] for k in python_api}


@pytest.mark.parametrize("preset", ["paper", "authors_code", "realistic"])
def test_a_preset_puts_its_closures_in_force_and_an_override_wins(registry, preset):
    from edgefm.config.closures import closure_changes, closures_in_force

    node = OmegaConf.load(CONF / "closures" / f"{preset}.yaml").closures
    cfg = compose_with([f"closures={preset}", "strategy=proposed"])
    in_force = closures_in_force(cfg)
    assert in_force["channel"] == node.channel and cfg.channel.name == node.channel
    assert in_force["light_order"] == node.light_order and cfg.sim.light_order.value == node.light_order
    assert cfg.controller.instance_ready == node.instance_ready and cfg.controller.candidates == node.candidates
    assert cfg.placement.plan_load == node.plan_load and cfg.sim.arrival_ms == node.arrival_ms
    assert ("fading" in in_force) == (node.channel != "off")
    assert closure_changes(cfg) == []
    other = "dispatch" if node.light_order == "input_arrival" else "input_arrival"
    cfg = compose_with([f"closures={preset}", "strategy=proposed", f"sim.light_order={other}", "channel=rayleigh",
                        "closures.plan_load=3"])
    assert cfg.sim.light_order.value == other and cfg.channel.name == "rayleigh" and cfg.placement.plan_load == 3
    overrides = [f"sim.light_order={other}", "closures.plan_load=3"]
    # rayleigh reads channel.fading from the preset, so only its name differs
    assert closure_changes(cfg, overrides) == ["channel.name=rayleigh", f"sim.light_order={other}", "closures.plan_load=3"]


def test_an_unknown_preset_and_bad_closure_values_are_errors(registry):
    with pytest.raises(ConfigCompositionException, match="closures"):
        compose_with(["closures=nope"])
    cfg = compose_with(["closures.light_order=lifo"])
    with pytest.raises(Exception, match="lifo"):
        sim_settings(cfg.sim)


@pytest.mark.parametrize("overrides, label, warned", [
    (["strategy=proposed"], "proposed", False),
    (["strategy=proposed", "controller.epsilon=0.2"], "proposed", False),  # same pair, another option
    (["strategy=proposed", "controller=lbrr"], "milp+lbrr", True),  # not the pair strategy=proposed names
    (["strategy=lbrr", "placement=milp", "controller=propavg"], "propavg", True),  # the paper's name of the pair
    (["placement=least_loaded", "controller=ga"], "ga", False),  # no strategy named: the pair's paper name
    (["placement=milp", "controller=lbrr"], "milp+lbrr", False),
    (["strategy=proposed", "strategy=mine"], "mine", False),  # a strategy of one's own keeps its name
])
def test_the_strategy_label_is_the_pair_the_run_uses(registry, overrides, label, warned):
    from edgefm.runner import prepare

    base = ["scenario=small", "sim.memory_check=false"]
    with initialize_config_dir(str(CONF), version_base="1.3"):
        if "strategy=mine" in overrides:  # a strategy key set by hand, as a plugin's group would
            cfg = compose("config", overrides=[*base, "strategy=proposed"])
            OmegaConf.update(cfg, "strategy", "mine")
        else:
            cfg = compose("config", overrides=[*base, *overrides])
    job = prepare(cfg, registry, overrides=[])
    assert job.strategy == label
    mislabel = [w for w in job.warnings if w.startswith("strategy=")]
    assert bool(mislabel) == warned
    if warned:
        assert f"labelled {label}" in mislabel[0] and len(mislabel[0].splitlines()) == 1
