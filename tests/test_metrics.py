"""Agreement, κ, τ, biases and bootstrap breakdowns: hand-computed fixtures, cross-checked with sklearn/scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import kendalltau
from sklearn.metrics import cohen_kappa_score

from studio.metrics import (
    agreement,
    agreement_report,
    bias_report,
    bootstrap_ci,
    breakdown,
    cohen_kappa,
    confusion,
    cross_pairs,
    flip,
    group_votes,
    kendall_tau,
    length_bias,
    mean_kendall_tau,
    outcome,
    position_bias,
    position_picks,
    s1,
    s2,
    swap_flip_rate,
    winner_from_ratings,
    within_pairs,
)


def test_outcome_folds_spellings():
    assert [outcome(x) for x in ("A", "b", "tie", "inconsistent", "both_bad", "C", "tie (bothbad)")] == [
        "A",
        "B",
        "tie",
        "tie",
        "tie",
        "tie",
        "tie",
    ]
    assert outcome(None) is None and outcome("") is None and outcome("garbage") is None
    assert flip("A") == "B" and flip("tie") == "tie" and flip(None) is None


def test_s1_s2_hand_computed():
    x = ["A", "B", "tie", "A", "inconsistent"]
    y = ["A", "A", "tie", "B", "tie"]
    # S1: (A,A) (B,A) (tie,tie) (A,B) (tie,tie) -> 3 of 5 agree
    assert agreement(x, y).agree == 3 and agreement(x, y).n == 5
    assert s1(x, y) == pytest.approx(3 / 5)
    # S2 drops every pair with a tie on either side: (A,A) (B,A) (A,B) -> 1 of 3
    assert agreement(x, y, ties=False).n == 3
    assert s2(x, y) == pytest.approx(1 / 3)


def test_failed_verdicts_drop_out_and_empty_is_nan():
    assert agreement(["A", None, "B"], ["A", "B", None]).n == 1
    assert math.isnan(s1([], []))
    with pytest.raises(ValueError):
        agreement(["A"], ["A", "B"])


def test_cohen_kappa_hand_and_sklearn():
    x = ["A", "A", "B", "B"]
    y = ["A", "B", "B", "B"]
    # p_o = 3/4; p_e = .5*.25 + .5*.75 = .5; kappa = (.75 - .5) / .5
    assert cohen_kappa(x, y) == pytest.approx(0.5)
    x = ["A", "B", "tie", "A", "B", "tie", "A", "A", "inconsistent"]
    y = ["A", "B", "A", "tie", "B", "tie", "B", "A", "tie"]
    want = cohen_kappa_score([outcome(v) for v in x], [outcome(v) for v in y])
    assert cohen_kappa(x, y) == pytest.approx(want)
    assert math.isnan(cohen_kappa(["A", "A"], ["A", "A"]))  # no variation: undefined


def test_confusion_matrix():
    m = confusion(["A", "A", "B", "tie", None], ["A", "B", "B", "inconsistent", "A"])
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_vote_pairs_follow_mt_bench_counting():
    humans = {1: ["A", "A", "B"], 2: ["tie"], 3: ["B", "B"]}
    judge = {1: ["A"], 2: ["B"], 4: ["A"]}
    cross = cross_pairs(judge, humans)
    assert sorted((i, a, b) for i, a, b in cross) == [
        (1, "A", "A"),
        (1, "A", "A"),
        (1, "A", "B"),
        (2, "B", "tie"),
    ]
    within = within_pairs(humans)  # items 1 (3 pairs) and 3 (1 pair); item 2 has one annotator
    assert len(within) == 4
    assert agreement([a for _, a, _ in within], [b for _, _, b in within]).value == pytest.approx(2 / 4)
    rows = [{"item": 1, "winner": "A"}, {"item": 1, "winner": "inconsistent"}, {"item": 2, "winner": None}]
    assert group_votes(rows) == {1: ["A", "tie"], 2: [None]}


def test_kendall_tau_hand_and_scipy():
    tau, _ = kendall_tau([1, 2, 3, 4], [1, 3, 2, 4])  # 5 concordant, 1 discordant pair
    assert tau == pytest.approx(4 / 6)
    x, y = [3.1, 0.2, 5.0, 1.1, 2.2], [2.0, 0.1, 4.0, 3.0, 1.0]
    assert kendall_tau(x, y)[0] == pytest.approx(kendalltau(x, y).statistic)
    mean, n = mean_kendall_tau([([1, 2, 3], [1, 2, 3]), ([1, 2, 3], [3, 2, 1]), ([1, 1], [1, 2])])
    assert (mean, n) == (pytest.approx(0.0), 2)  # the all-tied ranking is undefined and left out


def test_swap_flip_rate():
    picks = [["A", "A"], ["A", "B"], ["B", None], ["tie", "inconsistent"], ["A", "tie"], ["A"]]
    r = swap_flip_rate(picks)  # [B, None] unread; [A] has one order
    assert (r.k, r.n) == (2, 4)


def test_position_and_length_bias():
    # a judge that always picks the first-shown answer: order AB picks A, order BA picks B (shown first)
    assert position_picks(["A", "B"], ["AB", "BA"]) == ["A", "A"]
    assert position_picks(["A", "A"], ["AB", "BA"]) == ["A", "B"]
    r = position_bias(["A", "A", "B", "tie", None])
    assert (r.k, r.n) == (2, 3)
    r = length_bias(["A", "B", "A", "tie", "A"], [10, 10, 5, 3, 4], [5, 20, 5, 9, 8])
    assert (r.k, r.n) == (2, 3)  # rows 1 and 2 the longer won; row 3 equal; row 4 tie; row 5 the shorter won


def test_bootstrap_ci_brackets_the_mean_and_matches_scipy():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(1)
    values = rng.normal(2.0, 1.0, 200)
    rows = [{"v": v} for v in values]
    lo, hi = bootstrap_ci(rows, lambda rs: float(np.mean([r["v"] for r in rs])), n_boot=500)
    ref = bootstrap((values,), np.mean, method="percentile", n_resamples=2000, rng=np.random.default_rng(0))
    assert lo < values.mean() < hi
    assert lo == pytest.approx(ref.confidence_interval.low, abs=0.05)
    assert hi == pytest.approx(ref.confidence_interval.high, abs=0.05)
    assert all(math.isnan(v) for v in bootstrap_ci(rows[:1], lambda rs: 0.0))


def test_breakdown_counts_a_pair_under_both_models():
    rows = [
        {"x": "A", "y": "A", "model_a": "m1", "model_b": "m2", "prompt_set": "p"},
        {"x": "A", "y": "B", "model_a": "m1", "model_b": "m1", "prompt_set": "p"},
        {"x": "B", "y": "B", "model_a": "m2", "model_b": "m3", "prompt_set": "q"},
    ]
    est = {
        e.group: e
        for e in breakdown(
            rows, lambda rs: s1([r["x"] for r in rs], [r["y"] for r in rs]), "model", n_boot=50
        )
    }
    assert {g: e.n for g, e in est.items()} == {"all": 3, "m1": 2, "m2": 2, "m3": 1}
    assert est["m1"].value == pytest.approx(0.5) and est["m2"].value == pytest.approx(1.0)
    assert math.isnan(est["m3"].lo)  # one row: no CI
    by_set = {e.group: e.n for e in breakdown(rows, lambda rs: 0.0, "prompt_set", n_boot=10)}
    assert by_set == {"all": 3, "p": 2, "q": 1}


def test_reports():
    rows = [{"x": "A", "y": "A"}, {"x": "B", "y": "tie"}, {"x": "tie", "y": "tie"}, {"x": "A", "y": "B"}] * 5
    rep = agreement_report(rows, n_boot=100)
    assert rep["s1"][0].value == pytest.approx(0.5)
    assert rep["s2"][0].value == pytest.approx(0.5)
    assert rep["s1"][0].lo <= 0.5 <= rep["s1"][0].hi
    outcomes = [
        {"winner": "A", "len_a": 10, "len_b": 5, "shown_picks": ["A", "A"], "order_winners": ["A", "B"]},
        {"winner": "B", "len_a": 10, "len_b": 5, "shown_picks": ["B", "B"], "order_winners": ["B", "A"]},
        {"winner": "A", "len_a": 1, "len_b": 5},  # a human vote: the vote is the pick
    ]
    bias = bias_report(outcomes, n_boot=20)
    assert bias["position_bias"][0].value == pytest.approx(3 / 5)
    assert bias["length_bias"][0].value == pytest.approx(1 / 3)
    assert bias["swap_flip"][0].value == pytest.approx(1.0)


def test_winner_from_ratings():
    assert winner_from_ratings(4, 2) == "A"
    assert winner_from_ratings(2, 2.4, margin=0.5) == "tie"
    assert winner_from_ratings(1, 3) == "B"
    assert winner_from_ratings(None, 3) is None
