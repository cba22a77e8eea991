"""Raw and style-controlled Bradley–Terry boards per rater, computed from a :class:`Snapshot` of the store.

Beside :func:`studio.judging.figures.leaderboards` (one board per source), :func:`style_boards` fits, for the
people and for each judge config (named as :func:`studio.judging.figures.rater_of` names them), the raw board
and the board with the Arena's style covariates (:mod:`studio.metrics.style`: answer length, Markdown headers,
list items, bold), so a contestant that wins by writing longer or with more Markdown shows it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from studio import metrics
from studio.judging.figures import outcomes
from studio.judging.snapshot import HUMAN, Snapshot, contestant
from studio.metrics.leaderboard import BoardRow, Match, label
from studio.metrics.style import STYLE_FEATURES, style_features, style_leaderboard


def _rows(board: Sequence[BoardRow]) -> list[dict[str, Any]]:
    return [
        {"contestant": label(r.contestant), "rating": r.elo, "lo": _num(r.elo_lo), "hi": _num(r.elo_hi),
         "n": r.matches}
        for r in board
    ]  # fmt: skip


def _num(v: float) -> float | None:
    return None if v is None or math.isnan(v) else float(v)


def _wanted(rater: str, judges: Sequence[str] | None) -> bool:
    """The people always; a judge config when ``judges`` is empty or names it (by rater name or judge name)."""
    return rater == HUMAN or not judges or any(rater == j or rater.split("@")[0] == j for j in judges)


def style_boards(
    snap: Snapshot, *, judges: Sequence[str] | None = None, n_boot: int = 200, seed: int = 0
) -> dict[str, Any]:
    """Per rater ("human", or a judge config's rater name; ``judges`` filters the configs by rater or judge
    name): ``{"raw": [row...], "style": [row...], "coefficients": {feature: {"value", "lo", "hi"}},
    "matches": int, "dropped": [feature...], "note": str}`` (``note``: why the style fit is not to be trusted,
    e.g. complete separation; else ""). A row is ``{"contestant", "rating", "lo", "hi", "n"}``, best
    first, on the existing boards' Elo-like scale (1000-centred); the raw board is exactly
    :func:`studio.metrics.leaderboard` on the same matches. A coefficient is in log-odds per RMS of the feature's
    normalised difference; NaN figures (a CI from too few matches, a feature without variation) are None."""
    out = outcomes(snap)
    feats: dict[int, dict[str, float]] = {}

    def style(run_id: int) -> dict[str, float]:
        if run_id not in feats:
            feats[run_id] = style_features(snap.runs[run_id]["answer"] or "")
        return feats[run_id]

    raters: dict[str, Any] = {}
    for rater in sorted(out.votes, key=lambda r: (r != HUMAN, r)):
        if not _wanted(rater, judges):
            continue
        found: list[Match] = []
        styles = []
        for (a, b), labels in out.votes[rater].items():
            ca, cb = contestant(snap.runs[a]), contestant(snap.runs[b])
            for lab in labels:
                if lab:
                    found.append(Match(ca, cb, lab, HUMAN if rater == HUMAN else "judge"))
                    styles.append((style(a), style(b)))
        raw = metrics.leaderboard(found, n_boot=n_boot, seed=seed)
        if not raw:
            continue
        board = style_leaderboard(found, styles, n_boot=n_boot, seed=seed)
        raters[rater] = {
            "raw": _rows(raw),
            "style": _rows(board.rows),
            "coefficients": {
                f: {"value": _num(c.value), "lo": _num(c.lo), "hi": _num(c.hi)}
                for f, c in board.coefficients.items()
            },
            "matches": board.matches,
            "dropped": board.dropped,
            "note": board.note,
        }
    return {"raters": raters, "features": list(STYLE_FEATURES)}
