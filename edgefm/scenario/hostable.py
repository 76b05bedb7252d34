"""Can a network host its core services? The core demand req_m of a scenario instance and an exact
integer feasibility check, used to sample only instances a placement can serve
(``scenario.require_hostable``)."""

from __future__ import annotations

import math
import numbers

import numpy as np

from edgefm.errors import ConfigError


def service_use(scenario) -> np.ndarray:
    """[N,M] bool: task type n uses service m."""
    uses = np.zeros((scenario.num_types, scenario.num_services), bool)
    for n in range(scenario.num_types):
        for m in scenario.stage_service[n]:
            if m >= 0:
                uses[n, m] = True
    return uses


def check_plan(plan_load, target_utilisation) -> None:
    """Raise a ConfigError unless ``plan_load`` is a finite number > 0 and ``target_utilisation``
    (ρ*) a number in (0, 1] (the options of the placements that size the backbone)."""
    def number(x):
        return isinstance(x, numbers.Real) and not isinstance(x, bool)

    if not (number(plan_load) and math.isfinite(plan_load) and plan_load > 0):
        raise ConfigError("placement.plan_load", plan_load, "a finite number > 0 (times the load-1x arrival rates)")
    if not (number(target_utilisation) and 0 < target_utilisation <= 1):
        raise ConfigError("placement.target_utilisation", target_utilisation, "a number in (0, 1]")


def required_instances(busy, *, plan_load: float = 1.0, target_utilisation: float = 1.0):
    """req = max(1, ceil(busy · plan_load / ρ*)), elementwise, as int64 (a scalar for a scalar).

    ``busy`` is the mean number of busy instances at load 1x, Σ λ a_m / f_m (Little's law). The
    ceiling forgives 1e-12 of round-off above an integer (at plan_load = ρ* = 1 the value is
    ``busy`` itself, bit for bit)."""
    need = np.asarray(busy, dtype=float) * plan_load / target_utilisation
    req = np.maximum(1, np.ceil(need - 1e-12)).astype(np.int64)
    return req if req.ndim else int(req)


def core_demand(scenario, *, plan_load: float = 1.0, target_utilisation: float = 1.0) -> np.ndarray:
    """[M] int: req_m = max(1, ceil(Σ λ_{u,n} · plan_load · a_m / f_m / ρ*)) (`required_instances`)
    for the core services some task uses; 0 for light services and unused core services
    (docs/SEMANTICS.md §5; the defaults give the load-1x demand)."""
    uses = service_use(scenario)
    rate = scenario.arrival_rate.sum(0) @ uses  # [M] tasks/ms through each service
    busy = rate * scenario.work / np.where(scenario.service_is_core, scenario.core_rate, 1.0)
    req = required_instances(busy, plan_load=plan_load, target_utilisation=target_utilisation)
    return np.where(scenario.service_is_core & uses.any(0), req, 0)


def hostable(scenario, reserve: float, *, plan_load: float = 1.0, target_utilisation: float = 1.0) -> bool:
    """Whether whole core instances x[v,m] >= 0 exist with Σ_v x[v,m] >= req_m (`core_demand`) for
    every core service and Σ_m x[v,m] r_m <= (1 - reserve) R_v on every node and resource (exact: an
    integer feasibility program, HiGHS through scipy)."""
    from scipy.optimize import Bounds, LinearConstraint, milp

    req = core_demand(scenario, plan_load=plan_load, target_utilisation=target_utilisation)
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


__all__ = ["check_plan", "core_demand", "hostable", "required_instances", "service_use"]
