"""Agreement, κ, τ, biases and bootstrap breakdowns: hand-computed fixtures, cross-checked with sklearn/scipy."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import kendalltau
from sklearn.metrics import cohen_kappa_score

from studio import metrics


def test_outcome_folds_spellings():
    assert [
        metrics.outcome(x) for x in ("A", "b", "tie", "inconsistent", "both_bad", "C", "tie (bothbad)")
    ] == [
        "A",
        "B",
        "tie",
        "tie",
        "tie",
        "tie",
        "tie",
    ]
    assert (
        metrics.outcome(None) is None and metrics.outcome("") is None and metrics.outcome("garbage") is None
    )
    assert metrics.flip("A") == "B" and metrics.flip("tie") == "tie" and metrics.flip(None) is None


def test_s1_s2_hand_computed():
    x = ["A", "B", "tie", "A", "inconsistent"]
    y = ["A", "A", "tie", "B", "tie"]
    # S1: (A,A) (B,A) (tie,tie) (A,B) (tie,tie) -> 3 of 5 agree
    assert metrics.agreement(x, y).agree == 3 and metrics.agreement(x, y).n == 5
    assert metrics.s1(x, y) == pytest.approx(3 / 5)
    # S2 drops every pair with a tie on either side: (A,A) (B,A) (A,B) -> 1 of 3
    assert metrics.agreement(x, y, ties=False).n == 3
    assert metrics.s2(x, y) == pytest.approx(1 / 3)


def test_failed_verdicts_drop_out_and_empty_is_nan():
    assert metrics.agreement(["A", None, "B"], ["A", "B", None]).n == 1
    assert math.isnan(metrics.s1([], []))
    with pytest.raises(ValueError):
        metrics.agreement(["A"], ["A", "B"])


def test_cohen_kappa_hand_and_sklearn():
    x = ["A", "A", "B", "B"]
    y = ["A", "B", "B", "B"]
    # p_o = 3/4; p_e = .5*.25 + .5*.75 = .5; kappa = (.75 - .5) / .5
    assert metrics.cohen_kappa(x, y) == pytest.approx(0.5)
    x = ["A", "B", "tie", "A", "B", "tie", "A", "A", "inconsistent"]
    y = ["A", "B", "A", "tie", "B", "tie", "B", "A", "tie"]
    want = cohen_kappa_score([metrics.outcome(v) for v in x], [metrics.outcome(v) for v in y])
    assert metrics.cohen_kappa(x, y) == pytest.approx(want)
    assert math.isnan(metrics.cohen_kappa(["A", "A"], ["A", "A"]))  # no variation: undefined


def test_confusion_matrix():
    m = metrics.confusion(["A", "A", "B", "tie", None], ["A", "B", "B", "inconsistent", "A"])
    assert m.tolist() == [[1, 1, 0], [0, 1, 0], [0, 0, 1]]


def test_vote_pairs_follow_mt_bench_counting():
    humans = {1: ["A", "A", "B"], 2: ["tie"], 3: ["B", "B"]}
    judge = {1: ["A"], 2: ["B"], 4: ["A"]}
    cross = metrics.cross_pairs(judge, humans)
    assert sorted((i, a, b) for i, a, b in cross) == [
        (1, "A", "A"),
        (1, "A", "A"),
        (1, "A", "B"),
        (2, "B", "tie"),
    ]
    who = {1: ["ann", "bob", "cy"], 2: ["ann"], 3: ["ann", "bob"]}
    within = metrics.within_pairs(humans, who)  # items 1 (3 pairs) and 3 (1 pair); item 2 has one annotator
    assert len(within) == 4
    assert metrics.agreement([a for _, a, _ in within], [b for _, _, b in within]).value == pytest.approx(
        2 / 4
    )
    rows = [{"item": 1, "winner": "A"}, {"item": 1, "winner": "inconsistent"}, {"item": 2, "winner": None}]
    assert metrics.group_votes(rows) == {1: ["A", "tie"], 2: [None]}


def test_kendall_tau_hand_and_scipy():
    tau, _ = metrics.kendall_tau([1, 2, 3, 4], [1, 3, 2, 4])  # 5 concordant, 1 discordant pair
    assert tau == pytest.approx(4 / 6)
    x, y = [3.1, 0.2, 5.0, 1.1, 2.2], [2.0, 0.1, 4.0, 3.0, 1.0]
    assert metrics.kendall_tau(x, y)[0] == pytest.approx(kendalltau(x, y).statistic)
    mean, n = metrics.mean_kendall_tau([([1, 2, 3], [1, 2, 3]), ([1, 2, 3], [3, 2, 1]), ([1, 1], [1, 2])])
    assert (mean, n) == (pytest.approx(0.0), 2)  # the all-tied ranking is undefined and left out


def test_swap_flip_rate():
    picks = [["A", "A"], ["A", "B"], ["B", None], ["tie", "inconsistent"], ["A", "tie"], ["A"]]
    r = metrics.swap_flip_rate(picks)  # [B, None] unread; [A] has one order
    assert (r.k, r.n) == (2, 4)


def test_position_and_length_bias():
    # a judge that always picks the first-shown answer: order AB picks A, order BA picks B (shown first)
    assert metrics.position_picks(["A", "B"], ["AB", "BA"]) == ["A", "A"]
    assert metrics.position_picks(["A", "A"], ["AB", "BA"]) == ["A", "B"]
    r = metrics.position_bias(["A", "A", "B", "tie", None])
    assert (r.k, r.n) == (2, 3)
    r = metrics.length_bias(["A", "B", "A", "tie", "A"], [10, 10, 5, 3, 4], [5, 20, 5, 9, 8])
    assert (r.k, r.n) == (2, 3)  # rows 1 and 2 the longer won; row 3 equal; row 4 tie; row 5 the shorter won


def test_bootstrap_ci_brackets_the_mean_and_matches_scipy():
    from scipy.stats import bootstrap

    rng = np.random.default_rng(1)
    values = rng.normal(2.0, 1.0, 200)
    rows = [{"v": v} for v in values]
    lo, hi = metrics.bootstrap_ci(rows, lambda rs: float(np.mean([r["v"] for r in rs])), n_boot=500)
    ref = bootstrap((values,), np.mean, method="percentile", n_resamples=2000, rng=np.random.default_rng(0))
    assert lo < values.mean() < hi
    assert lo == pytest.approx(ref.confidence_interval.low, abs=0.05)
    assert hi == pytest.approx(ref.confidence_interval.high, abs=0.05)
    assert all(math.isnan(v) for v in metrics.bootstrap_ci(rows[:1], lambda rs: 0.0))


def test_breakdown_counts_a_pair_under_both_models():
    rows = [
        {"x": "A", "y": "A", "model_a": "m1", "model_b": "m2", "prompt_set": "p"},
        {"x": "A", "y": "B", "model_a": "m1", "model_b": "m1", "prompt_set": "p"},
        {"x": "B", "y": "B", "model_a": "m2", "model_b": "m3", "prompt_set": "q"},
    ]
    est = {
        e.group: e
        for e in metrics.breakdown(
            rows, lambda rs: metrics.s1([r["x"] for r in rs], [r["y"] for r in rs]), "model", n_boot=50
        )
    }
    assert {g: e.n for g, e in est.items()} == {"all": 3, "m1": 2, "m2": 2, "m3": 1}
    assert est["m1"].value == pytest.approx(0.5) and est["m2"].value == pytest.approx(1.0)
    assert math.isnan(est["m3"].lo)  # one row: no CI
    by_set = {e.group: e.n for e in metrics.breakdown(rows, lambda rs: 0.0, "prompt_set", n_boot=10)}
    assert by_set == {"all": 3, "p": 2, "q": 1}


def test_reports():
    rows = [{"x": "A", "y": "A"}, {"x": "B", "y": "tie"}, {"x": "tie", "y": "tie"}, {"x": "A", "y": "B"}] * 5
    rep = metrics.agreement_report(rows, n_boot=100)
    assert rep["s1"][0].value == pytest.approx(0.5)
    assert rep["s2"][0].value == pytest.approx(0.5)
    assert rep["s1"][0].lo <= 0.5 <= rep["s1"][0].hi
    outcomes = [
        {"winner": "A", "len_a": 10, "len_b": 5, "shown_picks": ["A", "A"], "order_winners": ["A", "B"]},
        {"winner": "B", "len_a": 10, "len_b": 5, "shown_picks": ["B", "B"], "order_winners": ["B", "A"]},
        {"winner": "A", "len_a": 1, "len_b": 5},  # a human vote: the vote is the pick
    ]
    bias = metrics.bias_report(outcomes, n_boot=20)
    assert bias["position_bias"][0].value == pytest.approx(3 / 5)
    assert bias["length_bias"][0].value == pytest.approx(1 / 3)
    assert bias["swap_flip"][0].value == pytest.approx(1.0)


def test_winner_from_ratings():
    assert metrics.winner_from_ratings(4, 2) == "A"
    assert metrics.winner_from_ratings(2, 2.4, margin=0.5) == "tie"
    assert metrics.winner_from_ratings(1, 3) == "B"
    assert metrics.winner_from_ratings(None, 3) is None


def test_within_pairs_only_pair_different_annotators():
    """#18: one annotator voting three times on an item is no human-human agreement (it gave 3 pairs, S1 = 1)."""
    assert metrics.within_pairs({1: ["A", "A", "A"]}, {1: ["ann", "ann", "ann"]}) == []
    # ann twice and bob once: only ann-bob pairs count, so ann's two votes each meet bob's
    pairs = metrics.within_pairs({1: ["A", "B", "A"]}, {1: ["ann", "ann", "bob"]})
    assert sorted(pairs) == [(1, "A", "A"), (1, "B", "A")]
    with pytest.raises(ValueError, match="3 votes but 2 annotators"):
        metrics.within_pairs({1: ["A", "B", "A"]}, {1: ["ann", "bob"]})


def _rows(table: dict[str, list], kind: str) -> list[dict]:
    """Store-like vote rows from {annotator: value per item} (None = no label)."""
    rows = []
    for who, values in table.items():
        for item, v in enumerate(values):
            if v is None:
                continue
            rows.append({
                "id": len(rows) + 1, "comparison_id": item, "annotator": who, "kind": kind,
                "choice": v if kind == "pairwise" else None, "ranks": [v] if kind == "ranking" else None,
            })  # fmt: skip
    return rows


# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers, 12 units, values 1-5
# with missing data. Published: nominal 0.743, ordinal 0.815.
_K2011 = {
    "A": [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    "B": [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    "C": [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    "D": [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
}


def test_alpha_matches_krippendorffs_published_example():
    ordinal = metrics.inter_annotator_alpha(_rows(_K2011, "ranking"), level="ordinal", n_boot=200)
    assert ordinal["alpha"] == pytest.approx(0.815, abs=5e-4)
    assert (ordinal["n_items"], ordinal["n_annotators"]) == (11, 4)  # unit 12 has one value: not pairable
    labels = {w: [None if v is None else f"value {v}" for v in vs] for w, vs in _K2011.items()}
    nominal = metrics.inter_annotator_alpha(_rows(labels, "pairwise"), level="nominal", n_boot=200)
    assert nominal["alpha"] == pytest.approx(0.743, abs=5e-4)
    assert nominal["lo"] <= nominal["alpha"] <= nominal["hi"] and nominal["lo"] < nominal["hi"]


def test_alpha_nominal_hand_computed_and_its_bootstrap():
    # alice A A B B, bob A A B A: coincidences o_AA = 4, o_BB = 2, o_AB = o_BA = 1; n_A = 5, n_B = 3, n = 8;
    # alpha = 1 - (n - 1) * (o_AB + o_BA) / (2 n_A n_B) = 1 - 7 * 2 / 30 = 8/15
    rows = _rows({"alice": ["A", "A", "B", "B"], "bob": ["A", "A", "B", "A"]}, "pairwise")
    a = metrics.inter_annotator_alpha(rows, level="nominal", n_boot=500, seed=1)
    assert a["alpha"] == pytest.approx(8 / 15)
    assert (a["n_items"], a["n_annotators"]) == (4, 2)
    assert a["lo"] < a["alpha"] <= a["hi"] <= 1.0
    assert (
        metrics.inter_annotator_alpha(rows, level="nominal", n_boot=500, seed=1) == a
    )  # seeded: reproducible
    # a ranking row is no pairwise choice, and a pairwise row is no ranking
    assert metrics.inter_annotator_alpha(rows, level="ordinal", n_boot=10)["n_items"] == 0


def test_alpha_uses_each_annotators_latest_label_and_handles_no_data():
    rows = _rows({"alice": ["A", "B"], "bob": ["A", "B"]}, "pairwise")
    assert metrics.inter_annotator_alpha(rows, level="nominal", n_boot=50)["alpha"] == pytest.approx(1.0)
    later = {**rows[0], "id": 99, "choice": "B"}  # alice changes her mind on item 0 (a later row)
    assert metrics.inter_annotator_alpha([*rows, later], level="nominal", n_boot=50)["alpha"] < 1.0
    one = metrics.inter_annotator_alpha(_rows({"alice": ["A", "B"]}, "pairwise"), level="nominal")
    assert one["n_items"] == 0 and math.isnan(one["alpha"]) and math.isnan(one["lo"])
    same = metrics.inter_annotator_alpha(
        _rows({"a": ["A", "A"], "b": ["A", "A"]}, "pairwise"), level="nominal"
    )
    assert same["n_items"] == 2 and math.isnan(same["alpha"])  # one value everywhere: alpha is 0/0
    with pytest.raises(ValueError, match="nominal, ordinal"):
        metrics.inter_annotator_alpha(rows, level="interval")


def test_alpha_ordinal_over_real_rankings():
    """Rankings of three runs: each position's rank is one ordinal item; identical rankings agree fully."""
    base = {"comparison_id": 1, "kind": "ranking", "choice": None}
    rows = [
        {**base, "id": 1, "annotator": "a", "ranks": [1, 2, 3]},
        {**base, "id": 2, "annotator": "b", "ranks": [1, 2, 3]},
    ]
    rows += [{**base, "id": 3, "comparison_id": 2, "annotator": "a", "ranks": [3, 2, 1]},
             {**base, "id": 4, "comparison_id": 2, "annotator": "b", "ranks": [3, 2, 1]}]  # fmt: skip
    full = metrics.inter_annotator_alpha(rows, level="ordinal", n_boot=100)
    assert full["alpha"] == pytest.approx(1.0) and full["n_items"] == 2
    rows[1] = {**rows[1], "ranks": [3, 2, 1]}  # b reverses a on comparison 1
    assert metrics.inter_annotator_alpha(rows, level="ordinal", n_boot=100)["alpha"] < 0.5


def test_human_agreement_counts_only_different_annotators_on_a_store(tmp_path):
    """#18 on a hand-built store: alice votes on the same run pair in three comparisons, so human-human agreement
    has nothing to compare (it counted 3 pairs with S1 = 1.0); bob's vote then pairs with each of hers."""
    from storage import Store
    from studio import judging

    with Store(tmp_path / "s.duckdb") as store:
        pid = store.add_prompt("What is 2+2?")
        a, b = store.add_run(pid, "m1", "cot", "4"), store.add_run(pid, "m2", "system1", "5")
        cids = [store.add_comparison([a, b]) for _ in range(3)]
        for cid in cids:
            store.add_vote(cid, "A", "alice")
        human = judging.agreement(judging.snapshot(store), n_boot=10)[0]
        assert (human["x"], human["y"], human["pairs"]) == ("human", "human", 0)
        store.add_vote(cids[0], "B", "bob")
        human = judging.agreement(judging.snapshot(store), n_boot=10)[0]
        assert human["pairs"] == 3
        assert human["s1"][0]["value"] == pytest.approx(0.0)  # bob disagrees with each of alice's votes
