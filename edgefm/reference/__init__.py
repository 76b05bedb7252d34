"""Plain-Python reference simulator (the oracle of the JAX engine); see docs/SEMANTICS.md."""

from edgefm.reference.algorithm1 import (
    Algorithm1Params,
    ServiceEvaluation,
    algorithm1,
    delay_table,
    evaluate,
    evaluate_service,
    instance_drains,
    instance_latest_inputs,
    instance_ready_times,
    make_controller,
    virtual_queue,
)
from edgefm.reference.controllers import CONTROLLERS, LightDecision, LightObservation, WaitingStage, lbrr
from edgefm.reference.network import NetworkDelays, shortest_path_delays
from edgefm.reference.placement import least_loaded_placement
from edgefm.reference.simulator import BREAKDOWN_COMPONENTS, ReferenceResult, simulate_reference, uplink_end_time

# Algorithm 1 (SEMANTICS.md §9) with its default options; registered here rather than in
# controllers.py because algorithm1 imports controllers.
CONTROLLERS["proposed"] = make_controller("ec")
CONTROLLERS["propavg"] = make_controller("avg")

__all__ = [
    "BREAKDOWN_COMPONENTS",
    "CONTROLLERS",
    "Algorithm1Params",
    "LightDecision",
    "LightObservation",
    "NetworkDelays",
    "ReferenceResult",
    "ServiceEvaluation",
    "WaitingStage",
    "algorithm1",
    "delay_table",
    "evaluate",
    "evaluate_service",
    "instance_drains",
    "instance_latest_inputs",
    "instance_ready_times",
    "lbrr",
    "least_loaded_placement",
    "make_controller",
    "shortest_path_delays",
    "simulate_reference",
    "uplink_end_time",
    "virtual_queue",
]
