"""Random streams (common random numbers) and the exogenous draws of one slot.

One typed key per realisation is split by `fold_in` into streams, each folded again with the slot
index, so that every strategy sees the same arrivals, channel draws and light service rates for a
seed, whatever it does with its own (controller) stream.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from edgefm.random import gamma

STREAM_ARRIVALS = 0
STREAM_CHANNEL = 1
STREAM_SERVICE = 2
STREAM_CONTROLLER = 3
STREAM_FAILURES = 4  # reserved for failure models


def realisation_keys(seed: int, instances: int, realisations: int):
    """[I,R] typed keys: instance i, realisation r. Realisation r of instance i does not depend on
    how many instances or realisations a run has."""
    root = jax.random.key(seed)
    return jax.vmap(
        lambda i: jax.vmap(lambda r: jax.random.fold_in(jax.random.fold_in(root, i), r))(
            jnp.arange(realisations)
        )
    )(jnp.arange(instances))


def stream(key, stream_id: int, t):
    return jax.random.fold_in(jax.random.fold_in(key, stream_id), t)


def init_key(key, stream_id: int):
    """Key for the initial state of a stream (distinct from every slot's key)."""
    return jax.random.fold_in(jax.random.fold_in(key, stream_id), 0x7FFFFFFF)


def _users(arrays):
    return {"nakagami_m": arrays.nakagami_m, "nakagami_omega": arrays.nakagami_omega}


def uplink_rates(key, arrays, sizes, channel):
    """[T,U] MB/ms: the uplink rate of every slot of the horizon, the same draws as `draw_slot`'s
    (for uploads that proceed at each slot's rate, the channel's `per_slot` fading)."""
    return jax.vmap(lambda t: channel.uplink_rate(stream(key, STREAM_CHANNEL, t), _users(arrays)))(jnp.arange(sizes.T))


def draw_slot(key, t, workload_state, arrays, params, sizes, channel, workload):
    """Exogenous samples of slot t: arrivals [U,N], uplink rate [U] MB/ms, light rates [V,Ml,X] MB/ms."""
    counts, workload_state = workload.sample(
        workload_state, stream(key, STREAM_ARRIVALS, t), arrays.arrival_rate, params.slot_ms)
    counts = jnp.where(t < sizes.T_arr, counts, 0).astype(jnp.int32)
    uplink = channel.uplink_rate(stream(key, STREAM_CHANNEL, t), _users(arrays))
    shape = jnp.broadcast_to(arrays.light_shape[None, :, None], (sizes.V, sizes.Ml, sizes.X))
    rates = gamma(stream(key, STREAM_SERVICE, t), shape) * arrays.light_scale[None, :, None]
    return counts, uplink, rates, workload_state
