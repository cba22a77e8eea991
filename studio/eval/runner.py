"""Running an eval: every strategy x model over a dataset, batched, resumable, stored.

:func:`run_eval` plans one run per (item, method, model) under one set of params, drops the runs the results
file already holds (resume), and hands the rest to the strategy driver ``batch_size`` items at a time: the
independent steps of all those runs that share a model go to it as one batch (the first steps of every item
and method together, CoVe's verifications and BSM's solves across items). Each finished run is scored, stored
in the store (prompt set ``eval:<dataset>``, a run row with its trace, ``params.eval`` naming the eval, the
item and its scores) and appended to the results file. A judge, if asked for, then scores the runs it has not
scored under its config, in batches; single-answer verdicts are stored as verdicts too.

A run that fails because of its input (a prompt longer than the model's context) is recorded with its error
and scores as wrong. A run that fails for any other reason (a server down, a bug) is not recorded: it is
counted in ``failed``, and a rerun retries it.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.backends.base import Backend
from studio.errors import InputError
from studio.eval.data import EvalDataset, EvalItem
from studio.eval.metrics import judge_score, score_item
from studio.eval.report import Report, build_report
from studio.eval.results import ResultsFile, now, params_hash, parse_counts, run_key, safe_name
from studio.methods import Method
from studio.progress import Progress
from studio.runs import save_run
from studio.strategies import DriveJob, RunResult, StrategyParams, drive, resolve_params

if TYPE_CHECKING:
    from storage import Store
    from studio.judges import Judge
    from studio.models import ModelRegistry

ModelArg = str | Backend | None


@dataclass(frozen=True)
class EvalSpec:
    """What to run: methods x models under one set of params, and optionally a judge to score the answers.

    ``models``: registered names, loaded backends, or None for the default model. ``params``: a full
    :class:`StrategyParams` (used as is for every model), or a dict of the fields the user set, which each model's
    decoding defaults complete (:func:`~studio.strategies.resolve_params`). ``judge_config`` is the judge's
    settings (see ``studio judge --list``); ``judge_model`` defaults to the default model.
    """

    methods: tuple[Method, ...]
    models: tuple[ModelArg, ...] = (None,)
    params: StrategyParams | Mapping[str, Any] = field(default_factory=StrategyParams)
    judge: str | None = None
    judge_config: Mapping[str, Any] | None = None
    judge_model: ModelArg = None
    batch_size: int = 8  # items per driver call

    def __post_init__(self) -> None:
        if not self.methods:
            raise InputError("name at least one strategy")
        if not self.models:
            raise InputError("name at least one model")
        if self.batch_size < 1:
            raise InputError(f"batch_size must be >= 1, not {self.batch_size}")
        resolve_params(self.params, {})  # bad params fail before any model loads

    def params_for(self, backend: Backend) -> StrategyParams:
        """The run params on ``backend``: the given ones, completed by the model's decoding defaults."""
        return resolve_params(self.params, backend.decoding_defaults)


@dataclass
class EvalOutcome:
    name: str
    dir: Path
    dataset: EvalDataset
    params: dict[str, Any]
    total: int  # runs planned
    skipped: int  # already in the results file
    ran: int  # run now and recorded
    failed: int  # run now, failed, not recorded (a rerun retries them)
    errors: list[str] = field(default_factory=list)  # the first few failure messages
    judged: int = 0
    judge_failed: int = 0
    judge_hash: str | None = None
    rows: list[dict[str, Any]] = field(default_factory=list)  # this spec's run lines, judge scores merged
    elapsed_s: float = 0.0

    def report(self, *, metrics: Sequence[str] | None = None, n_boot: int = 1000, seed: int = 0) -> Report:
        return build_report(
            self.dataset, self.rows, metrics=metrics, n_boot=n_boot, seed=seed, params=self.params
        )

    def summary(self) -> str:
        line = (f"{self.name}: {self.total} runs planned, {self.skipped} already done, {self.ran} run now"
                f"{f', {self.failed} failed (rerun to retry)' if self.failed else ''} in {self.elapsed_s:.1f} s")  # fmt: skip
        if self.judge_hash:
            line += f"; judge scored {self.judged} ({self.judge_failed} failed verdicts)"
        return line


@dataclass(frozen=True)
class _Planned:
    item: EvalItem
    method: Method
    backend: Backend
    key: str


def eval_dir(store: Store, name: str) -> Path:
    return Path(store.data_dir) / "evals" / safe_name(name)


def run_eval(
    dataset: EvalDataset,
    spec: EvalSpec,
    store: Store,
    registry: ModelRegistry | None = None,
    *,
    name: str | None = None,
    progress: Progress | None = None,
) -> EvalOutcome:
    """Run ``spec`` over ``dataset``, skipping runs already recorded under eval ``name`` (default: the
    dataset's name); store every run; return the counts and this spec's result rows.

    ``progress(done, total, msg)`` is called before the first run, after each run and each judge batch.
    """
    started = time.perf_counter()
    report = progress or (lambda done, total, msg: None)
    judge = _make_judge(spec, dataset)  # bad settings and unknown models fail before any model loads
    for model in (*spec.models, *((spec.judge_model,) if judge else ())):
        _check_model(model, registry)
    backends = list(dict.fromkeys(_backend(m, registry, report) for m in spec.models))
    eval_name = safe_name(name or dataset.name)
    results = ResultsFile(eval_dir(store, eval_name))
    resolved = {id(b): spec.params_for(b) for b in backends}
    params = resolved[id(backends[0])].to_dict()  # the report's caption: the first model's params
    planned = _plan(
        dataset, spec.methods, backends, {k: params_hash(v.to_dict()) for k, v in resolved.items()}
    )
    done = results.read().runs
    todo = [p for p in planned if p.key not in done]
    out = EvalOutcome(eval_name, results.dir, dataset, params, len(planned), len(planned) - len(todo), 0, 0)
    report(0, len(todo), f"{len(todo)} runs to do, {out.skipped} already done")
    prompt_ids = _prompt_ids(store, dataset)
    per_call = spec.batch_size * len(spec.methods) * len(backends)
    for start in range(0, len(todo), per_call):
        _run_chunk(
            todo[start : start + per_call], resolved, store, results, prompt_ids, out, report, len(todo)
        )
    if judge is not None:
        _judge_runs(
            judge,
            _backend(spec.judge_model, registry, report),
            store,
            results,
            planned,
            dataset,
            spec,
            out,
            report,
        )
    contents = results.read()
    keys = {p.key for p in planned}
    out.rows = [r for r in contents.with_judge(out.judge_hash) if r["key"] in keys]
    out.elapsed_s = time.perf_counter() - started
    return out


# -- planning -----------------------------------------------------------------------------------------------------
def _check_model(model: ModelArg, registry: ModelRegistry | None) -> None:
    if isinstance(model, Backend):
        return
    if registry is None:
        raise InputError("a model registry is needed to load models by name")
    registry.get(model or registry.settings.default_model)  # ModelNotFound names the known models


def _backend(model: ModelArg, registry: ModelRegistry | None, report: Progress | None = None) -> Backend:
    if isinstance(model, Backend):
        return model
    _check_model(model, registry)
    assert registry is not None  # _check_model says so otherwise
    loading = (lambda frac, msg: report(0, 0, msg)) if report else None
    return registry.backend(model, progress=loading)


def _plan(
    dataset: EvalDataset, methods: Sequence[Method], backends: Sequence[Backend], phash: Mapping[int, str]
) -> list[_Planned]:
    """Item-major order, so that a chunk holds whole items with every method and model. ``phash``: each
    backend's (by ``id``) params hash."""
    return [
        _Planned(
            item, m, b, run_key(item.id, item.question, m.strategy, m.variant, b.model_name, phash[id(b)])
        )
        for item in dataset.items
        for b in backends
        for m in methods
    ]


def _prompt_ids(store: Store, dataset: EvalDataset) -> dict[str, int]:
    texts = list(dict.fromkeys(i.question for i in dataset.items))
    return dict(zip(texts, store.add_prompts(texts, dataset.prompt_set), strict=True))


# -- running ------------------------------------------------------------------------------------------------------
def _run_chunk(
    chunk: Sequence[_Planned],
    params: Mapping[int, StrategyParams],
    store: Store,
    results: ResultsFile,
    prompt_ids: Mapping[str, int],
    out: EvalOutcome,
    report: Progress,
    total: int,
) -> None:
    jobs = [DriveJob(p.method.make(), p.item.question, p.backend, params[id(p.backend)]) for p in chunk]
    for ev in drive(jobs):
        if ev.kind != "run_finished" or ev.result is None:
            continue
        p = chunk[ev.run]
        if _recordable(ev.result):
            _record(
                p,
                ev.result,
                params[id(p.backend)].to_dict(),
                store,
                results,
                prompt_ids[p.item.question],
                out,
            )
            out.ran += 1
        else:
            out.failed += 1
            if len(out.errors) < 5:
                out.errors.append(
                    f"{p.method.label} @ {p.backend.model_name} on {p.item.id}: {ev.result.error}"
                )
        done = out.ran + out.failed
        report(done, total, f"{p.method.label} @ {p.backend.model_name}: {p.item.id}")


def _recordable(result: RunResult) -> bool:
    """Finished, or failed because of its input (which a rerun would not change)."""
    return result.exception is None or isinstance(result.exception, InputError)


def _record(
    p: _Planned,
    result: RunResult,
    params: dict[str, Any],
    store: Store,
    results: ResultsFile,
    prompt_id: int,
    out: EvalOutcome,
) -> None:
    scores = score_item(p.item, result.final_answer)
    totals = result.totals
    info = {"name": out.name, "dataset": out.dataset.name, "item": p.item.id, "condition": p.item.condition,
            "key": p.key, "scores": scores}  # fmt: skip
    # an input-failed run is kept as an answer (scored wrong, rated by the judge): its error stays in the results
    run_id = save_run(store, prompt_id, result, extra={"eval": info}, keep_error=False)
    results.append({
        "kind": "run", "key": p.key, "item": p.item.id, "condition": p.item.condition, "base": p.item.base,
        "strategy": p.method.strategy, "variant": p.method.variant, "method": p.method.label,
        "model": p.backend.model_name, "params": params, "params_hash": params_hash(params),
        "run_id": run_id, "prompt_id": prompt_id, "answer": result.final_answer, "scores": scores,
        "error": result.error, "tokens_in": totals.prompt_tokens, "tokens_out": totals.completion_tokens,
        "latency_s": round(totals.latency_s, 3), "parse": parse_counts(result.trace.steps), "at": now(),
    })  # fmt: skip


# -- judging ------------------------------------------------------------------------------------------------------
def _make_judge(spec: EvalSpec, dataset: EvalDataset) -> Judge | None:
    if not spec.judge:
        return None
    from studio.judges import make_judge

    judge = make_judge(spec.judge, dict(spec.judge_config or {}))
    if judge.mode == "pairwise":
        missing = [i.id for i in dataset.items if i.reference is None]
        if missing:
            raise InputError(
                f"judge {judge.name!r} compares two answers, so eval items need a reference answer to compare "
                f"with; {len(missing)} item(s) have none (e.g. {missing[0]}): use a single-answer judge (additive)"
            )
    return judge


def _judge_runs(
    judge: Judge,
    backend: Backend,
    store: Store,
    results: ResultsFile,
    planned: Sequence[_Planned],
    dataset: EvalDataset,
    spec: EvalSpec,
    out: EvalOutcome,
    report: Progress,
) -> None:
    judge.check_backend(backend)
    out.judge_hash = judge.config_hash(backend.model_name)
    contents = results.read()
    keys = [p.key for p in planned if p.key in contents.runs]
    todo = [contents.runs[k] for k in keys if (k, out.judge_hash) not in contents.judged]
    items = {i.id: i for i in dataset.items}
    report(0, len(todo), f"judge {judge.name}: {len(todo)} answers to score")
    for start in range(0, len(todo), spec.batch_size):
        batch = todo[start : start + spec.batch_size]
        verdicts = judge.judge([_judge_item(items[r["item"]], r, judge.mode) for r in batch], backend)
        for row, verdict in zip(batch, verdicts, strict=True):
            _record_verdict(judge, verdict, row, store, results, out)
        report(
            out.judged, len(todo), f"judge {judge.name}: {out.judged}/{len(todo)} ({out.judge_failed} failed)"
        )


def _judge_item(item: EvalItem, row: Mapping[str, Any], mode: str) -> Any:
    from studio.judges import Candidate, JudgeItem

    answer = Candidate(row["answer"], row["model"], row["method"], row["run_id"])
    if mode == "single":
        return JudgeItem.single(item.question, answer, key=row["key"])
    return JudgeItem.pair(item.question, answer, Candidate(item.reference or "", "reference"), key=row["key"])


def _record_verdict(judge: Judge, verdict: Any, row: Mapping[str, Any], store: Store, results: ResultsFile,
                    out: EvalOutcome) -> None:  # fmt: skip
    from studio.judging import Target, store_verdict

    # a pairwise verdict against the reference has no second run to point at: it stays in the results file
    verdict_id = store_verdict(store, verdict, Target((row["run_id"],))) if judge.mode == "single" else None
    results.append({
        "kind": "judge", "key": row["key"], "judge": judge.name, "judge_model": verdict.judge_model,
        "config_hash": out.judge_hash, "score": judge_score(verdict, judge.mode == "pairwise"), "ok": verdict.ok,
        "verdict_id": verdict_id, "error": verdict.error or None, "at": now(),
    })  # fmt: skip
    out.judged += 1
    out.judge_failed += not verdict.ok
