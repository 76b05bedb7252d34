"""The pipeline of one run, without Hydra: a composed config in, an `xarray.Dataset` out.

- `prepare(cfg)` checks every option and builds what the run needs (components, sim settings,
  sampled scenarios): a bad input is a `ConfigError` before anything is solved or compiled.
- `run(cfg)` (or `run(prepare(cfg))`) solves the placement, runs the engine and returns the run
  dataset, plugins' additions (``edgefm_dataset_finalize``) included.
- `run_engine` is the engine part alone (scenarios + components + `SimSettings` -> arrays), which
  tests and notebooks call directly.

`edgefm.cli` parses the command line, fires the lifecycle hooks, writes the dataset and prints the
summary around these.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import os
import sys
import time
import warnings
from typing import Any

import jax
import numpy as np

from edgefm.config.schema import SimConfig
from edgefm.errors import ConfigError, EdgefmError
from edgefm.interfaces import options as component_options
from edgefm.sim.keys import realisation_keys
from edgefm.sim.prepare import compute_sizes, expected_in_flight, make_params, row_class, stack_arrays
from edgefm.sim.rollout import simulate
from edgefm.sim.failures import failing
from edgefm.sim.types import CAPACITIES, CORE_DISPATCH_RULES, LIGHT_ORDERS, ROOT_READY_RULES, SimSizes

log = logging.getLogger("edgefm")

# ----------------------------------------------------------------------------------------------
# The sim settings: the fields and defaults of the `sim` schema, as plain values


def validate_sim(sim) -> None:
    """Check the `sim` settings (`SimSettings` does when it is made)."""

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
                           ("light_order", LIGHT_ORDERS), ("capacities", CAPACITIES)):
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


def _plain_default(f: dataclasses.Field):
    value = f.default_factory() if f.default is dataclasses.MISSING else f.default
    if isinstance(value, enum.Enum):
        return str, value.value
    if isinstance(value, list):
        return tuple, tuple(value)
    return f.type, value


def _settings_class() -> type:
    """`SimSettings`: one field per field of `edgefm.config.schema.SimConfig` (the one place the
    sim options and their defaults are written), with plain values: an enum's value as a string,
    a list as a tuple. Frozen, and checked by `validate_sim` when made."""
    fields = []
    for f in dataclasses.fields(SimConfig):
        typ, default = _plain_default(f)
        fields.append((f.name, typ, dataclasses.field(default=default)))

    def __post_init__(self):
        object.__setattr__(self, "quantiles", tuple(float(q) for q in self.quantiles))
        validate_sim(self)

    cls = dataclasses.make_dataclass(
        "SimSettings", fields, frozen=True,
        namespace={"__post_init__": __post_init__, "__doc__": (
            "The `sim` settings of a run: the fields and defaults of `edgefm.config.schema.SimConfig` "
            "(documented there) as plain values; checked when made (`validate_sim`).")},
    )
    cls.__module__ = __name__  # pickled by reference, as a class written here would be
    return cls


SimSettings = _settings_class()


def sim_settings(node) -> SimSettings:
    """`SimSettings` from the ``sim`` node of a composed config (checked)."""
    from omegaconf import OmegaConf

    values = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    return SimSettings(**values)


# ----------------------------------------------------------------------------------------------
# Components


def make_component(registry, kind: str, node) -> Any:
    """Instantiate the component a config group selected: ``node.name`` resolved in ``registry``,
    built with its ``Config`` filled from the other keys of ``node`` (checked there)."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from edgefm.errors import first_line

    if not isinstance(node, DictConfig) or "name" not in node:
        raise ConfigError(
            f"{kind}.name", None, f"a {kind} plugin name, chosen with {kind}=<name>: one of {', '.join(registry.names(kind))}"
        )
    name = node.name
    cls = registry.resolve(kind, name)
    values = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "name"}
    try:
        config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls.Config), values))
    except OmegaConfBaseException as exc:
        key = str(getattr(exc, "full_key", "") or "")
        fields = [f.name for f in dataclasses.fields(cls.Config)]
        accepted = f"the options of {kind} {name!r} are: {', '.join(fields)}" if fields else f"{kind} {name!r} has no options"
        raise ConfigError(
            f"{kind}.{key}" if key else kind,
            values.get(key.split(".")[0]) if key else values,
            f"{first_line(exc)}; {accepted}",
        ) from None
    return cls.from_config(config)


def plugin_versions(registry, names: dict[str, str]) -> dict[str, str]:
    """``<kind>.<name>`` -> ``"<distribution> <version>"`` for the selected components."""
    versions = {}
    for kind, name in names.items():
        row = next((r for r in registry.entries(kind) if r.name == name), None)
        if row is not None:
            versions[f"{kind}.{name}"] = f"{row.distribution} {row.version}".strip()
    return versions


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
    rows_tried: tuple[int, ...] = ()  # the task rows of each engine run (adaptive capacities), the last = sizes.B


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


def _overload_hint(exc: EdgefmError, scenarios, load: float) -> EdgefmError:
    """``exc`` (a placement that failed) with a note on the arrival rates when the offered work
    exceeds the whole network's capacity (`edgefm.config.check.offered_load`)."""
    from edgefm.config.check import offered_load

    ratio, resource = max(offered_load(sc, load) for sc in scenarios)
    if ratio <= 1:
        return exc
    note = (f"the arrival rates (scenario.user_defaults.arrival_rate, scenario.users[*].arrival_rate; tasks/ms) "
            f"at workload.load = {load:g} keep {ratio:.1f}x the {resource} of the whole network busy: are they per "
            "second? (1 task/s = 0.001 tasks/ms)")
    if isinstance(exc, ConfigError):
        hint = f"{exc.hint}; {note}" if exc.hint else note
        return ConfigError(exc.field, exc.value, exc.accepted, hint)
    try:
        return type(exc)(f"{exc} ({note})")
    except TypeError:
        return EdgefmError(f"{exc} ({note})")


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


def initial_rows(scenarios, sim, *, load: float, peak_factor: float) -> int | None:
    """The task rows the engine starts with: None (the whole buffer) under ``sim.capacities=worst_case``,
    else the class (`row_class`: a power of two, so up to 2x of headroom) of the tasks Little's law
    expects in flight (`expected_in_flight`)."""
    if sim.capacities == "worst_case":
        return None
    return row_class(expected_in_flight(scenarios, load=load, peak_factor=peak_factor))


def run_engine(scenarios, components: Components, sim, *, seed: int, x_core=None, placement_info=None) -> EngineRun:
    """Solve the placement (unless `x_core` is given), then simulate every realisation of every instance.
    ``sim`` is a `SimSettings` (checked when it was made, as the components were)."""
    schedules = failure_schedules(scenarios, components.failure, sim)  # names checked before any solve
    seconds = {}
    t0 = time.perf_counter()
    load = workload_load(components.workload)
    if x_core is None:
        try:
            x_core, placement_info = solve_placements(scenarios, components.placement, float(sim.slot_ms),
                                                      components.channel)
        except EdgefmError as exc:
            raise _overload_hint(exc, scenarios, load) from exc
    seconds["placement"] = time.perf_counter() - t0
    peak = float(components.workload.peak_factor())
    failures = failing(components.failure)
    sizes = compute_sizes(scenarios, x_core, sim, load=load, peak_factor=peak, failures=failures)  # the worst case
    if getattr(sim, "memory_check", False):
        from edgefm.io.budget import check_memory

        check_memory(memory_estimate(sizes, sim, len(scenarios), scenarios[0].num_services))
    arrays = stack_arrays(scenarios, x_core, sizes.Ic, sizes.T, schedules)
    params = make_params(sim)
    keys = realisation_keys(int(seed), len(scenarios), int(sim.realisations))
    t0 = time.perf_counter()
    show = bool(sim.progress) and sys.stderr.isatty()
    chunk = int(sim.chunk_slots) or (max(1, sizes.T // 20) if show else 0)
    rows = initial_rows(scenarios, sim, load=load, peak_factor=peak)
    attempts = []
    while True:  # adaptive capacities: a run that overflowed its rows is redone with twice as many
        sizes = compute_sizes(scenarios, x_core, sim, load=load, peak_factor=peak, failures=failures, rows=rows)
        attempts.append(sizes.B)
        with _progress_bar(show, f"{len(scenarios)} x {int(sim.realisations)} realisations, {sizes.T} slots") as bar:
            out = simulate(keys, arrays, params, sizes, components.channel, components.workload,
                           components.controller, chunk_slots=chunk, progress=bar, failure=components.failure,
                           batch=None if sim.batch is None else int(sim.batch))
            out = jax.tree.map(np.asarray, jax.block_until_ready(out))
        if not (np.sum(out["list_overflow"]) and sizes.B < sizes.task_capacity):
            break
        rows = 2 * sizes.B
        log.info(f"edgefm: {int(np.sum(out['list_overflow']))} list-size events with {sizes.B} task rows: "
                 f"running again with {min(rows, sizes.task_capacity)}")
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
        rows_tried=tuple(attempts),
        scenarios=list(scenarios),
        x_core=list(x_core),
        placement_info=list(placement_info or [{} for _ in scenarios]),
        load=load,
        seconds=seconds,
        link_up=np.stack([s.link_up for s in schedules]) if schedules is not None else None,
    )


# ----------------------------------------------------------------------------------------------
# The pipeline: prepare, then run


@dataclasses.dataclass
class Job:
    """A checked run, ready to go: what `prepare` built from a composed config."""

    cfg: Any  # the composed config (read-only from here on)
    components: Components
    sim: SimSettings
    scenarios: list
    names: dict[str, str]  # kind -> component name
    strategy: str  # the strategy label the dataset carries (`edgefm.results.strategy_label`)
    config_yaml: str  # the resolved config, as the dataset records it
    overrides: list[str]  # the command-line overrides (for the closures changed)
    registry: Any
    estimate: Any = None  # `edgefm.io.budget.Estimate` (the core instances at their least)
    warnings: list = dataclasses.field(default_factory=list)  # plausibility warnings, one line each


def task_overrides() -> list[str]:
    """The command-line overrides of the Hydra job running now (empty outside a Hydra job)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    except Exception:  # noqa: BLE001 - no Hydra job
        return []


def output_filename(cfg) -> str:
    """``output.filename``, checked: a file name without folders."""
    filename = str(cfg.output.filename)
    if not filename or filename in (".", "..") or "/" in filename or os.sep in filename:
        raise ConfigError("output.filename", filename, "a file name without folders, e.g. results.nc")
    return filename


def prepare(cfg, registry=None, overrides: list[str] | None = None) -> Job:
    """Check every option of the composed config ``cfg`` and build the run's inputs: components
    (each checks its options), `SimSettings`, the sampled and validated scenario instances. Raises
    `ConfigError` (or another `EdgefmError`) for bad input; nothing is solved or compiled.
    ``overrides``: the command-line overrides (default: those of the Hydra job running now)."""
    from omegaconf import OmegaConf

    from edgefm.plugins import KINDS, Registry
    from edgefm.scenario.spec import build_scenarios

    from edgefm.config.check import check_added_keys, check_plausible
    from edgefm.results import strategy_label
    from edgefm.scenario.spec import spec_to_dict

    registry = Registry.default() if registry is None else registry
    check_added_keys(cfg, skip=KINDS)  # keys given with +; the components check their own below
    output_filename(cfg)
    components = Components(**{kind: make_component(registry, kind, cfg[kind]) for kind in KINDS})
    sim = sim_settings(cfg.sim)
    scenarios = build_scenarios(cfg.scenario, cfg.seed)
    warnings_ = check_plausible(spec_to_dict(cfg.scenario), scenarios, sim, workload_load(components.workload))
    names = {kind: str(cfg[kind].name) for kind in KINDS}
    strategy, mislabel = strategy_label(str(cfg.strategy), names)
    warnings_ += [mislabel] if mislabel else []
    for line in warnings_:
        log.warning(f"edgefm: warning: {line}")
    # the memory a run needs, before the placement is solved (its core instances at their fewest,
    # which hardly matters next to the buffers); `run_engine` checks again with the placement's
    placeholder = [np.zeros((sc.num_nodes, sc.num_services), np.int64) for sc in scenarios]
    sizes = compute_sizes(scenarios, placeholder, sim, load=workload_load(components.workload),
                          peak_factor=float(components.workload.peak_factor()), failures=failing(components.failure))
    estimate = memory_estimate(sizes, sim, len(scenarios), scenarios[0].num_services,
                               task_records=bool(cfg.output.task_records))
    if sim.memory_check:
        from edgefm.io.budget import check_memory

        check_memory(estimate)
    OmegaConf.set_readonly(cfg, True)  # plugins see it; none may change it
    return Job(
        cfg=cfg,
        components=components,
        sim=sim,
        scenarios=scenarios,
        names=names,
        strategy=strategy,
        config_yaml=OmegaConf.to_yaml(cfg, resolve=True),
        overrides=task_overrides() if overrides is None else list(overrides),
        registry=registry,
        estimate=estimate,
        warnings=warnings_,
    )


def memory_estimate(sizes: SimSizes, sim, instances: int, num_services: int, task_records: bool = False):
    """`edgefm.io.budget.Estimate` of a run of these sizes in the layout ``sim`` gives."""
    from edgefm.io.budget import estimate
    from edgefm.sim.rollout import realisation_layout

    R = int(sim.realisations)
    layout = realisation_layout(R, None if sim.batch is None else int(sim.batch))
    return estimate(sizes, realisations=R, instances=instances, layout=layout, num_services=num_services,
                    task_records=task_records, accelerator=jax.default_backend() != "cpu")


def run(job, registry=None):
    """The run dataset (`xarray.Dataset`) of a composed config, or of a `Job` from `prepare`: the
    placement solved, every realisation simulated, the dataset built and the plugins' additions
    (``edgefm_dataset_finalize``) merged in. Nothing is written."""
    from edgefm.config.closures import closure_changes
    from edgefm.plugins import get_plugin_manager
    from edgefm.results import build_dataset, merge_plugin_datasets

    if not isinstance(job, Job):
        job = prepare(job, registry)
    cfg = job.cfg
    engine = run_engine(job.scenarios, job.components, job.sim, seed=int(cfg.seed))
    ds = build_dataset(
        engine,
        slot_ms=job.sim.slot_ms,
        names=job.names,
        seed=int(cfg.seed),
        config_yaml=job.config_yaml,
        plugin_versions=plugin_versions(job.registry, job.names),
        task_records=bool(cfg.output.task_records),
        extra_attrs={
            "task": str(cfg.task),
            "closures": str(cfg.closures.name),
            # every closure in force that is not the preset's (docs/SEMANTICS.md §13); "" = none
            "closures_changed": "; ".join(closure_changes(cfg, job.overrides)),
            "scenario": str(cfg.scenario.name),
            # the draw index of each instance (not consecutive with scenario.hostable_reserve)
            "scenario_draws": [int(sc.meta.get("instance", i)) for i, sc in enumerate(job.scenarios)],
        },
        strategy=job.strategy,
    )
    pm = get_plugin_manager()
    return merge_plugin_datasets(ds, pm.hook.edgefm_dataset_finalize(dataset=ds, cfg=cfg))


def summarise(ds) -> dict[str, Any]:
    """The headline summary of a run dataset (`edgefm.results.summarise_run`'s numbers)."""
    from types import SimpleNamespace

    from edgefm.config.closures import describe
    from edgefm.results import summarise_run

    names = {kind: str(ds[kind].values.ravel()[0]) for kind in ("placement", "controller")}
    outputs = {name: np.asarray(ds[name].values) for name in (
        "ontime_rate", "cost_core", "cost_light", "cost_total", "tasks_arrived", "tasks_dropped", "list_overflow")}
    seconds = {k: ds.attrs[f"seconds_{k}"] for k in ("placement", "simulate") if f"seconds_{k}" in ds.attrs}
    summary = summarise_run(SimpleNamespace(outputs=outputs, seconds=seconds), names, str(ds.attrs.get("strategy", "")))
    changes = [c for c in str(ds.attrs.get("closures_changed", "")).split("; ") if c]
    summary["closures"] = describe(str(ds.attrs.get("closures", "")), changes)
    return summary
