"""The launcher's structured config, registered as ``hydra/launcher=edgefm_ray``. (No ``from __future__
import annotations`` here: Hydra's plugin scan runs this module outside ``sys.modules``, where
dataclasses cannot resolve string annotations.)"""

from dataclasses import dataclass, field
from typing import Any

from hydra.core.config_store import ConfigStore


@dataclass
class RayConf:
    # keyword arguments of ray.init: address "auto" (the cluster this node belongs to, or $RAY_ADDRESS),
    # "host:port" (a cluster's head), or null (start a Ray instance on this machine for the multirun)
    init: dict[str, Any] = field(default_factory=lambda: {"address": "auto"})
    # options of each job's Ray task (ray.remote): its resources and how often a task whose worker
    # died is run again
    remote: dict[str, Any] = field(default_factory=lambda: {"num_cpus": 1, "num_gpus": 0, "max_retries": 1})


@dataclass
class EdgefmRayLauncherConf:
    _target_: str = "hydra_plugins.edgefm_ray_launcher.launcher.RayLauncher"
    ray: RayConf = field(default_factory=RayConf)
    # the driver's environment variables (names, or fnmatch patterns) that each job gets
    env: list[str] = field(default_factory=lambda: ["EDGEFM_*"])


ConfigStore.instance().store(group="hydra/launcher", name="edgefm_ray", node=EdgefmRayLauncherConf,
                             provider="edgefm_ray_launcher")
