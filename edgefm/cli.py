"""The ``edgefm`` command: the Hydra app (a run, or a multirun with ``-m``) and the subcommands
``edgefm plugins``, ``edgefm merge SWEEP_DIR`` (`edgefm.sweep`) and ``edgefm report PATH``
(`edgefm.cli_report`).

``edgefm [overrides] [hydra flags]`` composes ``conf/config.yaml`` (or ``$EDGEFM_CONFIG_DIR``) and
runs one job per composed config: components resolved by name through the plugin Registry, scenario
sampled and validated, `edgefm.runner.run_engine`, the dataset written atomically to
``<run dir>/<output.filename>``, a summary table printed. A job whose folder already holds the
complete dataset of the same resolved config is skipped (``output.skip_existing``), so a multirun
started again in the same folder resumes; at the end of a multirun the ``merge`` callback writes
``<sweep dir>/sweep.nc``.

Bad input (any `EdgefmError`, or a Hydra/OmegaConf composition error) ends the command with one line
``edgefm: error: ...`` on stderr and exit status 2, before anything is compiled;
``EDGEFM_TRACEBACK=1`` adds the full traceback.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from edgefm.errors import ConfigError, EdgefmError

TRACEBACK_ENV = "EDGEFM_TRACEBACK"
log = logging.getLogger("edgefm")
EXIT_BAD_INPUT = 2


# ----------------------------------------------------------------------------------------------
# The job


def make_component(registry, kind: str, node) -> Any:
    """Instantiate the component a config group selected: ``node.name`` resolved in ``registry``,
    built with its ``Config`` filled from the other keys of ``node``."""
    from omegaconf import DictConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if not isinstance(node, DictConfig) or "name" not in node:
        raise ConfigError(
            f"{kind}.name", None, f"a {kind} plugin name, chosen with {kind}=<name>: one of {', '.join(registry.names(kind))}"
        )
    name = node.name
    cls = registry.resolve(kind, name)
    values = {k: v for k, v in OmegaConf.to_container(node, resolve=True).items() if k != "name"}
    try:
        config = OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(cls.Config), values))
    except OmegaConfBaseException as exc:
        key = str(getattr(exc, "full_key", "") or "")
        fields = [f.name for f in dataclasses.fields(cls.Config)]
        accepted = f"the options of {kind} {name!r} are: {', '.join(fields)}" if fields else f"{kind} {name!r} has no options"
        raise ConfigError(
            f"{kind}.{key}" if key else kind,
            values.get(key.split(".")[0]) if key else values,
            f"{_first_line(exc)}; {accepted}",
        ) from None
    return cls.from_config(config)


def sim_settings(node):
    """`edgefm.runner.SimSettings` from the ``sim`` node."""
    from omegaconf import OmegaConf

    from edgefm.runner import SimSettings

    values = OmegaConf.to_container(node, resolve=True, enum_to_str=True)
    values["quantiles"] = tuple(float(q) for q in values["quantiles"])
    return SimSettings(**values)


def plugin_versions(registry, names: dict[str, str]) -> dict[str, str]:
    """``<kind>.<name>`` -> ``"<distribution> <version>"`` for the selected components."""
    versions = {}
    for kind, name in names.items():
        row = next((r for r in registry.entries(kind) if r.name == name), None)
        if row is not None:
            versions[f"{kind}.{name}"] = f"{row.distribution} {row.version}".strip()
    return versions


def run(cfg, run_dir: str | os.PathLike, registry=None) -> dict[str, Any]:
    """One run of a composed config; returns the summary (also passed to ``edgefm_run_end``).

    Every check (components, sim, scenario) happens before ``edgefm_run_start`` and before the
    placement solve and the compile.
    """
    from omegaconf import OmegaConf

    from edgefm.config.closures import closure_changes, describe
    from edgefm.io import write_netcdf_atomic
    from edgefm.plugins import KINDS, Registry, get_plugin_manager
    from edgefm.results import build_dataset, merge_plugin_datasets, print_summary, summarise_run
    from edgefm.runner import Components, run_engine, validate_sim
    from edgefm.scenario.spec import build_scenarios

    # JAX logs, at INFO, each backend it could not start (tpu, ...); Hydra shows INFO on the console.
    logging.getLogger("jax._src.xla_bridge").setLevel(logging.WARNING)
    run_dir = Path(run_dir)
    registry = Registry.default() if registry is None else registry
    pm = get_plugin_manager()

    filename = str(cfg.output.filename)
    if not filename or filename in (".", "..") or "/" in filename or os.sep in filename:
        raise ConfigError("output.filename", filename, "a file name without folders, e.g. results.nc")
    config_yaml = OmegaConf.to_yaml(cfg, resolve=True)
    if cfg.output.skip_existing:
        existing = completed_run(run_dir / filename, config_yaml)
        if existing is not None:
            return existing
    components = {kind: make_component(registry, kind, cfg[kind]) for kind in KINDS}  # options checked here
    sim = sim_settings(cfg.sim)
    validate_sim(sim)
    scenarios = build_scenarios(cfg.scenario, cfg.seed)

    OmegaConf.set_readonly(cfg, True)  # plugins see it; none may change it
    run_dir.mkdir(parents=True, exist_ok=True)
    pm.hook.edgefm_run_start(cfg=cfg, run_dir=run_dir)

    engine = run_engine(scenarios, Components(**components), sim, seed=int(cfg.seed))

    names = {kind: str(cfg[kind].name) for kind in KINDS}
    closures = str(cfg.closures.name)
    changes = closure_changes(cfg, _task_overrides())
    ds = build_dataset(
        engine,
        slot_ms=sim.slot_ms,
        names=names,
        seed=int(cfg.seed),
        config_yaml=config_yaml,
        plugin_versions=plugin_versions(registry, names),
        task_records=bool(cfg.output.task_records),
        extra_attrs={
            "task": str(cfg.task),
            "closures": closures,
            # every closure in force that is not the preset's (docs/SEMANTICS.md §13); "" = none
            "closures_changed": "; ".join(changes),
            "scenario": str(cfg.scenario.name),
            # the draw index of each instance (not consecutive with scenario.hostable_reserve)
            "scenario_draws": [int(sc.meta.get("instance", i)) for i, sc in enumerate(scenarios)],
        },
        strategy=str(cfg.strategy),
    )
    ds = merge_plugin_datasets(ds, pm.hook.edgefm_dataset_finalize(dataset=ds, cfg=cfg))
    path = write_netcdf_atomic(ds, run_dir / filename)

    summary = summarise_run(engine, names, str(cfg.strategy))
    summary["closures"] = describe(closures, changes)
    summary["dataset"] = str(path)
    pm.hook.edgefm_run_end(dataset_path=path, cfg=cfg, summary=summary)
    if cfg.output.print_summary:
        print_summary(summary)
    return summary


def _task_overrides() -> list[str]:
    """The job's command-line overrides (empty outside a Hydra job)."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else []
    except Exception:  # noqa: BLE001 - no Hydra job
        return []


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
# Errors as one line


def _first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "msg", None) or exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _omegaconf_message(exc) -> str:
    """``<key>: <what is wrong>``, listing the known keys for a misspelt one."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    key = getattr(exc, "full_key", None) or ""
    msg = _first_line(exc)
    obj = getattr(exc, "object_type", None)
    if isinstance(exc, ConfigAttributeError | ConfigKeyError) and "not in" in msg:
        if obj is not None and dataclasses.is_dataclass(obj):
            known = ", ".join(f.name for f in dataclasses.fields(obj))
            return f"{key} is not a key of {obj.__name__}; known keys: {known}"
        return f"{key} is not a known key ({msg})"
    return f"{key}: {msg}" if key else msg


def error_message(exc: BaseException) -> str | None:
    """The one-line message of a bad-input error, or None for anything else (a bug)."""
    from hydra.errors import HydraException, MissingConfigException, OverrideParseException
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, EdgefmError):
        return _one_line(str(exc))
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and exc.options is not None:
        group, _, option = str(exc.missing_cfg_file).rpartition("/")
        options = [o for o in exc.options if not o.startswith("base_")]
        if group:
            return _one_line(
                f"{group} = {option!r} is invalid: not an option of the config group {group!r}; "
                f"one of: {', '.join(options) or '(none)'} (`edgefm plugins` lists the installed components)"
            )
    if isinstance(exc, OverrideParseException):
        lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("See http")]
        detail = "; ".join(line for line in lines if not line.startswith("Error parsing override"))
        return _one_line(
            f"cannot parse the override {exc.override!r}: {detail or 'invalid syntax'} "
            f"(expected key=value, group=option, +key=value or ~key)"
        )
    if isinstance(exc, HydraException):
        cause = exc.__cause__
        if isinstance(cause, OmegaConfBaseException):
            return _one_line(_omegaconf_message(cause))
        return _one_line(_first_line(exc))
    if isinstance(exc, OmegaConfBaseException):
        return _one_line(_omegaconf_message(exc))
    return None


def report(exc: BaseException, file=None, prefix: str = "") -> int:
    """Print ``exc`` the CLI way and return the exit status (2 bad input, 1 anything else)."""
    file = sys.stderr if file is None else file
    message = error_message(exc)
    if message is None:
        traceback.print_exception(exc, file=file)
        return 1
    if os.environ.get(TRACEBACK_ENV, "").strip() not in ("", "0"):
        traceback.print_exception(exc, file=file)
    print(f"edgefm: error: {prefix}{message}", file=file)
    return EXIT_BAD_INPUT


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
        run(cfg, hydra_cfg.runtime.output_dir, _APP.get("registry") if in_app else None)
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


CACHE_ENV = "EDGEFM_JAX_CACHE"


def enable_compilation_cache() -> None:
    """Keep compiled engines on disk (``$EDGEFM_JAX_CACHE``, default ``~/.cache/edgefm/jax``; ``0``
    turns it off), so a second run of the same shapes skips the ~30 s compile."""
    where = os.environ.get(CACHE_ENV, str(Path.home() / ".cache" / "edgefm" / "jax"))
    if where in ("", "0"):
        return
    import jax

    jax.config.update("jax_compilation_cache_dir", where)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edgefm`` console script and of ``python -m edgefm``."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] == "plugins":
        from edgefm import cli_plugins

        return cli_plugins.main(argv[1:])
    if argv and argv[0] == "merge":
        from edgefm.sweep import merge_main

        return merge_main(argv[1:])
    if argv and argv[0] == "report":
        from edgefm import cli_report

        return cli_report.main(argv[1:])
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


if __name__ == "__main__":
    raise SystemExit(main())
