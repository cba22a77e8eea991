"""The agreement, bias, disagreement and leaderboard figures, computed from a :class:`Snapshot` of the store.

:func:`agreement`, :func:`biases`, :func:`disagreements` and :func:`leaderboards` compute with
:mod:`studio.metrics`. Outcomes are compared per run pair in one canonical labelling (A = the run with the smaller
id). A human vote's outcomes are its run pairs as the store gives them (``Store.vote_pairs``, the pairs the
exports read), so a ranking becomes pairs in one place.

**Held-out honesty.** A judge whose model was trained in the studio (a reward model, a DPO model, a self-taught
judge) has seen some of the votes it is scored against. :func:`judge_models` reads, from the registry and the
run dirs, which (prompt, answer pair)s each judge model was trained on; :func:`agreement` then reports such a
judge's agreement with people on the *other* votes only (``split="held-out"``, the default), with how many vote
pairs it left out; ``split="both"`` shows the train and held-out figures side by side; ``split="all"`` the
pooled figure, marked as including training votes. A judge's agreement on its own training votes is never
reported as its agreement.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from studio import metrics
from studio.errors import InputError
from studio.judging.snapshot import HUMAN, Snapshot, contestant
from studio.metrics.agreement import inter_annotator_alpha
from studio.metrics.bias import swap_flip_rate
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
    #: per judge rater, per canonical run pair, each two-order verdict's per-order picks (for swap flips)
    order_picks: dict[str, dict[tuple[int, int], list[list[str | None]]]] = field(default_factory=dict)
    #: per judge rater: its judge, judge model and settings (the config without its hash)
    info: dict[str, dict[str, Any]] = field(default_factory=dict)

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
        settings = {k: v for k, v in (d.get("judge_config") or {}).items() if k != "config_hash"}
        out.info.setdefault(
            rater, {"judge": d["judge"], "judge_model": d.get("judge_model") or "", "settings": settings}
        )
        if d["mode"] == "pairwise":
            pair, label = _canonical(*d["run_ids"], d["winner"] if d["ok"] else None)
            out.add(rater, pair, label)
            picks = list((d.get("scores") or {}).get("order_winners") or [])
            if d["ok"] and len(picks) >= 2:
                flipped = pair[0] != d["run_ids"][0]
                out.order_picks.setdefault(rater, {}).setdefault(pair, []).append(
                    [metrics.flip(p) if flipped else metrics.outcome(p) for p in picks]
                )
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


# -- which votes a trained judge was trained on --------------------------------------------------------------------
Split = Literal["held-out", "both", "all"]
SPLITS: tuple[str, ...] = ("held-out", "both", "all")
TrainingPairs = set[tuple[str, frozenset[str]]]


@dataclass
class JudgeModels:
    """What the registry knows of the judge models: the training pairs of each model trained in the studio (its
    own and its trained ancestors', :func:`studio.judging.heldout.training_pairs`), and each model's parent."""

    trained: dict[str, TrainingPairs] = field(default_factory=dict)
    parents: dict[str, str] = field(default_factory=dict)

    def is_trained(self, model: str) -> bool:
        return model in self.trained

    def trained_on(self, model: str, prompt: str, answer_a: str, answer_b: str) -> bool:
        """Whether ``model`` was trained on this (prompt, answer pair), in either order."""
        from studio.judging.heldout import is_training_pair

        pairs = self.trained.get(model)
        return pairs is not None and is_training_pair(pairs, prompt, answer_a, answer_b)

    def ancestors(self, model: str) -> list[str]:
        """The parent, its parent, ... (nearest first; a cycle stops the walk)."""
        chain: list[str] = []
        while (model := self.parents.get(model, "")) and model not in chain:
            chain.append(model)
        return chain


def judge_models(snap: Snapshot, registry: Any, runs_dir: str | Path) -> JudgeModels:
    """The :class:`JudgeModels` of every judge model with verdicts in ``snap`` and of their ancestors, from the
    model registry (``ModelRegistry``: parents) and the run dirs (training-data snapshots)."""
    from studio.judging.heldout import training_pairs

    specs = registry.specs(kind=None)
    found = JudgeModels()
    todo = sorted({d.get("judge_model") for d in snap.verdicts if d.get("judge_model")})
    seen: set[str] = set()
    while todo:
        name = todo.pop()
        if name in seen or name not in specs:
            continue
        seen.add(name)
        pairs = training_pairs(registry, runs_dir, name)
        if pairs is not None:
            found.trained[name] = set(pairs)
        if specs[name].parent:
            found.parents[name] = specs[name].parent
            todo.append(specs[name].parent)
    return found


def _train_items(snap: Snapshot, models: JudgeModels, model: str, items: Iterable[tuple[int, int]]) -> set:
    """The run pairs among ``items`` whose (prompt, answers) ``model`` was trained on."""
    if not models.is_trained(model):
        return set()
    out = set()
    for a, b in items:
        ra, rb = snap.runs[a], snap.runs[b]
        if models.trained_on(model, snap.prompts[ra["prompt_id"]]["text"], ra["answer"], rb["answer"]):
            out.add((a, b))
    return out


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


def _only(votes: Mapping[Any, list], keep: Iterable[Any] | None = None, drop: set | frozenset = frozenset()):
    """``votes`` on the items in ``keep`` (default all) and not in ``drop``."""
    wanted = votes.keys() if keep is None else set(keep) & votes.keys()
    return {k: votes[k] for k in wanted if k not in drop}


def swap_flip(picks: Mapping[Any, list[list[str | None]]], items: Iterable[Any]) -> dict[str, Any]:
    """The swap-flip rate of a judge's two-order verdicts on ``items``: ``{"flips", "n", "rate"}``."""
    rate = swap_flip_rate([p for item in items for p in picks.get(item, [])])
    return {"flips": rate.k, "n": rate.n, "rate": None if math.isnan(rate.value) else rate.value}


def agreement(
    snap: Snapshot,
    *,
    by: str | None = None,
    n_boot: int = 1000,
    judge_vs_judge: bool = True,
    self_judge: bool | None = None,
    seed: int = 0,
    models: JudgeModels | None = None,
    split: Split = "held-out",
) -> list[dict[str, Any]]:
    """S1, S2 and κ (with bootstrap CIs, overall and per ``by`` group) for human vs human, each judge vs human,
    and (``judge_vs_judge``) each two judges; plus each judge's confusion matrix against humans, its failed
    verdicts, ranking τ and swap-flip rate.

    ``models`` (:func:`judge_models`) says which judge models were trained in the studio, on what. A trained
    judge's entry against people covers its held-out votes only (``"split": "held-out"``, with
    ``"train_pairs_excluded"``); ``split="both"`` adds its entry on its training votes (``"split": "train"``)
    beside it; ``split="all"`` pools them (``"split": "all"``, ``"includes_train_pairs"``). Judge-vs-judge
    entries use held-out votes unless ``split="all"``. A judge with a parent model gets ``"lineage"``: per
    ancestor, the same judge with the same settings on that model, scored on the same items.
    """
    if split not in SPLITS:
        raise InputError(f"split is one of {', '.join(SPLITS)}, not {split!r}")
    models = models or JudgeModels()
    out = outcomes(snap, self_judge=self_judge)
    judges = sorted(r for r in out.votes if r != HUMAN)
    humans, who = out.votes.get(HUMAN, {}), out.who.get(HUMAN, {})
    model_of = {j: out.info.get(j, {}).get("judge_model", "") for j in judges}
    train = {j: _train_items(snap, models, model_of[j], out.votes[j].keys()) for j in judges}
    pooled = split == "all"
    held = {j: out.votes[j] if pooled else _only(out.votes[j], drop=train[j]) for j in judges}

    def entry(x: str, y: str, xv: dict, yv: dict) -> tuple[dict[str, Any], list[dict]]:
        rows = agreement_rows(snap, xv, yv, same=x == y, who=who if x == y else None)
        report = metrics.agreement_report(rows, by, n_boot=n_boot, seed=seed)
        found = {k: [e.to_dict() for e in v] for k, v in report.items()}
        return {"x": x, "y": y, "pairs": len(rows), **found}, rows

    def versus_humans(j: str, votes: dict, label: str) -> dict[str, Any]:
        e, rows = entry(HUMAN, j, humans, votes)
        tau, n = ranking_tau(snap, votes)
        trained = models.is_trained(model_of[j])
        e.update(
            judge=out.info.get(j, {}).get("judge", j.split("@")[0]),
            judge_model=model_of[j],
            trained=trained,
            split=label if trained else "all",
            confusion=metrics.confusion([r["x"] for r in rows], [r["y"] for r in rows]).tolist(),
            failed_verdicts=out.failed.get(j, 0),
            verdicts=out.total.get(j, 0),
            ranking_tau={"tau": tau, "n": n},
            swap_flip=swap_flip(out.order_picks.get(j, {}), votes.keys()),
        )
        if trained and label != "train":  # how many vote pairs are on training votes: left out, or pooled in
            on_train = len(agreement_rows(snap, humans, _only(out.votes[j], keep=train[j]), same=False))
            e["includes_train_pairs" if pooled else "train_pairs_excluded"] = on_train
        return e

    results = [entry(HUMAN, HUMAN, humans, humans)[0]]
    for j in judges:
        main = versus_humans(j, held[j], "all" if pooled else "held-out")
        if models.parents.get(model_of[j]):
            main["lineage"] = _lineage(snap, out, models, j, main, held[j].keys(), n_boot=n_boot, seed=seed)
        results.append(main)
        if split == "both" and models.is_trained(model_of[j]):
            results.append(versus_humans(j, _only(out.votes[j], keep=train[j]), "train"))
    if judge_vs_judge:
        for x, y in itertools.combinations(judges, 2):
            results.append({**entry(x, y, held[x], held[y])[0], "split": "all" if pooled else "held-out"})
    return results


def _same_judge(info: dict[str, dict[str, Any]], rater: str, model: str) -> str | None:
    """The rater that is ``rater``'s judge with the same settings on ``model`` (else the same judge on it)."""
    me = info[rater]
    same = [r for r, i in info.items() if i["judge"] == me["judge"] and i["judge_model"] == model]
    exact = [r for r in same if info[r]["settings"] == me["settings"]]
    return (exact or same or [None])[0]


def _lineage(
    snap: Snapshot,
    out: Outcomes,
    models: JudgeModels,
    rater: str,
    child: dict[str, Any],
    items: Iterable[tuple[int, int]],
    *,
    n_boot: int,
    seed: int,
) -> list[dict[str, Any]]:
    """Judge lineage v0 → v1: per ancestor of ``rater``'s judge model (the root first, the judge itself last),
    the same judge's agreement with people on the child's items (less the ancestor's own training votes)."""
    humans = out.votes.get(HUMAN, {})
    items = set(items)
    chain = []
    for model in reversed(models.ancestors(child["judge_model"])):
        found = _same_judge(out.info, rater, model)
        row: dict[str, Any] = {
            "model": model,
            "rater": found,
            "pairs": 0,
            "trained": models.is_trained(model),
        }
        if found:
            votes = _only(out.votes.get(found, {}), keep=items)
            votes = _only(votes, drop=_train_items(snap, models, model, votes.keys()))
            rows = agreement_rows(snap, humans, votes, same=False)
            report = metrics.agreement_report(rows, None, n_boot=n_boot, seed=seed)
            row.update(pairs=len(rows), **{k: v[0].to_dict() for k, v in report.items()})
            row["swap_flip"] = swap_flip(out.order_picks.get(found, {}), votes.keys())
        chain.append(row)
    me = {k: child[k] for k in ("pairs", "swap_flip")} | {k: child[k][0] for k in ("s1", "s2", "kappa")}
    chain.append({"model": child["judge_model"], "rater": rater, "trained": child["trained"], **me})
    for version, row in enumerate(chain):
        row["version"] = f"v{version}"
    return chain


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
