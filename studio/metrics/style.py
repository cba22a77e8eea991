"""Controlling for style: a Bradley–Terry board with style covariates, and a length-controlled win rate.

**Style-controlled board** (Chatbot Arena, LMSYS 2024, "Does style matter?"; FastChat ``elo_analysis.py``
``construct_style_matrices``). Bradley–Terry is a logistic regression of the outcome on contestant indicators
(+1 for A, −1 for B); style control adds, per style feature, the normalised difference ``(a − b) / (a + b + 1)``
(the +1 as in FastChat, so two answers without a header give 0, not 0/0), scaled to unit root mean square over
the matches. FastChat also centres it, which is harmless where positions are random; the studio labels A by run
id, so the difference is scaled about 0 and 'equal style' stays at 0. The contestant coefficients are then the
ratings with style held equal; the style coefficients say how much each feature moves the log-odds of winning,
per unit of its scaled difference (one RMS). A tie is half a win each way, a feature without variation in the
data is left out of the fit (its coefficient is NaN), and the fit is a GLM Binomial (statsmodels) with the raw
board's small L2 pull (``l2``, the same objective as :func:`studio.metrics.leaderboard.leaderboard` plus the style
terms), so an unbeaten contestant still gets a finite rating; when contestants and style predict every decided
match (complete separation) no maximum-likelihood fit exists, and the board says so in its ``note``. CIs are
percentile bootstraps over matches, the scaling fixed from the full data (as FastChat).

**Length-controlled win rate** (AlpacaEval 2, Dubois et al. 2024, arXiv 2404.04475; ``alpaca_eval``
``metrics/glm_winrate.py``). A GLM Binomial of the preference for the model (1 win, ½ tie, 0 loss) on an
intercept (the model term) and ``tanh(Δlen / sd(Δlen))``, Δlen the difference in characters; the LC win rate is
its prediction with the length difference set to 0, i.e. σ(intercept). AlpacaEval also has an instruction
difficulty term, estimated from many models' answers to each instruction; a compare-with-parent has one pair per
prompt, so a per-prompt term would absorb each outcome: it is left out. CIs: percentile bootstrap over items,
refitting the whole GLM (the scaling included) on each resample.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from studio.metrics.bootstrap import bootstrap_ci
from studio.metrics.leaderboard import BoardRow, Match, _elo, _encode_kept

#: the style covariates, in the order of the design matrix's columns
STYLE_FEATURES = ("length", "headers", "lists", "bold")
#: fewest judged items for the length-controlled GLM (two parameters, and a bootstrap over the items)
MIN_LC_ITEMS = 5

_CODE = re.compile(r"```.*?```", re.DOTALL)  # fenced code: a '# comment' in it is no header
_HEADER = re.compile(r"^#{1,6}\s", re.MULTILINE)
_LIST = re.compile(r"^\s*(?:[-*+]|\d+\.)\s", re.MULTILINE)
_BOLD = re.compile(r"\*\*[^*\n]+\*\*|__[^_\n]+__")


def style_features(text: str) -> dict[str, float]:
    """An answer's style: its length in characters, and its Markdown headers, list items and bold spans
    (counted outside fenced code blocks, with the patterns of the Arena's ``add_markdown_info``)."""
    text = text or ""
    prose = _CODE.sub("", text)
    return {
        "length": float(len(text)),
        "headers": float(len(_HEADER.findall(prose))),
        "lists": float(len(_LIST.findall(prose))),
        "bold": float(len(_BOLD.findall(prose))),
    }


def style_difference(a: Mapping[str, float], b: Mapping[str, float]) -> dict[str, float]:
    """Per feature, ``(a − b) / (a + b + 1)``: in (−1, 1), 0 when equal (FastChat's ``add_one`` ratio)."""
    return {f: (a[f] - b[f]) / (a[f] + b[f] + 1.0) for f in STYLE_FEATURES}


# -- the style-controlled board -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Coefficient:
    """A style feature's coefficient: log-odds of winning per RMS of its normalised difference, with its CI."""

    feature: str
    value: float
    lo: float
    hi: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class StyleBoard:
    """The style-controlled board (best first, the raw board's row type and rating scale) and the style
    coefficients; ``dropped`` lists the features without variation (left out of the fit); ``note`` says when
    the fit is not to be trusted (the outcomes are completely separated)."""

    rows: list[BoardRow] = field(default_factory=list)
    coefficients: dict[str, Coefficient] = field(default_factory=dict)
    dropped: list[str] = field(default_factory=list)
    matches: int = 0
    note: str = ""


def _glm_ridge(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, l2: float, start: np.ndarray | None
) -> np.ndarray:
    """GLM Binomial of ``y`` (1, ½, 0) on ``x`` with frequency weights ``w`` and an L2 pull ``l2`` on every
    coefficient: minimises Σ w·NLL + l2/2·|β|² (statsmodels' ridge objective is per observation)."""
    from statsmodels.genmod.families import Binomial  # not statsmodels.api: it imports far more
    from statsmodels.genmod.generalized_linear_model import GLM

    model = GLM(y, x, family=Binomial(), freq_weights=w)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a resample's separation only means a large, finite coefficient
        res = model.fit_regularized(
            method="elastic_net", alpha=l2 / len(y), L1_wt=0.0, start_params=start, opt_method="l-bfgs-b"
        )
    return np.asarray(res.params, dtype=float)


def _style_design(
    styles: Sequence[tuple[Mapping[str, float], Mapping[str, float]]],
) -> tuple[np.ndarray, list]:
    """The normalised differences scaled to unit root mean square (one column per feature that varies), and
    the features kept. Scaled about 0, not centred: a difference changes sign when A and B swap, and the studio
    labels A by run id, not at random as the Arena shows them; centring would move 'equal style' away from 0."""
    diffs = np.array([[style_difference(a, b)[f] for f in STYLE_FEATURES] for a, b in styles], dtype=float)
    diffs = diffs.reshape(len(styles), len(STYLE_FEATURES))
    scale = np.sqrt((diffs**2).mean(axis=0)) if len(styles) else np.zeros(len(STYLE_FEATURES))
    kept = [i for i, s in enumerate(scale) if s > 1e-12]
    return diffs[:, kept] / scale[kept], [STYLE_FEATURES[i] for i in kept]


def style_leaderboard(
    matches: Sequence[Match],
    styles: Sequence[tuple[Mapping[str, float], Mapping[str, float]]],
    *,
    n_boot: int = 200,
    level: float = 0.95,
    seed: int = 0,
    l2: float = 0.01,
) -> StyleBoard:
    """The Bradley–Terry board with style covariates. ``styles[k]`` is ``(style_features(answer of a),
    style_features(answer of b))`` of ``matches[k]``. Ratings are centred on 0 and shown Elo-like (1000-centred,
    as :func:`studio.metrics.leaderboard.leaderboard`), with percentile bootstrap CIs over matches."""
    if len(styles) != len(matches):
        raise ValueError(f"{len(matches)} matches but {len(styles)} style pairs")
    names, ia, ib, ya, w, kept_idx = _encode_kept(matches)
    if not names:
        return StyleBoard()
    n, m = len(names), len(ia)
    style_x, features = _style_design([styles[k] for k in kept_idx])
    x = np.zeros((m, n + len(features)))
    x[np.arange(m), ia] = 1.0
    x[np.arange(m), ib] = -1.0
    x[:, n:] = style_x
    params = _glm_ridge(x, ya, w, l2, None)
    theta = params[:n] - params[:n].mean()

    boots = np.full((n_boot if m > 1 else 0, n + len(features)), np.nan)
    rng = np.random.default_rng(seed)
    for b in range(len(boots)):
        idx = rng.integers(0, m, m)
        fit = _glm_ridge(x[idx], ya[idx], w[idx], l2, params)
        present = np.zeros(n, dtype=bool)
        present[ia[idx]] = present[ib[idx]] = True
        centred = fit[:n] - fit[:n][present].mean()
        boots[b, :n][present] = centred[present]
        boots[b, n:] = fit[n:]
    lo, hi = _percentiles(boots, level)

    played = np.bincount(ia, w, n) + np.bincount(ib, w, n)
    wins = np.bincount(ia, w * ya, n) + np.bincount(ib, w * (1 - ya), n)
    rows = []
    for rank, i in enumerate(np.argsort(-theta, kind="stable"), start=1):
        rows.append(
            BoardRow(
                rank=rank, model=names[i][0], strategy=names[i][1], strength=float(theta[i]), lo=lo[i],
                hi=hi[i], elo=_elo(theta[i]), elo_lo=_elo(lo[i]), elo_hi=_elo(hi[i]),
                matches=int(round(played[i])), wins=float(wins[i]),
                win_rate=float(wins[i] / played[i]) if played[i] else math.nan,
            )
        )  # fmt: skip
    coefs = {f: Coefficient(f, math.nan, math.nan, math.nan) for f in STYLE_FEATURES}
    for j, f in enumerate(features):
        coefs[f] = Coefficient(f, float(params[n + j]), lo[n + j], hi[n + j])
    dropped = [f for f in STYLE_FEATURES if f not in features]
    return StyleBoard(rows, coefs, dropped, m, SEPARATED if _separated(x @ params, ya) else "")


#: what a board says when contestants and style predict every decided match (no maximum-likelihood fit exists)
SEPARATED = (
    "every decided match is predicted by the contestants and the style features (complete separation): the "
    "maximum-likelihood fit does not exist, and these ratings and coefficients are set by the small L2 pull"
)


def _separated(logit: np.ndarray, y: np.ndarray) -> bool:
    """Complete separation: the fitted log-odds put every decided (non-tie) match on its winner's side."""
    decided = y != 0.5
    return bool(decided.any()) and bool(np.all((logit[decided] > 0) == (y[decided] > 0.5)))


def _percentiles(boots: np.ndarray, level: float) -> tuple[list[float], list[float]]:
    tail = (1 - level) / 2 * 100
    lo, hi = [], []
    for col in boots.T:
        ok = col[~np.isnan(col)]
        lo.append(float(np.percentile(ok, tail)) if len(ok) else math.nan)
        hi.append(float(np.percentile(ok, 100 - tail)) if len(ok) else math.nan)
    return lo, hi


# -- the length-controlled win rate -------------------------------------------------------------------------------
@dataclass(frozen=True)
class LengthControlled:
    """The raw and length-controlled win rates of a model against a baseline, with percentile bootstrap CIs.

    ``length_coef`` is the GLM's coefficient on tanh(Δlen / sd(Δlen)) (log-odds; > 0: the longer answer is
    preferred). A NaN figure comes with a ``note`` saying why (too few items, no variation)."""

    n: int
    win_rate: float
    lo: float
    hi: float
    lc_win_rate: float
    lc_lo: float
    lc_hi: float
    length_coef: float
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _lc_fit(
    scores: np.ndarray, delta: np.ndarray, l2: float, start: np.ndarray | None = None
) -> tuple[float, float, str]:
    """(LC win rate, length coefficient, note) of one sample; NaNs and a note where the GLM is undefined.
    ``start``: the full sample's (intercept, slope), a warm start for a bootstrap resample."""
    if len(scores) < MIN_LC_ITEMS:
        return math.nan, math.nan, f"too few judged items for the length GLM ({len(scores)} < {MIN_LC_ITEMS})"
    if np.ptp(scores) == 0:
        return math.nan, math.nan, "every outcome is the same: no variation for the length GLM"
    sd = delta.std(ddof=1)
    if not sd > 0:
        return math.nan, math.nan, "every pair has the same length difference: no length variation to control"
    x = np.column_stack([np.ones(len(scores)), np.tanh(delta / sd)])
    intercept, slope = _glm_ridge(x, scores, np.ones(len(scores)), l2, start)
    return float(1 / (1 + math.exp(-intercept))), float(slope), ""


def length_controlled_win_rate(
    scores: Sequence[float],
    len_model: Sequence[float],
    len_baseline: Sequence[float],
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    l2: float = 0.01,
) -> LengthControlled:
    """AlpacaEval's LC win rate of a model over a baseline: ``scores`` (1 win, ½ tie, 0 loss per item) and
    both answers' lengths. ``l2`` is a tiny ridge pull, so that a sample the length separates stays finite."""
    s = np.asarray(scores, dtype=float)
    delta = np.asarray(len_model, dtype=float) - np.asarray(len_baseline, dtype=float)
    if not (len(s) == len(delta)):
        raise ValueError(f"{len(s)} scores but {len(delta)} length pairs")
    rows = [{"score": float(v), "delta": float(d)} for v, d in zip(s, delta, strict=True)]
    raw = float(s.mean()) if len(s) else math.nan
    lo, hi = bootstrap_ci(rows, _mean, n_boot=n_boot, level=level, seed=seed)
    lc, coef, note = _lc_fit(s, delta, l2)
    lc_lo = lc_hi = math.nan
    if not note:
        start = np.array([math.log(lc / (1 - lc)) if 0 < lc < 1 else 0.0, coef])

        def stat(sample: Sequence[Mapping[str, float]]) -> float:
            s, d = np.array([r["score"] for r in sample]), np.array([r["delta"] for r in sample])
            return _lc_fit(s, d, l2, start)[0]

        lc_lo, lc_hi = bootstrap_ci(rows, stat, n_boot=n_boot, level=level, seed=seed)
    return LengthControlled(len(s), raw, lo, hi, lc, lc_lo, lc_hi, coef, note)


def _mean(rows: Sequence[Mapping[str, float]]) -> float:
    return sum(r["score"] for r in rows) / len(rows) if rows else math.nan


__all__ = [
    "MIN_LC_ITEMS",
    "STYLE_FEATURES",
    "Coefficient",
    "LengthControlled",
    "StyleBoard",
    "length_controlled_win_rate",
    "style_difference",
    "style_features",
    "style_leaderboard",
]
