"""Placements `milp` (SCIP) and `milp_relaxed` (optax + repair): oracles, invariants, errors, CLI."""

from __future__ import annotations

import dataclasses
import itertools
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pyscipopt
import pytest
import xarray as xr

from edgefm.errors import SolverError
from edgefm.plugins import Registry
from edgefm.scenario import build_scenarios, load_spec
from edgefm_milp_scip import scip
from edgefm_milp_scip.milp import DEFAULT_RESERVE, MilpConfig, MilpPlacement, program_of
from edgefm_milp_scip.program import Program, core_demand
from edgefm_milp_scip.relaxed import RelaxedConfig, RelaxedPlacement, relative_gap
from edgefm_milp_scip.synthetic import random_scenario

ROOT = Path(__file__).resolve().parents[1]
PAPER = ROOT / "conf" / "scenario" / "paper.yaml"


def rate(sc) -> np.ndarray:
    """[U] MB/ms: the nakagami channel's mean-value uplink rate at its defaults, B log2(1 + snr0 Ω_u)
    with B = 0.125, snr0 = 1 (what the runner passes as uplink_rate with channel=nakagami)."""
    return 0.125 * np.log2(1.0 + sc.nakagami_omega)


@pytest.fixture(scope="module")
def paper():
    return build_scenarios(load_spec(PAPER), seed=0)[0]


def tiny_program(rng, V=3, J=2, max_bound=3) -> Program:
    """A random program whose x has at most V*J <= 6 integer variables (plus as many indicators)."""
    K = 4
    resource = rng.uniform(1, 4, (J, K))
    free = rng.uniform(2, 4 * max_bound, (V, K))
    bound = np.minimum(np.floor(free[:, None, :] / resource[None]).min(2), max_bound).astype(np.int64)
    coef = rng.uniform(-50, 10, (V, J))
    demand = rng.integers(1, 3, J)
    zeros = np.zeros((V, J))
    return Program(
        services=np.arange(J), service_names=tuple(f"s{j}" for j in range(J)), node_names=tuple(f"n{v}" for v in range(V)),
        coef=coef, bound=bound, resource=resource, free=free, reserve=np.zeros((V, K)), demand=demand,
        cost=np.zeros(J), qos=zeros, load=zeros, capacity=free,
    )  # fmt: skip


def brute_force(p: Program, kappa: int | None, form: str) -> float:
    """Optimum by enumerating every integer x in the box (inf if infeasible)."""
    best = np.inf
    for flat in itertools.product(*[range(int(b) + 1) for b in p.bound.ravel()]):
        x = np.array(flat).reshape(p.bound.shape)
        if np.any(x @ p.resource > p.free + 1e-9) or np.any(x.sum(0) < p.demand):
            continue
        if kappa is not None and scip.occupied(x, form) < kappa:
            continue
        best = min(best, p.objective(x))
    return best


OPTS = scip.SolverOptions(time_limit_s=20)


@pytest.mark.parametrize("form", scip.FORMS)
def test_scip_equals_brute_force_on_tiny_programs(form):
    rng = np.random.default_rng(7)
    checked = infeasible = 0
    for _ in range(20):
        p = tiny_program(rng)
        for kappa in (None, 2, 3) if form == "global" else (None, 1, 2):
            want = brute_force(p, kappa, form)
            got = scip.solve(p, kappa, form, OPTS)
            if np.isinf(want):
                assert not got.has_solution and got.status == "infeasible"
                infeasible += 1
                continue
            assert got.status == "optimal"
            assert got.objective == pytest.approx(want, rel=1e-9, abs=1e-9)
            assert not p.violations(got.x) and (kappa is None or scip.occupied(got.x, form) >= kappa)
            checked += 1
    assert checked >= 30 and infeasible >= 1


@pytest.mark.parametrize("heuristics", ["aggressive", "off"])
def test_heuristics_and_scip_params_reach_scip_and_keep_the_optimum(heuristics):
    """The emphasis and the pass-through parameters are set on the model (parameters last, so they
    override the emphasis), and the solve still ends at the brute-force optimum."""
    rng = np.random.default_rng(11)
    options = scip.SolverOptions(time_limit_s=20, heuristics=heuristics, params={"heuristics/rins/freq": 7})
    solved = 0
    for _ in range(8):
        p = tiny_program(rng)
        model, _ = scip.build_model(p, 2, "global", options)
        assert model.getParam("heuristics/rins/freq") == 7
        # an emphasis setting other than rins: off disables, aggressive shortens the frequency
        default = pyscipopt.Model().getParam("heuristics/crossover/freq")
        crossover = model.getParam("heuristics/crossover/freq")
        assert crossover == -1 if heuristics == "off" else 0 < crossover < default
        want = brute_force(p, 2, "global")
        got = scip.solve(p, 2, "global", options)
        if np.isinf(want):
            assert not got.has_solution
        else:
            assert got.status == "optimal" and got.objective == pytest.approx(want, rel=1e-9, abs=1e-9)
            solved += 1
    assert solved >= 4


def test_scenario_pipeline_equals_brute_force():
    """Through a scenario: capacities cut so that every (node, service) box is tiny."""
    sc = random_scenario(3, 2, num_light=2, num_types=2, seed=3)
    need = sc.resource[sc.core_services].max(0)
    sc = dataclasses.replace(sc, capacity=np.tile(need * 2.5 / 0.8, (sc.num_nodes, 1)))
    for kappa in (3, 5):
        placement = MilpPlacement(kappa_mode="fixed", kappa=kappa)
        p = program_of(placement, sc, 1.0, rate(sc))
        assert p.bound.size <= 6 and p.bound.max() <= 3
        result = placement.solve(sc, slot_ms=1.0, uplink_rate=rate(sc))
        x = result.x_core[:, p.services]
        assert result.info["solver_objective"] == pytest.approx(brute_force(p, kappa, "global"), rel=1e-9)
        assert p.objective(x) == pytest.approx(result.info["solver_objective"], rel=1e-12)
        assert np.all(result.x_core[:, ~sc.service_is_core] == 0)


@pytest.mark.parametrize("form", scip.FORMS)
def test_retention_rule_kappa_satisfies_its_definition(form):
    sc = random_scenario(10, 4, seed=1)
    placement = MilpPlacement(sparsity=form)
    p = program_of(placement, sc, 1.0, rate(sc))
    x, info, final = placement.solve_program(p)
    kappa = info["solver_kappa"]
    free = scip.solve(p, None, form, OPTS)  # the κ-free optimum J*, again
    target = free.objective + 0.05 * abs(free.objective)
    assert info["kappa_free_objective"] == pytest.approx(free.objective, rel=1e-9)
    assert info["solver_objective"] <= target + 1e-9 * abs(target)
    assert scip.occupied(x, form) >= kappa
    above = scip.solve(p, kappa + 1, form, OPTS)  # κ + 1 breaks the rule (or is infeasible)
    assert not above.has_solution or above.objective > target
    assert info["solver_num_solves"] >= 2 and info["solver_status"] == "optimal"


@pytest.mark.parametrize("reserve", [0.2, [0.3, 0.1, 0.05, 0.15]])
def test_the_light_reserve_is_respected(paper, reserve):
    result = MilpPlacement(reserve=reserve, kappa_mode="off").solve(paper, slot_ms=1.0, uplink_rate=rate(paper))
    used = result.x_core @ paper.resource
    fractions = np.broadcast_to(np.asarray(reserve, float), (4,))
    assert np.all(used <= paper.capacity * (1 - fractions) + 1e-9)
    assert np.all(result.x_core.sum(0) >= core_demand(paper))
    assert result.info["reserve"] == list(map(float, fractions))


def test_written_mps_solved_again_gives_the_same_objective(paper, tmp_path):
    placement = MilpPlacement(kappa_mode="fixed", kappa=20, write_model=True, model_dir=str(tmp_path))
    result = placement.solve(paper, slot_ms=1.0, uplink_rate=rate(paper))
    files = result.info["model_files"].split()
    assert sorted(Path(f).name for f in files) == ["placement_milp_instance0.lp", "placement_milp_instance0.mps"]
    for path in files:
        again = pyscipopt.Model()
        again.hideOutput()
        again.readProblem(path)
        again.optimize()
        assert again.getStatus() == "optimal"
        assert again.getObjVal() == pytest.approx(result.info["solver_objective"], rel=1e-9)


def _milp_at(p: Program, kappa: int, form: str) -> float:
    exact = scip.solve(p, kappa if kappa > 0 else None, form, OPTS)
    assert exact.status == "optimal"
    return exact.objective


@pytest.mark.parametrize("case", ["paper", "random10", "random12_per_service", "random30"])
def test_relaxed_is_feasible_and_within_its_reported_gap(paper, case):
    form = "per_service" if case.endswith("per_service") else "global"
    sc = {"paper": paper, "random10": random_scenario(10, 4, seed=2),
          "random12_per_service": random_scenario(12, 5, seed=4), "random30": random_scenario(30, 6, seed=5)}[case]  # fmt: skip
    # reserve 0.1 on every node: the instances whose gaps these bounds were set on
    relaxed = RelaxedPlacement(sparsity=form, kappa_mode="off" if case == "random30" else "retention", reserve=0.1)
    p = program_of(relaxed, sc, 1.0, rate(sc))
    x, info = relaxed.solve_program(p)
    kappa = info["solver_kappa"]
    assert not p.violations(x) and scip.occupied(x, form) >= kappa
    exact = _milp_at(p, kappa, form)
    bound, gap = info["solver_bound"], info["solver_gap"]
    assert bound <= exact + 1e-9 * abs(exact)  # the LP bound is a valid lower bound
    assert info["solver_objective"] >= exact - 1e-9 * abs(exact)
    assert info["solver_objective"] - exact <= gap * min(abs(info["solver_objective"]), abs(bound)) + 1e-9
    assert gap == pytest.approx(relative_gap(info["solver_objective"], bound))
    assert gap < 0.15


def test_relaxed_placement_through_solve_has_zero_light_columns(paper):
    result = RelaxedPlacement(kappa_mode="fixed", kappa=20).solve(paper, slot_ms=1.0, uplink_rate=rate(paper))
    assert np.all(result.x_core[:, ~paper.service_is_core] == 0)
    kept = np.where(paper.node_is_server, 1 - DEFAULT_RESERVE["server"], 1 - DEFAULT_RESERVE["device"])[:, None]
    assert np.all(result.x_core @ paper.resource <= paper.capacity * kept + 1e-9)
    assert (result.x_core > 0).sum() >= 20 and result.info["solver_status"] == "feasible"


# ----------------------------------------------------------------------------------------------
# Errors


def _one_line_error(func) -> str:
    with pytest.raises(SolverError) as err:
        func()
    message = str(err.value)
    assert "\n" not in message
    return message


def test_infeasible_demand_names_the_service_and_resource(paper):
    message = _one_line_error(lambda: MilpPlacement(reserve=0.9).solve(paper, slot_ms=1.0, uplink_rate=rate(paper)))
    assert "infeasible" in message and "req_m" in message and "placement.reserve" in message
    assert any(repr(paper.service_names[m]) in message for m in paper.core_services)
    assert any(k in message for k in ("cpu", "ram", "gpu", "vram"))


def test_infeasible_total_demand_names_the_resource(paper):
    # each service alone fits, all together do not: only vram is cut
    message = _one_line_error(
        lambda: MilpPlacement(reserve=[0, 0, 0, 0.45]).solve(paper, slot_ms=1.0, uplink_rate=rate(paper))
    )
    assert "vram" in message and "all services together" in message


@pytest.mark.parametrize("solver", [MilpPlacement, RelaxedPlacement])
@pytest.mark.parametrize("form", scip.FORMS)
def test_kappa_beyond_the_feasible_pairs(paper, solver, form):
    config = solver.Config(kappa_mode="fixed", kappa=1000, sparsity=form)
    message = _one_line_error(lambda: solver.from_config(config).solve(paper, slot_ms=1.0, uplink_rate=rate(paper)))
    assert "kappa = 1000" in message and "lower placement.kappa" in message


def test_time_limit_without_a_solution_is_an_error(paper):
    p = program_of(MilpConfig(), paper, 1.0, rate(paper))
    model = pyscipopt.Model()
    unsolved = scip.Solve(kappa=None, status="timelimit", x=None, objective=np.inf, gap=np.inf, seconds=1.0, model=model)
    with pytest.raises(SolverError, match=r"timelimit.*without a feasible placement.*time_limit_s"):
        scip.ensure_solution(unsolved, p, "global", np.full(4, 0.2), OPTS, "milp")


def test_time_limit_with_a_solution_warns_and_records_the_gap():
    sc = random_scenario(50, 10, seed=1)
    placement = MilpPlacement(kappa_mode="off", time_limit_s=1.0)
    with pytest.warns(RuntimeWarning, match="before proving optimality"):
        result = placement.solve(sc, slot_ms=1.0, uplink_rate=rate(sc))
    assert result.info["solver_status"] == "timelimit"
    assert 0 < result.info["solver_gap"] < 1
    assert result.x_core.sum() > 0


def test_bad_options_are_config_errors(paper):
    from edgefm.errors import ConfigError

    for config in (MilpConfig(reserve=1.0), MilpConfig(reserve=[0.1, 0.2]), MilpConfig(sparsity="both"),
                   MilpConfig(kappa_mode="auto"), MilpConfig(retention=0.0), MilpConfig(target_utilisation=0.0)):  # fmt: skip
        with pytest.raises(ConfigError):
            MilpPlacement.from_config(config).solve(paper, slot_ms=1.0, uplink_rate=rate(paper))
    # SCIP options: the message names the field, the value and what is accepted
    for config, field, accepted in (
        (MilpConfig(heuristics="agressive"), "placement.heuristics", "aggressive"),
        (MilpConfig(scip_params=[1]), "placement.scip_params", "mapping"),
        (MilpConfig(scip_params={"limits/nodez": 3}), "placement.scip_params.limits/nodez", "SCIP parameter name"),
        (MilpConfig(scip_params={"limits/nodes": 2.5}), "placement.scip_params.limits/nodes", "SCIP type int"),
        (MilpConfig(scip_params={"limits/gap": -1.0}), "placement.scip_params.limits/gap", "in range [0,"),
    ):
        with pytest.raises(ConfigError) as err:
            MilpPlacement.from_config(config).solve(paper, slot_ms=1.0, uplink_rate=rate(paper))
        assert field in str(err.value) and accepted in str(err.value)


# ----------------------------------------------------------------------------------------------
# Plugins and the command line


@pytest.mark.parametrize(("solver", "config"), [(MilpPlacement, MilpConfig), (RelaxedPlacement, RelaxedConfig)])
def test_the_options_are_the_fields_and_the_config_is_derived(solver, config):
    """``XConfig`` is ``X.Config`` (a dataclass of the options), ``from_config`` builds the same
    placement as the keywords, and a mutable default is not shared between placements."""
    from edgefm.interfaces import options

    assert config is solver.Config and dataclasses.is_dataclass(config)
    keywords = {"xi": 2.0, "kappa_mode": "fixed", "kappa": 3, "reserve": [0.1, 0.2, 0.3, 0.4]}
    built = solver.from_config(config(**keywords))
    assert options(built) == options(solver(**keywords)) == {**dataclasses.asdict(config()), **keywords}
    assert built.xi == 2.0 and built.kappa_mode == "fixed" and built.kappa == 3
    a, b = solver(), solver()
    assert a.reserve == b.reserve == DEFAULT_RESERVE and a.reserve is not b.reserve and a.reserve is not DEFAULT_RESERVE
    assert not hasattr(a, "config") and not hasattr(a, "validate")


def test_both_placements_are_registered():
    registry = Registry.default()
    assert registry.resolve("placement", "milp") is MilpPlacement
    assert registry.resolve("placement", "milp_relaxed") is RelaxedPlacement


def test_cli_runs_milp_and_records_the_solver(tmp_path):
    run_dir = tmp_path / "run"
    env = {**os.environ, "EDGEFM_TRACEBACK": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "edgefm", "placement=milp", "debug=default", "placement.write_model=true",
         f"hydra.run.dir={run_dir}"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    datasets = list(run_dir.glob("*.nc"))
    assert len(datasets) == 1
    with xr.open_dataset(datasets[0]) as ds:
        attrs = ds.attrs
    assert attrs["solver_status"] == "optimal" and attrs["solver_gap"] == 0.0
    for key in ("solver_objective", "solver_kappa", "solver_num_solves", "solver_time_s", "placement_kappa_free_objective"):
        assert key in attrs, key
    assert attrs["solver_num_solves"] >= 1 and attrs["placement_kappa_mode"] == "retention"
    assert (run_dir / "placement_milp_instance0.mps").is_file() and (run_dir / "placement_milp_instance0.lp").is_file()
