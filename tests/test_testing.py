"""The conformance kit (`edgefm.testing`): the built-in components pass it, and each check catches
what it promises to catch, with a one-line message naming what failed."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from edgefm import testing
from edgefm.config.schema import default_config_dir
from edgefm.interfaces import AbstractChannelModel, AbstractController, AbstractWorkloadGenerator, PlacementResult, traced
from edgefm.testing import check, check_channel, check_failure, check_placement, check_workload
from edgefm.types import Action
from edgefm_baselines import LeastLoadedPlacement
from edgefm_channels import NakagamiChannel, OffChannel, RayleighChannel
from edgefm_failures import LinkDown, NodeDown, NoFailures, RandomFailures
from edgefm_workloads import MMPPWorkload, PoissonWorkload


def one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message, message
    return message


# ----------------------------------------------------------------------------------------------
# the scenario


def test_the_kit_reads_the_small_scenario_of_the_conf_that_comes_with_edgefm(monkeypatch, tmp_path):
    monkeypatch.setenv("EDGEFM_CONFIG_DIR", str(tmp_path))  # a user's own conf/ does not move it
    assert testing.small_scenario_path() == default_config_dir(environment=False) / "scenario" / "small.yaml"
    assert testing.small_scenario_path().is_file()
    sc = testing.small_scenarios(0)[0]
    assert list(sc.node_names) == ["ED1", "ED2", "ES1"] and sc.arrival_rate.shape == (2, 2)


def test_check_dispatches_on_the_kind():
    check(OffChannel())
    with pytest.raises(TypeError, match="kind"):
        check(object())


# ----------------------------------------------------------------------------------------------
# placements


def test_least_loaded_passes_the_placement_check():
    check_placement(LeastLoadedPlacement())


def test_placement_check_rejects_an_overfull_node():
    class Greedy(LeastLoadedPlacement):
        def solve(self, scenario, *, slot_ms):
            x = np.zeros((scenario.num_nodes, scenario.num_services), np.int64)
            x[0, scenario.core_services] = 1000
            return PlacementResult(x_core=x)

    with pytest.raises(AssertionError, match="exceeds a node's capacity: node 0") as exc:
        check_placement(Greedy())
    assert one_line(exc).startswith("placement 'least_loaded': ")


def test_placement_check_rejects_fractional_counts_and_light_columns():
    class Half(LeastLoadedPlacement):
        def solve(self, scenario, *, slot_ms, uplink_rate=None):
            assert uplink_rate is not None and uplink_rate.shape == (scenario.num_users,)  # passed as the runner does
            return PlacementResult(x_core=np.full((scenario.num_nodes, scenario.num_services), 0.5))

    with pytest.raises(AssertionError, match="not whole numbers"):
        check_placement(Half())

    class Light(LeastLoadedPlacement):
        def solve(self, scenario, *, slot_ms):
            x = np.zeros((scenario.num_nodes, scenario.num_services), np.int64)
            x[2, scenario.light_services[0]] = 1
            return PlacementResult(x_core=x)

    with pytest.raises(AssertionError, match="light-service columns"):
        check_placement(Light())


# ----------------------------------------------------------------------------------------------
# channels


@pytest.mark.parametrize("channel", [NakagamiChannel(), NakagamiChannel(fading="per_slot", snr0=4.0),
                                     RayleighChannel(), OffChannel()], ids=lambda c: f"{c.name}-{c.fading_mode()}")
def test_the_built_in_channels_pass(channel):
    check_channel(channel)


def test_channel_check_rejects_an_unknown_fading_mode():
    class Fast(NakagamiChannel):
        def fading_mode(self):
            return "fast"

    with pytest.raises(AssertionError, match=r"fading_mode\(\) = 'fast', expected one of block, per_slot") as exc:
        check_channel(Fast())
    assert one_line(exc).startswith("channel 'nakagami': ")


def test_channel_check_rejects_a_mean_rate_below_the_mean_of_the_draws():
    class Pessimist(NakagamiChannel):
        def mean_rate(self, users):
            return 0.8 * super().mean_rate(users)  # 0.8 of the rate at the mean gain: below E[rate] here

    with pytest.raises(AssertionError, match=r"user \d: mean_rate .* is below the mean of 4096 draws"):
        check_channel(Pessimist())


def test_channel_check_accepts_the_default_mean_rate_a_mean_of_draws():
    class Default(AbstractChannelModel):  # no mean_rate of its own: the default, 256 draws averaged
        name = "default_mean"
        scale: float = traced(0.1)

        def uplink_rate(self, key, users):
            return self.scale * (1.0 + jax.random.exponential(key, users["nakagami_m"].shape))

    check_channel(Default())


def test_channel_check_rejects_wrong_shapes_and_non_positive_rates():
    class OneRate(NakagamiChannel):
        def uplink_rate(self, key, users):
            return super().uplink_rate(key, users)[:1]

    with pytest.raises(AssertionError, match=r"uplink_rate returned shape \(1,\) for 5 users, expected \(5,\)"):
        check_channel(OneRate())

    class Dead(NakagamiChannel):
        def uplink_rate(self, key, users):
            return super().uplink_rate(key, users).at[0].set(0.0)

    with pytest.raises(AssertionError, match="drew 0.0 for user 0: rates must be > 0"):
        check_channel(Dead())


def test_channel_check_rejects_an_inf_mean_rate_the_draws_do_not_have():
    class Half(OffChannel):
        def mean_rate(self, users):
            return np.where(np.arange(np.shape(users["nakagami_m"])[0]) == 0, 1.0, np.inf)

    with pytest.raises(AssertionError, match=r"mean_rate is inf for users \[1, 2, 3, 4\], but the draws are inf for "
                                             r"users \[0, 1, 2, 3, 4\]"):
        check_channel(Half())


# ----------------------------------------------------------------------------------------------
# workloads


@pytest.mark.parametrize("workload", [PoissonWorkload(), MMPPWorkload(),
                                      MMPPWorkload(burst_factor=4.0, burst_fraction=0.2, mean_burst_ms=100.0)],
                         ids=["poisson", "mmpp", "mmpp-bursty"])
def test_the_built_in_workloads_pass(workload):
    check_workload(workload)


class Scaled(AbstractWorkloadGenerator):
    """Poisson arrivals at ``factor`` x the configured mean, for the checks to catch."""

    name = "scaled"
    load: float = traced(1.0)
    factor: float = traced(1.0)

    def __check_init__(self):
        from edgefm.interfaces import check_number

        check_number(self.load, "workload.load", "a finite number >= 0", lambda x: x >= 0)

    def sample(self, state, key, rate, slot_ms):
        return jax.random.poisson(key, rate * self.load * slot_ms * self.factor).astype(jnp.int32), state


def test_workload_check_rejects_ten_percent_more_arrivals_than_configured():
    with pytest.raises(AssertionError, match=r"mean arrivals of \(user \d, type \d\) at load [\d.]+, slot [\d.]+ ms: "
                                             r"[\d.]+ per slot over 128 x 1000 slots, expected rate x load x slot") as exc:
        check_workload(Scaled(factor=1.1))
    assert one_line(exc).startswith("workload 'scaled': ")


def test_workload_check_rejects_a_generator_that_ignores_the_load():
    class Fixed(Scaled):
        def sample(self, state, key, rate, slot_ms):
            return jax.random.poisson(key, rate * slot_ms).astype(jnp.int32), state

    with pytest.raises(AssertionError, match="at load 0 it drew [0-9]+ arrivals, expected none"):
        check_workload(Fixed())


def test_workload_check_rejects_a_generator_that_ignores_the_slot_length():
    class PerSlot(Scaled):
        def sample(self, state, key, rate, slot_ms):
            return jax.random.poisson(key, rate * self.load).astype(jnp.int32), state

    with pytest.raises(AssertionError, match=r"mean arrivals .* slot 0.5 ms"):
        check_workload(PerSlot())


def test_workload_check_requires_a_load_option_that_rejects_negative_values():
    class NoLoad(AbstractWorkloadGenerator):
        name = "no_load"
        scale: float = traced(1.0)

        def sample(self, state, key, rate, slot_ms):
            return jax.random.poisson(key, rate * slot_ms * self.scale).astype(jnp.int32), state

    with pytest.raises(AssertionError, match=r"its Config has no field `load` \(fields: scale\): the CLI rejects "
                                             r"workload.load"):
        check_workload(NoLoad())

    class Unchecked(AbstractWorkloadGenerator):  # (equinox runs every __check_init__ of the bases)
        name = "unchecked"
        load: float = traced(1.0)

        def sample(self, state, key, rate, slot_ms):
            return jax.random.poisson(key, rate * self.load * slot_ms).astype(jnp.int32), state

    with pytest.raises(AssertionError, match="accepted load = -1"):
        check_workload(Unchecked())


def test_workload_check_rejects_a_peak_factor_below_the_bursts():
    class Understated(MMPPWorkload):
        def peak_factor(self):
            return 1.0  # the bursts reach burst_factor x the mean

    with pytest.raises(AssertionError, match=r"variance of the arrivals per slot .* the rate varies more than "
                                             r"peak_factor\(\) = 1 allows|arrivals of .* in \d+ slots .* raise peak_factor"):
        check_workload(Understated(burst_factor=4.0, burst_fraction=0.2, mean_burst_ms=100.0))

    class BadPeak(PoissonWorkload):
        def peak_factor(self):
            return 0.5

    with pytest.raises(AssertionError, match=r"peak_factor\(\) = 0.5, expected a finite number >= 1"):
        check_workload(BadPeak())


def test_workload_check_rejects_negative_or_float_counts():
    class Negative(Scaled):
        def sample(self, state, key, rate, slot_ms):
            counts, state = super().sample(state, key, rate, slot_ms)
            return counts - 1, state

    with pytest.raises(AssertionError, match="negative count"):
        check_workload(Negative())

    class Floats(Scaled):
        def sample(self, state, key, rate, slot_ms):
            return rate * self.load * slot_ms, state

    with pytest.raises(AssertionError, match="dtype float64, expected integers"):
        check_workload(Floats())


# ----------------------------------------------------------------------------------------------
# failure models


@pytest.mark.parametrize("failure", [NoFailures(), NodeDown(nodes=["ES1"], start_ms=10.0, duration_ms=50.0),
                                     LinkDown(links=[["ED1", "ES1"]]), RandomFailures(mtbf_ms=50.0, mttr_ms=10.0),
                                     RandomFailures(nodes=["ED2"])], ids=lambda f: f.name)
def test_the_built_in_failure_models_pass(failure):
    check_failure(failure)


def test_failure_check_rejects_random_failures_outside_random_nodes():
    class Everywhere(RandomFailures):
        def schedule(self, scenario, *, total_slots, slot_ms):
            s = super().schedule(scenario, total_slots=total_slots, slot_ms=slot_ms)
            return dataclasses.replace(s, random_nodes=np.zeros_like(s.random_nodes))

        def sample(self, state, key, t, random_nodes, slot_ms):
            return super().sample(state, key, t, jnp.ones_like(random_nodes), slot_ms)

    with pytest.raises(AssertionError, match=r"sample took down node \d \(E[SD]\d\) in slot \d+, which "
                                             r"schedule\(\).random_nodes does not allow") as exc:
        check_failure(Everywhere(mtbf_ms=20.0))
    assert one_line(exc).startswith("failure 'random': ")


def test_failure_check_rejects_an_inactive_model_that_fails_something():
    class Quiet(NodeDown):
        def active(self):
            return False

    with pytest.raises(AssertionError, match=r"active\(\) is False but schedule\(\).node_up is down at slot 0"):
        check_failure(Quiet(nodes=["ED1"]))


def test_failure_check_rejects_bad_schedules_and_states():
    class IntSchedule(NoFailures):
        def schedule(self, scenario, *, total_slots, slot_ms):
            s = super().schedule(scenario, total_slots=total_slots, slot_ms=slot_ms)
            return dataclasses.replace(s, node_up=s.node_up.astype(int))

    with pytest.raises(AssertionError, match=r"schedule\(\).node_up is int64\[300, 3\], expected bool\[300, 3\]"):
        check_failure(IntSchedule())

    class Drifting(RandomFailures):
        def sample(self, state, key, t, random_nodes, slot_ms):
            up, down = super().sample(state, key, t, random_nodes, slot_ms)
            return up, down.astype(jnp.int32)  # the state changes dtype from slot to slot

    with pytest.raises(AssertionError, match="init/sample does not run as the engine runs it: TypeError"):
        check_failure(Drifting())


def test_workload_check_reports_an_option_read_inside_the_step_that_the_engine_does_not_pass():
    from edgefm.interfaces import host

    class HostScale(Scaled):
        scale: float = host(1.0)  # host: None in the copy the engine compiles

        def sample(self, state, key, rate, slot_ms):
            return jax.random.poisson(key, rate * self.load * slot_ms * self.scale).astype(jnp.int32), state

    with pytest.raises(AssertionError, match="workload 'scaled': init/sample does not run as the engine runs it: "
                                             "TypeError") as exc:
        check_workload(HostScale())
    one_line(exc)


# ----------------------------------------------------------------------------------------------
# controllers (a run of the engine each)


def test_lbrr_passes_the_controller_check():
    from edgefm.testing import check_controller
    from edgefm_baselines import LBRRController

    check_controller(LBRRController())


class KeepOne(AbstractController):
    """The old README's example: one instance of every light service in slot 0 of node ``node``, every
    waiting stage sent to it, with no look at the node's capacity or the instance's room."""

    name = "keep_one"
    node: int = traced(0, dtype=int)  # traced: the runs below share one program
    y: int = traced(20, dtype=int)  # the parallelism of every instance

    def act(self, state, obs, ctx, params, key):
        alive = jnp.zeros((ctx.V, ctx.Ml, ctx.X), bool).at[self.node, :, 0].set(True)
        assign = jnp.where(obs.valid, (self.node * ctx.Ml + obs.light) * ctx.X, -1)
        return Action(alive=alive, assign=assign, parallelism=jnp.full((ctx.V, ctx.Ml), self.y)), state


def test_controller_check_rejects_a_controller_that_ignores_capacity_or_room():
    from edgefm.testing import check_controller

    with pytest.raises(AssertionError, match=r"controller 'keep_one': Eq. 8 violated \(a node over its capacity\) "
                                             r"in \[\[300, 300,") as exc:
        check_controller(KeepOne(node=0))  # ED1, an edge device: too small for every light service at once
    one_line(exc)
    with pytest.raises(AssertionError, match=r"controller 'keep_one': the engine refused \[\[\d+, \d+, .*\]\] decisions "
                                             r"\[instance, realisation\]: .* past its room y - occupancy"):
        check_controller(KeepOne(node=2, y=1))  # ES1 holds the instances; one job each holds not every stage
