"""Structured config of a scenario *spec*: the ranges a scenario instance is sampled from.

Conventions (see ``conf/scenario/paper.yaml`` for a complete example):

- A **range** is a 2-list ``[low, high]``; every value is drawn uniformly from it, independently per
  entity (node, link, service, task type, user, (user, type) pair). A fixed value is ``[v, v]``.
- Per-kind ranges (``node_kinds``, ``service_kinds``) apply to every entity of that kind; a service,
  task type or user may override any range with a key of the same name (``None`` = inherit).
- Units: ms, MB, MB/ms; capacities and resource needs in the order (CPU, RAM, GPU, VRAM).
- Defaults are the paper's Table I (MODEL.md §9), so a YAML may state only the topology, the
  services and the DAGs; the shipped YAML files state every value anyway.
- A **frozen** scenario (``frozen: <name>``, e.g. ``conf/scenario/icc2026.yaml``) samples nothing:
  it is the fixed instance shipped as ``edgefm/scenario/data/<name>.json`` and converted by
  :func:`edgefm.scenario.load_frozen`. Only ``name`` is read besides; ``instances`` must be 1 and
  every other key must keep its default. ``seed`` does not change it (it still seeds the engine).

The schema is registered in Hydra's ConfigStore as ``scenario/base_scenario``; YAML files in
``conf/scenario/`` start with ``defaults: [base_scenario, _self_]`` so that a misspelt key or a
value of the wrong type is an error. Semantic checks (DAGs, ranges, names) are in
:mod:`edgefm.scenario.validate`.
"""

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from omegaconf import MISSING

def _range(low: float, high: float):
    return field(default_factory=lambda: [float(low), float(high)])


@dataclass
class CapacityRanges:
    """Capacity R_v of one node kind, a range per resource."""

    cpu: List[float] = MISSING
    ram: List[float] = MISSING
    gpu: List[float] = MISSING
    vram: List[float] = MISSING


@dataclass
class NodeKindsSpec:
    """Capacity ranges of edge devices (ED) and edge servers (ES)."""

    ED: CapacityRanges = field(
        default_factory=lambda: CapacityRanges(cpu=[1.0, 64.0], ram=[1.0, 32.0], gpu=[0.0, 64.0], vram=[0.0, 64.0])
    )
    ES: CapacityRanges = field(
        default_factory=lambda: CapacityRanges(
            cpu=[128.0, 256.0], ram=[64.0, 128.0], gpu=[1024.0, 2048.0], vram=[256.0, 512.0]
        )
    )


@dataclass
class CoreKindSpec:
    """Ranges and fixed costs shared by every core service."""

    cpu: List[float] = _range(2, 16)  # r_m per instance
    ram: List[float] = _range(1, 4)
    gpu: List[float] = _range(4, 32)
    vram: List[float] = _range(4, 32)
    work: List[float] = _range(2, 16)  # a_m, MB
    output_size: List[float] = _range(0.1, 1)  # b_m, MB
    rate: List[float] = _range(8, 32)  # f_m, MB/ms (deterministic)
    cost_deploy: float = 20.0  # c_dp, once per instance
    cost_maintain: float = 4.0  # c_mt, per instance per slot
    cost_payload: float = 0.0  # c_pl, per instance per slot


@dataclass
class LightKindSpec:
    """Ranges and fixed costs shared by every light service."""

    cpu: List[float] = _range(0.5, 2)
    ram: List[float] = _range(0, 0.5)
    gpu: List[float] = _range(0.25, 4)
    vram: List[float] = _range(0, 1)
    work: List[float] = _range(0.5, 2)
    output_size: List[float] = _range(0.25, 1.5)
    gamma_shape: List[float] = _range(1, 2)  # k_m of f ~ Gamma(k_m, beta_m)
    gamma_scale: List[float] = _range(1, 20)  # beta_m, MB/ms
    cost_deploy: float = 4.0
    cost_maintain: float = 1.0
    cost_payload: float = 0.5


@dataclass
class ServiceKindsSpec:
    core: CoreKindSpec = field(default_factory=CoreKindSpec)
    light: LightKindSpec = field(default_factory=LightKindSpec)


@dataclass
class ServiceSpec:
    """One microservice. ``kind`` is "core" or "light"; other keys override the kind's value.

    ``rate`` applies to core services only, ``gamma_shape``/``gamma_scale`` to light ones.
    """

    kind: str = ""
    cpu: Optional[List[float]] = None
    ram: Optional[List[float]] = None
    gpu: Optional[List[float]] = None
    vram: Optional[List[float]] = None
    work: Optional[List[float]] = None
    output_size: Optional[List[float]] = None
    rate: Optional[List[float]] = None
    gamma_shape: Optional[List[float]] = None
    gamma_scale: Optional[List[float]] = None
    cost_deploy: Optional[float] = None
    cost_maintain: Optional[float] = None
    cost_payload: Optional[float] = None


@dataclass
class TaskDefaultsSpec:
    input_size: List[float] = _range(0.5, 4)  # A_n, MB, given whole to every root
    deadline: List[float] = _range(50, 100)  # D_n, ms


@dataclass
class TaskTypeSpec:
    """A task type: an in-tree DAG over services.

    ``edges`` lists [parent, child] service names; ``services`` lists further services of the type
    (needed only for a single-service type, which has no edge). ``input_size`` and ``deadline``
    override ``task_defaults``.
    """

    edges: List[List[str]] = field(default_factory=list)
    services: List[str] = field(default_factory=list)
    input_size: Optional[List[float]] = None
    deadline: Optional[List[float]] = None


@dataclass
class UserDefaultsSpec:
    arrival_rate: List[float] = _range(0.15, 1.5)  # lambda_{u,n}, tasks/ms, per (user, type) pair
    nakagami_m: List[float] = _range(1.5, 3)  # per user
    nakagami_omega: List[float] = _range(0.5, 1)  # per user


@dataclass
class UserSpec:
    """A user: its gateway node g(u) and the task types it issues (None = all types)."""

    name: str = ""
    gateway: str = ""
    types: Optional[List[str]] = None
    arrival_rate: Optional[List[float]] = None
    nakagami_m: Optional[List[float]] = None
    nakagami_omega: Optional[List[float]] = None


@dataclass
class ScenarioSpec:
    """A scenario spec; ``build_scenarios`` samples ``instances`` scenarios from it.

    ``users: null`` (the default) means one user per ED, named ``user_<ED>``, issuing every type,
    whose gateway is the first ES (in ``nodes`` order) linked to that ED, or the ED itself if none.

    ``frozen`` names a frozen instance (a ``*.json`` of ``edgefm/scenario/data``) instead: it is
    loaded, not sampled, so ``instances`` must be 1 and the other keys keep their defaults.
    """

    name: str = ""
    # null: sample from the ranges below; a name (e.g. icc2026): the frozen instance of that name
    frozen: Optional[str] = None
    instances: int = 1
    # null: every sampled instance is kept; a fraction in [0, 1): only instances whose core demand
    # fits the network with that share of every node left free are kept (the others are skipped)
    hostable_reserve: Optional[float] = None
    propagation_speed: float = float("inf")  # length units per ms; inf = no propagation delay
    node_kinds: NodeKindsSpec = field(default_factory=NodeKindsSpec)
    nodes: Dict[str, str] = field(default_factory=dict)  # node name -> "ED" | "ES", in index order
    links: List[List[str]] = field(default_factory=list)  # undirected [a, b] node names
    link_bandwidth: List[float] = _range(0.1, 1.0)  # w_e, MB/ms, per link
    link_length: List[float] = _range(0, 0)  # W_e, length units, per link
    service_kinds: ServiceKindsSpec = field(default_factory=ServiceKindsSpec)
    services: Dict[str, ServiceSpec] = field(default_factory=dict)  # in service-id order
    task_defaults: TaskDefaultsSpec = field(default_factory=TaskDefaultsSpec)
    task_types: Dict[str, TaskTypeSpec] = field(default_factory=dict)  # in type-id order
    user_defaults: UserDefaultsSpec = field(default_factory=UserDefaultsSpec)
    users: Optional[List[UserSpec]] = None


def register_scenario_configs(cs=None) -> None:
    """Store the schema as ``scenario/base_scenario`` in Hydra's ConfigStore ``cs`` (default: the instance)."""
    if cs is None:
        from hydra.core.config_store import ConfigStore

        cs = ConfigStore.instance()
    cs.store(group="scenario", name="base_scenario", node=ScenarioSpec)


__all__ = [
    "CapacityRanges",
    "CoreKindSpec",
    "LightKindSpec",
    "NodeKindsSpec",
    "ScenarioSpec",
    "ServiceKindsSpec",
    "ServiceSpec",
    "TaskDefaultsSpec",
    "TaskTypeSpec",
    "UserDefaultsSpec",
    "UserSpec",
    "register_scenario_configs",
]
