"""Built-in workload generators: `poisson` and `mmpp` (two-state Markov-modulated Poisson)."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from edgefm import hookimpl
from edgefm.interfaces import AbstractWorkloadGenerator, check_number, traced


class PoissonWorkload(AbstractWorkloadGenerator):
    """Arrivals per slot ~ Poisson(lambda_{u,n} * load * slot_ms), independent over slots."""

    name = "poisson"
    description = "independent Poisson arrivals per user and task type"

    load: float = traced(1.0)  # multiplier of every arrival rate lambda_{u,n}

    def __check_init__(self):
        check_number(self.load, "workload.load", "a finite number >= 0", lambda x: x >= 0)

    def sample(self, state, key, rate, slot_ms):
        return jax.random.poisson(key, rate * self.load * slot_ms).astype(jnp.int32), state


class MMPPWorkload(AbstractWorkloadGenerator):
    """Per user, a two-state Markov chain (normal, burst) modulates Poisson arrivals.

    The normal-state factor is chosen so that the long-run mean rate is lambda * load:
    f_low = (1 - p f_high) / (1 - p), p = burst_fraction. The chain starts in its stationary law and
    leaves the burst state with probability slot_ms / mean_burst_ms per slot.
    """

    name = "mmpp"
    description = "bursty two-state Markov-modulated Poisson arrivals per user"

    load: float = traced(1.0)  # multiplier of the mean arrival rate
    burst_factor: float = traced(3.0)  # rate multiplier while a user is in its burst state
    burst_fraction: float = traced(0.1)  # stationary fraction of time in the burst state
    mean_burst_ms: float = traced(20.0)  # mean sojourn in the burst state

    def __check_init__(self):
        check_number(self.load, "workload.load", "a finite number >= 0", lambda x: x >= 0)
        check_number(self.burst_fraction, "workload.burst_fraction", "a number in (0, 1)", lambda x: 0 < x < 1)
        check_number(self.mean_burst_ms, "workload.mean_burst_ms", "a number > 0 (ms)", lambda x: x > 0)
        if not isinstance(self.burst_fraction, jax.core.Tracer):
            p = float(self.burst_fraction)
            check_number(self.burst_factor, "workload.burst_factor",
                         f"a number in [1, 1/burst_fraction = {1 / p:g}] so the normal rate stays >= 0",
                         lambda x: 1 <= x <= 1 / p)

    def peak_factor(self) -> float:
        return float(self.burst_factor)

    def init(self, key, rate):
        return jax.random.bernoulli(key, self.burst_fraction, (rate.shape[0],))

    def sample(self, state, key, rate, slot_ms):
        p, hi = self.burst_fraction, self.burst_factor
        lo = jnp.maximum((1.0 - p * hi) / (1.0 - p), 0.0)  # 0 at hi = 1/p (a fused multiply-add may leave -6e-17)
        k_arr, k_switch = jax.random.split(key)
        factor = jnp.where(state, hi, lo)[:, None]
        counts = jax.random.poisson(k_arr, rate * self.load * slot_ms * factor).astype(jnp.int32)
        leave = jnp.minimum(slot_ms / self.mean_burst_ms, 1.0)
        enter = jnp.minimum(leave * p / (1.0 - p), 1.0)
        u = jax.random.uniform(k_switch, state.shape)
        new_state = jnp.where(state, u >= leave, u < enter)
        return counts, new_state


@hookimpl
def edgefm_register_workload_generators():
    return [PoissonWorkload, MMPPWorkload]
