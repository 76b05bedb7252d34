"""Random variates for the compiled step, faster on CPU than their `jax.random` counterparts."""

from __future__ import annotations

import jax
import jax.numpy as jnp

GAMMA_TRIES = 6


def gamma(key, shape_param, tries: int = GAMMA_TRIES):
    """Gamma(shape_param, 1) variates by Marsaglia-Tsang with `tries` proposals drawn at once.

    `jax.random.gamma` runs a rejection loop per element; here every element draws `tries` proposals
    in one vectorised pass (float32 random bits, float64 arithmetic) and keeps the first accepted.
    The acceptance probability is >= 0.95 per proposal for shape >= 1 (shapes < 1 use the boost
    Gamma(a) = Gamma(a + 1) U^(1/a)), so all six fail with probability < 2e-8; the last proposal is
    then used, which is the only departure from the exact law. Faster than `jax.random.gamma` on
    the CPU for the engine's per-slot draws.
    """
    a = jnp.asarray(shape_param, jnp.float64)
    boost = a < 1.0
    ab = jnp.where(boost, a + 1.0, a)
    d = ab - 1.0 / 3.0
    c = 1.0 / jnp.sqrt(9.0 * d)
    k_norm, k_unif, k_boost = jax.random.split(key, 3)
    x = jax.random.normal(k_norm, (tries,) + a.shape, jnp.float32).astype(jnp.float64)
    u = jax.random.uniform(k_unif, (tries,) + a.shape, jnp.float32, minval=1e-38).astype(jnp.float64)
    v = (1.0 + c * x) ** 3
    v_safe = jnp.where(v > 0, v, 1.0)
    accept = (v > 0) & (jnp.log(u) < 0.5 * x * x + d - d * v + d * jnp.log(v_safe))
    first = jnp.where(accept.any(0), jnp.argmax(accept, axis=0), tries - 1)
    g = d * jnp.take_along_axis(v_safe, first[None], axis=0)[0]
    ub = jax.random.uniform(k_boost, a.shape, jnp.float32, minval=1e-38).astype(jnp.float64)
    return jnp.where(boost, g * ub ** (1.0 / a), g)
