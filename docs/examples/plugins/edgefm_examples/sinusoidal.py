"""A workload plugin: `sinusoidal`, Poisson arrivals whose rate swings around the configured mean."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from edgefm import hookimpl
from edgefm.interfaces import AbstractWorkloadGenerator, check_number, traced


class SinusoidalWorkload(AbstractWorkloadGenerator):
    """Arrivals of (user u, type n) in slot t ~ Poisson(lambda_{u,n} load dt (1 + a sin(phase_u +
    2 pi t dt / period))), with a random phase per user: the mean rate stays lambda_{u,n} load."""

    name = "sinusoidal"  # workload=sinusoidal
    description = "Poisson arrivals with a sinusoidal rate around the mean (example plugin)"

    load: float = traced(1.0)  # multiplier of every rate: `workload.load=2` on the command line
    amplitude: float = traced(0.5)  # a in [0, 1]: the rate swings between (1 - a) and (1 + a) x the mean
    period_ms: float = traced(100.0)  # ms

    def __check_init__(self):
        check_number(self.load, "workload.load", "a finite number >= 0", lambda x: x >= 0)
        check_number(self.amplitude, "workload.amplitude", "a number in [0, 1]", lambda x: 0 <= x <= 1)
        check_number(self.period_ms, "workload.period_ms", "a number > 0 (ms)", lambda x: x > 0)

    def peak_factor(self) -> float:
        return 1.0 + float(self.amplitude)  # host side: sizes the engine's arrival lists

    def init(self, key, rate):
        phase = jax.random.uniform(key, (rate.shape[0],), maxval=2 * jnp.pi)  # [U]
        return phase, jnp.zeros((), jnp.int32)  # (phase per user, slot index)

    def sample(self, state, key, rate, slot_ms):
        phase, t = state
        swing = 1.0 + self.amplitude * jnp.sin(phase + 2 * jnp.pi * t * slot_ms / self.period_ms)  # [U]
        counts = jax.random.poisson(key, rate * self.load * slot_ms * swing[:, None])
        return counts.astype(jnp.int32), (phase, t + 1)


@hookimpl
def edgefm_register_workload_generators():
    return [SinusoidalWorkload]
