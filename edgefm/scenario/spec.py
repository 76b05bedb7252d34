"""Sampling scenario instances from a scenario spec (Table I sampler).

A spec with ``frozen: <name>`` is not sampled: it is the one fixed instance
`edgefm.scenario.frozen.load_frozen` reads from package data (``seed`` does not change it).

Instance i of a spec is drawn from ``numpy.random.default_rng([seed, i])``, so it does not depend on
how many instances are drawn. Within an instance the uniform variates are drawn in fixed-size blocks
(nodes, links, services, task types, users), one column per quantity whether or not an entity uses
it, so that changing one range or one service kind does not shift the draws of the others.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from collections.abc import Mapping, Sequence
from os import PathLike
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from edgefm.config.scenario import ScenarioSpec
from edgefm.errors import ConfigError
from edgefm.scenario.frozen import frozen_scenario
from edgefm.scenario.model import RESOURCES, Scenario
from edgefm.scenario.validate import (
    ROOT,
    resolve_users,
    task_dag,
    validate_scenario,
    validate_spec,
)

# Columns of the per-service block of uniform variates.
SERVICE_COLUMNS = ("cpu", "ram", "gpu", "vram", "work", "output_size", "rate", "gamma_shape", "gamma_scale")
USER_COLUMNS = ("nakagami_m", "nakagami_omega")


def _schema_error(err: OmegaConfBaseException) -> ConfigError:
    key = getattr(err, "full_key", None) or ""
    msg = str(getattr(err, "msg", err)).splitlines()[0]
    obj = getattr(err, "object_type", None)
    if obj is not None and dataclasses.is_dataclass(obj) and "not in" in msg:
        return _unknown_key(f"{ROOT}.{key}", key.rsplit(".", 1)[-1], obj)
    return ConfigError(f"{ROOT}.{key}" if key else ROOT, None, f"a value of the scenario schema ({msg})")


def _unknown_key(field: str, key, cls) -> ConfigError:
    return ConfigError(field, key, f"a key of {cls.__name__}, one of {[f.name for f in dataclasses.fields(cls)]}")


def _coerce(value: Any, typ: Any, field: str) -> Any:
    """Apply the structured schema ``typ`` to a plain value, as OmegaConf would, but fast.

    Unknown keys, missing required keys and values of the wrong type raise ConfigError naming
    ``field``. Numbers are converted to float where the schema says float.
    """
    origin = typing.get_origin(typ)
    if origin is typing.Union:  # Optional[X]
        if value is None:
            return None
        (inner,) = [a for a in typing.get_args(typ) if a is not type(None)]
        return _coerce(value, inner, field)
    if value is None:
        raise ConfigError(field, None, f"a value of type {getattr(typ, '__name__', typ)} (null is not accepted)")
    if dataclasses.is_dataclass(typ):
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            value = dataclasses.asdict(value)
        if not isinstance(value, Mapping):
            raise ConfigError(field, value, f"a mapping with the keys of {typ.__name__}")
        hints = _type_hints(typ)
        names = {f.name: f for f in dataclasses.fields(typ)}
        for key in value:
            if key not in names:
                raise _unknown_key(f"{field}.{key}", key, typ)
        out = {}
        for name, f in names.items():
            if f.default_factory is not dataclasses.MISSING:
                default = f.default_factory()
            elif f.default is not dataclasses.MISSING and not (isinstance(f.default, str) and f.default == "???"):
                default = f.default
            else:
                default = dataclasses.MISSING
            if name in value:
                given = value[name]
                if dataclasses.is_dataclass(default) and isinstance(given, Mapping):
                    given = _deep_merge(dataclasses.asdict(default), given)  # as OmegaConf.merge does
            elif default is dataclasses.MISSING:
                raise ConfigError(f"{field}.{name}", None, "a value: this key is required")
            else:
                given = default
            out[name] = _coerce(given, hints[name], f"{field}.{name}")
        return out
    if origin in (dict, Dict):
        key_type, value_type = typing.get_args(typ)
        if not isinstance(value, Mapping):
            raise ConfigError(field, value, "a mapping")
        return {_coerce(k, key_type, field): _coerce(v, value_type, f"{field}.{k}") for k, v in value.items()}
    if origin in (list, List):
        (item_type,) = typing.get_args(typ)
        if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, Sequence):
            raise ConfigError(field, value, "a list")
        return [_coerce(v, item_type, f"{field}[{i}]") for i, v in enumerate(value)]
    if typ is float:
        if isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(field, value, "a number")
    if typ is int:
        if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
            return int(value)
        if isinstance(value, str) and value.strip().lstrip("+-").isdigit():
            return int(value)
        raise ConfigError(field, value, "an integer")
    if typ is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(field, value, "a string")
    raise TypeError(f"unsupported schema type {typ!r} at {field}")  # a bug in ScenarioSpec, not in input


def _deep_merge(base: dict, update: Mapping) -> dict:
    out = dict(base)
    for key, value in update.items():
        if isinstance(out.get(key), dict) and isinstance(value, Mapping):
            out[key] = _deep_merge(out[key], value)
        else:
            out[key] = value
    return out


@functools.cache
def _type_hints(cls) -> dict:
    return typing.get_type_hints(cls)


def spec_to_dict(spec_cfg: Any) -> dict:
    """Apply the structured schema to a spec (dict, DictConfig, ScenarioSpec or YAML path).

    Returns a plain dict with every key of ScenarioSpec (omitted keys take their defaults). Unknown
    keys and values of the wrong type raise ConfigError naming the key.
    """
    if isinstance(spec_cfg, (str, PathLike)):
        spec_cfg = _load_yaml(spec_cfg)
    if isinstance(spec_cfg, DictConfig):
        try:
            spec_cfg = OmegaConf.to_container(spec_cfg, resolve=True, throw_on_missing=True)
        except OmegaConfBaseException as err:
            raise _schema_error(err) from None
    if isinstance(spec_cfg, Mapping) and "defaults" in spec_cfg:
        spec_cfg = {k: v for k, v in spec_cfg.items() if k != "defaults"}
    return _coerce(spec_cfg, ScenarioSpec, ROOT)


def _load_yaml(path: str | PathLike) -> DictConfig:
    raw = OmegaConf.load(Path(path))
    if not isinstance(raw, DictConfig):
        raise ConfigError(ROOT, str(path), "a YAML mapping")
    if "defaults" in raw:
        raw = OmegaConf.masked_copy(raw, [k for k in raw if k != "defaults"])
    return raw


def load_spec(path: str | PathLike) -> DictConfig:
    """Load a scenario YAML (e.g. ``conf/scenario/paper.yaml``) without Hydra, schema applied.

    The Hydra ``defaults`` list of the file is dropped; the schema plays the role of base_scenario.
    Returns a structured DictConfig (edit it with attribute access; a misspelt key is an error).
    """
    raw = _load_yaml(path)
    try:
        return OmegaConf.merge(OmegaConf.structured(ScenarioSpec), raw)
    except OmegaConfBaseException as err:
        raise _schema_error(err) from None


def _check_seed(seed) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError("seed", seed, "an integer >= 0")
    return int(seed)


def build_scenarios(spec_cfg: Any, seed: int) -> list[Scenario]:
    """Validate a spec and sample its ``instances`` scenario instances.

    ``spec_cfg`` is the ``scenario`` node of a Hydra config, a plain dict, a ScenarioSpec or a YAML
    path. Instance i is drawn from ``default_rng([seed, i])``: the same whatever ``instances`` is.
    A frozen spec (``frozen: <name>``) gives its one instance, whatever the seed.
    """
    seed = _check_seed(seed)
    spec = spec_to_dict(spec_cfg)
    if spec.get("frozen") is not None:
        return [frozen_scenario(spec)]
    validate_spec(spec)
    reserve = spec.get("hostable_reserve")
    if reserve is None:
        return [_sample(spec, seed, i) for i in range(spec["instances"])]
    # keep the first `instances` draws whose core demand the network can host (draw i stays draw i,
    # so the kept instances do not depend on how many are asked for)
    from edgefm.scenario.hostable import hostable

    kept, limit = [], 20 * spec["instances"] + 20
    for i in range(limit):
        scenario = _sample(spec, seed, i)
        if hostable(scenario, float(reserve)):
            kept.append(scenario)
            if len(kept) == spec["instances"]:
                return kept
    raise ConfigError(
        f"{ROOT}.hostable_reserve", reserve,
        f"a reserve that leaves room for the core demand: only {len(kept)} of {limit} sampled instances can host it",
    )


def build_scenario(spec_cfg: Any, seed: int, instance: int = 0) -> Scenario:
    """Instance ``instance`` of a spec alone (identical to ``build_scenarios(...)[instance]``)."""
    seed = _check_seed(seed)
    if isinstance(instance, bool) or not isinstance(instance, (int, np.integer)) or instance < 0:
        raise ConfigError("instance", instance, "an integer >= 0")
    spec = spec_to_dict(spec_cfg)
    if spec.get("frozen") is not None:
        if instance != 0:
            raise ConfigError("instance", instance, f"0: {ROOT}.frozen = {spec['frozen']!r} is a single instance")
        return frozen_scenario(spec)
    validate_spec(spec)
    return _sample(spec, seed, int(instance))


def build_scenario_from_dict(spec: dict, seed: int = 0, instance: int = 0) -> Scenario:
    """Build one instance from a plain dict spec (the keys of ScenarioSpec; omitted keys take defaults)."""
    return build_scenario(spec, seed, instance)


# ------------------------------------------------------------------------------------------------
def _draw(u: np.ndarray, rng_range) -> np.ndarray:
    low, high = float(rng_range[0]), float(rng_range[1])
    return low + (high - low) * u  # exactly `low` when low == high


def _sample(spec: dict, seed: int, instance: int) -> Scenario:
    rng = np.random.default_rng([seed, instance])

    # --- nodes ---------------------------------------------------------------------------------
    nodes: dict[str, str] = spec["nodes"]
    node_names = tuple(nodes)
    node_index = {n: i for i, n in enumerate(node_names)}
    V, K = len(node_names), len(RESOURCES)
    u = rng.random((V, K))
    capacity = np.empty((V, K))
    for v, name in enumerate(node_names):
        ranges = spec["node_kinds"][nodes[name]]
        for k, r in enumerate(RESOURCES):
            capacity[v, k] = _draw(u[v, k], ranges[r])
    node_is_server = np.array([nodes[n] == "ES" for n in node_names], dtype=bool)

    # --- links ---------------------------------------------------------------------------------
    links = spec["links"]
    E = len(links)
    u = rng.random((E, 2))
    link_ends = np.array([[node_index[a], node_index[b]] for a, b in links], dtype=np.int64).reshape(E, 2)
    link_bandwidth = _draw(u[:, 0], spec["link_bandwidth"])
    link_length = _draw(u[:, 1], spec["link_length"])

    # --- services ------------------------------------------------------------------------------
    services: dict[str, dict] = spec["services"]
    service_names = tuple(services)
    M = len(service_names)
    u = rng.random((M, len(SERVICE_COLUMNS)))
    col = {c: j for j, c in enumerate(SERVICE_COLUMNS)}
    is_core = np.array([services[n]["kind"] == "core" for n in service_names], dtype=bool)
    resource = np.empty((M, K))
    work, output_size = np.empty(M), np.empty(M)
    core_rate, light_shape, light_scale = np.full(M, np.nan), np.full(M, np.nan), np.full(M, np.nan)
    cost_deploy, cost_maintain, cost_payload = np.empty(M), np.empty(M), np.empty(M)
    for m, name in enumerate(service_names):
        svc = services[name]
        kind = spec["service_kinds"][svc["kind"]]

        def rng_of(key, svc=svc, kind=kind):
            return svc[key] if svc.get(key) is not None else kind[key]

        for k, r in enumerate(RESOURCES):
            resource[m, k] = _draw(u[m, col[r]], rng_of(r))
        work[m] = _draw(u[m, col["work"]], rng_of("work"))
        output_size[m] = _draw(u[m, col["output_size"]], rng_of("output_size"))
        if is_core[m]:
            core_rate[m] = _draw(u[m, col["rate"]], rng_of("rate"))
        else:
            light_shape[m] = _draw(u[m, col["gamma_shape"]], rng_of("gamma_shape"))
            light_scale[m] = _draw(u[m, col["gamma_scale"]], rng_of("gamma_scale"))
        cost_deploy[m] = float(rng_of("cost_deploy"))
        cost_maintain[m] = float(rng_of("cost_maintain"))
        cost_payload[m] = float(rng_of("cost_payload"))

    # --- task types ----------------------------------------------------------------------------
    types: dict[str, dict] = spec["task_types"]
    type_names = tuple(types)
    N = len(type_names)
    service_ids = {n: i for i, n in enumerate(service_names)}
    dags = [task_dag(n, types[n], service_ids) for n in type_names]
    S = max(len(d.services) for d in dags)
    P = max(1, max(len(p) for d in dags for p in d.parents))  # at least 1: no zero-size axis downstream
    stage_service = np.full((N, S), -1, dtype=np.int64)
    stage_parents = np.full((N, S, P), -1, dtype=np.int64)
    stage_child = np.full((N, S), -1, dtype=np.int64)
    sink_stage = np.empty(N, dtype=np.int64)
    for n, dag in enumerate(dags):
        stage_service[n, : len(dag.services)] = dag.services
        stage_child[n, : len(dag.child)] = dag.child
        for s, parents in enumerate(dag.parents):
            stage_parents[n, s, : len(parents)] = parents
        sink_stage[n] = dag.sink
    u = rng.random((N, 2))
    input_size, deadline = np.empty(N), np.empty(N)
    for n, name in enumerate(type_names):
        t = types[name]
        input_size[n] = _draw(u[n, 0], t["input_size"] if t.get("input_size") is not None else spec["task_defaults"]["input_size"])
        deadline[n] = _draw(u[n, 1], t["deadline"] if t.get("deadline") is not None else spec["task_defaults"]["deadline"])

    # --- users ---------------------------------------------------------------------------------
    users = resolve_users(spec)
    U = len(users)
    u = rng.random((U, len(USER_COLUMNS) + N))
    defaults = spec["user_defaults"]

    def user_range(user, key):
        return user[key] if user.get(key) is not None else defaults[key]

    user_gateway = np.array([node_index[user["gateway"]] for user in users], dtype=np.int64)
    nakagami_m = np.array([_draw(u[i, 0], user_range(user, "nakagami_m")) for i, user in enumerate(users)])
    nakagami_omega = np.array([_draw(u[i, 1], user_range(user, "nakagami_omega")) for i, user in enumerate(users)])
    arrival_rate = np.zeros((U, N))
    for i, user in enumerate(users):
        issued = set(type_names if user.get("types") is None else user["types"])
        for n, tname in enumerate(type_names):
            if tname in issued:
                arrival_rate[i, n] = _draw(u[i, len(USER_COLUMNS) + n], user_range(user, "arrival_rate"))

    scenario = Scenario(
        name=spec["name"],
        node_names=node_names,
        node_is_server=node_is_server,
        capacity=capacity,
        link_ends=link_ends,
        link_bandwidth=np.asarray(link_bandwidth, dtype=float),
        link_length=np.asarray(link_length, dtype=float),
        propagation_speed=float(spec["propagation_speed"]),
        service_names=service_names,
        service_is_core=is_core,
        resource=resource,
        work=work,
        output_size=output_size,
        core_rate=core_rate,
        light_shape=light_shape,
        light_scale=light_scale,
        cost_deploy=cost_deploy,
        cost_maintain=cost_maintain,
        cost_payload=cost_payload,
        type_names=type_names,
        input_size=input_size,
        deadline=deadline,
        stage_service=stage_service,
        stage_parents=stage_parents,
        stage_child=stage_child,
        sink_stage=sink_stage,
        user_gateway=user_gateway,
        arrival_rate=arrival_rate,
        nakagami_m=nakagami_m,
        nakagami_omega=nakagami_omega,
        meta={
            "spec": spec["name"],
            "seed": seed,
            "instance": instance,
            "user_names": tuple(user["name"] for user in users),
        },
    )
    validate_scenario(scenario)
    return scenario


__all__ = [
    "build_scenario",
    "build_scenario_from_dict",
    "build_scenarios",
    "load_spec",
    "spec_to_dict",
]
