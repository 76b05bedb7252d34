"""One build step beyond pyproject.toml: the wheel carries the repository's ``conf/`` as package data.

The Hydra configuration lives at the top of the repository (``conf/``), outside the ``edgefm``
package. A wheel built from pyproject.toml alone would leave it out, and an installed ``edgefm``
would find no config. `BuildPy` copies every ``conf/**/*.yaml`` into ``<build>/edgefm/conf/`` after
the packages are built, so the wheel installs them as ``site-packages/edgefm/conf/``, where
`edgefm.config.schema.default_config_dir` looks when there is no checkout around the package.
An editable install copies nothing: it reads the checkout's ``conf/`` directly. Everything else
about the build is in pyproject.toml; MANIFEST.in puts ``conf/`` in the sdist, so a wheel built
from the sdist (``python -m build``) has it too.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

CONF = Path(__file__).resolve().parent / "conf"
PACKAGED = Path("edgefm") / "conf"  # inside the build folder, as it lands in site-packages


class BuildPy(build_py):
    """build_py, then ``conf/**/*.yaml`` copied to ``edgefm/conf/`` in the build folder."""

    def _conf_files(self) -> list[Path]:
        if not (CONF / "config.yaml").is_file():
            raise RuntimeError(f"{CONF / 'config.yaml'} not found: edgefm is built from a checkout or an sdist with conf/")
        return sorted(CONF.rglob("*.yaml"))

    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):  # an editable install reads the checkout's conf/
            return
        target = Path(self.build_lib) / PACKAGED
        shutil.rmtree(target, ignore_errors=True)  # no file of an earlier build that conf/ has lost
        for src in self._conf_files():
            dest = target / src.relative_to(CONF)
            self.mkpath(str(dest.parent))
            self.copy_file(str(src), str(dest))

    def get_outputs(self, include_bytecode: bool = True) -> list[str]:
        outputs = super().get_outputs(include_bytecode)
        if getattr(self, "editable_mode", False):
            return outputs
        target = Path(self.build_lib) / PACKAGED
        return outputs + [str(target / src.relative_to(CONF)) for src in self._conf_files()]


setup(cmdclass={"build_py": BuildPy})
