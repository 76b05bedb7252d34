"""``edgefm [overrides] [hydra flags]``: the Hydra app, a run or a multirun with ``-m``.

It composes ``conf/config.yaml`` (or ``$EDGEFM_CONFIG_DIR``) and, for each composed config (a job),
`edgefm.runner.prepare` checks it, ``edgefm_run_start`` fires, `edgefm.runner.run` gives the
dataset, which is written atomically to ``<run dir>/<output.filename>``, ``edgefm_run_end``
fires and the summary is printed. A job whose folder already holds the complete dataset of the same
resolved config is skipped (``output.skip_existing``), so a multirun started again in the same
folder resumes; at the end of a multirun the ``merge`` callback (`edgefm.sweep.MergeCallback`)
writes ``<sweep dir>/sweep.nc``.

Bad input (any `EdgefmError`, or a Hydra/OmegaConf composition error) ends the command with one line
``edgefm: error: ...`` on stderr and exit status 2, before anything is compiled
(`edgefm.errors.report`); ``EDGEFM_TRACEBACK=1`` adds the full traceback.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

from edgefm.errors import ConfigError, error_message, report

log = logging.getLogger("edgefm")
CACHE_ENV = "EDGEFM_JAX_CACHE"


# ----------------------------------------------------------------------------------------------
# One job


def run_job(cfg, run_dir: str | os.PathLike, registry=None) -> dict[str, Any]:
    """One run of a composed config into ``run_dir``; returns the summary (also passed to
    ``edgefm_run_end``). Every check happens in `edgefm.runner.prepare`, before
    ``edgefm_run_start`` and before the placement solve and the compile."""
    from omegaconf import OmegaConf

    from edgefm import runner
    from edgefm.io import write_netcdf_atomic
    from edgefm.plugins import get_plugin_manager
    from edgefm.results import print_summary

    # JAX logs, at INFO, each backend it could not start (tpu, ...); Hydra shows INFO on the console.
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    run_dir = Path(run_dir)
    pm = get_plugin_manager()

    path = run_dir / runner.output_filename(cfg)
    if cfg.output.skip_existing:
        existing = completed_run(path, OmegaConf.to_yaml(cfg, resolve=True))
        if existing is not None:
            return existing
    job = runner.prepare(cfg, registry)

    run_dir.mkdir(parents=True, exist_ok=True)
    pm.hook.edgefm_run_start(cfg=job.cfg, run_dir=run_dir)
    ds = runner.run(job)
    path = write_netcdf_atomic(ds, path)

    summary = runner.summarise(ds)
    summary["dataset"] = str(path)
    pm.hook.edgefm_run_end(dataset_path=path, cfg=job.cfg, summary=summary)
    if cfg.output.print_summary:
        print_summary(summary)
    return summary


def completed_run(path: Path, config_yaml: str) -> dict[str, Any] | None:
    """The summary of a finished run at ``path`` made from the same resolved config, or None.

    Datasets are written atomically, so a file at ``path`` is complete; one that cannot be read,
    or that was made from another config, is recomputed (and replaced).
    """
    from edgefm.io import open_run

    if not path.is_file():
        return None
    try:
        ds = open_run(path)
    except Exception:  # noqa: BLE001 - unreadable: recompute
        log.warning(f"edgefm: {path} cannot be read; running the job again")
        return None
    if ds.attrs.get("config") != config_yaml:
        log.info(f"edgefm: {path} was made from another config; running the job again")
        return None
    log.info(f"edgefm: skipped, the complete dataset is already there: {path} (output.skip_existing=false reruns)")
    return {"dataset": str(path), "skipped": True}


# ----------------------------------------------------------------------------------------------
# The Hydra app


@contextlib.contextmanager
def _patched(argv: list[str], env: dict[str, str]):
    saved_argv, saved_env = sys.argv, {k: os.environ.get(k) for k in env}
    sys.argv = ["edgefm", *argv]  # the program name in Hydra's usage and help
    os.environ.update(env)
    try:
        yield
    finally:
        sys.argv = saved_argv
        for key, value in saved_env.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# The process that runs Hydra: its pid, the Registry, and the bad-input failures of its jobs. A job
# run by a launcher in another process (joblib, SLURM, Ray) finds this empty and builds its own.
_APP: dict[str, Any] = {}


def _job(cfg) -> None:
    """The Hydra task function (module level, so launchers can send it to other processes)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    in_app = _APP.get("pid") == os.getpid()
    if not in_app:
        enable_compilation_cache()
    try:
        run_job(cfg, hydra_cfg.runtime.output_dir, _APP.get("registry") if in_app else None)
    except Exception as exc:
        if error_message(exc) is None or not in_app:
            # a bug: Hydra re-raises it (HYDRA_FULL_ERROR) and we print the traceback; in another
            # process the launcher hands the error back to the app, which reports it
            raise
        # Bad input: kept from Hydra, which would add its own "Error executing job" line.
        label = ""
        if hydra_cfg.mode == RunMode.MULTIRUN:
            label = f"job {hydra_cfg.job.num} ({' '.join(hydra_cfg.overrides.task)}): "
        _APP["failures"].append((label, exc))


def run_app(argv: list[str]) -> int:
    """Register the configs, then run Hydra on ``argv`` (overrides and Hydra flags)."""
    import hydra

    from edgefm.config.schema import CONFIG_DIR_ENV, default_config_dir, register_all
    from edgefm.plugins import Registry

    try:
        conf_dir = default_config_dir()
        if not (conf_dir / "config.yaml").is_file():
            raise ConfigError(
                CONFIG_DIR_ENV if os.environ.get(CONFIG_DIR_ENV) else "config directory",
                str(conf_dir),
                "a folder with config.yaml (the repository's conf/)",
                hint=f"set {CONFIG_DIR_ENV} to the conf/ folder of an edgefm checkout",
            )
        registry = Registry.default()
        register_all(registry, conf_dir=conf_dir)
        _APP.update(pid=os.getpid(), registry=registry, failures=[])
        app = hydra.main(config_path=str(conf_dir), config_name="config", version_base="1.3")(_job)
        # HYDRA_FULL_ERROR=1: Hydra re-raises instead of printing its own (multi-line) report.
        with _patched(argv, {"HYDRA_FULL_ERROR": "1"}):
            app()
    except Exception as exc:  # noqa: BLE001 - every error ends here, as one line or a traceback
        return report(exc)
    finally:
        failures = _APP.pop("failures", [])
        _APP.clear()
    status = 0
    for label, exc in failures:
        status = max(status, report(exc, prefix=label))
    return status


def enable_compilation_cache() -> None:
    """Keep compiled engines on disk (``$EDGEFM_JAX_CACHE``, default ``~/.cache/edgefm/jax``; ``0``
    turns it off), so a second run of the same shapes skips the ~30 s compile."""
    where = os.environ.get(CACHE_ENV, str(Path.home() / ".cache" / "edgefm" / "jax"))
    if where in ("", "0"):
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def main(argv: list[str]) -> int:
    """``edgefm [overrides] [hydra flags]``; returns the exit status."""
    enable_compilation_cache()
    # Hydra configures the root logger for each job (a handler on the stdout of the moment and a
    # log file); called in-process (tests, notebooks), those handlers must not outlive the call,
    # or a later log record is written to a stream that may be closed by then
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    # Hydra's logging set-up (logging.config.dictConfig) closes every existing handler, and absl's
    # (imported by optax) closes its stream unless it is the process's stderr/stdout: when absl was
    # imported while sys.stderr was a temporary stream (pytest's capture, a notebook's), that stream
    # would be closed under its owner. Point absl's handler at the process's stderr.
    absl_logging = sys.modules.get("absl.logging")
    if absl_logging is not None:
        absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__
    try:
        return run_app(argv)
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


__all__ = ["completed_run", "enable_compilation_cache", "main", "run_app", "run_job"]
