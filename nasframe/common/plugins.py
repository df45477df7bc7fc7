"""The plugin machinery: a name -> class registry backed by entry points, and `load_plugin`.

The typed registries built on it live beside what they register (`nasframe.core.registry` for
strategies, spaces and evaluators; `nasframe.data.registry` for data sets). Built-ins are declared
as entry points of the same groups third-party packages use, so nothing is imported until a name
is asked for, and the plugin path is exercised by every run.
"""

from __future__ import annotations

import difflib
import fnmatch
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Any, Generic, TypeVar

from nasframe.common.errors import PluginLoadError, RegistryError

T = TypeVar("T")
C = TypeVar("C", bound=type)


class Registry(Generic[T]):
    """Components of one kind (subclasses of `T`), registered by decorator or found through entry points."""

    def __init__(self, kind: str, group: str | None = None):
        self.kind = kind
        self.group = group or f"nasframe.{kind}s"
        self._items: dict[str, type[T]] = {}

    def register(self, name: str) -> Callable[[C], C]:
        """Class decorator: `@register_strategy("mine")`. A name can be taken only once."""

        def deco(cls: C) -> C:
            self.add(name, cls)
            return cls

        return deco

    def add(self, name: str, cls: type[T]) -> None:
        existing = self._items.get(name)
        if existing is not None and existing is not cls:
            if (existing.__module__, existing.__qualname__) == (cls.__module__, cls.__qualname__):
                existing = None  # the same file loaded twice (e.g. --plugin path and import)
            else:
                raise RegistryError(
                    f"{self.kind} {name!r} is already registered by {existing.__module__}.{existing.__qualname__}"
                )
        self._items[name] = cls
        cls.registered_name = name  # type: ignore[attr-defined]

    def _entry_points(self) -> dict[str, EntryPoint]:
        return {ep.name: ep for ep in entry_points(group=self.group)}

    def names(self, pattern: str = "*") -> list[str]:
        """Registered and installed names, sorted; nothing is imported."""
        found = set(self._items) | set(self._entry_points())
        return sorted(n for n in found if fnmatch.fnmatch(n, pattern))

    def installed(self, pattern: str = "*") -> list[str]:
        """Names declared by installed packages' entry points (built-ins included), without the ones
        registered at run time by a script or test; sorted, nothing imported."""
        return sorted(n for n in self._entry_points() if fnmatch.fnmatch(n, pattern))

    def get(self, name: str) -> type[T]:
        """The class registered as `name`, loading its entry point if needed."""
        if name in self._items:
            return self._items[name]
        ep = self._entry_points().get(name)
        if ep is None:
            known = self.names()
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise RegistryError(f"unknown {self.kind} {name!r}{hint} known: {', '.join(known) or '(none)'}")
        try:
            loaded = ep.load()
        except (Exception, SystemExit) as exc:  # a broken plugin must not look like a nasframe bug (or end it)
            dist = f" (package {ep.dist.name})" if ep.dist is not None else ""
            raise PluginLoadError(
                f"{self.kind} {name!r} from entry point {ep.value}{dist} failed to import: {_failure(exc)}"
            ) from exc
        if name not in self._items and isinstance(loaded, type):
            self.add(name, loaded)  # entry point naming a class that did not use our decorator
        if name not in self._items:
            raise PluginLoadError(
                f"entry point {ep.value} for {self.kind} {name!r} did not register a {self.kind} named {name!r}"
            )
        return self._items[name]

    def create(self, name: str, *args: Any, **kwargs: Any) -> T:
        return self.get(name)(*args, **kwargs)

    def describe(self, name: str) -> str:
        """First line of the component's docstring."""
        doc = (self.get(name).__doc__ or "").strip()
        return doc.splitlines()[0] if doc else ""


def load_plugin(spec: str) -> None:
    """Import a user plugin given as a module name (`my_pkg.nas`) or a file path (`./mine.py`).

    Importing runs its `register_*` decorators. Only what the user names is loaded.
    """
    import importlib.util
    import os
    import sys

    looks_like_path = spec.endswith(".py") or os.sep in spec or (os.altsep and os.altsep in spec)
    try:
        if looks_like_path:
            path = os.path.abspath(spec)
            if not os.path.isfile(path):
                raise PluginLoadError(f"plugin file {spec!r} does not exist")
            mod_name = "nasframe_plugin_" + os.path.splitext(os.path.basename(path))[0]
            if mod_name in sys.modules and getattr(sys.modules[mod_name], "__file__", None) == path:
                return
            module_spec = importlib.util.spec_from_file_location(mod_name, path)
            if module_spec is None or module_spec.loader is None:
                raise PluginLoadError(f"plugin file {spec!r} is not a Python module")
            module = importlib.util.module_from_spec(module_spec)
            sys.modules[mod_name] = module
            try:
                module_spec.loader.exec_module(module)
            except BaseException:
                sys.modules.pop(mod_name, None)
                raise
        else:
            importlib.import_module(spec)
    except PluginLoadError:
        raise
    except RegistryError:
        raise
    except ModuleNotFoundError as exc:
        if exc.name and spec.startswith(exc.name):
            raise PluginLoadError(
                f"plugin module {spec!r} not found; give an importable module or a .py file path"
            ) from exc
        raise PluginLoadError(f"plugin {spec!r} failed to import: {_failure(exc)}") from exc
    except (Exception, SystemExit) as exc:  # sys.exit() while importing must not end nasframe with its status
        raise PluginLoadError(f"plugin {spec!r} failed to import: {_failure(exc)}") from exc


def _failure(exc: BaseException) -> str:
    """An import's failure on one line: `ValueError: message`, or `it called sys.exit(...)`."""
    if isinstance(exc, SystemExit):
        return f"it called sys.exit({exc.code!r:.80})"
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0][:200]}" if text else type(exc).__name__
