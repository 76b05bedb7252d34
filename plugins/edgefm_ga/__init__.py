"""Controller `ga`: a genetic algorithm over light instance counts (MODEL.md §8, docs/SEMANTICS.md §10)."""

from edgefm import hookimpl
from edgefm_ga.controller import GAController


@hookimpl
def edgefm_register_controllers():
    return [GAController]


__all__ = ["GAController"]
