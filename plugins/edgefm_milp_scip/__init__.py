"""Placements `milp` (the integer program of MODEL.md §5 on SCIP) and `milp_relaxed` (its continuous
relaxation with optax, rounded and repaired, for large networks). See docs/PLACEMENT.md."""

from edgefm import hookimpl
from edgefm_milp_scip.milp import MilpConfig, MilpPlacement
from edgefm_milp_scip.program import Program, build_program
from edgefm_milp_scip.relaxed import RelaxedConfig, RelaxedPlacement


@hookimpl
def edgefm_register_placement_solvers():
    return [MilpPlacement, RelaxedPlacement]


__all__ = ["MilpConfig", "MilpPlacement", "Program", "RelaxedConfig", "RelaxedPlacement", "build_program"]
