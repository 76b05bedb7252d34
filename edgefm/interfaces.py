"""The contracts every plugin implements.

A component class carries two class attributes:

- ``name``: the key users type (``controller=lbrr``); also its entry-point name and YAML file stem;
- ``Config``: a dataclass of its options, registered in Hydra's ConfigStore as
  ``<group>/base_<name>`` so a misspelt key or a wrong type in YAML is an error.

Placement solvers run on the host and may use any Python. Channel models, workload generators and
controllers run *inside* the compiled step: their methods are pure JAX functions with static shapes
(no Python branching on traced values), in the optax shape ``init(...) -> state`` /
``step(state, ..., key) -> (output, state)``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import numpy as np


@dataclasses.dataclass
class EmptyConfig:
    """A component without options."""


class Component(ABC):
    """Base of every plugin class."""

    kind: ClassVar[str] = ""  # "placement" | "controller" | "channel" | "workload"
    name: ClassVar[str] = ""
    Config: ClassVar[type] = EmptyConfig
    description: ClassVar[str] = ""

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    def params(self) -> dict[str, float]:
        """Numeric options that become traced leaves (a sweep over them does not recompile)."""
        return {}

    def static_key(self) -> tuple:
        """Hashable description of everything that changes the compiled program."""
        return (type(self).__module__, type(self).__qualname__)


# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass
class PlacementResult:
    """What a placement solver returns for one scenario instance."""

    x_core: np.ndarray  # [V,M] int: core instances per (node, service); light columns are 0
    info: dict[str, Any] = dataclasses.field(default_factory=dict)  # status, objective, gap, ...


class AbstractPlacementSolver(Component):
    """Tier 1: places the core services once, on the host, before the horizon."""

    kind = "placement"

    def reusable(self) -> bool:
        """Whether `solve` gives the same result for the same scenario, options and slot length and
        has no other effect, so the runner may reuse a placement this process solved before (a
        multirun over controllers, loads or V solves each instance once). Default: True."""
        return True

    @abstractmethod
    def solve(self, scenario, *, slot_ms: float) -> PlacementResult:
        """Return the core placement for ``scenario`` (an `edgefm.scenario.Scenario`)."""


class AbstractChannelModel(Component):
    """Draws the uplink rate of every user for one slot (traced)."""

    kind = "channel"

    @abstractmethod
    def uplink_rate(self, key, users, params) -> Any:
        """Return ``[U]`` uplink rates in MB/ms for one slot.

        ``users`` is a pytree with ``nakagami_m[U]`` and ``nakagami_omega[U]``; ``params`` is the
        dict of traced numeric options from :meth:`params`. An infinite rate means no uplink delay.
        """


class AbstractWorkloadGenerator(Component):
    """Draws the task arrivals of every (user, task type) for one slot (traced)."""

    kind = "workload"

    def init(self, key, rate) -> Any:
        """Initial state (a pytree); ``rate[U,N]`` tasks/ms at load 1x."""
        return ()

    @abstractmethod
    def sample(self, state, key, rate, load, slot_ms, params) -> tuple[Any, Any]:
        """Return ``(counts[U,N] int32, new_state)`` for one slot."""


class AbstractController(Component):
    """Tier 2: starts/stops light instances and routes waiting light stages at each boundary."""

    kind = "controller"

    def init(self, ctx) -> Any:
        """Initial controller state (a pytree) for one realisation; ``ctx`` is a `ControllerContext`."""
        return ()

    @abstractmethod
    def act(self, state, obs, ctx, params, key) -> tuple[Any, Any]:
        """Return ``(Action, new_state)`` for one boundary (traced, static shapes).

        ``obs`` is an `edgefm.sim.types.Observation`; ``ctx = (sizes, arrays)`` gives the static
        `SimSizes` and the instance's `ScenarioArrays`; ``params`` is the `SimParams` (this
        controller's options are ``params.controller``); ``key`` is this slot's controller key.
        """

    def reference(self):
        """The plain-Python counterpart used by `edgefm.reference`, or None."""
        return None
