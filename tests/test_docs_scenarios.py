"""docs/SCENARIOS.md: the example scenario it shows is the shipped file, and it runs end to end
through the CLI the way the page says (``--config-dir`` or ``hydra.searchpath``); the rejections
it lists are one-line errors."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from edgefm.cli import main
from edgefm.io import open_run

ROOT = Path(__file__).resolve().parents[1]
PAGE = ROOT / "docs" / "SCENARIOS.md"
EXAMPLE = "docs/examples/conf/scenario/my_line.yaml"
CONFIG_DIR = "docs/examples/conf"
EXAMPLE_BLOCK = re.compile(r"<!-- example: (\S+) -->\n```\w*\n(.*?)^```", flags=re.S | re.M)


def env() -> dict[str, str]:
    # the user's edgefm settings do not leak in; the on-disk compile cache does (content-addressed)
    return {k: v for k, v in os.environ.items() if not k.startswith(("EDGEFM_", "HYDRA_")) or k == "EDGEFM_JAX_CACHE"}


def edgefm(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``edgefm ARGS`` in a fresh process, from the repository root, as the page runs it."""
    return subprocess.run([sys.executable, "-m", "edgefm", *args], cwd=ROOT, env=env(), capture_output=True,
                          text=True, timeout=timeout)


def test_the_page_shows_the_example_file_verbatim():
    blocks = EXAMPLE_BLOCK.findall(PAGE.read_text())
    assert [path for path, _ in blocks] == [EXAMPLE]
    for path, text in blocks:
        assert text == (ROOT / path).read_text(), path
    # and the page tells how to run it
    assert f"edgefm --config-dir {CONFIG_DIR} scenario=my_line" in PAGE.read_text()


@pytest.fixture(scope="module")
def example_run(tmp_path_factory):
    """The page's second command (strategy lbrr, the debug horizon) on the example scenario."""
    run_dir = tmp_path_factory.mktemp("my_line") / "run"
    done = edgefm("--config-dir", CONFIG_DIR, "scenario=my_line", "strategy=lbrr", "debug=default",
                  f"hydra.run.dir={run_dir}")
    return done, run_dir


def test_the_example_runs_through_the_cli_with_its_own_topology_and_task_mix(example_run):
    done, run_dir = example_run
    assert done.returncode == 0, done.stderr[-3000:]
    ds = open_run(run_dir / "results.nc")
    spec = yaml.safe_load((ROOT / EXAMPLE).read_text())

    assert ds.attrs["scenario"] == "my_line" and ds.strategy.item() == "lbrr"
    assert list(ds.node.values) == list(spec["nodes"]) and list(ds.node_kind.values) == list(spec["nodes"].values())
    assert list(ds.service.values) == list(spec["services"])
    assert list(ds.service_kind.values) == [s["kind"] for s in spec["services"].values()]
    assert list(ds.task_type.values) == list(spec["task_types"]) and list(ds.user.values) == ["cam1", "cam2", "cam3"]
    assert ds.sizes["link"] == len(spec["links"]) and ds.sizes["slot"] == 60 and ds.sizes["realisation"] == 2

    # the keys that override their defaults took effect (one instance; the run's labels squeezed out)
    one = ds.squeeze()
    deadline = one.deadline
    assert 40 <= deadline.sel(task_type="detect") <= 80 and 60 <= deadline.sel(task_type="fuse") <= 100
    rate = one.arrival_rate
    assert rate.sel(user="cam2", task_type="fuse") == 0  # cam2 issues detect only
    assert np.all((rate.sel(user="cam3") >= 0.05) & (rate.sel(user="cam3") <= 0.1))
    assert np.all((rate.sel(user="cam1") >= 0.1) & (rate.sel(user="cam1") <= 0.4))
    gateways = [list(spec["nodes"]).index(u["gateway"]) for u in spec["users"]]
    assert one.user_gateway.values.tolist() == gateways
    rates = one.core_rate
    assert 12 <= rates.sel(service="detector") <= 24 and 8 <= rates.sel(service="fusion") <= 16

    # a run like any other: tasks arrive and finish, nothing is refused, every task is accounted for
    assert int(ds.tasks_arrived.sum()) > 0 and int(ds.tasks_ontime.sum()) > 0
    assert int(ds.list_overflow.sum()) == 0 and int(ds.invalid_actions.sum()) == 0
    assert int(ds.capacity_violations.sum()) == 0
    conserved = ds.tasks_ontime + ds.tasks_late + ds.tasks_unfinished + ds.tasks_dropped
    assert (conserved == ds.tasks_arrived).all()


def test_the_search_path_override_finds_the_scenario_too(capsys):
    status = main([f"hydra.searchpath=[file://{ROOT / CONFIG_DIR}]", "scenario=my_line", "--cfg", "job"])
    assert status == 0
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["scenario"]["name"] == "my_line" and list(config["scenario"]["nodes"]) == [
        "CAM1", "CAM2", "CAM3", "ES1", "ES2", "ES3"]


def test_without_the_search_path_the_scenario_is_unknown(tmp_path, capsys):
    status = main(["scenario=my_line", f"hydra.run.dir={tmp_path}"])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1
    assert lines[0].startswith("edgefm: error: scenario = 'my_line' is invalid") and "paper" in lines[0]


REJECTED = {  # overrides of the example -> text of the one-line error (docs/SCENARIOS.md, "What validation rejects")
    "a service with two successors": (
        ["scenario.task_types.detect.edges=[[camera_preprocess,detector],[detector,alert],[camera_preprocess,alert]]"],
        ["scenario.task_types.detect.edges", "at most one successor"]),
    "a key of the other kind": (["scenario.services.alert.rate=[1,2]"], ["scenario.services.alert.rate",
                                                                        "no rate for a light service"]),
    "a graph that is not connected": (["scenario.links=[[ES1,ES2],[CAM1,ES1],[CAM2,ES2],[CAM3,ES3]]"],
                                      ["scenario.links", "a connected node graph"]),
    "a range with low > high": (["scenario.task_defaults.deadline=[80,40]"],
                                ["scenario.task_defaults.deadline", "low > high"]),
    "a misspelt key": (["scenario.nodez=1"], ["scenario.nodez"]),
}


@pytest.mark.parametrize("case", list(REJECTED))
def test_what_validation_rejects_ends_in_one_line(case, tmp_path, capsys):
    overrides, expected = REJECTED[case]
    status = main(["--config-dir", str(ROOT / CONFIG_DIR), "scenario=my_line", "strategy=lbrr",
                   f"hydra.run.dir={tmp_path}", *overrides])
    lines = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(lines) == 1 and lines[0].startswith("edgefm: error: "), lines
    for text in expected:
        assert text in lines[0], (text, lines[0])
    assert not (tmp_path / "results.nc").exists()
