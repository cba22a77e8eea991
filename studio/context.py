"""What the UI tabs share: settings, the model registry and the store. No gradio here."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

from storage import Store
from studio.models import ModelRegistry
from studio.settings import Settings


@dataclass
class AppContext:
    settings: Settings
    registry: ModelRegistry = field(init=False)
    _store: Store | None = field(default=None, init=False, repr=False)
    _lock: Any = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.registry = ModelRegistry(self.settings)

    @property
    def store(self) -> Store:
        """The DuckDB store, opened on first use (a second studio process gets a clear StoreLocked error)."""
        with self._lock:
            if self._store is None:
                self._store = Store(self.settings.db_path, data_dir=self.settings.data_dir)
            return self._store

    def model_names(self) -> list[str]:
        return self.registry.names()

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
