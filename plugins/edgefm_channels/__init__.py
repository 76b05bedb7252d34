"""Built-in uplink channel models: `off`, `nakagami`, `rayleigh` (MODEL.md §6)."""

from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from edgefm import hookimpl
from edgefm.random import gamma
from edgefm.interfaces import AbstractChannelModel


class OffChannel(AbstractChannelModel):
    """No uplink delay: the task input is at the gateway when the task arrives."""

    name = "off"
    description = "uplink takes no time"

    def uplink_rate(self, key, users, params):
        return jnp.full(users["nakagami_m"].shape, jnp.inf)


@dataclass
class NakagamiConfig:
    bandwidth: float = 0.125  # MB/ms per unit of spectral efficiency (1 Gbit/s)
    snr0: float = 1.0  # mean SNR scale: rate = B log2(1 + snr0 |h|^2)


class NakagamiChannel(AbstractChannelModel):
    """Power gain |h|^2 ~ Gamma(m, Omega/m) per user per slot; rate = B log2(1 + snr0 |h|^2)."""

    name = "nakagami"
    Config = NakagamiConfig
    description = "Nakagami-m block fading per user per slot"

    def params(self):
        return {"bandwidth": float(self.config.bandwidth), "snr0": float(self.config.snr0)}

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
