"""A typed registry, in the style of lm-evaluation-harness: rejects duplicate names and wrong base classes.

Backends, strategies, judges and trainers each have one ``Registry``, filled through one door: the Python
entry points of its group (``studio.backends``, ``studio.strategies``, ``studio.judges``, ``studio.trainers``),
read with :mod:`importlib.metadata` on first use. The built-ins are declared in ``pyproject.toml``'s
``[project.entry-points]`` exactly as a plugin package declares its own, so adding one is one file plus one
line there (see docs/architecture.md).

A source tree that is not installed, or whose installed metadata predates a group (an old ``pip install -e``,
or a stale ``*.egg-info`` at the repo root shadowing it), still works: when no distribution named
``reasoning-studio`` declares the group, the group is read from the tree's own ``pyproject.toml``.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterator
from importlib import metadata
from pathlib import Path
from typing import Generic, TypeVar

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

T = TypeVar("T")

DIST = "reasoning-studio"
PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def _normal(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def source_tree_entry_points(group: str, pyproject: Path = PYPROJECT) -> list[metadata.EntryPoint]:
    """The group's entry points as the source tree's ``pyproject.toml`` declares them (none without one)."""
    try:
        doc = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError):
        return []
    declared = doc.get("project", {}).get("entry-points", {}).get(group, {})
    return [metadata.EntryPoint(name, value, group) for name, value in declared.items()]


def entry_points(group: str) -> list[metadata.EntryPoint]:
    """Every installed entry point of ``group`` (plugins and the built-ins), plus the source tree's own
    declarations when the installed ``reasoning-studio`` metadata does not carry the group."""
    found = list(metadata.entry_points(group=group))
    ours = any(ep.dist is not None and _normal(ep.dist.name) == DIST for ep in found)
    return found if ours else [*source_tree_entry_points(group), *found]


class Registry(Generic[T]):
    """Named subclasses of ``base``. ``group``: the entry-point group loaded on first use (None: only
    :meth:`register` fills it, as in tests)."""

    def __init__(self, kind: str, base: type[T], group: str | None = None) -> None:
        self.kind = kind
        self.base = base
        self.group = group
        self._items: dict[str, type[T]] = {}
        self._from_entry_points: set[str] = set()
        self._loaded = group is None
        self._loading = False
        self._lock = threading.RLock()

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Add a class by hand (a test, or a script's own class); installed code uses entry points."""

        def deco(cls: type[T]) -> type[T]:
            with self._lock:
                self._add(name, cls)
            return cls

        return deco

    def _add(self, name: str, cls: object) -> None:
        if not (isinstance(cls, type) and issubclass(cls, self.base)):
            raise TypeError(f"{self.kind} {name!r}: {cls!r} is not a subclass of {self.base.__name__}")
        if name in self._items and self._items[name] is not cls:
            raise ValueError(f"{self.kind} {name!r} is already registered by {self._items[name]!r}")
        self._items[name] = cls
        cls.registered_name = name  # type: ignore[attr-defined]

    def load(self) -> None:
        """Load the group's entry points once (every lookup calls this). Another thread waits until they are
        all in; a plugin that fails to import names itself in the error (and the next lookup tries again)."""
        if self._loaded:
            return
        with self._lock:
            if self._loaded or self._loading:  # _loading: this thread, looking a name up during an import
                return
            self._loading = True
            try:
                for ep in entry_points(self.group or ""):
                    try:
                        cls = ep.load()
                    except Exception as e:
                        raise ImportError(f"{self.kind} {ep.name!r} ({ep.value}) failed to load: {e}") from e
                    self._add(ep.name, cls)
                    self._from_entry_points.add(ep.name)
                self._loaded = True
            finally:
                self._loading = False

    def reload(self) -> None:
        """Read the entry points again (after installing or removing a plugin in this process)."""
        with self._lock:
            for name in self._from_entry_points:
                self._items.pop(name, None)
            self._from_entry_points.clear()
            self._loaded = self.group is None
        self.load()

    def get(self, name: str) -> type[T]:
        self.load()
        try:
            return self._items[name]
        except KeyError:
            known = ", ".join(sorted(self._items)) or "(none)"
            raise KeyError(f"unknown {self.kind} {name!r}; known: {known}") from None

    def names(self) -> list[str]:
        self.load()
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        self.load()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())
