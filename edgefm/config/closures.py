"""Which closure values a composed config runs with, and how they differ from its preset.

A closures preset (``conf/closures/<name>.yaml``, schema `edgefm.config.schema.ClosuresConfig`)
fills the ``closures`` node; the sim, channel, placement and controller options read it by
interpolation, so the value *in force* is the option's own (a user's override of the option wins).
The dataset and the summary record the preset's name and every difference.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

# closures field -> the option that puts it in force (a component without that option ignores it)
IN_FORCE_AT = {
    "channel": "channel.name",
    "fading": "channel.fading",
    "root_ready": "sim.root_ready",
    "light_order": "sim.light_order",
    "core_dispatch": "sim.core_dispatch",
    "instance_ready": "controller.instance_ready",
    "candidates": "controller.candidates",
    "light_reserve": "placement.reserve",
    "plan_load": "placement.plan_load",
    "target_utilisation": "placement.target_utilisation",
    "plan_fit": "placement.plan_fit",
    "arrival_ms": "sim.arrival_ms",
    "drain_ms": "sim.drain_ms",
}


def _plain(value):
    """A comparable plain value (enums by name, containers as plain lists / dicts)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf

    if isinstance(value, DictConfig | ListConfig):
        value = OmegaConf.to_container(value, resolve=True, enum_to_str=True)
    if hasattr(value, "value") and hasattr(value, "name") and not isinstance(value, str):  # an enum
        value = value.value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def closures_in_force(cfg) -> dict[str, Any]:
    """closures field -> the value the run uses, for the fields whose option exists in ``cfg``."""
    from omegaconf import OmegaConf

    out = {}
    for name, key in IN_FORCE_AT.items():
        if OmegaConf.select(cfg, key, default="__absent__") != "__absent__":
            out[name] = _plain(OmegaConf.select(cfg, key))
    return out


def closure_changes(cfg, overrides: Iterable[str] = ()) -> list[str]:
    """``option=value`` for every closure in force that is not the preset's value, and every
    command-line override of the preset's own values (``closures.<field>=...``), in field order."""
    preset = {k: _plain(v) for k, v in cfg.closures.items() if k != "name"}
    changes = [
        f"{IN_FORCE_AT[name]}={_show(value)}"
        for name, value in closures_in_force(cfg).items()
        if name in preset and value != preset[name]
    ]
    changes += [o.lstrip("+~") for o in overrides if o.lstrip("+~").startswith("closures.")]
    return changes


def _show(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value)) if abs(value) < 1e15 else str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_show(v)}" for k, v in value.items()) + "}"
    return str(value)


def describe(name: str, changes: list[str]) -> str:
    """``paper`` or ``paper, changed: sim.light_order=dispatch; ...`` (the summary's row)."""
    return name if not changes else f"{name}, changed: " + "; ".join(changes)


__all__ = ["IN_FORCE_AT", "closure_changes", "closures_in_force", "describe"]
