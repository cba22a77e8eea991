"""The preference store (DuckDB): the leaf layer, with no studio, UI or ML imports. See ``storage.store``; the
readers' row types are in ``storage.rows`` (``from storage.rows import RunRow``)."""

from storage import rows
from storage.errors import StoreError, StoreLocked
from storage.exchange import ExportResult, ImportResult
from storage.migrations import MIGRATIONS
from storage.pairs import Filters
from storage.store import Store

__all__ = [
    "MIGRATIONS",
    "ExportResult",
    "Filters",
    "ImportResult",
    "Store",
    "StoreError",
    "StoreLocked",
    "rows",
]
