"""The services one process shares: its settings, the model registry, the store and the training-job runner.

The app factory (the UI and the REST API), each CLI command and a script build one :class:`AppContext` and hand
it down; nothing else constructs these services. Each is made once per context, on first use: the registry
(which holds the loaded backends) with the context, the store when first asked for (a second studio process on
the same data dir gets a clear ``StoreLocked``), the runner when the Train tab or ``studio train`` first needs
it. No gradio here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from storage import Store
from studio.models import ModelRegistry
from studio.settings import Settings

if TYPE_CHECKING:
    from studio.training.runner import Runner


@dataclass
class AppContext:
    settings: Settings
    registry: ModelRegistry = field(init=False)
    _store: Store | None = field(default=None, init=False, repr=False)
    _runner: Runner | None = field(default=None, init=False, repr=False)
    _lock: Any = field(default_factory=threading.RLock, init=False, repr=False)

    def __post_init__(self) -> None:
        self.registry = ModelRegistry(self.settings)

    @property
    def store(self) -> Store:
        """The DuckDB store, opened on first use. The registry then keeps the store's lineage index in step
        with ``models.toml`` (adopting an older data dir's store-only lineage once)."""
        with self._lock:
            if self._store is None:
                self.settings.data_dir.mkdir(parents=True, exist_ok=True)
                store = Store(self.settings.db_path, data_dir=self.settings.data_dir)
                self.registry.attach(store)
                self._store = store
            return self._store

    @property
    def runner(self) -> Runner:
        """The training-job runner on this context's store and registry, made on first use (it fails jobs
        whose process died and starts queued ones)."""
        from studio.training.runner import Runner

        with self._lock:
            if self._runner is None:
                self._runner = Runner(self.settings, self.store, registry=self.registry)
            return self._runner

    def runner_without_store(self) -> Runner:
        """A runner on the run dirs alone, for a process that cannot open the store (another studio holds
        it): it lists, reads, cancels and resumes jobs; the store's owner syncs them at its next poll."""
        from studio.training.runner import Runner

        return Runner(self.settings, None, registry=self.registry)

    def model_names(self) -> list[str]:
        return self.registry.names()

    def close(self) -> None:
        """Unload the models and close the store."""
        with self._lock:
            self.registry.close()
            self._runner = None
            if self._store is not None:
                self._store.close()
                self._store = None

    def __enter__(self) -> AppContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_defaults: dict[Settings, AppContext] = {}
_defaults_lock = threading.Lock()


def default_context(settings: Settings | None = None) -> AppContext:
    """The context of the one-call Python API (:mod:`studio.api`) when a script names models but builds no
    context: one per settings in the process, so a script that calls ``run_strategy`` in a loop loads each
    model once. Code that has a context (the app, the CLI) passes its own instead."""
    settings = settings or Settings.load()
    with _defaults_lock:
        if settings not in _defaults:
            _defaults[settings] = AppContext(settings)
        return _defaults[settings]
