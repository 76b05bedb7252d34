"""A non-editable install works: a wheel built from this checkout, installed into a fresh environment,
runs ``edgefm debug=default``, ``edgefm plugins`` and the conformance kit from outside the source tree.

The wheel is built without build isolation (no download: setuptools and wheel come with the test
extra) from a copy of the sources, so the checkout gets no ``build/``. The fresh environment is a venv
without pip and without edgefm; its dependencies are those of the environment running the tests,
seen through a folder of links to that environment's site-packages that leaves out every edgefm
entry (the editable install's finder, its ``.pth`` files and its metadata): only the wheel's edgefm
can be imported, which each test asserts.
"""

from __future__ import annotations

import json
import os
import shutil
import site
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "edgefm", "plugins", "conf")
BUILT_INS = {
    "placement": ["least_loaded", "milp", "milp_relaxed"],
    "controller": ["ga", "lbrr", "propavg", "proposed"],
    "channel": ["nakagami", "off", "rayleigh"],
    "workload": ["mmpp", "poisson"],
    "failure": ["link_down", "node_down", "none", "random"],
}
TIMEOUT = 300  # s, per command


def _run(cmd, *, cwd, env, check=True):
    done = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT)
    if check and done.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {done.returncode}:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return done


def _ignore_build_outputs(folder, names):
    return [n for n in names if n in ("__pycache__", "build", "dist") or n.endswith((".egg-info", ".pyc"))]


def _dependency_links(target: Path) -> Path:
    """``target``: a link to every entry of this environment's site-packages but edgefm's own."""
    target.mkdir()
    for folder in map(Path, site.getsitepackages()):
        for entry in sorted(folder.iterdir()) if folder.is_dir() else []:
            name = entry.name
            if name.startswith(("edgefm", "__editable__")) or name.endswith(".pth") or (target / name).exists():
                continue
            (target / name).symlink_to(entry)
    return target


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(venv, run folder, environment variables, wheel) of the wheel installed into a fresh venv."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=_ignore_build_outputs)
        else:
            shutil.copy2(path, src / name)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "EDGEFM_CONFIG_DIR", "EDGEFM_DISABLE_PLUGINS")}
    env["PYTHONNOUSERSITE"] = "1"
    _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "--no-index", "-q",
          "-w", str(tmp / "dist"), str(src)], cwd=tmp, env=env)
    (wheel,) = (tmp / "dist").glob("edgefm-*.whl")
    venv = tmp / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp, env=env)
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
         cwd=tmp, env=env)
    purelib = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                   cwd=tmp, env=env).stdout.strip()
    (Path(purelib) / "_edgefm_test_dependencies.pth").write_text(f"{_dependency_links(tmp / 'dependencies')}\n")
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    run_dir = tmp / "elsewhere"
    run_dir.mkdir()
    return venv, run_dir, env, wheel, Path(purelib)


def test_the_wheel_carries_conf_and_the_new_environment_imports_it(installed):
    venv, run_dir, env, wheel, purelib = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    conf = sorted(str(p.relative_to(ROOT / "conf")) for p in (ROOT / "conf").rglob("*.yaml"))
    assert conf and [c for c in conf if f"edgefm/conf/{c}" not in names] == []
    probe = ("import json, edgefm, edgefm_baselines, importlib.metadata as md; "
             "from edgefm.config.schema import default_config_dir; from edgefm.testing import small_scenario_path; "
             "print(json.dumps({'edgefm': edgefm.__file__, 'plugin': edgefm_baselines.__file__, "
             "'conf': str(default_config_dir()), 'small': str(small_scenario_path()), "
             "'dists': [str(d._path) for d in md.distributions() if d.metadata['Name'] == 'edgefm']}))")
    seen = json.loads(_run([str(venv / "bin" / "python"), "-c", probe], cwd=run_dir, env=env).stdout)
    assert Path(seen["edgefm"]) == purelib / "edgefm" / "__init__.py"
    assert Path(seen["plugin"]) == purelib / "edgefm_baselines" / "__init__.py"
    assert Path(seen["conf"]) == purelib / "edgefm" / "conf" and (Path(seen["conf"]) / "config.yaml").is_file()
    assert Path(seen["small"]) == purelib / "edgefm" / "conf" / "scenario" / "small.yaml"
    assert [Path(d).parent for d in seen["dists"]] == [purelib]  # one edgefm: the wheel's


def test_edgefm_plugins_lists_the_built_ins(installed):
    venv, run_dir, env, _, _ = installed
    out = _run([str(venv / "bin" / "edgefm"), "plugins"], cwd=run_dir, env=env).stdout
    rows = {tuple(line.split("│")[1:3]) for line in out.splitlines() if line.count("│") >= 5}
    listed = {(kind.strip(), name.strip()) for kind, name in rows}
    assert listed == {(kind, name) for kind, names in BUILT_INS.items() for name in names}


def test_edgefm_debug_run_writes_its_dataset_outside_the_source_tree(installed):
    import xarray as xr

    venv, run_dir, env, _, _ = installed
    _run([str(venv / "bin" / "edgefm"), "debug=default"], cwd=run_dir, env=env)
    (path,) = (run_dir / "outputs" / "debug" / "runs").glob("*/results.nc")
    with xr.open_dataset(path) as ds:
        assert ds.sizes["realisation"] == 2 and ds.sizes["slot"] == 60 and ds.sizes["node"] == 3  # conf/debug, small
        assert int(ds.tasks_arrived.sum()) > 0
        total = ds.tasks_ontime + ds.tasks_late + ds.tasks_unfinished + ds.tasks_dropped
        assert (total == ds.tasks_arrived).all()


def test_the_kit_runs_on_built_in_plugins_from_the_wheel(installed):
    venv, run_dir, env, _, purelib = installed
    script = ("from edgefm.testing import check_channel, check_failure, check_placement, check_workload\n"
              "from edgefm_baselines import LeastLoadedPlacement\nfrom edgefm_channels import NakagamiChannel\n"
              "from edgefm_failures import RandomFailures\nfrom edgefm_workloads import PoissonWorkload\n"
              "check_placement(LeastLoadedPlacement()); check_channel(NakagamiChannel())\n"
              "check_workload(PoissonWorkload()); check_failure(RandomFailures())\nprint('kit passed')\n")
    assert _run([str(venv / "bin" / "python"), "-c", script], cwd=run_dir, env=env).stdout.strip() == "kit passed"
    failing = ("import dataclasses\nfrom edgefm.testing import check_workload\n"
               "from edgefm_workloads import PoissonWorkload\n"
               "class Lying(PoissonWorkload):\n    def sample(self, state, key, rate, slot_ms):\n"
               "        return super().sample(state, key, rate * 1.5, slot_ms)\ncheck_workload(Lying())\n")
    done = _run([str(venv / "bin" / "python"), "-c", failing], cwd=run_dir, env=env, check=False)
    assert done.returncode == 1 and "AssertionError: workload 'poisson': mean arrivals of (user" in done.stderr
