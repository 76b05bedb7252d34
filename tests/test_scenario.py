"""Scenario specs: the paper and small YAMLs, the sampler, and validation errors."""

from __future__ import annotations

import copy
import dataclasses
import functools
import math
from pathlib import Path

import numpy as np
import pytest
from omegaconf import OmegaConf

from edgefm.errors import ConfigError
from edgefm.scenario import (
    RESOURCES,
    Scenario,
    build_scenario,
    build_scenario_from_dict,
    build_scenarios,
    load_spec,
    spec_to_dict,
    validate_scenario,
)

CONF = Path(__file__).resolve().parents[1] / "conf"
PAPER = CONF / "scenario" / "paper.yaml"
SMALL = CONF / "scenario" / "small.yaml"

PAPER_SERVICES = [
    ("text_preprocess", False), ("image_preprocess", False), ("audio_preprocess", False),
    ("text_encoder", True), ("image_encoder", True), ("audio_encoder", True), ("compression", False),
    ("projection_c", True), ("projection_l", False), ("multimodal_fusion", True), ("reasoning", True),
    ("postprocess_qa", False), ("postprocess_crossmodal", False), ("postprocess_classification", False),
    ("postprocess_driving", False),
]  # fmt: skip
ARRAY_FIELDS = [f.name for f in dataclasses.fields(Scenario) if f.name not in ("meta",)]


def assert_same(a: Scenario, b: Scenario) -> None:
    for name in ARRAY_FIELDS:
        x, y = getattr(a, name), getattr(b, name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=name)
        else:
            assert x == y, name


@functools.cache
def _small_yaml() -> dict:
    raw = OmegaConf.to_container(OmegaConf.load(SMALL))
    raw.pop("defaults")
    return raw


def small_dict() -> dict:
    """The small spec as a plain dict (a fresh copy each call, so tests can mutate it)."""
    return copy.deepcopy(_small_yaml())


@pytest.fixture(scope="module")
def paper() -> Scenario:
    return build_scenarios(PAPER, seed=0)[0]


@pytest.fixture(scope="module")
def paper_many() -> list[Scenario]:
    spec = load_spec(PAPER)
    spec.instances = 20
    return build_scenarios(spec, seed=11)


# ---------------------------------------------------------------------------------------------
def test_paper_sizes(paper):
    assert paper.name == "paper"
    assert paper.num_nodes == 10
    assert paper.node_names == tuple(f"ED{i}" for i in range(1, 8)) + ("ES1", "ES2", "ES3")
    np.testing.assert_array_equal(paper.node_is_server, [False] * 7 + [True] * 3)
    assert paper.num_services == 15
    assert [(n, bool(c)) for n, c in zip(paper.service_names, paper.service_is_core)] == PAPER_SERVICES
    assert paper.core_services.tolist() == [3, 4, 5, 7, 9, 10]  # 6 core
    assert len(paper.light_services) == 9
    assert paper.type_names == ("open_domain_qa", "cross_modal_understanding", "classification", "multimodal_driving")
    assert paper.num_types == 4 and paper.num_users == 7
    assert paper.max_stages == 8  # multimodal driving: 2, 3, 5, 6, 7, 8, 10, 15
    assert paper.stage_parents.shape == (4, 8, 2)  # projection_c and fusion-style merges have 2 parents
    assert paper.capacity.shape == (10, 4) and paper.link_ends.shape == (10, 2)
    assert math.isinf(paper.propagation_speed)
    assert paper.meta == {"spec": "paper", "seed": 0, "instance": 0, "user_names": tuple(f"user_ED{i}" for i in range(1, 8))}


def test_paper_topology(paper):
    links = {frozenset(paper.node_names[i] for i in e) for e in paper.link_ends.tolist()}
    expected = [("ES1", "ES2"), ("ES2", "ES3"), ("ES1", "ES3")]
    expected += [(f"ED{i}", "ES1") for i in (1, 2, 3)] + [(f"ED{i}", "ES2") for i in (4, 5)]
    expected += [(f"ED{i}", "ES3") for i in (6, 7)]
    assert links == {frozenset(e) for e in expected}
    gateways = [paper.node_names[g] for g in paper.user_gateway]
    assert gateways == ["ES1"] * 3 + ["ES2"] * 2 + ["ES3"] * 2
    assert np.all(paper.arrival_rate > 0)  # every user issues all four types


def test_paper_dags_by_hand(paper):
    # MODEL.md §9 with service ids 1-based there, 0-based here (id - 1)
    assert paper.stage_service.tolist() == [
        [0, 3, 7, 10, 11, -1, -1, -1],  # QA 1->4->8->11->12
        [0, 1, 3, 4, 7, 9, 12, -1],  # cross-modal
        [1, 4, 8, 10, 13, -1, -1, -1],  # classification 2->5->9->11->14
        [1, 2, 4, 5, 6, 7, 9, 14],  # driving
    ]
    # cross-modal understanding: stages s0=text_pre s1=image_pre s2=text_enc s3=image_enc
    # s4=projection_c s5=fusion s6=post_crossmodal; 1->4, 2->5, {4,5}->8->10->13
    n = 1
    assert paper.stage_child[n].tolist() == [2, 3, 4, 4, 5, 6, -1, -1]
    assert paper.stage_parents[n].tolist() == [[-1, -1], [-1, -1], [0, -1], [1, -1], [2, 3], [4, -1], [5, -1], [-1, -1]]
    assert paper.sink_stage.tolist() == [4, 6, 4, 7]
    # driving: s0=image_pre s1=audio_pre s2=image_enc s3=audio_enc s4=compression s5=proj_c s6=fusion s7=post
    assert paper.stage_child[3].tolist() == [2, 3, 5, 4, 5, 6, 7, -1]
    assert paper.stage_parents[3, 5].tolist() == [2, 4]
    assert paper.stages_of(0) == [0, 1, 2, 3, 4]


def test_paper_values_in_table_one(paper_many):
    core_ranges = {"cpu": (2, 16), "ram": (1, 4), "gpu": (4, 32), "vram": (4, 32)}
    light_ranges = {"cpu": (0.5, 2), "ram": (0, 0.5), "gpu": (0.25, 4), "vram": (0, 1)}
    ed = {"cpu": (1, 64), "ram": (1, 32), "gpu": (0, 64), "vram": (0, 64)}
    es = {"cpu": (128, 256), "ram": (64, 128), "gpu": (1024, 2048), "vram": (256, 512)}

    def inside(x, lo, hi):
        return bool(np.all((np.asarray(x) >= lo) & (np.asarray(x) <= hi)))

    for sc in paper_many:
        core, light = sc.service_is_core, ~sc.service_is_core
        for k, r in enumerate(RESOURCES):
            assert inside(sc.resource[core, k], *core_ranges[r])
            assert inside(sc.resource[light, k], *light_ranges[r])
            assert inside(sc.capacity[~sc.node_is_server, k], *ed[r])
            assert inside(sc.capacity[sc.node_is_server, k], *es[r])
        assert inside(sc.work[core], 2, 16) and inside(sc.work[light], 0.5, 2)
        assert inside(sc.output_size[core], 0.1, 1) and inside(sc.output_size[light], 0.25, 1.5)
        assert inside(sc.core_rate[core], 8, 32) and np.all(np.isnan(sc.core_rate[light]))
        assert inside(sc.light_shape[light], 1, 2) and inside(sc.light_scale[light], 1, 20)
        assert np.all(np.isnan(sc.light_shape[core])) and np.all(np.isnan(sc.light_scale[core]))
        assert np.all(sc.cost_deploy == np.where(core, 20, 4))
        assert np.all(sc.cost_maintain == np.where(core, 4, 1))
        assert np.all(sc.cost_payload == np.where(core, 0, 0.5))
        assert inside(sc.input_size, 0.5, 4) and inside(sc.deadline, 50, 100)
        assert inside(sc.arrival_rate, 0.15, 1.5)
        assert inside(sc.nakagami_m, 1.5, 3) and inside(sc.nakagami_omega, 0.5, 1)
        assert inside(sc.link_bandwidth, 0.1, 1.0) and np.all(sc.link_length == 0)
    # values really are spread over the ranges (not stuck at an end)
    deadlines = np.concatenate([sc.deadline for sc in paper_many])
    assert deadlines.min() < 60 and deadlines.max() > 90


def test_instances_are_independent_of_count():
    spec = load_spec(PAPER)
    one = build_scenarios(spec, seed=5)
    spec.instances = 5
    five = build_scenarios(spec, seed=5)
    assert len(one) == 1 and len(five) == 5
    assert_same(one[0], five[0])
    assert_same(build_scenario(spec, 5, instance=3), five[3])
    assert five[3].meta["instance"] == 3
    assert not np.array_equal(five[0].capacity, five[1].capacity)


def test_seed_reproducible_and_distinct():
    a, b, c = (build_scenarios(PAPER, seed=s)[0] for s in (1, 1, 2))
    assert_same(a, b)
    for name in ("capacity", "resource", "work", "deadline", "arrival_rate", "link_bandwidth"):
        assert not np.array_equal(getattr(a, name), getattr(c, name)), name


def test_hydra_compose_paper_and_typo(tmp_path):
    from hydra import compose, initialize_config_dir
    from hydra.core.config_store import ConfigStore
    from hydra.errors import ConfigCompositionException

    from edgefm.config.scenario import ScenarioSpec, register_scenario_configs

    register_scenario_configs(ConfigStore.instance())
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(overrides=["+scenario=paper"])
    assert OmegaConf.get_type(cfg.scenario) is ScenarioSpec
    assert_same(build_scenarios(cfg.scenario, seed=0)[0], build_scenarios(PAPER, seed=0)[0])

    (tmp_path / "scenario").mkdir()
    text = SMALL.read_text().replace("link_bandwidth:", "link_bandwith:")
    (tmp_path / "scenario" / "typo.yaml").write_text(text)
    with initialize_config_dir(config_dir=str(tmp_path), version_base="1.3"):
        with pytest.raises(ConfigCompositionException, match="link_bandwith"):
            compose(overrides=["+scenario=typo"])


def test_small_builds():
    sc = build_scenarios(SMALL, seed=0)[0]
    assert sc.num_nodes == 3 and sc.num_services == 4 and sc.num_types == 2 and sc.num_users == 2
    assert sc.service_is_core.tolist() == [False, True, True, False]
    assert sc.stage_service.tolist() == [[0, 1, 3, -1], [0, 1, 2, 3]]
    assert sc.stage_parents[1].tolist() == [[-1, -1], [-1, -1], [0, 1], [2, -1]]
    assert sc.stage_child.tolist() == [[1, 2, -1, -1], [2, 2, 3, -1]]
    assert [sc.node_names[g] for g in sc.user_gateway] == ["ES1", "ED2"]
    assert np.all((sc.arrival_rate >= 0.05) & (sc.arrival_rate <= 0.2))
    assert np.all((sc.deadline >= 30) & (sc.deadline <= 60))
    # every service fits on the ES, all core services together too
    es = np.flatnonzero(sc.node_is_server)[0]
    assert np.all(sc.resource.sum(axis=0) <= sc.capacity[es])


def test_overrides_defaults_and_single_service_type():
    d = small_dict()
    d["services"]["encoder"]["rate"] = [10, 10]
    d["services"]["preprocess"]["cost_deploy"] = 7
    d["task_types"]["solo"] = {"services": ["encoder"], "deadline": [42, 42]}
    d["users"] = None  # one user per ED, gateway = its ES
    sc = build_scenario_from_dict(d, seed=3)
    assert sc.core_rate[1] == 10.0 and sc.cost_deploy[0] == 7.0 and sc.cost_deploy[3] == 4.0
    assert sc.stage_service[2].tolist() == [1, -1, -1, -1] and sc.sink_stage[2] == 0
    assert sc.deadline[2] == 42.0
    assert sc.meta["user_names"] == ("user_ED1", "user_ED2")
    assert [sc.node_names[g] for g in sc.user_gateway] == ["ES1", "ES1"]
    # a user issuing one type has zero rate for the others
    d["users"] = [{"name": "u", "gateway": "ED1", "types": ["merge"]}]
    sc = build_scenario_from_dict(d, seed=3)
    assert sc.arrival_rate[0, 1] > 0 and sc.arrival_rate[0, 0] == 0 and sc.arrival_rate[0, 2] == 0


def test_streams_are_stable_under_unrelated_changes():
    d = small_dict()
    base = build_scenario_from_dict(d, seed=4)
    d["services"]["encoder"]["work"] = [1.5, 1.5]
    changed = build_scenario_from_dict(d, seed=4)
    assert changed.work[1] == 1.5
    np.testing.assert_array_equal(np.delete(base.work, 1), np.delete(changed.work, 1))
    np.testing.assert_array_equal(base.deadline, changed.deadline)
    np.testing.assert_array_equal(base.arrival_rate, changed.arrival_rate)


# ---------------------------------------------------------------------------------------------
def _set(d: dict, path: str, value) -> None:
    keys = path.split(".")
    for k in keys[:-1]:
        d = d[int(k)] if isinstance(d, list) else d[k]
    last = keys[-1]
    if isinstance(d, list):
        d[int(last)] = value
    else:
        d[last] = value


BAD_SPECS = [
    # (path to set, value, regex the message must match)
    ("task_types.chain.services", ["nope"], r"scenario\.task_types\.chain\.services\[0\] = 'nope'.*declared in scenario\.services"),
    ("task_types.chain.edges", [["preprocess", "ghost"]], r"scenario\.task_types\.chain\.edges\[0\].*unknown service 'ghost'"),
    ("task_types.chain.edges", [["preprocess", "encoder"], ["encoder", "preprocess"]], r"scenario\.task_types\.chain\.edges = .*acyclic"),
    ("task_types.chain.edges", [["encoder", "encoder"]], r"scenario\.task_types\.chain\.edges\[0\].*acyclic"),
    ("task_types.chain.edges", [["preprocess", "encoder"], ["preprocess", "fusion"], ["encoder", "postprocess"], ["fusion", "postprocess"]],
     r"scenario\.task_types\.chain\.edges = .*at most one successor"),
    ("task_types.chain.edges", [["preprocess", "encoder"], ["fusion", "postprocess"]], r"scenario\.task_types\.chain\.edges = .*exactly one sink"),
    ("task_types.chain.edges", [["preprocess", "encoder"], ["preprocess", "encoder"]], r"scenario\.task_types\.chain\.edges\[1\].*duplicate edge"),
    ("task_types.chain", {"edges": [], "services": []}, r"scenario\.task_types\.chain = .*at least one service"),
    ("users", [{"name": "u", "gateway": "ES1"}, {"name": "u", "gateway": "ED1"}], r"scenario\.users\[1\]\.name = 'u'.*duplicate"),
    ("users.0.types", ["chain", "chain"], r"scenario\.users\[0\]\.types\[1\].*duplicate"),
    ("users.0.types", ["chain", "nope"], r"scenario\.users\[0\]\.types\[1\] = 'nope'.*task type"),
    ("links", [["ED1", "ES1"], ["ES1", "ED1"], ["ED2", "ES1"]], r"scenario\.links\[1\].*duplicate link"),
    ("links", [["ED1", "ES1"], ["ED2", "ES9"]], r"scenario\.links\[1\].*unknown node 'ES9'"),
    ("links", [["ED1", "ES1"], ["ED2", "ED2"]], r"scenario\.links\[1\].*itself"),
    ("links", [["ED1", "ES1"]], r"scenario\.links = \[\['ED1', 'ES1'\]\].*connected node graph \(\['ED2'\] not reachable"),
    ("users.1.gateway", "ES7", r"scenario\.users\[1\]\.gateway = 'ES7'.*node declared in scenario\.nodes"),
    ("instances", 0, r"scenario\.instances = 0.*integer >= 1"),
    ("user_defaults.arrival_rate", [-0.1, 0.2], r"scenario\.user_defaults\.arrival_rate = \[-0\.1, 0\.2\].*>= 0"),
    ("users.0.arrival_rate", [0.1, float("nan")], r"scenario\.users\[0\]\.arrival_rate.*finite"),
    ("node_kinds.ES.cpu", [1, float("inf")], r"scenario\.node_kinds\.ES\.cpu.*finite"),
    ("node_kinds.ED.vram", [-1, 4], r"scenario\.node_kinds\.ED\.vram = \[-1\.0, 4\.0\].*>= 0"),
    ("task_defaults.deadline", [0, 10], r"scenario\.task_defaults\.deadline.*> 0"),
    ("task_defaults.deadline", [60, 30], r"scenario\.task_defaults\.deadline = \[60\.0, 30\.0\].*low <= high.*low > high"),
    ("task_types.merge.input_size", [-1, 1], r"scenario\.task_types\.merge\.input_size.*>= 0"),
    ("link_bandwidth", [0, 1], r"scenario\.link_bandwidth = \[0\.0, 1\.0\].*> 0"),
    ("link_length", [1, 2, 3], r"scenario\.link_length.*\[low, high\]"),
    ("services.encoder.work", [-1, 2], r"scenario\.services\.encoder\.work = \[-1\.0, 2\.0\]"),
    ("services.encoder.rate", [0, 0], r"scenario\.services\.encoder\.rate.*> 0"),
    ("services.preprocess.rate", [1, 2], r"scenario\.services\.preprocess\.rate.*no rate for a light service"),
    ("services.preprocess.gamma_shape", [3, 1], r"scenario\.services\.preprocess\.gamma_shape.*low > high"),
    ("services.encoder.cost_deploy", -1, r"scenario\.services\.encoder\.cost_deploy = -1\.0.*>= 0"),
    ("service_kinds.light.cost_maintain", float("inf"), r"scenario\.service_kinds\.light\.cost_maintain.*finite"),
    ("services.encoder.kind", "heavy", r"scenario\.services\.encoder\.kind = 'heavy'.*core.*light"),
    ("nodes.ES1", "CLOUD", r"scenario\.nodes\.ES1 = 'CLOUD'.*ED.*ES"),
    ("user_defaults.nakagami_m", [0.2, 1], r"scenario\.user_defaults\.nakagami_m.*>= 0\.5"),
    ("propagation_speed", 0.0, r"scenario\.propagation_speed = 0\.0"),
    ("name", "", r"scenario\.name = ''"),
    ("users", [], r"scenario\.users = \[\].*at least one user"),
    ("task_types", {}, r"scenario\.task_types = \{\}.*at least one task type"),
    # schema errors (unknown key, wrong type) also name the field
    ("services.encoder.wrk", [1, 2], r"scenario\.services\.encoder\.wrk = 'wrk'.*one of \[.*'work'"),
    ("servces", {}, r"scenario\.servces = 'servces'.*ScenarioSpec"),
    ("instances", "many", r"scenario\.instances = 'many'"),
]


@pytest.mark.parametrize("path, value, pattern", BAD_SPECS, ids=[f"{p}={v!r}"[:60] for p, v, _ in BAD_SPECS])
def test_bad_spec_raises_config_error(path, value, pattern):
    d = small_dict()
    _set(d, path, copy.deepcopy(value))
    with pytest.raises(ConfigError, match=pattern):
        build_scenarios(d, seed=0)


def test_bad_seed_and_unfittable_service():
    with pytest.raises(ConfigError, match=r"seed = -1.*integer >= 0"):
        build_scenarios(small_dict(), seed=-1)
    d = small_dict()
    d["services"]["fusion"]["vram"] = [1000, 1000]
    with pytest.raises(ConfigError, match=r"scenario\.services\.fusion = .*fits the capacity of at least one node"):
        build_scenarios(d, seed=0)


def test_spec_to_dict_applies_defaults():
    d = spec_to_dict({"name": "x"})
    assert d["service_kinds"]["core"]["rate"] == [8.0, 32.0]
    assert d["users"] is None and d["instances"] == 1
    assert d["frozen"] is None  # sampled from the ranges (a name: a frozen instance, tests/test_scenario_icc2026.py)


def test_validate_built_scenario():
    sc = build_scenarios(SMALL, seed=0)[0]
    validate_scenario(sc)
    with pytest.raises(ConfigError, match=r"scenario\.deadline\[1\] = -5\.0.*> 0"):
        validate_scenario(dataclasses.replace(sc, deadline=np.array([40.0, -5.0])))
    with pytest.raises(ConfigError, match=r"scenario\.capacity\[0, 2\] = nan"):
        cap = sc.capacity.copy()
        cap[0, 2] = np.nan
        validate_scenario(dataclasses.replace(sc, capacity=cap))
    with pytest.raises(ConfigError, match=r"scenario\.link_bandwidth\[0\] = inf"):
        validate_scenario(dataclasses.replace(sc, link_bandwidth=np.array([np.inf, 1.0])))
    with pytest.raises(ConfigError, match=r"scenario\.link_ends = \[\[0, 2\]\].*connected.*\['ED2'\]"):
        validate_scenario(dataclasses.replace(sc, link_ends=sc.link_ends[:1], link_bandwidth=sc.link_bandwidth[:1],
                                              link_length=sc.link_length[:1]))  # fmt: skip
    child = sc.stage_child.copy()
    child[1, 2] = 0  # fusion -> preprocess: a cycle, and parents no longer match
    with pytest.raises(ConfigError, match=r"scenario\.task_types\.merge\.stage_"):
        validate_scenario(dataclasses.replace(sc, stage_child=child))
    with pytest.raises(ConfigError, match=r"scenario\.arrival_rate = 'shape \(2, 3\)'.*shape \(2, 2\)"):
        validate_scenario(dataclasses.replace(sc, arrival_rate=np.zeros((2, 3))))
    with pytest.raises(ConfigError, match=r"scenario\.user_gateway\[0\] = 7\.0.*node index"):
        validate_scenario(dataclasses.replace(sc, user_gateway=np.array([7, 0])))


# ---------------------------------------------------------------------------------------------
# scenario.hostable_reserve: keep only the instances that can host their core demand


def brute_force_hostable(sc, reserve: float) -> bool:
    """Enumerate every integer x[v,m] <= req_m (tiny instances only)."""
    import itertools

    from edgefm.scenario.hostable import core_demand

    req = core_demand(sc)
    core = np.flatnonzero(req > 0)
    room = (1 - reserve) * sc.capacity
    for x in itertools.product(*[range(req[m] + 1) for _ in range(sc.num_nodes) for m in core]):
        x = np.asarray(x).reshape(sc.num_nodes, core.size)
        if np.all(x.sum(0) >= req[core]) and np.all(x @ sc.resource[core] <= room + 1e-9):
            return True
    return False


def test_hostable_agrees_with_brute_force_on_tight_small_instances():
    from edgefm.scenario.hostable import core_demand, hostable

    base = build_scenario_from_dict(small_dict(), seed=0)
    req = core_demand(base)
    assert req.sum() >= 1 and base.num_nodes <= 3
    seen = set()
    rng = np.random.default_rng(0)
    for trial in range(40):
        # shrink the capacity until the demand is near the edge of what fits
        scale = rng.uniform(0.02, 0.4)
        sc = dataclasses.replace(base, capacity=base.capacity * scale)
        reserve = float(rng.choice([0.0, 0.1, 0.3]))
        got = hostable(sc, reserve)
        assert got == brute_force_hostable(sc, reserve), (trial, scale, reserve)
        seen.add(got)
    assert seen == {True, False}  # both outcomes exercised


def test_hostable_reserve_keeps_the_draws_that_fit_and_only_those():
    from edgefm.scenario.hostable import hostable

    spec = load_spec(PAPER)
    spec.instances = 12
    every = build_scenarios(spec, seed=0)
    fits = [i for i, sc in enumerate(every) if hostable(sc, 0.1)]
    assert 0 < len(fits) < 12  # the paper's ranges give some networks too small for the demand
    spec.instances = 4
    spec.hostable_reserve = 0.1
    kept = build_scenarios(spec, seed=0)
    assert [sc.meta["instance"] for sc in kept] == fits[:4]
    for sc in kept:
        assert_same(sc, every[sc.meta["instance"]])
    spec.hostable_reserve = 0.99
    with pytest.raises(ConfigError, match="hostable_reserve"):
        build_scenarios(spec, seed=0)
    spec.hostable_reserve = 1.5
    with pytest.raises(ConfigError, match="fraction in"):
        build_scenarios(spec, seed=0)
