"""A failure plugin: `maintenance`, given nodes down for a window at every period."""

from __future__ import annotations

import numpy as np

from edgefm import hookimpl
from edgefm.errors import ConfigError
from edgefm.interfaces import AbstractFailureModel, check_number, host


class MaintenanceWindows(AbstractFailureModel):
    """Every ``period_ms`` from ``start_ms``, the nodes ``nodes`` go down for ``duration_ms``.
    A deterministic model: the whole of it is the host-side schedule."""

    name = "maintenance"  # failure=maintenance failure.nodes=[ES1]
    description = "given nodes down for a window at every period (example plugin)"

    nodes: list = host([])  # node names of the scenario (ED1, ES1, ...)
    period_ms: float = host(100.0)
    duration_ms: float = host(10.0)  # < period_ms
    start_ms: float = host(0.0)

    def __check_init__(self):
        if not isinstance(self.nodes, list | tuple) or not self.nodes:
            raise ConfigError("failure.nodes", self.nodes, "a non-empty list of node names")
        check_number(self.period_ms, "failure.period_ms", "a number > 0 (ms)", lambda x: x > 0)
        check_number(self.duration_ms, "failure.duration_ms", f"a number in (0, period_ms = {self.period_ms})",
                     lambda x: 0 < x < self.period_ms)
        check_number(self.start_ms, "failure.start_ms", "a number >= 0 (ms)", lambda x: x >= 0)

    def schedule(self, scenario, *, total_slots, slot_ms):
        base = super().schedule(scenario, total_slots=total_slots, slot_ms=slot_ms)  # all up
        names = list(scenario.node_names)
        unknown = [v for v in self.nodes if v not in names]
        if unknown:
            raise ConfigError("failure.nodes", list(self.nodes), f"names of this scenario's nodes: {', '.join(names)}")
        t = np.arange(total_slots) * slot_ms - self.start_ms  # [T] ms since the first window opened
        down = (t >= 0) & (np.mod(t, self.period_ms) < self.duration_ms)
        base.node_up[np.ix_(down, [names.index(v) for v in self.nodes])] = False
        return base


@hookimpl
def edgefm_register_failure_models():
    return [MaintenanceWindows]
