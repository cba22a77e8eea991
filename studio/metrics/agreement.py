"""Agreement between raters (humans, judges) on pairwise outcomes, counted per vote as in MT-Bench.

Outcomes are 'A', 'B' or 'tie' in one shared labelling of each item (A = the first or left answer).
:func:`outcome` folds the other spellings in: 'inconsistent' (a judge's position-swap disagreement), 'both_bad'
and MT-Bench's '[[C]]' are ties; a failed verdict (None) is no outcome and drops out of every count.

- **S1** counts every vote pair, ties included; **S2** leaves out each pair in which either vote is a tie
  (MT-Bench's ``ban=["tie"]``). GPT-4 vs humans: S1 66%, S2 85%; humans vs humans: 63% and 81%.
- A judge vs human pair is every judge vote against every human vote on the same item; a human vs human pair
  is every two votes on an item with two or more annotators.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

LABELS = ("A", "B", "tie")
_TIES = {"tie", "inconsistent", "both_bad", "c", "[[c]]", "tie (bothbad)", "tie (inconsistent)"}


def outcome(label: Any) -> str | None:
    """'A' | 'B' | 'tie', or None for no outcome (a failed verdict, a missing vote)."""
    if label is None:
        return None
    s = str(label).strip()
    if s.upper() in ("A", "B"):
        return s.upper()
    if s.casefold() in _TIES or s.casefold().startswith("tie"):
        return "tie"
    return None


@dataclass(frozen=True)
class Agreement:
    agree: int
    n: int

    @property
    def value(self) -> float:
        return self.agree / self.n if self.n else math.nan

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "value": self.value}


def paired(x: Sequence[Any], y: Sequence[Any], *, ties: bool = True) -> tuple[list[str], list[str]]:
    """The two label lists as outcomes, keeping only positions where both have one (and, without ``ties``,
    where neither is a tie)."""
    if len(x) != len(y):
        raise ValueError(f"label lists differ in length: {len(x)} vs {len(y)}")
    keep = [(a, b) for a, b in zip(map(outcome, x), map(outcome, y), strict=True) if a and b]
    if not ties:
        keep = [(a, b) for a, b in keep if a != "tie" and b != "tie"]
    return [a for a, _ in keep], [b for _, b in keep]


def agreement(x: Sequence[Any], y: Sequence[Any], *, ties: bool = True) -> Agreement:
    """How many vote pairs agree: S1 with ``ties=True``, S2 with ``ties=False``."""
    a, b = paired(x, y, ties=ties)
    return Agreement(sum(p == q for p, q in zip(a, b, strict=True)), len(a))


def s1(x: Sequence[Any], y: Sequence[Any]) -> float:
    return agreement(x, y, ties=True).value


def s2(x: Sequence[Any], y: Sequence[Any]) -> float:
    return agreement(x, y, ties=False).value


def cohen_kappa(x: Sequence[Any], y: Sequence[Any], *, ties: bool = True) -> float:
    """Cohen's κ over the same vote pairs as S1 (``ties=True``) or S2; NaN with no pairs or no variation."""
    from sklearn.metrics import cohen_kappa_score

    a, b = paired(x, y, ties=ties)
    if not a:
        return math.nan
    if len(set(a) | set(b)) == 1:
        return math.nan  # one label everywhere: κ is 0/0
    return float(cohen_kappa_score(a, b, labels=[lab for lab in LABELS if ties or lab != "tie"]))


def confusion(x: Sequence[Any], y: Sequence[Any], labels: Sequence[str] = LABELS) -> np.ndarray:
    """Counts ``m[i, j]`` of pairs with x = labels[i] and y = labels[j] (rows: x, e.g. human; columns: judge)."""
    from sklearn.metrics import confusion_matrix

    a, b = paired(x, y, ties=True)
    if not a:
        return np.zeros((len(labels), len(labels)), dtype=int)
    return confusion_matrix(a, b, labels=list(labels))


# -- which votes are compared ------------------------------------------------------------------------------------
VotePair = tuple[Hashable, str, str]  # (item, x's outcome, y's outcome)


def cross_pairs(x: Mapping[Hashable, Sequence[Any]], y: Mapping[Hashable, Sequence[Any]]) -> list[VotePair]:
    """Every vote of ``x`` against every vote of ``y`` on the items both cover (judge vs human, judge vs judge)."""
    out = []
    for item in x.keys() & y.keys():
        for a, b in itertools.product(x[item], y[item]):
            if outcome(a) and outcome(b):
                out.append((item, outcome(a), outcome(b)))
    return out


def within_pairs(votes: Mapping[Hashable, Sequence[Any]]) -> list[VotePair]:
    """Every two votes on an item with two or more of them (human vs human)."""
    out = []
    for item, labels in votes.items():
        valid = [o for o in map(outcome, labels) if o]
        out += [(item, a, b) for a, b in itertools.combinations(valid, 2)]
    return out


def group_votes(rows: Iterable[Mapping[str, Any]], key: str = "item", label: str = "winner") -> dict:
    """Rows of ``{item, winner}`` as item -> list of outcomes (None for a failed verdict)."""
    out: dict[Hashable, list[str | None]] = {}
    for r in rows:
        out.setdefault(r[key], []).append(outcome(r[label]))
    return out


def flip(label: Any) -> str | None:
    """The outcome with A and B swapped: for aligning one item seen in two labellings."""
    o = outcome(label)
    return {"A": "B", "B": "A"}.get(o, o) if o else None  # type: ignore[arg-type]


# -- rankings -----------------------------------------------------------------------------------------------------
def kendall_tau(x: Sequence[float], y: Sequence[float]) -> tuple[float, float]:
    """Kendall's τ-b between two scorings (or rankings) of the same things, with its p-value (scipy)."""
    from scipy.stats import kendalltau

    if len(x) != len(y):
        raise ValueError(f"rankings differ in length: {len(x)} vs {len(y)}")
    if len(x) < 2:
        return math.nan, math.nan
    res = kendalltau(x, y)
    return float(res.statistic), float(res.pvalue)


def mean_kendall_tau(pairs: Iterable[tuple[Sequence[float], Sequence[float]]]) -> tuple[float, int]:
    """Mean τ over per-item rankings (e.g. a human's and a judge's ranks of the K answers of each prompt).

    Items where τ is undefined (fewer than 2 answers, or one ranking all ties) are left out; returns (mean, n).
    """
    taus = [t for x, y in pairs if not math.isnan(t := kendall_tau(x, y)[0])]
    return (float(np.mean(taus)) if taus else math.nan), len(taus)
