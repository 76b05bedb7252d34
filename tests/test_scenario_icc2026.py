"""The frozen icc2026 scenario: every array against the numbers of its package-data JSON, the Hydra
config `scenario=icc2026`, and the errors of a frozen spec (instances, range keys, unknown names).

The expected values are read from the JSON here, independently of `edgefm.scenario.frozen`, with the
file's own units: resources in its `resource_order` (CPU, GPU, RAM, VRAM), link bandwidth in Gbit/s,
arrival rates per second, DAGs as child -> parents.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import hashlib
import json
import math
import tomllib
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from edgefm.config.scenario import ScenarioSpec
from edgefm.errors import ConfigError
from edgefm.network import shortest_path_delays
from edgefm.reference.network import hop_delay
from edgefm.scenario import RESOURCES, build_scenario, build_scenarios, frozen_names, load_frozen, load_spec
from edgefm.scenario import frozen as frozen_module
from edgefm.scenario.validate import validate_scenario

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "conf"
YAML = CONF / "scenario" / "icc2026.yaml"
SHA256 = "98a8ac8a16655d8b061f63787a63682a467b01b1b36274245684ab7f714379c4"  # the published file, unchanged
NODES = tuple(f"ed{i}" for i in range(1, 8)) + ("es1", "es2", "es3")
SERVICES = (
    "text_preprocess", "image_preprocess", "audio_preprocess", "text_encoder", "image_encoder",
    "audio_encoder", "compression", "projection_c", "projection_l", "multimodal_fusion", "reasoning",
    "postprocess_qa", "postprocess_crossmodal", "postprocess_classification", "postprocess_driving",
)  # fmt: skip
TYPES = ("open_domain_qa", "cross_modal_understanding", "classification", "multimodal_driving")


def _data_file():
    return resources.files("edgefm.scenario.data").joinpath("icc2026.json")


@pytest.fixture(scope="module")
def doc() -> dict:
    return json.loads(_data_file().read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def sc():
    return load_frozen("icc2026")


def file_to_edgefm_resources(values) -> list[float]:
    cpu, gpu, ram, vram = values  # the file's resource_order
    return [cpu, ram, gpu, vram]  # edgefm's RESOURCES


def by_name(rows: list[dict]) -> dict[str, dict]:
    return {r["name"]: r for r in rows}


# ---------------------------------------------------------------------------------------------
def test_the_json_is_package_data_and_unchanged(doc):
    assert "icc2026" in frozen_names()
    data = _data_file()
    assert data.is_file()
    assert hashlib.sha256(data.read_bytes()).hexdigest() == SHA256
    assert doc["schema"] == "edge-msd-icc-paper-v1" and doc["seed"] == 2026
    assert doc["resource_order"] == ["CPU", "GPU", "RAM", "VRAM"]
    assert doc["paper_resource_order"] == ["CPU", "RAM", "GPU", "VRAM"] == [r.upper() for r in RESOURCES]
    # the wheel ships it: pyproject's package-data of edgefm.scenario.data matches the file name
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert any(fnmatch.fnmatch("icc2026.json", p) for p in package_data["edgefm.scenario.data"])


def test_the_loader_reads_through_importlib_resources_not_the_repository(tmp_path, monkeypatch, doc):
    # a stand-in data package with a changed copy: load_frozen must see the change
    changed = json.loads(json.dumps(doc))
    changed["scenario"]["tasks"][0]["deadline_ms"] = 77.0
    (tmp_path / "icc2026.json").write_text(json.dumps(changed))
    real_files = resources.files
    monkeypatch.setattr(frozen_module.resources, "files",
                        lambda pkg: tmp_path if pkg == "edgefm.scenario.data" else real_files(pkg))  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert load_frozen("icc2026").deadline[0] == 77.0


def test_names_orders_and_kinds(sc, doc):
    assert sc.name == "icc2026"
    assert sc.node_names == NODES  # devices then servers, as conf/scenario/paper.yaml
    np.testing.assert_array_equal(sc.node_is_server, [False] * 7 + [True] * 3)
    file_ids = {name: q["paper_id"] for name, q in doc["sampled_service_quantities"].items()}
    assert sc.service_names == SERVICES == tuple(sorted(file_ids, key=file_ids.get))
    assert [file_ids[n] for n in sc.service_names] == list(range(1, 16))
    assert sc.service_names == tuple(s["name"] for s in doc["scenario"]["services"])
    services = by_name(doc["scenario"]["services"])
    np.testing.assert_array_equal(sc.service_is_core, [services[n]["kind"] == "core" for n in SERVICES])
    assert sc.core_services.tolist() == [3, 4, 5, 7, 9, 10]
    assert sc.type_names == TYPES == tuple(t["name"] for t in doc["scenario"]["tasks"])
    assert sc.meta["user_names"] == tuple(u["name"] for u in doc["scenario"]["users"])
    assert sc.meta["user_names"] == tuple(f"user_ed{i}" for i in range(1, 8))
    assert sc.meta["frozen"] == "icc2026" and sc.meta["source_seed"] == 2026 and sc.meta["instance"] == 0
    validate_scenario(sc)


def test_capacities_in_edgefm_resource_order(sc, doc):
    nodes = by_name(doc["scenario"]["nodes"])
    expected = np.array([file_to_edgefm_resources(nodes[n]["resources"]) for n in NODES])
    np.testing.assert_array_equal(sc.capacity, expected)
    # e.g. es1: CPU 173.4, RAM 84.4, GPU 1345.2, VRAM 286.2
    np.testing.assert_allclose(sc.capacity[7], [173.44780986733295, 84.3954538520797, 1345.1947433613395,
                                                286.1695089982452])  # fmt: skip
    # the reordered values lie in the paper's Table I ranges (the file's order would not)
    table = doc["table_i"]["resource_ranges_in_paper_order"]
    for rows, kind in ((~sc.node_is_server, "ed"), (sc.node_is_server, "es")):
        low, high = np.array(table[kind]).T
        assert np.all((sc.capacity[rows] >= low) & (sc.capacity[rows] <= high)), kind


def test_services(sc, doc):
    services = by_name(doc["scenario"]["services"])
    quantities = doc["sampled_service_quantities"]
    expected = np.array([file_to_edgefm_resources(services[n]["resources"]) for n in SERVICES])
    np.testing.assert_array_equal(sc.resource, expected)
    for m, n in enumerate(SERVICES):
        svc = services[n]
        low, high = np.array(doc["table_i"]["resource_ranges_in_paper_order"][svc["kind"]]).T
        assert np.all((sc.resource[m] >= low) & (sc.resource[m] <= high)), n
        assert sc.work[m] == svc["work_mb"] == quantities[n]["work_mb"], n
        assert sc.output_size[m] == svc["output_mb"], n
        assert (sc.cost_deploy[m], sc.cost_maintain[m], sc.cost_payload[m]) == (
            svc["deployment_cost"], svc["maintenance_cost"], svc["parallel_cost"]), n
        if svc["kind"] == "core":
            assert sc.core_rate[m] == quantities[n]["rate_mb_per_ms"], n
            assert math.isclose(svc["processing_ms"], sc.work[m] / sc.core_rate[m], rel_tol=1e-12), n
            assert math.isnan(sc.light_shape[m]) and math.isnan(sc.light_scale[m]), n
        else:
            assert "rate_mb_per_ms" not in quantities[n] and math.isnan(sc.core_rate[m]), n
            assert (sc.light_shape[m], sc.light_scale[m]) == (svc["gamma_shape"], svc["gamma_scale"]), n
            assert sc.mean_light_rate[m] == svc["gamma_shape"] * svc["gamma_scale"], n
    np.testing.assert_array_equal(sc.cost_deploy, np.where(sc.service_is_core, 20.0, 4.0))
    np.testing.assert_array_equal(sc.cost_payload, np.where(sc.service_is_core, 0.0, 0.5))
    assert sc.core_rate[3] == 13.02598690966927  # text_encoder


def test_task_types_dags_deadlines_inputs(sc, doc):
    tasks = by_name(doc["scenario"]["tasks"])
    for n, t in enumerate(TYPES):
        assert sc.deadline[n] == tasks[t]["deadline_ms"] and sc.input_size[n] == tasks[t]["input_mb"], t
        deps = tasks[t]["dependencies"]
        stages = sc.stages_of(n)
        names = [SERVICES[sc.stage_service[n, s]] for s in stages]
        assert sorted(names) == sorted(deps), t
        assert names == sorted(deps, key=SERVICES.index), t  # stages sorted by service id
        # every [parent, child] edge, from the stage arrays both ways, against child -> parents
        want = {(p, c) for c, parents in deps.items() for p in parents}
        from_child = {(names[s], names[sc.stage_child[n, s]]) for s in stages if sc.stage_child[n, s] >= 0}
        from_parents = {(names[p], names[s]) for s in stages for p in sc.stage_parents[n, s] if p >= 0}
        assert from_child == want == from_parents, t
        sinks = [c for c in deps if not any(c in ps for ps in deps.values())]
        assert [names[sc.sink_stage[n]]] == sinks, t
    assert sc.stage_service.tolist() == [
        [0, 3, 7, 10, 11, -1, -1, -1],
        [0, 1, 3, 4, 7, 9, 12, -1],
        [1, 4, 8, 10, 13, -1, -1, -1],
        [1, 2, 4, 5, 6, 7, 9, 14],
    ]  # the paper's Fig. 1, as conf/scenario/paper.yaml
    np.testing.assert_array_equal(sc.deadline, [63.99958720979463, 54.195469448134546, 61.58491106961536,
                                                82.97847665364205])  # fmt: skip


def test_users_rates_per_ms_gateways_and_fading(sc, doc):
    users = doc["scenario"]["users"]
    expected = np.array([[u["rates_per_second"][t] / 1000 for t in TYPES] for u in users])
    np.testing.assert_array_equal(sc.arrival_rate, expected)
    assert np.all((sc.arrival_rate >= 0.15) & (sc.arrival_rate <= 1.5))  # Table I, tasks/ms
    assert sc.arrival_rate[0, 0] == 916.2130766100099 / 1000
    assert sc.arrival_rate.sum() == pytest.approx(24.861875813670856, rel=1e-12)  # tasks/ms at load 1x
    assert [sc.node_names[g] for g in sc.user_gateway] == [u["gateway"] for u in users]
    assert [sc.node_names[g] for g in sc.user_gateway] == ["es1"] * 3 + ["es2"] * 2 + ["es3"] * 2
    np.testing.assert_array_equal(sc.nakagami_m, [u["nakagami_m"] for u in users])
    np.testing.assert_array_equal(sc.nakagami_omega, [u["omega"] for u in users])
    # one user per ED, at its position, entering through the ES its ED is linked to
    links = {frozenset(link[:2]) for link in doc["scenario"]["links"]}
    nodes = by_name(doc["scenario"]["nodes"])
    for u in users:
        ed = u["name"].removeprefix("user_")
        assert u["position"] == nodes[ed]["position"] and frozenset((ed, u["gateway"])) in links, u["name"]


def test_links_bandwidth_in_mb_per_ms_and_one_hop_delays(sc, doc):
    links = doc["scenario"]["links"]
    assert [[sc.node_names[a], sc.node_names[b]] for a, b in sc.link_ends.tolist()] == [link[:2] for link in links]
    np.testing.assert_array_equal(sc.link_bandwidth, [link[2] / 8 for link in links])  # Gbit/s -> MB/ms
    np.testing.assert_array_equal(sc.link_length, [link[3] for link in links])
    assert all(link[3] == 0.0 for link in links) and sc.propagation_speed == 1.0
    assert np.all((sc.link_bandwidth >= 0.1) & (sc.link_bandwidth <= 1.0))  # Table I's wired range
    for b in (0.6145143236892038, 1.0, 3.5841516277233323):  # payloads in MB
        delays = shortest_path_delays(sc, b)
        for e, (x, y, gbps, prop_ms) in enumerate(links):
            want = 8 * b / gbps + prop_ms  # the file's hop delay, ms
            assert hop_delay(b, sc.link_bandwidth[e], sc.link_length[e], sc.propagation_speed) == want
            # every link of this instance is also the shortest path between its ends
            assert delays[NODES.index(x), NODES.index(y)] == want == delays[NODES.index(y), NODES.index(x)]


# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def schemas() -> None:
    """Every schema in Hydra's ConfigStore, as the CLI registers them before composing."""
    from edgefm.config.schema import register_all
    from edgefm.plugins import Registry

    register_all(Registry.default(), conf_dir=CONF)


def compose_root(overrides: list[str]):
    """The root config of `edgefm <overrides>` (needs the `schemas` fixture)."""
    with initialize_config_dir(str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides)


def assert_same(a, b) -> None:
    """Every field but the free-form meta is equal."""
    for f in dataclasses.fields(a):
        if f.name == "meta":
            continue
        x, y = getattr(a, f.name), getattr(b, f.name)
        if isinstance(x, np.ndarray):
            np.testing.assert_array_equal(x, y, err_msg=f.name)
        else:
            assert x == y, f.name


def test_hydra_config_composes_to_the_same_scenario_whatever_the_seed(schemas, sc):
    cfg = compose_root(["scenario=icc2026", "seed=7"])
    assert OmegaConf.get_type(cfg.scenario) is ScenarioSpec
    assert (cfg.scenario.name, cfg.scenario.frozen, cfg.scenario.instances) == ("icc2026", "icc2026", 1)
    (built,) = build_scenarios(cfg.scenario, cfg.seed)
    assert_same(built, sc)
    (other,) = build_scenarios(cfg.scenario, seed=0)
    assert_same(other, sc)
    assert_same(build_scenario(load_spec(YAML), seed=3), sc)
    assert built.meta == sc.meta and built.meta["spec"] == "icc2026" and built.meta["instance"] == 0


def test_instances_above_one_is_a_config_error(schemas):
    cfg = compose_root(["scenario=icc2026", "scenario.instances=2"])
    with pytest.raises(ConfigError, match=r"^scenario\.instances = 2 is invalid: 1 for a frozen scenario"):
        build_scenarios(cfg.scenario, cfg.seed)
    with pytest.raises(ConfigError, match=r"^instance = 1 is invalid: 0: scenario\.frozen = 'icc2026'"):
        build_scenario(load_spec(YAML), seed=0, instance=1)


@pytest.mark.parametrize("override, field", [
    ("scenario.link_bandwidth=[1,2]", "link_bandwidth"),
    ("scenario.hostable_reserve=0.1", "hostable_reserve"),
    ("scenario.propagation_speed=2.0", "propagation_speed"),
    ("+scenario.nodes.ES9=ES", "nodes"),
])  # fmt: skip
def test_a_range_or_topology_key_beside_frozen_is_a_config_error(schemas, override, field):
    cfg = compose_root(["scenario=icc2026", override])
    with pytest.raises(ConfigError, match=rf"^scenario\.{field} = .*frozen instance gives every value"):
        build_scenarios(cfg.scenario, cfg.seed)


def test_a_renamed_frozen_scenario_keeps_its_numbers(sc):
    (renamed,) = build_scenarios({"name": "mine", "frozen": "icc2026"}, seed=0)
    assert renamed.name == "mine" and renamed.meta["spec"] == "mine"
    assert_same(dataclasses.replace(renamed, name="icc2026"), sc)


def test_an_unknown_frozen_name_lists_the_shipped_ones():
    with pytest.raises(ConfigError, match=r"^scenario\.frozen = 'icc2025' is invalid: .*one of \[.*'icc2026'"):
        build_scenarios({"name": "x", "frozen": "icc2025"}, seed=0)
    with pytest.raises(ConfigError, match=r"^scenario\.frozen = '\.\./icc2026'"):
        load_frozen("../icc2026")
