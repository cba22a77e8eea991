"""Preference items from votes, rankings and verdicts, checked against hand-computed cases."""

from __future__ import annotations

from datetime import date, datetime
from pathlib import Path

import pytest

from storage import Filters, Store, StoreError


@pytest.fixture()
def store(tmp_path: Path):
    with Store(tmp_path / "studio.duckdb") as s:
        yield s


def runs(store: Store, answers: str, prompt: str = "P", *, models: str | None = None, strategy: str = "s",
         prompt_set: str = "default") -> list[int]:  # fmt: skip
    """One run per character of ``answers`` (the answer text is that character)."""
    pid = store.add_prompt(prompt, prompt_set)
    models = models or "m" * len(answers)
    return [store.add_run(pid, mo, strategy, a) for a, mo in zip(answers, models, strict=True)]


def pairs(store: Store, **filters) -> set[tuple[str, str]]:
    return {(p["chosen"], p["rejected"]) for p in store.preference_pairs(Filters(**filters))}


def kto(store: Store, good_rating: float | None = None, **filters) -> dict[str, bool]:
    return {r["completion"]: r["label"] for r in store.kto_rows(Filters(**filters), good_rating=good_rating)}


def test_strict_ranking_of_four_gives_all_six_pairs(store: Store) -> None:
    cid = store.add_comparison(runs(store, "abcd"))
    store.add_ranking(cid, [2, 4, 1, 3], "ann")  # best to worst: c, a, d, b
    assert pairs(store) == {("c", "a"), ("c", "d"), ("c", "b"), ("a", "d"), ("a", "b"), ("d", "b")}
    assert len(store.preference_pairs()) == 6  # C(4,2)
    # KTO: wins minus losses within the ranking: c +3, a +1, d -1, b -3
    assert kto(store) == {"c": True, "a": True, "d": False, "b": False}


def test_ranking_with_ties_leaves_out_tied_pairs(store: Store) -> None:
    cid = store.add_comparison(runs(store, "abcde"))
    store.add_ranking(cid, [1, 1, 2, 3, 3], "ann")
    # a=b > c > d=e: 10 position pairs, minus the two tied ones
    assert pairs(store) == {
        ("a", "c"), ("a", "d"), ("a", "e"), ("b", "c"), ("b", "d"), ("b", "e"), ("c", "d"), ("c", "e"),
    }  # fmt: skip
    # wins minus losses: a, b +3; c beats d, e but loses to a, b: 0, no label; d, e -3
    assert kto(store) == {"a": True, "b": True, "d": False, "e": False}


def test_three_way_strict_ranking_middle_has_no_kto_label(store: Store) -> None:
    cid = store.add_comparison(runs(store, "xyz"))
    store.add_ranking(cid, [3, 2, 1], "ann")
    assert pairs(store) == {("z", "y"), ("z", "x"), ("y", "x")}
    assert kto(store) == {"z": True, "x": False}


def test_pairwise_votes(store: Store) -> None:
    ab = runs(store, "ab", "P1")
    cd = runs(store, "cd", "P2")
    ef = runs(store, "ef", "P3")
    gh = runs(store, "gh", "P4")
    store.add_vote(store.add_comparison(ab), "A", "ann")
    store.add_vote(store.add_comparison(cd), "B", "ann")
    store.add_vote(store.add_comparison(ef), "tie", "ann")
    store.add_vote(store.add_comparison(gh), "both_bad", "ann")
    assert pairs(store) == {("a", "b"), ("d", "c")}
    # a tie makes both desirable, both_bad both undesirable
    assert kto(store) == {"a": True, "b": False, "c": False, "d": True, "e": True, "f": True, "g": False,
                          "h": False}  # fmt: skip


def test_all_equal_ranking_is_a_tie(store: Store) -> None:
    store.add_ranking(store.add_comparison(runs(store, "abc")), [2, 2, 2], "ann")
    assert pairs(store) == set()
    assert kto(store) == {"a": True, "b": True, "c": True}


def test_positions_matter_not_insertion_order(store: Store) -> None:
    a, b = runs(store, "ab")
    store.add_vote(store.add_comparison([b, a]), "A", "ann")  # b shown on the left and chosen
    assert pairs(store) == {("b", "a")}


def test_pairs_are_deduplicated(store: Store) -> None:
    a, b = runs(store, "ab")
    c1 = store.add_comparison([a, b])
    c2 = store.add_comparison([b, a])
    store.add_vote(c1, "A", "ann1")
    store.add_vote(c1, "A", "ann2")
    store.add_vote(c2, "B", "ann3")
    store.add_verdict("judge", "pairwise", [a, b], winner="A")
    # another run of the same prompt with the same texts (e.g. an identical answer) is the same pair
    a2, b2 = runs(store, "ab")
    store.add_vote(store.add_comparison([a2, b2]), "A", "ann4")
    got = store.preference_pairs()
    assert [(p["chosen"], p["rejected"]) for p in got] == [("a", "b")]
    assert got[0]["n_events"] == 5 and got[0]["sources"] == ["human", "judge"]
    assert len(store.to_dataset("dpo")) == 1


def test_identical_answers_give_no_pair(store: Store) -> None:
    pid = store.add_prompt("P")
    a, b = (store.add_run(pid, m, "s", "same text") for m in ("m1", "m2"))
    store.add_vote(store.add_comparison([a, b]), "A", "ann")
    assert pairs(store) == set()


def test_judge_verdicts(store: Store) -> None:
    a, b = runs(store, "ab", "P1")
    c, d = runs(store, "cd", "P2")
    e, f = runs(store, "ef", "P3")
    store.add_verdict("mt-bench", "pairwise", [a, b], winner="B", orders=["AB", "BA"])
    store.add_verdict("mt-bench", "pairwise", [c, d], winner="inconsistent", orders=["AB", "BA"])
    store.add_verdict("mt-bench", "pairwise", [e, f], raw_output="garbage", ok=False)
    store.add_verdict("mt-bench", "pairwise", [e, f], winner="tie")
    assert pairs(store) == {("b", "a")}
    assert pairs(store, source="judge") == {("b", "a")}
    assert pairs(store, source="human") == set()
    assert kto(store) == {"b": True, "a": False}  # a judge tie says nothing about quality


def test_kto_labels_are_merged_by_majority(store: Store) -> None:
    a, b = runs(store, "ab", "P1")
    cid = store.add_comparison([a, b])
    store.add_vote(cid, "A", "u1")
    store.add_vote(cid, "B", "u2")
    store.add_vote(cid, "B", "u3")
    c, d = runs(store, "cd", "P2")
    cid = store.add_comparison([c, d])
    store.add_vote(cid, "A", "u1")
    store.add_vote(cid, "B", "u2")  # 1-1: no label
    assert kto(store) == {"a": False, "b": True}
    assert kto(store, annotator="u1") == {"a": True, "b": False, "c": True, "d": False}


def test_single_ratings_give_kto_labels_and_rm_margins(store: Store) -> None:
    a, b, c = runs(store, "abc")
    store.add_verdict("self-reward", "single", [a], rating=4)
    store.add_verdict("self-reward", "single", [a], rating=5)  # mean 4.5
    store.add_verdict("self-reward", "single", [b], rating=2)
    store.add_verdict("self-reward", "single", [c], raw_output="no score", ok=False)
    assert kto(store) == {}  # ratings label only with a threshold
    assert kto(store, good_rating=4) == {"a": True, "b": False}
    cid = store.add_comparison([a, b, c])
    store.add_ranking(cid, [1, 2, 3], "ann")
    rm = {(p["chosen"], p["rejected"]): p["margin"] for p in store.rm_pairs()}
    assert rm == {("a", "b"): 2.5, ("a", "c"): None, ("b", "c"): None}


def test_filters_annotator_source_model_strategy_prompt_set(store: Store) -> None:
    a, b = runs(store, "ab", "P1", models="xy", strategy="cot", prompt_set="math")
    c, d = runs(store, "cd", "P2", models="yz", strategy="cove", prompt_set="facts")
    store.add_vote(store.add_comparison([a, b]), "A", "alice")
    store.add_vote(store.add_comparison([c, d]), "B", "bob")
    store.add_verdict("judge-1", "pairwise", [c, d], winner="A")
    assert pairs(store, annotator="alice") == {("a", "b")}
    assert pairs(store, annotator=["bob", "judge-1"]) == {("d", "c"), ("c", "d")}
    assert pairs(store, source="judge") == {("c", "d")}
    assert pairs(store, model="x") == {("a", "b")}
    assert pairs(store, model="y") == {("a", "b"), ("d", "c"), ("c", "d")}  # either run's model
    assert pairs(store, model="z", source="human") == {("d", "c")}
    assert pairs(store, strategy="cove") == {("d", "c"), ("c", "d")}
    assert pairs(store, prompt_set="math") == {("a", "b")}
    assert pairs(store, prompt_set=["math", "facts"], source="human") == {("a", "b"), ("d", "c")}
    assert kto(store, model="z") == {}  # d: +1 (bob) -1 (judge) -> split
    assert kto(store, model="z", source="human") == {"d": True}
    with pytest.raises(StoreError, match="source must be"):
        Filters(source="robot")


def test_date_filters(store: Store) -> None:
    a, b = runs(store, "ab", "P1")
    c, d = runs(store, "cd", "P2")
    store.add_vote(store.add_comparison([a, b]), "A", "ann", at=datetime(2025, 3, 1, 23, 59))
    store.add_vote(store.add_comparison([c, d]), "A", "ann", at=datetime(2025, 3, 2, 0, 0))
    assert pairs(store, since=date(2025, 3, 2)) == {("c", "d")}
    assert pairs(store, until=date(2025, 3, 1)) == {("a", "b")}  # a date includes its whole day
    assert pairs(store, until=datetime(2025, 3, 2)) == {("a", "b")}  # a time is exclusive
    assert pairs(store, since=date(2025, 3, 1), until=date(2025, 3, 2)) == {("a", "b"), ("c", "d")}
    assert pairs(store, since=date(2025, 3, 3)) == set()


def test_agree_only(store: Store) -> None:
    a, b = runs(store, "ab", "P1")
    c, d = runs(store, "cd", "P2")
    e, f = runs(store, "ef", "P3")
    store.add_vote(store.add_comparison([a, b]), "A", "alice")
    store.add_verdict("judge", "pairwise", [b, a], winner="B")  # agrees: a > b
    store.add_vote(store.add_comparison([c, d]), "A", "alice")
    store.add_verdict("judge", "pairwise", [c, d], winner="B")  # disagrees
    store.add_vote(store.add_comparison([e, f]), "A", "alice")  # no judge at all
    assert pairs(store, agree_only=True) == {("a", "b")}
    assert pairs(store, agree_only=True, source="human") == {("a", "b")}
    assert kto(store, agree_only=True) == {"a": True, "b": False}


def test_win_counts(store: Store) -> None:
    a, b, c = runs(store, "abc", models="xyz")
    cid = store.add_comparison([a, b, c])
    store.add_ranking(cid, [1, 2, 3], "u1")
    store.add_ranking(cid, [3, 2, 1], "u2")
    store.add_vote(store.add_comparison([a, b]), "tie", "u3")
    wins = {(w["winner"], w["loser"]): w["wins"] for w in store.win_counts()}
    assert wins == {("x", "y"): 1, ("x", "z"): 1, ("y", "z"): 1, ("z", "y"): 1, ("z", "x"): 1, ("y", "x"): 1}
    assert {
        (w["winner"], w["loser"]) for w in store.win_counts(Filters(annotator="u1"), by="strategy")
    } == set()


def test_exports_follow_trl_columns(store: Store) -> None:
    a, b = runs(store, "ab")
    store.add_vote(store.add_comparison([a, b]), "A", "ann")
    assert store.to_dataset("dpo").column_names == ["prompt", "chosen", "rejected"]
    assert store.to_dataset("kto").column_names == ["prompt", "completion", "label"]
    assert store.to_dataset("rm").column_names == ["prompt", "chosen", "rejected", "margin"]
    conv = store.to_dataset("kto", conversational=True)[0]
    assert conv == {"prompt": [{"role": "user", "content": "P"}],
                    "completion": [{"role": "assistant", "content": "a"}], "label": True}  # fmt: skip
    with pytest.raises(StoreError, match="export kind"):
        store.to_dataset("ppo")
