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

import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass
class EmptyConfig:
    """A component without options."""


class Component(ABC):
    """Base of every plugin class."""

    kind: ClassVar[str] = ""  # "placement" | "controller" | "channel" | "workload" | "failure"
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
    def solve(self, scenario, *, slot_ms: float, uplink_rate=None) -> PlacementResult:
        """Return the core placement for ``scenario`` (an `edgefm.scenario.Scenario`).

        ``uplink_rate`` ([U] MB/ms or None) is the run's channel's mean-value uplink rate
        (`AbstractChannelModel.mean_rate`; inf: the uplink takes no time), for solvers that
        estimate delays; a solver may leave the keyword out of its signature."""


FADING_MODES = ("block", "per_slot")


class AbstractChannelModel(Component):
    """Draws the uplink rate of every user for one slot (traced)."""

    kind = "channel"

    def fading(self) -> str:
        """How an upload sees the channel (static, docs/SEMANTICS.md §2.2): ``"block"`` (the rate
        drawn in the arrival slot holds for the whole upload) or ``"per_slot"`` (the upload proceeds
        at each slot's rate). Default: ``"block"``."""
        return "block"

    def mean_rate(self, users) -> np.ndarray:
        """``[U]`` MB/ms: the uplink rate of the mean-value embedding of the core placement (host,
        NumPy; MODEL §5: the rate at the mean channel gain); inf where the uplink takes no time.
        ``users`` has ``nakagami_m[U]`` and ``nakagami_omega[U]``. Default: the mean of 256 draws
        of `uplink_rate` with the traced options of :meth:`params`."""
        import jax

        keys = jax.random.split(jax.random.key(0), 256)
        params = {k: jnp.asarray(v) for k, v in self.params().items()}
        users = {k: jnp.asarray(v, float) for k, v in users.items()}
        rates = jax.vmap(lambda k: self.uplink_rate(k, users, params))(keys)
        return np.asarray(jnp.mean(rates, axis=0), float)

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


@dataclasses.dataclass
class FailureSchedule:
    """The host-side part of a failure model for one scenario instance (docs/SEMANTICS.md §12)."""

    node_up: np.ndarray  # [T,V] bool: node v up during slot t (deterministic failures)
    link_up: np.ndarray  # [T,E] bool: link e (scenario link order) up during slot t
    random_nodes: np.ndarray  # [V] bool: nodes that `sample` may take down


class AbstractFailureModel(Component):
    """Node and link failures (docs/SEMANTICS.md §12). Exogenous: they use their own random stream.

    A model has a host-side part, `schedule` (deterministic node and link states per slot, computed
    once per scenario instance; link failures must be fully described here, so the engine can
    precompute the shortest paths of each network state), and a traced part, ``init``/``sample``,
    for random node failures drawn per realisation. A node is up in slot t iff the schedule and the
    sample both say so.
    """

    kind = "failure"

    def active(self) -> bool:
        """Whether the model can fail anything (static): False lets the engine skip failure
        handling altogether (the default model `none`)."""
        return True

    def validate(self) -> None:
        """Check the options (raise `ConfigError`); called before anything is compiled."""

    def schedule(self, scenario, *, total_slots: int, slot_ms: float) -> FailureSchedule:
        """The deterministic node and link states of every slot, and the nodes `sample` may fail.
        Default: everything up, no random failures. Unknown node or link names are a `ConfigError`."""
        V, E = scenario.num_nodes, int(np.asarray(scenario.link_ends).shape[0])
        return FailureSchedule(
            node_up=np.ones((total_slots, V), bool), link_up=np.ones((total_slots, E), bool),
            random_nodes=np.zeros(V, bool),
        )

    def init(self, key, random_nodes) -> Any:
        """Initial state of the random part (a pytree) for one realisation."""
        return ()

    def sample(self, state, key, t, random_nodes, slot_ms, params) -> tuple[Any, Any]:
        """``(up[V] bool, new_state)`` for slot t (traced); ``random_nodes[V]`` from `schedule`."""
        return jnp.ones(random_nodes.shape, bool), state


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
