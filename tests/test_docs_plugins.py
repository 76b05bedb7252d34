"""docs/PLUGINS.md stays true: every example it shows is its file under docs/examples/plugins/,
verbatim, and every file there is shown; each example registers as a plugin and passes the
conformance kit; the guide's other Python snippets run; and the examples, installed as the
distribution the guide describes, are listed and run by the ``edgefm`` command."""

from __future__ import annotations

import importlib
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pluggy
import pytest

from edgefm import hookspecs, testing
from edgefm.plugins import Registry, config_schema

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "PLUGINS.md"
EXAMPLES = ROOT / "docs" / "examples" / "plugins"
LANGUAGE = {".py": "python", ".toml": "toml", ".yaml": "yaml"}
# a file shown in the guide: its caption (the path, a link to it from docs/), then the fenced file
SHOWN = re.compile(r"^File: \[`(?P<path>[^`]+)`\]\((?P<link>[^)]+)\)\n\n```(?P<lang>\w+)\n(?P<body>.*?)^```$",
                   flags=re.M | re.S)
FENCE = re.compile(r"^```(?P<lang>\w*)\n(?P<body>.*?)^```$", flags=re.M | re.S)
# module -> (kind, name, the options the kit's instance is built with)
PLUGINS = {
    "round_robin": ("placement", "round_robin", {}),
    "first_fit": ("controller", "first_fit", {}),
    "shadowed": ("channel", "shadowed", {}),
    "sinusoidal": ("workload", "sinusoidal", {}),
    "maintenance": ("failure", "maintenance", {"nodes": ["ES1"]}),  # a node of the kit's scenario
}
TIMEOUT = 300  # s, per command


def guide() -> str:
    return GUIDE.read_text()


def example_files() -> list[str]:
    skip = ("__pycache__", "build", "dist")
    return sorted(
        p.relative_to(ROOT).as_posix() for p in EXAMPLES.rglob("*")
        if p.is_file() and not any(part in skip or part.endswith(".egg-info") for part in p.parts) and p.suffix != ".pyc"
    )


@pytest.fixture(scope="module")
def on_path():
    """docs/examples/plugins on sys.path: ``edgefm_examples`` importable as an uninstalled package."""
    sys.path.insert(0, str(EXAMPLES))
    yield
    sys.path.remove(str(EXAMPLES))
    for name in [m for m in sys.modules if m == "edgefm_examples" or m.startswith("edgefm_examples.")]:
        del sys.modules[name]


def test_every_example_file_is_shown_verbatim_once():
    shown = list(SHOWN.finditer(guide()))
    assert sorted(m["path"] for m in shown) == example_files()  # every file, once
    assert {Path(p).stem for p in example_files() if p.endswith(".py")} == {*PLUGINS, "__init__"}
    for m in shown:
        path = ROOT / m["path"]
        assert m["body"] == path.read_text(), m["path"]
        assert m["lang"] == LANGUAGE[path.suffix], m["path"]
        assert (GUIDE.parent / m["link"]).resolve() == path, m["path"]


def test_the_entry_points_name_every_example_module():
    import tomllib

    project = tomllib.loads((EXAMPLES / "pyproject.toml").read_text())["project"]
    assert sorted(project["entry-points"]["edgefm"].values()) == sorted(f"edgefm_examples.{m}" for m in PLUGINS)


@pytest.mark.parametrize("module_name", list(PLUGINS))
def test_each_example_registers_and_passes_the_kit(module_name, on_path):
    kind, name, options = PLUGINS[module_name]
    module = importlib.import_module(f"edgefm_examples.{module_name}")
    pm = pluggy.PluginManager("edgefm")
    pm.add_hookspecs(hookspecs)
    pm.register(module, name=f"examples_{module_name}")
    registry = Registry.from_plugin_manager(pm)
    assert [(row.kind, row.name) for row in registry.entries()] == [(kind, name)]
    cls = registry.resolve(kind, name)
    from omegaconf import OmegaConf

    schema = OmegaConf.structured(config_schema(kind, cls))  # a Hydra schema: what <kind>=<name> composes
    assert schema.name == name and set(schema) == {"name", *(f for f in cls.Config.__dataclass_fields__)}
    testing.check(cls(**options))


def test_the_guides_snippets_run(on_path):
    files = [(m.start(), m.end()) for m in SHOWN.finditer(guide())]
    snippets = [m["body"] for m in FENCE.finditer(guide())
                if m["lang"] == "python" and not any(a <= m.start() < b for a, b in files)]
    assert len(snippets) == 2  # the in-process registration and a plugin's kit tests
    for code in snippets:
        namespace: dict = {}
        exec(compile(code, str(GUIDE), "exec"), namespace)
        for test in [v for k, v in namespace.items() if k.startswith("test_") and callable(v)]:
            test()


# ----------------------------------------------------------------------------------------------
# installed: the distribution of docs/examples/plugins, through the edgefm command


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """(environment, run folder): the examples pip-installed into a folder on PYTHONPATH."""
    tmp = tmp_path_factory.mktemp("examples")
    src = tmp / "src"
    shutil.copytree(EXAMPLES, src, ignore=lambda d, names: [n for n in names if n in ("__pycache__", "build")
                                                            or n.endswith(".egg-info")])
    env = {k: v for k, v in os.environ.items() if k not in ("EDGEFM_CONFIG_DIR", "EDGEFM_DISABLE_PLUGINS")}
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index",
                           "-q", "--target", str(tmp / "site"), str(src)],
                          env=env, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    env["PYTHONPATH"] = os.pathsep.join([str(tmp / "site"), *filter(None, [env.get("PYTHONPATH")])])
    run_dir = tmp / "run"
    run_dir.mkdir()
    return env, run_dir


def edgefm(*args, env, cwd):
    done = subprocess.run([sys.executable, "-m", "edgefm", *args], env=env, cwd=cwd, capture_output=True, text=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, f"edgefm {' '.join(args)} exited {done.returncode}: {done.stderr[-3000:]}"
    return done.stdout


def test_the_installed_examples_are_listed(installed):
    env, run_dir = installed
    rows = [[cell.strip() for cell in line.split("│")[1:4]] for line in edgefm("plugins", env=env, cwd=run_dir).splitlines()
            if line.count("│") >= 5]
    ours = sorted((kind, name) for kind, name, dist in rows if dist == "edgefm-examples")
    assert ours == sorted((kind, name) for kind, name, _ in PLUGINS.values())


def test_the_installed_examples_run_through_the_cli(installed):
    import xarray as xr

    env, run_dir = installed
    edgefm("debug=default", "hydra.searchpath=[pkg://edgefm_examples.conf]", "placement=round_robin",
           "controller=first_fit", "channel=shadowed", "workload=sinusoidal_daily", "workload.load=2",
           "failure=maintenance", "failure.nodes=[ED2]", env=env, cwd=run_dir)
    (path,) = (run_dir / "outputs" / "debug" / "runs").glob("*/results.nc")
    with xr.open_dataset(path) as ds:
        assert ds.attrs["workload_model"] == "sinusoidal" and ds.attrs["failure_model"] == "maintenance"
        assert ds["load"].values.tolist() == [2.0]
        up = ds.node_up.squeeze().transpose("realisation", "slot", "node").values  # [R,T,V], the debug horizon
        assert up.shape == (2, 60, 3)
        # maintenance: ED2 down for 10 ms of every 100 from 0, so in slots 0-9; the rest always up
        assert (up[:, :10, 1] == 0).all() and (up[:, 10:, 1] == 1).all() and (up[:, :, [0, 2]] == 1).all()
        assert int(ds.tasks_arrived.sum()) > 0
        total = ds.tasks_ontime + ds.tasks_late + ds.tasks_unfinished + ds.tasks_dropped
        assert (total == ds.tasks_arrived).all()
        assert int(ds.invalid_actions.sum()) == 0 and int(ds.capacity_violations.sum()) == 0
