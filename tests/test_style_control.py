"""Style control: the Arena's style-controlled Bradley–Terry board sees through a contestant that wins only by
writing longer, AlpacaEval's length-controlled win rate does the same for a child that beats its parent only by
length, and the per-rater boards come out of a real store (people and a judge config) for the Judge tab."""

from __future__ import annotations

import json
import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from storage import Store
from studio import metrics
from studio.judging import snapshot
from studio.judging.boards import style_boards
from studio.judging.figures import leaderboards
from studio.metrics.style import SEPARATED, STYLE_FEATURES, style_difference, style_features

N = 120  # prompts in the store test
EQUAL = ("equal", "system1")
NAMES = [("terse", "system1"), EQUAL, ("verbose", "system1")]
MEAN_LEN = {"terse": 200.0, "equal": 300.0, "verbose": 600.0}


def length_only(n: int, seed: int = 0, beta: float = 4.0, tie_rate: float = 0.0):
    """Matches among three contestants of equal skill whose answers differ in length only: the longer answer
    wins with P = σ(β · normalised length difference); 'verbose' writes longest, so it wins most."""
    rng = np.random.default_rng(seed)
    matches, styles = [], []
    for _ in range(n):
        i, j = rng.choice(3, 2, replace=False)
        a, b = NAMES[i], NAMES[j]
        fa, fb = ({"length": max(20.0, rng.normal(MEAN_LEN[c[0]], 150)), "headers": 0.0,
                   "lists": float(rng.integers(0, 3)), "bold": 0.0} for c in (a, b))  # fmt: skip
        p = 1 / (1 + math.exp(-beta * style_difference(fa, fb)["length"]))
        winner = "tie" if rng.random() < tie_rate else ("A" if rng.random() < p else "B")
        matches.append(metrics.Match(a, b, winner))
        styles.append((fa, fb))
    return matches, styles


def test_style_features_count_markdown_outside_code():
    text = "# Title\n\nSome **bold** and __more__.\n\n- one\n* two\n1. three\n\n```\n# not a header\n- nor a list\n```"
    assert style_features(text) == {"length": float(len(text)), "headers": 1.0, "lists": 3.0, "bold": 2.0}
    assert style_features("") == dict.fromkeys(STYLE_FEATURES, 0.0)
    d = style_difference(style_features("aaaa"), style_features("a"))
    assert d["length"] == pytest.approx(3 / 6) and d["headers"] == 0.0  # 0 / (0 + 0 + 1), not 0/0


def test_the_style_board_sees_through_a_contestant_that_wins_by_length():
    matches, styles = length_only(600)
    raw = metrics.leaderboard(matches, n_boot=100)
    board = metrics.style_leaderboard(matches, styles, n_boot=100)
    assert raw[0].model == "verbose" and raw[0].elo - raw[-1].elo > 200  # raw: verbose far ahead
    style = {r.model: r for r in board.rows}
    assert board.rows[0].model != "verbose"
    # with length held equal the three are alike: every CI holds the others' ratings
    for r in board.rows:
        assert r.elo_lo < r.elo < r.elo_hi
        assert all(r.elo_lo < o.elo < r.elo_hi for o in board.rows)
    assert style["verbose"].elo < raw[0].elo - 100
    length = board.coefficients["length"]
    assert length.value > 1.0 and 0 < length.lo < length.value < length.hi  # CI excludes 0
    lists = board.coefficients["lists"]  # drawn at random: no effect
    assert lists.lo < 0 < lists.hi
    assert board.dropped == ["headers", "bold"]  # no variation: left out, NaN
    assert math.isnan(board.coefficients["headers"].value)
    assert board.matches == 600 and sum(r.matches for r in board.rows) == 1200


def test_without_style_variation_the_style_board_is_the_raw_board():
    matches, _ = length_only(300, seed=1, tie_rate=0.2)  # ties count half a win in both fits
    flat = [(style_features("same"), style_features("same"))] * len(matches)
    raw = metrics.leaderboard(matches, n_boot=0)
    board = metrics.style_leaderboard(matches, flat, n_boot=0)
    assert [r.contestant for r in board.rows] == [r.contestant for r in raw]
    assert [r.strength for r in board.rows] == pytest.approx([r.strength for r in raw], abs=1e-4)
    assert board.dropped == list(STYLE_FEATURES)
    with pytest.raises(ValueError, match="style pairs"):
        metrics.style_leaderboard(matches, flat[:-1])


def test_length_controlled_win_rate_removes_a_win_by_length_alone():
    rng = np.random.default_rng(0)
    n = 200
    parent = rng.normal(400, 80, n).clip(40)
    child = parent + rng.normal(150, 200, n)  # longer on average, shorter on some items
    delta = child - parent
    p = 1 / (1 + np.exp(-3 * np.tanh(delta / delta.std())))  # the judge prefers length, nothing else
    scores = (rng.random(n) < p).astype(float)
    lc = metrics.length_controlled_win_rate(scores, child, parent, n_boot=200)
    assert lc.win_rate > 0.7 and lc.lo > 0.6
    assert abs(lc.lc_win_rate - 0.5) < 0.1 and lc.lc_lo < 0.5 < lc.lc_hi
    assert lc.length_coef > 1.5 and lc.note == ""

    better = (rng.random(n) < 0.75).astype(float)  # a child better regardless of length
    fair = metrics.length_controlled_win_rate(better, child, parent, n_boot=200)
    assert abs(fair.lc_win_rate - fair.win_rate) < 0.08 and fair.lc_lo > 0.5


@pytest.mark.parametrize(
    ("scores", "child", "parent", "note"),
    [
        ([1, 0, 1], [5, 6, 7], [1, 1, 1], "too few judged items"),
        ([], [], [], "too few judged items"),
        ([1] * 6, [1, 2, 3, 4, 5, 6], [1] * 6, "every outcome is the same"),
        ([1, 0, 0.5, 1, 0, 1], [5] * 6, [1] * 6, "no length variation"),
    ],
)
def test_length_control_says_why_it_has_no_figure(scores, child, parent, note):
    lc = metrics.length_controlled_win_rate(scores, child, parent, n_boot=50)
    assert math.isnan(lc.lc_win_rate) and math.isnan(lc.lc_lo) and note in lc.note
    assert lc.n == len(scores)
    if len(scores) >= 2:
        assert lc.win_rate == pytest.approx(sum(scores) / len(scores))


# -- per rater, from a store --------------------------------------------------------------------------------------
def fancy_answer(rng: np.random.Generator) -> str:
    header = "## Answer\n\n" * int(rng.integers(0, 2))
    items = "".join(f"- point {k}\n" for k in range(int(rng.integers(0, 4))))
    return header + "**Note:** " * int(rng.integers(0, 3)) + items + "x" * int(rng.integers(150, 800))


def plain_answer(rng: np.random.Generator) -> str:
    return "y" * int(rng.integers(20, 700))


@pytest.fixture()
def store(tmp_path: Path):
    """N prompts, each answered by 'plain' (shorter on the whole) and 'fancy' (longer, with some Markdown); a
    person prefers the longer answer with the Arena's model (P = σ(4 · normalised length difference)), and a
    judge config picks the longer answer every time (on the first 30)."""
    rng = np.random.default_rng(0)
    with Store(tmp_path / "data" / "studio.duckdb") as s:
        pids = s.add_prompts([f"question {k}" for k in range(N)], "style")
        answers = [(plain_answer(rng), fancy_answer(rng)) for _ in pids]
        runs = pd.DataFrame(
            [{"prompt_id": p, "model": m, "strategy": "system1", "answer": a}
             for p, pair in zip(pids, answers, strict=True) for m, a in zip(("plain", "fancy"), pair, strict=True)]
        )  # fmt: skip
        ids = s.add_runs_bulk(runs)
        # half the comparisons show the fancy answer first, so the winner's position varies
        shown = [ids[2 * k : 2 * k + 2][:: 1 if k % 2 else -1] for k in range(len(pids))]
        cids = s.add_comparisons_bulk(shown)
        votes = []
        for k, (cid, pair) in enumerate(zip(cids, shown, strict=True)):
            plain, fancy = answers[k]
            longer = "AB"[(len(fancy) > len(plain)) == (k % 2 == 1)]  # fancy is shown at A on even k
            diff = style_difference(style_features(fancy), style_features(plain))["length"]
            p = 1 / (1 + math.exp(-4 * abs(diff)))
            votes.append({"comparison_id": cid, "annotator": "alice",
                          "choice": longer if rng.random() < p else "AB".replace(longer, "")})  # fmt: skip
            if k < 30:
                s.add_verdict("pairwise", "pairwise", pair, comparison_id=cid, judge_model="judge-lm",
                              judge_config={"config_hash": "abcdef123456"}, winner=longer)  # fmt: skip
        s.add_votes_bulk(pd.DataFrame(votes))
        yield s


def test_style_boards_per_rater_from_the_store(store: Store):
    snap = snapshot(store)
    found = style_boards(snap, n_boot=50)
    assert set(found["raters"]) == {"human", "pairwise@judge-lm#abcdef"}
    human = found["raters"]["human"]
    assert human["matches"] == N
    assert [r["contestant"] for r in human["raw"]] == ["fancy / system1", "plain / system1"]
    # the raw board is the leaderboard the dashboard shows for people
    shown = leaderboards(snap, n_boot=50)["boards"]["human"]
    assert [r["rating"] for r in human["raw"]] == pytest.approx([r["elo"] for r in shown])
    for mine, theirs in zip(human["raw"], shown, strict=True):
        assert (mine["lo"], mine["hi"]) == pytest.approx((theirs["elo_lo"], theirs["elo_hi"]))
    assert all(r["n"] == N for r in human["raw"] + human["style"])
    # the fancy answers win by length: the gap shrinks once style is held equal, and length carries the effect
    gap = {k: human[k][0]["rating"] - human[k][-1]["rating"] for k in ("raw", "style")}
    assert gap["raw"] > 100 and abs(gap["style"]) < 0.6 * gap["raw"]
    assert set(human["coefficients"]) == set(STYLE_FEATURES) and human["dropped"] == []
    assert human["coefficients"]["length"]["lo"] > 0 and human["note"] == ""
    assert sum(r["rating"] for r in human["style"]) == pytest.approx(2000)  # centred on 1000
    json.dumps(found, allow_nan=False)  # JSON-safe: NaN figures are None

    judge = found["raters"]["pairwise@judge-lm#abcdef"]
    assert judge["matches"] == 30 and judge["raw"][0]["contestant"] == "fancy / system1"
    assert judge["note"] == SEPARATED  # it always picks the longer answer: no fit exists, and it says so
    assert set(style_boards(snap, judges=["pairwise"], n_boot=0)["raters"]) == set(found["raters"])
    assert set(style_boards(snap, judges=["additive"], n_boot=0)["raters"]) == {"human"}


def test_the_judge_tab_boards_view(store: Store):
    from components.judge_boards import BOARD_COLUMNS, COEF_COLUMNS, STYLE_COLUMNS, boards_view

    status, raw, style, coefs = boards_view(SimpleNamespace(store=store), n_boot=20)
    assert "Style control" in status and f"`human` {N} matches" in status
    assert list(raw.columns) == BOARD_COLUMNS and list(style.columns) == STYLE_COLUMNS
    assert list(coefs.columns) == COEF_COLUMNS
    assert len(raw) == len(style) == 4 and len(coefs) == 2 * len(STYLE_FEATURES)
    first = raw.iloc[0]
    assert (first["rater"], first["rank"], first["contestant"]) == ("human", 1, "fancy / system1")
    assert first["95% CI"].startswith("[")
    assert set(style["vs raw"].str[0]) <= {"+", "-"}
    assert "⚠ `pairwise@judge-lm#abcdef`: every decided match is predicted" in status


def test_the_boards_view_of_an_empty_store(tmp_path: Path):
    from components.judge_boards import boards_view

    with Store(tmp_path / "empty.duckdb") as s:
        status, raw, style, coefs = boards_view(SimpleNamespace(store=s))
    assert "No votes or verdicts yet" in status and raw.empty and style.empty and coefs.empty
