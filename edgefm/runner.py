"""The host-side pipeline, without Hydra: components + scenarios + placement -> engine -> arrays.

`edgefm.cli` builds a `Components` from the config and calls `run_engine`; tests and notebooks
call it directly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
import warnings
from typing import Any

import jax
import numpy as np

from edgefm.errors import ConfigError
from edgefm.interfaces import options as component_options
from edgefm.sim.keys import realisation_keys
from edgefm.sim.prepare import compute_sizes, make_params, stack_arrays
from edgefm.sim.rollout import simulate
from edgefm.sim.step import failing
from edgefm.sim.types import CORE_DISPATCH_RULES, LIGHT_ORDERS, ROOT_READY_RULES, SimSizes


@dataclasses.dataclass
class SimSettings:
    """The `sim` config group (see `edgefm.config.schema.SimConfig` for the documented defaults)."""

    realisations: int = 8
    batch: int | None = None
    slot_ms: float = 1.0
    arrival_ms: float = 200.0
    drain_ms: float = 100.0
    core_dispatch: str = "earliest_start"
    root_ready: str = "uplink_end"
    light_order: str = "input_arrival"
    y_max: int = 20
    max_light_instances: int = 8
    buffer_factor: float = 2.0
    max_core_ready: int = 0
    max_light_waiting: int = 0
    quantiles: tuple = (0.5, 0.9, 0.95, 0.99)
    progress: bool = True
    chunk_slots: int = 0


def validate_sim(sim) -> None:
    """Check the `sim` settings before anything is compiled."""

    def positive(name, value, integer=False):
        ok = value > 0 and np.isfinite(value) and (not integer or int(value) == value)
        if not ok:
            raise ConfigError(f"sim.{name}", value, "a positive " + ("integer" if integer else "finite number"))

    positive("realisations", sim.realisations, True)
    positive("slot_ms", sim.slot_ms)
    positive("arrival_ms", sim.arrival_ms)
    positive("y_max", sim.y_max, True)
    positive("max_light_instances", sim.max_light_instances, True)
    positive("buffer_factor", sim.buffer_factor)
    if not (sim.drain_ms >= 0 and np.isfinite(sim.drain_ms)):
        raise ConfigError("sim.drain_ms", sim.drain_ms, "a finite number >= 0 (ms)")
    for name in ("arrival_ms", "drain_ms"):
        value = getattr(sim, name)
        slots = value / sim.slot_ms
        if abs(slots - round(slots)) > 1e-9:
            raise ConfigError(f"sim.{name}", value, f"a whole multiple of sim.slot_ms = {sim.slot_ms}")
    for name, accepted in (("core_dispatch", CORE_DISPATCH_RULES), ("root_ready", ROOT_READY_RULES),
                           ("light_order", LIGHT_ORDERS)):
        if getattr(sim, name) not in accepted:
            raise ConfigError(f"sim.{name}", getattr(sim, name), "one of: " + ", ".join(accepted))
    for name in ("max_core_ready", "max_light_waiting"):
        value = getattr(sim, name)
        if not (int(value) == value and value >= 0):
            raise ConfigError(f"sim.{name}", value, "an integer >= 0 (0 = sized automatically)")
    batch = sim.batch
    if batch is not None and not (int(batch) == batch and batch >= 0):
        raise ConfigError("sim.batch", batch, "null (automatic) or an integer >= 0 (0 = all realisations at once)")
    if not (int(sim.chunk_slots) == sim.chunk_slots and sim.chunk_slots >= 0):
        raise ConfigError("sim.chunk_slots", sim.chunk_slots, "an integer >= 0 (0 = automatic)")
    for q in sim.quantiles:
        if not 0 <= q <= 1:
            raise ConfigError("sim.quantiles", list(sim.quantiles), "numbers in [0, 1]")


@dataclasses.dataclass
class Components:
    placement: Any
    controller: Any
    channel: Any
    workload: Any
    failure: Any = None  # None: nothing fails (as the failure model `none`)


@dataclasses.dataclass
class EngineRun:
    """What `run_engine` returns: host NumPy arrays with leading axes [instance, realisation]."""

    outputs: dict[str, np.ndarray]
    sizes: SimSizes
    scenarios: list
    x_core: list[np.ndarray]
    placement_info: list[dict]
    load: float
    seconds: dict[str, float]
    link_up: np.ndarray | None = None  # [instance, slot, link] bool: the failure model's link schedule


# placements solved in this process: (placement class, options, slot, scenario fingerprint) -> result
_PLACEMENTS: dict = {}


def scenario_fingerprint(sc) -> str:
    """A digest of every number and name of a scenario instance (not its provenance)."""
    import hashlib

    digest = hashlib.sha256()
    for field in dataclasses.fields(sc):
        if field.name == "meta":
            continue
        value = getattr(sc, field.name)
        digest.update(field.name.encode())
        digest.update(np.ascontiguousarray(value).tobytes() if isinstance(value, np.ndarray) else repr(value).encode())
    return digest.hexdigest()


def mean_uplink_rate(channel, sc) -> np.ndarray | None:
    """[U] MB/ms: the channel's mean-value uplink rate for scenario ``sc`` (None without a channel)."""
    if channel is None:
        return None
    return np.asarray(channel.mean_rate({"nakagami_m": sc.nakagami_m, "nakagami_omega": sc.nakagami_omega}), float)


def _accepts_uplink_rate(placement) -> bool:
    """Whether ``placement.solve`` takes the keyword ``uplink_rate`` (placements written before it
    existed do not, and are called without it)."""
    import inspect

    params = inspect.signature(placement.solve).parameters
    return "uplink_rate" in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def solve_placements(scenarios, placement, slot_ms: float, channel=None):
    """Solve (or reuse, see `AbstractPlacementSolver.reusable`) the placement of every instance.
    With a ``channel``, a solver that accepts it gets ``uplink_rate`` [U] MB/ms, the channel's
    mean-value rate (`AbstractChannelModel.mean_rate`; inf: the uplink takes no time)."""
    reuse = bool(getattr(placement, "reusable", lambda: False)())
    options = repr(sorted(component_options(placement).items()))
    pass_rate = channel is not None and _accepts_uplink_rate(placement)
    results = []
    for sc in scenarios:
        rate = mean_uplink_rate(channel, sc) if pass_rate else None
        extra = {} if rate is None else {"uplink_rate": rate}
        key = None
        if reuse:
            key = (type(placement), options, float(slot_ms), scenario_fingerprint(sc),
                   None if rate is None else rate.tobytes())
        if key not in _PLACEMENTS:
            result = placement.solve(sc, slot_ms=slot_ms, **extra)
            if key is None:
                results.append(result)
                continue
            _PLACEMENTS[key] = result
        results.append(_PLACEMENTS[key])
    for sc, res in zip(scenarios, results):
        x = np.asarray(res.x_core)
        if x.shape != (sc.num_nodes, sc.num_services) or (x < 0).any() or (x[:, ~sc.service_is_core] != 0).any():
            raise ConfigError(
                "placement", getattr(placement, "name", placement),
                f"a [V,M] = [{sc.num_nodes},{sc.num_services}] non-negative integer array with zero light columns",
            )
    return [np.asarray(r.x_core, np.int64) for r in results], [dict(r.info) for r in results]


def failure_schedules(scenarios, failure, sim):
    """The failure model's host-side schedule of every instance (docs/SEMANTICS.md §12), checked;
    None without a failure model."""
    if failure is None:
        return None
    dt = float(sim.slot_ms)
    T = int(round(sim.arrival_ms / dt)) + int(round(sim.drain_ms / dt))
    schedules = [failure.schedule(sc, total_slots=T, slot_ms=dt) for sc in scenarios]
    for sc, s in zip(scenarios, schedules):
        E = int(np.asarray(sc.link_ends).shape[0])
        for name, shape in (("node_up", (T, sc.num_nodes)), ("link_up", (T, E)), ("random_nodes", (sc.num_nodes,))):
            value = np.asarray(getattr(s, name))
            if value.shape != shape or value.dtype != bool:
                raise ConfigError(f"failure {failure.name!r}: schedule.{name}", f"{value.dtype}{list(value.shape)}",
                                  f"a bool array of shape {list(shape)}")
    return schedules


def workload_load(workload) -> float:
    """The workload's load multiplier (its option ``load``; 1 for a generator without one)."""
    return float(getattr(workload, "load", 1.0))


@contextlib.contextmanager
def _progress_bar(show: bool, what: str):
    """A rich progress bar over the slots on stderr (compiling first), or None."""
    if not show:
        yield None
        return
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(f"compiling, then simulating {what}", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total, description=f"simulating {what}")

        yield update


def run_engine(scenarios, components: Components, sim, *, seed: int, x_core=None, placement_info=None) -> EngineRun:
    """Solve the placement (unless `x_core` is given), then simulate every realisation of every instance."""
    validate_sim(sim)  # the components checked their options when they were made
    schedules = failure_schedules(scenarios, components.failure, sim)  # names checked before any solve
    seconds = {}
    t0 = time.perf_counter()
    if x_core is None:
        x_core, placement_info = solve_placements(scenarios, components.placement, float(sim.slot_ms),
                                                  components.channel)
    seconds["placement"] = time.perf_counter() - t0
    load = workload_load(components.workload)
    sizes = compute_sizes(scenarios, x_core, sim, load=load, peak_factor=float(components.workload.peak_factor()),
                          failures=failing(components.failure))
    arrays = stack_arrays(scenarios, x_core, sizes.Ic, sizes.T, schedules)
    params = make_params(sim)
    keys = realisation_keys(int(seed), len(scenarios), int(sim.realisations))
    t0 = time.perf_counter()
    show = bool(sim.progress) and sys.stderr.isatty()
    chunk = int(sim.chunk_slots) or (max(1, sizes.T // 20) if show else 0)
    with _progress_bar(show, f"{len(scenarios)} x {int(sim.realisations)} realisations, {sizes.T} slots") as progress:
        out = simulate(keys, arrays, params, sizes, components.channel, components.workload, components.controller,
                       chunk_slots=chunk, progress=progress, failure=components.failure,
                       batch=None if sim.batch is None else int(sim.batch))
        out = jax.tree.map(np.asarray, jax.block_until_ready(out))
    seconds["simulate"] = time.perf_counter() - t0
    overflow = int(np.sum(out["list_overflow"]))
    if overflow:
        warnings.warn(
            f"{overflow} list-size events in the engine (see list_overflow): results are approximate; "
            "raise sim.buffer_factor, sim.max_core_ready or sim.max_light_waiting",
            RuntimeWarning,
            stacklevel=2,
        )
    return EngineRun(
        outputs=out,
        sizes=sizes,
        scenarios=list(scenarios),
        x_core=list(x_core),
        placement_info=list(placement_info or [{} for _ in scenarios]),
        load=load,
        seconds=seconds,
        link_up=np.stack([s.link_up for s in schedules]) if schedules is not None else None,
    )
