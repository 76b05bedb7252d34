"""The backbone's plan (plan_load, target_utilisation), the light reserve per node kind and the
uplink of the mean-value embedding, on hand-sized scenarios (docs/PLACEMENT.md §1, §3)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from omegaconf import OmegaConf

from edgefm.errors import ConfigError, SolverError
from edgefm.reference.placement import core_demand as reference_demand
from edgefm.reference.placement import least_loaded_placement
from edgefm.runner import solve_placements
from edgefm.scenario import Scenario
from edgefm.scenario.hostable import core_demand, hostable, required_instances
from edgefm_baselines.least_loaded import LeastLoadedConfig, LeastLoadedPlacement
from edgefm_channels import NakagamiChannel, OffChannel
from edgefm_milp_scip import scip
from edgefm_milp_scip.milp import MilpConfig, MilpPlacement, program_of
from edgefm_milp_scip.program import embed
from edgefm_milp_scip.relaxed import RelaxedConfig, RelaxedPlacement

SOLVERS = [(MilpPlacement, MilpConfig), (RelaxedPlacement, RelaxedConfig), (LeastLoadedPlacement, LeastLoadedConfig)]


def tiny(capacity=((4, 4, 4, 4), (16, 16, 16, 16), (16, 16, 16, 16)), bandwidth=(2.0, 4.0)) -> Scenario:
    """Chain n0 (device) - n1 (server) - n2 (server), links of ``bandwidth`` MB/ms, no propagation.
    Services: s0 core r = (2, 1, 2, 2), a = 3, f = 2; s1 core r = (1, 1, 1, 1), a = 2, f = 1;
    s2 light. Types: t0 = s0 -> s2 (A = 1 MB, D = 30 ms), t1 = s1 -> s2 (A = 2 MB, D = 40 ms).
    Users u0 at n0, u1 at n1, λ[u, n] = [[0.2, 0.5], [0.6, 0.3]] tasks/ms, Ω = (1, 3)."""
    return Scenario(
        name="tiny",
        node_names=("n0", "n1", "n2"),
        node_is_server=np.array([False, True, True]),
        capacity=np.array(capacity, float),
        link_ends=np.array([[0, 1], [1, 2]]),
        link_bandwidth=np.array(bandwidth, float),
        link_length=np.zeros(2),
        propagation_speed=math.inf,
        service_names=("s0", "s1", "s2"),
        service_is_core=np.array([True, True, False]),
        resource=np.array([[2, 1, 2, 2], [1, 1, 1, 1], [0.5, 0, 0, 0]], float),
        work=np.array([3.0, 2.0, 1.0]),
        output_size=np.array([0.5, 0.5, 0.1]),
        core_rate=np.array([2.0, 1.0, np.nan]),
        light_shape=np.array([np.nan, np.nan, 2.0]),
        light_scale=np.array([np.nan, np.nan, 1.0]),
        cost_deploy=np.array([20.0, 20.0, 4.0]),
        cost_maintain=np.array([4.0, 4.0, 1.0]),
        cost_payload=np.array([0.0, 0.0, 0.5]),
        type_names=("t0", "t1"),
        input_size=np.array([1.0, 2.0]),
        deadline=np.array([30.0, 40.0]),
        stage_service=np.array([[0, 2], [1, 2]]),
        stage_parents=np.array([[[-1], [0]], [[-1], [0]]]),
        stage_child=np.array([[1, -1], [1, -1]]),
        sink_stage=np.array([1, 1]),
        user_gateway=np.array([0, 1]),
        arrival_rate=np.array([[0.2, 0.5], [0.6, 0.3]]),
        nakagami_m=np.array([2.0, 2.0]),
        nakagami_omega=np.array([1.0, 3.0]),
    )


# ----------------------------------------------------------------------------------------------
# req_m = max(1, ceil(Σ λ · plan_load · a_m / f_m / ρ*))

# by hand: Σ_u λ_{u,t0} = 0.2 + 0.6 = 0.8, Σ_u λ_{u,t1} = 0.5 + 0.3 = 0.8;
#   s0: 0.8 · 3 / 2 = 1.2;  s1: 0.8 · 2 / 1 = 1.6;  s2 (light): 0.
# (1, 1):   s0 ceil(1.2) = 2,            s1 ceil(1.6) = 2
# (2, 0.8): s0 ceil(1.2 · 2 / 0.8 = 3) = 3 (in floats 3.0000000000000004: the round-off guard),
#           s1 ceil(1.6 · 2 / 0.8 = 4) = 4
# (1.5, 1): s0 ceil(1.8) = 2,            s1 ceil(2.4) = 3
# (1, 0.5): s0 ceil(2.4) = 3,            s1 ceil(3.2) = 4   (ρ* alone)
PLANS = [((1.0, 1.0), [2, 2, 0]), ((2.0, 0.8), [3, 4, 0]), ((1.5, 1.0), [2, 3, 0]), ((1.0, 0.5), [3, 4, 0])]


def test_the_round_off_guard_is_needed_at_2_and_0_8():
    busy = 0.8 * 3 / 2
    assert busy * 2.0 / 0.8 > 3  # the naive ceiling would give 4
    assert required_instances(busy, plan_load=2.0, target_utilisation=0.8) == 3
    assert required_instances(0.0) == 1 and required_instances(3.5, target_utilisation=0.5) == 7


@pytest.mark.parametrize(("plan", "want"), PLANS)
def test_core_demand_by_hand(plan, want):
    plan_load, rho = plan
    sc = tiny()
    assert core_demand(sc, plan_load=plan_load, target_utilisation=rho).tolist() == want
    assert reference_demand(sc, plan_load=plan_load, target_utilisation=rho) == {0: want[0], 1: want[1]}


def test_the_defaults_are_the_load_1x_demand():
    sc = tiny()
    assert core_demand(sc).tolist() == [2, 2, 0] and reference_demand(sc) == {0: 2, 1: 2}
    busy = np.array([1.2, 1.6, 3.0 + 1e-13, 5.0 - 1e-9])
    np.testing.assert_array_equal(required_instances(busy), np.maximum(1, np.ceil(busy - 1e-12)))


@pytest.mark.parametrize(("plan", "want"), PLANS)
@pytest.mark.parametrize(("solver", "config"), SOLVERS, ids=[s.name for s, _ in SOLVERS])
def test_every_placement_uses_the_same_demand(solver, config, plan, want):
    plan_load, rho = plan
    sc = tiny()
    options = {"kappa_mode": "off", "reserve": 0.0} if solver is not LeastLoadedPlacement else {}
    result = solver.from_config(config(plan_load=plan_load, target_utilisation=rho, **options)).solve(sc, slot_ms=1.0)
    assert result.info["demand"] == want
    assert result.info["plan_load"] == plan_load and result.info["target_utilisation"] == rho
    assert np.all(result.x_core.sum(0) >= want)
    if solver is LeastLoadedPlacement:  # exactly req_m, as the reference places them
        assert result.x_core.sum(0).tolist() == want
        ref = least_loaded_placement(sc, plan_load=plan_load, target_utilisation=rho)
        np.testing.assert_array_equal(result.x_core, ref)
    else:  # the program's demand rows
        assert program_of(config(plan_load=plan_load, target_utilisation=rho), sc, 1.0).demand.tolist() == want[:2]


def test_hostable_follows_the_plan():
    # 8 cpu on two servers: enough for 2 s0 + 2 s1 (6 cpu; n1: s0 + 2 s1, n2: s0), not for 3 s0 + 4 s1 (10)
    sc = tiny(capacity=((0, 0, 0, 0), (4, 16, 16, 16), (4, 16, 16, 16)))
    assert hostable(sc, 0.0)
    assert not hostable(sc, 0.0, plan_load=2.0, target_utilisation=0.8)


# ----------------------------------------------------------------------------------------------
# Errors


BAD = [("target_utilisation", 0.0), ("target_utilisation", 1.5), ("target_utilisation", -0.5),
       ("target_utilisation", math.nan), ("target_utilisation", math.inf),
       ("plan_load", -1.0), ("plan_load", 0.0), ("plan_load", math.nan), ("plan_load", math.inf)]  # fmt: skip


@pytest.mark.parametrize(("field", "value"), BAD, ids=[f"{f}={v}" for f, v in BAD])
@pytest.mark.parametrize(("solver", "config"), SOLVERS, ids=[s.name for s, _ in SOLVERS])
def test_bad_plans_are_one_line_config_errors(solver, config, field, value):
    with pytest.raises(ConfigError) as err:  # options are checked when the placement is made
        solver.from_config(config(**{field: value}))
    message = str(err.value)
    assert err.value.field == f"placement.{field}" and "\n" not in message
    assert ("(0, 1]" if field == "target_utilisation" else "finite number > 0") in message
    with pytest.raises(ConfigError):
        solver(**{field: value})


def test_the_reference_rejects_a_bad_plan():
    with pytest.raises(ConfigError, match=r"placement\.target_utilisation"):
        reference_demand(tiny(), target_utilisation=1.5)


@pytest.mark.parametrize("reserve", [{"server": 0.25}, {"server": 0.25, "device": 0.0, "cloud": 0.1},
                                     {"server": 0.25, "device": 1.0}, {"server": [0.1, 0.2], "device": 0.0}])
@pytest.mark.parametrize(("solver", "config"), SOLVERS[:2], ids=[s.name for s, _ in SOLVERS[:2]])
def test_bad_reserve_mappings_are_config_errors(solver, config, reserve):
    with pytest.raises(ConfigError) as err:
        solver.from_config(config(reserve=reserve))
    message = str(err.value)
    assert err.value.field == "placement.reserve" and "\n" not in message
    assert "{server: ..., device: ...}" in message
    if "device" not in reserve:
        assert message.endswith("(missing device)")
    if "cloud" in reserve:
        assert message.endswith("(unknown key cloud)")


# ----------------------------------------------------------------------------------------------
# The light reserve per node kind


def test_reserve_per_kind_sets_the_capacity_rows_by_hand():
    sc = tiny()
    reserve = {"server": 0.25, "device": [0.0, 0.5, 0.0, 0.25]}
    p = program_of(MilpConfig(reserve=reserve), sc, 1.0)
    # device n0: (4, 4, 4, 4) · (1 - (0, 0.5, 0, 0.25)) = (4, 2, 4, 3); servers: 16 · 0.75 = 12
    np.testing.assert_allclose(p.free, [[4, 2, 4, 3], [12, 12, 12, 12], [12, 12, 12, 12]])
    np.testing.assert_allclose(p.reserve, [[0, 2, 0, 1], [4, 4, 4, 4], [4, 4, 4, 4]])
    # M[v, m]: s0 (2, 1, 2, 2) on n0: min(4/2, 2/1, 4/2, 3/2) = 1; on a server 12/2 = 6; s1: 2 and 12
    np.testing.assert_array_equal(p.bound, [[1, 2], [6, 12], [6, 12]])
    model, _ = scip.build_model(p, None, "global", scip.SolverOptions())
    rhs = {c.name: model.getRhs(c) for c in model.getConss()}
    assert rhs["cap_n0_ram"] == 2.0 and rhs["cap_n0_vram"] == 3.0 and rhs["cap_n0_cpu"] == 4.0
    assert rhs["cap_n1_ram"] == 12.0 and rhs["cap_n2_gpu"] == 12.0
    result = MilpPlacement(reserve=reserve, kappa_mode="off").solve(sc, slot_ms=1.0)
    assert result.info["reserve_server"] == [0.25] * 4 and result.info["reserve_device"] == [0.0, 0.5, 0.0, 0.25]
    assert np.all(result.x_core @ sc.resource <= p.free + 1e-9)


def test_a_scalar_or_list_reserve_means_every_node():
    sc = tiny()
    fractions = [0.1, 0.2, 0.3, 0.4]
    for reserve, same in ((0.25, {"server": 0.25, "device": 0.25}), (fractions, {"server": fractions, "device": fractions})):
        a, b = program_of(MilpConfig(reserve=reserve), sc, 1.0), program_of(MilpConfig(reserve=same), sc, 1.0)
        np.testing.assert_array_equal(a.free, b.free)
        np.testing.assert_array_equal(a.coef, b.coef)
    np.testing.assert_allclose(program_of(MilpConfig(reserve=0.25), sc, 1.0).free[0], [3, 3, 3, 3])


@pytest.mark.parametrize(("solver", "config"), SOLVERS[:2], ids=[s.name for s, _ in SOLVERS[:2]])
def test_a_device_reserve_can_make_the_program_infeasible(solver, config):
    # req = (2, 2): 2 s0 + 2 s1 need 6 cpu. Servers (2, 2, 2, 2) hold one s0 each (or two s1), so
    # the s1 instances must go to the device n0 (4, 4, 4, 4); a device reserve of 0.6 leaves it 1.6
    # cpu: 2 + 2 + 1.6 = 5.6 < 6.
    sc = tiny(capacity=((4, 4, 4, 4), (2, 2, 2, 2), (2, 2, 2, 2)))
    ok = solver.from_config(config(reserve={"server": 0.0, "device": 0.0}, kappa_mode="off")).solve(sc, slot_ms=1.0)
    assert ok.x_core[0].sum() >= 1 and np.all(ok.x_core.sum(0)[:2] >= 2)  # the device is needed
    with pytest.raises(SolverError) as err:
        solver.from_config(config(reserve={"server": 0.0, "device": 0.6}, kappa_mode="off")).solve(sc, slot_ms=1.0)
    message = str(err.value)
    assert "\n" not in message and "placement.reserve" in message and "cpu" in message
    assert "'device': [0.6, 0.6, 0.6, 0.6]" in message
    # the same 0.6 on the servers only: nothing fits a server any more either
    with pytest.raises(SolverError):
        solver.from_config(config(reserve={"server": 0.6, "device": 0.0}, kappa_mode="off")).solve(sc, slot_ms=1.0)


# ----------------------------------------------------------------------------------------------
# The uplink of the mean-value embedding


def implied_ready(sc, uplink_rate, m: int, slot_ms: float = 1.0) -> np.ndarray:
    """[V] d_pr of the root stage of service m, read back from z̃ and Q: with one type using m, a
    root whose sink is a light service, Q/z̃ = Σ_u (D − d_pr − d_cu) / max(d_su, Δt) (above q_min)."""
    free = sc.capacity
    load, qos = embed(sc, slot_ms=slot_ms, free=free, rho=0.01, q_min=-1e9, uplink_rate=uplink_rate)
    n = 0 if m == 0 else 1
    d_cu = sc.work[m] / sc.core_rate[m]
    d_su = max(sc.work[2] / (sc.light_shape[2] * sc.light_scale[2]), slot_ms)
    users = np.flatnonzero(sc.arrival_rate[:, n] > 0)
    # Σ_u (D − d_pr,u − d_cu) / d_su = Q/z̃  ⇒  mean_u d_pr,u = D − d_cu − d_su · Q / (z̃ · |U|)
    return sc.deadline[n] - d_cu - d_su * qos[:, m] / (load[:, m] * len(users)), load[:, m]


def test_an_infinite_uplink_rate_leaves_only_the_forwarding():
    sc = tiny()
    # forwarding of A_t0 = 1 MB from g(u0) = n0: (0, 1/2, 1/2 + 1/4); from g(u1) = n1: (1/2, 0, 1/4)
    fwd = np.array([[0.0, 0.5, 0.75], [0.5, 0.0, 0.25]])
    off = OffChannel().mean_rate({"nakagami_m": sc.nakagami_m, "nakagami_omega": sc.nakagami_omega})
    for rate in (np.full(2, np.inf), None, off):
        ready, _ = implied_ready(sc, rate, 0)
        np.testing.assert_allclose(ready, fwd.mean(0), rtol=1e-12, atol=1e-12)


def test_a_finite_uplink_rate_adds_a_over_the_rate():
    sc = tiny()
    rate = 0.125 * np.log2(1.0 + sc.nakagami_omega)  # (0.125, 0.25) MB/ms
    fwd = np.array([[0.0, 0.5, 0.75], [0.5, 0.0, 0.25]])
    ready, load = implied_ready(sc, rate, 0)
    up = 1.0 / rate  # A_t0 = 1 MB: 8 ms and 4 ms
    np.testing.assert_allclose(ready, (fwd + up[:, None]).mean(0), rtol=1e-12)
    # the uplink shifts every node's d_pr of a user alike: the load estimate z̃ does not change
    np.testing.assert_allclose(load, implied_ready(sc, None, 0)[1], rtol=1e-12)
    # t1 (A = 2 MB) through s1: 2 / rate
    fwd1 = 2.0 * np.array([[0.0, 0.5, 0.75], [0.5, 0.0, 0.25]])
    np.testing.assert_allclose(implied_ready(sc, rate, 1)[0], (fwd1 + 2.0 / rate[:, None]).mean(0), rtol=1e-12)


def test_the_runner_passes_the_channels_mean_rate():
    sc = tiny()
    placement = MilpPlacement(kappa_mode="off", reserve=0.0)
    nakagami = 0.125 * np.log2(1.0 + sc.nakagami_omega)
    (x_n,), (info_n,) = solve_placements([sc], placement, 1.0, NakagamiChannel())
    (x_o,), (info_o,) = solve_placements([sc], placement, 1.0, OffChannel())
    assert info_n["solver_objective"] == placement.solve(sc, slot_ms=1.0, uplink_rate=nakagami).info["solver_objective"]
    assert info_o["solver_objective"] == placement.solve(sc, slot_ms=1.0).info["solver_objective"]
    # the uplink makes the deadlines tighter: the QoS score, and so the objective, is worse
    assert info_n["solver_objective"] > info_o["solver_objective"]


def test_a_bad_uplink_rate_is_a_config_error():
    for rate in (np.ones(3), np.array([0.1, 0.0]), np.array([0.1, np.nan])):
        with pytest.raises(ConfigError, match="uplink_rate"):
            MilpPlacement(kappa_mode="off").solve(tiny(), slot_ms=1.0, uplink_rate=rate)


# ----------------------------------------------------------------------------------------------
# The YAML files against the option dataclasses


@pytest.mark.parametrize(("name", "config"), [("milp", MilpConfig), ("milp_relaxed", RelaxedConfig),
                                              ("least_loaded", LeastLoadedConfig)])
def test_the_yaml_options_are_the_dataclass_fields(name, config):
    from conftest import resolved_option

    values = resolved_option("placement", name)
    merged = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(config), values))
    assert merged.plan_load == 1.0 and merged.target_utilisation == 1.0
    assert not hasattr(merged, "uplink_bandwidth") and not hasattr(merged, "uplink_snr0")
    if name != "least_loaded":
        override = OmegaConf.create({"reserve": {"server": 0.25, "device": 0.0}})
        merged = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(config), values, override))
        assert merged.reserve == {"server": 0.25, "device": 0.0}
        np.testing.assert_allclose(program_of(merged, tiny(), 1.0).free[:, 0], [4, 12, 12])
