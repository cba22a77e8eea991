"""Judge (and human) biases: swap flips, position bias and length bias.

- **swap-flip rate**: of the verdicts judged in both orders with both orders read, the share whose two orders
  picked differently (the *inconsistent* rate; MT-Bench's GPT-4 was consistent 65% of the time).
- **position bias**: of the decisive picks, the share that went to the answer shown first (left). For a human
  vote the pick is the vote; a two-order judge verdict gives one pick per order.
- **length bias**: of the decisive outcomes between answers of different lengths, the share the longer won.

An unbiased rater scores 1/2 on position and length bias (if quality is unrelated to position and length).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from studio.metrics.agreement import outcome


@dataclass(frozen=True)
class Rate:
    k: int  # how many counted (flips, first-position wins, longer-answer wins)
    n: int  # out of how many

    @property
    def value(self) -> float:
        return self.k / self.n if self.n else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "value": self.value}


def swap_flip_rate(order_picks: Sequence[Sequence[Any]]) -> Rate:
    """Per verdict, its orders' picks in one labelling (``Verdict.order_winners``); fully read verdicts only."""
    counted = [[outcome(p) for p in picks] for picks in order_picks if len(picks) >= 2]
    counted = [c for c in counted if all(c)]
    return Rate(sum(len(set(c)) > 1 for c in counted), len(counted))


def shown_pick(pick: Any, order: str) -> str | None:
    """A pick in the caller's labels, as the position it was shown in: in order "BA", answer B was shown first."""
    o = outcome(pick)
    if order == "BA" and o in ("A", "B"):
        return "B" if o == "A" else "A"
    return o


def position_picks(order_winners: Sequence[Any], orders: Sequence[str]) -> list[str | None]:
    """One verdict's per-order picks as shown positions ('A' = first shown)."""
    return [shown_pick(p, o) for p, o in zip(order_winners, orders, strict=True)]


def position_bias(picks: Sequence[Any]) -> Rate:
    """Share of decisive picks that went to the first-shown (left) answer; picks are in shown positions."""
    decisive = [o for o in map(outcome, picks) if o in ("A", "B")]
    return Rate(sum(o == "A" for o in decisive), len(decisive))


def length_bias(winners: Sequence[Any], len_a: Sequence[float], len_b: Sequence[float]) -> Rate:
    """Share of decisive outcomes between answers of unequal length that the longer answer won."""
    k = n = 0
    for w, la, lb in zip(winners, len_a, len_b, strict=True):
        o = outcome(w)
        if o not in ("A", "B") or la == lb:
            continue
        n += 1
        k += (o == "A") == (la > lb)
    return Rate(k, n)
