"""Results I/O: the variable table, `to_dataset`, atomic netCDF writes and multirun collection.

Names are imported lazily so that ``python -m edgefm.io.variables`` (which prints the README's
output reference) runs without a second, already-imported copy of the table module.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

_EXPORTS = {
    "DIMS": "variables",
    "Variable": "variables",
    "VariableError": "variables",
    "get_variable": "variables",
    "markdown_table": "variables",
    "register_variable": "variables",
    "unregister_variable": "variables",
    "variable_table": "variables",
    "is_sweep_dim": "dataset",
    "sanitize_attrs": "dataset",
    "standard_attrs": "dataset",
    "to_dataset": "dataset",
    "collect": "netcdf",
    "open_run": "netcdf",
    "sweep_temporary_files": "netcdf",
    "write_netcdf_atomic": "netcdf",
}

__all__ = sorted(_EXPORTS)

if TYPE_CHECKING:
    from edgefm.io.dataset import is_sweep_dim, sanitize_attrs, standard_attrs, to_dataset
    from edgefm.io.netcdf import collect, open_run, sweep_temporary_files, write_netcdf_atomic
    from edgefm.io.variables import (
        DIMS,
        Variable,
        VariableError,
        get_variable,
        markdown_table,
        register_variable,
        unregister_variable,
        variable_table,
    )


def __getattr__(name: str):
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'edgefm.io' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"edgefm.io.{module}"), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(_EXPORTS))
