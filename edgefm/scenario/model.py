"""The `Scenario`: one concrete, validated problem instance, as host-side NumPy arrays.

Everything downstream (placement solvers, the JAX engine, the reference simulator) reads a scenario
only through these fields. Shapes use V nodes, K = 4 resources (CPU, RAM, GPU, VRAM), E links,
M services, N task types, S = max stages per task type, P = max parents per stage, U users.

Stage convention: within a task type, stages are sorted by service id (stage 0 has the smallest
service id). The order (ready slot, task id, stage index) is therefore the order (ready slot, task
id, MS) of MODEL.md §4. Stage arrays are padded with -1.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

RESOURCES = ("cpu", "ram", "gpu", "vram")


@dataclass(frozen=True, eq=False)
class Scenario:
    name: str
    # --- nodes -------------------------------------------------------------------------------
    node_names: tuple[str, ...]  # [V]
    node_is_server: np.ndarray  # [V] bool: True for an edge server (ES), False for an edge device (ED)
    capacity: np.ndarray  # [V,K] float: R_v per resource
    # --- links (undirected) ------------------------------------------------------------------
    link_ends: np.ndarray  # [E,2] int: node indices of each link
    link_bandwidth: np.ndarray  # [E] MB/ms: w_e
    link_length: np.ndarray  # [E] length units: W_e (propagation delay = W_e / propagation_speed)
    propagation_speed: float  # length units per ms; inf means no propagation delay
    # --- services ----------------------------------------------------------------------------
    service_names: tuple[str, ...]  # [M]
    service_is_core: np.ndarray  # [M] bool
    resource: np.ndarray  # [M,K] float: r_m, need of one instance
    work: np.ndarray  # [M] MB: a_m, work per task
    output_size: np.ndarray  # [M] MB: b_m
    core_rate: np.ndarray  # [M] MB/ms: f_m for core services, nan for light ones
    light_shape: np.ndarray  # [M] k_m of the Gamma rate for light services, nan for core ones
    light_scale: np.ndarray  # [M] MB/ms: beta_m of the Gamma rate for light services, nan for core
    cost_deploy: np.ndarray  # [M] price units per started instance (c_dp)
    cost_maintain: np.ndarray  # [M] price units per instance per slot (c_mt)
    cost_payload: np.ndarray  # [M] price units per instance per slot (c_pl; 0 for core)
    # --- task types --------------------------------------------------------------------------
    type_names: tuple[str, ...]  # [N]
    input_size: np.ndarray  # [N] MB: A_n, given whole to every root stage
    deadline: np.ndarray  # [N] ms: D_n
    stage_service: np.ndarray  # [N,S] int: service id of each stage, -1 padding
    stage_parents: np.ndarray  # [N,S,P] int: stage indices of the parents, -1 padding
    stage_child: np.ndarray  # [N,S] int: stage index of the (single) successor, -1 for the sink
    sink_stage: np.ndarray  # [N] int
    # --- users -------------------------------------------------------------------------------
    user_gateway: np.ndarray  # [U] int: node index g(u)
    arrival_rate: np.ndarray  # [U,N] tasks/ms: lambda_{u,n} at load 1x
    nakagami_m: np.ndarray  # [U] Nakagami shape of the uplink power gain
    nakagami_omega: np.ndarray  # [U] Nakagami spread (mean power gain)
    meta: dict = field(default_factory=dict)  # free-form provenance (seed, spec name, ...)

    # --- derived sizes -------------------------------------------------------------------------
    @property
    def num_nodes(self) -> int:
        return len(self.node_names)

    @property
    def num_services(self) -> int:
        return len(self.service_names)

    @property
    def num_types(self) -> int:
        return len(self.type_names)

    @property
    def num_users(self) -> int:
        return int(self.user_gateway.shape[0])

    @property
    def max_stages(self) -> int:
        return int(self.stage_service.shape[1])

    @property
    def core_services(self) -> np.ndarray:
        """[Mc] int: global ids of the core services, ascending."""
        return np.flatnonzero(self.service_is_core)

    @property
    def light_services(self) -> np.ndarray:
        """[Ml] int: global ids of the light services, ascending."""
        return np.flatnonzero(~self.service_is_core)

    @property
    def mean_light_rate(self) -> np.ndarray:
        """[M] MB/ms: E f_m = k_m * beta_m for light services, f_m for core services."""
        return np.where(self.service_is_core, self.core_rate, self.light_shape * self.light_scale)

    def stages_of(self, n: int) -> list[int]:
        """Valid stage indices of task type n."""
        return [s for s in range(self.max_stages) if self.stage_service[n, s] >= 0]
