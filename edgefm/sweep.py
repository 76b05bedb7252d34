"""Multiruns: merge the job datasets of a sweep folder into one ``sweep.nc``, and the Hydra callback
that does it at the end of every multirun (and shows which job of how many is running).

A Hydra multirun writes one job folder per combination of swept values, each with
``.hydra/overrides.yaml`` (the job's command-line overrides) and, when the job completed, its
dataset (``results.nc``, written atomically). `merge_sweep` reads them all and builds one dataset
whose dimensions are exactly the **swept keys** — the overrides whose value differs between jobs —
plus the run dimensions (instance, realisation, slot, ...). A swept key becomes a dimension named

- the group for a group choice (``strategy=…``, ``controller=…``, ``channel=…``, ``variant=…``);
- the last part of a dotted key (``workload.load`` → ``load``, ``controller.V`` → ``V``,
  ``sim.core_dispatch`` → ``core_dispatch``), or the whole key with ``_`` for ``.`` if two swept keys
  share a last part;

its labels are the job values in the order the jobs ran (numbers as float where any is fractional).
The run's own length-1 sweep dimensions (strategy, controller, placement, channel, workload, load,
seed) that were not swept become coordinates (scalar if equal in every job, else along the swept
dimensions: e.g. ``controller`` along ``strategy``). Each job's resolved config YAML is kept in the
string variable ``job_config`` over the swept dimensions. A job without a dataset (failed, lost or not
yet run) makes the merge refuse with one line naming its cell (`MergeError`: nothing is written),
unless ``allow_missing`` (``output.allow_missing``, ``edgefm merge --allow-missing``) asks for its
cells as nan, with a warning.

Before anything is merged, every job's dataset is checked against its folder (`check_jobs`): the
config the dataset was made from must be its folder's resolved config (``.hydra/config.yaml``: a
dataset copied from another job, or left from an earlier command, is refused), and a key that
differs between jobs must be one a swept override changes (a conf default changed between two
commands into one sweep folder is refused). A mismatch is a `MergeError` naming the job and the key;
nothing is written.

During a multirun the callback logs, as each job ends in its process, the jobs done of how many and
the time left (`Progress`); a launcher whose jobs end in other processes logs the same lines itself
(edgefm's Ray launcher, ``plugins/hydra_plugins/edgefm_ray_launcher``).
"""

from __future__ import annotations

import logging
import math
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from edgefm.errors import ConfigError, EdgefmError, MergeError

log = logging.getLogger(__name__)

SWEEP_FILENAME = "sweep.nc"
OVERRIDES = Path(".hydra") / "overrides.yaml"
JOB_CONFIG = Path(".hydra") / "config.yaml"
# keys of a job's config that do not change what it computes (a resumed job may differ in them)
NOT_RESULTS = ("output.skip_existing", "output.merge", "output.print_summary", "output.resume",
               "output.disk_check", "output.allow_missing", "sim.progress", "sim.memory_check")
# Hydra/edgefm keys that never define a cell of the experiment grid
_IGNORED_KEYS = ("hydra", "output")


# ----------------------------------------------------------------------------------------------
# Reading the jobs of a sweep folder


class Job:
    """One job folder: its overrides (key -> value) and its dataset path (None if absent)."""

    def __init__(self, folder: Path, overrides: dict[str, Any], dataset: Path | None, order: int):
        self.folder, self.overrides, self.dataset, self.order = folder, overrides, dataset, order

    def __repr__(self) -> str:
        return f"Job({self.folder.name!r}, {self.overrides!r}, dataset={self.dataset is not None})"


def parse_overrides(lines: Sequence[str]) -> dict[str, Any]:
    """``["strategy=proposed", "workload.load=1.5"]`` -> ``{"strategy": "proposed", "workload.load": 1.5}``
    (Hydra's own parser: quoting and types as on the command line). Hydra and ``output`` keys and
    deletions (``~key``) are left out."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    out: dict[str, Any] = {}
    for override in OverridesParser.create().parse_overrides(list(lines)):
        key = override.get_key_element().lstrip("+~")
        if override.is_delete() or key.split(".")[0].split("/")[0] in _IGNORED_KEYS:
            continue
        value = override.value()
        out[key] = value if isinstance(value, str | int | float | bool) else str(value)
    return out


def find_jobs(sweep_dir: str | os.PathLike, filename: str = "results.nc") -> list[Job]:
    """The job folders under ``sweep_dir`` (any depth), in the order of their job number."""
    import yaml

    sweep_dir = Path(sweep_dir)
    jobs = []
    for path in sorted(sweep_dir.rglob(str(OVERRIDES))):
        folder = path.parent.parent
        with open(path) as f:
            lines = yaml.safe_load(f) or []
        dataset = folder / filename
        jobs.append(Job(folder, parse_overrides(lines), dataset if dataset.is_file() else None, _job_number(folder)))
    jobs.sort(key=lambda j: (j.order, str(j.folder)))
    return jobs


def _job_number(folder: Path) -> int:
    """The job's number from its ``.hydra/hydra.yaml`` (``hydra.job.num``), else a large number."""
    import yaml

    try:
        with open(folder / ".hydra" / "hydra.yaml") as f:
            return int(yaml.safe_load(f)["hydra"]["job"]["num"])
    except (OSError, KeyError, TypeError, ValueError):
        return 1 << 30


def swept_keys(jobs: Sequence[Job]) -> dict[str, str]:
    """The overrides whose value differs between jobs, mapped to their dimension names."""
    keys: list[str] = []
    for job in jobs:
        for key in job.overrides:
            if key not in keys:
                keys.append(key)
    missing = object()
    swept = [k for k in keys if len({repr(j.overrides.get(k, missing)) for j in jobs}) > 1]
    short = {k: k.split(".")[-1] for k in swept}
    names = {}
    for key in swept:
        name = short[key] if list(short.values()).count(short[key]) == 1 else key.replace(".", "_")
        if not name.isidentifier():
            name = "_".join(part for part in "".join(c if c.isalnum() else "_" for c in name).split("_") if part)
        names[key] = name
    return names


def _labels(values: list[Any]) -> list[Any]:
    """Job values of one key as dimension labels: bool -> int; ints become floats if any is fractional."""
    values = [int(v) if isinstance(v, bool) else v for v in values]
    if all(isinstance(v, int | float) for v in values) and any(isinstance(v, float) for v in values):
        return [float(v) for v in values]
    if not all(isinstance(v, int | float) for v in values):
        return [str(v) for v in values]
    return values


# ----------------------------------------------------------------------------------------------
# Merging


def merge_sweep(sweep_dir: str | os.PathLike, filename: str = "results.nc", allow_missing: bool = False) -> xr.Dataset:
    """One dataset for the multirun in ``sweep_dir`` (see the module docstring). A job without a
    dataset is a `MergeError` naming its cell, or with ``allow_missing`` nan cells and a warning."""
    from edgefm.io import is_sweep_dim, open_run

    sweep_dir = Path(sweep_dir)
    jobs = find_jobs(sweep_dir, filename)
    if not jobs:
        raise ConfigError("sweep folder", str(sweep_dir), f"a Hydra multirun folder (job folders with {OVERRIDES})")
    config = _load_multirun_config(sweep_dir)
    if config is not None:
        # the jobs of the last multirun in this folder: a folder left from an earlier command with
        # other overrides (a fixed sweep folder, resumed with a change) is not part of it
        expected = expected_jobs(config)
        stale = [j for j in jobs if j.overrides not in expected]
        if stale:
            log.info(f"edgefm: {len(stale)} job folders in {sweep_dir} are not jobs of its last multirun; left out")
        jobs = [j for j in jobs if j.overrides in expected]
        for overrides in expected:
            if not any(j.overrides == overrides for j in jobs):
                jobs.append(Job(sweep_dir / "(not run)", overrides, None, 1 << 31))
    done = [j for j in jobs if j.dataset is not None]
    if not done:
        raise ConfigError("sweep folder", str(sweep_dir), f"a multirun with at least one finished job ({filename})")
    missing = [j for j in jobs if j.dataset is None]
    names = swept_keys(jobs)
    if missing and not allow_missing:
        raise MergeError(
            f"{sweep_dir}: {_missing_text(missing, len(jobs), filename, names)}; nothing merged: run the same "
            "multirun again to finish them (a plain multirun with output.resume=last or output.resume=<folder>), "
            "or merge with their cells nan: edgefm merge --allow-missing (output.allow_missing=true)")
    labels = {key: _labels([j.overrides.get(key, "") for j in jobs]) for key in names}
    opened = {id(job): open_run(job.dataset) for job in done}
    check_jobs(done, {id(job): ds.attrs.get("config") for job, ds in zip(done, opened.values())}, list(names),
               filename)

    datasets, scalars = [], []
    for job in done:
        ds = opened.pop(id(job))
        own = {}  # the run's length-1 sweep dims that were not swept: scalar coordinates for now
        for dim in [d for d in ds.dims if is_sweep_dim(ds, d)]:
            if dim not in names.values():
                own[dim] = ds[dim].values[0].item() if hasattr(ds[dim].values[0], "item") else ds[dim].values[0]
                ds = ds.isel({dim: 0}, drop=True)
        idx = jobs.index(job)
        cell = {}
        for key, dim in names.items():
            value = labels[key][idx]
            if dim in ds.dims:  # a swept value the run already carries (strategy, controller, load, seed)
                ds = ds.isel({dim: 0}, drop=True)
            cell[dim] = [value]
        ds["job_config"] = xr.DataArray(str(ds.attrs.get("config", "")))
        ds = ds.expand_dims(cell) if cell else ds
        for dim in cell:
            ds[dim].attrs["long_name"] = f"swept configuration value: {_key_of(names, dim)}"
        datasets.append(ds)
        scalars.append(own)

    if names:
        # jobs of different horizons (an arrival-window sweep) have different `slot` coordinates:
        # pad them to the longest first (nan), or combine_by_coords would concatenate along slot
        datasets = list(xr.align(*datasets, join="outer", exclude=list(names.values())))
        merged = xr.combine_by_coords(
            datasets, compat="no_conflicts", data_vars="all", coords="different", join="outer",
            combine_attrs="drop_conflicts",
        )
        # job order, not sorted order
        order = {dim: list(dict.fromkeys(labels[key])) for key, dim in names.items()}
        merged = merged.reindex({dim: order[dim] for dim in order})
    else:
        merged = datasets[0]
    merged = _attach_run_labels(merged, jobs, done, scalars, names, labels)
    if missing:
        warnings.warn(f"{sweep_dir}: {_missing_text(missing, len(jobs), filename, names)}; their cells are nan",
                      RuntimeWarning, stacklevel=2)
    cells = math.prod(len(set(v)) for v in labels.values()) if labels else 1
    merged.attrs.update(
        sweep_dir=str(sweep_dir),
        sweep_jobs=len(jobs),
        sweep_jobs_merged=len(done),
        sweep_dims=", ".join(names.values()),
        sweep_keys=", ".join(f"{dim}={key}" for key, dim in names.items()),
        sweep_grid_cells=int(cells),
    )
    merged.attrs.pop("config", None)  # per job: see job_config
    return merged


def _missing_text(missing: Sequence[Job], total: int, filename: str, swept: Sequence[str]) -> str:
    """``2 of 16 jobs have no results.nc (failed, lost or not run): the cells seed=3, seed=7``: each
    cell by the overrides ``swept`` (those that differ between jobs)."""
    cells = [" ".join(f"{k}={j.overrides.get(k, '')}" for k in swept) or j.folder.name for j in missing]
    shown = ", ".join(cells[:5]) + (f" and {len(cells) - 5} more" if len(cells) > 5 else "")
    return (f"{len(missing)} of {total} jobs have no {filename} (failed, lost or not run): the "
            f"cell{'s' if len(cells) > 1 else ''} {shown}")


# ----------------------------------------------------------------------------------------------
# Checking the jobs against their folders


def _flat(value, prefix: str = "") -> dict[str, Any]:
    """Dotted key -> leaf value (lists are leaves); numbers as float, so 1 and 1.0 compare equal."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            out.update(_flat(item, f"{prefix}.{key}" if prefix else str(key)))
        return out
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return {prefix: value}
    if isinstance(value, int | float):
        return {prefix: float(value)}
    if isinstance(value, list | tuple):
        return {prefix: [_flat(v)[""] if not isinstance(v, dict | list) else v for v in value]}
    return {prefix: str(value)}


def _results_keys(flat: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in flat.items() if k not in NOT_RESULTS and k.split(".")[0] != "hydra"}


def resolved_job_config(folder: Path) -> tuple[dict, dict] | None:
    """(resolved, unresolved) config of a job folder (``.hydra/config.yaml``), flat; None without it."""
    from omegaconf import OmegaConf

    path = folder / JOB_CONFIG
    if not path.is_file():
        return None
    raw = OmegaConf.load(path)
    unresolved = _flat(OmegaConf.to_container(raw, resolve=False))
    try:
        resolved = _flat(OmegaConf.to_container(raw, resolve=True, throw_on_missing=False))
    except Exception:  # noqa: BLE001 - an interpolation of Hydra's own (e.g. ${hydra:...}): compare raw
        resolved = unresolved
    return resolved, unresolved


def _show(value) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _label(job: Job) -> str:
    overrides = " ".join(f"{k}={v}" for k, v in job.overrides.items())
    return f"job {job.folder.name}" + (f" ({overrides})" if overrides else "")


def _groups(jobs: Sequence[Job]) -> set[str]:
    """The config groups of these jobs (``.hydra/hydra.yaml``: hydra.runtime.choices)."""
    import yaml

    groups: set[str] = set()
    for job in jobs:
        try:
            with open(job.folder / ".hydra" / "hydra.yaml") as f:
                choices = (yaml.safe_load(f) or {}).get("hydra", {}).get("runtime", {}).get("choices") or {}
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        groups.update(str(k) for k in choices)
    return groups


def _dependencies(unresolved: dict[str, Any]) -> dict[str, set[str]]:
    """key -> the keys it interpolates (``${closures.arrival_ms}``), transitively."""
    import re

    direct = {}
    for key, value in unresolved.items():
        if isinstance(value, str) and "${" in value:
            direct[key] = {m for m in re.findall(r"\$\{([A-Za-z_][\w.]*)\}", value)}
    out: dict[str, set[str]] = {}

    def deps(key: str, seen: frozenset = frozenset()) -> set[str]:
        if key in out:
            return out[key]
        found: set[str] = set()
        for ref in direct.get(key, ()):
            if ref in seen:
                continue
            found.add(ref)
            for leaf in [k for k in direct if k == ref or k.startswith(ref + ".")]:
                found |= deps(leaf, seen | {key})
        out[key] = found
        return found

    for key in direct:
        deps(key)
    return out


def check_jobs(jobs: Sequence[Job], configs: dict[int, str | None], swept: Sequence[str],
               filename: str = "results.nc") -> None:
    """Raise `MergeError` when a job's dataset (its ``config`` attribute, ``configs[id(job)]``) was
    not made from its folder's resolved config, or when a key that no swept override changes
    differs between jobs. Folders without ``.hydra/config.yaml`` (not made by Hydra) and datasets
    without a config are not checked."""
    import yaml

    checked: list[tuple[Job, dict[str, Any]]] = []
    dependencies: dict[str, set[str]] = {}
    for job in jobs:
        folder = resolved_job_config(job.folder)
        text = configs.get(id(job))
        if folder is None or not text:
            continue
        made, unresolved = _results_keys(_flat(yaml.safe_load(text) or {})), folder[1]
        expected = _results_keys(folder[0])
        for key in list(dict.fromkeys([*expected, *made])):
            if made.get(key, "(absent)") != expected.get(key, "(absent)"):
                raise MergeError(
                    f"{_label(job)}: its {filename} was made with {key}={_show(made.get(key, '(absent)'))} but the "
                    f"job folder's config ({JOB_CONFIG}) has {key}={_show(expected.get(key, '(absent)'))}: the "
                    "dataset is not this job's (copied, or left from another command); nothing merged: remove it "
                    "and run the multirun again to recompute the job")
        checked.append((job, made))
        for key, refs in _dependencies(unresolved).items():
            dependencies.setdefault(key, set()).update(refs)
    if len(checked) < 2:
        return
    groups = _groups([job for job, _ in checked])
    swept = [s for s in swept]

    def controls(override: str, key: str) -> bool:
        if override in groups:  # a config group: its options may set any key
            return True
        related = {key, *dependencies.get(key, ())}
        return any(k == override or k.startswith(override + ".") or override.startswith(k + ".") for k in related)

    keys = list(dict.fromkeys(k for _, made in checked for k in made))
    for key in keys:
        values = [made.get(key, "(absent)") for _, made in checked]
        if all(v == values[0] for v in values):
            continue
        by = [s for s in swept if controls(s, key)]
        seen: dict[tuple, tuple[Job, Any]] = {}
        for (job, _), value in zip(checked, values):
            cell = tuple(repr(job.overrides.get(s)) for s in by)
            if cell in seen and seen[cell][1] != value:
                other, before = seen[cell]
                swept_text = ", ".join(swept) if swept else "none"
                raise MergeError(
                    f"{_label(job)}: {key}={_show(value)}, but {_label(other)} has {key}={_show(before)} and no "
                    f"swept override changes {key} (swept: {swept_text}): the jobs come from different configs (a "
                    "conf default changed between two commands into this sweep folder?); nothing merged: run the "
                    "multirun again in a new folder, or with the same config to recompute the stale jobs")
            seen.setdefault(cell, (job, value))


def _key_of(names: dict[str, str], dim: str) -> str:
    return next(k for k, d in names.items() if d == dim)


def _attach_run_labels(merged, jobs, done, scalars, names, labels):
    """The runs' own labels that were not swept (e.g. controller when strategy is swept): a scalar
    coordinate when equal in every job, else a coordinate over the swept dims."""
    keys = list(dict.fromkeys(k for s in scalars for k in s))
    dims = list(names.values())
    for key in keys:
        values = [s.get(key) for s in scalars]
        if len({repr(v) for v in values}) == 1:
            merged = merged.assign_coords({key: values[0]})
            continue
        shape = [merged.sizes[d] for d in dims]
        is_num = all(isinstance(v, int | float) for v in values)
        grid = np.full(shape, np.nan) if is_num else np.full(shape, "", dtype=object)
        for job, value in zip(done, values):
            idx = jobs.index(job)
            pos = tuple(merged.indexes[d].get_loc(labels[k][idx]) for k, d in names.items())
            grid[pos] = value
        if not is_num:
            grid = grid.astype(str)
        merged = merged.assign_coords({key: _along_fewest_dims(dims, grid)})
    return merged


def _along_fewest_dims(dims: list[str], grid: np.ndarray):
    """(dims, values) of a label over the swept grid, along the one swept dim it depends on when
    there is one (``controller`` along ``strategy`` in a strategy x load sweep), else along all."""
    for axis, dim in enumerate(dims):
        first = np.moveaxis(grid, axis, 0).reshape(grid.shape[axis], -1)
        if all(len(set(map(str, row))) == 1 for row in first):
            return [dim], first[:, 0]
    return dims, grid


def write_sweep(sweep_dir: str | os.PathLike, filename: str = "results.nc", allow_missing: bool = False) -> Path:
    """`merge_sweep` written atomically to ``<sweep_dir>/sweep.nc``; returns the path. The folder
    is locked meanwhile (a multirun still running there refuses a merge by hand)."""
    from edgefm.io import write_netcdf_atomic
    from edgefm.io.lock import lock_folder

    if not Path(sweep_dir).is_dir():
        merge_sweep(sweep_dir, filename)  # says what is missing
    with lock_folder(sweep_dir, "sweep"):
        merged = merge_sweep(sweep_dir, filename, allow_missing=allow_missing)
        return write_netcdf_atomic(merged, Path(sweep_dir) / SWEEP_FILENAME)


# ----------------------------------------------------------------------------------------------
# Progress


def _duration(seconds: float) -> str:
    seconds = round(seconds)
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"


class Progress:
    """The jobs done of a multirun and the time left: `finished` counts a job that ended and gives
    the line ``edgefm: jobs done 5/16 (2 skipped, 1 failed), 40 s so far, about 1 min 28 s left``.
    The time left is the time so far per job computed in this command (skipped jobs, already done
    in an earlier one, take none) times the jobs still to end; with parallel jobs it is their
    throughput that counts, so the estimate holds for any launcher."""

    def __init__(self, total: int | None, clock=time.monotonic):
        self.total, self.clock, self.start = total, clock, clock()
        self.done = self.skipped = self.failed = 0

    def finished(self, skipped: bool = False, failed: bool = False) -> str:
        self.done += 1
        self.skipped += bool(skipped)
        self.failed += bool(failed)
        elapsed = self.clock() - self.start
        of = f"/{self.total}" if self.total else ""
        notes = [f"{n} {what}" for n, what in ((self.skipped, "skipped"), (self.failed, "failed")) if n]
        line = f"edgefm: jobs done {self.done}{of}" + (f" ({', '.join(notes)})" if notes else "")
        line += f", {_duration(elapsed)} so far"
        computed = self.done - self.skipped
        if self.total and self.done < self.total and computed > 0:
            line += f", about {_duration(elapsed / computed * (self.total - self.done))} left"
        return line


def job_outcome(job_return) -> tuple[bool, bool]:
    """(skipped, failed) of a Hydra `JobReturn` of edgefm's task function (`edgefm.cli.run`: a
    summary dict, ``skipped`` for a job already done, ``failed`` for one refused with bad input)."""
    from hydra.core.utils import JobStatus

    if job_return is None or job_return.status != JobStatus.COMPLETED:
        return False, True
    value = job_return._return_value
    if not isinstance(value, dict):
        return False, False
    return bool(value.get("skipped")), bool(value.get("failed"))


# ----------------------------------------------------------------------------------------------
# The Hydra callback


def expected_jobs(config) -> list[dict[str, Any]]:
    """The overrides (as `parse_overrides` gives them) of every job the basic sweeper runs for a
    multirun config: the cartesian product of the sweeps of the command line and of
    ``hydra.sweeper.params`` (the command line wins for a key given in both)."""
    import itertools

    from hydra.core.override_parser.overrides_parser import OverridesParser

    parser = OverridesParser.create()
    lines = list(config.hydra.overrides.task)
    params = config.hydra.sweeper.get("params") or {}
    given = {o.get_key_element() for o in parser.parse_overrides(lines)}
    lines += [f"{k}={v}" for k, v in params.items() if k not in given]
    choices = []
    for override in parser.parse_overrides(lines):
        key = override.get_key_element()
        if override.is_sweep_override():
            choices.append([f"{key}={v}" for v in override.sweep_string_iterator()])
        else:
            choices.append([override.input_line])
    return [parse_overrides(combo) for combo in itertools.product(*choices)]


def _load_multirun_config(sweep_dir: Path):
    """``<sweep_dir>/multirun.yaml`` (the config Hydra saves for a multirun), or None."""
    from omegaconf import OmegaConf

    path = sweep_dir / "multirun.yaml"
    return OmegaConf.load(path) if path.is_file() else None


try:
    from hydra.experimental.callback import Callback as _Callback
except ImportError:  # pragma: no cover - hydra-core is a dependency
    _Callback = object


def _lock_output(folder: str, what: str) -> None:
    """Create ``folder`` and lock it for this process (`edgefm.io.lock`), before Hydra writes into
    it; a problem is raised as `Refused`, which Hydra does not swallow, and printed as one line."""
    from edgefm.errors import Refused
    from edgefm.io.budget import check_output_folder
    from edgefm.io.lock import acquire

    try:
        acquire(check_output_folder(folder, what), what)
    except EdgefmError as exc:
        raise Refused(exc) from None


class MergeCallback(_Callback):
    """``hydra.callbacks.merge``: the run or sweep folder checked and locked before Hydra writes
    into it (`edgefm.io.lock`: a second run into the same folder is refused), job progress during a
    multirun, `write_sweep` at its end.

    Configured in ``conf/config.yaml``; ``output.merge=false`` turns the merge off. ``edgefm merge
    SWEEP_DIR`` does the same by hand (e.g. after an interrupted multirun). The locks go when the
    command ends (`edgefm.cli.run.run_app`) or its process does.
    """

    def __init__(self) -> None:
        self.total: int | None = None
        self.pid: int | None = None  # the process that runs the multirun (the launcher's, for the progress)
        self.progress: Progress | None = None

    def on_run_start(self, config, **kwargs) -> None:
        _lock_output(str(config.hydra.run.dir), "run")

    def on_multirun_start(self, config, **kwargs) -> None:
        _lock_output(str(config.hydra.sweep.dir), "sweep")
        try:
            self.total = len(expected_jobs(config))
        except Exception:  # noqa: BLE001 - only a progress display
            self.total = None
        self.pid, self.progress = os.getpid(), Progress(self.total)

    def on_job_start(self, config, **kwargs) -> None:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        try:
            hc = HydraConfig.get()
        except ValueError:
            return
        if hc.mode != RunMode.MULTIRUN:
            return
        of = f"/{self.total}" if self.total else ""
        overrides = " ".join(hc.overrides.task)
        log.info(f"edgefm: job {hc.job.num + 1}{of}: {overrides}")

    def on_job_end(self, config, job_return=None, **kwargs) -> None:
        # the jobs a launcher runs in this process (the basic one); a launcher running them in other
        # processes or on other machines reports their progress itself
        if self.progress is None or os.getpid() != self.pid:
            return
        skipped, failed = job_outcome(job_return)
        log.info(self.progress.finished(skipped=skipped, failed=failed))

    def on_multirun_end(self, config, **kwargs) -> None:
        if not bool(config.output.get("merge", True)):
            return
        sweep_dir = Path(config.hydra.sweep.dir)
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", RuntimeWarning)
                path = write_sweep(sweep_dir, str(config.output.filename),
                                   allow_missing=bool(config.output.get("allow_missing", False)))
        except EdgefmError as exc:
            log.warning(f"edgefm: no sweep dataset written: {exc}")
            return
        for warning in caught:  # output.allow_missing: the missing cells, one line each
            log.warning(f"edgefm: {warning.message}")
        log.info(f"edgefm: merged the multirun into {path} (`edgefm report {path}`)")


__all__ = ["MergeCallback", "Progress", "check_jobs", "find_jobs", "job_outcome", "merge_sweep", "parse_overrides",
           "swept_keys", "write_sweep"]
