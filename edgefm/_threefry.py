"""Compile-time fix for random numbers on the CPU: the unrolled Threefry lowering.

JAX lowers the Threefry-2x32 hash on the CPU as a rolled `fori_loop` (five iterations of four rounds),
and XLA:CPU compiles every such loop, at every random call site, into a large kernel of its own. On
other platforms JAX emits the 20 rounds unrolled, which XLA fuses with the surrounding elementwise
code. Registering the unrolled lowering for the CPU too computes the same hash (the same bits for
every key: tests/test_random.py checks known-answer vectors and the lowered program) and shortens
both the engine's compile and the exogenous draws' run time on the CPU (measured in BENCHMARKS.md,
"Compile time and the test suite"). ``EDGEFM_THREEFRY_ROLLED=1`` keeps JAX's own lowering.
"""

from __future__ import annotations

import logging
import os

log = logging.getLogger(__name__)


def use_unrolled_threefry_on_cpu() -> bool:
    """Register JAX's unrolled Threefry lowering for the CPU; False if JAX has no such rule (a JAX
    version with other internals) or the user opted out."""
    if os.environ.get("EDGEFM_THREEFRY_ROLLED", "") not in ("", "0"):
        return False
    try:
        from jax._src.interpreters import mlir
        from jax._src.random import threefry2x32 as tf

        mlir.register_lowering(tf.threefry2x32_p, tf._threefry2x32_lowering_rule, platform="cpu")
    except (ImportError, AttributeError) as exc:  # pragma: no cover - depends on the JAX version
        log.debug("unrolled Threefry lowering not available: %s", exc)
        return False
    return True


UNROLLED = use_unrolled_threefry_on_cpu()
