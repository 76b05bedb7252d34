"""A Hydra callback for tests/test_cluster.py that runs inside the jobs a launcher sends elsewhere (Ray
workers): it records the Ray resources the job's task was given, and kills the process of one job
(SIGKILL) when its engine starts, once, as a worker lost mid-job.

It is importable by name (``cluster_helpers.ClusterProbe``) wherever tests/ is on PYTHONPATH: the
test's Ray cluster and drivers have it there.
"""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from hydra.experimental.callback import Callback


class ClusterProbe(Callback):
    """``+hydra.callbacks.probe._target_=cluster_helpers.ClusterProbe`` with ``kill`` (a job number, or
    -1 for none) and ``marker`` (a file: written with the pid just before the kill; once it exists,
    nothing is killed, so the job's next run completes)."""

    def __init__(self, kill: int = -1, marker: str = "") -> None:
        self.kill, self.marker = int(kill), marker
        self._real = None

    def on_job_start(self, config, **kwargs) -> None:
        out = Path(config.hydra.runtime.output_dir)
        try:
            import ray

            if ray.is_initialized():
                resources = ray.get_runtime_context().get_assigned_resources()
                (out / "ray_resources.json").write_text(json.dumps(resources))
        except ImportError:
            pass
        if config.hydra.job.num != self.kill or not self.marker or Path(self.marker).exists():
            return
        import edgefm.runner

        marker = Path(self.marker)
        self._real = edgefm.runner.run_engine

        def killed(*args, **kwargs):
            marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

        edgefm.runner.run_engine = killed

    def on_job_end(self, config, **kwargs) -> None:
        if self._real is not None:  # (not reached when the kill happened)
            import edgefm.runner

            edgefm.runner.run_engine, self._real = self._real, None
