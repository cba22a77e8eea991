"""Batch judging over the store, and the agreement and leaderboard figures built from what the store holds.

**Judging.** :func:`judge_scope` judges every item a :class:`Scope` selects: the two-run pairs of comparisons
(all, human-labelled or unlabelled), or the runs of a prompt set paired up per prompt. A single-answer judge
rates each distinct run once. Items go to the judge ``batch_size`` at a time, and the judge sends every model
call of one round as one batch. Every verdict, valid or failed, is stored. The job resumes: an item already
judged under the same config hash (judge, judge model, settings, prompt text) is skipped.

**Stored verdicts.** ``judge_config`` is the judge's settings plus ``config_hash``; ``raw_output`` is a JSON list
of the raw outputs; ``scores`` holds ``detail`` (the judge's own scores), ``order_winners``, ``self_judge``,
``notes`` and ``error``. :func:`verdict_from_row` turns a row back into a :class:`~studio.judges.Verdict`.

**Figures.** :func:`snapshot` reads prompts, runs, comparisons, votes and verdicts once; :func:`agreement`,
:func:`biases`, :func:`disagreements` and :func:`leaderboards` compute from it with :mod:`studio.metrics`.
Outcomes are compared per run pair in one canonical labelling (A = the run with the smaller id).
"""

from __future__ import annotations

import itertools
import json
import math
import time
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from studio import metrics
from studio.backends.base import Backend
from studio.errors import InputError
from studio.judges import Candidate, Judge, JudgeItem, Verdict
from studio.metrics.agreement import inter_annotator_alpha
from studio.metrics.leaderboard import BoardRow, Match

if TYPE_CHECKING:
    from storage import Store

Progress = Callable[[int, int, str], None]
ALL = None  # the store's list_* readers: every row
HUMAN = "human"


# -- what to judge ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """Which items to judge.

    - ``source="comparisons"``: the run pairs shown to people (a k-way comparison gives its C(k, 2) pairs);
      ``labelled`` True keeps comparisons with at least one human vote, False those with none, None all.
    - ``source="runs"``: every pair of runs answering the same prompt (a single-answer judge: every run);
      ``labelled`` True keeps runs shown in a voted comparison, False the others.

    ``prompt_set``, ``model`` and ``strategy`` narrow further (a pair matches when either run does);
    ``limit`` caps the number of items.
    """

    source: Literal["comparisons", "runs"] = "comparisons"
    labelled: bool | None = None
    prompt_set: str | None = None
    model: str | None = None
    strategy: str | None = None
    limit: int | None = None

    def __post_init__(self) -> None:
        if self.source not in ("comparisons", "runs"):
            raise InputError(f"scope source is 'comparisons' or 'runs', not {self.source!r}")
        if self.limit is not None and self.limit < 1:
            raise InputError(f"scope limit must be >= 1, not {self.limit}")


@dataclass(frozen=True)
class Target:
    """What one verdict is stored against: the runs judged (A first) and the comparison they came from."""

    run_ids: tuple[int, ...]
    comparison_id: int | None = None

    @property
    def key(self) -> tuple[int, ...]:
        """The resume key: the run pair in either order is one item (both orders are judged anyway)."""
        return tuple(sorted(self.run_ids))


@dataclass
class JobResult:
    judge: str
    judge_model: str
    config_hash: str
    total: int  # items in scope
    skipped: int  # already judged under this config
    judged: int
    ok: int
    failed: int
    self_judged: int
    verdict_ids: list[int] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


# -- reading the store once ---------------------------------------------------------------------------------------
@dataclass
class Snapshot:
    prompts: dict[int, dict[str, Any]]
    runs: dict[int, dict[str, Any]]
    comparisons: dict[int, dict[str, Any]]
    votes: list[dict[str, Any]]
    verdicts: list[dict[str, Any]]

    def voted(self) -> set[int]:
        return {v["comparison_id"] for v in self.votes}


def snapshot(store: Store) -> Snapshot:
    """Everything the figures need, read with the store's own readers (no SQL here). Failed runs are left out,
    with any comparison, vote or verdict that involves one: judges and figures never see a failed run."""
    runs = {r["id"]: r for r in store.list_runs(failed=False, limit=ALL)}
    comparisons = {
        c["id"]: c for c in store.list_comparisons(limit=ALL) if all(r in runs for r in c["run_ids"])
    }
    return Snapshot(
        prompts={p["id"]: p for p in store.list_prompts(limit=ALL)},
        runs=runs,
        comparisons=comparisons,
        votes=[v for v in store.list_votes(limit=ALL) if v["comparison_id"] in comparisons],
        verdicts=[d for d in store.list_verdicts(limit=ALL) if all(r in runs for r in d["run_ids"])],
    )


def contestant(run: dict[str, Any]) -> tuple[str, str]:
    """(model, strategy[:variant]) of a run: the unit the leaderboard ranks."""
    strategy = run["strategy"] + (f":{run['variant']}" if run.get("variant") else "")
    return run["model"], strategy


def _matches_scope(snap: Snapshot, run_ids: Sequence[int], scope: Scope) -> bool:
    runs = [snap.runs[r] for r in run_ids]
    if scope.prompt_set and snap.prompts[runs[0]["prompt_id"]]["prompt_set"] != scope.prompt_set:
        return False
    if scope.model and all(r["model"] != scope.model for r in runs):
        return False
    strategies = {name for r in runs for name in (r["strategy"], contestant(r)[1])}
    return not scope.strategy or scope.strategy in strategies


def _candidate_pairs(snap: Snapshot, scope: Scope) -> list[Target]:
    """Every run pair the scope's source offers, before the narrowing filters."""
    voted = snap.voted()
    if scope.source == "comparisons":
        return [
            Target((a, b), cid)
            for cid in sorted(snap.comparisons)
            if scope.labelled is None or (cid in voted) == scope.labelled
            for a, b in itertools.combinations(snap.comparisons[cid]["run_ids"], 2)
        ]
    shown = {r for cid in voted for r in snap.comparisons[cid]["run_ids"]}
    by_prompt: dict[int, list[int]] = {}
    for rid in sorted(snap.runs):
        if scope.labelled is None or (rid in shown) == scope.labelled:
            by_prompt.setdefault(snap.runs[rid]["prompt_id"], []).append(rid)
    singles = [Target((r,)) for ids in by_prompt.values() if len(ids) == 1 for r in ids]
    return [Target(p) for ids in by_prompt.values() for p in itertools.combinations(ids, 2)] + singles


def targets(snap: Snapshot, scope: Scope, mode: str) -> list[Target]:
    """The items of ``scope`` for a judge of ``mode`` (a single-answer judge: each run of each pair once),
    in a stable order, deduplicated on the run pair."""
    candidates = _candidate_pairs(snap, scope)
    if mode == "single":
        candidates = [Target((r,)) for t in candidates for r in t.run_ids]
    else:
        candidates = [t for t in candidates if len(t.run_ids) == 2]
    out, seen = [], set()
    for t in candidates:
        if t.key not in seen and _matches_scope(snap, t.run_ids, scope):
            seen.add(t.key)
            out.append(t)
    return out[: scope.limit] if scope.limit else out


def judge_item(snap: Snapshot, target: Target) -> JudgeItem:
    runs = [snap.runs[r] for r in target.run_ids]
    question = snap.prompts[runs[0]["prompt_id"]]["text"]
    answers = tuple(Candidate(r["answer"], r["model"], contestant(r)[1], r["id"]) for r in runs)
    return JudgeItem(question, answers, key=target)


# -- judging ------------------------------------------------------------------------------------------------------
def judged_keys(snap: Snapshot, config_hash: str) -> set[tuple[int, ...]]:
    """Items that already have a verdict (valid or failed) under ``config_hash``."""
    return {
        tuple(sorted(v["run_ids"]))
        for v in snap.verdicts
        if (v["judge_config"] or {}).get("config_hash") == config_hash
    }


def store_verdict(store: Store, verdict: Verdict, target: Target) -> int:
    return store.add_verdict(
        verdict.judge,
        verdict.mode,
        list(target.run_ids),
        comparison_id=target.comparison_id,
        judge_model=verdict.judge_model,
        judge_config={**verdict.config, "config_hash": verdict.config_hash},
        orders=verdict.orders,
        winner=verdict.winner,
        rating=verdict.rating,
        prob_a=verdict.prob_a,
        scores={
            "detail": verdict.scores,
            "order_winners": verdict.order_winners,
            "self_judge": verdict.self_judge,
            "notes": verdict.notes,
            "error": verdict.error,
        },
        raw_output=json.dumps(verdict.raw, ensure_ascii=False),
        ok=verdict.ok,
    )


def verdict_from_row(row: dict[str, Any]) -> Verdict:
    """A stored verdict row (as ``store.list_verdicts`` returns it) as a :class:`Verdict`."""
    config = dict(row.get("judge_config") or {})
    config_hash = config.pop("config_hash", "")
    scores = row.get("scores") or {}
    try:
        raw = json.loads(row.get("raw_output") or "[]")
    except json.JSONDecodeError:
        raw = [row["raw_output"]]  # written by something else: keep the text as one output
    return Verdict(
        judge=row["judge"],
        judge_model=row.get("judge_model") or "",
        config=config,
        config_hash=config_hash,
        mode=row["mode"],
        ok=bool(row["ok"]),
        winner=row.get("winner"),
        rating=row.get("rating"),
        prob_a=row.get("prob_a"),
        orders=list(row.get("orders") or []),
        order_winners=list(scores.get("order_winners") or []),
        scores=scores.get("detail") or {},
        raw=raw if isinstance(raw, list) else [str(raw)],
        self_judge=bool(scores.get("self_judge")),
        error=scores.get("error") or "",
        notes=list(scores.get("notes") or []),
        key=Target(tuple(row["run_ids"]), row.get("comparison_id")),
    )


def judge_scope(
    store: Store,
    backend: Backend,
    judge: Judge,
    scope: Scope = Scope(),
    *,
    batch_size: int = 8,
    progress: Progress | None = None,
) -> JobResult:
    """Judge every item of ``scope`` not yet judged under this config; store every verdict; report counts.

    ``progress(done, total, msg)`` is called before the first batch and after each one. Stopping the job
    (an exception from ``progress``, Ctrl-C) loses at most the batch in flight; a rerun resumes.
    """
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, not {batch_size}")
    judge.check_backend(backend)
    started = time.perf_counter()
    snap = snapshot(store)
    config_hash = judge.config_hash(backend.model_name)
    all_targets = targets(snap, scope, judge.mode)
    done_keys = judged_keys(snap, config_hash)
    todo = [t for t in all_targets if t.key not in done_keys]
    result = JobResult(
        judge.name,
        backend.model_name,
        config_hash,
        len(all_targets),
        len(all_targets) - len(todo),
        0,
        0,
        0,
        0,
    )
    report = progress or (lambda done, total, msg: None)
    report(0, len(todo), f"{len(todo)} to judge, {result.skipped} already judged")
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        verdicts = judge.judge([judge_item(snap, t) for t in batch], backend)
        for target, verdict in zip(batch, verdicts, strict=True):
            result.verdict_ids.append(store_verdict(store, verdict, target))
            result.ok += verdict.ok
            result.failed += not verdict.ok
            result.self_judged += verdict.self_judge
        result.judged += len(batch)
        report(result.judged, len(todo), f"judged {result.judged}/{len(todo)} ({result.failed} failed)")
    result.elapsed_s = time.perf_counter() - started
    return result


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
    for v in snap.votes:
        ids = snap.comparisons[v["comparison_id"]]["run_ids"]
        for (i, a), (j, b) in itertools.combinations(enumerate(ids), 2):
            ri, rj = v["ranks"][i], v["ranks"][j]
            out.add(HUMAN, *_canonical(a, b, "A" if ri < rj else "B" if rj < ri else "tie"), v["annotator"])
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
