"""The `least_loaded` core placement (SEMANTICS.md §5), in plain Python."""

from __future__ import annotations

import math

import numpy as np

from edgefm.errors import SolverError
from edgefm.scenario.hostable import check_plan, required_instances


def utilisation(used: np.ndarray, capacity: np.ndarray) -> float:
    """Mean over the resources with capacity > 0 of used / capacity (0 if the node has none)."""
    ratios = [used[k] / capacity[k] for k in range(len(capacity)) if capacity[k] > 0]
    if not ratios:
        return 0.0
    return sum(ratios) / len(ratios)


def fits(used: np.ndarray, need: np.ndarray, capacity: np.ndarray) -> bool:
    """used + need <= capacity for every resource."""
    return all(used[k] + need[k] <= capacity[k] for k in range(len(capacity)))


def least_loaded_node(used: np.ndarray, need: np.ndarray, capacity: np.ndarray, allowed=None):
    """Index of the feasible node of lowest utilisation (ties: lowest index), or None.

    ``allowed`` optionally restricts the candidates (a [V] bool sequence)."""
    best, best_util = None, math.inf
    for v in range(capacity.shape[0]):
        if allowed is not None and not allowed[v]:
            continue
        if not fits(used[v], need, capacity[v]):
            continue
        u = utilisation(used[v], capacity[v])
        if u < best_util:
            best, best_util = v, u
    return best


def core_demand(scenario, *, plan_load: float = 1.0, target_utilisation: float = 1.0) -> dict[int, int]:
    """req_m = max(1, ceil(sum_{u,n: m in M_n} lambda_{u,n} * plan_load * a_m / f_m / rho*)) for
    every core service m; the busy time summed here, the rule (and its round-off guard) is
    `edgefm.scenario.hostable.required_instances`, the one the placements use."""
    check_plan(plan_load, target_utilisation)
    req = {}
    for m in scenario.core_services:
        m = int(m)
        total_rate = 0.0
        for n in range(scenario.num_types):
            services_of_n = {int(scenario.stage_service[n, s]) for s in scenario.stages_of(n)}
            if m in services_of_n:
                total_rate += float(np.sum(scenario.arrival_rate[:, n]))
        busy = total_rate * float(scenario.work[m]) / float(scenario.core_rate[m])
        req[m] = required_instances(busy, plan_load=plan_load, target_utilisation=target_utilisation)
    return req


def least_loaded_placement(scenario, *, plan_load: float = 1.0, target_utilisation: float = 1.0) -> np.ndarray:
    """[V,M] int: req_m instances of every core service (`core_demand`), each on the least-utilised
    feasible node."""
    num_nodes, num_services = scenario.num_nodes, scenario.num_services
    x = np.zeros((num_nodes, num_services), dtype=int)
    used = np.zeros((num_nodes, scenario.capacity.shape[1]), dtype=float)
    req = core_demand(scenario, plan_load=plan_load, target_utilisation=target_utilisation)
    order = sorted(req, key=lambda m: (-req[m], m))
    for m in order:
        for _ in range(req[m]):
            v = least_loaded_node(used, scenario.resource[m], scenario.capacity)
            if v is None:
                raise SolverError(
                    f"least_loaded placement: no node can host another instance of core service "
                    f"{m} ({scenario.service_names[m]!r}); {int(x[:, m].sum())} of {req[m]} placed"
                )
            x[v, m] += 1
            used[v] = used[v] + scenario.resource[m]
    return x
