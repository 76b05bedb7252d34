"""Errors that reach the user as one line: the field, the value and what is accepted; and how every
command prints them (`error_message`, `report`).

Bad input (any `EdgefmError`, a Hydra/OmegaConf composition error, an output location that cannot
be written) ends a command with one line ``edgefm: error: ...`` on stderr and exit status 2;
``EDGEFM_TRACEBACK=1`` adds the full traceback. Anything else is a bug: its traceback, status 1.
"""

from __future__ import annotations

import dataclasses
import errno
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


class ResourceError(EdgefmError):
    """The run does not fit the machine: memory, disk space, or an output folder that cannot be
    written. The message says what is needed, what there is, and what to change."""


class FolderLockedError(EdgefmError):
    """Another edgefm run is writing into the same run folder."""


class MergeError(EdgefmError):
    """A multirun folder whose datasets do not match their jobs' configs, or with jobs that have no
    dataset (nothing is merged)."""


class LaunchError(EdgefmError):
    """A job of a multirun that its launcher could not complete (a Ray worker or node died more often
    than the retries allow); the finished jobs keep their datasets."""


class Refused(BaseException):
    """An `EdgefmError` raised where Hydra would swallow an ``Exception`` (a callback's
    ``on_run_start``), carried to the CLI, which prints it as one line."""

    def __init__(self, error: BaseException):
        super().__init__(str(error))
        self.error = error


# ----------------------------------------------------------------------------------------------
# One line per error


def first_line(exc: BaseException) -> str:
    text = str(getattr(exc, "msg", None) or exc).strip()
    return text.splitlines()[0].strip() if text else type(exc).__name__


def one_line(text: str) -> str:
    return " ".join(str(text).split())


def _known_keys(obj) -> str | None:
    """The field names of the dataclass ``obj`` (a class or a class name of a schema), or None."""
    if isinstance(obj, str):
        try:
            from edgefm.config.check import schema_by_name

            obj = schema_by_name(obj)
        except Exception:  # noqa: BLE001 - a message without the list is still a message
            obj = None
    if obj is not None and dataclasses.is_dataclass(obj):
        return ", ".join(f.name for f in dataclasses.fields(obj))
    return None


def omegaconf_message(exc) -> str:
    """``<key>: <what is wrong>``, listing the known keys for a misspelt one."""
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    key = getattr(exc, "full_key", None) or ""
    msg = first_line(exc)
    obj = getattr(exc, "object_type", None)
    if isinstance(exc, ConfigAttributeError | ConfigKeyError) and "not in" in msg:
        known = _known_keys(obj)
        if known is not None:
            return f"{key} is not a key of {obj.__name__}; known keys: {known}"
        return f"{key} is not a known key ({msg})"
    return f"{key}: {msg}" if key else msg


def composition_message(text: str) -> str:
    """One line from the text of a Hydra composition error raised for a file of the config (``In
    'scenario/mine': ConfigKeyError raised while composing config:`` and the details below it)."""
    import re

    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    where = ""
    head = re.match(r"In '([^']+)': (\w+) raised while composing config:?$", lines[0]) if lines else None
    if head:
        where, lines = head.group(1), lines[1:]
    fields = dict(re.findall(r"^(full_key|object_type|reference_type)[:=]\s*(.*)$", "\n".join(lines), re.MULTILINE))
    details = [line for line in lines if not re.match(r"^(full_key|object_type|reference_type)[:=]", line)]
    key = fields.get("full_key", "")
    missing = re.match(r"Key '([^']+)' not in '([^']+)'", details[0]) if details else None
    prefix = f"in {where}.yaml: " if where else ""
    if missing:
        schema = missing.group(2)
        known = _known_keys(schema)
        key = key or missing.group(1)
        listed = f"; known keys: {known}" if known is not None else ""
        return one_line(f"{prefix}{key} is not a key of {schema}{listed}")
    detail = "; ".join(details) or (head.group(2) if head else "invalid config")
    return one_line(f"{prefix}{key}: {detail}" if key else f"{prefix}{detail}")


# where a config group option is looked for, and how to add one (unknown group options)
COMPONENT_GROUPS = ("placement", "controller", "channel", "workload", "failure")


def _missing_option_message(exc) -> str | None:
    group, _, option = str(exc.missing_cfg_file).rpartition("/")
    if not group:
        return None
    options = [o for o in exc.options if not o.startswith("base_")]
    if group in COMPONENT_GROUPS:
        hint = "`edgefm plugins` lists the installed components"
    else:
        hint = (f"to add one, put {option}.yaml in conf/{group}/, or in a folder of your own with a {group}/ "
                f"subfolder given as --config-dir DIR or hydra.searchpath=[file://DIR]"
                + ("; docs/SCENARIOS.md" if group == "scenario" else ""))
    return one_line(
        f"{group} = {option!r} is invalid: not an option of the config group {group!r}; "
        f"one of: {', '.join(options) or '(none)'} ({hint})"
    )


# errno values that mean the machine or the user's file system said no (bad input, not a bug)
_ENVIRONMENT_ERRNOS = {errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOTDIR, errno.EEXIST, errno.EISDIR,
                       errno.ENOSPC, errno.EDQUOT, errno.ENAMETOOLONG, errno.ELOOP}


def os_error_message(exc: OSError) -> str | None:
    """``cannot write <path>: <reason>`` for an output-location problem, or None for another OSError."""
    if exc.errno not in _ENVIRONMENT_ERRNOS:
        return None
    path = exc.filename if exc.filename is not None else ""
    reason = os.strerror(exc.errno)
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "no space left on the device" + (f" ({exc.strerror})" if exc.strerror and "space" not in
                                                   exc.strerror.lower() else "")
    elif exc.errno in (errno.ENOTDIR, errno.EEXIST):
        reason = f"{reason}: a part of the path is a regular file, not a folder"
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        reason = f"{reason}: the folder is read-only for this user"
    where = f"cannot write {path}" if path else "cannot write the output"
    return one_line(f"{where}: {reason} (choose another folder with hydra.run.dir=... or hydra.sweep.dir=...)")


def error_message(exc: BaseException) -> str | None:
    """The one-line message of a bad-input error, or None for anything else (a bug)."""
    from hydra.errors import (
        ConfigCompositionException,
        HydraException,
        MissingConfigException,
        OverrideParseException,
    )
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(exc, Refused):
        return error_message(exc.error)
    if isinstance(exc, EdgefmError):
        return one_line(str(exc))
    if isinstance(exc, OSError) and not isinstance(exc, HydraException):  # (Hydra's MissingConfigException is one)
        return os_error_message(exc)
    if isinstance(exc, MissingConfigException) and exc.missing_cfg_file and exc.options is not None:
        message = _missing_option_message(exc)
        if message is not None:
            return message
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
        if isinstance(exc, ConfigCompositionException) and "raised while composing config" in str(exc):
            return composition_message(str(exc))
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
    "EXIT_BAD_INPUT",
    "TRACEBACK_ENV",
    "ConfigError",
    "EdgefmError",
    "FolderLockedError",
    "LaunchError",
    "MergeError",
    "PluginError",
    "Refused",
    "ResourceError",
    "SolverError",
    "error_message",
    "report",
]
