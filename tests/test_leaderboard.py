"""Bradley–Terry: recovers known strengths from simulated votes, matches sklearn's logistic regression,
counts ties as half a win; bootstrap CIs, separate boards and the win-rate matrix."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import pearsonr

from studio import metrics

TRUE = {
    ("m1", "system1"): -1.5,
    ("m1", "cot"): -0.5,
    ("m2", "system1"): 0.0,
    ("m2", "cove"): 0.7,
    ("m3", "bsm"): 1.5,
}


def simulate(n: int, seed: int = 0, source: str = "human", tie_rate: float = 0.1) -> list[metrics.Match]:
    rng = np.random.default_rng(seed)
    names = list(TRUE)
    out = []
    for _ in range(n):
        i, j = rng.choice(len(names), 2, replace=False)
        a, b = names[i], names[j]
        if rng.random() < tie_rate:
            out.append(metrics.Match(a, b, "tie", source))
            continue
        p = 1 / (1 + math.exp(-(TRUE[a] - TRUE[b])))
        out.append(metrics.Match(a, b, "A" if rng.random() < p else "B", source))
    return out


def test_recovers_known_strengths_from_simulated_votes():
    board = metrics.leaderboard(simulate(4000), n_boot=100)
    assert [r.contestant for r in board] == sorted(TRUE, key=TRUE.get, reverse=True)
    fitted = np.array([r.strength for r in board])
    truth = np.array([TRUE[r.contestant] for r in board])
    truth -= truth.mean()
    # ties (10%, half a win each) shrink the fitted gaps a little; order and shape are kept
    assert pearsonr(fitted, truth).statistic > 0.99
    assert np.abs(fitted - 0.9 * truth).max() < 0.25
    for r in board:
        assert r.lo < r.strength < r.hi
        assert r.elo_lo < r.elo < r.elo_hi
    assert sum(r.matches for r in board) == 2 * 4000


def test_matches_sklearn_logistic_regression_without_ties():
    from sklearn.linear_model import LogisticRegression

    matches = simulate(600, seed=3, tie_rate=0.0)
    theta = metrics.bradley_terry(matches, l2=0.5)
    names = sorted(TRUE)
    index = {c: i for i, c in enumerate(names)}
    x = np.zeros((len(matches), len(names)))
    for row, m in enumerate(matches):
        x[row, index[m.a]], x[row, index[m.b]] = 1, -1
    y = np.array([m.winner == "A" for m in matches])
    lr = LogisticRegression(C=1 / 0.5, fit_intercept=False, tol=1e-10, max_iter=10_000).fit(x, y)
    # the L2 optimum of a shift-invariant likelihood already has mean 0
    assert [theta[c] for c in names] == pytest.approx(lr.coef_[0].tolist(), abs=1e-4)


def test_ties_count_half_a_win():
    a, b = ("x", "s"), ("y", "s")
    matches = [metrics.Match(a, b, "A")] * 3 + [metrics.Match(a, b, "tie")]
    theta = metrics.bradley_terry(matches, l2=0.0)
    assert theta[a] - theta[b] == pytest.approx(math.log(3.5 / 0.5), abs=1e-3)
    row = {r.contestant: r for r in metrics.leaderboard(matches, n_boot=0)}
    assert row[a].wins == 3.5 and row[a].win_rate == pytest.approx(3.5 / 4) and row[b].wins == 0.5


def test_undefeated_contestant_stays_finite_and_failed_outcomes_are_ignored():
    a, b = ("x", ""), ("y", "")
    board = metrics.leaderboard(
        [metrics.Match(a, b, "A")] * 5 + [metrics.Match(a, b, None), metrics.Match(a, a, "A")], n_boot=20
    )  # type: ignore[arg-type]
    assert board[0].model == "x" and math.isfinite(board[0].strength)
    assert board[0].matches == 5
    assert metrics.leaderboard([]) == []


def test_matches_from_ranking():
    c0, c1, c2 = ("m", "a"), ("m", "b"), ("m", "c")
    got = metrics.matches_from_ranking([c0, c1, c2], [2, 1, 2], source="judge")
    assert [(m.a, m.b, m.winner, m.source) for m in got] == [
        (c0, c1, "B", "judge"),
        (c0, c2, "tie", "judge"),
        (c1, c2, "A", "judge"),
    ]


def test_win_rate_matrix():
    a, b, c = ("a", ""), ("b", ""), ("c", "")
    m = metrics.win_rate_matrix(
        [
            metrics.Match(a, b, "A"),
            metrics.Match(b, a, "B"),
            metrics.Match(b, a, "A"),
            metrics.Match(a, c, "tie"),
        ]
    )
    assert m.loc["a", "b"] == pytest.approx(2 / 3) and m.loc["b", "a"] == pytest.approx(1 / 3)
    assert m.loc["a", "c"] == pytest.approx(0.5) and m.loc["c", "a"] == pytest.approx(0.5)
    assert math.isnan(m.loc["b", "c"]) and math.isnan(m.loc["a", "a"])


def test_separate_boards_and_combined_on_request():
    matches = simulate(300, seed=1, source="human") + simulate(200, seed=2, source="judge")
    got = metrics.boards(matches, n_boot=10)
    assert set(got) == {"human", "judge"}
    assert sum(r.matches for r in got["judge"]) == 400
    got = metrics.boards(matches, combined=True, n_boot=10)
    assert sum(r.matches for r in got["combined"]) == 1000
    assert got["combined"][0].to_dict()["contestant"] == "m3 / bsm"
