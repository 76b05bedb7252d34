"""A placement plugin: `round_robin`, core instances dealt to the edge servers in turn."""

from __future__ import annotations

import numpy as np

from edgefm import hookimpl
from edgefm.errors import SolverError
from edgefm.interfaces import AbstractPlacementSolver, PlacementResult, check_integer, host
from edgefm.types import CAPACITY_TOL


class RoundRobinPlacement(AbstractPlacementSolver):
    """``copies`` instances of every core service, each on the next edge server (in node order) that
    still has room for it."""

    name = "round_robin"  # placement=round_robin
    description = "core instances dealt to the edge servers in turn (example plugin)"

    copies: int = host(1)  # instances per core service; host: an option of the host-side solve only

    def __check_init__(self):
        check_integer(self.copies, "placement.copies", 1)

    def solve(self, scenario, *, slot_ms, uplink_rate=None):  # uplink_rate [U] MB/ms: unused here
        x = np.zeros((scenario.num_nodes, scenario.num_services), np.int64)  # [V,M]; light columns stay 0
        free = np.asarray(scenario.capacity, float).copy()  # [V,K] what is left on each node
        servers = np.flatnonzero(scenario.node_is_server)
        turn = 0
        for m in scenario.core_services:
            for _ in range(self.copies):
                fits = [v for v in np.roll(servers, -turn) if np.all(scenario.resource[m] <= free[v] + CAPACITY_TOL)]
                if not fits:
                    raise SolverError(f"round_robin: no edge server has room for another instance of "
                                      f"{scenario.service_names[m]!r} (placement.copies = {self.copies})")
                v = fits[0]
                x[v, m] += 1
                free[v] -= scenario.resource[m]
                turn = (int(np.flatnonzero(servers == v)[0]) + 1) % len(servers)
        return PlacementResult(x_core=x, info={"solver_status": "heuristic"})


@hookimpl
def edgefm_register_placement_solvers():
    return [RoundRobinPlacement]
