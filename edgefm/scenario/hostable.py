"""Can a network host its core services? The core demand req_m of a scenario instance and an exact
integer feasibility check, used to sample only instances a placement can serve
(``scenario.require_hostable``)."""

from __future__ import annotations

import dataclasses
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


PLAN_FITS = ("exact", "largest")  # placement.plan_fit: a demand that does not fit is an error | the largest growth that fits
GROWTH_TOLERANCE = 0.01  # the bisection of plan_fit = largest stops when the bracket is this narrow


def check_plan_fit(plan_fit) -> None:
    """Raise a ConfigError unless ``plan_fit`` is one of `PLAN_FITS`."""
    if not (isinstance(plan_fit, str) and plan_fit in PLAN_FITS):
        raise ConfigError("placement.plan_fit", plan_fit, "one of: " + ", ".join(PLAN_FITS))


def growth_demand(scenario, growth: float) -> np.ndarray:
    """[M] int: the core demand at the growth factor α' = ``growth`` (`core_demand` with plan_load =
    α', target_utilisation = 1; at α' = 1 the load-1x demand, bit for bit)."""
    return core_demand(scenario, plan_load=float(growth), target_utilisation=1.0)


def largest_growth(growth: float, fits, tolerance: float = GROWTH_TOLERANCE) -> tuple[float, list[tuple[float, bool]]]:
    """The largest growth factor α' in [1, ``growth``] for which ``fits(α')`` holds, by bisection
    to ``tolerance``, given that ``fits(1)`` holds and ``fits(growth)`` does not (the caller has
    checked both). Returns (the largest α' tried that fits, [(α', fits)] of the steps, in order).
    The demand is non-decreasing in α', so an exact feasibility test is monotone and the answer is
    within ``tolerance`` of the largest; for a heuristic test (a greedy) it is a growth that fits."""
    lo, hi = 1.0, float(growth)
    steps = []
    while hi - lo > tolerance:
        mid = 0.5 * (lo + hi)
        ok = bool(fits(mid))
        steps.append((mid, ok))
        if ok:
            lo = mid
        else:
            hi = mid
    return lo, steps


@dataclasses.dataclass
class Fit:
    """What `fit_growth` found: the growth factor α' and the demand [M] to place (``fits`` False:
    none fits; ``demand`` is then the one whose usual error the placement raises)."""

    fits: bool
    growth: float  # α' (α itself when the demand at α fits, and always for plan_fit = exact)
    demand: np.ndarray  # [M] int: the demand at α'
    requested: np.ndarray  # [M] int: the demand at α
    checks: int  # feasibility checks made (distinct demands)
    steps: list  # [(α', fits)] of the bisection


def fit_growth(scenario, *, plan_fit: str, plan_load: float, target_utilisation: float, fits) -> Fit:
    """The demand a placement places under ``plan_fit`` (docs/PLACEMENT.md §1, "When the demand does not fit").

    ``exact``: the demand at α = plan_load / target_utilisation, unchecked (the placement raises its
    usual error if it does not fit). ``largest``: that demand if ``fits(demand [M])``; else, if the
    demand at α' = 1 fits, the largest α' in [1, α] that fits (`largest_growth`, tolerance 0.01),
    with the demand at α'; else ``Fit.fits`` is False. ``fits`` is called at most once per distinct
    demand (req_m is a step function of α')."""
    requested = core_demand(scenario, plan_load=plan_load, target_utilisation=target_utilisation)
    alpha = float(plan_load) / float(target_utilisation)
    if plan_fit == "exact":
        return Fit(True, alpha, requested, requested, 0, [])
    verdicts: dict[tuple, bool] = {}

    def check(demand) -> bool:
        key = tuple(int(d) for d in demand)
        if key not in verdicts:
            verdicts[key] = bool(fits(np.asarray(demand)))
        return verdicts[key]

    if check(requested):
        return Fit(True, alpha, requested, requested, len(verdicts), [])
    base = growth_demand(scenario, 1.0)
    if alpha <= 1.0 or not check(base):  # below α = 1 the demand is at most the load-1x one: no fit either
        return Fit(False, 1.0 if alpha > 1.0 else alpha, base if alpha > 1.0 else requested, requested,
                   len(verdicts), [])
    used, steps = largest_growth(alpha, lambda g: check(growth_demand(scenario, g)))
    return Fit(True, used, growth_demand(scenario, used), requested, len(verdicts), steps)


def fit_info(plan_fit: str, plan_load: float, target_utilisation: float, fit: Fit) -> dict:
    """The keys of `PlacementResult.info` that record the sizing: plan_load, target_utilisation,
    plan_fit, growth_requested (α = plan_load / target_utilisation), growth_used (α'), demand [M]
    (the demand placed, at α'), demand_requested [M] (at α) and plan_fit_checks (feasibility checks
    made; 0 for exact)."""
    return {"plan_load": float(plan_load), "target_utilisation": float(target_utilisation),
            "plan_fit": str(plan_fit), "growth_requested": float(plan_load) / float(target_utilisation),
            "growth_used": float(fit.growth), "demand": [int(d) for d in fit.demand],
            "demand_requested": [int(d) for d in fit.requested], "plan_fit_checks": int(fit.checks)}


def not_even_at_1(reason: str, fit: Fit) -> str:
    """The usual one-line error ``reason``, with a note that plan_fit = largest found no growth
    factor ≥ 1 that fits."""
    return (f"{reason} (placement.plan_fit = largest: not even the demand at growth "
            f"{fit.growth:g} fits, {fit.demand.tolist()})")


def required_instances(busy, *, plan_load: float = 1.0, target_utilisation: float = 1.0):
    """req = max(1, ceil(busy · plan_load / ρ*)), elementwise, as int64 (a scalar for a scalar).

    ``busy`` is the mean number of busy instances at load 1x, Σ λ a_m / f_m (Little's law). The
    ceiling forgives 1e-12 of round-off above an integer (at plan_load = ρ* = 1 the value is
    ``busy`` itself, bit for bit)."""
    need = np.asarray(busy, dtype=float) * plan_load / target_utilisation
    req = np.maximum(1, np.ceil(need - 1e-12)).astype(np.int64)
    return req if req.ndim else int(req)


def busy_instances(scenario) -> np.ndarray:
    """[M] instances: Σ_{u,n uses m} λ_{u,n} · a_m / E f_m, the mean number of instances of each
    service that the offered work at load 1x keeps busy (E f_m = f_m for a core service, k_m β_m for a
    light one: `Scenario.mean_light_rate`); 0 for unused services."""
    rate = scenario.arrival_rate.sum(0) @ service_use(scenario)  # [M] tasks/ms through each service
    mean_rate = np.asarray(scenario.mean_light_rate, float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rate > 0, rate * scenario.work / mean_rate, 0.0)


def core_demand(scenario, *, plan_load: float = 1.0, target_utilisation: float = 1.0) -> np.ndarray:
    """[M] int: req_m = max(1, ceil(Σ λ_{u,n} · plan_load · a_m / f_m / ρ*)) (`required_instances`)
    for the core services some task uses; 0 for light services and unused core services
    (docs/SEMANTICS.md §5; the defaults give the load-1x demand)."""
    req = required_instances(busy_instances(scenario), plan_load=plan_load, target_utilisation=target_utilisation)
    return np.where(scenario.service_is_core & service_use(scenario).any(0), req, 0)


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


__all__ = [
    "GROWTH_TOLERANCE", "PLAN_FITS", "Fit", "check_plan", "check_plan_fit", "core_demand", "fit_growth",
    "fit_info", "growth_demand", "hostable", "largest_growth", "not_even_at_1", "required_instances", "service_use",
]
