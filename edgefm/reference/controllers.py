"""Light controllers of the reference simulator (plain Python, one stage at a time).

A controller is a function ``controller(obs, state) -> (LightDecision, state)`` called once per slot
boundary (SEMANTICS.md §2 step 6). ``state`` is ``None`` at the first boundary of a realisation and
whatever the controller returned afterwards. Register new controllers in ``CONTROLLERS``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgefm.reference.placement import least_loaded_node


@dataclass
class WaitingStage:
    """A ready, undispatched light stage, as the controller sees it."""

    task: int  # task id
    stage: int  # stage index within the task type
    service: int  # global service id
    task_type: int
    ready_slot: int
    arrival: float  # ms
    deadline: float  # ms, D_n (relative)
    data_ready: np.ndarray  # [V] ms: time its input is available on each node


@dataclass
class LightObservation:
    """What a controller sees at boundary t."""

    t: int
    slot_ms: float
    scenario: object
    x_core: np.ndarray  # [V,M] int
    waiting: list  # [WaitingStage], in the order (ready_slot, task id, stage index)
    occupancy: np.ndarray  # [V,M,X] int: jobs of each light instance not done at this boundary
    alive_prev: np.ndarray  # [V,M,X] bool: instances that existed during slot t-1
    y_max: int
    max_light_instances: int
    # the FIFO of every light instance (v, m, k) at this boundary, before this boundary's assignments:
    # its jobs in FIFO order (the order of `sim.light_order` in force, SEMANTICS.md §2 step 7) as
    # (remaining work MB, data-ready time on node v ms); jobs done at this boundary are not in it (as
    # for ``occupancy``); an instance missing from the dict has no job. Needed by Algorithm 1 with
    # ``instance_ready`` "drain" or "max_input" (§9: the instance-ready times); None: not given
    fifo: dict | None = None
    # [V,M,X] ms, an alternative to ``fifo``: the predicted drain time of each light instance (§9,
    # "drain"), precomputed (e.g. the engine's observation); used only when ``fifo`` is None
    drain: np.ndarray | None = None
    # [V,M,X] ms, an alternative to ``fifo``: the latest data-ready time among the jobs of each light
    # instance (§9, "max_input"), precomputed; used only when ``fifo`` is None
    latest_input: np.ndarray | None = None
    # [V] bool: the nodes up during slot t (SEMANTICS.md §12); None: every node is up. The simulator
    # keeps no light instance on a down node and refuses an assignment to one, or to a node where the
    # stage's data-ready time is inf (unreachable)
    node_up: np.ndarray | None = None

    def nodes_up(self) -> np.ndarray:
        """[V] bool: ``node_up``, or every node when it is None."""
        if self.node_up is None:
            return np.ones(self.scenario.num_nodes, dtype=bool)
        return np.asarray(self.node_up, dtype=bool)


@dataclass
class LightDecision:
    """Which light instances exist during slot t and where waiting stages go."""

    alive: np.ndarray  # [V,M,X] bool
    # (index into obs.waiting, node v, instance slot k), in the order the stages join the FIFOs
    assignment: list = field(default_factory=list)
    # [V,M] int: parallelism y of the instances of (v, m); None means y_max everywhere
    parallelism: np.ndarray | None = None
    # one delay bound b_s (ms) per entry of ``assignment``, the bound the controller counted on for
    # that stage (SEMANTICS.md §11); None, or nan in an entry, states none
    bounds: list | None = None


def resource_usage(scenario, x_core: np.ndarray, light_exists: np.ndarray) -> np.ndarray:
    """[V,K] resources used by the core instances and the light instances flagged in [V,M,X]."""
    num_nodes, num_res = scenario.capacity.shape
    used = np.zeros((num_nodes, num_res), dtype=float)
    for v in range(num_nodes):
        for m in range(scenario.num_services):
            count = int(x_core[v, m]) + int(np.sum(light_exists[v, m]))
            for _ in range(count):
                used[v] = used[v] + scenario.resource[m]
    return used


def lbrr(obs: LightObservation, state):
    """SEMANTICS.md §6: least-loaded scaling, round-robin routing (states no delay bounds, §11).

    With failures (§12) an instance is started only on a node that is up, and routing skips an
    instance on whose node the stage's data-ready time is inf (its input cannot reach it)."""
    scenario = obs.scenario
    node_up = obs.nodes_up()
    num_nodes = scenario.num_nodes
    num_slots = obs.max_light_instances
    y_max = obs.y_max
    pointer = dict(state) if state is not None else {}  # service id -> round-robin pointer

    occupancy = obs.occupancy.copy()
    exists = occupancy > 0  # instances that exist at this boundary (plus those started below)
    used = resource_usage(scenario, obs.x_core, exists)
    assignment = []

    for m in scenario.light_services:
        m = int(m)
        waiting_m = [i for i, w in enumerate(obs.waiting) if w.service == m]
        num_waiting = len(waiting_m)

        # 1. free admission slots on the instances of m that exist
        free = 0
        for v in range(num_nodes):
            for k in range(num_slots):
                if exists[v, m, k]:
                    free += y_max - int(occupancy[v, m, k])

        # 2. start instances until the free slots cover the waiting stages
        while free < num_waiting:
            allowed = [bool(node_up[v]) and not bool(np.all(exists[v, m])) for v in range(num_nodes)]
            v = least_loaded_node(used, scenario.resource[m], scenario.capacity, allowed=allowed)
            if v is None:
                break
            k = next(k for k in range(num_slots) if not exists[v, m, k])
            exists[v, m, k] = True
            used[v] = used[v] + scenario.resource[m]
            free += y_max

        # 3. round-robin routing over instances i = v*X + k
        total = num_nodes * num_slots
        p = pointer.get(m, 0)
        for w_idx in waiting_m:
            reachable = np.isfinite(obs.waiting[w_idx].data_ready)
            for step in range(total):
                i = (p + step) % total
                v, k = divmod(i, num_slots)
                if exists[v, m, k] and occupancy[v, m, k] < y_max and reachable[v]:
                    assignment.append((w_idx, v, k))
                    occupancy[v, m, k] += 1
                    p = (i + 1) % total
                    break
            # no instance with room: the stage waits
        pointer[m] = p

    # 4. an instance exists during slot t iff it has a job
    alive = occupancy > 0
    parallelism = np.full((num_nodes, scenario.num_services), y_max, dtype=int)
    return LightDecision(alive=alive, assignment=assignment, parallelism=parallelism), pointer


CONTROLLERS = {"lbrr": lbrr}
