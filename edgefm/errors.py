"""Errors that reach the user as one line: the field, the value and what is accepted; and how every
command prints them (`error_message`, `report`).

Bad input (any `EdgefmError`, or a Hydra/OmegaConf composition error) ends a command with one
line ``edgefm: error: ...`` on stderr and exit status 2; ``EDGEFM_TRACEBACK=1`` adds the full
traceback. Anything else is a bug: its traceback, status 1.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import traceback

TRACEBACK_ENV = "EDGEFM_TRACEBACK"
EXIT_BAD_INPUT = 2


class EdgefmError(Exception):
    """Base of every error edgefm raises on purpose. The CLI prints ``str(err)`` and exits 2."""


class ConfigError(EdgefmError, ValueError):
    """Bad input: names the field, the value and what is accepted."""

    def __init__(self, field: str, value, accepted: str, hint: str = ""):
        self.field, self.value, self.accepted, self.hint = field, value, accepted, hint
        msg = f"{field} = {value!r} is invalid: {accepted}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)

    def __reduce__(self):
        # pickled with its own arguments, so it crosses process boundaries (multirun launchers)
        return type(self), (self.field, self.value, self.accepted, self.hint)


class PluginError(EdgefmError):
    """A plugin could not be found, loaded or registered."""


class SolverError(EdgefmError):
    """A placement could not be computed (infeasible, time limit without a solution, ...)."""


# ----------------------------------------------------------------------------------------------
# One line per error


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "msg", None) or exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def omegaconf_message(exc) -> str:
    """``<key>: <what is wrong>``, listing the known keys for a misspelt one."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    key = getattr(exc, "full_key", None) or ""
    msg = first_line(exc)
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
        return one_line(str(exc))
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and exc.options is not None:
        group, _, option = str(exc.missing_cfg_file).rpartition("/")
        options = [o for o in exc.options if not o.startswith("base_")]
        if group:
            return one_line(
                f"{group} = {option!r} is invalid: not an option of the config group {group!r}; "
                f"one of: {', '.join(options) or '(none)'} (`edgefm plugins` lists the installed components)"
            )
    if isinstance(exc, OverrideParseException):
        lines = [line.strip() for line in str(exc).splitlines() if line.strip() and not line.startswith("See http")]
        detail = "; ".join(line for line in lines if not line.startswith("Error parsing override"))
        return one_line(
            f"cannot parse the override {exc.override!r}: {detail or 'invalid syntax'} "
            f"(expected key=value, group=option, +key=value or ~key)"
        )
    if isinstance(exc, HydraException):
        cause = exc.__cause__
        if isinstance(cause, OmegaConfBaseException):
            return one_line(omegaconf_message(cause))
        return one_line(first_line(exc))
    if isinstance(exc, OmegaConfBaseException):
        return one_line(omegaconf_message(exc))
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


__all__ = [
    "ConfigError",
    "EXIT_BAD_INPUT",
    "EdgefmError",
    "PluginError",
    "SolverError",
    "TRACEBACK_ENV",
    "error_message",
    "report",
]
