"""A Hydra app of many small jobs for tests/test_cluster.py: job ``x`` writes ``x`` to ``x.txt`` in its
job folder; the job ``x == kill`` kills its own process (SIGKILL) the first time, after writing the
file ``marker``, so that only a launcher that runs it again completes it.

    python tests/cluster_app.py -m 'x=range(0,100)' kill=7 marker=/tmp/killed hydra/launcher=edgefm_ray
"""

import os
import signal
from pathlib import Path

import hydra
from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig

ConfigStore.instance().store(name="app", node={"x": 0, "kill": -1, "marker": ""})


@hydra.main(config_path=None, config_name="app", version_base="1.3")
def task(cfg) -> int:
    if cfg.x == cfg.kill and cfg.marker and not Path(cfg.marker).exists():
        Path(cfg.marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
    (Path(HydraConfig.get().runtime.output_dir) / "x.txt").write_text(str(cfg.x))
    return int(cfg.x)


if __name__ == "__main__":
    task()
