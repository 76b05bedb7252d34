"""The conformance checks catch what they promise to catch."""

import numpy as np
import pytest

from edgefm.interfaces import PlacementResult
from edgefm.testing import check_placement
from edgefm_baselines import LeastLoadedPlacement


def test_least_loaded_passes_the_placement_check():
    check_placement(LeastLoadedPlacement())


def test_placement_check_rejects_an_overfull_node():
    class Greedy(LeastLoadedPlacement):
        def solve(self, scenario, *, slot_ms):
            x = np.zeros((scenario.num_nodes, scenario.num_services), np.int64)
            x[0, scenario.core_services] = 1000
            return PlacementResult(x_core=x)

    with pytest.raises(AssertionError, match="capacity"):
        check_placement(Greedy())


def test_lbrr_passes_the_controller_check():
    from edgefm.testing import check_controller
    from edgefm_baselines import LBRRController

    check_controller(LBRRController())
