"""Built-in uplink channel models: `off`, `nakagami`, `rayleigh` (MODEL.md §6)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from edgefm import hookimpl
from edgefm.interfaces import FADING_MODES, AbstractChannelModel, check_choice, check_number, static, traced
from edgefm.random import gamma


class OffChannel(AbstractChannelModel):
    """No uplink delay: the task input is at the gateway when the task arrives."""

    name = "off"
    description = "uplink takes no time"

    def uplink_rate(self, key, users):
        return jnp.full(users["nakagami_m"].shape, jnp.inf)

    def mean_rate(self, users):
        return np.full(np.shape(users["nakagami_m"]), np.inf)


class NakagamiChannel(AbstractChannelModel):
    """Power gain |h|^2 ~ Gamma(m, Omega/m) per user per slot; rate = B log2(1 + snr0 |h|^2)."""

    name = "nakagami"
    description = "Nakagami-m block fading per user per slot"

    bandwidth: float = traced(0.125)  # MB/ms per unit of spectral efficiency (1 Gbit/s)
    snr0: float = traced(1.0)  # mean SNR scale: rate = B log2(1 + snr0 |h|^2)
    fading: str = static("block")  # block: the arrival slot's rate for the whole upload | per_slot: each slot's rate

    def __check_init__(self):
        check_number(self.bandwidth, "channel.bandwidth", "a finite number > 0 (MB/ms per unit of spectral efficiency)",
                     lambda x: x > 0)
        check_number(self.snr0, "channel.snr0", "a finite number > 0", lambda x: x > 0)
        check_choice(self.fading, "channel.fading", FADING_MODES)

    def shape(self, users):
        return users["nakagami_m"]

    def uplink_rate(self, key, users):
        m = self.shape(users)
        gain = gamma(key, m) * users["nakagami_omega"] / m
        return self.bandwidth * jnp.log2(1.0 + self.snr0 * gain)

    def fading_mode(self):
        return self.fading

    def mean_rate(self, users):
        """B log2(1 + snr0 Ω_u): the rate at the mean power gain E|h|^2 = Ω_u."""
        omega = np.asarray(users["nakagami_omega"], float)
        return float(self.bandwidth) * np.log2(1.0 + float(self.snr0) * omega)


class RayleighChannel(NakagamiChannel):
    """Nakagami with m = 1: exponential power gain of mean Omega."""

    name = "rayleigh"
    description = "Rayleigh block fading (Nakagami m = 1)"

    def shape(self, users):
        return jnp.ones_like(users["nakagami_m"])


@hookimpl
def edgefm_register_channel_models():
    return [OffChannel, NakagamiChannel, RayleighChannel]
