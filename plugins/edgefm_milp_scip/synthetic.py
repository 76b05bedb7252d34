"""Random scenarios of any size for tests and the placement scaling benchmark.

`random_scenario(num_nodes, num_core)` builds a connected network (about a fifth of the nodes edge
servers, joined by a random tree plus a ring; every device hangs off a server, some also off another
device), a catalogue of core and light services and task types with the value ranges of the paper's
Table I (MODEL.md §9), one user per device, and arrival rates scaled so that the core demand req_m
of all services together needs at most ``fill`` of the network's capacity in every resource.
"""

from __future__ import annotations

import numpy as np

from edgefm.scenario.model import Scenario
from edgefm.scenario.validate import validate_scenario

ED_CAPACITY = [(1, 64), (1, 32), (0, 64), (0, 64)]
ES_CAPACITY = [(128, 256), (64, 128), (1024, 2048), (256, 512)]
CORE_RESOURCE = [(2, 16), (1, 4), (4, 32), (4, 32)]
LIGHT_RESOURCE = [(0.5, 2), (0, 0.5), (0.25, 4), (0, 1)]


def _u(rng, bounds) -> np.ndarray:
    lo, hi = np.array(bounds, float).T
    return lo + (hi - lo) * rng.random(lo.shape)


def random_scenario(
    num_nodes: int,
    num_core: int,
    *,
    num_light: int | None = None,
    num_types: int | None = None,
    types_per_user: int = 2,
    fill: float = 0.5,
    seed: int = 0,
) -> Scenario:
    """A validated random `Scenario` with ``num_nodes`` nodes and ``num_core`` core services."""
    rng = np.random.default_rng([seed, num_nodes, num_core])
    V = int(num_nodes)
    num_servers = max(1, round(0.2 * V))
    is_server = np.zeros(V, bool)
    is_server[V - num_servers :] = True
    servers, devices = np.flatnonzero(is_server), np.flatnonzero(~is_server)
    capacity = np.array([_u(rng, ES_CAPACITY if s else ED_CAPACITY) for s in is_server])

    links = set()
    for i in range(1, num_servers):  # random tree over the servers, plus a ring
        links.add((int(servers[rng.integers(i)]), int(servers[i])))
    if num_servers > 2:
        for i in range(num_servers):
            a, b = int(servers[i]), int(servers[(i + 1) % num_servers])
            links.add((min(a, b), max(a, b)))
    home = {}
    for d in devices:
        home[int(d)] = int(servers[rng.integers(num_servers)])
        links.add((int(d), home[int(d)]))
        if len(devices) > 1 and rng.random() < 0.2:
            other = int(devices[rng.integers(len(devices))])
            if other != d:
                links.add((min(int(d), other), max(int(d), other)))
    links = sorted({(min(a, b), max(a, b)) for a, b in links if a != b})
    link_ends = np.array(links, np.int64).reshape(-1, 2)
    E = len(link_ends)

    Mc = int(num_core)
    Ml = int(num_light) if num_light is not None else max(2, (3 * Mc) // 2)
    M = Mc + Ml
    is_core = np.zeros(M, bool)
    core_ids = np.sort(rng.choice(M, Mc, replace=False))
    is_core[core_ids] = True
    light_ids = np.flatnonzero(~is_core)
    resource = np.array([_u(rng, CORE_RESOURCE if c else LIGHT_RESOURCE) for c in is_core])
    work = np.where(is_core, rng.uniform(2, 16, M), rng.uniform(0.5, 2, M))
    output_size = np.where(is_core, rng.uniform(0.1, 1, M), rng.uniform(0.25, 1.5, M))
    core_rate = np.where(is_core, rng.uniform(8, 32, M), np.nan)
    light_shape = np.where(is_core, np.nan, rng.uniform(1, 2, M))
    light_scale = np.where(is_core, np.nan, rng.uniform(1, 20, M))

    # task types: a light root -> a chain of 2-4 core services -> a light sink; every other type
    # has a second root branch (light -> core) merging into the chain. Every core service is used.
    N = int(num_types) if num_types is not None else max(2, Mc // 2)
    pending = list(rng.permutation(core_ids))
    dags = []
    for n in range(N):
        length = min(int(rng.integers(2, 5)), Mc)
        chain = [pending.pop() for _ in range(min(length, len(pending)))]
        while len(chain) < length:
            c = int(rng.choice(core_ids))
            if c not in chain:
                chain.append(c)
        used = set(chain)
        root = int(rng.choice(light_ids))
        sink = int(rng.choice([m for m in light_ids if m != root] or light_ids))
        edges = [(root, chain[0])] + list(zip(chain[:-1], chain[1:])) + [(chain[-1], sink)]
        used |= {root, sink}
        if n % 2 == 1:
            extra_core = [c for c in core_ids if c not in used]
            extra_light = [m for m in light_ids if m not in used]
            if extra_core and extra_light:
                c, r = int(rng.choice(extra_core)), int(rng.choice(extra_light))
                edges += [(r, c), (c, chain[-1])]
        dags.append(edges)
    while pending:  # leftover core services join the chains of random types
        c = pending.pop()
        free_of_c = [d for d in dags if all(c not in e for e in d)]
        if len(free_of_c) < len(dags):  # already used as a second branch
            continue
        edges = free_of_c[int(rng.integers(len(free_of_c)))]
        last_core = [b for a, b in edges if is_core[b]][-1]
        sink = [b for a, b in edges if a == last_core][0]
        edges.remove((last_core, sink))
        edges += [(last_core, c), (c, sink)]

    S = max(len({m for e in d for m in e}) for d in dags)
    P = max(max(sum(1 for a, b in d if b == m) for m in {m for e in d for m in e}) for d in dags)
    stage_service = np.full((N, S), -1, np.int64)
    stage_parents = np.full((N, S, P), -1, np.int64)
    stage_child = np.full((N, S), -1, np.int64)
    sink_stage = np.zeros(N, np.int64)
    for n, edges in enumerate(dags):
        services = sorted({m for e in edges for m in e})
        index = {m: i for i, m in enumerate(services)}
        stage_service[n, : len(services)] = services
        for a, b in edges:
            stage_child[n, index[a]] = index[b]
        for s in range(len(services)):
            parents = sorted(index[a] for a, b in edges if b == services[s])
            stage_parents[n, s, : len(parents)] = parents
            if stage_child[n, s] < 0:
                sink_stage[n] = s

    users = devices if len(devices) else servers
    U = len(users)
    user_gateway = np.array([home.get(int(d), int(d)) for d in users], np.int64)
    arrival_rate = np.zeros((U, N))
    for u in range(U):
        arrival_rate[u, rng.choice(N, min(types_per_user, N), replace=False)] = rng.uniform(0.15, 1.5, min(types_per_user, N))

    # scale the arrivals so that the core demand fits `fill` of the capacity in every resource
    uses = np.zeros((N, M), bool)
    for n in range(N):
        uses[n, stage_service[n][stage_service[n] >= 0]] = True
    for _ in range(50):
        busy = (arrival_rate.sum(0) @ uses) * work / np.where(is_core, core_rate, 1.0)
        req = np.where(is_core & uses.any(0), np.maximum(1, np.ceil(busy)), 0)
        ratio = (req @ resource) / (fill * capacity.sum(0))
        if ratio.max() <= 1:
            break
        arrival_rate *= 0.9 / ratio.max()

    sc = Scenario(
        name=f"random_{V}x{Mc}",
        node_names=tuple(("ES" if s else "ED") + str(v) for v, s in enumerate(is_server)),
        node_is_server=is_server,
        capacity=capacity,
        link_ends=link_ends,
        link_bandwidth=rng.uniform(0.1, 1.0, E),
        link_length=np.zeros(E),
        propagation_speed=float("inf"),
        service_names=tuple(("core" if c else "light") + str(m) for m, c in enumerate(is_core)),
        service_is_core=is_core,
        resource=resource,
        work=work,
        output_size=output_size,
        core_rate=core_rate,
        light_shape=light_shape,
        light_scale=light_scale,
        cost_deploy=np.where(is_core, 20.0, 4.0),
        cost_maintain=np.where(is_core, 4.0, 1.0),
        cost_payload=np.where(is_core, 0.0, 0.5),
        type_names=tuple(f"type{n}" for n in range(N)),
        input_size=rng.uniform(0.5, 4, N),
        deadline=rng.uniform(50, 100, N),
        stage_service=stage_service,
        stage_parents=stage_parents,
        stage_child=stage_child,
        sink_stage=sink_stage,
        user_gateway=user_gateway,
        arrival_rate=arrival_rate,
        nakagami_m=rng.uniform(1.5, 3, U),
        nakagami_omega=rng.uniform(0.5, 1, U),
        meta={"spec": "synthetic", "seed": seed, "instance": 0},
    )
    validate_scenario(sc)
    return sc


__all__ = ["random_scenario"]
