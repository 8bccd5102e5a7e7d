"""Plugin manager and component registry.

Plugins are found through the ``mmgen`` entry-point group, loaded lazily on the first
``build``/``list_components`` call, and register components through the ``mmgen_register`` hook.
First-party plugins (``mmgen-image``, ``mmgen-text``, ``mmgen-audio``) load exactly like third-party
ones. Environment:

* ``MMGEN_DISABLE_PLUGIN_AUTOLOAD=1`` loads no entry points (tests then call ``register``).
* ``MMGEN_PLUGINS=image,text`` loads only the named entry points.

A plugin that fails to import or register is recorded with its cause (see ``failures()`` and
``mmgen plugins doctor``) and warned about; the other plugins still load.
"""
from __future__ import annotations

import difflib
import inspect
import os
import re
import threading
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

import pluggy

from mmgen import hookspecs

ENTRY_POINT_GROUP = hookspecs.PROJECT
DISABLE_AUTOLOAD_ENV = "MMGEN_DISABLE_PLUGIN_AUTOLOAD"
ALLOW_LIST_ENV = "MMGEN_PLUGINS"
KINDS = ("encoder", "decoder", "generator", "discriminator", "denoiser", "text_encoder", "dataset", "metric", "model",
         "modality")
DIRECT = "<direct>"  # the plugin name of components added to a registry outside any plugin
FIRST_PARTY = {"image": "mmgen-image", "audio": "mmgen-audio", "text": "mmgen-text"}  # namespace -> package

_NAME = re.compile(r"[a-z][a-z0-9_]*(\.[a-z0-9][a-z0-9_-]*)+")
_MODALITY_NAME = re.compile(r"[a-z][a-z0-9_]*")  # a modality is the namespace itself: "image", "audio"

__all__ = ["KINDS", "Component", "PluginInfo", "PluginFailure", "Registry", "PluginError",
           "DuplicateComponentError", "UnknownComponentError", "ConfigError", "PluginLoadWarning",
           "build", "build_from_config", "get_component", "list_components", "list_plugins",
           "failures", "register", "unregister", "get_plugin_manager", "reset"]


class PluginError(Exception):
    """A plugin could not be loaded or registered."""


class DuplicateComponentError(PluginError, ValueError):
    """Two registrations of the same kind and name."""


class UnknownComponentError(PluginError, LookupError):
    """No component of that kind has that name."""

    def __str__(self):  # LookupError would show the message quoted
        return self.args[0]


class ConfigError(ValueError):
    """A config entry for ``build_from_config`` is malformed; the message names the entry's key."""


class PluginLoadWarning(UserWarning):
    """An installed plugin failed to load; the others were loaded."""


@dataclass(frozen=True)
class Component:
    kind: str
    name: str
    obj: Any
    plugin: str
    meta: dict = field(default_factory=dict)


@dataclass(frozen=True)
class PluginFailure:
    plugin: str
    stage: str  # import error | missing dependency | bad hook | unknown hook | register error | not installed
    error: str  # "ExceptionType: message"
    origin: str  # entry point "name = module" or where it was registered from
    hint: str = ""
    exception: BaseException | None = field(default=None, compare=False, repr=False)

    @classmethod
    def of(cls, plugin: str, stage: str, exc: BaseException, origin: str, hint: str = ""):
        message = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        return cls(plugin, stage, f"{type(exc).__name__}: {message}", origin, hint, exc)

    def __str__(self):
        text = f"plugin {self.plugin!r} ({self.origin}): {self.stage}: {self.error}"
        return f"{text} ({self.hint})" if self.hint else text


@dataclass(frozen=True)
class PluginInfo:
    name: str
    version: str | None
    distribution: str | None
    origin: str
    status: str  # "ok" or "failed"
    components: tuple[Component, ...] = ()
    failure: PluginFailure | None = None


def _suggest(word: str, choices) -> str:
    close = difflib.get_close_matches(str(word), list(choices), n=1, cutoff=0.6)
    return f"; did you mean {close[0]!r}?" if close else ""


def check_kind(kind) -> None:
    if kind not in KINDS:
        raise ValueError(f"unknown component kind {kind!r}{_suggest(kind, KINDS)} "
                         f"(accepted kinds: {', '.join(KINDS)})")


def check_name(name, kind: str | None = None) -> None:
    if kind == "modality":
        if not isinstance(name, str) or not _MODALITY_NAME.fullmatch(name):
            raise ValueError(f"modality name {name!r} is not a lowercase name like 'image', 'audio' or 'text'")
        return
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise ValueError(f"component name {name!r} is not a namespaced lowercase name like "
                         "'image.conv', 'text.minilm' or 'audio.mel' ('<modality>.<name>')")


class Registry:
    """Components by (kind, name). Plugins receive it in ``mmgen_register(registry)``."""

    def __init__(self):
        self._components: dict[tuple[str, str], Component] = {}
        self._plugin = DIRECT  # set by the manager while a plugin's hook runs

    def add(self, kind: str, name: str, obj: Any, **meta) -> None:
        """Register ``obj`` (a class or factory called by ``build``) as ``kind`` ``name``."""
        check_kind(kind)
        check_name(name, kind)
        if not callable(obj):
            raise TypeError(f"{kind} {name!r}: expected a class or factory, got {obj!r}")
        existing = self._components.get((kind, name))
        if existing is not None:
            raise DuplicateComponentError(
                f"{kind} {name!r} is already registered by plugin {existing.plugin!r}; "
                f"plugin {self._plugin!r} cannot register it again")
        self._components[(kind, name)] = Component(kind, name, obj, self._plugin, dict(meta))

    def get(self, kind: str, name: str) -> Component:
        check_kind(kind)
        found = self._components.get((kind, name))
        if found is None:
            names = self.names(kind)
            listing = ", ".join(names) if names else "none"
            raise UnknownComponentError(f"unknown {kind} {name!r}{_suggest(name, names)} "
                                        f"(registered {kind} names: {listing})")
        return found

    def names(self, kind: str) -> list[str]:
        return sorted(name for k, name in self._components if k == kind)

    def components(self, kind: str | None = None) -> list[Component]:
        if kind is not None:
            check_kind(kind)
        found = [c for c in self._components.values() if kind is None or c.kind == kind]
        return sorted(found, key=lambda c: (KINDS.index(c.kind), c.name))

    def discard_plugin(self, plugin: str) -> None:
        for key in [key for key, c in self._components.items() if c.plugin == plugin]:
            del self._components[key]


class _Manager:
    def __init__(self):
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.registry = Registry()
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self.skipped: list[str] = []  # entry points left out by the allow-list
        self.loaded = False
        self.lock = threading.RLock()

    def ensure_loaded(self) -> None:
        with self.lock:
            if not self.loaded:
                self.loaded = True
                self._load_entry_points()

    def _load_entry_points(self) -> None:
        if autoload_disabled():
            return
        unique = {(ep.name, ep.value): ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
        entry_points = sorted(unique.values(), key=lambda ep: (ep.name, ep.value))
        allowed = allow_list()
        for ep in entry_points:
            if allowed is not None and ep.name not in allowed:
                self.skipped.append(ep.name)
            else:
                self._load_entry_point(ep)
        installed = sorted({ep.name for ep in entry_points})
        for name in sorted((allowed or set()) - set(installed)):
            self._fail(PluginFailure(name, "not installed", f"{ALLOW_LIST_ENV} names {name!r}",
                                     f"{ALLOW_LIST_ENV}={os.environ.get(ALLOW_LIST_ENV)}",
                                     f"installed plugins: {', '.join(installed) or 'none'}"))

    def _load_entry_point(self, ep) -> None:
        origin = f"entry point {ep.name} = {ep.value}"
        dist = getattr(ep, "dist", None)
        dist_name, version = (dist.metadata["Name"], dist.version) if dist is not None else (None, None)
        try:
            plugin = ep.load()
        except ModuleNotFoundError as exc:
            own = ep.module.split(".")[0]
            if exc.name and exc.name.split(".")[0] != own:
                self._fail(PluginFailure.of(ep.name, "missing dependency", exc, origin,
                                            f"install the package that provides {exc.name!r}"))
            else:
                self._fail(PluginFailure.of(ep.name, "import error", exc, origin,
                                            f"the package that declares it ({dist_name}) is broken; "
                                            "reinstall it"))
            return
        except Exception as exc:  # a plugin's import may raise anything; report it, load the rest
            self._fail(PluginFailure.of(ep.name, "import error", exc, origin))
            return
        failure = self.add_plugin(plugin, ep.name, origin, dist_name, version)
        if failure is not None:
            self._fail(failure)

    def _fail(self, failure: PluginFailure) -> None:
        self.failures.append(failure)
        warnings.warn(f"mmgen {failure}; the other plugins are loaded", PluginLoadWarning)

    def add_plugin(self, plugin, name, origin, dist_name=None, version=None) -> PluginFailure | None:
        """Register ``plugin`` with pluggy and run its ``mmgen_register``; on failure undo both."""
        try:
            self.pm.register(plugin, name=name)
        except pluggy.PluginValidationError as exc:
            self._unregister(name)
            return PluginFailure.of(name, "bad hook", exc, origin,
                                    "the hook must be mmgen_register(registry)")
        except ValueError as exc:
            return PluginFailure.of(name, "name conflict", exc, origin)
        try:
            self.pm.check_pending()
        except pluggy.PluginValidationError as exc:
            unknown = [hook for hook, caller in vars(self.pm.hook).items()
                       if not hook.startswith("_") and not caller.has_spec()
                       and any(impl.plugin is plugin for impl in caller.get_hookimpls())]
            self._unregister(name)
            return PluginFailure.of(name, "unknown hook", exc, origin,
                                    f"{', '.join(map(repr, unknown))} is not an mmgen hook; "
                                    "the only hook is 'mmgen_register'")
        others = [p for p in self.pm.get_plugins() if p is not plugin]
        register_hook = self.pm.subset_hook_caller("mmgen_register", remove_plugins=others)
        self.registry._plugin = name
        try:
            register_hook(registry=self.registry)
        except Exception as exc:  # a plugin's hook may raise anything; undo its registrations
            self.registry.discard_plugin(name)
            self._unregister(name)
            return PluginFailure.of(name, "register error", exc, origin)
        finally:
            self.registry._plugin = DIRECT
        version = version or getattr(plugin, "__version__", None)
        self.plugins[name] = PluginInfo(name, version, dist_name, origin, "ok")
        return None

    def _unregister(self, name: str) -> None:
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)


_manager = _Manager()


def autoload_disabled() -> bool:
    """True when ``MMGEN_DISABLE_PLUGIN_AUTOLOAD`` is set to 1/true/yes/on."""
    return os.environ.get(DISABLE_AUTOLOAD_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def allow_list() -> set[str] | None:
    """The entry-point names in ``MMGEN_PLUGINS``, or None when it is unset or empty."""
    names = {n.strip() for n in os.environ.get(ALLOW_LIST_ENV, "").split(",") if n.strip()}
    return names or None


def _loaded() -> _Manager:
    _manager.ensure_loaded()
    return _manager


def get_plugin_manager() -> pluggy.PluginManager:
    """The pluggy manager, with installed plugins loaded."""
    return _loaded().pm


def register(plugin, name: str | None = None) -> str:
    """Register a plugin module or object (in addition to the installed ones) and return its name.

    Raises PluginError (or DuplicateComponentError) with the cause when it cannot be registered.
    """
    manager = _loaded()
    name = name or getattr(plugin, "__name__", None) or manager.pm.get_canonical_name(plugin)
    with manager.lock:
        failure = manager.add_plugin(plugin, name, "registered in code")
    if failure is not None:
        error = type(failure.exception) if isinstance(failure.exception, PluginError) else PluginError
        raise error(str(failure)) from failure.exception
    return name


def unregister(name: str) -> None:
    """Remove a plugin and its components."""
    manager = _loaded()
    with manager.lock:
        if name not in manager.plugins:
            raise PluginError(f"no plugin named {name!r} is registered "
                              f"(registered: {', '.join(sorted(manager.plugins)) or 'none'})")
        manager.registry.discard_plugin(name)
        manager._unregister(name)
        del manager.plugins[name]


def reset() -> None:
    """Forget every plugin and component; the next call loads the installed plugins again."""
    global _manager
    _manager = _Manager()


def failures() -> list[PluginFailure]:
    """Plugins that failed to load, with their causes."""
    return list(_loaded().failures)


def skipped() -> list[str]:
    """Installed entry points that ``MMGEN_PLUGINS`` left out."""
    return list(_loaded().skipped)


def list_plugins() -> list[PluginInfo]:
    """Loaded plugins (with their components) followed by the ones that failed."""
    manager = _loaded()
    found = []
    for info in manager.plugins.values():
        mine = tuple(c for c in manager.registry.components() if c.plugin == info.name)
        found.append(PluginInfo(info.name, info.version, info.distribution, info.origin, "ok", mine))
    for failure in manager.failures:
        found.append(PluginInfo(failure.plugin, None, None, failure.origin, "failed", (), failure))
    return found


def list_components(kind: str | None = None) -> list[Component]:
    """Registered components (optionally of one kind), each with its plugin of origin and meta."""
    return _loaded().registry.components(kind)


def install_hint(name: str) -> str:
    """For a name in the namespace of a first-party plugin that is not loaded, how to install that
    plugin (else "")."""
    namespace = str(name).split(".")[0]
    loaded = _loaded().plugins  # by entry-point name, or by module name when registered in code
    if namespace not in FIRST_PARTY or namespace in loaded or FIRST_PARTY[namespace].replace("-", "_") in loaded:
        return ""
    return f"; the {namespace} plugin is not loaded: pip install -e plugins/{FIRST_PARTY[namespace]}"


def get_component(kind: str, name: str) -> Component:
    manager = _loaded()
    try:
        return manager.registry.get(kind, name)
    except UnknownComponentError as exc:
        hint = install_hint(name)
        if hint:
            raise UnknownComponentError(f"{exc}{hint}") from None
        if manager.failures:
            failed = ", ".join(sorted({f.plugin for f in manager.failures}))
            raise UnknownComponentError(f"{exc}; plugins that failed to load: {failed} "
                                        "(run `mmgen plugins doctor`)") from None
        raise


def build(kind: str, name: str, /, **kwargs):
    """Construct the ``kind`` component registered as ``name`` with ``kwargs``."""
    component = get_component(kind, name)
    try:
        signature = inspect.signature(component.obj)
    except (TypeError, ValueError):  # some builtins have no signature; let the call check
        signature = None
    if signature is not None:
        try:
            signature.bind(**kwargs)
        except TypeError as exc:
            raise TypeError(f"{kind} {name!r} (plugin {component.plugin!r}): {exc}; "
                            f"it takes {signature}") from None
    return component.obj(**kwargs)


def build_from_config(config, *, path: str = "config"):
    """Resolve ``{"kind": ..., "name": ..., **kwargs}`` entries, nested anywhere in dicts and
    lists, into built components; other values are returned as they are."""
    if isinstance(config, Mapping):
        if "kind" in config:
            return _build_entry(config, path)
        return {key: build_from_config(value, path=f"{path}.{key}") for key, value in config.items()}
    if isinstance(config, (list, tuple)):
        return [build_from_config(value, path=f"{path}[{i}]") for i, value in enumerate(config)]
    return config


def _build_entry(entry: Mapping, path: str):
    if "name" not in entry:
        raise ConfigError(f"{path}: an entry with 'kind' needs a 'name' too (got keys {sorted(entry)})")
    kind, name = entry["kind"], entry["name"]
    try:
        check_kind(kind)
    except ValueError as exc:
        raise ConfigError(f"{path}.kind: {exc}") from None
    try:
        get_component(kind, name)
    except UnknownComponentError as exc:
        raise ConfigError(f"{path}.name: {exc}") from None
    kwargs = {key: build_from_config(value, path=f"{path}.{key}")
              for key, value in entry.items() if key not in ("kind", "name")}
    try:
        return build(kind, name, **kwargs)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
