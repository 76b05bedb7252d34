"""Finding plugins and turning component names into classes.

- `get_plugin_manager()`: the process-wide pluggy manager, loaded from the ``edgefm`` entry points.
- `Registry`: (kind, name) -> component class, with the distribution that provides it.
- `register_configs()`: each component's ``Config`` (plus its ``name``) into Hydra's ConfigStore as
  ``<group>/base_<name>``, and as ``<group>/<name>`` when no YAML file provides that option.
- `print_plugins()`: the table behind ``edgefm plugins``.

Environment variables:

- ``EDGEFM_DISABLE_PLUGINS``: comma-separated entry-point names (``baselines``) or distribution
  names (``my-edgefm-plugin``) not to load.
- ``EDGEFM_TRACE_PLUGINS=1``: pluggy's registration and hook-call trace, written to stderr.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.metadata
import os
import re
import sys
from typing import IO, Any, NamedTuple

import pluggy

from edgefm import hookspecs
from edgefm.errors import ConfigError, PluginError

ENTRY_POINT_GROUP = "edgefm"
PROJECT_NAME = "edgefm"
UNREGISTERED_DISTRIBUTION = "<unregistered>"

# registration hook -> the kind (also the Hydra config group) of the classes it returns
REGISTRATION_HOOKS: dict[str, str] = {
    "edgefm_register_placement_solvers": "placement",
    "edgefm_register_controllers": "controller",
    "edgefm_register_channel_models": "channel",
    "edgefm_register_workload_generators": "workload",
    "edgefm_register_failure_models": "failure",
}
KINDS: tuple[str, ...] = tuple(REGISTRATION_HOOKS.values())

# characters that would break a Hydra override (``controller=<name>``) or a config path
_BAD_NAME = re.compile(r"[\s/=,:]")


class PluginInfo(NamedTuple):
    """One row of ``edgefm plugins``."""

    kind: str
    name: str
    distribution: str
    version: str
    description: str


# ----------------------------------------------------------------------------------------------
# The plugin manager


def _normalise_distribution(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def disabled_plugins() -> frozenset[str]:
    """The names listed in ``EDGEFM_DISABLE_PLUGINS`` (stripped, empty items dropped)."""
    raw = os.environ.get("EDGEFM_DISABLE_PLUGINS", "")
    return frozenset(item.strip() for item in raw.split(",") if item.strip())


def _describe_distribution(dist: importlib.metadata.Distribution) -> str:
    return f"{dist.metadata['Name']} {dist.version}"


def _check_entry_points(pm: pluggy.PluginManager, disabled: frozenset[str]) -> None:
    """Import every enabled ``edgefm`` entry point so that failures become PluginErrors.

    Walks the distributions in the same order as pluggy's ``load_setuptools_entrypoints`` (which
    then finds the modules already imported). Disabled entry points are blocked in ``pm``.
    """
    disabled_dists = {_normalise_distribution(name) for name in disabled}
    trace = pm.trace.root.get("edgefm")  # writes only under EDGEFM_TRACE_PLUGINS
    seen: dict[str, importlib.metadata.Distribution] = {}  # entry-point name -> first provider
    for dist in list(importlib.metadata.distributions()):
        dist_name = dist.metadata["Name"] or "?"
        for ep in dist.entry_points:
            if ep.group != ENTRY_POINT_GROUP:
                continue
            if ep.name in disabled or _normalise_distribution(dist_name) in disabled_dists:
                pm.set_blocked(ep.name)
                trace("disabled entry point", ep.name, "from", _describe_distribution(dist))
                continue
            if ep.name in seen:
                first = seen[ep.name]
                # The same distribution found twice on sys.path (e.g. an egg-info in a source
                # checkout and the installed copy) is harmless; pluggy keeps the first.
                if _normalise_distribution(first.metadata["Name"] or "?") != _normalise_distribution(dist_name):
                    raise PluginError(
                        f"entry point {ep.name!r} in group {ENTRY_POINT_GROUP!r} is declared by two "
                        f"distributions: {_describe_distribution(first)} and "
                        f"{_describe_distribution(dist)}; uninstall one of them or disable one "
                        f"with EDGEFM_DISABLE_PLUGINS=<distribution name>"
                    )
                continue
            seen[ep.name] = dist
            try:
                ep.load()
            except Exception as exc:  # ImportError above all, but a plugin may fail any way
                raise PluginError(
                    f"plugin {ep.name!r} (entry point {ep.value!r}) from distribution "
                    f"{_describe_distribution(dist)} could not be loaded: "
                    f"{type(exc).__name__}: {exc}. Reinstall it (for edgefm's own plugins: "
                    f"`pip install -e .` in the repository), or skip it with "
                    f"EDGEFM_DISABLE_PLUGINS={ep.name}"
                ) from exc
            trace("loaded entry point", ep.name, "=", ep.value, "from", _describe_distribution(dist))


def builtin_plugin_modules() -> list[str]:
    """The modules of the plugins the `edgefm` distribution itself declares (its entry points in
    group `edgefm`), sorted; empty when the package is not installed."""
    try:
        eps = importlib.metadata.distribution(PROJECT_NAME).entry_points
    except importlib.metadata.PackageNotFoundError:
        return []
    return sorted(ep.value.split(":")[0] for ep in eps if ep.group == ENTRY_POINT_GROUP)


def build_plugin_manager() -> pluggy.PluginManager:
    """A fresh plugin manager loaded from the entry points (not cached; see `get_plugin_manager`)."""
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    if os.environ.get("EDGEFM_TRACE_PLUGINS", "").strip() not in ("", "0"):
        pm.trace.root.setwriter(sys.stderr.write)
        pm.enable_tracing()
    _check_entry_points(pm, disabled_plugins())
    try:
        pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {_plugin_label(pm, exc.plugin)} is invalid: {exc}") from exc
    return pm


@functools.cache
def get_plugin_manager() -> pluggy.PluginManager:
    """The process-wide plugin manager, built on first use.

    ``EDGEFM_DISABLE_PLUGINS`` and ``EDGEFM_TRACE_PLUGINS`` are read on that first call; call
    ``get_plugin_manager.cache_clear()`` to rebuild. Raises `PluginError` when a plugin cannot be
    imported or does not match the hook specifications.
    """
    return build_plugin_manager()


def _distributions(pm: pluggy.PluginManager) -> dict[int, tuple[str, str]]:
    """id(plugin) -> (distribution name, version) for the plugins loaded from entry points."""
    return {
        id(plugin): (dist.project_name, dist.version) for plugin, dist in pm.list_plugin_distinfo()
    }


def _plugin_label(pm: pluggy.PluginManager, plugin: Any) -> str:
    dist, version = _distributions(pm).get(id(plugin), (UNREGISTERED_DISTRIBUTION, ""))
    name = pm.get_name(plugin) or getattr(plugin, "__name__", repr(plugin))
    return f"{name!r} (distribution {dist}{' ' + version if version else ''})"


# ----------------------------------------------------------------------------------------------
# The registry


@dataclasses.dataclass(frozen=True)
class _Entry:
    cls: type
    plugin_name: str
    distribution: str
    version: str

    def provider(self) -> str:
        version = f" {self.version}" if self.version else ""
        return f"distribution {self.distribution}{version} (plugin {self.plugin_name!r})"


def _description(cls: type) -> str:
    text = getattr(cls, "description", "") or cls.__dict__.get("__doc__") or ""
    return text.strip().splitlines()[0].strip() if text.strip() else ""


def _validate(cls: Any, kind: str, hook: str, where: str) -> None:
    if not isinstance(cls, type):
        raise PluginError(f"plugin {where}: {hook} returned {cls!r}, which is not a class")
    label = f"plugin {where}: class {cls.__module__}.{cls.__qualname__} (from {hook})"
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise PluginError(f"{label} has no `name`; set the class attribute `name = \"...\"`")
    if _BAD_NAME.search(name):
        raise PluginError(
            f"{label} has name {name!r}, which contains whitespace or one of / = , : "
            f"(it is typed on the command line as {kind}={name})"
        )
    if getattr(cls, "kind", None) != kind:
        raise PluginError(
            f"{label} has kind {getattr(cls, 'kind', None)!r}, expected {kind!r}; subclass the "
            f"matching base in edgefm.interfaces"
        )
    config = getattr(cls, "Config", None)
    if not (isinstance(config, type) and dataclasses.is_dataclass(config)):
        raise PluginError(f"{label} has a `Config` that is not a dataclass: {config!r}")


class Registry:
    """Component classes by (kind, name), with the distribution that provides each."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], _Entry] = {}

    @classmethod
    def default(cls) -> Registry:
        """The registry of the process-wide plugin manager."""
        return cls.from_plugin_manager(get_plugin_manager())

    @classmethod
    def from_plugin_manager(cls, pm: pluggy.PluginManager) -> Registry:
        """Collect the classes of every registration hook of every plugin in ``pm``.

        Raises `PluginError` for an invalid class or a name provided twice.
        """
        registry = cls()
        distributions = _distributions(pm)
        trace = pm.trace.root.get("edgefm")
        for hook_name, kind in REGISTRATION_HOOKS.items():
            hook = getattr(pm.hook, hook_name)
            # Call each implementation on its own so every class is attributed to its plugin.
            # pluggy lists them last-registered first; reverse for registration order.
            for impl in reversed(hook.get_hookimpls()):
                dist, version = distributions.get(id(impl.plugin), (UNREGISTERED_DISTRIBUTION, ""))
                plugin_name = impl.plugin_name
                where = f"{plugin_name!r} (distribution {dist}{' ' + version if version else ''})"
                try:
                    classes = impl.function()
                except Exception as exc:
                    raise PluginError(f"plugin {where}: {hook_name}() raised {type(exc).__name__}: {exc}") from exc
                if classes is None:
                    continue
                if not isinstance(classes, (list, tuple)):
                    raise PluginError(f"plugin {where}: {hook_name}() must return a list of classes, got {classes!r}")
                for component in classes:
                    _validate(component, kind, hook_name, where)
                    registry._add(kind, _Entry(component, plugin_name, dist, version))
                trace(hook_name, "from", where, "->", [c.name for c in classes])
        return registry

    def _add(self, kind: str, entry: _Entry) -> None:
        key = (kind, entry.cls.name)
        existing = self._entries.get(key)
        if existing is not None:
            if existing.cls is entry.cls:
                return
            raise PluginError(
                f"{kind} {entry.cls.name!r} is provided twice: by {existing.provider()} and by "
                f"{entry.provider()}; uninstall one, or disable one with "
                f"EDGEFM_DISABLE_PLUGINS=<entry-point or distribution name>"
            )
        self._entries[key] = entry

    def resolve(self, kind: str, name: str) -> type:
        """The class registered as ``name`` for ``kind``; `ConfigError` listing the known names."""
        if kind not in KINDS:
            raise ConfigError("kind", kind, f"one of: {', '.join(KINDS)}")
        entry = self._entries.get((kind, name))
        if entry is None:
            known = self.names(kind)
            if known:
                raise ConfigError(kind, name, f"one of: {', '.join(known)}")
            raise ConfigError(
                kind, name, f"no {kind} plugins are installed",
                hint="is edgefm installed? run `pip install -e .` in the repository; see `edgefm plugins`",
            )
        return entry.cls

    def names(self, kind: str) -> list[str]:
        """The registered names of ``kind``, sorted."""
        return sorted(name for k, name in self._entries if k == kind)

    def entries(self, kind: str | None = None) -> list[PluginInfo]:
        """One row per component (all kinds, or only ``kind``), sorted by kind then name."""
        rows = [
            PluginInfo(k, name, e.distribution, e.version, _description(e.cls))
            for (k, name), e in self._entries.items()
            if kind is None or k == kind
        ]
        return sorted(rows, key=lambda row: (KINDS.index(row.kind), row.name))

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        return key in self._entries


# ----------------------------------------------------------------------------------------------
# Hydra and the CLI


def config_schema(kind: str, cls: type) -> type:
    """The dataclass stored for a component: its ``Config`` plus ``name: str = cls.name``.

    The ``name`` field tells the run which plugin a config group option selected; the other fields
    are those of ``cls.Config`` (so the component is built from ``cls.Config`` without ``name``).
    """
    config = cls.Config
    if any(f.name == "name" for f in dataclasses.fields(config)):
        raise PluginError(
            f"{kind} {cls.name!r}: its Config has a field `name`, which edgefm reserves for the "
            f"plugin name ({kind}.name = {cls.name!r}); rename that field"
        )
    return dataclasses.make_dataclass(
        config.__name__,
        [("name", str, dataclasses.field(default=cls.name))],
        bases=(config,),
        namespace={"__doc__": config.__doc__, "__module__": config.__module__, "__qualname__": config.__qualname__},
    )


def register_configs(registry: Registry, cs: Any = None, yaml_dirs: Any = None) -> None:
    """Store every component's config schema (`config_schema`) in Hydra's ConfigStore.

    Each is stored as ``<kind>/base_<name>``, the schema that YAML files of the group extend
    (``defaults: [base_<name>, _self_]``). For a component without a YAML file
    ``<kind>/<name>.yaml`` in any of ``yaml_dirs`` (a third-party plugin, typically) it is also
    stored as ``<kind>/<name>``, so ``<kind>=<name>`` selects it with its defaults. With
    ``yaml_dirs=None`` only the ``base_<name>`` entries are stored.
    """
    from pathlib import Path

    if cs is None:
        from hydra.core.config_store import ConfigStore

        cs = ConfigStore.instance()
    for (kind, name), entry in registry._entries.items():
        try:
            schema = config_schema(kind, entry.cls)
            cs.store(group=kind, name=f"base_{name}", node=schema, provider=entry.distribution)
            if yaml_dirs is not None and not any((Path(d) / kind / f"{name}.yaml").is_file() for d in yaml_dirs):
                cs.store(group=kind, name=name, node=schema, provider=entry.distribution)
        except PluginError:
            raise
        except Exception as exc:  # OmegaConf rejects field types it cannot represent
            raise PluginError(
                f"{kind} {name!r} from {entry.provider()}: its Config cannot be a Hydra structured "
                f"config: {type(exc).__name__}: {exc}"
            ) from exc


NO_PLUGINS_MESSAGE = (
    "No edgefm plugins were found. The edgefm package is probably not installed: running from a "
    "source checkout without installing it leaves its entry points (and those of the built-in "
    "plugins) unregistered. Fix: run `pip install -e .` in the repository (and check "
    "EDGEFM_DISABLE_PLUGINS, which is {disabled})."
)


def print_plugins(registry: Registry | None = None, file: IO[str] | None = None, kind: str | None = None) -> int:
    """Print the table of plugins (kind, name, distribution, version, description).

    Returns 0, or 1 when there is nothing to list (with a message saying why and how to fix it).
    """
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    if registry is None:
        registry = Registry.default()
    console = Console(file=file if file is not None else sys.stdout)
    if not console.is_terminal:
        # piped or captured: one line per component, nothing cut, so the output can be grepped
        console = Console(file=file if file is not None else sys.stdout, width=10_000)
    rows = registry.entries(kind)
    if not rows:
        if len(registry) and kind is not None:
            console.print(f"No {kind} plugins are installed.", markup=False, highlight=False, soft_wrap=True)
        else:
            disabled = os.environ.get("EDGEFM_DISABLE_PLUGINS", "")
            console.print(
                NO_PLUGINS_MESSAGE.format(disabled=repr(disabled) if disabled else "unset"),
                markup=False, highlight=False, soft_wrap=True,
            )
        return 1
    table = Table(title="edgefm plugins")
    for header in ("kind", "name", "distribution", "version"):
        table.add_column(header, no_wrap=True)
    table.add_column("description", overflow="fold")
    for row in rows:
        table.add_row(*(Text(cell) for cell in row))  # Text: a "[" in a description is not markup
    console.print(table)
    return 0
