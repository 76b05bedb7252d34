"""The unrolled Threefry lowering on the CPU (edgefm/_threefry.py) computes the same hash as JAX's own."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.random import threefry_2x32

from edgefm import _threefry

M32 = 0xFFFFFFFF
ROTATIONS = ((13, 15, 26, 6), (17, 29, 16, 24))


def threefry_numpy(key, x0, x1):
    """Threefry-2x32 with 20 rounds (Salmon et al. 2011), in NumPy uint64 arithmetic mod 2^32."""
    k0, k1 = (np.uint64(k) for k in key)
    ks = (k0, k1, k0 ^ k1 ^ np.uint64(0x1BD11BDA))
    x = [(np.asarray(x0, np.uint64) + ks[0]) & M32, (np.asarray(x1, np.uint64) + ks[1]) & M32]
    for i in range(5):
        for r in ROTATIONS[i % 2]:
            x[0] = (x[0] + x[1]) & M32
            x[1] = ((x[1] << np.uint64(r)) | (x[1] >> np.uint64(32 - r))) & M32
            x[1] = x[1] ^ x[0]
        x[0] = (x[0] + ks[(i + 1) % 3]) & M32
        x[1] = (x[1] + ks[(i + 2) % 3] + np.uint64(i + 1)) & M32
    return x[0].astype(np.uint32), x[1].astype(np.uint32)


def test_known_answer_vectors_of_the_threefry_spec():
    # Random123 known-answer tests for threefry2x32_20 (also in JAX's own tests)
    cases = [
        ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
        ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
        ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
    ]
    hashed = jax.jit(threefry_2x32)
    for key, count, expected in cases:
        got = np.asarray(hashed(np.asarray(key, np.uint32), np.asarray(count, np.uint32)))
        assert [int(v) for v in got] == list(expected)
        assert [int(v[0]) if v.ndim else int(v) for v in threefry_numpy(key, [count[0]], [count[1]])] == list(expected)


def test_the_cpu_lowering_matches_numpy_on_many_counters():
    rng = np.random.default_rng(0)
    key = rng.integers(0, 2**32, 2, dtype=np.uint64).astype(np.uint32)
    count = rng.integers(0, 2**32, 2 * 4096, dtype=np.uint64).astype(np.uint32)
    got = np.asarray(jax.jit(threefry_2x32)(key, count))
    half = count.size // 2
    a, b = threefry_numpy(key, count[:half], count[half:])  # JAX hashes the two halves as (x0, x1)
    np.testing.assert_array_equal(got, np.concatenate([a, b]))


def test_random_bits_lower_without_a_loop_on_the_cpu():
    text = jax.jit(lambda k: jax.random.bits(k, (64,))).lower(jax.random.key(0)).as_text()
    assert _threefry.UNROLLED
    assert "stablehlo.while" not in text
    # and a typical draw of the engine gives finite values
    draws = jax.jit(lambda k: jax.random.gamma(k, jnp.full((6, 10), 1.5)))(jax.random.key(1))
    assert np.all(np.isfinite(np.asarray(draws)))
