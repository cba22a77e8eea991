"""Ready-made figures with bootstrap CIs over plain rows, for the CLI and the Judge dashboard.

**Agreement rows** are vote pairs: ``{"item", "x", "y"}`` (x: e.g. the human's outcome, y: the judge's) plus any
attributes to break down by (``model_a``, ``model_b``, ``strategy_a``, ``strategy_b``, ``prompt_set``).

**Outcome rows** are one rater's outcomes on items: ``{"winner", "len_a", "len_b", "shown_picks",
"order_winners"}``, where ``shown_picks`` are the picks by shown position ('A' = first/left; one per order
judged) and ``order_winners`` the per-order picks in the item's labels (for swap flips; humans have one).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence
from typing import Any

from studio.metrics.agreement import agreement, cohen_kappa
from studio.metrics.bias import length_bias, position_bias, swap_flip_rate
from studio.metrics.bootstrap import Estimate, Row, breakdown

By = str | Callable[[Row], Sequence[Hashable]] | None


def s1_of(rows: Sequence[Row]) -> float:
    return agreement([r["x"] for r in rows], [r["y"] for r in rows], ties=True).value


def s2_of(rows: Sequence[Row]) -> float:
    return agreement([r["x"] for r in rows], [r["y"] for r in rows], ties=False).value


def kappa_of(rows: Sequence[Row]) -> float:
    return cohen_kappa([r["x"] for r in rows], [r["y"] for r in rows])


def position_bias_of(rows: Sequence[Row]) -> float:
    return position_bias([p for r in rows for p in r.get("shown_picks") or [r["winner"]]]).value


def length_bias_of(rows: Sequence[Row]) -> float:
    return length_bias(
        [r["winner"] for r in rows], [r["len_a"] for r in rows], [r["len_b"] for r in rows]
    ).value


def swap_flip_of(rows: Sequence[Row]) -> float:
    return swap_flip_rate([r.get("order_winners") or [] for r in rows]).value


AGREEMENT_STATS = {"s1": s1_of, "s2": s2_of, "kappa": kappa_of}
BIAS_STATS = {"position_bias": position_bias_of, "length_bias": length_bias_of, "swap_flip": swap_flip_of}


def report(
    rows: Sequence[Row],
    stats: dict[str, Callable[[Sequence[Row]], float]],
    by: By = None,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, list[Estimate]]:
    """Each named statistic over all rows and per group of ``by``, with bootstrap CIs."""
    return {name: breakdown(rows, f, by, n_boot=n_boot, level=level, seed=seed) for name, f in stats.items()}


def agreement_report(rows: Sequence[Row], by: By = None, **kw: Any) -> dict[str, list[Estimate]]:
    """S1, S2 and Cohen's κ of vote-pair rows, overall and per group."""
    return report(rows, AGREEMENT_STATS, by, **kw)


def bias_report(rows: Sequence[Row], by: By = None, **kw: Any) -> dict[str, list[Estimate]]:
    """Position bias, length bias and swap-flip rate of outcome rows, overall and per group."""
    return report(rows, BIAS_STATS, by, **kw)


def winner_from_ratings(rating_a: float | None, rating_b: float | None, margin: float = 0.0) -> str | None:
    """A pairwise outcome from two single-answer ratings: a tie within ``margin``; None if either is missing."""
    if rating_a is None or rating_b is None:
        return None
    if abs(rating_a - rating_b) <= margin:
        return "tie"
    return "A" if rating_a > rating_b else "B"
