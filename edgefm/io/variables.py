"""The one table of every variable a run dataset may hold: dims, units, long_name, dtype.

`to_dataset` checks and annotates arrays from it, and the README's output reference is generated
from it (``python -m edgefm.io.variables``). Plugins add rows at run time with `register_variable`
instead of editing the core table.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Literal

import numpy as np

from edgefm.errors import EdgefmError

__all__ = [
    "DIMS",
    "Variable",
    "VariableError",
    "get_variable",
    "markdown_table",
    "register_variable",
    "unregister_variable",
    "variable_table",
]

# Core dimensions, with their meaning (the README lists them from here).
DIMS: dict[str, str] = {
    "instance": "sampled scenario instance",
    "realisation": "Monte Carlo realisation",
    "slot": "time slot",
    "node": "network node (edge device ED or edge server ES)",
    "service": "microservice (core or light)",
    "task_type": "task type",
    "user": "user",
    "resource": "resource type (cpu, ram, gpu, vram)",
    "quantile": "latency quantile level",
    "task": "task id, in arrival order (per-task records, with output.task_records)",
    "outcome": "finished task outcome: ontime or late",
    "component": "part of a task's critical path (docs/SEMANTICS.md §11)",
    "link": "network link, named by its end nodes (docs/SEMANTICS.md §12)",
}

_CORE_OWNER = "edgefm core"
_STR = "str"


class VariableError(EdgefmError, ValueError):
    """A variable is unknown, clashes with another, or does not fit its table row."""


@dataclass(frozen=True)
class Variable:
    """One row of the table: a data variable or a coordinate of a run dataset."""

    name: str
    dims: tuple[str, ...]
    units: str  # "" for labels without units; "1" for dimensionless numbers
    long_name: str
    dtype: str  # a NumPy dtype name ("int64", "float64", ...) or "str"
    kind: Literal["data", "coord"] = "data"

    def __post_init__(self):
        if not self.name.isidentifier():
            raise VariableError(f"variable name {self.name!r} is invalid: use a Python identifier")
        object.__setattr__(self, "dims", tuple(self.dims))
        for dim in self.dims:
            if not isinstance(dim, str) or not dim.isidentifier():
                raise VariableError(f"{self.name}.dims = {self.dims!r} is invalid: use identifiers")
        if len(set(self.dims)) != len(self.dims):
            raise VariableError(f"{self.name}.dims = {self.dims!r} is invalid: a dimension repeats")
        if self.kind not in ("data", "coord"):
            raise VariableError(f"{self.name}.kind = {self.kind!r} is invalid: use 'data' or 'coord'")
        if self.dtype != _STR:
            try:
                np.dtype(self.dtype)
            except TypeError:
                raise VariableError(
                    f"{self.name}.dtype = {self.dtype!r} is invalid: use a NumPy dtype name or 'str'"
                ) from None

    @property
    def numpy_dtype(self) -> np.dtype:
        """The NumPy dtype arrays are cast to (unicode for "str")."""
        return np.dtype(np.str_) if self.dtype == _STR else np.dtype(self.dtype)

    @property
    def is_dimension_coord(self) -> bool:
        return self.kind == "coord" and self.dims == (self.name,)


def _rows() -> list[Variable]:
    I, R, N = "instance", "realisation", "task_type"  # noqa: E741
    tasks, events, ms, mb, price = "tasks", "events", "ms", "MB", "price units"
    V = Variable
    return [
        # ---- coordinates --------------------------------------------------------------------
        V("instance", (I,), "1", "sampled scenario instance index", "int64", "coord"),
        V("realisation", (R,), "1", "Monte Carlo realisation index", "int64", "coord"),
        V("slot", ("slot",), "1", "time slot index", "int64", "coord"),
        V("slot_start_ms", ("slot",), ms, "start time of the slot", "float64", "coord"),
        V("node", ("node",), "", "node name", _STR, "coord"),
        V("node_kind", ("node",), "", "node kind: ED (edge device) or ES (edge server)", _STR, "coord"),
        V("service", ("service",), "", "microservice name", _STR, "coord"),
        V("service_kind", ("service",), "", "service kind: core or light", _STR, "coord"),
        V("task_type", (N,), "", "task type name", _STR, "coord"),
        V("user", ("user",), "", "user name", _STR, "coord"),
        V("resource", ("resource",), "", "resource type: cpu, ram, gpu or vram", _STR, "coord"),
        V("quantile", ("quantile",), "1", "quantile level in [0, 1]", "float64", "coord"),
        V("task", ("task",), "1", "task id in arrival order", "int64", "coord"),
        V("outcome", ("outcome",), "", "finished task outcome: ontime or late", _STR, "coord"),
        V("link", ("link",), "", "link, named by its end nodes (a-b), in the scenario's link order", _STR, "coord"),
        V("component", ("component",), "",
          "part of a task's critical path: uplink, network, core/light dispatch wait, queue, service",
          _STR, "coord"),
        # ---- per (instance, realisation) -----------------------------------------------------
        V("tasks_arrived", (I, R), tasks, "tasks that arrived", "int64"),
        V("tasks_ontime", (I, R), tasks, "tasks finished by their deadline", "int64"),
        V("tasks_late", (I, R), tasks, "tasks finished after their deadline", "int64"),
        V("tasks_unfinished", (I, R), tasks, "tasks still in flight at the end of the horizon", "int64"),
        V("tasks_dropped", (I, R), tasks, "tasks dropped", "int64"),
        V("ontime_rate", (I, R), "1", "fraction of arrived tasks finished by their deadline", "float64"),
        V("cost_core", (I, R), price, "cost of core instances over the horizon", "float64"),
        V("cost_light", (I, R), price, "cost of light instances over the horizon", "float64"),
        V("cost_total", (I, R), price, "total deployment cost over the horizon", "float64"),
        V("list_overflow", (I, R), events,
          "engine-only task-list overflows (results are exact only while 0)", "int64"),
        V("invalid_actions", (I, R), events, "controller decisions the engine refused", "int64"),
        V("capacity_violations", (I, R), "slots",
          "slots in which the node capacity (Eq. 8) was violated on some node", "int64"),
        V("buffer_peak", (I, R), tasks, "peak number of tasks held in the engine buffer", "int64"),
        # ---- per (instance, realisation, task_type) ------------------------------------------
        V("tasks_arrived_by_type", (I, R, N), tasks, "tasks that arrived, by type", "int64"),
        V("tasks_ontime_by_type", (I, R, N), tasks, "tasks finished by their deadline, by type", "int64"),
        V("ontime_rate_by_type", (I, R, N), "1", "on-time rate, by type", "float64"),
        V("latency_mean", (I, R, N), ms, "mean latency of finished tasks (nan if none)", "float64"),
        V("latency_quantile", (I, R, N, "quantile"), ms,
          "latency quantile of finished tasks (nan if none)", "float64"),
        V("latency_quantile_all", (I, R, "quantile"), ms,
          "latency quantile over all finished tasks (nan if none)", "float64"),
        V("latency_breakdown", (I, R, "outcome", "component"), ms,
          "mean time per finished task (on time or late) spent in each part of its critical path; "
          "the parts sum to the latency (docs/SEMANTICS.md §11; nan if no such task)", "float64"),
        # ---- light stages against the delay bound the controller stated (SEMANTICS §11) --------
        V("light_bounded", (I, R, "service"), "stages",
          "light stages with a delay bound from the controller, finished or known late (0 for core)",
          "int64"),
        V("light_violations", (I, R, "service"), "stages",
          "light stages whose measured delay exceeded the bound the controller stated", "int64"),
        V("violation_rate", (I, R, "service"), "1",
          "light_violations / light_bounded (nan where no stage has a bound: core services, lbrr, ga)",
          "float64"),
        V("light_bounded_root", (I, R, "service"), "stages",
          "the light_bounded stages that are roots of their task (their input is the task's upload)", "int64"),
        V("light_violations_root", (I, R, "service"), "stages",
          "the light_violations stages that are roots of their task", "int64"),
        V("violation_rate_root", (I, R, "service"), "1",
          "violation rate of root light stages (nan where none has a bound)", "float64"),
        V("violation_rate_other", (I, R, "service"), "1",
          "violation rate of the other (non-root) light stages (nan where none has a bound)", "float64"),
        # ---- per (instance, realisation, slot) -----------------------------------------------
        V("cost_light_slot", (I, R, "slot"), price, "cost of light instances in the slot", "float64"),
        V("tasks_in_flight", (I, R, "slot"), tasks, "tasks in flight at the end of the slot", "int64"),
        # ---- failures (docs/SEMANTICS.md §12) --------------------------------------------------
        V("node_up", (I, R, "slot", "node"), "1", "1 if the node was up (computing) in the slot, else 0", "int8"),
        V("link_up", (I, "slot", "link"), "1", "1 if the link was up in the slot, else 0", "int8"),
        V("jobs_lost", (I, R, "slot"), "stages",
          "stages lost at the slot's boundary because their node was down (re-dispatched)", "int64"),
        # ---- placement and control -----------------------------------------------------------
        V("x_core", (I, "node", "service"), "instances", "core instances placed (x^core)", "int64"),
        V("x_light", (I, R, "slot", "node", "service"), "instances",
          "light instances deployed in the slot (x^light)", "int32"),
        V("parallelism", (I, R, "slot", "node", "service"), "jobs",
          "largest parallelism y over the light instances of the service on the node in the slot "
          "(0 where none)", "int32"),
        # ---- scenario parameters -------------------------------------------------------------
        V("capacity", (I, "node", "resource"), "resource units", "node capacity R_v", "float64"),
        V("resource_need", (I, "service", "resource"), "resource units",
          "resource need of one instance r_m", "float64"),
        V("work", (I, "service"), mb, "work per task a_m", "float64"),
        V("output_size", (I, "service"), mb, "output size b_m", "float64"),
        V("core_rate", (I, "service"), "MB/ms", "processing rate f_m of core services (nan for light)",
          "float64"),
        V("light_shape", (I, "service"), "1",
          "Gamma shape k_m of the light-service rate (nan for core)", "float64"),
        V("light_scale", (I, "service"), "MB/ms",
          "Gamma scale beta_m of the light-service rate (nan for core)", "float64"),
        V("deadline", (I, N), ms, "deadline D_n", "float64"),
        V("input_size", (I, N), mb, "input size A_n", "float64"),
        V("arrival_rate", (I, "user", N), "tasks/ms", "arrival rate lambda_{u,n} at the run's load",
          "float64"),
        V("user_gateway", (I, "user"), "node index", "gateway node g(u) of the user", "int64"),
        # ---- per task (only with output.task_records; padding beyond a realisation's tasks) ---
        V("task_arrival", (I, R, "task"), ms, "arrival time of the task (nan: padding)", "float64"),
        V("task_finish", (I, R, "task"), ms,
          "finish time of the task's sink stage (nan: unfinished, dropped or padding)", "float64"),
        V("task_type_index", (I, R, "task"), "1",
          "index of the task's type along task_type (-1: padding)", "int64"),
        V("task_dropped", (I, R, "task"), "1", "1 if the task was dropped, else 0", "int8"),
        # ---- host-side diagnostics of the tiers (docs/EXPERIMENTS.md, "Which tier binds") --------
        V("light_instances_mean", (I, R), "instances",
          "light instances running, summed over nodes and light services, averaged over the slots", "float64"),
        V("light_starved", (I, R), "services",
          "light services that the arrived task types use and that never ran an instance (their stages "
          "wait for ever)", "int64"),
        V("core_utilisation", (I, "service"), "1",
          "offered core work at the run's load over the placed instances: rho_m = sum over the (user, "
          "type) using m of lambda a_m / f_m / sum_v x_core[v, m] (nan: light or unused service)", "float64"),
        V("core_utilisation_max", (I,), "1", "largest core_utilisation over the core services", "float64"),
        V("binding_tier", (I, R), "",
          "the tier that binds: starved (light_starved > 0), core (max rho > 1), else the largest group "
          "of the late tasks' breakdown: uplink, network, core_queue, light, service; without late tasks, "
          "unfinished if tasks missed without finishing (unfinished or dropped), else none", _STR),
    ]


_TABLE: dict[str, Variable] = {}
_OWNERS: dict[str, str] = {}
for _row in _rows():
    _TABLE[_row.name] = _row
    _OWNERS[_row.name] = _CORE_OWNER
del _row


def register_variable(variable: Variable, *, owner: str | None = None) -> Variable:
    """Add a row to the table (for plugins). A name already taken is an error naming both owners.

    `owner` defaults to the calling module. Registering the very same row again from the same owner
    is a no-op, so a plugin that is loaded twice does not fail.
    """
    if not isinstance(variable, Variable):
        raise TypeError(f"register_variable expects a Variable, got {type(variable).__name__}")
    if owner is None:
        owner = sys._getframe(1).f_globals.get("__name__", "<unknown>")
    existing = _TABLE.get(variable.name)
    if existing is not None:
        if existing == variable and _OWNERS[variable.name] == owner:
            return existing
        raise VariableError(
            f"variable {variable.name!r} from {owner} ({variable}) clashes with the one from "
            f"{_OWNERS[variable.name]} ({existing}): choose another name"
        )
    _TABLE[variable.name] = variable
    _OWNERS[variable.name] = owner
    return variable


def unregister_variable(name: str) -> None:
    """Remove a row added by `register_variable` (for tests and plugin teardown)."""
    if _OWNERS.get(name) == _CORE_OWNER:
        raise VariableError(f"variable {name!r} belongs to the edgefm core table and cannot be removed")
    _TABLE.pop(name, None)
    _OWNERS.pop(name, None)


def get_variable(name: str) -> Variable:
    """The table row of `name`; an unknown name is an error that points to `register_variable`."""
    try:
        return _TABLE[name]
    except KeyError:
        raise VariableError(
            f"variable {name!r} is not in the edgefm variable table: use one of the known names "
            f"(python -m edgefm.io.variables lists them) or add it with "
            f"edgefm.io.register_variable(Variable(...))"
        ) from None


def variable_table(kind: str | None = None, *, core_only: bool = False) -> tuple[Variable, ...]:
    """Every row of the table (core rows first, then registered ones), optionally of one kind, or
    only the rows of edgefm's core (those every run has, whatever its components)."""
    return tuple(
        v for v in _TABLE.values()
        if (kind is None or v.kind == kind) and (not core_only or _OWNERS[v.name] == _CORE_OWNER)
    )


def _cell(text: str) -> str:
    return text.replace("|", "\\|") if text else "—"


def markdown_table() -> str:
    """The output reference of the README: every coordinate and data variable with its units.

    The core rows come first (coordinates, then data), then the rows the plugins of the `edgefm`
    distribution register (their packages are imported first, so the table does not depend on what
    happened to be imported before), with the plugin named in the last column."""
    import importlib

    from edgefm.plugins import builtin_plugin_modules

    builtin = tuple(builtin_plugin_modules())
    for module in builtin:
        importlib.import_module(module)
    lines = ["| variable | kind | dims | units | dtype | description | from |", "|---|---|---|---|---|---|---|"]

    def source(name: str) -> str | None:
        owner = _OWNERS[name]
        if owner == _CORE_OWNER:
            return "core"
        return next((m for m in builtin if owner == m or owner.startswith(m + ".")), None)

    rows = [(v, source(v.name)) for v in _TABLE.values()]
    rows = [r for r in rows if r[1] is not None]  # third-party rows are not part of the reference
    # core first, then by plugin; coordinates first within each; otherwise registration order (stable)
    for v, src in sorted(rows, key=lambda r: (r[1] != "core", r[1], r[0].kind != "coord")):
        dims = ", ".join(v.dims)
        lines.append(
            f"| `{v.name}` | {v.kind} | {_cell(dims)} | {_cell(v.units)} | {v.dtype} | "
            f"{_cell(v.long_name)} | {src} |"
        )
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(markdown_table(), end="")
