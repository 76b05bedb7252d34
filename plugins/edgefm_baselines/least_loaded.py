"""Placement `least_loaded` (MODEL.md §8, docs/SEMANTICS.md §5)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgefm.errors import SolverError
from edgefm.interfaces import AbstractPlacementSolver, PlacementResult
from edgefm.scenario.hostable import core_demand


def utilisation(used: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """[V] mean over resources with R_{v,k} > 0 of used / R."""
    has = capacity > 0
    ratio = np.where(has, used / np.where(has, capacity, 1.0), 0.0)
    return ratio.sum(1) / np.maximum(has.sum(1), 1)


@dataclass
class LeastLoadedConfig:
    pass


class LeastLoadedPlacement(AbstractPlacementSolver):
    """Each core service (by decreasing demand) gets req_m instances, one at a time on the feasible
    node of lowest mean utilisation."""

    name = "least_loaded"
    Config = LeastLoadedConfig
    description = "core services by demand, each instance on the least-utilised feasible node"

    def solve(self, scenario, *, slot_ms: float) -> PlacementResult:
        req = core_demand(scenario)
        x = np.zeros((scenario.num_nodes, scenario.num_services), np.int64)
        used = np.zeros_like(scenario.capacity, dtype=float)
        order = sorted(np.flatnonzero(req > 0), key=lambda m: (-req[m], m))
        for m in order:
            for _ in range(req[m]):
                feasible = np.all(used + scenario.resource[m] <= scenario.capacity, axis=1)
                if not feasible.any():
                    raise SolverError(
                        f"least_loaded: no node has room for instance {int(x[:, m].sum()) + 1} of "
                        f"{req[m]} of core service {scenario.service_names[m]!r} "
                        f"(needs {scenario.resource[m].tolist()} of cpu/ram/gpu/vram)"
                    )
                util = np.where(feasible, utilisation(used, scenario.capacity), np.inf)
                v = int(np.argmin(util))
                x[v, m] += 1
                used[v] += scenario.resource[m]
        return PlacementResult(x_core=x, info={"solver_status": "heuristic", "demand": req.tolist()})
