"""Validation of a scenario spec (before sampling) and of a built `Scenario`.

Every problem raises `ConfigError(field, value, accepted)` whose field is the path of the offending
key in the config, e.g. ``scenario.services.text_encoder.work`` or ``scenario.task_types.qa.edges[2]``.
The spec is taken as a plain dict that already passed the structured schema
(`edgefm.config.scenario.ScenarioSpec`), so only semantic checks are made here.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass

import numpy as np

from edgefm.errors import ConfigError
from edgefm.scenario.model import RESOURCES, Scenario

ROOT = "scenario"
NODE_KINDS = ("ED", "ES")
SERVICE_KINDS = ("core", "light")

# Lower bound of every range-valued key: (bound, strict). Strict means the low end must be > bound.
NONNEGATIVE = (0.0, False)
POSITIVE = (0.0, True)
RANGE_BOUNDS: dict[str, tuple[float, bool]] = {
    "cpu": NONNEGATIVE,
    "ram": NONNEGATIVE,
    "gpu": NONNEGATIVE,
    "vram": NONNEGATIVE,
    "work": NONNEGATIVE,
    "output_size": NONNEGATIVE,
    "rate": POSITIVE,
    "gamma_shape": POSITIVE,
    "gamma_scale": POSITIVE,
    "input_size": NONNEGATIVE,
    "deadline": POSITIVE,
    "link_bandwidth": POSITIVE,
    "link_length": NONNEGATIVE,
    "arrival_rate": NONNEGATIVE,
    "nakagami_m": (0.5, False),  # a Nakagami shape is >= 1/2
    "nakagami_omega": POSITIVE,
}
COST_KEYS = ("cost_deploy", "cost_maintain", "cost_payload")
CORE_KEYS = ("cpu", "ram", "gpu", "vram", "work", "output_size", "rate")
LIGHT_KEYS = ("cpu", "ram", "gpu", "vram", "work", "output_size", "gamma_shape", "gamma_scale")


def _bound_text(bound: float, strict: bool) -> str:
    return f"{'>' if strict else '>='} {bound:g}"


def check_range(value, field: str, key: str) -> tuple[float, float]:
    """Check a [low, high] range for the quantity ``key``; return it as floats."""
    bound, strict = RANGE_BOUNDS[key]
    accepted = f"a range [low, high] of finite numbers {_bound_text(bound, strict)} with low <= high"
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise ConfigError(field, value, accepted, "a fixed value v is written [v, v]")
    try:
        low, high = float(value[0]), float(value[1])
    except (TypeError, ValueError):
        raise ConfigError(field, value, accepted) from None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(field, value, accepted)
    if low < bound or (strict and low <= bound):
        raise ConfigError(field, value, accepted)
    if low > high:
        raise ConfigError(field, value, accepted, "low > high")
    return low, high


def check_cost(value, field: str) -> float:
    accepted = "a finite number >= 0"
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(field, value, accepted) from None
    if not math.isfinite(v) or v < 0:
        raise ConfigError(field, value, accepted)
    return v


def _check_name(name, field: str) -> None:
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(field, name, "a non-empty name")


# ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dag:
    """The structure of one task type. Stages are the services sorted by service id."""

    services: tuple[int, ...]  # [S_n] service ids, ascending (stage s runs services[s])
    parents: tuple[tuple[int, ...], ...]  # [S_n] stage indices of the parents, ascending
    child: tuple[int, ...]  # [S_n] stage index of the successor, -1 for the sink
    sink: int  # stage index of the sink


def task_dag(type_name: str, tspec: dict, service_ids: dict[str, int]) -> Dag:
    """Check the DAG of task type ``type_name`` is an in-tree over known services; return its stages."""
    base = f"{ROOT}.task_types.{type_name}"
    edges = list(tspec.get("edges") or [])
    extra = list(tspec.get("services") or [])
    names: list[str] = []
    for i, name in enumerate(extra):
        if name not in service_ids:
            raise ConfigError(f"{base}.services[{i}]", name, "a service declared in scenario.services")
        if name in extra[:i]:
            raise ConfigError(f"{base}.services[{i}]", name, "each service listed once (duplicate name)")
        names.append(name)
    pairs: list[tuple[str, str]] = []
    for i, edge in enumerate(edges):
        field = f"{base}.edges[{i}]"
        accepted = "an edge [parent, child] between two services declared in scenario.services"
        if not isinstance(edge, (list, tuple)) or len(edge) != 2:
            raise ConfigError(field, edge, accepted)
        for name in edge:
            if name not in service_ids:
                raise ConfigError(field, list(edge), accepted, f"unknown service {name!r}")
        parent, child = edge
        if parent == child:
            raise ConfigError(field, list(edge), "an acyclic DAG", "an edge from a service to itself is a cycle")
        if (parent, child) in pairs:
            raise ConfigError(field, list(edge), "each edge listed once (duplicate edge)")
        pairs.append((parent, child))
        names.extend(edge)
    names = list(dict.fromkeys(names))
    if not names:
        raise ConfigError(base, tspec, "a task type with at least one service (give edges or services)")

    # Cycles (Kahn): a cycle is reported before the in-tree checks, which it would otherwise trip.
    succ: dict[str, list[str]] = {n: [] for n in names}
    indeg = {n: 0 for n in names}
    for p, c in pairs:
        succ[p].append(c)
        indeg[c] += 1
    queue = deque(n for n in names if indeg[n] == 0)
    seen = 0
    while queue:
        n = queue.popleft()
        seen += 1
        for c in succ[n]:
            indeg[c] -= 1
            if indeg[c] == 0:
                queue.append(c)
    if seen < len(names):
        cyclic = sorted(n for n in names if indeg[n] > 0)
        raise ConfigError(f"{base}.edges", [list(e) for e in pairs], "an acyclic DAG", f"cycle through {cyclic}")
    for n in names:
        if len(succ[n]) > 1:
            raise ConfigError(
                f"{base}.edges",
                [list(e) for e in pairs],
                "an in-tree: every service has at most one successor",
                f"{n!r} has successors {succ[n]}",
            )
    sinks = [n for n in names if not succ[n]]
    if len(sinks) != 1:
        raise ConfigError(
            f"{base}.edges",
            [list(e) for e in pairs],
            "an in-tree with exactly one sink (a service without successor)",
            f"sinks: {sinks}",
        )

    ordered = sorted(names, key=service_ids.__getitem__)
    stage_of = {n: s for s, n in enumerate(ordered)}
    parents = tuple(tuple(sorted(stage_of[p] for p, c in pairs if c == n)) for n in ordered)
    child = tuple(stage_of[succ[n][0]] if succ[n] else -1 for n in ordered)
    return Dag(
        services=tuple(service_ids[n] for n in ordered),
        parents=parents,
        child=child,
        sink=stage_of[sinks[0]],
    )


def resolve_users(spec: dict) -> list[dict]:
    """The users of a spec; ``users: null`` expands to one user per ED (see ScenarioSpec)."""
    users = spec.get("users")
    if users is not None:
        return [dict(u) for u in users]
    nodes = spec.get("nodes") or {}
    neighbours: dict[str, list[str]] = {n: [] for n in nodes}
    for link in spec.get("links") or []:
        if isinstance(link, (list, tuple)) and len(link) == 2 and all(n in nodes for n in link):
            a, b = link
            neighbours[a].append(b)
            neighbours[b].append(a)
    out = []
    for name, kind in nodes.items():
        if kind != "ED":
            continue
        servers = [n for n in nodes if nodes[n] == "ES" and n in neighbours[name]]
        out.append({"name": f"user_{name}", "gateway": servers[0] if servers else name, "types": None})
    return out


def _check_connected(names: list[str], adjacency: dict[str, set[str]], field: str, value) -> None:
    seen = {names[0]}
    queue = deque([names[0]])
    while queue:
        for m in adjacency[queue.popleft()]:
            if m not in seen:
                seen.add(m)
                queue.append(m)
    if len(seen) < len(names):
        missing = [n for n in names if n not in seen]
        raise ConfigError(field, value, "a connected node graph", f"{missing} not reachable from {names[0]!r}")


def validate_spec(spec: dict) -> None:
    """Check a scenario spec (plain dict, schema already applied) before sampling."""
    _check_name(spec.get("name"), f"{ROOT}.name")
    instances = spec.get("instances")
    if not isinstance(instances, int) or instances < 1:
        raise ConfigError(f"{ROOT}.instances", instances, "an integer >= 1")
    reserve = spec.get("hostable_reserve")
    if reserve is not None and (isinstance(reserve, bool) or not isinstance(reserve, (int, float))
                                or not 0 <= reserve < 1):
        raise ConfigError(f"{ROOT}.hostable_reserve", reserve, "null (keep every instance) or a fraction in [0, 1)")
    speed = spec.get("propagation_speed")
    if not isinstance(speed, (int, float)) or math.isnan(speed) or speed <= 0:
        raise ConfigError(f"{ROOT}.propagation_speed", speed, "a number > 0 (.inf: no propagation delay)")

    # --- nodes and links -------------------------------------------------------------------
    for kind in NODE_KINDS:
        for r in RESOURCES:
            check_range(spec["node_kinds"][kind][r], f"{ROOT}.node_kinds.{kind}.{r}", r)
    nodes = spec.get("nodes") or {}
    if not nodes:
        raise ConfigError(f"{ROOT}.nodes", nodes, "at least one node: a mapping name -> ED | ES")
    for name, kind in nodes.items():
        _check_name(name, f"{ROOT}.nodes")
        if kind not in NODE_KINDS:
            raise ConfigError(f"{ROOT}.nodes.{name}", kind, f"a node kind, one of {list(NODE_KINDS)}")
    check_range(spec["link_bandwidth"], f"{ROOT}.link_bandwidth", "link_bandwidth")
    check_range(spec["link_length"], f"{ROOT}.link_length", "link_length")
    adjacency: dict[str, set[str]] = {n: set() for n in nodes}
    for i, link in enumerate(spec.get("links") or []):
        field = f"{ROOT}.links[{i}]"
        accepted = "a link [a, b] between two distinct nodes declared in scenario.nodes"
        if not isinstance(link, (list, tuple)) or len(link) != 2:
            raise ConfigError(field, link, accepted)
        a, b = link
        for n in (a, b):
            if n not in nodes:
                raise ConfigError(field, list(link), accepted, f"unknown node {n!r}")
        if a == b:
            raise ConfigError(field, list(link), accepted, "a link from a node to itself")
        if b in adjacency[a]:
            raise ConfigError(field, list(link), "each link listed once (duplicate link)")
        adjacency[a].add(b)
        adjacency[b].add(a)
    _check_connected(list(nodes), adjacency, f"{ROOT}.links", [list(link) for link in spec.get("links") or []])

    # --- services ------------------------------------------------------------------------------
    kinds = spec["service_kinds"]
    for kind, keys in (("core", CORE_KEYS), ("light", LIGHT_KEYS)):
        for key in keys:
            check_range(kinds[kind][key], f"{ROOT}.service_kinds.{kind}.{key}", key)
        for key in COST_KEYS:
            check_cost(kinds[kind][key], f"{ROOT}.service_kinds.{kind}.{key}")
    services = spec.get("services") or {}
    if not services:
        raise ConfigError(f"{ROOT}.services", services, "at least one service: name -> {kind: core | light}")
    for name, svc in services.items():
        base = f"{ROOT}.services.{name}"
        _check_name(name, f"{ROOT}.services")
        kind = svc.get("kind")
        if kind not in SERVICE_KINDS:
            raise ConfigError(f"{base}.kind", kind, f"a service kind, one of {list(SERVICE_KINDS)}")
        own = CORE_KEYS if kind == "core" else LIGHT_KEYS
        for key in set(CORE_KEYS) | set(LIGHT_KEYS):
            if svc.get(key) is None:
                continue
            if key not in own:
                raise ConfigError(f"{base}.{key}", svc[key], f"no {key} for a {kind} service (omit the key)")
            check_range(svc[key], f"{base}.{key}", key)
        for key in COST_KEYS:
            if svc.get(key) is not None:
                check_cost(svc[key], f"{base}.{key}")

    # --- task types ------------------------------------------------------------------------------
    for key in ("input_size", "deadline"):
        check_range(spec["task_defaults"][key], f"{ROOT}.task_defaults.{key}", key)
    types = spec.get("task_types") or {}
    if not types:
        raise ConfigError(f"{ROOT}.task_types", types, "at least one task type")
    service_ids = {n: i for i, n in enumerate(services)}
    for name, tspec in types.items():
        _check_name(name, f"{ROOT}.task_types")
        task_dag(name, tspec, service_ids)
        for key in ("input_size", "deadline"):
            if tspec.get(key) is not None:
                check_range(tspec[key], f"{ROOT}.task_types.{name}.{key}", key)

    # --- users -----------------------------------------------------------------------------------
    for key in ("arrival_rate", "nakagami_m", "nakagami_omega"):
        check_range(spec["user_defaults"][key], f"{ROOT}.user_defaults.{key}", key)
    users = resolve_users(spec)
    if not users:
        raise ConfigError(f"{ROOT}.users", users, "at least one user (null: one user per ED)")
    seen_users: list[str] = []
    for i, user in enumerate(users):
        base = f"{ROOT}.users[{i}]"
        _check_name(user.get("name"), f"{base}.name")
        if user["name"] in seen_users:
            raise ConfigError(f"{base}.name", user["name"], "a unique user name (duplicate name)")
        seen_users.append(user["name"])
        if user.get("gateway") not in nodes:
            raise ConfigError(f"{base}.gateway", user.get("gateway"), "a node declared in scenario.nodes")
        utypes = user.get("types")
        if utypes is not None:
            for j, t in enumerate(utypes):
                if t not in types:
                    raise ConfigError(f"{base}.types[{j}]", t, f"a task type, one of {list(types)}")
                if t in utypes[:j]:
                    raise ConfigError(f"{base}.types[{j}]", t, "each type listed once (duplicate name)")
        for key in ("arrival_rate", "nakagami_m", "nakagami_omega"):
            if user.get(key) is not None:
                check_range(user[key], f"{base}.{key}", key)


# ------------------------------------------------------------------------------------------------
def _check_array(values: np.ndarray, field: str, accepted: str, ok: np.ndarray) -> None:
    bad = np.argwhere(~ok)
    if bad.size:
        idx = tuple(int(i) for i in bad[0])
        raise ConfigError(f"{field}[{', '.join(map(str, idx))}]", float(values[idx]), accepted)


def _check_shape(arr: np.ndarray, shape: tuple, field: str) -> None:
    if tuple(arr.shape) != tuple(shape):
        raise ConfigError(f"{ROOT}.{field}", f"shape {tuple(arr.shape)}", f"shape {tuple(shape)}")


def validate_scenario(sc: Scenario) -> None:
    """Check a built scenario: shapes, finite non-negative values, DAG arrays, a connected graph."""
    V, M, N, U, K = sc.num_nodes, sc.num_services, sc.num_types, sc.num_users, len(RESOURCES)
    S = sc.stage_service.shape[1] if sc.stage_service.ndim == 2 else -1
    P = sc.stage_parents.shape[2] if sc.stage_parents.ndim == 3 else -1
    E = sc.link_ends.shape[0]
    for name, shape in [
        ("node_is_server", (V,)), ("capacity", (V, K)), ("link_ends", (E, 2)), ("link_bandwidth", (E,)),
        ("link_length", (E,)), ("service_is_core", (M,)), ("resource", (M, K)), ("work", (M,)),
        ("output_size", (M,)), ("core_rate", (M,)), ("light_shape", (M,)), ("light_scale", (M,)),
        ("cost_deploy", (M,)), ("cost_maintain", (M,)), ("cost_payload", (M,)), ("input_size", (N,)),
        ("deadline", (N,)), ("stage_service", (N, S)), ("stage_parents", (N, S, P)), ("stage_child", (N, S)),
        ("sink_stage", (N,)), ("user_gateway", (U,)), ("arrival_rate", (U, N)), ("nakagami_m", (U,)),
        ("nakagami_omega", (U,)),
    ]:  # fmt: skip
        _check_shape(np.asarray(getattr(sc, name)), shape, name)
    for names, field in ((sc.node_names, "node_names"), (sc.service_names, "service_names"),
                         (sc.type_names, "type_names")):  # fmt: skip
        dup = [n for i, n in enumerate(names) if n in names[:i]]
        if dup:
            raise ConfigError(f"{ROOT}.{field}", dup[0], "unique names (duplicate name)")

    nonneg, pos = "a finite number >= 0", "a finite number > 0"
    core, light = sc.service_is_core, ~sc.service_is_core
    checks = [
        ("capacity", sc.capacity, nonneg, np.isfinite(sc.capacity) & (sc.capacity >= 0)),
        ("link_bandwidth", sc.link_bandwidth, pos, np.isfinite(sc.link_bandwidth) & (sc.link_bandwidth > 0)),
        ("link_length", sc.link_length, nonneg, np.isfinite(sc.link_length) & (sc.link_length >= 0)),
        ("resource", sc.resource, nonneg, np.isfinite(sc.resource) & (sc.resource >= 0)),
        ("work", sc.work, nonneg, np.isfinite(sc.work) & (sc.work >= 0)),
        ("output_size", sc.output_size, nonneg, np.isfinite(sc.output_size) & (sc.output_size >= 0)),
        ("core_rate", sc.core_rate, "a finite number > 0 for core services",
         ~core | (np.isfinite(sc.core_rate) & (sc.core_rate > 0))),
        ("light_shape", sc.light_shape, "a finite number > 0 for light services",
         ~light | (np.isfinite(sc.light_shape) & (sc.light_shape > 0))),
        ("light_scale", sc.light_scale, "a finite number > 0 for light services",
         ~light | (np.isfinite(sc.light_scale) & (sc.light_scale > 0))),
        ("cost_deploy", sc.cost_deploy, nonneg, np.isfinite(sc.cost_deploy) & (sc.cost_deploy >= 0)),
        ("cost_maintain", sc.cost_maintain, nonneg, np.isfinite(sc.cost_maintain) & (sc.cost_maintain >= 0)),
        ("cost_payload", sc.cost_payload, nonneg, np.isfinite(sc.cost_payload) & (sc.cost_payload >= 0)),
        ("input_size", sc.input_size, nonneg, np.isfinite(sc.input_size) & (sc.input_size >= 0)),
        ("deadline", sc.deadline, pos, np.isfinite(sc.deadline) & (sc.deadline > 0)),
        ("arrival_rate", sc.arrival_rate, nonneg, np.isfinite(sc.arrival_rate) & (sc.arrival_rate >= 0)),
        ("nakagami_m", sc.nakagami_m, "a finite number >= 0.5", np.isfinite(sc.nakagami_m) & (sc.nakagami_m >= 0.5)),
        ("nakagami_omega", sc.nakagami_omega, pos, np.isfinite(sc.nakagami_omega) & (sc.nakagami_omega > 0)),
        ("link_ends", sc.link_ends, f"a node index in [0, {V})", (sc.link_ends >= 0) & (sc.link_ends < V)),
        ("user_gateway", sc.user_gateway, f"a node index in [0, {V})", (sc.user_gateway >= 0) & (sc.user_gateway < V)),
    ]  # fmt: skip
    for field, values, accepted, ok in checks:
        _check_array(np.asarray(values), f"{ROOT}.{field}", accepted, np.asarray(ok))
    if not (isinstance(sc.propagation_speed, (int, float)) and sc.propagation_speed > 0):
        raise ConfigError(f"{ROOT}.propagation_speed", sc.propagation_speed, "a number > 0 (inf allowed)")

    adjacency: dict[str, set[str]] = {n: set() for n in sc.node_names}
    for e, (a, b) in enumerate(sc.link_ends.tolist()):
        if a == b:
            raise ConfigError(f"{ROOT}.link_ends[{e}]", [a, b], "a link between two distinct nodes")
        adjacency[sc.node_names[a]].add(sc.node_names[b])
        adjacency[sc.node_names[b]].add(sc.node_names[a])
    if V:
        _check_connected(list(sc.node_names), adjacency, f"{ROOT}.link_ends", sc.link_ends.tolist())

    for n in range(N):
        _check_stage_arrays(sc, n)

    # Every service some task type uses must fit on at least one node, else no placement exists.
    used = np.unique(sc.stage_service[sc.stage_service >= 0])
    for m in used.tolist():
        if not np.any(np.all(sc.resource[m] <= sc.capacity, axis=1)):
            raise ConfigError(
                f"{ROOT}.services.{sc.service_names[m]}",
                dict(zip(RESOURCES, sc.resource[m].round(4).tolist())),
                "a resource need that fits the capacity of at least one node",
            )


def _check_stage_arrays(sc: Scenario, n: int) -> None:
    field = f"{ROOT}.task_types.{sc.type_names[n]}"
    row = sc.stage_service[n]
    valid = int(np.sum(row >= 0))
    accepted = "stages sorted by service id, padded at the end with -1, forming an in-tree with one sink"
    if valid == 0 or np.any(row[:valid] < 0) or np.any(row[valid:] != -1):
        raise ConfigError(f"{field}.stage_service", row.tolist(), accepted)
    if np.any(np.diff(row[:valid]) <= 0) or row[valid - 1] >= sc.num_services:
        raise ConfigError(f"{field}.stage_service", row.tolist(), accepted)
    child = sc.stage_child[n]
    sinks = [s for s in range(valid) if child[s] == -1]
    if len(sinks) != 1 or int(sc.sink_stage[n]) != sinks[0] or np.any(child[valid:] != -1):
        raise ConfigError(f"{field}.stage_child", child.tolist(), accepted)
    for s in range(sc.stage_parents.shape[1]):
        parents = sc.stage_parents[n, s]
        got = sorted(int(p) for p in parents if p >= 0)
        want = [p for p in range(valid) if child[p] == s] if s < valid else []
        if got != want or np.any(parents[len(got):] != -1):
            raise ConfigError(f"{field}.stage_parents[{s}]", parents.tolist(), accepted)
    # acyclic: following the children from any stage reaches the sink within `valid` steps
    for s in range(valid):
        cur, steps = s, 0
        while cur != -1 and steps <= valid:
            if not (-1 <= child[cur] < valid):
                raise ConfigError(f"{field}.stage_child", child.tolist(), accepted)
            cur, steps = int(child[cur]), steps + 1
        if cur != -1:
            raise ConfigError(f"{field}.stage_child", child.tolist(), accepted, "cycle")


__all__ = ["Dag", "check_range", "resolve_users", "task_dag", "validate_scenario", "validate_spec"]
