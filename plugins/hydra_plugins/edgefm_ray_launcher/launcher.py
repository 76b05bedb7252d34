"""The Hydra `Launcher` (its work is in `_core`, imported when a multirun launches)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hydra.core.utils import JobReturn
from hydra.plugins.launcher import Launcher
from hydra.types import HydraContext, TaskFunction
from omegaconf import DictConfig, OmegaConf


class RayLauncher(Launcher):
    """Each job of a multirun as a Ray task (`_core.launch`)."""

    def __init__(self, ray: Any = None, env: Any = None) -> None:
        ray = OmegaConf.to_container(ray, resolve=True) if OmegaConf.is_config(ray) else dict(ray or {})
        self.init: dict[str, Any] = dict(ray.get("init") or {})
        self.remote: dict[str, Any] = dict(ray.get("remote") or {})
        self.env: list[str] = [str(e) for e in (OmegaConf.to_container(env) if OmegaConf.is_config(env) else env or [])]
        self.config: DictConfig | None = None
        self.task_function: TaskFunction | None = None
        self.hydra_context: HydraContext | None = None

    def setup(self, *, hydra_context: HydraContext, task_function: TaskFunction, config: DictConfig) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(self, job_overrides: Sequence[Sequence[str]], initial_job_idx: int) -> Sequence[JobReturn]:
        from . import _core

        return _core.launch(self, job_overrides, initial_job_idx)
