"""placement.plan_fit (docs/PLACEMENT.md §1, "When the demand does not fit"): `exact` keeps an
infeasible demand an error; `largest` places the demand at the largest growth factor
α' ∈ [1, α = plan_load / target_utilisation] that fits, found by bisection to 0.01. Hand-sized
scenarios with the answer worked out below, and the paper scenario under the `realistic` sizing."""

from __future__ import annotations

import dataclasses
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from edgefm.errors import ConfigError, SolverError
from edgefm.results import placement_attrs
from edgefm.scenario import build_scenarios, load_spec
from edgefm.scenario.hostable import core_demand, growth_demand, hostable, largest_growth
from edgefm_baselines.least_loaded import LeastLoadedConfig, LeastLoadedPlacement, greedy
from edgefm_milp_scip import scip
from edgefm_milp_scip.milp import MilpConfig, MilpPlacement, fitted_program, program_of
from edgefm_milp_scip.program import with_demand
from edgefm_milp_scip.relaxed import RelaxedConfig, RelaxedPlacement

from test_placement_backbone import tiny

CONF = Path(__file__).resolve().parents[1] / "conf"
SOLVERS = [(MilpPlacement, MilpConfig), (RelaxedPlacement, RelaxedConfig), (LeastLoadedPlacement, LeastLoadedConfig)]
IDS = [s.name for s, _ in SOLVERS]
# the programs without a light reserve (least_loaded has none) and with the κ rule as by default
PROGRAM = {"reserve": 0.0}

# ----------------------------------------------------------------------------------------------
# The hand-sized case
#
# `tiny` with the device n0 empty, n1 = (3, 16, 16, 16) (cpu-poor), n2 = (16, 3, 16, 16) (ram-poor).
# s0 needs (2, 1, 2, 2), s1 (1, 1, 1, 1). Busy instances at load 1x: s0 1.2, s1 1.6 (see
# test_placement_backbone), so at growth α' the demand is (⌈1.2 α'⌉, ⌈1.6 α'⌉):
#   α' ∈ [1, 1.25]        → (2, 2)
#   α' ∈ (1.25, 5/3]      → (2, 3)
#   α' ∈ (5/3, 1.875]     → (3, 3)
#   α' ∈ (1.875, 2.5]     → (3, 4)      (α = 2 / 0.8 = 2.5 asks (3, 4))
# What fits: n1 holds 1 s0 + 1 s1 or 3 s1 (cpu 3), n2 any 3 instances (ram 3): at most 6 instances,
# so (3, 4) (7 instances) does not fit, though every total does (cpu 10 of 19, ram 7 of 19, vram 10
# of 32) and each service alone fits (s0: 1 + 3, s1: 3 + 3): only the exact check tells.
# (3, 3) fits: n1 = 3 s1, n2 = 3 s0. So the program's largest demand is (3, 3), α' ≤ 1.875.
# The greedy of least_loaded does not find that packing: at (3, 3) it takes s0 first (ties: lower id)
# and puts the first s0 on n1 (both idle, lower index), then s0 on n2, s0 on n2, then s1 on n1 (cpu
# full), s1 on n2 (ram full), and the third s1 has no room. At (2, 3) it takes s1 first: n1, n2, n1,
# then s0 on n2 twice (n1's cpu is 2 + 2 > 3): it fits. So least_loaded's largest demand is (2, 3),
# α' ≤ 5/3: here the two placements' feasibility does NOT coincide, and the test checks both.

CAPACITY = ((0, 0, 0, 0), (3, 16, 16, 16), (16, 3, 16, 16))
PROGRAM_DEMAND, PROGRAM_SUP = [3, 3, 0], 1.875
GREEDY_DEMAND, GREEDY_SUP = [2, 3, 0], 5.0 / 3.0
REQUESTED = [3, 4, 0]


def packed():
    return tiny(capacity=CAPACITY)


def realistic(config, **changes):
    return config(plan_load=2.0, target_utilisation=0.8, **changes)


def test_the_demand_steps_by_hand():
    sc = packed()
    for growth, want in ((1.0, [2, 2, 0]), (1.25, [2, 2, 0]), (1.26, [2, 3, 0]), (5 / 3, [2, 3, 0]),
                         (1.67, [3, 3, 0]), (1.875, [3, 3, 0]), (1.876, [3, 4, 0]), (2.5, [3, 4, 0])):
        assert growth_demand(sc, growth).tolist() == want, growth
    assert core_demand(sc, plan_load=2.0, target_utilisation=0.8).tolist() == REQUESTED
    # at α' = 1 the load-1x demand itself
    np.testing.assert_array_equal(growth_demand(sc, 1.0), core_demand(sc))


def test_what_fits_by_an_independent_check():
    # HiGHS (`hostable`) and SCIP agree with the hand count: (3, 3) fits, (3, 4) does not
    sc = packed()
    assert hostable(sc, 0.0, plan_load=PROGRAM_SUP) and not hostable(sc, 0.0, plan_load=1.876)
    program = program_of(MilpConfig(**PROGRAM), sc, 1.0)
    assert scip.demand_diagnosis(with_demand(program, np.array(REQUESTED)), 0.0, "milp") is None  # the filter passes
    assert not scip.feasible(with_demand(program, np.array(REQUESTED)), scip.SolverOptions()).has_solution
    solve = scip.feasible(with_demand(program, np.array(PROGRAM_DEMAND)), scip.SolverOptions())
    assert solve.status == "optimal" and solve.x.sum(0).tolist() == [3, 3]
    # the greedy: (3, 3) fails, (2, 3) places
    with pytest.raises(SolverError, match="no node has room for instance 3 of 3 of core service 's1'"):
        greedy(sc, np.array(PROGRAM_DEMAND))
    assert greedy(sc, np.array(GREEDY_DEMAND)).sum(0).tolist() == GREEDY_DEMAND


@pytest.mark.parametrize(("solver", "config"), SOLVERS, ids=IDS)
def test_largest_places_the_largest_demand_that_fits(solver, config):
    sc = packed()
    is_greedy = solver is LeastLoadedPlacement
    options = {} if is_greedy else PROGRAM
    result = solver.from_config(realistic(config, plan_fit="largest", **options)).solve(sc, slot_ms=1.0)
    info = result.info
    want, sup = (GREEDY_DEMAND, GREEDY_SUP) if is_greedy else (PROGRAM_DEMAND, PROGRAM_SUP)
    assert info["demand"] == want and info["demand_requested"] == REQUESTED
    assert info["plan_fit"] == "largest" and info["growth_requested"] == 2.5
    assert sup - 0.01 <= info["growth_used"] <= sup  # the bisection's tolerance below the step
    assert growth_demand(sc, info["growth_used"]).tolist() == want
    x = result.x_core
    assert np.all(x @ sc.resource <= sc.capacity + 1e-9)
    if is_greedy:  # exactly the demand, as the greedy places it
        np.testing.assert_array_equal(x, greedy(sc, np.array(want)))
    else:
        assert np.all(x.sum(0) >= want)
        # the κ rule ran on the chosen demand
        assert info["kappa_mode"] == "retention" and info["solver_kappa"] >= 1


def test_the_bisection_steps():
    # [1, 2.5] halved until ≤ 0.01 wide: 8 steps (1.5 / 2^8 = 0.0059); the largest fitting α' tried
    calls = []

    def fits(g):
        calls.append(g)
        return g <= 1.875

    used, steps = largest_growth(2.5, fits)
    assert len(steps) == 8 and [g for g, _ in steps] == calls
    assert calls[:3] == [1.75, 2.125, 1.9375]
    assert used == max(g for g, ok in steps if ok) and 1.865 <= used <= 1.875
    assert largest_growth(1.005, fits) == (1.0, [])  # already within the tolerance


@pytest.mark.parametrize(("solver", "config"), SOLVERS, ids=IDS)
def test_exact_keeps_the_usual_error(solver, config):
    options = {} if solver is LeastLoadedPlacement else {**PROGRAM, "kappa_mode": "off"}
    with pytest.raises(SolverError) as exact:
        solver.from_config(realistic(config, **options)).solve(packed(), slot_ms=1.0)
    with pytest.raises(SolverError) as explicit:
        solver.from_config(realistic(config, plan_fit="exact", **options)).solve(packed(), slot_ms=1.0)
    assert str(exact.value) == str(explicit.value) and "\n" not in str(exact.value)
    if solver is LeastLoadedPlacement:
        assert str(exact.value).startswith("least_loaded: no node has room for instance")
    elif solver is MilpPlacement:
        assert "does not fit the capacity" in str(exact.value)


@pytest.mark.parametrize(("solver", "config"), SOLVERS, ids=IDS)
@pytest.mark.parametrize("capacity", [None, CAPACITY], ids=["tiny", "packed"])
def test_a_growth_that_fits_is_the_same_under_exact_and_largest(solver, config, capacity):
    # α = 1.5 asks (2, 3): it fits both scenarios, for every placement
    sc = tiny() if capacity is None else tiny(capacity=capacity)
    options = {} if solver is LeastLoadedPlacement else PROGRAM
    a = solver.from_config(config(plan_load=1.5, plan_fit="exact", **options)).solve(sc, slot_ms=1.0)
    b = solver.from_config(config(plan_load=1.5, plan_fit="largest", **options)).solve(sc, slot_ms=1.0)
    np.testing.assert_array_equal(a.x_core, b.x_core)
    assert a.info["demand"] == b.info["demand"] == [2, 3, 0]
    assert a.info["growth_used"] == b.info["growth_used"] == 1.5
    assert a.info["plan_fit_checks"] == 0 and b.info["plan_fit_checks"] == 1
    timing = {"solver_time_s", "program_time_s", "solver_bound_time_s"}
    differ = {k for k in a.info if k not in timing and a.info[k] != b.info[k]}
    assert differ == {"plan_fit", "plan_fit_checks"}


def test_a_growth_that_fits_solves_the_same_program():
    sc = build_scenarios(load_spec(CONF / "scenario" / "paper.yaml"), seed=0)[0]
    config = MilpConfig(plan_fit="largest")
    program, fit, start = fitted_program(config, sc, 1.0, None, scip.SolverOptions(), "milp")
    reference = program_of(MilpConfig(), sc, 1.0)
    assert fit.fits and fit.growth == 1.0 and fit.checks == 1 and start is None
    for f in dataclasses.fields(reference):
        np.testing.assert_array_equal(getattr(program, f.name), getattr(reference, f.name))
    a = MilpPlacement().solve(sc, slot_ms=1.0)
    b = MilpPlacement.from_config(config).solve(sc, slot_ms=1.0)
    np.testing.assert_array_equal(a.x_core, b.x_core)
    assert a.info["solver_objective"] == b.info["solver_objective"] and a.info["solver_kappa"] == b.info["solver_kappa"]


def test_with_demand_is_the_program_built_at_that_demand():
    sc = packed()
    base = program_of(MilpConfig(plan_load=2.0, target_utilisation=0.8), sc, 1.0)
    for growth in (1.0, 1.3, 1.8):
        built = program_of(MilpConfig(plan_load=growth), sc, 1.0)
        swapped = with_demand(base, growth_demand(sc, growth))
        for f in dataclasses.fields(built):
            np.testing.assert_array_equal(getattr(swapped, f.name), getattr(built, f.name))


@pytest.mark.parametrize(("solver", "config"), SOLVERS, ids=IDS)
def test_growth_1_that_does_not_fit_is_still_an_error(solver, config):
    # n1 = (3, 16, 16, 16) holds 1 s0 + 1 s1 or 3 s1, n2 = (16, 1, 16, 16) one instance: the load-1x
    # demand (2, 2) does not fit (the totals and each service alone do: only SCIP proves it)
    sc = tiny(capacity=((0, 0, 0, 0), (3, 16, 16, 16), (16, 1, 16, 16)))
    options = {} if solver is LeastLoadedPlacement else {**PROGRAM, "kappa_mode": "off"}
    with pytest.raises(SolverError) as at_1:
        solver.from_config(config(plan_fit="exact", **options)).solve(sc, slot_ms=1.0)
    with pytest.raises(SolverError) as largest:
        solver.from_config(realistic(config, plan_fit="largest", **options)).solve(sc, slot_ms=1.0)
    message = str(largest.value)
    assert "\n" not in message
    if solver is not RelaxedPlacement:  # milp_relaxed's own error at 1 is its repair's; the check's is SCIP's
        assert message.startswith(str(at_1.value))
    assert message.endswith("(placement.plan_fit = largest: not even the demand at growth 1 fits, [2, 2, 0])")
    # below α = 1 no other growth is tried (the demand there is at most the load-1x one): s0 fits nowhere
    nowhere = tiny(capacity=((0, 0, 0, 0), (1, 16, 16, 16), (1, 16, 16, 16)))
    with pytest.raises(SolverError, match=r"plan_fit = largest: not even the demand at growth 0.5 fits, \[1, 1, 0\]"):
        solver.from_config(config(plan_load=0.5, plan_fit="largest", **options)).solve(nowhere, slot_ms=1.0)


@pytest.mark.parametrize(("solver", "config"), SOLVERS, ids=IDS)
def test_the_info_keys(solver, config):
    sc = packed()
    options = {} if solver is LeastLoadedPlacement else {**PROGRAM, "kappa_mode": "off"}
    largest = solver.from_config(realistic(config, plan_fit="largest", **options)).solve(sc, slot_ms=1.0).info
    exact = solver.from_config(config(plan_fit="exact", **options)).solve(sc, slot_ms=1.0).info
    keys = {"plan_fit", "growth_requested", "growth_used", "demand", "demand_requested", "plan_fit_checks",
            "plan_load", "target_utilisation"}
    assert keys <= set(largest) and keys <= set(exact)
    assert exact["plan_fit"] == "exact" and exact["growth_requested"] == exact["growth_used"] == 1.0
    assert exact["demand"] == exact["demand_requested"] == [2, 2, 0] and exact["plan_fit_checks"] == 0
    assert largest["plan_load"] == 2.0 and largest["target_utilisation"] == 0.8
    assert 1.0 < largest["growth_used"] < 2.5 and largest["plan_fit_checks"] >= 3
    attrs = placement_attrs(largest)  # as the dataset records them
    assert attrs["placement_plan_fit"] == "largest" and attrs["placement_growth_requested"] == 2.5
    assert attrs["placement_growth_used"] == largest["growth_used"]
    np.testing.assert_array_equal(attrs["placement_demand"], largest["demand"])
    np.testing.assert_array_equal(attrs["placement_demand_requested"], REQUESTED)


@pytest.mark.parametrize("value", ["Largest", "", "nearest", None, 1, True])
@pytest.mark.parametrize(("solver", "config"), SOLVERS, ids=IDS)
def test_a_bad_plan_fit_is_a_config_error(solver, config, value):
    with pytest.raises(ConfigError) as err:  # options are checked when the placement is made
        solver.from_config(config(plan_fit=value))
    assert err.value.field == "placement.plan_fit"
    assert str(err.value) == str(ConfigError("placement.plan_fit", value, "one of: exact, largest"))
    with pytest.raises(ConfigError, match=r"placement\.plan_fit"):
        solver(plan_fit=value)


# ----------------------------------------------------------------------------------------------
# The config


@pytest.fixture(scope="module")
def compose():
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    from edgefm.config.schema import register_all
    from edgefm.plugins import Registry

    registry = Registry.default()
    register_all(registry, conf_dir=CONF)

    def run(overrides):
        with initialize_config_dir(str(CONF), version_base="1.3"):
            return hydra_compose("config", overrides=overrides)

    return run


@pytest.mark.parametrize("placement", ["milp", "milp_relaxed", "least_loaded"])
def test_the_presets_set_plan_fit(compose, placement):
    from edgefm.config.closures import closure_changes, closures_in_force

    for preset, want in (("paper", "exact"), ("authors_code", "exact"), ("realistic", "largest")):
        cfg = compose([f"closures={preset}", f"placement={placement}"])
        assert cfg.placement.plan_fit == want and closures_in_force(cfg)["plan_fit"] == want
        assert closure_changes(cfg) == []
    cfg = compose(["closures=realistic", f"placement={placement}", "placement.plan_fit=exact"])
    assert closure_changes(cfg) == ["placement.plan_fit=exact"]


# ----------------------------------------------------------------------------------------------
# The paper scenario under the realistic sizing (α = 2.5 needs about 1.6x the network's VRAM)


@pytest.fixture(scope="module")
def paper():
    return build_scenarios(load_spec(CONF / "scenario" / "paper.yaml"), seed=0)[0]


@pytest.mark.parametrize(("solver", "config"), [SOLVERS[0], SOLVERS[2]], ids=["milp", "least_loaded"])
def test_the_paper_scenario_places_at_the_largest_growth(paper, solver, config):
    with pytest.raises(SolverError):
        solver.from_config(realistic(config)).solve(paper, slot_ms=1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = solver.from_config(realistic(config, plan_fit="largest")).solve(paper, slot_ms=1.0)
    info = result.info
    print(f"\n{solver.name}: growth_used = {info['growth_used']:.6f}, demand = {info['demand']}")
    assert 1.0 < info["growth_used"] < 2.5 and info["growth_requested"] == 2.5
    demand = np.array(info["demand"])
    assert demand.tolist() == growth_demand(paper, info["growth_used"]).tolist()
    assert np.all(demand <= np.array(info["demand_requested"])) and np.any(demand > core_demand(paper))
    assert np.all(result.x_core.sum(0) >= demand)
    if solver is MilpPlacement:
        program = program_of(MilpConfig(), paper, 1.0)  # the default reserve, as the placement's
        assert np.all(result.x_core[:, program.services] @ program.resource <= program.free + 1e-9)
        # within 0.01 of the largest: the demand 0.01 above does not fit the program
        above = with_demand(program, growth_demand(paper, info["growth_used"] + 0.01))
        assert scip.demand_diagnosis(above, MilpConfig().reserve, "milp") or \
            not scip.feasible(above, scip.SolverOptions()).has_solution
    else:
        assert np.all(result.x_core @ paper.resource <= paper.capacity + 1e-9)
        with pytest.raises(SolverError):
            greedy(paper, growth_demand(paper, info["growth_used"] + 0.01))
    assert math.isfinite(info["growth_used"])


def test_milp_relaxed_repairs_from_the_checks_placement_at_the_edge(paper):
    # the lowered demand is the largest that fits: the relaxation's own starts do not repair to it
    # on the paper scenario; the κ-free placement of the exact check does, and the κ rule runs on
    config = realistic(RelaxedConfig, plan_fit="largest")
    placement = RelaxedPlacement.from_config(config)
    program, fit, start = fitted_program(config, paper, 1.0, None, placement.fit_options(), placement.name)
    assert start is not None and 1.0 < fit.growth < 2.5 and program.demand.tolist() == fit.demand[program.services].tolist()
    assert not program.violations(start)
    with pytest.raises(SolverError, match="the repair could not restore feasibility"):
        placement.solve_program(program)
    x, info = placement.solve_program(program, fallback=start)
    assert not program.violations(x) and info["plan_fit_fallbacks"] >= 1 and info["solver_kappa"] >= 1
    result = placement.solve(paper, slot_ms=1.0)
    print(f"\nmilp_relaxed: growth_used = {result.info['growth_used']:.6f}")
    assert result.info["growth_used"] == fit.growth and result.info["demand"] == fit.demand.tolist()
    assert result.info["plan_fit_fallbacks"] >= 1
