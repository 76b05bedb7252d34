"""Built-in workload generators: `poisson` and `mmpp` (two-state Markov-modulated Poisson)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp

from edgefm import hookimpl
from edgefm.errors import ConfigError
from edgefm.interfaces import AbstractWorkloadGenerator


@dataclass
class PoissonConfig:
    load: float = 1.0  # multiplier of every arrival rate lambda_{u,n}


class PoissonWorkload(AbstractWorkloadGenerator):
    """Arrivals per slot ~ Poisson(lambda_{u,n} * load * slot_ms), independent over slots."""

    name = "poisson"
    Config = PoissonConfig
    description = "independent Poisson arrivals per user and task type"

    def validate(self):
        if not (self.config.load >= 0 and math.isfinite(self.config.load)):
            raise ConfigError("workload.load", self.config.load, "a finite number >= 0")

    def peak_factor(self) -> float:
        """Largest ratio of the instantaneous to the mean arrival rate (sizes the buffers)."""
        return 1.0

    def sample(self, state, key, rate, load, slot_ms, params):
        return jax.random.poisson(key, rate * load * slot_ms).astype(jnp.int32), state


@dataclass
class MMPPConfig:
    load: float = 1.0  # multiplier of the mean arrival rate
    burst_factor: float = 3.0  # rate multiplier while a user is in its burst state
    burst_fraction: float = 0.1  # stationary fraction of time in the burst state
    mean_burst_ms: float = 20.0  # mean sojourn in the burst state


class MMPPWorkload(AbstractWorkloadGenerator):
    """Per user, a two-state Markov chain (normal, burst) modulates Poisson arrivals.

    The normal-state factor is chosen so that the long-run mean rate is lambda * load:
    f_low = (1 - p f_high) / (1 - p), p = burst_fraction. The chain starts in its stationary law and
    leaves the burst state with probability slot_ms / mean_burst_ms per slot.
    """

    name = "mmpp"
    Config = MMPPConfig
    description = "bursty two-state Markov-modulated Poisson arrivals per user"

    def validate(self):
        c = self.config
        if not (c.load >= 0 and math.isfinite(c.load)):
            raise ConfigError("workload.load", c.load, "a finite number >= 0")
        if not (0 < c.burst_fraction < 1):
            raise ConfigError("workload.burst_fraction", c.burst_fraction, "a number in (0, 1)")
        if not (1 <= c.burst_factor <= 1 / c.burst_fraction):
            raise ConfigError(
                "workload.burst_factor", c.burst_factor,
                f"a number in [1, 1/burst_fraction = {1 / c.burst_fraction:g}] so the normal rate stays >= 0",
            )
        if not (c.mean_burst_ms > 0):
            raise ConfigError("workload.mean_burst_ms", c.mean_burst_ms, "a number > 0 (ms)")

    def peak_factor(self) -> float:
        return float(self.config.burst_factor)

    def params(self):
        c = self.config
        return {
            "burst_factor": float(c.burst_factor),
            "burst_fraction": float(c.burst_fraction),
            "mean_burst_ms": float(c.mean_burst_ms),
        }

    def init(self, key, rate):
        p = self.config.burst_fraction
        return jax.random.bernoulli(key, p, (rate.shape[0],))

    def sample(self, state, key, rate, load, slot_ms, params):
        p, hi = params["burst_fraction"], params["burst_factor"]
        lo = (1.0 - p * hi) / (1.0 - p)
        k_arr, k_switch = jax.random.split(key)
        factor = jnp.where(state, hi, lo)[:, None]
        counts = jax.random.poisson(k_arr, rate * load * slot_ms * factor).astype(jnp.int32)
        leave = jnp.minimum(slot_ms / params["mean_burst_ms"], 1.0)
        enter = jnp.minimum(leave * p / (1.0 - p), 1.0)
        u = jax.random.uniform(k_switch, state.shape)
        new_state = jnp.where(state, u >= leave, u < enter)
        return counts, new_state


@hookimpl
def edgefm_register_workload_generators():
    return [PoissonWorkload, MMPPWorkload]
