"""Batch judging over the store.

:func:`judge_scope` judges every item a :class:`Scope` selects: the two-run pairs of comparisons (all,
human-labelled or unlabelled), or the runs of a prompt set paired up per prompt. A single-answer judge rates each
distinct run once. Items go to the judge ``batch_size`` at a time, and the judge sends every model call of one
round as one batch. Every verdict, valid or failed, is stored. The job resumes: an item already judged under the
same config hash (judge, judge model, settings, prompt text) is skipped. An item carries its prompt's reference
answer, where the prompt has one, for the reference-guided judges.

**Swap flips.** Beside every verdict set, :class:`JobResult` reports the swap-flip rate of the verdicts it
judged: of those read in both orders, the share whose two orders picked differently
(:func:`studio.metrics.bias.swap_flip_rate`); n = 0 for a single-answer judge.

**Stored verdicts.** ``judge_config`` is the judge's settings plus ``config_hash``; ``raw_output`` is a JSON list
of the raw outputs; ``scores`` holds ``detail`` (the judge's own scores), ``order_winners``, ``self_judge``,
``notes`` and ``error``. :func:`verdict_from_row` turns a row back into a :class:`~studio.judges.Verdict`.
"""

from __future__ import annotations

import itertools
import json
import time
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from storage import Filters
from studio.backends.base import Backend
from studio.errors import InputError
from studio.judges import Candidate, Judge, JudgeItem, Verdict
from studio.judging.snapshot import Snapshot, contestant, snapshot
from studio.metrics.bias import swap_flip_rate
from studio.progress import Progress

if TYPE_CHECKING:
    from storage import Store


# -- what to judge ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Scope:
    """Which items to judge.

    - ``source="comparisons"``: the run pairs shown to people (a k-way comparison gives its C(k, 2) pairs);
      ``labelled`` True keeps comparisons with at least one human vote, False those with none, None all.
    - ``source="runs"``: every pair of runs answering the same prompt (a single-answer judge: every run);
      ``labelled`` True keeps runs shown in a voted comparison, False the others.

    ``prompt_set``, ``model`` and ``strategy`` (a name, or ``strategy:variant``) narrow further: they are the
    store's run filters (:attr:`filters`; a pair matches when either run does). ``limit`` caps the number of items.
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

    @property
    def filters(self) -> Filters:
        return Filters(model=self.model, strategy=self.strategy, prompt_set=self.prompt_set)


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
    #: the swap-flip rate of the verdicts judged: {"flips", "n", "rate"} (rate None when n is 0)
    swap_flip: dict[str, Any] = field(default_factory=lambda: swap_flip_dict([]))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def summary(self) -> str:
        """The job in one line: counts, then the swap-flip rate where any verdict was read in both orders."""
        text = f"{self.judged} judged ({self.ok} ok, {self.failed} failed), {self.skipped} already judged"
        sf = self.swap_flip
        if sf["n"]:
            text += f"; swap flips {sf['flips']}/{sf['n']} ({sf['rate']:.0%})"
        return text


def swap_flip_dict(verdicts: list[Verdict]) -> dict[str, Any]:
    """``{"flips", "n", "rate"}`` of ``verdicts``: of those with every order read, how many orders disagreed."""
    rate = swap_flip_rate([v.order_winners for v in verdicts])
    return {"flips": rate.k, "n": rate.n, "rate": rate.value if rate.n else None}


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
    unique, seen = [], set()
    for t in candidates:
        if t.key not in seen:
            seen.add(t.key)
            unique.append(t)
    if snap.store is not None:  # the store's run filters, the ones its exports use
        unique = [unique[i] for i in snap.store.matching([t.run_ids for t in unique], scope.filters)]
    elif scope.model or scope.strategy or scope.prompt_set:
        raise ValueError("a scope's filters need a snapshot read from a store: snapshot(store)")
    return unique[: scope.limit] if scope.limit else unique


def judge_item(snap: Snapshot, target: Target) -> JudgeItem:
    runs = [snap.runs[r] for r in target.run_ids]
    prompt = snap.prompts[runs[0]["prompt_id"]]
    answers = tuple(Candidate(r["answer"], r["model"], contestant(r)[1], r["id"]) for r in runs)
    return JudgeItem(prompt["text"], answers, key=target, reference=prompt.get("reference") or "")


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
        trace=verdict.trace,
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
        trace=row.get("trace"),  # only ``store.get_verdict`` rows carry it
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
    judged: list[Verdict] = []
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        verdicts = judge.judge([judge_item(snap, t) for t in batch], backend)
        for target, verdict in zip(batch, verdicts, strict=True):
            result.verdict_ids.append(store_verdict(store, verdict, target))
            result.ok += verdict.ok
            result.failed += not verdict.ok
            result.self_judged += verdict.self_judge
        judged.extend(verdicts)
        result.swap_flip = swap_flip_dict(judged)
        result.judged += len(batch)
        report(result.judged, len(todo), f"judged {result.judged}/{len(todo)} ({result.failed} failed)")
    result.elapsed_s = time.perf_counter() - started
    return result
