"""Controllers `proposed` and `propavg`: Lyapunov drift-plus-penalty with effective capacity (MODEL.md §7)."""

from edgefm import hookimpl
from edgefm.io.variables import Variable, register_variable
from edgefm_lyapunov.controller import (
    LyapunovConfig,
    LyapunovController,
    PropAvgController,
    ProposedController,
)

_DIMS = ("instance", "realisation", "slot")
INFO_VARIABLES = (
    Variable("controller_objective", _DIMS, "1",
             "Algorithm 1 objective Phi of the deployed light instances at the slot's boundary "
             "(V * light cost + weighted delays and deferral charges)", "float64"),
    Variable("vq_mean", _DIMS, "ms", "mean virtual queue H over the tasks in flight at the boundary (0 if none)",
             "float64"),
    Variable("vq_sum", _DIMS, "ms", "virtual-queue backlog: sum of H over the tasks in flight at the boundary "
             "(the Lyapunov queue backlog)", "float64"),
    Variable("vq_max", _DIMS, "ms", "largest virtual queue H over the tasks in flight at the boundary (0 if none)",
             "float64"),
    Variable("greedy_steps", _DIMS, "instances", "light instances added by Algorithm 1's greedy at the boundary",
             "int64"),
)
for _v in INFO_VARIABLES:
    register_variable(_v, owner=__name__)
del _v


@hookimpl
def edgefm_register_controllers():
    return [ProposedController, PropAvgController]


__all__ = ["INFO_VARIABLES", "LyapunovConfig", "LyapunovController", "PropAvgController", "ProposedController"]
