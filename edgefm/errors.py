"""Errors that reach the user as one line: the field, the value and what is accepted."""

from __future__ import annotations


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
