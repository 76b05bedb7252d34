"""The Ray side of the launcher: connect, submit one task per job, follow them, hand back the results.

The driver submits `run_one` for every job with the task options of ``hydra.launcher.ray.remote``;
the multirun's config, the Hydra context, the task function and Hydra's singletons go to the object
store once and each worker process reads them from there once (`shared`). The worker composes its
job's config (``load_sweep_config``, as Hydra's own launchers do: the jobs compose in parallel, and
Hydra's sweeper has composed each once in the driver already, so a bad override fails before
anything is submitted) with its job number and the driver's absolute sweep folder (a worker's own
working folder is not the submitting one). Results are taken as they come (`ray.wait`), also while
jobs are still being submitted, each logged as a line of jobs done and time left, and returned in job
order.

A job that ends with a one-line error (bad input, or a `LaunchError`: Ray could not complete its task,
its worker or node died more often than ``max_retries`` allows) is handed to the edgefm command,
which reports it as one line at the end as it does for the jobs it runs itself (`settled`), and the
other jobs and the merge go on: the merge refuses the missing cell, naming it, the finished jobs keep
their datasets and the same command (``output.resume=last``) runs the rest. Ctrl-C (or SIGTERM) in
the driver cancels the jobs still pending.
"""

from __future__ import annotations

import fnmatch
import logging
import os
import socket
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.core.singleton import Singleton
from hydra.core.utils import (
    JobReturn,
    JobStatus,
    configure_log,
    filter_overrides,
    run_job,
    setup_globals,
)
from omegaconf import open_dict

log = logging.getLogger(__name__)

INIT_KEY = "hydra.launcher.ray.init"
REMOTE_KEY = "hydra.launcher.ray.remote"


_SHARED: dict[str, Any] = {}  # in a worker: the launch's shared objects, by object id (the latest launch's)


def shared(box: list) -> Any:
    """The object in the object store that ``box`` holds the reference of, deserialised once per worker
    process (a reference inside a list reaches the task as the reference, not as the object)."""
    import ray

    (ref,) = box
    key = ref.hex()
    if key not in _SHARED:
        _SHARED.clear()
        _SHARED[key] = ray.get(ref)
    return _SHARED[key]


def run_one(box: list, overrides: Sequence[str], num: int, sweep_dir: str, env: dict[str, str],
            cwd: str) -> JobReturn:
    """Job ``num`` in a Ray worker: its config composed, then Hydra's ``run_job`` with the driver's
    singletons and environment variables, in the submitting folder when this node has it."""
    config, hydra_context, task_function, singleton_state = shared(box)
    os.environ.update(env)
    setup_globals()
    Singleton.set_state(singleton_state)
    sweep_config = hydra_context.config_loader.load_sweep_config(config, list(overrides))
    with open_dict(sweep_config):
        sweep_config.hydra.job.id = f"{sweep_config.hydra.job.name}_{num}"
        sweep_config.hydra.job.num = num
        sweep_config.hydra.sweep.dir = sweep_dir
    HydraConfig.instance().set_config(sweep_config)
    here = os.getcwd()
    if cwd and os.path.isdir(cwd):
        os.chdir(cwd)
    try:
        return run_job(hydra_context=hydra_context, task_function=task_function, config=sweep_config,
                       job_dir_key="hydra.sweep.dir", job_subdir_key="hydra.sweep.subdir")
    finally:
        os.chdir(here)


def forwarded_env(patterns: Sequence[str]) -> dict[str, str]:
    """The driver's environment variables whose names match one of ``patterns``."""
    return {k: v for k, v in os.environ.items() if any(fnmatch.fnmatchcase(k, p) for p in patterns)}


def unanswered(address: str, timeout: float = 5.0) -> str | None:
    """Why nothing answers at ``address`` (``host:port`` or ``ray://host:port``), or None when a TCP
    connection to it opens (or it is no host:port: Ray says what is wrong with it). Ray itself waits
    for minutes for a head that is not there."""
    host, sep, port = address.split("://", 1)[-1].rpartition(":")
    if not sep or not port.isdigit() or not host:
        return None
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            return None
    except OSError as exc:
        return f"nothing answers at {host}:{port} ({exc.strerror or type(exc).__name__})"


def connect(init: dict[str, Any]) -> bool:
    """``ray.init(**init)`` unless Ray is connected already; True when this call connected. A refusal
    (no cluster at the address, an option Ray does not take when connecting) is one `ConfigError`."""
    import ray

    from edgefm.errors import ConfigError, first_line

    if ray.is_initialized():
        return False
    where = init.get("address")
    hint = ("start one with `ray start --head`, or give its head as host:port" if where in (None, "auto")
            else "the head node's host:port (`ray start --head` prints it)")
    address = os.environ.get("RAY_ADDRESS") if where == "auto" else where
    why = unanswered(str(address)) if address and address not in ("auto", "local") else None
    if why is not None:
        raise ConfigError(INIT_KEY, init, f"the address of a running Ray cluster: {why}", hint=hint)
    try:
        # Ray's own INFO lines (connecting, connected) stay off the console unless init asks for them
        ray.init(**{"logging_level": logging.WARNING, **init})
    except (ConnectionError, ValueError, TypeError, RuntimeError) as exc:
        raise ConfigError(INIT_KEY, init, f"Ray refused it: {first_line(exc)}", hint=hint) from None
    return True


def task(remote: dict[str, Any]):
    """`run_one` as a Ray remote function with ``remote``'s options (one `ConfigError` for a bad one).
    The options are given to ``ray.remote`` itself, not to ``.options``: there a job with a GPU gets a
    fresh worker process (Ray's ``max_calls=1`` for GPU tasks), whose JAX starts on the GPU Ray gave
    it (CUDA_VISIBLE_DEVICES); a reused worker's JAX would keep the GPU of its first task."""
    import ray

    from edgefm.errors import ConfigError, first_line

    try:
        return ray.remote(**remote)(run_one)
    except (ValueError, TypeError) as exc:
        raise ConfigError(REMOTE_KEY, remote, f"options of a Ray task ({first_line(exc)})") from None


def warn_unschedulable(remote: dict[str, Any]) -> None:
    """A warning when the cluster has less of a resource than one job asks for: its tasks wait until
    a node with it joins (an autoscaler may add one)."""
    import ray

    have = ray.cluster_resources()
    asked = {"CPU": remote.get("num_cpus"), "GPU": remote.get("num_gpus"), "memory": remote.get("memory"),
             **(remote.get("resources") or {})}
    for name, amount in asked.items():
        if amount and float(amount) > float(have.get(name, 0.0)):
            log.warning(f"edgefm: each job asks for {name} {amount} ({REMOTE_KEY}) but the Ray cluster has "
                        f"{have.get(name, 0.0):g} in all: the jobs wait until a node with it joins")


def lost(exc: BaseException, remote: dict[str, Any]) -> BaseException:
    """The error of a job Ray could not complete: the job's own (a task that raised outside Hydra's
    ``run_job``), or a `LaunchError` for a worker or node that died more often than the retries allow."""
    import ray

    from edgefm.errors import EdgefmError, LaunchError, first_line

    if isinstance(exc, ray.exceptions.RayTaskError):
        cause = getattr(exc, "cause", None)
        return cause if isinstance(cause, EdgefmError) else exc
    retries = remote.get("max_retries", 3)
    return LaunchError(
        f"lost on the Ray cluster ({first_line(exc)}) after {int(retries) + 1} attempt{'s' if retries else ''} "
        f"({REMOTE_KEY}.max_retries={retries}); the finished jobs keep their datasets: the same command "
        "(with output.resume=last for a plain multirun) runs the missing ones")


def settled(ret: JobReturn, overrides: Sequence[str], num: int) -> JobReturn:
    """A failed job whose error is one line (bad input, a job lost) handed to the edgefm command to
    report at the end (`edgefm.cli.run.job_failed`) and returned as done with ``{"failed": ...}``, as
    the jobs the command runs itself: the other jobs and the merge go on, and the merge names the
    missing cell. Anything else (a bug, another Hydra app) stays failed: Hydra raises it."""
    from edgefm.cli.run import job_failed
    from edgefm.errors import error_message

    if ret.status != JobStatus.FAILED:
        return ret
    exc = ret._return_value
    if not isinstance(exc, BaseException) or not job_failed(f"job {num} ({' '.join(filter_overrides(overrides))}): ", exc):
        return ret
    done = JobReturn(overrides=ret.overrides, cfg=ret.cfg, hydra_cfg=ret.hydra_cfg, working_dir=ret.working_dir,
                     task_name=ret.task_name, status=JobStatus.COMPLETED)
    done.return_value = {"failed": error_message(exc)}
    return done


def launch(launcher, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
    import ray

    from edgefm.sweep import Progress

    setup_globals()
    config, context = launcher.config, launcher.hydra_context
    assert config is not None and context is not None and launcher.task_function is not None
    configure_log(config.hydra.hydra_logging, config.hydra.verbose)
    sweep_dir = Path(str(config.hydra.sweep.dir)).absolute()
    sweep_dir.mkdir(parents=True, exist_ok=True)

    progress = Progress(len(job_overrides))
    remote = dict(launcher.remote)
    fn = task(remote)
    connected = connect(dict(launcher.init))
    try:
        warn_unschedulable(remote)
        box = [ray.put((config, context, launcher.task_function, Singleton.get_state()))]
        env, cwd = forwarded_env(launcher.env), os.getcwd()
        log.info(f"edgefm: {len(job_overrides)} jobs as Ray tasks ({', '.join(f'{k}={v}' for k, v in remote.items())})"
                 f", sweep folder {sweep_dir}")
        jobs = Jobs(job_overrides, remote, progress)
        try:
            for idx, overrides in enumerate(job_overrides):
                num = initial_job_idx + idx
                log.info(f"\t#{num} : {' '.join(filter_overrides(overrides))}")
                jobs.submitted(fn.remote(box, list(overrides), num, str(sweep_dir), env, cwd), num)
                jobs.take(timeout=0)
            return jobs.results()
        except BaseException:  # Ctrl-C, SIGTERM: the jobs not yet done do not run on
            jobs.cancel()
            raise
    finally:
        if connected:
            ray.shutdown()


class Jobs:
    """The submitted tasks of a launch: their results in job order, a progress line as each ends."""

    def __init__(self, job_overrides: Sequence[Sequence[str]], remote: dict[str, Any], progress) -> None:
        self.job_overrides, self.remote, self.progress = job_overrides, remote, progress
        self.position: dict[Any, int] = {}
        self.nums: list[int] = []
        self.done: list[JobReturn | None] = [None] * len(job_overrides)
        self.pending: list[Any] = []

    def submitted(self, ref, num: int) -> None:
        self.position[ref] = len(self.nums)
        self.nums.append(num)
        self.pending.append(ref)

    def take(self, timeout: float) -> None:
        """The results ready within ``timeout`` seconds (at most one)."""
        import ray

        from edgefm.sweep import job_outcome

        ready, self.pending = ray.wait(self.pending, num_returns=1, timeout=timeout)
        for ref in ready:
            i = self.position[ref]
            try:
                ret = ray.get(ref)
            except ray.exceptions.RayError as exc:
                ret = JobReturn(overrides=list(self.job_overrides[i]), status=JobStatus.FAILED)
                ret.return_value = lost(exc, self.remote)
            ret = self.done[i] = settled(ret, self.job_overrides[i], self.nums[i])
            skipped, failed = job_outcome(ret)
            log.info(self.progress.finished(skipped=skipped, failed=failed))

    def results(self) -> list[JobReturn]:
        # a timeout, so that Ctrl-C and SIGTERM reach the driver's Python code between waits
        while self.pending:
            self.take(timeout=1.0)
        return self.done  # type: ignore[return-value]

    def cancel(self) -> None:
        import ray

        for ref in self.pending:
            ray.cancel(ref, force=True)
