"""edgefm: modular foundation-model inference at the edge (arXiv 2601.19563), as a plugin framework."""

from __future__ import annotations

import os

import jax

# Times are in ms and the engine must agree with the float64 reference simulator to 1e-4 ms over
# horizons of hundreds of ms; float32 would leave only ~1e-5 relative precision. See README.
jax.config.update("jax_enable_x64", True)


def _cpu_device_count() -> int:
    """How many CPU devices JAX should expose: $EDGEFM_CPU_DEVICES, else the cores this process may use."""
    env = os.environ.get("EDGEFM_CPU_DEVICES", "").strip()
    if env:
        if not (env.isdigit() and int(env) >= 1):
            raise ValueError(f"EDGEFM_CPU_DEVICES={env!r}: expected a positive integer (CPU devices for the engine)")
        return int(env)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


# One JAX CPU device per core, so that the engine can run realisations on every core at once (it shards
# them over the devices; see `edgefm.sim.rollout`). Left alone when the user chose a count, or when JAX
# has already started its backends (the count is then fixed: the engine uses the devices there are).
def _is_the_edgefm_command() -> bool:
    """Whether this process is the ``edgefm`` command (the console script or ``python -m edgefm``)."""
    import sys

    argv = list(getattr(sys, "orig_argv", sys.argv))
    if any(a == "-m" and i + 1 < len(argv) and argv[i + 1].split(".")[0] == "edgefm" for i, a in enumerate(argv)):
        return True
    return os.path.basename(sys.argv[0] if sys.argv else "") == "edgefm"


if jax.config.jax_num_cpu_devices in (None, -1) and "host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    try:
        jax.config.update("jax_num_cpu_devices", _cpu_device_count())
    except RuntimeError:
        pass
    except ValueError as _err:
        if not _is_the_edgefm_command():
            raise
        # the command's bad input is one line and exit status 2, like every other (edgefm.errors)
        import sys

        print(f"edgefm: error: {_err}", file=sys.stderr)
        raise SystemExit(2) from None

from edgefm import _threefry  # noqa: E402,F401  (the unrolled Threefry lowering on the CPU: faster compiles)

import pluggy  # noqa: E402

__version__ = "0.1.0"
hookimpl = pluggy.HookimplMarker("edgefm")

__all__ = ["__version__", "hookimpl"]
