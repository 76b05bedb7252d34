"""Shortest-path transfer delays, checked by hand."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from edgefm.errors import ConfigError
from edgefm.network import shortest_path_delays, transfer_tables
from edgefm.scenario import build_scenario_from_dict, build_scenarios

PAPER = Path(__file__).resolve().parents[1] / "conf" / "scenario" / "paper.yaml"


def diamond(bandwidth, length, speed=float("inf")):
    """A - B - D and A - C - D: two competing routes from A to D (links in that order)."""
    sc = build_scenario_from_dict(
        {
            "name": "diamond",
            "nodes": {"A": "ES", "B": "ES", "C": "ES", "D": "ES"},
            "links": [["A", "B"], ["B", "D"], ["A", "C"], ["C", "D"]],
            "services": {"s": {"kind": "core"}},
            "task_types": {"t": {"services": ["s"]}},
            "users": [{"name": "u", "gateway": "A"}],
        }
    )
    return dataclasses.replace(
        sc,
        link_bandwidth=np.asarray(bandwidth, dtype=float),
        link_length=np.asarray(length, dtype=float),
        propagation_speed=speed,
    )


A, B, C, D = range(4)


def test_two_routes_without_propagation():
    sc = diamond(bandwidth=[1.0, 1.0, 2.0, 0.5], length=[0, 0, 0, 0])
    d = shortest_path_delays(sc, 2.0)
    # A->D: via B 2/1 + 2/1 = 4; via C 2/2 + 2/0.5 = 5
    assert d[A, D] == pytest.approx(4.0)
    assert d[A, B] == pytest.approx(2.0) and d[A, C] == pytest.approx(1.0)
    # B->C: via A 2 + 1 = 3; via D 2 + 4 = 6
    assert d[B, C] == pytest.approx(3.0)
    np.testing.assert_allclose(d, d.T)
    np.testing.assert_array_equal(np.diag(d), 0.0)


def test_propagation_changes_the_winner_with_payload():
    # lengths 3, 3 via B and 1, 1 via C at speed 2: propagation 3 ms via B, 1 ms via C
    sc = diamond(bandwidth=[1.0, 1.0, 2.0, 0.5], length=[3, 3, 1, 1], speed=2.0)
    # s = 1: via B 2*1 + 3 = 5, via C 2.5*1 + 1 = 3.5 -> C
    assert shortest_path_delays(sc, 1.0)[A, D] == pytest.approx(3.5)
    # s = 10: via B 20 + 3 = 23, via C 25 + 1 = 26 -> B
    assert shortest_path_delays(sc, 10.0)[D, A] == pytest.approx(23.0)
    # a zero payload pays only propagation
    assert shortest_path_delays(sc, 0.0)[A, D] == pytest.approx(1.0)
    assert shortest_path_delays(sc, 0.0)[A, B] == pytest.approx(1.5)  # direct; A-C-D-B takes 2.5
    # infinite speed means no propagation at all
    assert shortest_path_delays(dataclasses.replace(sc, propagation_speed=float("inf")), 0.0)[A, D] == 0.0


def test_parallel_links_and_disconnected_nodes():
    sc = diamond(bandwidth=[1.0, 1.0, 2.0, 0.5], length=[0, 0, 0, 0])
    # add a second, faster A-B link
    sc2 = dataclasses.replace(
        sc,
        link_ends=np.vstack([sc.link_ends, [[B, A]]]),
        link_bandwidth=np.append(sc.link_bandwidth, 4.0),
        link_length=np.append(sc.link_length, 0.0),
    )
    assert shortest_path_delays(sc2, 2.0)[A, B] == pytest.approx(0.5)
    # drop the links of D: it becomes unreachable
    sc3 = dataclasses.replace(sc, link_ends=sc.link_ends[[0, 2]], link_bandwidth=sc.link_bandwidth[[0, 2]],
                              link_length=sc.link_length[[0, 2]])  # fmt: skip
    d = shortest_path_delays(sc3, 1.0)
    assert np.isinf(d[A, D]) and np.isinf(d[D, B]) and d[D, D] == 0.0
    with pytest.raises(ConfigError, match="payload_mb"):
        shortest_path_delays(sc, -1.0)


def test_transfer_tables_on_paper():
    sc = build_scenarios(PAPER, seed=0)[0]
    xfer, fwd = transfer_tables(sc)
    V = sc.num_nodes
    assert xfer.shape == (15, V, V) and fwd.shape == (4, V, V)
    for m in (0, 7, 14):
        np.testing.assert_allclose(xfer[m], shortest_path_delays(sc, sc.output_size[m]))
    for n in range(4):
        np.testing.assert_allclose(fwd[n], shortest_path_delays(sc, sc.input_size[n]))
    assert np.all(np.isfinite(xfer)) and np.all(np.isfinite(fwd))
    # ED1 -> ED2 has a single route, through ES1: two hops
    ix = {name: i for i, name in enumerate(sc.node_names)}
    w = {frozenset(sc.node_names[i] for i in e): sc.link_bandwidth[k] for k, e in enumerate(sc.link_ends.tolist())}
    b = sc.output_size[3]
    expected = b / w[frozenset({"ED1", "ES1"})] + b / w[frozenset({"ED2", "ES1"})]
    assert xfer[3, ix["ED1"], ix["ED2"]] == pytest.approx(expected)
    # ES1 -> ES2: the direct link or the detour through ES3, whichever is faster
    direct = b / w[frozenset({"ES1", "ES2"})]
    detour = b / w[frozenset({"ES1", "ES3"})] + b / w[frozenset({"ES2", "ES3"})]
    assert xfer[3, ix["ES1"], ix["ES2"]] == pytest.approx(min(direct, detour))
    # triangle inequality holds for a shortest-path metric
    d = fwd[0]
    assert np.all(d[:, None, :] <= d[:, :, None] + d[None, :, :] + 1e-12)
