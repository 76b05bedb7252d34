"""`to_dataset`: checked, annotated xarray datasets from the variable table, and their global attributes."""

from __future__ import annotations

import json
import shlex
import sys
from collections.abc import Mapping
from datetime import datetime, timezone

import numpy as np
import xarray as xr

from edgefm.io.variables import Variable, VariableError, get_variable, variable_table

__all__ = ["is_sweep_dim", "sanitize_attrs", "standard_attrs", "to_dataset"]

_SWEEP_LONG_NAME = "swept configuration value"
TITLE = "edgefm: modular foundation-model inference at the edge, simulation results"


def to_dataset(
    arrays: Mapping[str, np.ndarray],
    coords: Mapping[str, np.ndarray | list],
    attrs: Mapping | None = None,
    sweep: Mapping[str, str | int | float] | None = None,
) -> xr.Dataset:
    """Build a run dataset from plain arrays, checked against the variable table.

    Every name in `arrays` and `coords` must be a table row (data and coord rows respectively).
    Each array must have the shape given by the sizes of its dims, which come from the dimension
    coordinates in `coords`; it is cast to the table dtype (losslessly for integer variables) and
    gets the table's units and long_name. Each `sweep` item becomes a length-1 dimension carrying
    that value on every data variable, so `xr.combine_by_coords` (or `collect`) rebuilds a
    multirun from its jobs. `attrs` are sanitised for netCDF (see `sanitize_attrs`).
    """
    attrs = {} if attrs is None else attrs
    sweep = {} if sweep is None else sweep

    coord_rows: dict[str, tuple[Variable, np.ndarray]] = {}
    for name, values in coords.items():
        row = get_variable(name)
        if row.kind != "coord":
            raise VariableError(f"{name!r} is a data variable, not a coordinate: pass it in arrays")
        coord_rows[name] = (row, _cast(row, np.asarray(values)))

    sizes: dict[str, int] = {}
    for name, (row, values) in coord_rows.items():
        if row.is_dimension_coord:
            if values.ndim != 1:
                raise VariableError(f"coordinate {name!r} has shape {values.shape}, expected 1-D")
            if len(np.unique(values)) != values.size:
                raise VariableError(f"coordinate {name!r} = {values.tolist()!r} has repeated values")
            sizes[name] = values.size
    for name, (row, values) in coord_rows.items():
        if not row.is_dimension_coord:
            _check_shape(row, values.shape, sizes, where="coordinate", infer=False)

    data_vars = {}
    for name, values in arrays.items():
        row = get_variable(name)
        if row.kind != "data":
            raise VariableError(f"{name!r} is a coordinate, not a data variable: pass it in coords")
        values = np.asarray(values)
        _check_shape(row, values.shape, sizes, where="variable", infer=True)
        data_vars[name] = xr.Variable(row.dims, _cast(row, values), _annotation(row))

    ds = xr.Dataset(
        data_vars,
        coords={name: xr.Variable(row.dims, values, _annotation(row))
                for name, (row, values) in coord_rows.items()},
        attrs=sanitize_attrs(attrs),
    )
    return _add_sweep_dims(ds, sweep)


def _annotation(row: Variable) -> dict:
    out = {"long_name": row.long_name}
    if row.units:
        out["units"] = row.units
    return out


def _check_shape(row: Variable, shape: tuple, sizes: dict[str, int], where: str, infer: bool):
    """Check `shape` against the dim sizes; a dim without a table coordinate takes its size from
    the first array that uses it (plugin dims), one with a table coordinate needs that coordinate."""
    if len(shape) != len(row.dims):
        raise VariableError(
            f"{where} {row.name!r} has shape {shape} but dims {row.dims} need {len(row.dims)} axes"
        )
    for dim, n in zip(row.dims, shape):
        if dim in sizes:
            continue
        try:
            dim_row = get_variable(dim)
        except VariableError:
            dim_row = None
        if not infer or (dim_row is not None and dim_row.is_dimension_coord):
            raise VariableError(
                f"{where} {row.name!r} has dimension {dim!r} but coords has no {dim!r}: pass its labels"
            )
        sizes[dim] = n
    expected = tuple(sizes[d] for d in row.dims)
    if tuple(shape) != expected:
        raise VariableError(
            f"{where} {row.name!r} has shape {tuple(shape)}, expected {expected} for dims {row.dims} "
            f"(sizes from coords)"
        )


def _cast(row: Variable, values: np.ndarray) -> np.ndarray:
    target = row.numpy_dtype
    if target.kind == "U":
        if values.size and not all(isinstance(v, str | np.str_) for v in values.ravel().tolist()):
            raise VariableError(f"{row.name!r} = {values.tolist()!r} is invalid: expected strings")
        return values.astype(np.str_)
    if values.dtype.kind not in "biuf":
        raise VariableError(f"{row.name!r} has dtype {values.dtype}, expected numbers ({row.dtype})")
    cast = values.astype(target)
    if target.kind in "iu" and values.dtype != target:
        # A float with a fraction or nan, or an int out of range, would change silently.
        with np.errstate(invalid="ignore"):
            lossless = np.array_equal(cast.astype(values.dtype), values)
        if not lossless:
            raise VariableError(
                f"{row.name!r} holds values that are not exact {row.dtype} (from {values.dtype}): "
                f"nan, fractions or out of range"
            )
    return cast


def _add_sweep_dims(ds: xr.Dataset, sweep: Mapping[str, str | int | float]) -> xr.Dataset:
    taken = {v.name for v in variable_table()} | set(ds.dims)
    labels = {}
    for key, value in sweep.items():
        if not isinstance(key, str) or not key.isidentifier():
            raise VariableError(f"sweep key {key!r} is invalid: use an identifier")
        if key in taken:
            raise VariableError(f"sweep key {key!r} clashes with a variable or dimension of that name")
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool):
            value = int(value)  # netCDF has no boolean type
        if not isinstance(value, str | int | float):
            raise VariableError(f"sweep {key} = {value!r} is invalid: expected a str, int or float")
        labels[key] = [value]
    if not labels:
        return ds
    # expand_dims puts the new axes first, in order; the data variables all get them.
    ds = ds.expand_dims(labels)
    for key in labels:
        ds[key].attrs["long_name"] = f"{_SWEEP_LONG_NAME}: {key}"
    return ds


def is_sweep_dim(ds: xr.Dataset, dim: str) -> bool:
    """Whether `dim` is a swept value added by `to_dataset` (controller, load, seed, ...)."""
    return dim in ds.coords and str(ds[dim].attrs.get("long_name", "")).startswith(_SWEEP_LONG_NAME)


def sanitize_attrs(attrs: Mapping) -> dict:
    """Global attributes netCDF can store: None -> "", bool -> int, dict/list/tuple -> JSON,
    NumPy scalars -> Python scalars, numeric 1-D arrays kept, anything else -> str."""
    return {str(key): _sanitize(value) for key, value in attrs.items()}


def _sanitize(value):
    if value is None:
        return ""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, str | int | float):
        return value
    if isinstance(value, np.ndarray):
        if value.ndim == 1 and value.dtype.kind in "iuf" and value.size:
            return value
        value = value.tolist()
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        if isinstance(value, set | frozenset):
            value = sorted(value, key=str)
        return json.dumps(value, default=_json_default)
    return str(value)


def _json_default(value):
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, set | frozenset):
        return sorted(value, key=str)
    return str(value)


def standard_attrs(
    config_yaml: str, seed: int, plugins: Mapping[str, str], extra: Mapping | None = None
) -> dict:
    """The global attributes of a run: title, history, source, versions, plugins, config, seed,
    JAX version and device, then every item of `extra` (solver_status, solver_gap, ...), which
    may also override a standard key (e.g. title)."""
    import jax

    from edgefm import __version__

    device = jax.devices()[0]
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    attrs = {
        "title": TITLE,
        "history": f"{now} {shlex.join(sys.argv)}",
        "source": f"edgefm {__version__}",
        "edgefm_version": __version__,
        "plugins": ", ".join(f"{name}={version}" for name, version in sorted(plugins.items())),
        "config": config_yaml,
        "seed": int(seed),
        "jax_version": jax.__version__,
        "jax_device": f"{device.platform} ({device.device_kind})",
    }
    attrs.update(extra or {})
    return attrs
