"""Store-and-forward shortest-path delays (SEMANTICS.md §4), written independently of the engine.

A link e carries a payload of s MB in s / w_e + W_e / l ms (bandwidth w_e, length W_e, propagation
speed l; an infinite l means no propagation term). The delay between two nodes is the smallest sum of
per-hop delays over all paths (Floyd-Warshall), 0 from a node to itself and inf if no path exists.

With failures (SEMANTICS.md §12) the delays of boundary t are those over the links up in slot t:
every function takes an optional ``link_up`` mask [E] (the scenario's link order; None = all up),
and `NetworkDelays` keeps one pair of tables per distinct link state.
"""

from __future__ import annotations

import math

import numpy as np

from edgefm.errors import ConfigError


def hop_delay(payload: float, bandwidth: float, length: float, speed: float) -> float:
    """Delay of one link for ``payload`` MB."""
    if bandwidth <= 0:
        return math.inf
    transmission = payload / bandwidth
    if math.isinf(speed) or length == 0:
        propagation = 0.0
    else:
        propagation = length / speed
    return transmission + propagation


def _link_mask(scenario, link_up) -> np.ndarray:
    """[E] bool: the links that are up (all of them when ``link_up`` is None)."""
    num_links = len(scenario.link_ends)
    if link_up is None:
        return np.ones(num_links, dtype=bool)
    mask = np.asarray(link_up)
    if mask.dtype != bool or mask.shape != (num_links,):
        raise ConfigError("link_up", f"{mask.dtype} array of shape {mask.shape}",
                          f"a bool array of shape ({num_links},), one entry per link of the scenario")
    return mask


def shortest_path_delays(scenario, payload: float, link_up=None) -> np.ndarray:
    """[V,V] float: shortest store-and-forward delay (ms) of ``payload`` MB between every node pair,
    over the links flagged in ``link_up`` ([E] bool; None = every link); inf between nodes that no
    path of up links joins (SEMANTICS.md §12 "Network state")."""
    up = _link_mask(scenario, link_up)
    num_nodes = scenario.num_nodes
    dist = [[math.inf] * num_nodes for _ in range(num_nodes)]
    for a in range(num_nodes):
        dist[a][a] = 0.0
    # direct links (parallel links: keep the fastest)
    for e in range(len(scenario.link_ends)):
        a, b = int(scenario.link_ends[e][0]), int(scenario.link_ends[e][1])
        if a == b or not up[e]:
            continue
        d = hop_delay(
            float(payload),
            float(scenario.link_bandwidth[e]),
            float(scenario.link_length[e]),
            float(scenario.propagation_speed),
        )
        if d < dist[a][b]:
            dist[a][b] = d
            dist[b][a] = d
    # Floyd-Warshall
    for k in range(num_nodes):
        for i in range(num_nodes):
            for j in range(num_nodes):
                through_k = dist[i][k] + dist[k][j]
                if through_k < dist[i][j]:
                    dist[i][j] = through_k
    return np.array(dist, dtype=float).reshape(num_nodes, num_nodes)


def forwarding_delays(scenario, link_up=None) -> np.ndarray:
    """[N,V,V]: fwd_n(a -> b), the delay of the task input A_n (over the links up in ``link_up``)."""
    return np.stack([shortest_path_delays(scenario, float(a), link_up) for a in scenario.input_size]) \
        if scenario.num_types else np.zeros((0, scenario.num_nodes, scenario.num_nodes))


def transfer_delays(scenario, link_up=None) -> np.ndarray:
    """[M,V,V]: xfer_m(a -> b), the delay of the output b_m of service m (over the links up in ``link_up``)."""
    return np.stack([shortest_path_delays(scenario, float(b), link_up) for b in scenario.output_size]) \
        if scenario.num_services else np.zeros((0, scenario.num_nodes, scenario.num_nodes))


class NetworkDelays:
    """The delay tables (fwd [N,V,V], xfer [M,V,V]) of each link state, computed once per distinct
    state (SEMANTICS.md §12: the delays of boundary t are the shortest paths over ``link_up[t]``)."""

    def __init__(self, scenario):
        self.scenario = scenario
        self._tables: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def tables(self, link_up=None) -> tuple[np.ndarray, np.ndarray]:
        """(fwd, xfer) over the links flagged in ``link_up`` ([E] bool; None = every link)."""
        up = _link_mask(self.scenario, link_up)
        key = up.tobytes()
        if key not in self._tables:
            self._tables[key] = (forwarding_delays(self.scenario, up), transfer_delays(self.scenario, up))
        return self._tables[key]
