"""Reading a run or sweep dataset for the report, its group dimensions, and atomic file writes.

A **run dataset** (``results.nc``) and a **sweep dataset** (``sweep.nc``, the merge of a multirun)
share the *run dims* below; every other dimension is a *group dim* (a swept value: ``controller``,
``load``, ``strategy``, ``V``, ...). The report's statistics are taken over (instance, realisation)
within each cell of the group dims.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import xarray as xr

from edgefm.errors import ConfigError
from edgefm.io.variables import DIMS

__all__ = ["RUN_DIMS", "atomic_path", "data_file", "group_dims", "open_results"]

# The dimensions of one job's results; any other dimension is a swept (group) dimension.
RUN_DIMS: tuple[str, ...] = tuple(DIMS)
SWEEP_FILE = "sweep.nc"
RUN_FILE = "results.nc"
_ACCEPTED = (
    f"a netCDF file written by edgefm (.nc), a run folder holding {RUN_FILE} "
    f"or a multirun folder holding {SWEEP_FILE}"
)


def data_file(path: str | os.PathLike) -> Path:
    """The netCDF file behind `path`: the file itself, or ``sweep.nc`` / ``results.nc`` in a folder
    (``sweep.nc`` first). Raises `ConfigError` naming what was looked for."""
    path = Path(path)
    if path.is_dir():
        for name in (SWEEP_FILE, RUN_FILE):
            if (path / name).is_file():
                return path / name
        raise ConfigError(
            "PATH", str(path), f"the folder holds neither {SWEEP_FILE} nor {RUN_FILE}; expected {_ACCEPTED}"
        )
    if not path.is_file():
        raise ConfigError("PATH", str(path), f"no such file or folder; expected {_ACCEPTED}")
    return path


def open_results(path: str | os.PathLike) -> xr.Dataset:
    """Read a run or sweep dataset fully into memory (the file is closed again).

    `path` is a ``.nc`` file, a run folder (with ``results.nc``) or a multirun folder (with
    ``sweep.nc``). Raises `ConfigError` if nothing is found or the file is not an edgefm dataset
    (not netCDF, or without ``ontime_rate`` over ``instance`` and ``realisation``).
    """
    file = data_file(path)
    try:
        with xr.open_dataset(file, engine="netcdf4", decode_times=False, decode_timedelta=False) as ds:
            ds = ds.load()
    except (OSError, ValueError) as exc:
        raise ConfigError(
            "PATH", str(file), f"not a readable netCDF file ({type(exc).__name__}); expected {_ACCEPTED}"
        ) from None
    if "ontime_rate" not in ds or not {"instance", "realisation"} <= set(ds["ontime_rate"].dims):
        raise ConfigError(
            "PATH", str(file), "not an edgefm dataset: no variable ontime_rate over (instance, realisation)"
        )
    return ds


def group_dims(ds: xr.Dataset) -> list[str]:
    """The dimensions of `ds` that are not run dims, in the dataset's order."""
    return [str(d) for d in ds.dims if d not in RUN_DIMS]


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a hidden temporary path beside `path`; on success it replaces `path` atomically
    (``os.replace``), on any exception it is removed, so `path` is never left half-written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{secrets.token_hex(6)}{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
