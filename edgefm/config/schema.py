"""Structured configs of a run: the root config, `sim`, `output`, and their ConfigStore registration.

The YAML files in ``conf/`` start from these schemas (``defaults: [base_<name>, _self_]``), so a
misspelt key or a value of the wrong type is an error when Hydra composes the config, before
anything runs. The component groups (placement, controller, channel, workload) take their schema
from the plugin that provides the component: see `edgefm.plugins.register_configs`.
"""

import enum
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, List, Optional

from omegaconf import MISSING

from edgefm.config.scenario import ScenarioSpec, register_scenario_configs

CONFIG_DIR_ENV = "EDGEFM_CONFIG_DIR"


class CoreDispatch(enum.Enum):
    """How a core instance picks its next stage (MODEL.md §4)."""

    earliest_start = "earliest_start"  # any instance of the service that can start the stage first
    idle_only = "idle_only"  # only an idle instance; otherwise the stage waits


class RootReady(enum.Enum):
    """When a root stage becomes ready (docs/SEMANTICS.md §2.3)."""

    uplink_end = "uplink_end"  # at the first boundary at or after its task's upload ends
    arrival = "arrival"  # at its arrival boundary, while the upload may still run


class Capacities(enum.Enum):
    """How the engine sizes its task rows (docs/ENGINE.md, "Sizes"); the results do not depend on it."""

    adaptive = "adaptive"  # rows for the tasks expected in flight; doubled and the run redone on an overflow
    worst_case = "worst_case"  # rows for the whole task buffer from the start


class LightOrder(enum.Enum):
    """The service order of a light instance's admitted jobs (docs/SEMANTICS.md §2.7)."""

    input_arrival = "input_arrival"  # work-conserving: jobs whose input is there, in the order it arrived
    dispatch = "dispatch"  # strict FIFO in dispatch order: a job whose input is in flight blocks the rest


@dataclass
class SimConfig:
    """The ``sim`` group: horizon, engine sizes and reported quantiles (`edgefm.runner.SimSettings`)."""

    realisations: int = 8  # Monte Carlo realisations per sampled scenario instance
    batch: Optional[int] = None  # realisations vmapped at once (None: 1 on the CPU, all on an accelerator)
    slot_ms: float = 1.0  # slot length, ms; the controller decides once per slot
    arrival_ms: float = 200.0  # tasks arrive during [0, arrival_ms); a whole number of slots
    drain_ms: float = 100.0  # further time without arrivals for tasks in flight to finish; whole slots
    core_dispatch: CoreDispatch = CoreDispatch.earliest_start  # core dispatch rule: earliest_start | idle_only
    root_ready: RootReady = RootReady.uplink_end  # when a root becomes ready: uplink_end | arrival
    light_order: LightOrder = LightOrder.input_arrival  # light FIFO order: input_arrival | dispatch
    y_max: int = 20  # most stages one light instance may hold at once (its parallelism bound)
    max_light_instances: int = 8  # light instance slots per (node, light service)
    buffer_factor: float = 2.0  # task buffer = buffer_factor x expected tasks in flight (+ margin)
    capacities: Capacities = Capacities.adaptive  # engine task rows: adaptive (grown on overflow) | worst_case
    max_core_ready: int = 0  # ready core stages handled per slot; 0 = sized automatically
    max_light_waiting: int = 0  # waiting light stages handled per slot; 0 = sized automatically
    quantiles: List[float] = field(default_factory=lambda: [0.5, 0.9, 0.95, 0.99])  # latency quantile levels
    progress: bool = True  # a progress bar over the horizon when stderr is a terminal
    chunk_slots: int = 0  # run the horizon in pieces of at most this many slots (0: ~20 pieces with the bar, else 1)
    memory_check: bool = True  # refuse, before compiling, a run whose estimated memory exceeds what is free (edgefm.io.budget)


@dataclass
class OutputConfig:
    """The ``output`` group: what a run writes and prints."""

    filename: str = "results.nc"  # dataset file name inside the run folder
    task_records: bool = False  # also store per-task arrays (arrival, finish, type, dropped)
    print_summary: bool = True  # print the summary table at the end of the run
    skip_existing: bool = True  # a job whose complete dataset (same resolved config) is already in its folder is not run again
    merge: bool = True  # at the end of a multirun, merge the job datasets into <sweep dir>/sweep.nc
    resume: Optional[str] = None  # a multirun (-m) continued in a folder: last (the newest of the same overrides) | <folder>
    disk_check: bool = True  # refuse, before compiling, a run whose dataset may not fit the free disk space
    allow_missing: bool = False  # a multirun's merge with jobs that have no dataset: their cells nan (true) or refused (false)


@dataclass
class ClosuresConfig:
    """The ``closures`` group: a named set of the execution closures that decide the results
    (docs/SEMANTICS.md §13). The options of the sim, channel, placement and controller groups read
    these values by interpolation (``${closures.root_ready}``), so a preset sets them all and a
    user's own override of one of those options wins. Defaults: the preset ``paper``."""

    name: str = "paper"  # the preset: paper | authors_code | realistic (or a file of one's own)
    channel: str = "nakagami"  # the channel the preset selects (conf/channel)
    fading: str = "block"  # channel.fading of nakagami / rayleigh: block | per_slot
    root_ready: str = "uplink_end"  # sim.root_ready: uplink_end | arrival
    light_order: str = "input_arrival"  # sim.light_order: input_arrival | dispatch
    core_dispatch: str = "earliest_start"  # sim.core_dispatch: earliest_start | idle_only
    instance_ready: str = "none"  # controller.instance_ready of proposed / propavg: none | drain | max_input
    candidates: str = "all"  # controller.candidates of proposed / propavg: all | least_occupied
    light_reserve: Any = field(default_factory=lambda: {"server": 0.25, "device": 0.0})  # placement.reserve (milp)
    plan_load: float = 1.0  # placement.plan_load: the load the core backbone is sized for
    target_utilisation: float = 1.0  # placement.target_utilisation: rho* of the backbone's sizing
    plan_fit: str = "exact"  # placement.plan_fit: exact | largest (the largest growth that fits the network)
    arrival_ms: float = 200.0  # sim.arrival_ms
    drain_ms: float = 100.0  # sim.drain_ms


@dataclass
class EdgefmConfig:
    """The root config. The four component nodes are filled by their group's default option."""

    seed: int = 0  # scenario sampling and every random stream of the engine
    task: str = "edgefm"  # names the output folder: outputs/<task>/runs/<timestamp>
    strategy: str = ""  # the strategy's name (set by the strategy group); "" = the paper's name of the pair, else "<placement>+<controller>"
    scenario: ScenarioSpec = field(default_factory=ScenarioSpec)
    placement: Any = MISSING  # placement solver (tier 1), with `name` = the plugin name
    controller: Any = MISSING  # controller (tier 2)
    channel: Any = MISSING  # uplink channel model
    workload: Any = MISSING  # task-arrival generator
    failure: Any = MISSING  # node/link failure model (docs/SEMANTICS.md §12)
    closures: ClosuresConfig = field(default_factory=ClosuresConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    output: OutputConfig = field(default_factory=OutputConfig)


def default_config_dir(*, environment: bool = True) -> Path:
    """The ``conf/`` folder: ``$EDGEFM_CONFIG_DIR`` if set (and ``environment``), else the one that
    comes with edgefm: ``conf/`` of the repository when this package runs from a checkout (an
    editable install), otherwise the copy the wheel carries as package data, ``edgefm/conf/``
    (``setup.py`` puts it there at build time)."""
    env = os.environ.get(CONFIG_DIR_ENV, "").strip() if environment else ""
    if env:
        return Path(env).expanduser().resolve()
    package = Path(__file__).resolve().parents[1]
    root = package.parent
    if (root / "pyproject.toml").is_file() and (root / "conf").is_dir():  # a source checkout
        return root / "conf"
    return package / "conf"


def register_all(registry, cs: Any = None, conf_dir: str | os.PathLike | None = None) -> None:
    """Store every schema in Hydra's ConfigStore ``cs`` (default: the instance).

    Root ``base_config``, ``sim/base_sim``, ``output/base_output``, ``scenario/base_scenario``, and
    for every registered component ``<kind>/base_<name>`` (plus ``<kind>/<name>`` when
    ``conf_dir``, default `default_config_dir`, has no ``<kind>/<name>.yaml``).
    """
    from edgefm.plugins import register_configs

    if cs is None:
        from hydra.core.config_store import ConfigStore

        cs = ConfigStore.instance()
    if conf_dir is None:
        conf_dir = default_config_dir()
    cs.store(name="base_config", node=EdgefmConfig, provider="edgefm")
    cs.store(group="sim", name="base_sim", node=SimConfig, provider="edgefm")
    cs.store(group="output", name="base_output", node=OutputConfig, provider="edgefm")
    register_scenario_configs(cs)
    register_configs(registry, cs, yaml_dirs=[conf_dir])


__all__ = [
    "CONFIG_DIR_ENV",
    "ClosuresConfig",
    "CoreDispatch",
    "Capacities",
    "LightOrder",
    "RootReady",
    "EdgefmConfig",
    "OutputConfig",
    "SimConfig",
    "default_config_dir",
    "register_all",
]
