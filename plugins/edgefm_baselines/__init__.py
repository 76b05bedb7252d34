"""Built-in baselines: placement `least_loaded`, controller `lbrr` (MODEL.md §8)."""

from edgefm import hookimpl
from edgefm_baselines.lbrr import LBRRController
from edgefm_baselines.least_loaded import LeastLoadedPlacement, core_demand


@hookimpl
def edgefm_register_placement_solvers():
    return [LeastLoadedPlacement]


@hookimpl
def edgefm_register_controllers():
    return [LBRRController]


__all__ = ["LBRRController", "LeastLoadedPlacement", "core_demand"]
