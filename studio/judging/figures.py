"""The agreement, bias, disagreement and leaderboard figures, computed from a :class:`Snapshot` of the store.

:func:`agreement`, :func:`biases`, :func:`disagreements` and :func:`leaderboards` compute with
:mod:`studio.metrics`. Outcomes are compared per run pair in one canonical labelling (A = the run with the smaller
id). A human vote's outcomes are its run pairs as the store gives them (``Store.vote_pairs``, the pairs the
exports read), so a ranking becomes pairs in one place.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from studio import metrics
from studio.judging.snapshot import HUMAN, Snapshot, contestant
from studio.metrics.agreement import inter_annotator_alpha
from studio.metrics.leaderboard import BoardRow, Match


# -- outcomes per rater -------------------------------------------------------------------------------------------
def rater_of(row: dict[str, Any]) -> str:
    """A judge configuration's name as an annotator: ``judge@model#hash`` (AlpacaFarm: each config is one)."""
    h = (row.get("judge_config") or {}).get("config_hash", "")
    return f"{row['judge']}@{row.get('judge_model') or '?'}" + (f"#{h[:6]}" if h else "")


def _canonical(a: int, b: int, label: Any) -> tuple[tuple[int, int], str | None]:
    """The pair with the smaller run id as A, and the outcome in that labelling."""
    o = metrics.outcome(label)
    return ((a, b), o) if a < b else ((b, a), metrics.flip(o))


@dataclass
class Outcomes:
    """Per rater, per canonical run pair, every outcome given (None for a failed verdict)."""

    votes: dict[str, dict[tuple[int, int], list[str | None]]] = field(default_factory=dict)
    who: dict[str, dict[tuple[int, int], list[str]]] = field(default_factory=dict)  # annotator of each vote
    failed: dict[str, int] = field(default_factory=dict)  # failed verdicts per judge rater
    total: dict[str, int] = field(default_factory=dict)  # verdicts per judge rater

    def add(self, rater: str, pair: tuple[int, int], label: str | None, who: str | None = None) -> None:
        self.votes.setdefault(rater, {}).setdefault(pair, []).append(label)
        self.who.setdefault(rater, {}).setdefault(pair, []).append(who or rater)


def outcomes(snap: Snapshot, *, self_judge: bool | None = None) -> Outcomes:
    """Human outcomes (every vote, rankings as their pairs) and judge outcomes per config.

    A single-answer judge's ratings give a pairwise outcome for every run pair of a comparison that it rated
    on both sides. ``self_judge`` False drops verdicts where the judge judged its own model's answer.
    """
    out = Outcomes()
    for p in snap.vote_pairs:
        out.add(HUMAN, *_canonical(p["run_a"], p["run_b"], p["outcome"]), p["annotator"])
    ratings: dict[str, dict[int, float]] = {}
    for d in snap.verdicts:
        if self_judge is not None and bool((d.get("scores") or {}).get("self_judge")) != self_judge:
            continue
        rater = rater_of(d)
        out.total[rater] = out.total.get(rater, 0) + 1
        out.failed[rater] = out.failed.get(rater, 0) + (not d["ok"])
        if d["mode"] == "pairwise":
            out.add(rater, *_canonical(*d["run_ids"], d["winner"] if d["ok"] else None))
        elif d["ok"] and d.get("rating") is not None:
            ratings.setdefault(rater, {})[d["run_ids"][0]] = d["rating"]
    for rater, by_run in ratings.items():
        for c in snap.comparisons.values():
            for a, b in itertools.combinations(c["run_ids"], 2):
                if a in by_run and b in by_run:
                    out.add(rater, *_canonical(a, b, metrics.winner_from_ratings(by_run[a], by_run[b])))
    return out


def pair_attrs(snap: Snapshot, pair: tuple[int, int]) -> dict[str, Any]:
    a, b = snap.runs[pair[0]], snap.runs[pair[1]]
    return {
        "item": pair,
        "model_a": a["model"],
        "model_b": b["model"],
        "strategy_a": contestant(a)[1],
        "strategy_b": contestant(b)[1],
        "prompt_set": snap.prompts[a["prompt_id"]]["prompt_set"],
        "len_a": len(a["answer"]),
        "len_b": len(b["answer"]),
    }


# -- agreement ----------------------------------------------------------------------------------------------------
def agreement_rows(
    snap: Snapshot,
    x: dict[Hashable, list],
    y: dict[Hashable, list],
    same: bool,
    who: dict[Hashable, list] | None = None,
) -> list[dict]:
    """Vote-pair rows for :func:`studio.metrics.agreement_report`: within one rater (``same``; only between
    different annotators, given by ``who``) or across two."""
    pairs = metrics.within_pairs(x, who or {}) if same else metrics.cross_pairs(x, y)
    return [{**pair_attrs(snap, item), "x": a, "y": b} for item, a, b in pairs]  # type: ignore[arg-type]


def agreement(
    snap: Snapshot,
    *,
    by: str | None = None,
    n_boot: int = 1000,
    judge_vs_judge: bool = True,
    self_judge: bool | None = None,
    seed: int = 0,
) -> list[dict[str, Any]]:
    """S1, S2 and κ (with bootstrap CIs, overall and per ``by`` group) for human vs human, each judge vs human,
    and (``judge_vs_judge``) each two judges; plus each judge's confusion matrix against humans."""
    out = outcomes(snap, self_judge=self_judge)
    judges = sorted(r for r in out.votes if r != HUMAN)
    comparisons: list[tuple[str, str]] = [(HUMAN, HUMAN)] + [(HUMAN, j) for j in judges]
    if judge_vs_judge:
        comparisons += list(itertools.combinations(judges, 2))
    results = []
    for x, y in comparisons:
        rows = agreement_rows(
            snap, out.votes.get(x, {}), out.votes.get(y, {}), same=x == y, who=out.who.get(x, {})
        )
        report = metrics.agreement_report(rows, by, n_boot=n_boot, seed=seed)
        entry: dict[str, Any] = {
            "x": x,
            "y": y,
            "pairs": len(rows),
            **{k: [e.to_dict() for e in v] for k, v in report.items()},
        }
        if x == HUMAN and y != HUMAN:
            entry["confusion"] = metrics.confusion([r["x"] for r in rows], [r["y"] for r in rows]).tolist()
            entry["failed_verdicts"] = out.failed.get(y, 0)
            entry["verdicts"] = out.total.get(y, 0)
            tau, n = ranking_tau(snap, out.votes.get(y, {}))
            entry["ranking_tau"] = {"tau": tau, "n": n}
        results.append(entry)
    return results


#: Krippendorff's α per kind of human label: (what, vote kind, level): pairwise votes are categories, ranks ordered
ALPHA_KINDS = (("pairwise votes", "pairwise", "nominal"), ("rankings", "ranking", "ordinal"))


def annotator_alpha(snap: Snapshot, *, n_boot: int = 1000, seed: int = 0) -> list[dict[str, Any]]:
    """Krippendorff's α among the human annotators, for each kind of label the store holds: ``{"labels",
    "level", "alpha", "lo", "hi", "n_items", "n_annotators"}`` (95% bootstrap CI over items; NaN where α is
    undefined). Beside Cohen's κ of :func:`agreement`, it takes any number of annotators and missing labels."""
    out = []
    for what, kind, level in ALPHA_KINDS:
        votes = [v for v in snap.votes if v.get("kind") == kind]
        if votes:
            found = inter_annotator_alpha(votes, level=level, n_boot=n_boot, seed=seed)
            out.append({"labels": what, "level": level, **found})
    return out


def ranking_tau(snap: Snapshot, judge: dict[tuple[int, int], list[str | None]]) -> tuple[float, int]:
    """Mean Kendall τ between each human k-way ranking (k >= 3) and the judge's ranking of the same runs.

    The judge's ranking is each run's score over the comparison's pairs (a win 1, a tie 1/2), from its
    majority outcome per pair; a comparison with a pair the judge has no outcome for is left out."""
    pairs = []
    for v in snap.votes:
        ids = snap.comparisons[v["comparison_id"]]["run_ids"]
        if len(ids) < 3:
            continue
        score = dict.fromkeys(ids, 0.0)
        for a, b in itertools.combinations(ids, 2):
            pair, flipped = ((a, b), False) if a < b else ((b, a), True)
            said = _majority(judge.get(pair, []))
            if said is None:
                break
            said = metrics.flip(said) if flipped else said
            score[a] += {"A": 1.0, "B": 0.0, "tie": 0.5}[said]
            score[b] += {"A": 0.0, "B": 1.0, "tie": 0.5}[said]
        else:
            pairs.append(([-r for r in v["ranks"]], [score[r] for r in ids]))
    return metrics.mean_kendall_tau(pairs)


def biases(
    snap: Snapshot, *, by: str | None = None, n_boot: int = 1000, seed: int = 0
) -> list[dict[str, Any]]:
    """Position bias, length bias and swap-flip rate for humans (pairwise votes) and for each judge config."""
    rows: dict[str, list[dict[str, Any]]] = {}
    for v in snap.votes:
        ids = snap.comparisons[v["comparison_id"]]["run_ids"]
        if v["kind"] != "pairwise" or len(ids) != 2:
            continue
        attrs = pair_attrs(snap, tuple(ids))  # the shown order: A = left
        rows.setdefault(HUMAN, []).append(
            {**attrs, "winner": metrics.outcome(v["choice"]), "shown_picks": [v["choice"]]}
        )
    for d in snap.verdicts:
        if d["mode"] != "pairwise" or not d["ok"]:
            continue
        order_winners = (d.get("scores") or {}).get("order_winners") or []
        shown = (
            metrics.position_picks(order_winners, d["orders"])
            if len(order_winners) == len(d["orders"])
            else []
        )
        row = {**pair_attrs(snap, tuple(d["run_ids"])), "winner": metrics.outcome(d["winner"])}
        rows.setdefault(rater_of(d), []).append({**row, "shown_picks": shown, "order_winners": order_winners})
    result = []
    for rater in sorted(rows, key=lambda r: (r != HUMAN, r)):
        rep = metrics.bias_report(rows[rater], by, n_boot=n_boot, seed=seed)
        result.append(
            {"rater": rater, "n": len(rows[rater]), **{k: [e.to_dict() for e in v] for k, v in rep.items()}}
        )
    return result


def disagreements(snap: Snapshot, rater: str, *, limit: int = 200) -> list[dict[str, Any]]:
    """Run pairs where the judge config ``rater`` and the human majority differ (ties count), for review."""
    out = outcomes(snap)
    humans, judge = out.votes.get(HUMAN, {}), out.votes.get(rater, {})
    rows = []
    for pair in sorted(humans.keys() & judge.keys()):
        human = _majority(humans[pair])
        said = _majority(judge[pair])
        if human and said and human != said:
            a, b = snap.runs[pair[0]], snap.runs[pair[1]]
            comparisons = [c for c, v in snap.comparisons.items() if set(pair) <= set(v["run_ids"])]
            rows.append(
                {
                    **pair_attrs(snap, pair),
                    "run_a": pair[0],
                    "run_b": pair[1],
                    "comparison_ids": comparisons,
                    "prompt": snap.prompts[a["prompt_id"]]["text"],
                    "answer_a": a["answer"],
                    "answer_b": b["answer"],
                    "human": human,
                    "human_votes": [v for v in humans[pair] if v],
                    "judge": said,
                }
            )
    return rows[:limit]


def _majority(labels: Iterable[str | None]) -> str | None:
    """The most common outcome; a split between the top two is a tie."""
    counts: dict[str, int] = {}
    for lab in labels:
        if lab:
            counts[lab] = counts.get(lab, 0) + 1
    if not counts:
        return None
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])
    return "tie" if len(ranked) > 1 and ranked[0][1] == ranked[1][1] else ranked[0][0]


# -- leaderboard --------------------------------------------------------------------------------------------------
def matches(snap: Snapshot, *, judges: Sequence[str] | None = None) -> list[Match]:
    """Human matches (every vote; rankings as their pairs) and judge matches (every outcome of the judge
    configs in ``judges``, by rater name or judge name; default all). Failed verdicts give no match."""
    out = outcomes(snap)
    result = []
    for rater, by_pair in out.votes.items():
        source = HUMAN if rater == HUMAN else "judge"
        if source == "judge" and judges and not any(rater == j or rater.split("@")[0] == j for j in judges):
            continue
        for (a, b), labels in by_pair.items():
            ca, cb = contestant(snap.runs[a]), contestant(snap.runs[b])
            result += [Match(ca, cb, lab, source) for lab in labels if lab]
    return result


def leaderboards(
    snap: Snapshot,
    *,
    combined: bool = False,
    judges: Sequence[str] | None = None,
    n_boot: int = 200,
    seed: int = 0,
) -> dict[str, Any]:
    """Bradley–Terry boards ("human", "judge", and "combined" on request), each board's win-rate matrix, and
    Kendall τ between the human and judge boards over the contestants both rank."""
    found = matches(snap, judges=judges)
    boards = metrics.boards(found, combined=combined, n_boot=n_boot, seed=seed)
    out: dict[str, Any] = {
        "boards": {k: [r.to_dict() for r in rows] for k, rows in boards.items()},
        "win_rates": {
            k: _matrix_dict(metrics.win_rate_matrix([m for m in found if k == "combined" or m.source == k]))
            for k in boards
        },
    }
    out["kendall_tau"] = _board_tau(boards.get(HUMAN, []), boards.get("judge", []))
    return out


def _board_tau(x: list[BoardRow], y: list[BoardRow]) -> dict[str, Any]:
    sx = {r.contestant: r.strength for r in x}
    sy = {r.contestant: r.strength for r in y}
    common = sorted(sx.keys() & sy.keys())
    tau, p = metrics.kendall_tau([sx[c] for c in common], [sy[c] for c in common])
    return {"tau": None if math.isnan(tau) else tau, "p": None if math.isnan(p) else p, "n": len(common)}


def _matrix_dict(frame: Any) -> dict[str, Any]:
    values = [[None if math.isnan(v) else float(v) for v in row] for row in frame.to_numpy()]
    return {"labels": list(frame.index), "values": values}
