"""Frozen scenario instances: fixed numbers shipped as package data instead of ranges to sample.

A scenario config names one with ``frozen: <name>`` (``conf/scenario/icc2026.yaml``); its numbers are
the package data ``edgefm/scenario/data/<name>.json`` (read through `importlib.resources`, so they
ship in a wheel) and :func:`load_frozen` converts them, here and only here, to edgefm's units and
orders. ``edgefm/scenario/data/README.md`` describes each instance and its conversion.

A frozen spec is one instance: ``scenario.instances`` must be 1, and every range, node, link,
service, task type and user key of the spec must keep its default (the file gives every value).
``seed`` does not change a frozen scenario; it still seeds every random stream of the engine
(arrivals, light-service rates, fading), so seeds give independent realisations of one network.
"""

from __future__ import annotations

import dataclasses
import json
import math
from importlib import resources
from importlib.resources.abc import Traversable

import numpy as np

from edgefm.config.scenario import ScenarioSpec
from edgefm.errors import ConfigError
from edgefm.scenario.model import RESOURCES, Scenario
from edgefm.scenario.validate import ROOT, task_dag, validate_scenario

DATA_PACKAGE = "edgefm.scenario.data"
FIELD = f"{ROOT}.frozen"
# keys of a spec that a frozen scenario reads; every other key must keep its ScenarioSpec default
FROZEN_SPEC_KEYS = ("name", "instances", "frozen")

# units of the edge-msd-icc-paper-v1 files (the authors' simulator) -> edgefm
GBPS_PER_MB_PER_MS = 8.0  # 1 MB/ms = 8 Gbit/s (MB = 10^6 bytes): w = Gbps / 8, a hop of b MB takes 8 b / Gbps ms
MS_PER_S = 1000.0  # arrival rates: tasks/s / 1000 = tasks/ms


def frozen_names() -> tuple[str, ...]:
    """Names of the frozen instances shipped with edgefm (the ``*.json`` of ``edgefm.scenario.data``)."""
    root = resources.files(DATA_PACKAGE)
    return tuple(sorted(p.name[: -len(".json")] for p in root.iterdir() if p.name.endswith(".json")))


def frozen_file(name: str) -> Traversable:
    """The package-data file of frozen instance ``name`` (a ConfigError naming scenario.frozen if none)."""
    names = frozen_names()
    if not isinstance(name, str) or name not in names:
        raise ConfigError(FIELD, name, f"a frozen instance shipped with edgefm, one of {list(names)}")
    return resources.files(DATA_PACKAGE).joinpath(f"{name}.json")


def load_frozen(name: str) -> Scenario:
    """Frozen instance ``name`` as a validated `Scenario` (a fresh copy on every call)."""
    doc = json.loads(frozen_file(name).read_text(encoding="utf-8"))
    schema = doc.get("schema") if isinstance(doc, dict) else None
    if schema not in CONVERTERS:
        raise ConfigError(FIELD, name, f"a data file of a known schema, one of {list(CONVERTERS)}",
                          f"its schema is {schema!r}")  # fmt: skip
    scenario = CONVERTERS[schema](doc, name)
    validate_scenario(scenario)
    return scenario


@dataclasses.dataclass(frozen=True)
class _Where:
    """Names the place of a bad value in a data file: ``scenario.frozen[<name>].<path>``."""

    name: str

    def error(self, path: str, value, accepted: str) -> ConfigError:
        return ConfigError(f"{FIELD}[{self.name}].{path}", value, accepted, "the data file is corrupt")


def _edge_msd_icc_v1(doc: dict, name: str) -> Scenario:
    """Convert a file of schema ``edge-msd-icc-paper-v1`` (the authors' simulator, edge-msd-core).

    Resources are reordered from the file's ``resource_order`` to (CPU, RAM, GPU, VRAM); link
    bandwidth Gbps -> MB/ms (/8); propagation ms kept as the link length with a propagation speed of
    1 length unit per ms; arrival rates /s -> /ms (/1000); core rates are the sampled
    ``rate_mb_per_ms`` (the file's ``processing_ms`` is work / rate, checked); the file's
    ``parallel_cost`` is c_pl. Orders: nodes EDs then ESs (each in file order), services by
    ``paper_id``, links, task types and users in file order. Names are the file's.
    """
    at = _Where(name)
    sc = doc["scenario"]

    # --- resources: the file's order -> RESOURCES ----------------------------------------------
    order = [str(r).lower() for r in doc["resource_order"]]
    if sorted(order) != sorted(RESOURCES):
        raise at.error("resource_order", doc["resource_order"], f"a permutation of {[r.upper() for r in RESOURCES]}")
    perm = [order.index(r) for r in RESOURCES]

    def reorder(values, path: str) -> list[float]:
        if not isinstance(values, list) or len(values) != len(RESOURCES):
            raise at.error(path, values, f"{len(RESOURCES)} numbers in resource_order")
        return [float(values[i]) for i in perm]

    # --- nodes: EDs then ESs, each kind in file order ------------------------------------------
    kinds = {}
    for i, node in enumerate(sc["nodes"]):
        prefix = str(node["name"])[:2].lower()
        if prefix not in ("ed", "es"):
            raise at.error(f"scenario.nodes[{i}].name", node["name"], "a node name starting ed (device) or es (server)")
        kinds[i] = prefix == "es"
    node_rows = sorted(range(len(sc["nodes"])), key=lambda i: (kinds[i], i))
    node_names = tuple(str(sc["nodes"][i]["name"]) for i in node_rows)
    node_index = {n: v for v, n in enumerate(node_names)}
    node_is_server = np.array([kinds[i] for i in node_rows], dtype=bool)
    capacity = np.array([reorder(sc["nodes"][i]["resources"], f"scenario.nodes[{i}].resources") for i in node_rows])

    # --- links: [a, b, Gbps, propagation ms] ---------------------------------------------------
    ends, bandwidth, length = [], [], []
    for e, link in enumerate(sc["links"]):
        if not (isinstance(link, list) and len(link) == 4 and link[0] in node_index and link[1] in node_index):
            raise at.error(f"scenario.links[{e}]", link, "[node, node, bandwidth_gbps, propagation_ms]")
        ends.append([node_index[link[0]], node_index[link[1]]])
        bandwidth.append(float(link[2]) / GBPS_PER_MB_PER_MS)
        length.append(float(link[3]))

    # --- services: by paper_id -----------------------------------------------------------------
    quantities = doc["sampled_service_quantities"]
    rows = {str(s["name"]): s for s in sc["services"]}
    if set(rows) != set(quantities) or len(rows) != len(sc["services"]):
        raise at.error("scenario.services", sorted(rows), "the services of sampled_service_quantities, once each")
    service_names = tuple(sorted(rows, key=lambda n: int(quantities[n]["paper_id"])))
    ids = [int(quantities[n]["paper_id"]) for n in service_names]
    if ids != list(range(1, len(ids) + 1)):
        raise at.error("sampled_service_quantities", ids, "paper_id 1, 2, ... once each")
    M = len(service_names)
    is_core = np.array([rows[n]["kind"] == "core" for n in service_names], dtype=bool)
    resource = np.array([reorder(rows[n]["resources"], f"scenario.services.{n}.resources") for n in service_names])
    work = np.array([float(rows[n]["work_mb"]) for n in service_names])
    core_rate, light_shape, light_scale = np.full(M, np.nan), np.full(M, np.nan), np.full(M, np.nan)
    for m, n in enumerate(service_names):
        svc, q = rows[n], quantities[n]
        if svc["kind"] not in ("core", "light"):
            raise at.error(f"scenario.services.{n}.kind", svc["kind"], "core or light")
        if float(q["work_mb"]) != work[m]:
            raise at.error(f"sampled_service_quantities.{n}.work_mb", q["work_mb"],
                           f"the service's work_mb {work[m]!r}")  # fmt: skip
        if is_core[m]:
            core_rate[m] = float(q["rate_mb_per_ms"])
            if not math.isclose(float(svc["processing_ms"]), work[m] / core_rate[m], rel_tol=1e-12):
                raise at.error(f"scenario.services.{n}.processing_ms", svc["processing_ms"],
                               f"work_mb / rate_mb_per_ms = {work[m] / core_rate[m]!r}")  # fmt: skip
        else:
            light_shape[m], light_scale[m] = float(svc["gamma_shape"]), float(svc["gamma_scale"])

    def column(key: str) -> np.ndarray:
        return np.array([float(rows[n][key]) for n in service_names])

    # --- task types: file order; dependencies child -> parents ---------------------------------
    service_ids = {n: m for m, n in enumerate(service_names)}
    type_names = tuple(str(t["name"]) for t in sc["tasks"])
    dags = []
    for t in sc["tasks"]:
        deps = t["dependencies"]
        for child, parents in deps.items():
            for p in parents:
                if p not in deps:
                    raise at.error(f"scenario.tasks.{t['name']}.dependencies.{child}", parents,
                                   "parents that are services of the task (keys of dependencies)")  # fmt: skip
        edges = [[p, child] for child, parents in deps.items() for p in parents]
        dags.append(task_dag(str(t["name"]), {"edges": edges, "services": list(deps)}, service_ids))
    N, S = len(dags), max(len(d.services) for d in dags)
    P = max(1, max(len(p) for d in dags for p in d.parents))
    stage_service = np.full((N, S), -1, dtype=np.int64)
    stage_parents = np.full((N, S, P), -1, dtype=np.int64)
    stage_child = np.full((N, S), -1, dtype=np.int64)
    sink_stage = np.array([d.sink for d in dags], dtype=np.int64)
    for n, dag in enumerate(dags):
        stage_service[n, : len(dag.services)] = dag.services
        stage_child[n, : len(dag.child)] = dag.child
        for s, parents in enumerate(dag.parents):
            stage_parents[n, s, : len(parents)] = parents

    # --- users: file order ---------------------------------------------------------------------
    users = sc["users"]
    for i, u in enumerate(users):
        if u["gateway"] not in node_index:
            raise at.error(f"scenario.users[{i}].gateway", u["gateway"], f"a node, one of {list(node_names)}")
        if set(u["rates_per_second"]) != set(type_names):
            raise at.error(f"scenario.users[{i}].rates_per_second", sorted(u["rates_per_second"]),
                           f"a rate for each task type {list(type_names)}")  # fmt: skip
    arrival_rate = np.array([[float(u["rates_per_second"][t]) / MS_PER_S for t in type_names] for u in users])

    return Scenario(
        name=name,
        node_names=node_names,
        node_is_server=node_is_server,
        capacity=capacity,
        link_ends=np.array(ends, dtype=np.int64).reshape(-1, 2),
        link_bandwidth=np.array(bandwidth),
        link_length=np.array(length),
        propagation_speed=1.0,  # length unit = 1 ms of propagation
        service_names=service_names,
        service_is_core=is_core,
        resource=resource,
        work=work,
        output_size=column("output_mb"),
        core_rate=core_rate,
        light_shape=light_shape,
        light_scale=light_scale,
        cost_deploy=column("deployment_cost"),
        cost_maintain=column("maintenance_cost"),
        cost_payload=column("parallel_cost"),
        type_names=type_names,
        input_size=np.array([float(t["input_mb"]) for t in sc["tasks"]]),
        deadline=np.array([float(t["deadline_ms"]) for t in sc["tasks"]]),
        stage_service=stage_service,
        stage_parents=stage_parents,
        stage_child=stage_child,
        sink_stage=sink_stage,
        user_gateway=np.array([node_index[u["gateway"]] for u in users], dtype=np.int64),
        arrival_rate=arrival_rate,
        nakagami_m=np.array([float(u["nakagami_m"]) for u in users]),
        nakagami_omega=np.array([float(u["omega"]) for u in users]),
        meta={
            "spec": name,
            "frozen": name,
            "instance": 0,
            "source_schema": doc["schema"],
            "source_seed": doc.get("seed"),
            "user_names": tuple(str(u["name"]) for u in users),
        },
    )


CONVERTERS = {"edge-msd-icc-paper-v1": _edge_msd_icc_v1}


# ------------------------------------------------------------------------------------------------
def _spec_defaults() -> dict:
    return dataclasses.asdict(ScenarioSpec())


def frozen_scenario(spec: dict) -> Scenario:
    """The scenario of a spec (plain dict, schema applied) whose ``frozen`` key names an instance.

    Only ``name`` (the scenario's name), ``instances`` (must be 1) and ``frozen`` are read; any
    other key set away from its default is an error, since the data file gives every value.
    """
    name = spec.get("frozen")
    frozen_file(name)  # an unknown instance is reported first
    if not isinstance(spec.get("name"), str) or not spec["name"].strip():
        raise ConfigError(f"{ROOT}.name", spec.get("name"), "a non-empty name")
    if spec.get("instances") != 1:
        raise ConfigError(f"{ROOT}.instances", spec.get("instances"),
                          f"1 for a frozen scenario ({FIELD} = {name!r} is one fixed instance; "
                          "vary seed for independent realisations of its random streams)")  # fmt: skip
    defaults = _spec_defaults()
    for key, default in defaults.items():
        if key not in FROZEN_SPEC_KEYS and spec.get(key, default) != default:
            raise ConfigError(f"{ROOT}.{key}", spec[key], f"its default with {FIELD} = {name!r}: "
                              "the frozen instance gives every value (omit the key)")  # fmt: skip
    scenario = load_frozen(name)
    return dataclasses.replace(scenario, name=spec["name"], meta={**scenario.meta, "spec": spec["name"]})


__all__ = ["DATA_PACKAGE", "frozen_file", "frozen_names", "frozen_scenario", "load_frozen"]
