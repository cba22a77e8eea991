"""Agreement between raters (humans, judges) on pairwise outcomes, counted per vote as in MT-Bench.

Outcomes are 'A', 'B' or 'tie' in one shared labelling of each item (A = the first or left answer).
:func:`outcome` folds the other spellings in: 'inconsistent' (a judge's position-swap disagreement), 'both_bad'
and MT-Bench's '[[C]]' are ties; a failed verdict (None) is no outcome and drops out of every count.

- **S1** counts every vote pair, ties included; **S2** leaves out each pair in which either vote is a tie
  (MT-Bench's ``ban=["tie"]``). GPT-4 vs humans: S1 66%, S2 85%; humans vs humans: 63% and 81%.
- A judge vs human pair is every judge vote against every human vote on the same item; a human vs human pair
  is every two votes on an item by two *different* annotators (one person's repeated votes are not agreement).
- **Krippendorff's α** (:func:`inter_annotator_alpha`, via the maintained ``krippendorff`` package) is
  chance-corrected agreement among any number of annotators with missing labels: nominal over pairwise choices,
  ordinal over the ranks of a k-way ranking; its CI is a bootstrap over items.
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


def within_pairs(
    votes: Mapping[Hashable, Sequence[Any]], annotators: Mapping[Hashable, Sequence[Hashable]]
) -> list[VotePair]:
    """Every two votes on an item by two different annotators (human vs human); ``annotators[item][i]`` is who
    gave ``votes[item][i]``. One person's repeated votes never pair with each other."""
    out = []
    for item, labels in votes.items():
        who = annotators.get(item, ())
        if len(who) != len(labels):
            raise ValueError(f"item {item!r}: {len(labels)} votes but {len(who)} annotators")
        valid = [(w, o) for w, o in zip(who, map(outcome, labels), strict=True) if o]
        out += [(item, a, b) for (p, a), (q, b) in itertools.combinations(valid, 2) if p != q]
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


# -- Krippendorff's alpha ------------------------------------------------------------------------------------------
ALPHA_LEVELS = ("nominal", "ordinal")


def inter_annotator_alpha(
    votes: Iterable[Mapping[str, Any]], *, level: str, n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Krippendorff's α among the annotators of store vote rows, with a bootstrap CI over items.

    - ``level="nominal"``: pairwise votes (rows with a ``choice``); an item is a comparison and its value the
      choice ('A', 'B', 'tie', 'both_bad' are four categories).
    - ``level="ordinal"``: rankings (``kind == 'ranking'``); an item is a (comparison, position) and its value
      that position's rank. The bootstrap resamples whole comparisons, whose positions belong together.

    Only items with two or more annotators count. If an annotator has several rows for one comparison (the
    store keeps one), the latest (by ``created_at``, then ``id``) is used. Returns ``{"alpha", "lo", "hi",
    "n_items", "n_annotators"}``: the 95% percentile interval of ``n_boot`` resamples (NaN where α is
    undefined: no pairable item, or a single value everywhere).
    """
    import krippendorff

    if level not in ALPHA_LEVELS:
        raise ValueError(f"level is one of {', '.join(ALPHA_LEVELS)}, not {level!r}")
    units = _alpha_units(votes, level)  # comparison -> {position: {annotator: value}}
    cells = [
        (cid, pos, by) for cid, positions in units.items() for pos, by in positions.items() if len(by) > 1
    ]
    domain = sorted({v for _, _, by in cells for v in by.values()}, key=_alpha_key)
    nan = math.nan
    result: dict[str, Any] = {
        "alpha": nan, "lo": nan, "hi": nan, "n_items": len({cid for cid, _, _ in cells}),
        "n_annotators": len({a for _, _, by in cells for a in by}),
    }  # fmt: skip
    if not cells or len(domain) < 2:
        return result
    index = {v: i for i, v in enumerate(domain)}
    counts = np.zeros((len(cells), len(domain)))  # per unit, how many annotators gave each value
    for row, (_, _, by) in enumerate(cells):
        for value in by.values():
            counts[row, index[value]] += 1
    groups: dict[Hashable, list[int]] = {}
    for row, (cid, _, _) in enumerate(cells):
        groups.setdefault(cid, []).append(row)
    rows_of = list(groups.values())

    def alpha(rows: np.ndarray) -> float:
        sample = counts[rows]
        if np.count_nonzero(sample.sum(axis=0)) < 2:
            return nan  # one value everywhere: α is 0/0
        return float(krippendorff.alpha(value_counts=sample, value_domain=list(range(len(domain))),
                                        level_of_measurement=level))  # fmt: skip

    result["alpha"] = alpha(np.arange(len(cells)))
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        picked = rng.integers(len(rows_of), size=len(rows_of))
        boots.append(alpha(np.concatenate([rows_of[i] for i in picked])))
    finite = np.array([b for b in boots if not math.isnan(b)])
    if finite.size:
        result["lo"], result["hi"] = (float(x) for x in np.percentile(finite, [2.5, 97.5]))
    return result


def _alpha_units(votes: Iterable[Mapping[str, Any]], level: str) -> dict[Hashable, dict[int, dict]]:
    latest: dict[tuple[Hashable, Hashable], Mapping[str, Any]] = {}
    order = sorted(votes, key=lambda v: (str(v.get("created_at") or ""), v.get("id") or 0))
    for v in order:
        if level == "nominal" and v.get("choice") is not None:
            latest[(v["comparison_id"], v["annotator"])] = v
        elif level == "ordinal" and v.get("kind") == "ranking" and v.get("ranks"):
            latest[(v["comparison_id"], v["annotator"])] = v
    units: dict[Hashable, dict[int, dict]] = {}
    for (cid, who), v in latest.items():
        values = [v["choice"]] if level == "nominal" else list(v["ranks"])
        for pos, value in enumerate(values):
            units.setdefault(cid, {}).setdefault(pos, {})[who] = value
    return units


def _alpha_key(value: Any) -> tuple[int, Any]:
    """Numbers in numeric order (ordinal ranks), then text (nominal choices)."""
    return (0, value) if isinstance(value, int | float) else (1, str(value))
