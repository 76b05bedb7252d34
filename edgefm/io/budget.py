"""What a run will need, checked before it is compiled: memory (host and device), disk space, and a
writable output folder. Each problem is one `ResourceError` line: what is needed, what there is,
and what to change.

The memory estimate is built from the engine's static sizes (`edgefm.sim.types.SimSizes`) and the
realisation layout (`edgefm.sim.rollout.realisation_layout`):

- **outputs**: every realisation's results stay on the device until the end, most of them per slot
  (``x_light`` and ``parallelism`` [T,V,Ml], arrivals [T,U,N], ...) plus the per-task records [J];
- **state**: the state of the realisations simulated at once (``sim.batch`` of them, times the
  instances when vmapped, on each device);
- **dataset**: the host copies the run dataset makes (light columns widened to every service, the
  dtypes of the variable table, then the netCDF encoding): `DATASET_COPIES` times its variables;
- **base**: the interpreter, JAX, the compiler and the compiled program, and each further device the
  realisations are split over (measured, BENCHMARKS.md).

On a CPU the device is the host, so everything adds up in one figure. BENCHMARKS.md ("Memory
estimate") compares the estimate with the peak RSS of the paper scenario at 1 to 256 realisations.
"""

from __future__ import annotations

import dataclasses
import errno
import os
import shutil
import uuid
from pathlib import Path

from edgefm.errors import ResourceError

# measured on the paper scenario (BENCHMARKS.md "Memory estimate"): the peak of the interpreter with
# JAX, XLA compiling the engine and the compiled program, at R = 1 (one device) ...
BASE_BYTES = 1000 * 2**20
# ... and what each further CPU device the realisations are sharded over adds (its runtime, buffers)
DEVICE_BYTES = 100 * 2**20
# the dataset's variables are on the host about this many times at the peak (the widened engine
# arrays, the dataset's own, the netCDF encoding's)
DATASET_COPIES = 2.5
# the state with the step's temporaries, as a multiple of the state of one realisation (1: the GPU
# peaks of BENCHMARKS.md's proposed at 256 and 1 024 vmapped realisations, 3.6 MB per realisation)
STATE_WORK_FACTOR = 1.0

_GIB = 2**30


def human(nbytes: float) -> str:
    """``1.2 GB``, ``340 MB``, ``12 kB`` (powers of 1024)."""
    for unit, scale in (("GB", 2**30), ("MB", 2**20), ("kB", 2**10)):
        if abs(nbytes) >= scale:
            return f"{nbytes / scale:.1f} {unit}"
    return f"{int(nbytes)} B"


@dataclasses.dataclass(frozen=True)
class Estimate:
    """Bytes a run needs (see the module docstring)."""

    outputs: int  # every realisation's engine outputs
    state: int  # the realisations in flight at once, with the step's temporaries
    dataset: int  # the run dataset's host copies (`DATASET_COPIES` x its variables)
    dataset_file: int  # the dataset's variables, uncompressed: an upper bound on the netCDF file
    base: int = BASE_BYTES
    accelerator: bool = False  # outputs and state live on an accelerator, the rest on the host

    @property
    def device(self) -> int:
        """On an accelerator: its memory; on the CPU: part of the host's."""
        return self.outputs + self.state

    @property
    def host(self) -> int:
        if self.accelerator:
            return self.base + self.outputs + self.dataset  # the outputs are copied to the host
        return self.base + self.outputs + self.state + self.dataset


def _per_realisation(sizes, M: int, per_slot: bool = True) -> tuple[int, int, int]:
    """Bytes per realisation: (engine outputs, state, dataset variables)."""
    T, V, Ml, U, N, J, B, S = sizes.T, sizes.V, sizes.Ml, sizes.U, sizes.N, sizes.J, sizes.B, sizes.S
    q = len(sizes.quantiles)
    C = 8  # critical-path components (edgefm.sim.state.BREAKDOWN_COMPONENTS), at most
    light = V * Ml * sizes.X
    state = (B * 41 + B * S * 65 + (sizes.Lc + sizes.Lw) * 16 + sizes.Ic * 8 + light * sizes.Q * 24 + light
             + J * 25 + N * 8 + Ml * 16 + 2 * C * 8 + 64)
    summaries = 14 * 8 + 4 * N * 8 + N * q * 8 + q * 8 + 2 * C * 8 + 2 * Ml * 8
    slots = T * (8 + 4 + 2 * 4 * V * Ml + 8 * U + 8 * U * N + V + 4) if per_slot else 0
    outputs = summaries + slots + J * 25
    # the dataset: light columns over every service (int32), counts as int64, one violation rate more
    ds_slots = T * (8 + 8 + 2 * 4 * V * M + V + 8) if per_slot else 0
    dataset = 13 * 8 + 4 * N * 8 + N * q * 8 + q * 8 + 2 * C * 8 + 3 * M * 8 + ds_slots
    return outputs, state, dataset


def estimate(sizes, *, realisations: int, instances: int, layout: tuple[int, int], num_services: int,
             task_records: bool = False, accelerator: bool = False) -> Estimate:
    """The memory a run of ``realisations`` x ``instances`` realisations with these sizes needs;
    ``layout`` is (group, shards) of `realisation_layout`."""
    group, shards = layout
    runs = int(realisations) * int(instances)
    outputs, state, dataset = _per_realisation(sizes, int(num_services))
    if task_records:
        dataset += sizes.J * 25
    in_flight = group * (instances if group > 1 else 1) * shards
    return Estimate(
        outputs=runs * outputs,
        state=int(in_flight * state * STATE_WORK_FACTOR),
        dataset=int(DATASET_COPIES * runs * dataset),
        dataset_file=runs * dataset,
        base=BASE_BYTES + (0 if accelerator else (shards - 1) * DEVICE_BYTES),
        accelerator=accelerator,
    )


# ----------------------------------------------------------------------------------------------
# What there is


def _read_int(path: str) -> int | None:
    try:
        text = Path(path).read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def host_available() -> int:
    """Bytes this process may still take: MemAvailable, or less under a cgroup memory limit."""
    available = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                available = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = 1 << 62
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        limit, usage = _read_int(limit_file), _read_int(usage_file)
        if limit is not None and usage is not None and limit < (1 << 60):
            available = min(available, max(limit - usage, 0))
    return int(available)


def process_rss() -> int:
    """This process's resident memory, bytes."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def device_available() -> int | None:
    """Bytes free on the default JAX device when it reports them (accelerators), else None."""
    import jax

    try:
        stats = jax.devices()[0].memory_stats()
    except Exception:  # noqa: BLE001 - not every backend reports
        return None
    if not stats or "bytes_limit" not in stats:
        return None
    return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))


KNOBS = ("lower sim.realisations (or split the run over seeds), lower sim.batch (realisations "
         "simulated at once), or a shorter horizon (sim.arrival_ms, sim.drain_ms: the per-slot outputs "
         "grow with it); sim.memory_check=false runs it anyway")


def check_memory(est: Estimate) -> None:
    """Raise `ResourceError` when ``est`` does not fit the host's (or the accelerator's) free memory."""
    rss = process_rss()
    have = host_available() + rss
    if est.host > have:
        raise ResourceError(
            f"not enough memory: the run needs about {human(est.host)} (outputs {human(est.outputs)}, dataset "
            f"{human(est.dataset)}, simulation state {human(est.state)}, runtime {human(est.base)}) and "
            f"{human(have)} is available: {KNOBS}")
    if est.accelerator:
        free = device_available()
        if free is not None and est.device > free:
            raise ResourceError(
                f"not enough accelerator memory: the run needs about {human(est.device)} on the device (outputs "
                f"{human(est.outputs)}, simulation state {human(est.state)}) and {human(free)} is free: {KNOBS}")


# ----------------------------------------------------------------------------------------------
# The output folder


def check_output_folder(folder: str | os.PathLike, what: str = "run") -> Path:
    """Create ``folder`` (with its parents) and write and remove a probe file in it; raise
    `ResourceError` naming the folder and the cause when either fails."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".edgefm-probe-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ResourceError(output_problem(folder, exc, what)) from None
    return folder


def output_problem(folder: Path, exc: OSError, what: str = "run") -> str:
    """One line: why ``folder`` cannot be written."""
    if exc.errno in (errno.ENOTDIR, errno.EEXIST):
        part = next((p for p in [folder, *folder.parents] if p.exists() and not p.is_dir()), None)
        cause = f"{part} is a regular file, not a folder" if part else "a part of the path is not a folder"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        cause = f"{exc.filename or folder} is read-only ({os.strerror(exc.errno)})"
    elif exc.errno in (errno.ENOSPC, errno.EDQUOT):
        cause = "no space left on the device"
    else:
        cause = exc.strerror or str(exc)
    key = "hydra.sweep.dir" if what == "sweep" else "hydra.run.dir"
    return f"the {what} folder {folder} cannot be written: {cause}; choose another with {key}=DIR"


def check_disk_space(folder: str | os.PathLike, need: int) -> None:
    """Raise `ResourceError` when the file system of ``folder`` has less than ``need`` bytes free."""
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ResourceError(
            f"not enough disk space in {folder}: the dataset may take up to {human(need)} (uncompressed) and "
            f"{human(free)} is free: free some space, choose another folder (hydra.run.dir=DIR), or set "
            "output.disk_check=false to try anyway")


__all__ = ["BASE_BYTES", "DATASET_COPIES", "DEVICE_BYTES", "Estimate", "check_disk_space", "check_memory", "check_output_folder", "estimate",
           "host_available", "human", "output_problem"]
