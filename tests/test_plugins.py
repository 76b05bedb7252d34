"""The plugin host: entry-point discovery, the Registry, ConfigStore registration, `edgefm plugins`.

Nothing here depends on the built-in plugins: the fake third-party plugins are real distributions
(a ``*.dist-info`` folder with METADATA and entry_points.txt next to a module) on a temporary
``sys.path`` entry, and edgefm's own entry points are disabled with EDGEFM_DISABLE_PLUGINS=edgefm.
"""

from __future__ import annotations

import dataclasses
import io
import os
import subprocess
import sys
from pathlib import Path

import pluggy
import pytest
from hydra.core.config_store import ConfigStore

import edgefm
from edgefm import hookspecs
from edgefm.errors import ConfigError, PluginError
from edgefm.interfaces import AbstractChannelModel, AbstractController
from edgefm.plugins import (
    KINDS,
    Registry,
    build_plugin_manager,
    get_plugin_manager,
    print_plugins,
    register_configs,
)

REPO_ROOT = Path(__file__).resolve().parents[1]

CONTROLLER_MODULE = '''
import edgefm
from edgefm.interfaces import AbstractController, traced


class ThirdPartyController(AbstractController):
    """A controller written outside edgefm."""

    name = "{name}"

    gain: float = traced(1.5)

    def act(self, state, obs, ctx, params, key):
        return None, state


@edgefm.hookimpl
def edgefm_register_controllers():
    return [ThirdPartyController]
'''


def write_distribution(root: Path, dist: str, version: str, entry_points: dict[str, str]) -> None:
    """A minimal installed distribution, as pip would leave it in site-packages."""
    info = root / f"{dist}-{version}.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
    lines = "".join(f"{name} = {target}\n" for name, target in entry_points.items())
    (info / "entry_points.txt").write_text(f"[edgefm]\n{lines}")


def write_controller_plugin(root: Path, module: str, dist: str, version: str, ep: str, ctrl: str) -> None:
    (root / f"{module}.py").write_text(CONTROLLER_MODULE.format(name=ctrl))
    write_distribution(root, dist, version, {ep: module})


@pytest.fixture
def site(tmp_path, monkeypatch):
    """A temporary site-packages on sys.path, with edgefm's own plugins disabled."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("EDGEFM_DISABLE_PLUGINS", "edgefm")
    monkeypatch.delenv("EDGEFM_TRACE_PLUGINS", raising=False)
    get_plugin_manager.cache_clear()
    before = set(sys.modules)
    yield root
    for name in set(sys.modules) - before:  # fake plugin modules must not leak into other tests
        if getattr(sys.modules[name], "__file__", "") and str(root) in sys.modules[name].__file__:
            del sys.modules[name]
    get_plugin_manager.cache_clear()


def run_cli(args: list[str], site: Path, disable: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(REPO_ROOT)])
    env["EDGEFM_DISABLE_PLUGINS"] = disable
    env.pop("EDGEFM_TRACE_PLUGINS", None)
    return subprocess.run(
        [sys.executable, "-m", "edgefm.cli_plugins", *args],
        env=env, cwd=site, capture_output=True, text=True, timeout=60,
    )


def fresh_plugin_manager(*plugins) -> pluggy.PluginManager:
    pm = pluggy.PluginManager("edgefm")
    pm.add_hookspecs(hookspecs)
    for plugin in plugins:
        pm.register(plugin)
    return pm


def controller_plugin(*classes):
    class Plugin:
        @edgefm.hookimpl
        def edgefm_register_controllers(self):
            return list(classes)

    return Plugin()


def make_controller(name: str, config=None) -> type:
    @dataclasses.dataclass
    class Config:
        gain: float = 1.0

    attrs = {"name": name, "Config": config or Config, "act": lambda self, *a: (None, None)}
    return type(f"Ctrl_{name or 'anon'}", (AbstractController,), attrs)


# ----------------------------------------------------------------------------------------------
# A third-party plugin, installed the way pip would install it


def test_third_party_plugin_is_listed_with_its_distribution_and_version(site):
    write_controller_plugin(site, "thirdparty_edgefm", "thirdparty_edgefm", "0.3.1", "thirdparty", "thirdparty_ctrl")

    result = run_cli([], site, disable="edgefm")

    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if "thirdparty_ctrl" in line)
    cells = [cell.strip() for cell in row.strip().strip("│").split("│")]
    assert cells == ["controller", "thirdparty_ctrl", "thirdparty_edgefm", "0.3.1", "A controller written outside edgefm."]

    filtered = run_cli(["--kind", "channel"], site, disable="edgefm")
    assert filtered.returncode == 1 and "No channel plugins" in filtered.stdout


def test_disabling_the_only_plugin_leaves_an_empty_registry_and_says_how_to_fix_it(site):
    write_controller_plugin(site, "thirdparty_edgefm", "thirdparty_edgefm", "0.3.1", "thirdparty", "thirdparty_ctrl")

    result = run_cli([], site, disable="edgefm, thirdparty")

    assert result.returncode == 1
    assert "thirdparty_ctrl" not in result.stdout
    assert "No edgefm plugins were found" in result.stdout
    assert "pip install -e ." in result.stdout


def test_disable_by_entry_point_or_distribution_name(site, monkeypatch):
    write_controller_plugin(site, "thirdparty_edgefm", "thirdparty_edgefm", "0.3.1", "thirdparty", "thirdparty_ctrl")
    assert Registry.from_plugin_manager(build_plugin_manager()).names("controller") == ["thirdparty_ctrl"]

    for disabled in ("edgefm,thirdparty", "edgefm,thirdparty-edgefm", " thirdparty_edgefm , edgefm"):
        monkeypatch.setenv("EDGEFM_DISABLE_PLUGINS", disabled)
        pm = build_plugin_manager()
        assert pm.get_plugin("thirdparty") is None
        assert Registry.from_plugin_manager(pm).names("controller") == []


def test_entry_points_of_the_same_group_are_attributed_to_their_distribution(site):
    write_controller_plugin(site, "tp_plugin", "tp-dist", "2.0", "tp", "tp_ctrl")

    registry = Registry.default()

    (row,) = registry.entries()
    assert row == ("controller", "tp_ctrl", "tp-dist", "2.0", "A controller written outside edgefm.")
    assert registry.resolve("controller", "tp_ctrl").__module__ == "tp_plugin"
    assert get_plugin_manager() is get_plugin_manager()  # cached


# ----------------------------------------------------------------------------------------------
# Errors


def test_duplicate_component_name_names_both_distributions(site):
    write_controller_plugin(site, "alpha_plugin", "alpha_edgefm", "1.0", "alpha", "shared_ctrl")
    write_controller_plugin(site, "beta_plugin", "beta_edgefm", "2.0", "beta", "shared_ctrl")

    with pytest.raises(PluginError) as err:
        Registry.from_plugin_manager(build_plugin_manager())

    message = str(err.value)
    assert "shared_ctrl" in message
    assert "alpha_edgefm 1.0" in message and "beta_edgefm 2.0" in message


def test_duplicate_entry_point_name_names_both_distributions(site):
    (site / "gamma_plugin.py").write_text(CONTROLLER_MODULE.format(name="gamma_ctrl"))
    (site / "delta_plugin.py").write_text(CONTROLLER_MODULE.format(name="delta_ctrl"))
    write_distribution(site, "gamma_edgefm", "1.0", {"same": "gamma_plugin"})
    write_distribution(site, "delta_edgefm", "1.0", {"same": "delta_plugin"})

    with pytest.raises(PluginError, match="same") as err:
        build_plugin_manager()

    assert "gamma_edgefm" in str(err.value) and "delta_edgefm" in str(err.value)


def test_a_plugin_that_cannot_be_imported_is_a_plugin_error_naming_entry_point_and_distribution(site):
    write_distribution(site, "broken_edgefm", "0.1", {"broken": "module_that_does_not_exist"})

    with pytest.raises(PluginError) as err:
        get_plugin_manager()

    message = str(err.value)
    assert "'broken'" in message and "broken_edgefm 0.1" in message
    assert "module_that_does_not_exist" in message
    assert "EDGEFM_DISABLE_PLUGINS=broken" in message


def test_a_hookimpl_for_an_unknown_hook_is_a_plugin_error(site):
    (site / "typo_plugin.py").write_text(
        "import edgefm\n\n@edgefm.hookimpl\ndef edgefm_register_controlers():\n    return []\n"
    )
    write_distribution(site, "typo_edgefm", "0.1", {"typo": "typo_plugin"})

    with pytest.raises(PluginError, match="typo_edgefm") as err:
        build_plugin_manager()
    assert "edgefm_register_controlers" in str(err.value)


def test_unknown_name_is_a_config_error_listing_the_known_names():
    registry = Registry.from_plugin_manager(
        fresh_plugin_manager(controller_plugin(make_controller("zeta"), make_controller("alpha")))
    )

    with pytest.raises(ConfigError) as err:
        registry.resolve("controller", "lbr")

    assert err.value.field == "controller" and err.value.value == "lbr"
    assert err.value.accepted == "one of: alpha, zeta"
    assert "one of: alpha, zeta" in str(err.value)


@pytest.mark.parametrize(
    ("component", "expected"),
    [
        (make_controller(""), "has no `name`"),
        (make_controller("nodc", config=type("Config", (), {"gain": 1.0})), "not a dataclass"),
        (make_controller("has space"), "whitespace"),
        (type("Chan", (AbstractChannelModel,), {"name": "chan", "uplink_rate": lambda *a: None}), "expected 'controller'"),
        ("not a class", "not a class"),
    ],
)
def test_invalid_component_class_is_a_plugin_error_naming_the_plugin(component, expected):
    plugin = controller_plugin(component)
    pm = fresh_plugin_manager()
    pm.register(plugin, name="sloppy_plugin")

    with pytest.raises(PluginError, match=expected) as err:
        Registry.from_plugin_manager(pm)

    assert "sloppy_plugin" in str(err.value)


# ----------------------------------------------------------------------------------------------
# ConfigStore, the table, the reserved hook, tracing


def test_register_configs_stores_each_config_as_group_base_name(site):
    write_controller_plugin(site, "thirdparty_edgefm", "thirdparty_edgefm", "0.3.1", "thirdparty", "thirdparty_ctrl")
    registry = Registry.default()

    register_configs(registry)

    node = ConfigStore.instance().load("controller/base_thirdparty_ctrl.yaml")
    assert node.group == "controller"
    assert node.node.gain == 1.5
    assert node.node.name == "thirdparty_ctrl"  # which plugin the group option selects
    assert "base_thirdparty_ctrl.yaml" in ConfigStore.instance().list("controller")
    assert "thirdparty_ctrl.yaml" not in ConfigStore.instance().list("controller")  # yaml_dirs=None: no alias


def test_print_plugins_on_an_empty_registry_returns_1_with_the_fix():
    out = io.StringIO()

    code = print_plugins(Registry.from_plugin_manager(fresh_plugin_manager()), file=out)

    assert code == 1
    assert "No edgefm plugins were found" in out.getvalue()
    assert "not installed" in out.getvalue() and "pip install -e ." in out.getvalue()


def test_print_plugins_lists_every_kind_in_order():
    class Plugin:
        @edgefm.hookimpl
        def edgefm_register_controllers(self):
            return [make_controller("ctrl_b"), make_controller("ctrl_a")]

        @edgefm.hookimpl
        def edgefm_register_channel_models(self):
            return [type("Chan", (AbstractChannelModel,), {"name": "chan", "description": "[bold]x", "uplink_rate": lambda *a: None})]

    out = io.StringIO()
    code = print_plugins(Registry.from_plugin_manager(fresh_plugin_manager(Plugin())), file=out)

    assert code == 0
    names = [line.split("│")[2].strip() for line in out.getvalue().splitlines() if line.count("│") == 6]
    assert names == ["ctrl_a", "ctrl_b", "chan"]
    assert "[bold]x" in out.getvalue()  # descriptions are not rich markup
    assert "<unregistered>" in out.getvalue()


def test_hookspecs_follow_the_template_and_a_failure_plugin_registers():
    specs = [name for name in dir(hookspecs) if name.startswith("edgefm_")]
    assert {f"edgefm_register_{k}" for k in ("placement_solvers", "controllers", "channel_models",
            "workload_generators", "failure_models")} <= set(specs)
    assert {"edgefm_run_start", "edgefm_dataset_finalize", "edgefm_run_end"} <= set(specs)
    for name in specs:
        doc = getattr(hookspecs, name).__doc__
        assert "Called:" in doc and "Runs on:" in doc and "Returns:" in doc, name
    assert sorted(KINDS) == ["channel", "controller", "failure", "placement", "workload"]

    from edgefm.interfaces import AbstractFailureModel

    class Blackout(AbstractFailureModel):
        name = "blackout"

    class FailurePlugin:
        @edgefm.hookimpl
        def edgefm_register_failure_models(self):
            return [Blackout]

    pm = fresh_plugin_manager(FailurePlugin())
    pm.check_pending()
    registry = Registry.from_plugin_manager(pm)
    assert registry.names("failure") == ["blackout"]
    assert registry.resolve("failure", "blackout") is Blackout


def test_trace_plugins_writes_to_stderr(site, monkeypatch, capsys):
    write_controller_plugin(site, "traced_plugin", "traced_edgefm", "0.1", "traced", "traced_ctrl")
    monkeypatch.setenv("EDGEFM_TRACE_PLUGINS", "1")

    Registry.from_plugin_manager(build_plugin_manager())

    err = capsys.readouterr().err
    assert "loaded entry point traced" in err
    assert "traced_ctrl" in err
