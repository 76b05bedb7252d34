"""The ``edgefm`` command: a small package of subcommands.

- ``edgefm [overrides] [hydra flags]``: the Hydra app, one run or a multirun with ``-m``
  (`edgefm.cli.run`);
- ``edgefm merge SWEEP_DIR``: a multirun's job datasets into ``sweep.nc`` (`edgefm.cli.merge`);
- ``edgefm report PATH``: tables, figures and a summary of a run or sweep (`edgefm.cli.report`);
- ``edgefm plugins``: the installed components (`edgefm.cli.plugins`).

The job itself is `edgefm.runner` (`prepare`, `run`); errors are printed by `edgefm.errors.report`:
bad input as one line ``edgefm: error: ...`` and exit status 2.
"""

from __future__ import annotations

import sys

SUBCOMMANDS = ("plugins", "merge", "report")

# names of the former module `edgefm.cli`, still importable from here (lazily: the runner imports
# JAX); `report` and `run` are subcommand modules now (the error printer is `edgefm.errors.report`)
_MOVED = {
    "make_component": "edgefm.runner",
    "sim_settings": "edgefm.runner",
    "plugin_versions": "edgefm.runner",
    "error_message": "edgefm.errors",
    "EXIT_BAD_INPUT": "edgefm.errors",
    "TRACEBACK_ENV": "edgefm.errors",
    "run_app": "edgefm.cli.run",
    "enable_compilation_cache": "edgefm.cli.run",
    "completed_run": "edgefm.cli.run",
    "CACHE_ENV": "edgefm.cli.run",
}


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``edgefm`` console script and of ``python -m edgefm`` (``argv`` None: the
    process's own arguments, and Ctrl-C/SIGTERM end it with one line; a list: called in-process)."""
    console = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv and argv[0] in SUBCOMMANDS:
        import importlib

        return importlib.import_module(f"edgefm.cli.{argv[0]}").main(argv[1:])
    from edgefm.cli import run

    return run.main(argv, console=console)


def __getattr__(name: str):
    module = _MOVED.get(name)
    if module is None:
        raise AttributeError(f"module 'edgefm.cli' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["SUBCOMMANDS", "main"]
