"""The plugin host: a small, typed facade over pluggy.

The rest of kcore calls one method here per hook and never touches ``pm.hook``. Plugins
are found through the entry-point group ``kcore.plugins``; a name given to ``--plugins``
is an entry-point name or a dotted module path (so an uninstalled module works too).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pluggy

from kcore import hookspecs
from kcore.errors import PluginError
from kcore.hookspecs import SLOT_HOOKS

ENTRY_POINT_GROUP = "kcore.plugins"
#: What runs when ``--plugins`` is not given: the embedded defaults.
DEFAULT_PLUGINS: tuple[str, ...] = (
    "store_sqlite",
    "runtime_linux",
    "net_bridge",
    "volumes",
    "controllers",
    "scheduler",
    "dns",
)


@dataclass(frozen=True)
class PluginInfo:
    """One loaded plugin, as ``kcore plugins`` shows it."""

    name: str
    module: str
    version: str
    slots: tuple[str, ...]
    hooks: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "module": self.module,
            "version": self.version,
            "slots": list(self.slots),
            "hooks": list(self.hooks),
        }


def installed_plugins() -> dict[str, importlib.metadata.EntryPoint]:
    """Entry points of the ``kcore.plugins`` group, by name."""
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def parse_plugin_list(value: str | Sequence[str] | None) -> tuple[str, ...]:
    """``"a, b,c"`` -> ``("a", "b", "c")``; ``None`` -> the defaults."""
    if value is None:
        return DEFAULT_PLUGINS
    items = value.split(",") if isinstance(value, str) else list(value)
    names = tuple(dict.fromkeys(n.strip() for n in items if n.strip()))
    return names


class PluginHost:
    """Loads plugins and answers, per hook, what they offer."""

    def __init__(self, names: Iterable[str] = (), *, plugins: Iterable[tuple[str, Any]] = ()):
        """Load ``names`` (entry-point names or dotted module paths) and register the
        already imported ``plugins`` (``(name, module_or_object)`` pairs, for tests)."""
        self._pm = pluggy.PluginManager(hookspecs.PROJECT)
        self._pm.add_hookspecs(hookspecs)
        self._versions: dict[str, str] = {}
        for name in names:
            self.load(name)
        for name, plugin in plugins:
            self.register(plugin, name)

    # -- loading -------------------------------------------------------------------------

    def load(self, name: str) -> None:
        """Import and register one plugin by entry-point name or dotted module path."""
        if self._pm.has_plugin(name):
            return
        installed = installed_plugins()
        ep = installed.get(name)
        try:
            if ep is not None:
                module = ep.load()
                version = ep.dist.version if ep.dist is not None else _module_version(module)
            else:
                module = _import_dotted(name, installed)
                version = _module_version(module)
        except PluginError:
            raise
        except Exception as exc:
            raise PluginError(
                f"plugin {name!r} failed to import: {type(exc).__name__}: {exc}"
            ) from exc
        self._versions[name] = version
        self.register(module, name)

    def register(self, plugin: Any, name: str) -> None:
        """Register an imported module or object as plugin ``name``, checking its hooks."""
        unknown = sorted(
            attr
            for attr in dir(plugin)
            if attr.startswith("kcore_")
            and callable(getattr(plugin, attr, None))
            and not hasattr(hookspecs, attr)
        )
        if unknown:
            raise PluginError(
                f"plugin {name!r} defines unknown hooks: {', '.join(unknown)} "
                "(misspelled? see kcore.hookspecs)"
            )
        try:
            self._pm.register(plugin, name=name)
            self._pm.check_pending()
        except pluggy.PluginValidationError as exc:
            self._pm.unregister(name=name)
            raise PluginError(f"plugin {name!r} is invalid: {exc}") from exc
        except ValueError as exc:
            raise PluginError(f"plugin {name!r}: {exc}") from exc
        if name not in self._versions:
            self._versions[name] = _module_version(plugin)

    # -- introspection ---------------------------------------------------------------------

    @property
    def names(self) -> list[str]:
        return [name for name, _ in self._pm.list_name_plugin()]

    def hooks_of(self, name: str) -> list[str]:
        plugin = self._pm.get_plugin(name)
        callers = self._pm.get_hookcallers(plugin) or []
        return sorted(caller.name for caller in callers)

    def slots_of(self, name: str) -> list[str]:
        hooks = set(self.hooks_of(name))
        return [slot for slot, hook in SLOT_HOOKS.items() if hook in hooks]

    def info(self) -> list[PluginInfo]:
        out = []
        for name, plugin in self._pm.list_name_plugin():
            module = (
                plugin.__name__ if isinstance(plugin, ModuleType) else type(plugin).__qualname__
            )
            out.append(
                PluginInfo(
                    name=name,
                    module=module,
                    version=self._versions.get(name, "unknown"),
                    slots=tuple(self.slots_of(name)),
                    hooks=tuple(self.hooks_of(name)),
                )
            )
        return out

    # -- slots -------------------------------------------------------------------------------

    def slot_owner(self, slot: str) -> str:
        """The one loaded plugin that fills ``slot``; a clear error for none or several."""
        hook = SLOT_HOOKS[slot]
        owners = [name for name in self.names if hook in self.hooks_of(name)]
        if len(owners) == 1:
            return owners[0]
        if owners:
            raise PluginError(
                f"two or more plugins fill the {slot} slot: {', '.join(owners)}; "
                "load only one of them"
            )
        candidates = candidates_for(slot)
        hint = f"; plugins that can: {', '.join(candidates)}" if candidates else ""
        loaded = ", ".join(self.names) or "none"
        raise PluginError(f"no loaded plugin fills the {slot} slot (loaded: {loaded}){hint}")

    async def _call_slot(self, slot: str, settings: Any) -> Any:
        owner = self.slot_owner(slot)
        others = [self._pm.get_plugin(n) for n in self.names if n != owner]
        caller = self._pm.subset_hook_caller(SLOT_HOOKS[slot], remove_plugins=others)
        backend = caller(settings=settings)
        if inspect.isawaitable(backend):
            backend = await backend
        if backend is None:
            raise PluginError(f"plugin {owner!r} returned no backend for the {slot} slot")
        return backend

    async def store(self, settings: Any) -> Any:
        """Create the store of the plugin that fills the store slot."""
        return await self._call_slot("store", settings)

    async def runtime(self, settings: Any) -> Any:
        return await self._call_slot("runtime", settings)

    async def network(self, settings: Any) -> Any:
        return await self._call_slot("network", settings)

    # -- contributions -----------------------------------------------------------------------

    def _collect(self, hook: str, *, unique: str | None = None, **kwargs: Any) -> list[Any]:
        # pluggy calls the latest registered first; plugin order is registration order.
        results = getattr(self._pm.hook, hook)(**kwargs)
        items = [item for result in reversed(results) for item in (result or [])]
        if unique is not None:
            seen: dict[str, Any] = {}
            for item in items:
                key = getattr(item, unique)
                if key in seen:
                    raise PluginError(f"{hook}: two contributions named {key!r}")
                seen[key] = item
        return items

    def volume_sources(self, settings: Any) -> list[Any]:
        return self._collect("kcore_volume_sources", unique="type_name", settings=settings)

    def node_services(self, settings: Any) -> list[Any]:
        return self._collect("kcore_node_services", unique="name", settings=settings)

    def controllers(self, settings: Any) -> list[Any]:
        return self._collect("kcore_controllers", unique="name", settings=settings)

    def scheduler_filters(self, settings: Any) -> list[Any]:
        return self._collect("kcore_scheduler_filters", unique="name", settings=settings)

    def scheduler_scores(self, settings: Any) -> list[Any]:
        return self._collect("kcore_scheduler_scores", unique="name", settings=settings)

    def admission_checks(self, settings: Any) -> list[Any]:
        return self._collect("kcore_admission_checks", unique="name", settings=settings)

    def commands(self) -> list[Any]:
        return self._collect("kcore_add_commands", unique="name")

    def options(self) -> list[Any]:
        return self._collect("kcore_add_options", unique="name")


def candidates_for(slot: str) -> list[str]:
    """Installed plugins (entry points) that offer ``slot``; ones that fail to import are
    left out."""
    hook = SLOT_HOOKS[slot]
    names = []
    for name, ep in sorted(installed_plugins().items()):
        try:
            module = ep.load()
        except Exception:
            continue
        if callable(getattr(module, hook, None)):
            names.append(name)
    return names


def _import_dotted(name: str, installed: dict[str, Any]) -> ModuleType:
    known = ", ".join(sorted(installed)) or "none installed"
    if "." not in name:
        raise PluginError(f"unknown plugin {name!r}; known plugins: {known}")
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise PluginError(
                f"unknown plugin {name!r}: no entry point of that name and no module "
                f"of that path; known plugins: {known}"
            ) from exc
        raise


def _module_version(module: Any) -> str:
    version = getattr(module, "__version__", None)
    if isinstance(version, str):
        return version
    top = getattr(module, "__name__", type(module).__module__).split(".")[0]
    for dist in importlib.metadata.packages_distributions().get(top, []):
        try:
            return importlib.metadata.version(dist)
        except importlib.metadata.PackageNotFoundError:
            continue
    return "unknown"
