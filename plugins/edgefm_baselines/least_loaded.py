"""Placement `least_loaded` (MODEL.md §8, docs/SEMANTICS.md §5)."""

from __future__ import annotations

import numpy as np

from edgefm.errors import SolverError
from edgefm.interfaces import AbstractPlacementSolver, PlacementResult, host
from edgefm.scenario.hostable import check_plan, check_plan_fit, core_demand, fit_growth, fit_info, not_even_at_1  # noqa: F401 - core_demand: re-exported by edgefm_baselines


def utilisation(used: np.ndarray, capacity: np.ndarray) -> np.ndarray:
    """[V] mean over resources with R_{v,k} > 0 of used / R."""
    has = capacity > 0
    ratio = np.where(has, used / np.where(has, capacity, 1.0), 0.0)
    return ratio.sum(1) / np.maximum(has.sum(1), 1)


class LeastLoadedPlacement(AbstractPlacementSolver):
    """Each core service (by decreasing demand) gets req_m instances, one at a time on the feasible
    node of lowest mean utilisation."""

    name = "least_loaded"
    description = "core services by demand, each instance on the least-utilised feasible node"

    plan_load: float = host(1.0)  # the backbone is sized for plan_load times the load-1x arrival rates
    target_utilisation: float = host(1.0)  # ρ* in (0, 1]: the mean utilisation the demand is sized for
    plan_fit: str = host("exact")  # exact: a demand the greedy cannot place is an error | largest: the largest growth in [1, plan_load / ρ*] it places

    def __check_init__(self):
        check_plan(self.plan_load, self.target_utilisation)
        check_plan_fit(self.plan_fit)

    def solve(self, scenario, *, slot_ms: float) -> PlacementResult:
        """The greedy at the demand of `fit_growth`: with ``plan_fit = largest`` and a demand at α =
        plan_load / ρ* that the greedy cannot place, the largest growth α' in [1, α] whose demand it
        places in full (docs/PLACEMENT.md §1)."""
        placed: dict[tuple, np.ndarray | str] = {}  # demand -> placement, or the greedy's error

        def fits(req) -> bool:
            try:
                placed[tuple(int(d) for d in req)] = greedy(scenario, req)
            except SolverError as err:
                placed[tuple(int(d) for d in req)] = str(err)
                return False
            return True

        fit = fit_growth(scenario, plan_fit=self.plan_fit, plan_load=self.plan_load,
                         target_utilisation=self.target_utilisation, fits=fits)
        if not fit.fits:
            raise SolverError(not_even_at_1(placed[tuple(int(d) for d in fit.demand)], fit))
        x = placed.get(tuple(int(d) for d in fit.demand))
        if x is None:  # plan_fit = exact: placed here, the greedy's error as it is
            x = greedy(scenario, fit.demand)
        info = {"solver_status": "heuristic", **fit_info(self.plan_fit, self.plan_load, self.target_utilisation, fit)}
        return PlacementResult(x_core=x, info=info)


LeastLoadedConfig = LeastLoadedPlacement.Config  # the options as a dataclass (the Hydra schema)


def greedy(scenario, req: np.ndarray) -> np.ndarray:
    """[V,M] x_core: each core service (by decreasing req_m, ties by id) gets req_m instances, one
    at a time on the feasible node of lowest mean utilisation (ties: lowest node). A SolverError if
    an instance finds no node with room."""
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
    return x
