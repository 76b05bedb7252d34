"""A Ray head of this machine for tests/test_cluster.py and benchmarks/launcher_overhead.py: every
process of it bound to 127.0.0.1 on a free port, in a process group of its own that `LocalRayHead.stop`
ends (not ``ray stop``, which would end every Ray of this user).

``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` in the environment given to it is Ray's switch for a cluster of
one machine: the node's address stays 127.0.0.1 (otherwise Ray replaces a loopback address by the
machine's own) and every server binds to it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def free_port() -> int:
    """A TCP port of 127.0.0.1 that nothing listens on (at the time of the call)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ray_command() -> Path | None:
    """The ``ray`` command of this Python environment, or None."""
    exe = Path(sys.executable).with_name("ray")
    return exe if exe.is_file() else None


def _gone(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return True
    return False


class LocalRayHead:
    """``ray start --head`` with ``cpus`` CPUs, no GPU and no dashboard, started by the constructor
    (RuntimeError, with Ray's output, if it fails or no ``ray`` command is here); ``address`` is its
    host:port, ``start_s`` the seconds it took to start. A context manager that stops it."""

    def __init__(self, cpus: int, env: dict[str, str], *, timeout_s: float = 300.0) -> None:
        exe = ray_command()
        if exe is None:
            raise RuntimeError(f"no `ray` command beside {sys.executable}: pip install -e '.[ray]'")
        self.temp = Path(tempfile.mkdtemp(prefix="edgefm-ray-", dir="/tmp"))  # Ray's socket paths stay short
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        t0 = time.perf_counter()
        self.proc = subprocess.Popen(
            [str(exe), "start", "--head", "--node-ip-address=127.0.0.1", f"--port={self.port}", f"--num-cpus={cpus}",
             "--num-gpus=0", "--include-dashboard=false", "--disable-usage-stats", "--object-store-memory=100000000",
             f"--temp-dir={self.temp}"],
            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
        try:
            out, _ = self.proc.communicate(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.stop()
            raise RuntimeError(f"ray start did not return within {timeout_s:.0f} s") from None
        if self.proc.returncode != 0:
            self.stop()
            raise RuntimeError(f"ray start exited {self.proc.returncode}:\n{out[-3000:]}")
        self.start_s = time.perf_counter() - t0

    def stop(self) -> None:
        """End the head's process group (SIGTERM, then SIGKILL) and remove its temporary folder."""
        for sig, wait in ((signal.SIGTERM, 10.0), (signal.SIGKILL, 5.0)):
            if _gone(self.proc.pid):
                break
            os.killpg(self.proc.pid, sig)
            deadline = time.monotonic() + wait
            while not _gone(self.proc.pid) and time.monotonic() < deadline:
                time.sleep(0.2)
        shutil.rmtree(self.temp, ignore_errors=True)

    def __enter__(self) -> LocalRayHead:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
