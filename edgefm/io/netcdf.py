"""Atomic netCDF writes, reading a run back, and collecting the jobs of a multirun into one dataset."""

from __future__ import annotations

import math
import os
import secrets
import warnings
from collections.abc import Iterable
from pathlib import Path

import xarray as xr

from edgefm.io.dataset import is_sweep_dim

__all__ = ["collect", "open_run", "write_netcdf_atomic"]

_ENGINE = "netcdf4"
_COMPLEVEL = 4


def write_netcdf_atomic(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write `ds` to `path` so that `path` is either absent/unchanged or the complete file.

    The dataset goes to a hidden temporary file in the same folder (same file system, so the final
    `os.replace` is atomic), is flushed to disk, then renamed. On any exception, KeyboardInterrupt
    included, the temporary file is removed and the exception re-raised.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(6)}")
    try:
        ds.to_netcdf(tmp, engine=_ENGINE, format="NETCDF4", encoding=_encoding(ds))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def _encoding(ds: xr.Dataset) -> dict:
    """zlib for every non-empty numeric variable (strings and empty arrays cannot be chunked)."""
    encoding = {}
    for name, var in ds.variables.items():
        if var.dtype.kind in "biuf" and var.ndim and var.size:
            encoding[name] = {"zlib": True, "complevel": _COMPLEVEL}
    return encoding


def open_run(path: str | os.PathLike) -> xr.Dataset:
    """Read a run dataset fully into memory and close the file (so it may be moved or rewritten)."""
    # Units like "ms" must stay numbers: no time or timedelta decoding.
    with xr.open_dataset(path, engine=_ENGINE, decode_times=False, decode_timedelta=False) as ds:
        return ds.load()


def collect(paths: Iterable[str | os.PathLike]) -> xr.Dataset:
    """Combine the job datasets of a multirun along their sweep dimensions (`xr.combine_by_coords`).

    Global attributes that differ between jobs (history, config, seed, ...) are dropped; those
    shared by all jobs are kept. If the jobs do not fill the whole grid of swept values (a job
    failed), the missing cells are nan (integer variables become float) and a warning says so.
    """
    paths = [Path(p) for p in paths]
    if not paths:
        raise ValueError("collect() needs at least one netCDF path")
    datasets = [open_run(p) for p in paths]
    combined = xr.combine_by_coords(
        datasets, compat="no_conflicts", data_vars="all", coords="different",
        join="outer", combine_attrs="drop_conflicts",
    )
    sweep_dims = [d for d in combined.dims if is_sweep_dim(combined, d)]
    cells = math.prod(combined.sizes[d] for d in sweep_dims)
    if cells > len(datasets):
        warnings.warn(
            f"{len(datasets)} datasets fill only {len(datasets)} of the {cells} combinations of "
            f"{', '.join(sweep_dims)}; the missing ones are nan", RuntimeWarning, stacklevel=2,
        )
    return combined

