"""What the UI tabs share: settings and the model registry (later: the store). No gradio here."""

from __future__ import annotations

from dataclasses import dataclass, field

from studio.models import ModelRegistry
from studio.settings import Settings


@dataclass
class AppContext:
    settings: Settings
    registry: ModelRegistry = field(init=False)

    def __post_init__(self) -> None:
        self.registry = ModelRegistry(self.settings)

    def model_names(self) -> list[str]:
        return self.registry.names()
