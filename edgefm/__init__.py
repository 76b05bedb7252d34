"""edgefm: modular foundation-model inference at the edge (arXiv 2601.19563), as a plugin framework."""

from __future__ import annotations

import jax

# Times are in ms and the engine must agree with the float64 reference simulator to 1e-4 ms over
# horizons of hundreds of ms; float32 would leave only ~1e-5 relative precision. See README.
jax.config.update("jax_enable_x64", True)

from edgefm import _threefry  # noqa: E402,F401  (the unrolled Threefry lowering on the CPU: faster compiles)

import pluggy  # noqa: E402

__version__ = "0.1.0"
hookimpl = pluggy.HookimplMarker("edgefm")

__all__ = ["__version__", "hookimpl"]
