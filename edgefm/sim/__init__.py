"""The JAX engine: `lax.scan` over slots, `vmap` over realisations and sampled instances."""

from edgefm.sim.rollout import TRACE_COUNTER, exogenous_samples, failure_samples, simulate
from edgefm.sim.types import Action, Observation, ScenarioArrays, SimParams, SimSizes

__all__ = [
    "Action", "Observation", "ScenarioArrays", "SimParams", "SimSizes", "TRACE_COUNTER",
    "exogenous_samples", "failure_samples", "simulate",
]
