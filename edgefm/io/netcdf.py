"""Atomic netCDF writes, reading a run back, and collecting the jobs of a multirun into one dataset."""

from __future__ import annotations

import errno
import math
import os
import re
import secrets
import shutil
import socket
import warnings
from collections.abc import Iterable
from pathlib import Path

import xarray as xr

from edgefm.io.dataset import is_sweep_dim

__all__ = ["collect", "open_run", "sweep_temporary_files", "write_netcdf_atomic"]

_ENGINE = "netcdf4"
_COMPLEVEL = 4


def write_netcdf_atomic(ds: xr.Dataset, path: str | os.PathLike) -> Path:
    """Write `ds` to `path` so that `path` is either absent/unchanged or the complete file.

    The dataset goes to a hidden temporary file in the same folder (same file system, so the final
    `os.replace` is atomic), ``.<name>.tmp-<host>-<pid>-<hex>``, is flushed to disk, then renamed.
    On any exception, KeyboardInterrupt included (the CLI turns SIGTERM into one), the temporary
    file is removed and the exception re-raised; a write that failed because the disk is full
    raises ``OSError(ENOSPC)`` saying so. Temporary files that a killed writer left in the folder
    are removed first (`sweep_temporary_files`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sweep_temporary_files(path.parent)
    tmp = path.with_name(f".{path.name}.tmp-{_HOST}-{os.getpid()}-{secrets.token_hex(6)}")
    try:
        try:
            ds.to_netcdf(tmp, engine=_ENGINE, format="NETCDF4", encoding=_encoding(ds))
            with open(tmp, "rb") as f:
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except Exception as exc:
            full = _no_space(exc, path.parent, ds)
            if full is not None:
                raise full from exc
            raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


_HOST = re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"
# .<name>.tmp-<hex> (written before the writer's host and pid were in the name) or
# .<name>.tmp-<host>-<pid>-<hex>
_TMP = re.compile(r"^\..+\.tmp-(?:(?P<host>[A-Za-z0-9._]+)-(?P<pid>\d+)-)?[0-9a-f]{12}$")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_temporary_files(folder: str | os.PathLike) -> list[Path]:
    """Remove the temporary files of writes into ``folder`` that never finished (their writer was
    killed): those of a process of this host that is gone, and the older ones without a writer in
    the name. A temporary file of a live writer, or of another host, is left. Returns the removed."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _TMP.match(entry.name)
        if match is None or not entry.is_file():
            continue
        host, pid = match.group("host"), match.group("pid")
        if host is not None and (host != _HOST or _alive(int(pid))):
            continue
        try:
            entry.unlink()
            removed.append(entry)
        except OSError:
            pass
    return removed


def _no_space(exc: BaseException, folder: Path, ds: xr.Dataset) -> OSError | None:
    """``OSError(ENOSPC)`` naming the file system's free space when ``exc`` is (or, as netCDF's
    "HDF error", hides) a full disk; None otherwise."""
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return exc if exc.filename else OSError(exc.errno, os.strerror(exc.errno), str(folder))
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return None
    # the write failed and what is left would not hold the data: the disk filled up
    if free < max(ds.nbytes, 1 << 20):
        return OSError(errno.ENOSPC, f"No space left on device ({free} bytes free, the dataset has about "
                                     f"{ds.nbytes} bytes uncompressed): {type(exc).__name__}: {exc}", str(folder))
    return None


def _encoding(ds: xr.Dataset) -> dict:
    """zlib for every non-empty numeric variable (strings and empty arrays cannot be chunked);
    strings as variable-length strings: a dataset read back carries its file's fixed width in its
    encoding (e.g. <U6), and a merge keeps the first job's, which would cut longer labels."""
    encoding = {}
    for name, var in ds.variables.items():
        if var.dtype.kind in "biuf" and var.ndim and var.size:
            encoding[name] = {"zlib": True, "complevel": _COMPLEVEL}
        elif var.dtype.kind == "U":
            encoding[name] = {"dtype": str}
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

