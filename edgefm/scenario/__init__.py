"""Scenarios: topology, microservice catalogue, task DAGs, the Table I sampler, frozen instances and
validation."""

from edgefm.scenario.frozen import frozen_names, load_frozen
from edgefm.scenario.model import RESOURCES, Scenario
from edgefm.scenario.spec import (
    build_scenario,
    build_scenario_from_dict,
    build_scenarios,
    load_spec,
    spec_to_dict,
)
from edgefm.scenario.validate import validate_scenario, validate_spec

__all__ = [
    "RESOURCES",
    "Scenario",
    "build_scenario",
    "build_scenario_from_dict",
    "build_scenarios",
    "frozen_names",
    "load_frozen",
    "load_spec",
    "spec_to_dict",
    "validate_scenario",
    "validate_spec",
]
