"""Bradley–Terry leaderboard over (model, strategy) contestants, with bootstrap CIs, and a win-rate matrix.

P(i beats j) = σ(θ_i − θ_j). A tie counts as half a win for each side. θ is fitted by maximum likelihood with a
small L2 pull towards 0 (so that an unbeaten contestant still gets a finite strength), then centred on mean 0.
The board also shows an Elo-like rating, 1000 + 400·θ/ln 10, on which a 400-point gap is 10:1 odds.

Human votes and judge verdicts each give their own board (``source``); the combined board pools both.
A k-way ranking enters as its C(k, 2) pairs (:func:`matches_from_ranking`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from studio.metrics.agreement import outcome

Contestant = tuple[str, str]  # (model, strategy)
ELO_BASE, ELO_SCALE = 1000.0, 400.0 / math.log(10)


def label(c: Contestant) -> str:
    return f"{c[0]} / {c[1]}" if c[1] else c[0]


@dataclass(frozen=True)
class Match:
    """One decided comparison: contestant ``a`` vs ``b``, won by 'A', 'B' or a 'tie'."""

    a: Contestant
    b: Contestant
    winner: str
    source: str = "human"  # "human" | "judge"
    weight: float = 1.0


@dataclass(frozen=True)
class BoardRow:
    rank: int
    model: str
    strategy: str
    strength: float  # θ, centred
    lo: float  # bootstrap CI of θ
    hi: float
    elo: float
    elo_lo: float
    elo_hi: float
    matches: int
    wins: float  # ties count half
    win_rate: float

    @property
    def contestant(self) -> Contestant:
        return (self.model, self.strategy)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "contestant": label(self.contestant)}


def matches_from_ranking(
    contestants: Sequence[Contestant], ranks: Sequence[int], source: str = "human"
) -> list[Match]:
    """A k-way ranking (1 = best, equal ranks = tie) as its C(k, 2) pairwise matches."""
    out = []
    for (ca, ra), (cb, rb) in itertools.combinations(zip(contestants, ranks, strict=True), 2):
        out.append(Match(ca, cb, "A" if ra < rb else "B" if rb < ra else "tie", source))
    return out


# -- fitting ------------------------------------------------------------------------------------------------------
def _encode(
    matches: Sequence[Match],
) -> tuple[list[Contestant], np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Contestants, and per match: index of a, index of b, score of a (1, 1/2, 0), weight. Self-play dropped."""
    return _encode_kept(matches)[:5]


def _encode_kept(
    matches: Sequence[Match],
) -> tuple[list[Contestant], np.ndarray, np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """:func:`_encode`, plus the positions in ``matches`` of the matches kept (for covariates given beside)."""
    keep = [(k, m, o) for k, m in enumerate(matches) if (o := outcome(m.winner)) and m.a != m.b]
    names = sorted({c for _, m, _ in keep for c in (m.a, m.b)})
    index = {c: i for i, c in enumerate(names)}
    ia = np.array([index[m.a] for _, m, _ in keep], dtype=int)
    ib = np.array([index[m.b] for _, m, _ in keep], dtype=int)
    ya = np.array([{"A": 1.0, "B": 0.0, "tie": 0.5}[o] for _, _, o in keep])
    w = np.array([m.weight for _, m, _ in keep], dtype=float)
    return names, ia, ib, ya, w, [k for k, _, _ in keep]


def _fit(n: int, ia: np.ndarray, ib: np.ndarray, ya: np.ndarray, w: np.ndarray, l2: float) -> np.ndarray:
    """Maximum-likelihood θ (mean 0) for ``n`` contestants; weights ``w`` may be bootstrap counts."""
    from scipy.optimize import minimize
    from scipy.special import expit, log_expit

    def loss(theta: np.ndarray) -> tuple[float, np.ndarray]:
        d = theta[ia] - theta[ib]
        nll = -np.sum(w * (ya * log_expit(d) + (1 - ya) * log_expit(-d))) + 0.5 * l2 * theta @ theta
        g_d = w * (expit(d) - ya)  # d(nll)/d(d)
        grad = np.bincount(ia, g_d, n) - np.bincount(ib, g_d, n) + l2 * theta
        return float(nll), grad

    res = minimize(loss, np.zeros(n), jac=True, method="L-BFGS-B")
    return res.x - res.x.mean()


def bradley_terry(matches: Sequence[Match], *, l2: float = 0.01) -> dict[Contestant, float]:
    """θ per contestant (centred on 0); ties count half a win each."""
    names, ia, ib, ya, w = _encode(matches)
    if not names:
        return {}
    return dict(zip(names, _fit(len(names), ia, ib, ya, w, l2).tolist(), strict=True))


def _bootstrap(
    n: int, ia: np.ndarray, ib: np.ndarray, ya: np.ndarray, w: np.ndarray, l2: float, n_boot: int, seed: int
) -> np.ndarray:
    """θ refitted on ``n_boot`` resamples of the matches; NaN for a contestant absent from a resample."""
    rng = np.random.default_rng(seed)
    m = len(ia)
    out = np.full((n_boot, n), np.nan)
    for b in range(n_boot):
        counts = np.bincount(rng.integers(0, m, m), minlength=m) * w
        theta = _fit(n, ia, ib, ya, counts, l2)
        present = np.zeros(n, dtype=bool)
        used = counts > 0
        present[ia[used]] = present[ib[used]] = True
        out[b, present] = theta[present]
    return out


def leaderboard(
    matches: Sequence[Match], *, n_boot: int = 200, level: float = 0.95, seed: int = 0, l2: float = 0.01
) -> list[BoardRow]:
    """The board, best first: θ and Elo-like rating with percentile bootstrap CIs, matches and win rate."""
    names, ia, ib, ya, w = _encode(matches)
    if not names:
        return []
    n = len(names)
    theta = _fit(n, ia, ib, ya, w, l2)
    boots = (
        _bootstrap(n, ia, ib, ya, w, l2, n_boot, seed) if n_boot and len(ia) > 1 else np.full((1, n), np.nan)
    )
    tail = (1 - level) / 2 * 100
    with np.errstate(all="ignore"):
        los = [np.nanpercentile(col, tail) if not np.isnan(col).all() else math.nan for col in boots.T]
        his = [np.nanpercentile(col, 100 - tail) if not np.isnan(col).all() else math.nan for col in boots.T]
    played = np.bincount(ia, w, n) + np.bincount(ib, w, n)
    wins = np.bincount(ia, w * ya, n) + np.bincount(ib, w * (1 - ya), n)
    order = np.argsort(-theta, kind="stable")
    rows = []
    for rank, i in enumerate(order, start=1):
        rows.append(
            BoardRow(
                rank=rank,
                model=names[i][0],
                strategy=names[i][1],
                strength=float(theta[i]),
                lo=float(los[i]),
                hi=float(his[i]),
                elo=_elo(theta[i]),
                elo_lo=_elo(los[i]),
                elo_hi=_elo(his[i]),
                matches=int(round(played[i])),
                wins=float(wins[i]),
                win_rate=float(wins[i] / played[i]) if played[i] else math.nan,
            )
        )
    return rows


def _elo(theta: float) -> float:
    return float(ELO_BASE + ELO_SCALE * theta)


def boards(
    matches: Iterable[Match], *, combined: bool = False, n_boot: int = 200, level: float = 0.95, seed: int = 0
) -> dict[str, list[BoardRow]]:
    """One board per source ("human", "judge"), plus "combined" (all sources pooled) on request."""
    matches = list(matches)
    out = {
        src: leaderboard([m for m in matches if m.source == src], n_boot=n_boot, level=level, seed=seed)
        for src in sorted({m.source for m in matches})
    }
    if combined:
        out["combined"] = leaderboard(matches, n_boot=n_boot, level=level, seed=seed)
    return out


def win_rate_matrix(matches: Sequence[Match]) -> Any:
    """A DataFrame: row i, column j = share of i's matches against j that i won (ties half); NaN if none."""
    import pandas as pd

    names, ia, ib, ya, w = _encode(matches)
    n = len(names)
    won = np.zeros((n, n))
    played = np.zeros((n, n))
    np.add.at(won, (ia, ib), w * ya)
    np.add.at(won, (ib, ia), w * (1 - ya))
    np.add.at(played, (ia, ib), w)
    np.add.at(played, (ib, ia), w)
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(played > 0, won / np.where(played > 0, played, 1), np.nan)
    labels = [label(c) for c in names]
    return pd.DataFrame(rate, index=labels, columns=labels)
