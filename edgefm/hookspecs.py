"""Every hook a plugin can implement, grouped by lifecycle stage.

A plugin is any importable module (or object) with functions decorated by ``edgefm.hookimpl`` and
named like the specifications below. It is found through the ``edgefm`` entry-point group::

    [project.entry-points.edgefm]
    my_plugin = "my_package.edgefm_plugin"

A plugin implements only the hooks it needs. The hook functions here are specifications: their
bodies are never run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    import xarray as xr

hookspec = pluggy.HookspecMarker("edgefm")


# ----------------------------------------------------------------------------------------------
# Registration: which components a plugin provides.


@hookspec
def edgefm_register_placement_solvers() -> list[type]:
    """Register placement solvers (tier 1: core services placed once, before the horizon).

    Called: once per process, when the `edgefm.plugins.Registry` is built (start-up, before any
    configuration is composed).
    Runs on: the host. The solvers themselves also run on the host and may use any Python.
    Parameters: none.
    Returns: a list of subclasses of `edgefm.interfaces.AbstractPlacementSolver`, each with a
    non-empty ``name``, ``kind == "placement"`` and a dataclass ``Config``. The lists of all
    plugins are concatenated; two classes with the same ``name`` are an error naming both
    distributions. Each ``Config`` is stored in Hydra's ConfigStore as ``placement/base_<name>``.
    """


@hookspec
def edgefm_register_controllers() -> list[type]:
    """Register controllers (tier 2: light instances and routing at each decision boundary).

    Called: once per process, when the `edgefm.plugins.Registry` is built.
    Runs on: the host. The controllers' ``init``/``act`` are later traced inside jit: pure JAX,
    static shapes, no Python branching on traced values.
    Parameters: none.
    Returns: a list of subclasses of `edgefm.interfaces.AbstractController` (``kind ==
    "controller"``, non-empty ``name``, dataclass ``Config``). Lists of all plugins are
    concatenated; a duplicate ``name`` is an error naming both distributions. Each ``Config`` is
    stored as ``controller/base_<name>``.
    """


@hookspec
def edgefm_register_channel_models() -> list[type]:
    """Register uplink channel models.

    Called: once per process, when the `edgefm.plugins.Registry` is built.
    Runs on: the host. ``uplink_rate`` is later traced inside jit once per slot: pure JAX, static
    shapes.
    Parameters: none.
    Returns: a list of subclasses of `edgefm.interfaces.AbstractChannelModel` (``kind ==
    "channel"``, non-empty ``name``, dataclass ``Config``). Lists of all plugins are concatenated;
    a duplicate ``name`` is an error naming both distributions. Each ``Config`` is stored as
    ``channel/base_<name>``.
    """


@hookspec
def edgefm_register_workload_generators() -> list[type]:
    """Register task-arrival (workload) generators.

    Called: once per process, when the `edgefm.plugins.Registry` is built.
    Runs on: the host. ``init``/``sample`` are later traced inside jit once per slot: pure JAX,
    static shapes.
    Parameters: none.
    Returns: a list of subclasses of `edgefm.interfaces.AbstractWorkloadGenerator` (``kind ==
    "workload"``, non-empty ``name``, dataclass ``Config``). Lists of all plugins are
    concatenated; a duplicate ``name`` is an error naming both distributions. Each ``Config`` is
    stored as ``workload/base_<name>``.
    """


@hookspec
def edgefm_register_failure_models() -> list[type]:
    """Register node and link failure models (docs/SEMANTICS.md §12).

    Called: once per process, when the `edgefm.plugins.Registry` is built.
    Runs on: the host. ``schedule`` runs on the host once per scenario instance (deterministic node
    and link states); ``init``/``sample`` (random node failures) are later traced inside jit once per
    slot: pure JAX, static shapes.
    Parameters: none.
    Returns: a list of subclasses of `edgefm.interfaces.AbstractFailureModel` (``kind ==
    "failure"``, non-empty ``name``, dataclass ``Config``). Lists of all plugins are concatenated;
    a duplicate ``name`` is an error naming both distributions. Each ``Config`` is stored as
    ``failure/base_<name>``.
    """


# ----------------------------------------------------------------------------------------------
# Lifecycle of one run (one Hydra job).


@hookspec
def edgefm_run_start(cfg: Any, run_dir: Path) -> None:
    """Announce the start of one run.

    Called: once per run (once per job of a multirun), after the configuration is resolved and
    validated, before any placement solve or compile.
    Runs on: the host; any Python.
    Parameters: ``cfg`` is the resolved configuration (an OmegaConf ``DictConfig``; do not
    mutate it); ``run_dir`` is the run's output folder (a ``pathlib.Path`` that exists).
    Returns: nothing; return values are ignored. Every plugin implementing it is called. An
    exception aborts the run before anything is computed.
    """


@hookspec
def edgefm_dataset_finalize(dataset: xr.Dataset, cfg: Any) -> xr.Dataset | None:
    """Let a plugin add variables or attributes to the result of a run before it is written.

    Called: once per run, after the simulation and its on-device reductions, when the result is
    an ``xarray.Dataset`` and before the atomic netCDF write.
    Runs on: the host; any Python (numpy, xarray).
    Parameters: ``dataset`` is the run's dataset (treat it as read-only); ``cfg`` is the resolved
    configuration.
    Returns: ``None`` (nothing to add) or an ``xarray.Dataset`` whose variables and global
    attributes are merged into the run's dataset. The returns of all plugins are merged in turn;
    a variable or attribute that already exists, in the core dataset or from another plugin, is an
    error rather than a silent overwrite. Dimensions must reuse the core dimension names and sizes.
    """


@hookspec
def edgefm_run_end(dataset_path: Path, cfg: Any, summary: dict[str, Any]) -> None:
    """Announce the end of one run, once its dataset is safely on disk.

    Called: once per successful run, after the netCDF file is written (and renamed into place).
    Not called when the run fails.
    Runs on: the host; any Python.
    Parameters: ``dataset_path`` is the written netCDF file (``pathlib.Path``); ``cfg`` is the
    resolved configuration; ``summary`` maps headline metric names to values (plain Python
    scalars), as printed at the end of the run.
    Returns: nothing; return values are ignored. Every plugin implementing it is called.
    """
