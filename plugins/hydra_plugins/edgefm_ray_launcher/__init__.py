"""edgefm's Hydra launcher for Ray clusters: ``hydra/launcher=edgefm_ray`` (``conf/hydra/launcher/ray_cluster.yaml``
sets it up for edgefm; docs/CLUSTER.md).

Every job of a multirun is one Ray task with the resources of ``hydra.launcher.ray.remote``
(``num_cpus``, ``num_gpus``, ``memory``, ``resources``, ``max_retries``, any option of a Ray task).
The driver (the ``edgefm -m`` process) composes each job's config, submits it, logs the jobs done and
the time left as they finish, and hands Hydra the results in job order; a task whose worker died is
retried by Ray (``max_retries``), and one lost for good is a failed job with a one-line error. The
worker runs Hydra's ``run_job`` as Hydra's own launchers do, in the submitting folder when the node
has it (a shared file system), with the driver's environment variables named by
``hydra.launcher.env`` (``EDGEFM_*``: the compile cache ``EDGEFM_JAX_CACHE`` among them).

This module and `config` are imported when Hydra scans its plugins: nothing here imports Ray.
"""

__version__ = "0.1.0"
