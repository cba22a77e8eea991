"""Saving a finished run: the one step from a :class:`~studio.strategies.RunResult` to a row of the store's
``runs`` table (as simonw/llm's ``Response.log_to_db``). The arena, compare-with-parent and the eval runner all
save through :func:`save_run`, so a run row always holds the same fields: the answer, the strategy and variant,
the params (plus what the caller adds, e.g. ``eval`` or ``compare``), the whole trace, tokens and latency, and
the error of a run that failed (such a run is kept as a record but never compared, judged or exported).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from storage import Store
    from studio.strategies import RunResult


def save_run(
    store: Store,
    prompt_id: int,
    result: RunResult,
    *,
    model: str | None = None,
    extra: Mapping[str, Any] | None = None,
    keep_error: bool = True,
) -> int:
    """Store ``result`` as an answer to ``prompt_id``; returns the run id.

    ``model``: the name to store (a registered name; default the backend's ``result.model``). ``extra``: keys
    added to the stored params (they win over the run's own). ``keep_error`` False stores a failed run as if it
    had succeeded: the eval runner scores an input-failed run as wrong and its judge rates it, which a stored
    error would refuse."""
    totals = result.totals
    return store.add_run(
        prompt_id,
        model or result.model,
        result.strategy,
        result.final_answer,
        variant=result.variant,
        params={**result.params.to_dict(), **(extra or {})},
        trace=result.trace.to_dict(),
        tokens_in=totals.prompt_tokens,
        tokens_out=totals.completion_tokens,
        latency_s=totals.latency_s,
        error=(result.error or None) if keep_error else None,
    )
