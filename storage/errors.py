"""Errors raised by the store. ``storage`` is the leaf layer and cannot import ``studio``, so the studio maps
these onto its own ``StudioError`` (the CLI prints ``str(err)`` as one line)."""

from __future__ import annotations


class StoreError(Exception):
    """A store operation failed for a reason the user can act on; the message names the cause and the fix."""


class StoreLocked(StoreError):
    """Another process holds the DuckDB file's write lock."""

    def __init__(self, message: str, pid: int | None = None, holder: str | None = None) -> None:
        super().__init__(message)
        self.pid = pid
        self.holder = holder
