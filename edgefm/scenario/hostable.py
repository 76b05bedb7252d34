"""Can a network host its core services? The core demand req_m of a scenario instance and an exact
integer feasibility check, used to sample only instances a placement can serve
(``scenario.require_hostable``)."""

from __future__ import annotations

import numpy as np


def service_use(scenario) -> np.ndarray:
    """[N,M] bool: task type n uses service m."""
    uses = np.zeros((scenario.num_types, scenario.num_services), bool)
    for n in range(scenario.num_types):
        for m in scenario.stage_service[n]:
            if m >= 0:
                uses[n, m] = True
    return uses


def core_demand(scenario) -> np.ndarray:
    """[M] int: req_m = max(1, ceil(Σ λ_{u,n} a_m / f_m)) at load 1x (Little's law) for the core
    services some task uses; 0 for light services and unused core services (docs/SEMANTICS.md §5)."""
    uses = service_use(scenario)
    rate = scenario.arrival_rate.sum(0) @ uses  # [M] tasks/ms through each service
    busy = rate * scenario.work / np.where(scenario.service_is_core, scenario.core_rate, 1.0)
    req = np.maximum(1, np.ceil(busy - 1e-12)).astype(np.int64)
    return np.where(scenario.service_is_core & uses.any(0), req, 0)


def hostable(scenario, reserve: float) -> bool:
    """Whether whole core instances x[v,m] >= 0 exist with Σ_v x[v,m] >= req_m for every core
    service and Σ_m x[v,m] r_m <= (1 - reserve) R_v on every node and resource (exact: an integer
    feasibility program, HiGHS through scipy)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    req = core_demand(scenario)
    core = np.flatnonzero(req > 0)
    if core.size == 0:
        return True
    V, K = scenario.capacity.shape
    C = core.size
    need = scenario.resource[core]  # [C,K]
    # x flattened [V,C]; capacity rows (v,k), demand rows m
    cap = np.zeros((V * K, V * C))
    for v in range(V):
        cap[v * K:(v + 1) * K, v * C:(v + 1) * C] = need.T
    dem = np.tile(np.eye(C), (1, V))
    constraints = [
        LinearConstraint(cap, -np.inf, ((1.0 - reserve) * scenario.capacity).reshape(-1) + 1e-9),
        LinearConstraint(dem, req[core], np.inf),
    ]
    result = milp(np.zeros(V * C), constraints=constraints, integrality=np.ones(V * C),
                  bounds=Bounds(0, np.max(req)))
    return result.status == 0


__all__ = ["core_demand", "hostable", "service_use"]
