"""Built-in failure models (docs/SEMANTICS.md §12): `none`, `node_down`, `link_down`, `random`.

Failures are exogenous: deterministic ones are a host-side schedule per scenario instance, random
node failures are drawn in the engine from their own stream (4), so every strategy sees the same
failures for a seed.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import jax
import jax.numpy as jnp
import numpy as np

from edgefm import hookimpl
from edgefm.errors import ConfigError
from edgefm.interfaces import AbstractFailureModel, check_number, host, traced


def resolve_node(scenario, value, where: str) -> int:
    """The index of node `value` (a name of the scenario or an index)."""
    names = list(scenario.node_names)
    if isinstance(value, bool):
        pass
    elif isinstance(value, int) and 0 <= value < len(names):
        return int(value)
    elif isinstance(value, str) and value in names:
        return names.index(value)
    raise ConfigError(where, value, f"a node name ({', '.join(names)}) or an index 0..{len(names) - 1}")


def resolve_links(scenario, pair, where: str) -> list[int]:
    """Every link between the two nodes of `pair` (names or indices), in either direction."""
    if not (isinstance(pair, (list, tuple)) and len(pair) == 2):
        raise ConfigError(where, pair, "a pair [a, b] of node names or indices")
    a, b = (resolve_node(scenario, x, where) for x in pair)
    ends = np.asarray(scenario.link_ends)
    hit = [e for e in range(ends.shape[0]) if {int(ends[e, 0]), int(ends[e, 1])} == {a, b}]
    if not hit:
        names = scenario.node_names
        raise ConfigError(where, list(pair), f"a pair of nodes joined by a link (no link {names[a]}-{names[b]})")
    return hit


def window(total_slots: int, slot_ms: float, start_ms: float, duration_ms) -> np.ndarray:
    """[T] bool: slots t with start_ms <= t·Δt < start_ms + duration_ms (None: to the end)."""
    t = np.arange(total_slots) * float(slot_ms)
    end = math.inf if duration_ms is None else float(start_ms) + float(duration_ms)
    return (t >= float(start_ms)) & (t < end)


def check_window(group: str, start_ms, duration_ms) -> None:
    if not (isinstance(start_ms, (int, float)) and math.isfinite(start_ms) and start_ms >= 0):
        raise ConfigError(f"{group}.start_ms", start_ms, "a finite number >= 0 (ms)")
    if duration_ms is not None and not (isinstance(duration_ms, (int, float)) and duration_ms > 0):
        raise ConfigError(f"{group}.duration_ms", duration_ms, "a number > 0 (ms), or null: never recover")


class NoFailures(AbstractFailureModel):
    """Nothing fails (the default): the engine skips failure handling."""

    name = "none"
    description = "no failures"

    def active(self) -> bool:
        return False


class NodeDown(AbstractFailureModel):
    """Given nodes fail at a given time and, optionally, recover after a duration."""

    name = "node_down"
    description = "given nodes down over a time window (optionally isolated)"

    nodes: list[Any] = host([])  # node names (e.g. ES1) or indices
    start_ms: float = host(0.0)  # first instant down: slots t with start_ms <= t*slot_ms < start_ms + duration_ms
    duration_ms: Optional[float] = host(None)  # ms down; null: never recover
    isolate: bool = host(False)  # also take down every link of these nodes (no forwarding through them)

    def __check_init__(self):
        if not isinstance(self.nodes, (list, tuple)) or not self.nodes:
            raise ConfigError("failure.nodes", self.nodes, "a non-empty list of node names or indices")
        check_window("failure", self.start_ms, self.duration_ms)

    def schedule(self, scenario, *, total_slots, slot_ms):
        base = super().schedule(scenario, total_slots=total_slots, slot_ms=slot_ms)
        down = window(total_slots, slot_ms, self.start_ms, self.duration_ms)
        nodes = sorted({resolve_node(scenario, v, "failure.nodes") for v in self.nodes})
        base.node_up[np.ix_(down, nodes)] = False
        if self.isolate:
            ends = np.asarray(scenario.link_ends)
            links = [e for e in range(ends.shape[0]) if int(ends[e, 0]) in nodes or int(ends[e, 1]) in nodes]
            base.link_up[np.ix_(down, links)] = False
        return base


class LinkDown(AbstractFailureModel):
    """Given links fail at a given time and, optionally, recover after a duration."""

    name = "link_down"
    description = "given links down over a time window"

    links: list[Any] = host([])  # pairs [a, b] of node names or indices
    start_ms: float = host(0.0)
    duration_ms: Optional[float] = host(None)  # null: never recover

    def __check_init__(self):
        if not isinstance(self.links, (list, tuple)) or not self.links:
            raise ConfigError("failure.links", self.links, "a non-empty list of node pairs [a, b]")
        check_window("failure", self.start_ms, self.duration_ms)

    def schedule(self, scenario, *, total_slots, slot_ms):
        base = super().schedule(scenario, total_slots=total_slots, slot_ms=slot_ms)
        down = window(total_slots, slot_ms, self.start_ms, self.duration_ms)
        links = sorted({e for pair in self.links for e in resolve_links(scenario, pair, "failure.links")})
        base.link_up[np.ix_(down, links)] = False
        return base


class RandomFailures(AbstractFailureModel):
    """Each node is an independent two-state Markov chain on slots (SEMANTICS §12): an up node fails
    with probability 1 − exp(−Δt/MTBF) per slot, a down one is repaired with 1 − exp(−Δt/MTTR)."""

    name = "random"
    description = "independent random node failures with memoryless repair"

    mtbf_ms: float = traced(2000.0)  # mean time between failures of one node (ms)
    mttr_ms: float = traced(50.0)  # mean time to repair (ms)
    nodes: Optional[list[Any]] = host(None)  # nodes that may fail (names or indices); null: every node

    def __check_init__(self):
        for option in ("mtbf_ms", "mttr_ms"):
            check_number(getattr(self, option), f"failure.{option}", "a number > 0 (ms)", lambda x: x > 0)
        if self.nodes is not None and (not isinstance(self.nodes, (list, tuple)) or not self.nodes):
            raise ConfigError("failure.nodes", self.nodes, "a non-empty list of node names or indices, or null (every node)")

    def schedule(self, scenario, *, total_slots, slot_ms):
        base = super().schedule(scenario, total_slots=total_slots, slot_ms=slot_ms)
        if self.nodes is None:
            base.random_nodes[:] = True
        else:
            base.random_nodes[[resolve_node(scenario, v, "failure.nodes") for v in self.nodes]] = True
        return base

    def init(self, key, random_nodes):
        return jnp.zeros(random_nodes.shape, bool)  # down? every node is up before slot 0

    def sample(self, state, key, t, random_nodes, slot_ms):
        p_fail = -jnp.expm1(-slot_ms / self.mtbf_ms)
        p_repair = -jnp.expm1(-slot_ms / self.mttr_ms)
        u = jax.random.uniform(key, random_nodes.shape)
        down = random_nodes & jnp.where(state, u >= p_repair, u < p_fail)
        return ~down, down


@hookimpl
def edgefm_register_failure_models():
    return [NoFailures, NodeDown, LinkDown, RandomFailures]
