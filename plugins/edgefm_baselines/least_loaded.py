"""Placement `least_loaded` (MODEL.md §8, docs/SEMANTICS.md §5)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgefm.errors import SolverError
from edgefm.interfaces import AbstractPlacementSolver, PlacementResult
from edgefm.scenario.hostable import check_plan, core_demand


def utilisation(used: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """[V] mean over resources with R_{v,k} > 0 of used / R."""
    has = capacity > 0
    ratio = np.where(has, used / np.where(has, capacity, 1.0), 0.0)
    return ratio.sum(1) / np.maximum(has.sum(1), 1)


@dataclass
class LeastLoadedConfig:
    plan_load: float = 1.0  # the backbone is sized for plan_load times the load-1x arrival rates
    target_utilisation: float = 1.0  # ρ* in (0, 1]: the mean utilisation the demand is sized for


class LeastLoadedPlacement(AbstractPlacementSolver):
    """Each core service (by decreasing demand) gets req_m instances, one at a time on the feasible
    node of lowest mean utilisation."""

    name = "least_loaded"
    Config = LeastLoadedConfig
    description = "core services by demand, each instance on the least-utilised feasible node"

    def validate(self) -> None:
        check_plan(self.config.plan_load, self.config.target_utilisation)

    def solve(self, scenario, *, slot_ms: float) -> PlacementResult:
        self.validate()
        c = self.config
        req = core_demand(scenario, plan_load=c.plan_load, target_utilisation=c.target_utilisation)
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
        info = {"solver_status": "heuristic", "demand": req.tolist(), "plan_load": float(c.plan_load),
                "target_utilisation": float(c.target_utilisation)}
        return PlacementResult(x_core=x, info=info)
