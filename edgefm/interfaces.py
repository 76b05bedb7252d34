"""The contracts every plugin implements.

A component is an `equinox.Module` whose fields are its options:

- ``traced(default)``: a number a sweep may change. It is a JAX array leaf of the module, so a
  multirun over it reuses the compiled program;
- ``static(default)``: an option that fixes shapes, loop bounds or code paths (hashable). Changing
  it compiles another program. Host-side components (placements) declare every option this way.

The engine's compiled programs are keyed by the components themselves (their classes, static
fields and array shapes: `equinox.filter_jit`), so a traced function can only read the option it
was given. A component class also carries, as class attributes:

- ``name``: the key users type (``controller=lbrr``); also its entry-point name and YAML file stem;
- ``Config``: the dataclass of its options, derived from its fields (the Hydra schema stored as
  ``<group>/base_<name>``, so a misspelt key or a wrong type in YAML is an error); the registry
  builds the component with ``cls.from_config(config)``;
- ``description``: one line for ``edgefm plugins``.

Options are checked in ``__check_init__`` (raise `edgefm.errors.ConfigError`), so a component that
exists has valid options. Placement solvers run on the host and may use any Python. Channel models,
workload generators, failure models and controllers run *inside* the compiled step: their methods
are pure JAX functions with static shapes (no Python branching on traced values), in the optax
shape ``init(...) -> state`` / ``step(state, ..., key) -> (output, state)``.
"""

from __future__ import annotations

import dataclasses
import typing
from abc import abstractmethod
from typing import Any, ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

OPTION = "edgefm_option"  # field metadata: "traced" | "static"


def _as_array(dtype):
    """A converter to a JAX array of ``dtype``. A value it cannot represent exactly (2.5 for an
    integer option, a string, a bool) is kept as given, for the component's check to reject."""
    integer = jnp.issubdtype(dtype, jnp.integer)

    def convert(value):
        if isinstance(value, jax.Array):
            return value
        if isinstance(value, bool) or not isinstance(value, int | float | np.number):
            return value
        if integer and not (np.isfinite(value) and int(value) == value):
            return value
        return jnp.asarray(value, dtype=dtype)

    return convert


def _default(default):
    if isinstance(default, list | dict):  # a fresh copy for every instance
        return {"default_factory": lambda: type(default)(default)}
    return {"default": default}


def traced(default, *, dtype=float):
    """A numeric option a sweep may change: stored as a JAX array of ``dtype`` (a traced leaf)."""
    return eqx.field(converter=_as_array(dtype), metadata={OPTION: "traced"}, **_default(default))


def static(default):
    """An option that fixes shapes, loop bounds or code paths: changing it compiles another program.
    Its value must be hashable (a tuple, not a list)."""
    return eqx.field(static=True, metadata={OPTION: "static"}, **_default(default))


def host(default):
    """An option read on the host only (a placement's options, a failure model's schedule): the
    compiled programs never see it, so changing it compiles nothing (`Component.for_engine`)."""
    return eqx.field(metadata={OPTION: "host"}, **_default(default))


def check_number(value, field: str, accepted: str, ok=lambda x: True) -> None:
    """For ``__check_init__``: a `ConfigError` naming ``field`` unless ``value`` is a finite real
    number (a Python number or a 0-d array, not a bool) that ``ok`` accepts. A traced value (a
    component built inside a transformation, e.g. vmapped over an option) is not checked."""
    if isinstance(value, jax.core.Tracer):
        return
    good = isinstance(value, int | float | np.number | jax.Array) and not isinstance(value, bool) and np.ndim(value) == 0
    if not (good and np.isfinite(float(value)) and ok(float(value))):
        from edgefm.errors import ConfigError

        raise ConfigError(field, value.item() if isinstance(value, jax.Array) and value.ndim == 0 else value, accepted)


def check_integer(value, field: str, low: int) -> None:
    """For ``__check_init__``: a `ConfigError` naming ``field`` unless ``value`` is an integer >= low."""
    check_number(value, field, f"an integer >= {low}", lambda x: x == int(x) and x >= low)
    if isinstance(value, float) and not isinstance(value, jax.Array):  # 3.0 given where an integer is meant
        from edgefm.errors import ConfigError

        raise ConfigError(field, value, f"an integer >= {low}")


def check_choice(value, field: str, accepted: tuple[str, ...]) -> None:
    """For ``__check_init__``: a `ConfigError` naming ``field`` unless ``value`` is one of ``accepted``."""
    if not isinstance(value, str) or value not in accepted:
        from edgefm.errors import ConfigError

        raise ConfigError(field, value, "one of: " + ", ".join(accepted))


_CONFIGS: dict[type, type] = {}


class _DerivedConfig:
    """``cls.Config``: a dataclass with one field per option of ``cls`` (same name, type and default)."""

    def __get__(self, obj, cls):
        if cls not in _CONFIGS:
            hints = typing.get_type_hints(cls)
            fields = []
            for f in dataclasses.fields(cls):
                if OPTION not in f.metadata:
                    continue
                if f.default_factory is not dataclasses.MISSING:
                    spec = dataclasses.field(default_factory=f.default_factory)
                else:
                    spec = dataclasses.field(default=f.default)
                fields.append((f.name, hints.get(f.name, Any), spec))
            config = dataclasses.make_dataclass(f"{cls.__name__}Config", fields)
            config.__module__, config.__doc__ = cls.__module__, f"The options of {cls.__name__} ({cls.name!r})."
            _CONFIGS[cls] = config
        return _CONFIGS[cls]


def options(component) -> dict[str, Any]:
    """The options of a component as plain Python values (traced arrays as numbers)."""
    out = {}
    for f in dataclasses.fields(component):
        if OPTION in f.metadata:
            value = getattr(component, f.name)
            out[f.name] = value.item() if isinstance(value, jax.Array) and value.ndim == 0 else value
    return out


class Component(eqx.Module):
    """Base of every plugin component: an equinox Module whose fields are its options."""

    kind: ClassVar[str] = ""  # "placement" | "controller" | "channel" | "workload" | "failure"
    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type] = _DerivedConfig()

    @classmethod
    def from_config(cls, config) -> Component:
        """The component with the options of ``config`` (an instance of ``cls.Config``)."""
        return cls(**{f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "name"})

    def for_engine(self) -> Component:
        """This component as the compiled programs take it: its `host` options set to None (they
        must not key a program; the engine never reads them)."""
        hosted = [f.name for f in dataclasses.fields(self) if f.metadata.get(OPTION) == "host"]
        if not hosted:
            return self
        copy = object.__new__(type(self))
        for f in dataclasses.fields(self):
            object.__setattr__(copy, f.name, None if f.name in hosted else getattr(self, f.name))
        return copy


def preset(cls: type, name: str, description: str, **fixed) -> type:
    """A registry entry named ``name`` that builds ``cls`` with the options ``fixed`` (which are then
    not options of the entry). Two presets of one class share its compiled programs when the fixed
    options are traced: ``proposed`` and ``propavg`` are Algorithm 1 with a traced flag for the
    delay function. ``Entry(**options)`` and ``Entry.from_config(config)`` return a ``cls``."""
    base = cls.Config
    kept = [f for f in dataclasses.fields(base) if f.name not in fixed]
    config = dataclasses.make_dataclass(
        "".join(word.capitalize() for word in name.split("_")) + "Config",
        [(f.name, f.type, dataclasses.field(default=f.default, default_factory=f.default_factory)) for f in kept],
    )
    config.__module__, config.__doc__ = cls.__module__, f"The options of {name!r} ({cls.__name__} with {fixed})."

    def build(_cls, **options):
        return cls(**fixed, **options)

    def from_config(_cls, config):
        return cls(**fixed, **{f.name: getattr(config, f.name) for f in dataclasses.fields(config) if f.name != "name"})

    return type(name, (), {
        "__module__": cls.__module__, "__doc__": f"{description} ({cls.__name__} with {fixed}).",
        "kind": cls.kind, "name": name, "description": description, "Config": config, "builds": cls,
        "fixed": dict(fixed), "__new__": build, "from_config": classmethod(from_config),
    })


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

    def fading_mode(self) -> str:
        """How an upload sees the channel (static, docs/SEMANTICS.md §2.2): ``"block"`` (the rate
        drawn in the arrival slot holds for the whole upload) or ``"per_slot"`` (the upload proceeds
        at each slot's rate). Default: ``"block"``."""
        return "block"

    def mean_rate(self, users) -> np.ndarray:
        """``[U]`` MB/ms: the uplink rate of the mean-value embedding of the core placement (host,
        NumPy; MODEL §5: the rate at the mean channel gain); inf where the uplink takes no time.
        ``users`` has ``nakagami_m[U]`` and ``nakagami_omega[U]``. Default: the mean of 256 draws
        of `uplink_rate`."""
        keys = jax.random.split(jax.random.key(0), 256)
        users = {k: jnp.asarray(v, float) for k, v in users.items()}
        rates = jax.vmap(lambda k: self.uplink_rate(k, users))(keys)
        return np.asarray(jnp.mean(rates, axis=0), float)

    @abstractmethod
    def uplink_rate(self, key, users) -> Any:
        """Return ``[U]`` uplink rates in MB/ms for one slot (traced).

        ``users`` is a pytree with ``nakagami_m[U]`` and ``nakagami_omega[U]``. An infinite rate
        means no uplink delay."""


class AbstractWorkloadGenerator(Component):
    """Draws the task arrivals of every (user, task type) for one slot (traced).

    A generator's option ``load`` (a `traced` number, default 1) scales every rate: the runner
    sizes the engine's lists from it and from `peak_factor` (host side)."""

    kind = "workload"

    def peak_factor(self) -> float:
        """Largest ratio of the instantaneous to the mean arrival rate (host; sizes the lists)."""
        return 1.0

    def init(self, key, rate) -> Any:
        """Initial state (a pytree); ``rate[U,N]`` tasks/ms at load 1x."""
        return ()

    @abstractmethod
    def sample(self, state, key, rate, slot_ms) -> tuple[Any, Any]:
        """Return ``(counts[U,N] int32, new_state)`` for one slot; ``rate[U,N]`` tasks/ms at load 1x."""


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

    def sample(self, state, key, t, random_nodes, slot_ms) -> tuple[Any, Any]:
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

        ``obs`` is an `edgefm.types.Observation`; ``ctx`` the `edgefm.types.ControllerContext` (the
        sizes, node kinds and light services' parameters of this realisation's scenario instance);
        ``params`` the `SimParams` (the slot length, y_max); the controller's own options are its
        fields; ``key`` is this slot's controller key.
        """
