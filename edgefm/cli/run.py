"""``edgefm [overrides] [hydra flags]``: the Hydra app, a run or a multirun with ``-m``.

It composes ``conf/config.yaml`` (or ``$EDGEFM_CONFIG_DIR``) and, for each composed config (a job),
`edgefm.runner.prepare` checks it, ``edgefm_run_start`` fires, `edgefm.runner.run` gives the
dataset, which is written atomically to ``<run dir>/<output.filename>``, ``edgefm_run_end``
fires and the summary is printed. A job whose folder already holds the complete dataset of the same
resolved config is skipped (``output.skip_existing``), so a multirun started again in the same
folder resumes; at the end of a multirun the ``merge`` callback (`edgefm.sweep.MergeCallback`)
writes ``<sweep dir>/sweep.nc``.

A multirun started again with ``output.resume=last`` (the latest multirun folder of the same
command) or ``output.resume=<folder>`` runs in that folder: its finished jobs are skipped, the
others run, and its ``sweep.nc`` is written (docs/RELIABILITY.md).

Before anything is compiled a job checks its folder (writable, free space for the dataset, not in
use by another run: a lock) and the run's memory estimate (`edgefm.io.budget`). Bad input (any
`EdgefmError`, a Hydra/OmegaConf composition error, an output folder that cannot be written) ends
the command with one line ``edgefm: error: ...`` on stderr and exit status 2 (`edgefm.errors.report`);
``EDGEFM_TRACEBACK=1`` adds the full traceback. From the console, Ctrl-C (or SIGTERM, as ``timeout``,
SLURM and Ray send) ends the command at once with one line, status 130 (143), even while XLA
compiles: the engine runs in a worker thread, and a write in progress removes its temporary file.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from edgefm.errors import ConfigError, Refused, error_message, report

log = logging.getLogger("edgefm")
CACHE_ENV = "EDGEFM_JAX_CACHE"


# ----------------------------------------------------------------------------------------------
# One job


def run_job(cfg, run_dir: str | os.PathLike, registry=None) -> dict[str, Any]:
    """One run of a composed config into ``run_dir``; returns the summary (also passed to
    ``edgefm_run_end``). Every check happens before ``edgefm_run_start`` and before the placement
    solve and the compile: the options (`edgefm.runner.prepare`, which also estimates the memory),
    the run folder (writable, free space, locked for this run)."""
    from omegaconf import OmegaConf

    from edgefm import runner
    from edgefm.io import write_netcdf_atomic
    from edgefm.io.budget import check_disk_space, check_output_folder, human
    from edgefm.io.lock import lock_folder
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
    est = job.estimate
    log.info(f"edgefm: memory estimate {human(est.host)} (outputs {human(est.outputs)}, dataset {human(est.dataset)}, "
             f"state {human(est.state)}, runtime {human(est.base)})")

    check_output_folder(run_dir)
    with lock_folder(run_dir):
        if cfg.output.disk_check:
            check_disk_space(run_dir, job.estimate.dataset_file)
        pm.hook.edgefm_run_start(cfg=job.cfg, run_dir=run_dir)
        log.info("edgefm: compiling and simulating (Ctrl-C stops at once)")
        ds = in_worker_thread(lambda: runner.run(job))
        path = write_netcdf_atomic(ds, path)

    summary = runner.summarise(ds)
    summary["dataset"] = str(path)
    pm.hook.edgefm_run_end(dataset_path=path, cfg=job.cfg, summary=summary)
    if cfg.output.print_summary:
        print_summary(summary)
    return summary


def in_worker_thread(fn):
    """``fn()`` in a worker thread while this (the main) thread waits, so that Ctrl-C and SIGTERM
    act at once even while XLA compiles (a signal is handled in the main thread, between bytecodes;
    a compile holds its thread for tens of seconds). Its result or exception is this call's; an
    interrupt leaves the worker running (`_APP["engine"]`, its "done" event) for the caller to end
    the process."""
    if threading.current_thread() is not threading.main_thread():
        return fn()
    box: dict[str, Any] = {}
    done = threading.Event()  # not Thread.is_alive: Python 3.11's join marks a thread stopped when
    # Ctrl-C interrupts it (bpo-45274's fix), while XLA still compiles in it

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            box["error"] = exc
        finally:
            done.set()

    worker = threading.Thread(target=target, name="edgefm-engine", daemon=True)
    _APP["engine"] = done
    worker.start()
    while not done.wait(0.1):
        pass
    _APP.pop("engine", None)
    if "error" in box:
        raise box["error"]
    return box["value"]


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
    if not same_config(ds.attrs.get("config"), config_yaml):
        log.info(f"edgefm: {path} was made from another config; running the job again")
        return None
    log.info(f"edgefm: skipped, the complete dataset is already there: {path} (output.skip_existing=false reruns)")
    return {"dataset": str(path), "skipped": True}


def same_config(made: str | None, config_yaml: str) -> bool:
    """Whether two resolved configs (YAML) compute the same: equal but for the keys that do not
    change the results (`edgefm.sweep.NOT_RESULTS`: skip_existing, resume, the progress bar, ...)."""
    import yaml

    from edgefm.sweep import _flat, _results_keys

    if not made:
        return False
    if made == config_yaml:
        return True
    try:
        return _results_keys(_flat(yaml.safe_load(made) or {})) == _results_keys(_flat(yaml.safe_load(config_yaml) or {}))
    except yaml.YAMLError:
        return False


# ----------------------------------------------------------------------------------------------
# output.resume: a multirun continued in its folder


def _sweep_root(pattern: str, cfg) -> tuple[Path, bool]:
    """(folder, timestamped): the folder a ``hydra.sweep.dir`` pattern's multiruns are made in (the
    part before ``${now:...}``), or the sweep folder itself when the pattern has no timestamp."""
    from omegaconf import OmegaConf, open_dict

    parts = pattern.split("/")
    cut = next((i for i, part in enumerate(parts) if "${now:" in part), None)
    prefix = pattern if cut is None else "/".join(parts[:cut])
    with open_dict(cfg):
        cfg["_edgefm_sweep_root"] = prefix
    try:
        resolved = str(OmegaConf.select(cfg, "_edgefm_sweep_root")) if prefix else "."
    finally:
        with open_dict(cfg):
            del cfg["_edgefm_sweep_root"]
    return Path(resolved), cut is not None


def _task_lines(lines) -> list[str]:
    """The overrides that make a multirun's jobs, as ``multirun.yaml`` keeps them (its
    ``hydra.overrides.task``): without ``output.resume`` and without Hydra's own (``hydra.*``,
    ``hydra/*``: the launcher and its options, which Hydra keeps apart)."""
    kept = []
    for line in map(str, lines):
        key = line.split("=", 1)[0].lstrip("+~")
        if key != "output.resume" and not key.startswith(("hydra.", "hydra/")):
            kept.append(line)
    return kept


def resume_folder(argv: list[str], conf_dir: Path) -> list[str]:
    """``argv`` with ``hydra.sweep.dir`` set to the folder ``output.resume`` names (unchanged when
    it names none): ``last`` is the newest multirun folder under the sweep folder's parent
    (``outputs/<task>/multiruns/``) whose ``multirun.yaml`` has the same overrides; a folder must
    have been made by the same overrides."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.utils import get_args_parser
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    if not any("output.resume=" in a for a in argv):
        return argv
    try:
        args = get_args_parser().parse_args(argv)
    except SystemExit:
        return argv  # Hydra says what is wrong with the flags
    overrides = list(args.overrides)
    resume = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith("output.resume=")]
    if not resume or resume[-1] in ("", "null", "None"):
        return argv
    value = resume[-1].strip("'\"")
    if not args.multirun:
        raise ConfigError("output.resume", value, "a multirun option: add -m (a single run writes to hydra.run.dir)")
    if any(o.lstrip("+").startswith("hydra.sweep.dir=") for o in overrides):
        raise ConfigError("output.resume", value, "not with hydra.sweep.dir: give one of the two")
    parsed = OverridesParser.create().parse_overrides(overrides)
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    here = _task_lines(overrides)
    if value != "last":
        folder = Path(value).expanduser()
        if not (folder / "multirun.yaml").is_file():
            raise ConfigError("output.resume", value, "last, or a multirun folder (one with multirun.yaml)")
        before = _task_lines(OmegaConf.load(folder / "multirun.yaml").hydra.overrides.task)
        if before != here:
            raise ConfigError("output.resume", value, f"a multirun folder of the same overrides: it was made by "
                              f"{' '.join(before) or '(none)'}, this command has {' '.join(here) or '(none)'}")
        chosen = folder
    else:
        GlobalHydra.instance().clear()
        try:
            with initialize_config_dir(str(conf_dir), version_base="1.3"):
                cfg = compose("config", overrides=fixed, return_hydra_config=True)
            pattern = str(cfg.hydra.sweep._get_node("dir")._value())
            root, timestamped = _sweep_root(pattern, cfg)
        finally:
            GlobalHydra.instance().clear()
        if not timestamped:
            chosen = root  # a fixed sweep folder: the same command resumes there anyway
        else:
            made = sorted((p for p in root.glob("*/multirun.yaml")), key=lambda p: p.stat().st_mtime, reverse=True)
            chosen = next((p.parent for p in made
                           if _task_lines(OmegaConf.load(p).hydra.overrides.task) == here), None)
            if chosen is None:
                raise ConfigError(
                    "output.resume", value,
                    f"a multirun folder under {root} made by the same overrides ({' '.join(here) or 'none'}): "
                    f"none of its {len(made)} multirun folders is (run without output.resume to start one)")
    chosen = chosen.resolve()
    print(f"edgefm: resuming the multirun in {chosen}", file=sys.stderr)  # (before Hydra sets up logging)
    quoted = str(chosen).replace("\\", "\\\\").replace("'", "\\'")
    return [*argv, f"hydra.sweep.dir='{quoted}'"]


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


def _job(cfg) -> dict[str, Any]:
    """The Hydra task function (module level, so launchers can send it to other processes). Its value
    is the run's summary (``skipped`` when the dataset was there already), or ``{"failed": ...}`` for
    bad input reported by this process at the end (a multirun's progress counts them)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra_cfg = HydraConfig.get()
    in_app = _APP.get("pid") == os.getpid()
    if not in_app:
        enable_compilation_cache()
    try:
        return run_job(cfg, hydra_cfg.runtime.output_dir, _APP.get("registry") if in_app else None)
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
        return {"failed": error_message(exc)}


def job_failed(label: str, exc: BaseException) -> bool:
    """For a launcher whose jobs run in other processes (edgefm's Ray launcher): keep a job's one-line
    error (bad input, a job its launcher lost) for this process to report at the end, as it does for
    the jobs it runs itself, so that the other jobs and the merge go on; False, keeping nothing,
    outside the edgefm command's process or for an error that is not one line (a bug)."""
    if _APP.get("pid") != os.getpid() or "failures" not in _APP or error_message(exc) is None:
        return False
    _APP["failures"].append((label, exc))
    return True


def run_app(argv: list[str]) -> int:
    """Register the configs, then run Hydra on ``argv`` (overrides and Hydra flags)."""
    import hydra

    from edgefm.config.schema import CONFIG_DIR_ENV, default_config_dir, register_all
    from edgefm.io.lock import release_all
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
        argv = resume_folder(argv, conf_dir)
        _APP.update(pid=os.getpid(), registry=registry, failures=[])
        app = hydra.main(config_path=str(conf_dir), config_name="config", version_base="1.3")(_job)
        # HYDRA_FULL_ERROR=1: Hydra re-raises instead of printing its own (multi-line) report.
        with _patched(argv, {"HYDRA_FULL_ERROR": "1"}):
            app()
    except (Exception, Refused) as exc:  # noqa: BLE001 - every error ends here, as one line or a traceback
        return report(exc)
    finally:
        failures = _APP.pop("failures", [])
        engine = _APP.get("engine")
        _APP.clear()
        if engine is not None:
            _APP["engine"] = engine  # an interrupted engine thread, for `main` to see
        release_all()
    status = 0
    for label, exc in failures:
        status = max(status, report(exc, prefix=label))
    return status


def enable_compilation_cache() -> None:
    """Keep compiled engines on disk (``$EDGEFM_JAX_CACHE``, default ``~/.cache/edgefm/jax``; ``0``
    turns it off), so a second run of the same shapes skips the compile."""
    where = os.environ.get(CACHE_ENV, str(Path.home() / ".cache" / "edgefm" / "jax"))
    if where in ("", "0"):
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread like Ctrl-C's KeyboardInterrupt (so every ``finally`` and
    the atomic write's clean-up run)."""


def _on_sigterm(signum, frame):
    raise Terminated()


@contextlib.contextmanager
def console_signals():
    """SIGTERM as `Terminated` while the command runs (the console only: in-process callers keep
    their own handlers)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str], console: bool = False) -> int:
    """``edgefm [overrides] [hydra flags]``; returns the exit status. ``console``: the process is
    the ``edgefm`` command itself, so Ctrl-C and SIGTERM end it at once with one line (status 130,
    143) instead of a traceback; in-process callers get the KeyboardInterrupt."""
    if not console:
        return _main(argv)
    try:
        with console_signals():
            return _main(argv)
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, Terminated)
        what = "terminated (SIGTERM)" if terminated else "interrupted (Ctrl-C)"
        print(f"edgefm: {what}: the job that was running wrote nothing (a multirun resumes with the same "
              "command and output.resume=last)", file=sys.stderr)
        status = 143 if terminated else 130
        engine = _APP.pop("engine", None)
        if engine is not None and not engine.is_set():
            # XLA may be compiling in the worker thread and cannot be stopped: end the process now
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(status)
        return status


def _main(argv: list[str]) -> int:
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


__all__ = ["Terminated", "completed_run", "console_signals", "enable_compilation_cache", "in_worker_thread", "main",
           "resume_folder", "run_app", "run_job"]
