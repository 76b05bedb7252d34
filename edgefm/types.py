"""The types a plugin reads and returns: the one module a third-party component imports beside
`edgefm.interfaces` (and `edgefm.hookimpl`). Every field carries its shape (per realisation), dtype
and unit where it is defined (`edgefm.sim.types`).

- `Observation`: what a controller sees at a boundary (the ordered waiting light stages with their
  data-ready times per node, the light instances' occupancies, drain and input-ready times, the
  core usage, the tasks in flight, the nodes up);
- `Action`: what it returns (instances alive, an instance per stage, optionally each stage's rank in
  its instance's FIFO — the engine computes them in list order when left out —, the parallelism y,
  optionally the delay bound it counted on, and per-slot diagnostics);
- `ControllerContext`: what a controller reads besides its observation (the sizes of its arrays,
  node kinds, node capacities, the light services' needs, rates, costs, the deadlines), the ``ctx``
  of `AbstractController.init` and `act`; `SimParams` (slot length, y_max), their ``params``;
- `SimSizes` (the engine's static sizes) and `ScenarioArrays` (one scenario instance and its core
  placement as the engine holds it), for tools that drive the engine directly;
- helpers for static-shaped routing: `ranks_in_list_order`, `rank_in_group`, `resource_usage`, and
  `CAPACITY_TOL`, the tolerance of the engine's node-capacity check (Eq. 8).
"""

from edgefm.sim.types import (
    CAPACITY_TOL,
    Action,
    ControllerContext,
    Observation,
    ScenarioArrays,
    SimParams,
    SimSizes,
    rank_in_group,
    ranks_in_list_order,
    resource_usage,
)

__all__ = [
    "CAPACITY_TOL", "Action", "ControllerContext", "Observation", "ScenarioArrays", "SimParams", "SimSizes",
    "rank_in_group", "ranks_in_list_order", "resource_usage",
]
