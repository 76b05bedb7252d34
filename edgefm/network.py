"""Shortest-path transfer delays (MODEL.md §2, SEMANTICS.md §4).

A payload of s MB crosses link e in s / w_e + W_e / l ms (store-and-forward, no contention). The
delay between two nodes is the minimum, over paths, of the sum of per-hop delays; 0 on the diagonal
and inf between disconnected nodes. Computed on the host once per scenario (Floyd–Warshall in NumPy,
batched over payloads; V is small).
"""

from __future__ import annotations

import numpy as np

from edgefm.errors import ConfigError
from edgefm.scenario.model import Scenario


def _hop_delays(scenario: Scenario, payload_mb: np.ndarray) -> np.ndarray:
    """[B,E] ms: per-hop delay of each link for each payload in ``payload_mb`` [B]."""
    speed = float(scenario.propagation_speed)
    propagation = np.zeros_like(scenario.link_length, dtype=float)
    if np.isfinite(speed):
        propagation = scenario.link_length / speed
    return payload_mb[:, None] / scenario.link_bandwidth[None, :] + propagation[None, :]


def _all_pairs(scenario: Scenario, payloads_mb, link_up=None) -> np.ndarray:
    payload = np.atleast_1d(np.asarray(payloads_mb, dtype=float))
    if np.any(~np.isfinite(payload)) or np.any(payload < 0):
        raise ConfigError("payload_mb", payload.tolist(), "finite sizes >= 0 (MB)")
    V, B = scenario.num_nodes, payload.shape[0]
    dist = np.full((B, V, V), np.inf)
    hop = _hop_delays(scenario, payload)
    a, b = scenario.link_ends[:, 0], scenario.link_ends[:, 1]
    up = np.ones(len(a), bool) if link_up is None else np.asarray(link_up, bool)
    for e in range(len(a)):  # parallel links keep the fastest
        if not up[e]:
            continue
        dist[:, a[e], b[e]] = np.minimum(dist[:, a[e], b[e]], hop[:, e])
        dist[:, b[e], a[e]] = np.minimum(dist[:, b[e], a[e]], hop[:, e])
    idx = np.arange(V)
    dist[:, idx, idx] = 0.0
    for k in range(V):
        dist = np.minimum(dist, dist[:, :, k, None] + dist[:, None, k, :])
    return dist


def shortest_path_delays(scenario: Scenario, payload_mb: float) -> np.ndarray:
    """[V,V] ms: delay of moving ``payload_mb`` MB from node a (row) to node b (column)."""
    return _all_pairs(scenario, payload_mb)[0]


def transfer_tables(scenario: Scenario, link_up=None) -> tuple[np.ndarray, np.ndarray]:
    """(xfer [M,V,V], fwd [N,V,V]) in ms.

    xfer[m] moves the output b_m of service m (parent stage -> child stage); fwd[n] moves the input
    A_n of task type n from the gateway g(u) to the node of a root stage. ``link_up`` [E] bool
    (default: every link) keeps only the links that are up (docs/SEMANTICS.md §12).
    """
    sizes = np.concatenate([scenario.output_size, scenario.input_size])
    dist = _all_pairs(scenario, sizes, link_up)
    M = scenario.num_services
    return dist[:M], dist[M:]


__all__ = ["shortest_path_delays", "transfer_tables"]
