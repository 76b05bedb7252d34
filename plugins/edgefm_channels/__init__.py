"""Built-in uplink channel models: `off`, `nakagami`, `rayleigh` (MODEL.md §6)."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

from edgefm import hookimpl
from edgefm.errors import ConfigError
from edgefm.interfaces import FADING_MODES, AbstractChannelModel
from edgefm.random import gamma


class OffChannel(AbstractChannelModel):
    """No uplink delay: the task input is at the gateway when the task arrives."""

    name = "off"
    description = "uplink takes no time"

    def uplink_rate(self, key, users, params):
        return jnp.full(users["nakagami_m"].shape, jnp.inf)

    def mean_rate(self, users):
        return np.full(np.shape(users["nakagami_m"]), np.inf)


@dataclass
class NakagamiConfig:
    bandwidth: float = 0.125  # MB/ms per unit of spectral efficiency (1 Gbit/s)
    snr0: float = 1.0  # mean SNR scale: rate = B log2(1 + snr0 |h|^2)
    fading: str = "block"  # block: the arrival slot's rate for the whole upload | per_slot: each slot's rate


class NakagamiChannel(AbstractChannelModel):
    """Power gain |h|^2 ~ Gamma(m, Omega/m) per user per slot; rate = B log2(1 + snr0 |h|^2)."""

    name = "nakagami"
    Config = NakagamiConfig
    description = "Nakagami-m block fading per user per slot"

    def validate(self):
        c = self.config
        if not (isinstance(c.bandwidth, (int, float)) and c.bandwidth > 0 and np.isfinite(c.bandwidth)):
            raise ConfigError("channel.bandwidth", c.bandwidth, "a finite number > 0 (MB/ms per unit of spectral efficiency)")
        if not (isinstance(c.snr0, (int, float)) and c.snr0 > 0 and np.isfinite(c.snr0)):
            raise ConfigError("channel.snr0", c.snr0, "a finite number > 0")
        if c.fading not in FADING_MODES:
            raise ConfigError("channel.fading", c.fading, "one of: " + ", ".join(FADING_MODES))

    def params(self):
        return {"bandwidth": float(self.config.bandwidth), "snr0": float(self.config.snr0)}

    def fading(self):
        return str(self.config.fading)

    def mean_rate(self, users):
        """B log2(1 + snr0 Ω_u): the rate at the mean power gain E|h|^2 = Ω_u."""
        c = self.config
        return float(c.bandwidth) * np.log2(1.0 + float(c.snr0) * np.asarray(users["nakagami_omega"], float))

    def shape(self, users):
        return users["nakagami_m"]

    def uplink_rate(self, key, users, params):
        m = self.shape(users)
        gain = gamma(key, m) * users["nakagami_omega"] / m
        return params["bandwidth"] * jnp.log2(1.0 + params["snr0"] * gain)


class RayleighChannel(NakagamiChannel):
    """Nakagami with m = 1: exponential power gain of mean Omega."""

    name = "rayleigh"
    description = "Rayleigh block fading (Nakagami m = 1)"

    def shape(self, users):
        return jnp.ones_like(users["nakagami_m"])


@hookimpl
def edgefm_register_channel_models():
    return [OffChannel, NakagamiChannel, RayleighChannel]
