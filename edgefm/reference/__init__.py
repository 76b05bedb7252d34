"""Plain-Python reference simulator (the oracle of the JAX engine); see docs/SEMANTICS.md."""

from edgefm.reference.controllers import CONTROLLERS, LightDecision, LightObservation, WaitingStage, lbrr
from edgefm.reference.network import shortest_path_delays
from edgefm.reference.placement import least_loaded_placement
from edgefm.reference.simulator import ReferenceResult, simulate_reference

__all__ = [
    "CONTROLLERS",
    "LightDecision",
    "LightObservation",
    "ReferenceResult",
    "WaitingStage",
    "lbrr",
    "least_loaded_placement",
    "shortest_path_delays",
    "simulate_reference",
]
