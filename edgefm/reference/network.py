"""Store-and-forward shortest-path delays (SEMANTICS.md §4), written independently of the engine.

A link e carries a payload of s MB in s / w_e + W_e / l ms (bandwidth w_e, length W_e, propagation
speed l; an infinite l means no propagation term). The delay between two nodes is the smallest sum of
per-hop delays over all paths (Floyd-Warshall), 0 from a node to itself and inf if no path exists.
"""

from __future__ import annotations

import math

import numpy as np


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


def shortest_path_delays(scenario, payload: float) -> np.ndarray:
    """[V,V] float: shortest store-and-forward delay (ms) of ``payload`` MB between every node pair."""
    num_nodes = scenario.num_nodes
    dist = [[math.inf] * num_nodes for _ in range(num_nodes)]
    for a in range(num_nodes):
        dist[a][a] = 0.0
    # direct links (parallel links: keep the fastest)
    for e in range(len(scenario.link_ends)):
        a, b = int(scenario.link_ends[e][0]), int(scenario.link_ends[e][1])
        if a == b:
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


def forwarding_delays(scenario) -> np.ndarray:
    """[N,V,V]: fwd_n(a -> b), the delay of the task input A_n."""
    return np.stack([shortest_path_delays(scenario, float(a)) for a in scenario.input_size]) \
        if scenario.num_types else np.zeros((0, scenario.num_nodes, scenario.num_nodes))


def transfer_delays(scenario) -> np.ndarray:
    """[M,V,V]: xfer_m(a -> b), the delay of the output b_m of service m."""
    return np.stack([shortest_path_delays(scenario, float(b)) for b in scenario.output_size]) \
        if scenario.num_services else np.zeros((0, scenario.num_nodes, scenario.num_nodes))
