"""A channel plugin: `shadowed`, an uplink rate under log-normal shadowing."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from edgefm import hookimpl
from edgefm.interfaces import FADING_MODES, AbstractChannelModel, check_choice, check_number, static, traced


class ShadowedChannel(AbstractChannelModel):
    """Rate = B log2(1 + snr0 Omega_u g) MB/ms, g log-normal of mean 1 and spread sigma_db (dB),
    drawn per user per slot."""

    name = "shadowed"  # channel=shadowed
    description = "log-normal shadowing per user per slot (example plugin)"

    bandwidth: float = traced(0.125)  # B, MB/ms per unit of spectral efficiency
    snr0: float = traced(1.0)  # mean SNR scale
    sigma_db: float = traced(4.0)  # spread of the shadowing, dB
    fading: str = static("block")  # static: which upload model the engine compiles (block | per_slot)

    def __check_init__(self):
        check_number(self.bandwidth, "channel.bandwidth", "a number > 0 (MB/ms)", lambda x: x > 0)
        check_number(self.snr0, "channel.snr0", "a number > 0", lambda x: x > 0)
        check_number(self.sigma_db, "channel.sigma_db", "a number >= 0 (dB)", lambda x: x >= 0)
        check_choice(self.fading, "channel.fading", FADING_MODES)

    def fading_mode(self) -> str:
        return self.fading

    def uplink_rate(self, key, users):  # traced: one slot, [U] MB/ms
        omega = users["nakagami_omega"]
        s = self.sigma_db * jnp.log(10.0) / 10.0  # the spread of ln g
        gain = jnp.exp(s * jax.random.normal(key, omega.shape) - s**2 / 2)  # E g = 1
        return self.bandwidth * jnp.log2(1.0 + self.snr0 * omega * gain)

    def mean_rate(self, users):  # host, NumPy: the rate at the mean gain (placements' delay estimates)
        omega = np.asarray(users["nakagami_omega"], float)
        return float(self.bandwidth) * np.log2(1.0 + float(self.snr0) * omega)


@hookimpl
def edgefm_register_channel_models():
    return [ShadowedChannel]
