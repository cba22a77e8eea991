"""Compare with parent: a trained model against the model it was trained from, on a prompt set, judged.

This is the loop back into the arena. :func:`compare_with_parent` looks up the model's parent (``parent`` in the
model registry, which owns lineage), answers every prompt of a prompt set with both models (System 1 by
default, or any ``strategy[:variant]``), and stores, per prompt, both runs and one blind comparison whose screen
positions are shuffled (the order is what the comparison stores, so position bias stays measurable). A judge
(any name in :data:`studio.judges.JUDGES`) then judges each comparison; every verdict is stored, failed ones too.
The result is the child's win rate against its parent with a bootstrap CI (a tie or an inconsistent verdict
counts one half; failed verdicts are counted and left out), and beside it the length-controlled win rate in
AlpacaEval 2's form (:func:`studio.metrics.length_controlled_win_rate`: a GLM of the outcome on a model term and
tanh of the standardised length difference, predicted at equal length), so a child that wins by writing longer
shows it. Too few judged items, or no variation, give NaN and a note saying which.

The comparisons get no human vote here, so they wait for people: the Judge tab and ``studio judge
--unlabelled`` see them as unlabelled comparisons, and the Data tab lists them under the prompt set. The result
carries their ids and the prompt set's name.

Generation goes through the strategy driver (the one behind :func:`studio.api.stream_many`) ``batch_size``
prompts at a time, so the child's requests of a chunk go to the model as one batch, and the parent's as another.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from studio import metrics
from studio.errors import InputError
from studio.judges import Candidate, Judge, JudgeItem, Verdict, make_judge
from studio.judging import Target, store_verdict
from studio.methods import Method
from studio.progress import Progress
from studio.runs import save_run
from studio.strategies import DriveJob, RunResult, StrategyParams, drive

if TYPE_CHECKING:
    from storage import Store
    from studio.backends.base import Backend
    from studio.models import ModelRegistry

CHILD, PARENT = "child", "parent"
SCORES = {CHILD: 1.0, PARENT: 0.0, "tie": 0.5, "inconsistent": 0.5}
N_BOOT = 1000


@dataclass
class CompareItem:
    """One prompt: both runs, the comparison (child shown at ``child_position``: 0 = A) and the judge's outcome
    from the child's side: child, parent, tie, inconsistent, or None (failed verdict, or a run failed)."""

    prompt_id: int
    prompt: str
    child_run: int | None = None
    parent_run: int | None = None
    comparison_id: int | None = None
    child_position: int = 0
    child_answer: str = ""
    parent_answer: str = ""
    outcome: str | None = None
    prob_child: float | None = None
    verdict_ids: list[int] = field(default_factory=list)
    error: str = ""


@dataclass
class CompareResult:
    model: str
    parent: str
    prompt_set: str
    judge: str
    judge_model: str
    strategy: str
    items: list[CompareItem] = field(default_factory=list)
    elapsed_s: float = 0.0
    self_judged: int = 0  # verdicts whose judge model wrote one of the answers
    n_boot: int = N_BOOT
    _lc: tuple[Any, metrics.LengthControlled] | None = field(default=None, repr=False, compare=False)

    def count(self, outcome: str | None) -> int:
        return sum(1 for i in self.items if i.comparison_id is not None and i.outcome == outcome)

    @property
    def wins(self) -> int:
        return self.count(CHILD)

    @property
    def losses(self) -> int:
        return self.count(PARENT)

    @property
    def ties(self) -> int:
        return self.count("tie")

    @property
    def inconsistent(self) -> int:
        return self.count("inconsistent")

    @property
    def failed(self) -> int:
        """Comparisons whose verdict failed (unparseable judge output)."""
        return self.count(None)

    @property
    def run_errors(self) -> int:
        """Prompts left out because a run failed (a prompt too long for a model, say)."""
        return sum(1 for i in self.items if i.comparison_id is None)

    @property
    def comparison_ids(self) -> list[int]:
        return [i.comparison_id for i in self.items if i.comparison_id is not None]

    @property
    def run_ids(self) -> list[int]:
        return [r for i in self.items for r in (i.child_run, i.parent_run) if r is not None]

    @property
    def verdict_ids(self) -> list[int]:
        return [v for i in self.items for v in i.verdict_ids]

    def scores(self) -> list[float]:
        return [SCORES[i.outcome] for i in self.items if i.outcome in SCORES]

    @property
    def win_rate(self) -> float:
        s = self.scores()
        return sum(s) / len(s) if s else math.nan

    def ci(self) -> tuple[float, float]:
        rows = [{"score": s} for s in self.scores()]
        return metrics.bootstrap_ci(rows, _mean_score, n_boot=self.n_boot)

    def length_control(self) -> metrics.LengthControlled:
        """Raw and length-controlled win rates with bootstrap CIs (AlpacaEval 2's LC form; the length is each
        answer's characters). Cached until the judged items change."""
        judged = [
            (SCORES[i.outcome], len(i.child_answer), len(i.parent_answer))
            for i in self.items
            if i.outcome in SCORES
        ]
        key = (self.n_boot, tuple(judged))
        if self._lc is None or self._lc[0] != key:
            scores, child, parent = zip(*judged, strict=True) if judged else ((), (), ())
            self._lc = (key, metrics.length_controlled_win_rate(scores, child, parent, n_boot=self.n_boot))
        return self._lc[1]

    @property
    def mean_prob_child(self) -> float:
        probs = [i.prob_child for i in self.items if i.prob_child is not None]
        return sum(probs) / len(probs) if probs else math.nan

    def summary(self) -> dict[str, Any]:
        """The figures, NaN as None (JSON has no NaN)."""
        lo, hi = self.ci()
        lc = self.length_control()
        figures = {
            "model": self.model, "parent": self.parent, "prompt_set": self.prompt_set, "judge": self.judge,
            "judge_model": self.judge_model, "strategy": self.strategy, "prompts": len(self.items),
            "compared": len(self.comparison_ids), "judged": len(self.scores()), "wins": self.wins,
            "losses": self.losses, "ties": self.ties, "inconsistent": self.inconsistent, "failed": self.failed,
            "run_errors": self.run_errors, "win_rate": self.win_rate, "ci_lo": lo, "ci_hi": hi,
            "lc_win_rate": lc.lc_win_rate, "lc_ci_lo": lc.lc_lo, "lc_ci_hi": lc.lc_hi,
            "length_coef": lc.length_coef, "lc_note": lc.note,
            "mean_prob_child": self.mean_prob_child, "self_judged": self.self_judged,
            "elapsed_s": round(self.elapsed_s, 2),
        }  # fmt: skip
        return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in figures.items()}

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "comparison_ids": self.comparison_ids,
            "run_ids": self.run_ids,
            "verdict_ids": self.verdict_ids,
            "items": [asdict(i) for i in self.items],
        }

    def line(self) -> str:
        """One sentence for a terminal or a status bar."""
        s = self.summary()
        rate = "n/a" if s["win_rate"] is None else f"{s['win_rate']:.2f}"
        ci = "" if s["ci_lo"] is None else f" (95% CI {s['ci_lo']:.2f}-{s['ci_hi']:.2f})"
        if s["lc_win_rate"] is None:
            lc = f"length-controlled n/a ({s['lc_note']})" if s["lc_note"] else "length-controlled n/a"
        else:
            lc_ci = "" if s["lc_ci_lo"] is None else f" (95% CI {s['lc_ci_lo']:.2f}-{s['lc_ci_hi']:.2f})"
            lc = f"length-controlled {s['lc_win_rate']:.2f}{lc_ci}"
        return (
            f"{self.model} vs its parent {self.parent} on {s['prompts']} prompt(s) of {self.prompt_set!r}, "
            f"judged by {self.judge}@{self.judge_model}: win rate {rate}{ci}, {lc}; "
            f"{s['wins']} won, {s['losses']} lost, {s['ties']} tied, {s['inconsistent']} inconsistent, {s['failed']} failed verdict(s), "
            f"{s['run_errors']} run error(s)"
        )


def _mean_score(rows: Sequence[Mapping[str, Any]]) -> float:
    return sum(r["score"] for r in rows) / len(rows) if rows else math.nan


# -- the parent -------------------------------------------------------------------------------------------------
def find_parent(registry: ModelRegistry, model: str) -> str:
    """The registered model ``model`` was trained from: its ``parent`` in the registry (which owns lineage)."""
    parent = registry.get(model).parent  # unknown names: ModelNotFound, with the known names
    if not parent:
        raise InputError(
            f"model {model!r} has no parent: compare a model trained in the Train tab (or `studio train`), "
            "whose parent is recorded"
        )
    if parent not in registry.names():
        raise InputError(
            f"the parent of {model!r}, {parent!r}, is not a registered model; register it "
            f"(`studio models add {parent} --path ...`) to compare with it"
        )
    return parent


# -- the comparison ---------------------------------------------------------------------------------------------
def compare_with_parent(
    store: Store,
    registry: ModelRegistry,
    model: str,
    *,
    prompt_set: str,
    judge: str = "logprob",
    judge_model: str | None = None,
    judge_config: Mapping[str, Any] | None = None,
    strategy: str = "system1",
    limit: int | None = 50,
    params: StrategyParams | Mapping[str, Any] | None = None,
    parent: str | None = None,
    batch_size: int = 8,
    seed: int | None = None,
    progress: Progress | None = None,
) -> CompareResult:
    """Answer the prompts of ``prompt_set`` with ``model`` and its parent, store both runs and a blind comparison
    per prompt, judge each comparison with ``judge`` (on ``judge_model``, default the settings' default model),
    and return the child's win rate. ``parent`` overrides the recorded parent; ``seed`` fixes the positions."""
    started = time.perf_counter()
    report = progress or (lambda done, total, msg: None)
    # bad names and settings fail before any model loads
    judge_obj = make_judge(judge, dict(judge_config or {}))
    method = Method.parse(strategy, default="system1").resolve()  # unknown names fail before any model loads
    run_params = _params(params)
    if batch_size < 1:
        raise InputError(f"batch_size must be >= 1, not {batch_size}")
    parent = registry.get(parent).name if parent else find_parent(registry, model)
    prompts = _prompts(store, prompt_set, limit)

    def loading(fraction: float, msg: str) -> None:
        report(0, 0, msg)

    judge_backend = registry.backend(judge_model or registry.settings.default_model, progress=loading)
    judge_obj.bind(registry, judge_backend.model_name)  # a judge that needs another model loads it now
    judge_obj.check_backend(judge_backend)  # e.g. logprob on an endpoint without logprobs: say so now
    child_backend = registry.backend(model, progress=loading)
    parent_backend = registry.backend(parent, progress=loading)
    result = CompareResult(model, parent, prompt_set, judge_obj.name, judge_backend.model_name, method.label)
    result.items = [CompareItem(p["id"], p["text"]) for p in prompts]
    rng = random.Random(seed)
    tag = {"child": model, "parent": parent, "prompt_set": prompt_set, "started": time.time()}
    for start in range(0, len(result.items), batch_size):
        chunk = result.items[start : start + batch_size]
        pairs = _generate(
            chunk, (child_backend, parent_backend), method, run_params, report, start, len(prompts)
        )
        for item, runs in zip(chunk, pairs, strict=True):
            _store_pair(store, item, (model, parent), runs, tag, rng)
    _judge_all(store, judge_obj, judge_backend, result, batch_size, report)
    result.elapsed_s = time.perf_counter() - started
    return result


def _params(params: StrategyParams | Mapping[str, Any] | None) -> StrategyParams:
    if params is None:
        return StrategyParams()
    return params if isinstance(params, StrategyParams) else StrategyParams.from_dict(dict(params))


def _prompts(store: Store, prompt_set: str, limit: int | None) -> list[dict[str, Any]]:
    if not (prompt_set or "").strip():
        raise InputError("choose a prompt set to compare on")
    if limit is not None and limit < 1:
        raise InputError(f"limit must be >= 1 (or None for every prompt), not {limit}")
    rows = store.list_prompts(prompt_set, limit=limit)
    if not rows:
        known = ", ".join(store.prompt_sets()) or "none yet"
        raise InputError(f"prompt set {prompt_set!r} has no prompts; prompt sets: {known}")
    return rows


def _generate(
    chunk: Sequence[CompareItem],
    backends: tuple[Backend, Backend],
    method: Method,
    params: StrategyParams,
    report: Progress,
    offset: int,
    total: int,
) -> list[tuple[RunResult, RunResult]]:
    """Both models on every prompt of ``chunk``, driven together (each model's requests batched)."""
    jobs = [DriveJob(method.make(), item.prompt, backend, params) for item in chunk for backend in backends]
    results: dict[int, RunResult] = {}
    done = offset
    for ev in drive(jobs):
        if ev.kind == "run_finished" and ev.result is not None:
            results[ev.run] = ev.result
            if ev.run ^ 1 in results:  # both models have answered this prompt
                done += 1
                report(done, total, f"answered {done}/{total} prompt(s) with both models")
    return [(results[2 * i], results[2 * i + 1]) for i in range(len(chunk))]


def _store_pair(
    store: Store,
    item: CompareItem,
    models: tuple[str, str],
    runs: tuple[RunResult, RunResult],
    tag: dict[str, Any],
    rng: random.Random,
) -> None:
    """Store both runs and a blind comparison with the child's position drawn at random; a failed run skips it."""
    errors = [f"{m}: {r.error}" for m, r in zip(models, runs, strict=True) if r.error]
    if errors:
        item.error = "; ".join(errors)
        return
    ids = [
        save_run(store, item.prompt_id, r, model=m, extra={"compare": tag})
        for m, r in zip(models, runs, strict=True)
    ]
    item.child_run, item.parent_run = ids
    item.child_answer, item.parent_answer = runs[0].final_answer, runs[1].final_answer
    item.child_position = rng.randrange(2)
    shown = ids if item.child_position == 0 else ids[::-1]
    item.comparison_id = store.add_comparison(shown, blind=True)


# -- judging ----------------------------------------------------------------------------------------------------
def _judge_all(
    store: Store, judge: Judge, backend: Backend, result: CompareResult, batch_size: int, report: Progress
) -> None:
    todo = [i for i in result.items if i.comparison_id is not None]
    report(0, len(todo), f"judging {len(todo)} comparison(s) with {judge.name}")
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        if judge.mode == "pairwise":
            _judge_pairs(store, judge, backend, result, chunk)
        else:
            _judge_singles(store, judge, backend, result, chunk)
        done = start + len(chunk)
        report(done, len(todo), f"judged {done}/{len(todo)} comparison(s)")


def _shown(item: CompareItem, result: CompareResult) -> list[Candidate]:
    """The two answers in the comparison's screen order (A first)."""
    child = Candidate(item.child_answer, result.model, result.strategy, item.child_run)
    parent = Candidate(item.parent_answer, result.parent, result.strategy, item.parent_run)
    return [child, parent] if item.child_position == 0 else [parent, child]


def _judge_pairs(
    store: Store, judge: Judge, backend: Backend, result: CompareResult, chunk: Sequence[CompareItem]
) -> None:
    items = []
    for it in chunk:
        a, b = _shown(it, result)
        items.append(JudgeItem.pair(it.prompt, a, b, key=Target((a.run_id, b.run_id), it.comparison_id)))
    for it, judged, verdict in zip(chunk, items, judge.judge(items, backend), strict=True):
        it.verdict_ids.append(store_verdict(store, verdict, judged.key))
        result.self_judged += verdict.self_judge
        it.outcome = _from_child_side(verdict.winner, it.child_position) if verdict.ok else None
        if verdict.ok and verdict.prob_a is not None:
            it.prob_child = verdict.prob_a if it.child_position == 0 else 1 - verdict.prob_a


def _judge_singles(
    store: Store, judge: Judge, backend: Backend, result: CompareResult, chunk: Sequence[CompareItem]
) -> None:
    """A single-answer judge rates both answers; the higher rating wins (equal ratings tie)."""
    items = [
        JudgeItem.single(it.prompt, c, key=Target((c.run_id,), it.comparison_id))
        for it in chunk
        for c in _shown(it, result)
    ]
    verdicts = judge.judge(items, backend)
    for k, it in enumerate(chunk):
        pair: list[Verdict] = verdicts[2 * k : 2 * k + 2]
        for judged, verdict in zip(items[2 * k : 2 * k + 2], pair, strict=True):
            it.verdict_ids.append(store_verdict(store, verdict, judged.key))
            result.self_judged += verdict.self_judge
        a, b = (v.rating if v.ok else None for v in pair)
        it.outcome = _from_child_side(metrics.winner_from_ratings(a, b), it.child_position)


def _from_child_side(winner: str | None, child_position: int) -> str | None:
    """A/B (screen labels) as child/parent; ties and inconsistent verdicts stay as they are."""
    if winner in ("A", "B"):
        return CHILD if (winner == "A") == (child_position == 0) else PARENT
    return winner
