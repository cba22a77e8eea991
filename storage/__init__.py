"""The preference store (DuckDB): the leaf layer, with no studio, UI or ML imports. See ``storage.store``."""

from storage.errors import StoreError, StoreLocked
from storage.exchange import ExportResult, ImportResult
from storage.migrations import MIGRATIONS
from storage.pairs import Filters
from storage.rows import (
    AnnotatorProgress,
    ComparisonRow,
    KtoRow,
    LabelAuditRow,
    ModelRow,
    PreferencePairRow,
    PromptRow,
    PromptSetRow,
    PromptStatusRow,
    RmPairRow,
    RunRow,
    RunWithTrace,
    StepLabelRow,
    StoreStats,
    TrainingRunRow,
    VerdictRow,
    VerdictWithTrace,
    VotePairRow,
    VoteRow,
    WinCountRow,
)
from storage.store import Store

__all__ = [
    "MIGRATIONS",
    "AnnotatorProgress",
    "ComparisonRow",
    "ExportResult",
    "Filters",
    "ImportResult",
    "KtoRow",
    "LabelAuditRow",
    "ModelRow",
    "PreferencePairRow",
    "PromptRow",
    "PromptSetRow",
    "PromptStatusRow",
    "RmPairRow",
    "RunRow",
    "RunWithTrace",
    "StepLabelRow",
    "Store",
    "StoreError",
    "StoreLocked",
    "StoreStats",
    "TrainingRunRow",
    "VerdictRow",
    "VerdictWithTrace",
    "VotePairRow",
    "VoteRow",
    "WinCountRow",
]
