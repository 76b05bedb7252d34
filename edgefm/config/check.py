"""Checks of a composed config that Hydra's schemas leave open, and the schemas by name.

- `check_added_keys`: a key added with ``+`` (``+sedd=3``, ``+sim.realisatons=4``) bypasses the
  structured schema; every key of the composed config must be a field of its node's schema. The
  component nodes (placement, controller, ...) are checked when the component is built
  (`edgefm.runner.make_component`), against the plugin's own ``Config``.
- `check_plausible`: inputs that run but cannot mean what was meant: a deadline shorter than a
  slot, arrival rates whose offered work exceeds the whole network by an order of magnitude
  (rates per second given as tasks/ms), a horizon shorter than the longest deadline (a warning).
- `schema_by_name`: the dataclass a composition error names (``Key 'nodez' not in
  'ScenarioSpec'``), so the message can list the accepted keys.
"""

from __future__ import annotations

import dataclasses
import logging
import typing
from typing import Any

import numpy as np

from edgefm.errors import ConfigError

log = logging.getLogger("edgefm")

# offered work above this multiple of the whole network's capacity is refused (docs/RELIABILITY.md)
OVERLOAD_LIMIT = 10.0


# ----------------------------------------------------------------------------------------------
# Schemas


def _dataclasses_in(tp, seen: dict[str, type]) -> None:
    """Every dataclass reachable from the type ``tp`` (fields, Optional/List/Dict arguments)."""
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if tp.__name__ in seen:
            return
        seen[tp.__name__] = tp
        hints = typing.get_type_hints(tp)
        for f in dataclasses.fields(tp):
            _dataclasses_in(hints.get(f.name, f.type), seen)
        return
    for arg in typing.get_args(tp):
        _dataclasses_in(arg, seen)


def schema_by_name(name: str, registry=None) -> type | None:
    """The schema dataclass called ``name``: one of the root config's (`EdgefmConfig` and every
    dataclass inside it) or a component's (`edgefm.plugins.config_schema`), or None."""
    from edgefm.config.schema import EdgefmConfig

    seen: dict[str, type] = {}
    _dataclasses_in(EdgefmConfig, seen)
    if name in seen:
        return seen[name]
    from edgefm.plugins import Registry, config_schema

    registry = Registry.default() if registry is None else registry
    for (kind, _), entry in registry._entries.items():
        for schema in (config_schema(kind, entry.cls), getattr(entry.cls, "Config", None)):
            if schema is not None and schema.__name__ == name:
                return schema
    return None


def check_added_keys(cfg, skip: tuple[str, ...] = ()) -> None:
    """Raise `ConfigError` for the first key of ``cfg`` that its node's schema does not have (a key
    added with ``+``), naming the key and the accepted ones. Nodes under ``skip`` (top-level keys,
    e.g. the component groups) and nodes without a dataclass schema (``Any``, plain dicts) are not
    looked into; ``hydra`` never is."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    def walk(node, path: str) -> None:
        if isinstance(node, ListConfig):
            for i in range(len(node)):
                child = node._get_node(i)
                if isinstance(child, DictConfig | ListConfig):
                    walk(child, f"{path}[{i}]")
            return
        schema = OmegaConf.get_type(node)
        known = [f.name for f in dataclasses.fields(schema)] if dataclasses.is_dataclass(schema) else None
        for key in node.keys():
            key = str(key)
            where = f"{path}.{key}" if path else key
            if not path and (key == "hydra" or key in skip):
                continue
            if known is not None and key not in known:
                value = OmegaConf.to_container(node, resolve=False).get(key)
                owner = f"{path} ({schema.__name__})" if path else f"the config ({schema.__name__})"
                raise ConfigError(where, value, f"not a key of {owner}; known keys: {', '.join(known)}",
                                  "a key given with + must still be one of the schema's")
            child = node._get_node(key)
            if isinstance(child, DictConfig | ListConfig) and not child._is_missing() and not child._is_none():
                walk(child, where)

    walk(cfg, "")


# ----------------------------------------------------------------------------------------------
# Plausibility


def _spec_field(spec: dict, key: str, type_name: str | None = None) -> str:
    """The config key a sampled task-type value came from: the type's own range when it has one,
    else ``task_defaults``."""
    if spec.get("frozen") is not None:
        return "scenario.frozen"
    if type_name is not None:
        own = (spec.get("task_types") or {}).get(type_name) or {}
        if own.get(key) is not None:
            return f"scenario.task_types.{type_name}.{key}"
    return f"scenario.task_defaults.{key}"


def _rate_field(spec: dict) -> tuple[str, Any]:
    if spec.get("frozen") is not None:
        return "scenario.frozen", spec["frozen"]
    for i, user in enumerate(spec.get("users") or []):
        if user.get("arrival_rate") is not None:
            return f"scenario.users[{i}].arrival_rate", user["arrival_rate"]
    return "scenario.user_defaults.arrival_rate", (spec.get("user_defaults") or {}).get("arrival_rate")


def offered_load(sc, load: float) -> tuple[float, str]:
    """(ratio, resource): the largest ratio, over the resources, of what the offered work keeps busy
    on average (each stage holds its service's instance resources for work / rate ms) to the whole
    network's capacity (every node's together). Above 1 no placement keeps up; far above, the rates
    are probably in the wrong unit."""
    from edgefm.scenario.hostable import busy_instances
    from edgefm.scenario.model import RESOURCES

    need = (busy_instances(sc) * float(load)) @ np.asarray(sc.resource, float)  # [K]
    have = np.asarray(sc.capacity, float).sum(axis=0)  # [K]
    ratios = np.where(have > 0, need / np.where(have > 0, have, 1.0), 0.0)
    k = int(np.argmax(ratios))
    return float(ratios[k]), RESOURCES[k]


def check_plausible(spec: dict, scenarios, sim, load: float) -> list[str]:
    """Raise `ConfigError` for a deadline shorter than a slot or arrival rates whose offered work
    exceeds the whole network's capacity `OVERLOAD_LIMIT` times; return the warnings (one line
    each) for a horizon shorter than the longest deadline."""
    slot = float(sim.slot_ms)
    for sc in scenarios:
        n = int(np.argmin(sc.deadline))
        if float(sc.deadline[n]) < slot:
            name = sc.type_names[n]
            field = _spec_field(spec, "deadline", name)
            raise ConfigError(
                field, float(sc.deadline[n]),
                f"a deadline of at least one slot (sim.slot_ms = {slot:g} ms; task type {name!r}): a task is "
                "dispatched at slot boundaries, so none could finish on time", "deadlines are in ms")
    for sc in scenarios:
        ratio, resource = offered_load(sc, load)
        if ratio > OVERLOAD_LIMIT:
            field, value = _rate_field(spec)
            raise ConfigError(
                field, value,
                f"rates in tasks/ms: at workload.load = {load:g} the offered work keeps {ratio:.0f}x the "
                f"{resource} of the whole network busy (every node's capacity together)",
                "rates per second are 1000x too large in tasks/ms: 1 task/s = 0.001 tasks/ms")
    warnings = []
    horizon = float(sim.arrival_ms) + float(sim.drain_ms)
    longest = max(float(np.max(sc.deadline)) for sc in scenarios)
    if horizon < longest:
        sc = max(scenarios, key=lambda s: float(np.max(s.deadline)))
        name = sc.type_names[int(np.argmax(sc.deadline))]
        warnings.append(
            f"sim.arrival_ms + sim.drain_ms = {horizon:g} ms is shorter than the longest deadline "
            f"({_spec_field(spec, 'deadline', name)}: {longest:g} ms for task type {name!r}): tasks of that type "
            "still in time when the horizon ends count as unfinished, not on time")
    return warnings


__all__ = ["OVERLOAD_LIMIT", "check_added_keys", "check_plausible", "offered_load", "schema_by_name"]
