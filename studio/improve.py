"""The improve loop: a model trains itself on a verifiable task, one job per iteration, each model scored on the
task's held-out test split.

``improve(ctx, "arithmetic", "irpo", 2)`` scores M0 (the given model, default the default model) on the task's
TEST split, then per iteration t starts the method's training job from M_t (``base_model`` = M_t, ``task``, the
user's per-iteration settings) through the studio's job runner, waits for it, takes the model it registered
(M_{t+1}, whose parent in the registry's lineage is M_t) and scores it the same way. It stops early when an
iteration does not improve the accuracy (``stop_early``). Trainers read only the TRAIN split; the scores here
read only the TEST split.

A score runs the eval harness (:func:`studio.eval.run_eval`: batched through the strategy driver, stored,
resumable) with greedy decoding, asking each question as the method trains the model to answer it
(:data:`EVAL_STRATEGY`: IRPO samples and rewards through the studio's CoT strategy prompt and its final-answer
split, so its models are scored with the ``cot`` strategy; GRPO and the distilled System 1 answer the task's
prompt as asked: ``system1``), with the answer budget the method trains with (:data:`EVAL_TOKENS`).
A trainer may word the question and split the answer by its config (:data:`EVAL_PROMPT`, :data:`EVAL_ANSWER`:
Self-Rewarding with ``tpo`` asks inside the thought prompt its model was trained with and scores the response).
``eval_strategy`` overrides the strategy (``cot``, ``sc``...) and drops that wording. Accuracy is the mean of
``task.reward(item, answer)`` (the same function the trainers reward with) with a percentile bootstrap CI
(:func:`studio.metrics.bootstrap.estimate`); tokens per answer is the mean completion tokens.

State: ``<data dir>/improve/<id>/state.json`` (one owner: this module), rewritten after every step: the task,
method, settings, the job in flight and each finished iteration (model, job id, accuracy, lo, hi, tokens, wall
times). A crash or cancel leaves the finished iterations registered and recorded; calling :func:`improve`
again with the same arguments (or :func:`resume` with the id) continues at the next iteration: a job still
running is waited for, a job that finished is taken as it is, a failed or cancelled one is resumed through the
runner (from its checkpoint), and the eval of a model picks up at the answers not yet recorded.

A method that learns from a strategy (its trainer class's ``teacher_field``: System-2 distillation's
``strategy``) gets a reference row, scored once per run on the same test items: M0 asked through that strategy
(``ImproveResult.references``), so System 1, System 2 and the distilled models compare in accuracy and tokens.

For a UI: :func:`start` / :func:`start_resume` run the loop in a daemon thread (one per studio) and return the
run id; :func:`active` gives its latest progress line and its error as text; :func:`stop` cancels the job in
flight through the runner and interrupts the scoring (the run ends "cancelled", its finished iterations kept).
:func:`list_runs` / :func:`load` read the state at any time (the table and the plot: ``ImproveResult.rows()``);
the job in flight is ``ImproveResult.pending["job_id"]`` (its live curves: ``ctx.runner.curves(job_id)``).
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.errors import InputError, StudioError
from studio.progress import Progress
from studio.training.rundir import now_iso, read_json, write_json

if TYPE_CHECKING:
    from studio.context import AppContext
    from studio.eval.tasks import Task

#: the harness strategy whose wording and answer split a method trains with; the held-out score uses it. A trainer
#: class may name its own with an ``eval_strategy`` attribute. Others: ``system1`` (the task's prompt as asked).
EVAL_STRATEGY = {"irpo": "cot"}
#: a method that words the question its own way: ``module:function(task, item) -> str`` (asked through the
#: strategy); a trainer class may name it by its config (classmethod ``eval_prompt_for(config) -> str``, first) or
#: with an ``eval_prompt`` attribute. Others: ``task.prompt``.
EVAL_PROMPT: dict[str, str] = {}
#: the part of an answer the task reward scores: ``module:function(answer) -> str``; a trainer class may name it
#: with ``eval_answer_for(config)`` or an ``eval_answer`` attribute. Others: the whole (strategy's final) answer.
EVAL_ANSWER: dict[str, str] = {}
#: the method's setting that caps its training answers; the held-out answers get the same budget. A trainer class
#: may name it with an ``eval_tokens`` attribute (a config field name).
EVAL_TOKENS = {"irpo": "max_new_tokens", "grpo": "max_completion_length"}
DEFAULT_EVAL_MAX_NEW_TOKENS = 64
SUBDIR = "improve"
STATE = "state.json"
#: the settings that make a run: rerunning with the same ones continues it (iterations may grow)
KEY_FIELDS = (
    "task",
    "method",
    "model",
    "values",
    "eval_limit",
    "eval_strategy",
    "eval_prompt",
    "eval_answer",
    "eval_params",
)
log = logging.getLogger(__name__)


class Stopped(StudioError):
    """The user stopped the run (its job cancelled, or its scoring interrupted): the run is "cancelled"."""


@dataclass(frozen=True)
class Score:
    """A model's held-out score: accuracy (mean task reward) with its bootstrap CI, tokens per answer."""

    accuracy: float
    lo: float
    hi: float
    n: int
    tokens: float
    eval_s: float
    eval_name: str
    engine: str = ""  # the engine that answered (studio.models.engine): every row of a run is on one


@dataclass
class Iteration:
    """One row of the table: M_t (t = 0 is the starting model) and how it was made and scored."""

    iteration: int
    model: str
    parent: str  # M_{t-1}; "" for M0
    job_id: int | None  # the training job that made it; None for M0
    accuracy: float
    lo: float
    hi: float
    n: int
    tokens: float
    train_s: float  # the job's wall time (queued to finished, as this loop saw it)
    eval_s: float
    wall_s: float  # train + eval
    improved: bool | None  # accuracy above the previous row's; None for M0
    eval_name: str = ""
    engine: str = ""  # "transformers": trained adapters run there, so M0 is scored there too ("": older runs)

    def to_dict(self) -> dict[str, Any]:
        return {k: _finite(v) for k, v in asdict(self).items()}


@dataclass
class ImproveResult:
    id: int
    dir: Path
    task: str
    method: str
    model: str  # M0
    iterations_wanted: int
    status: str  # "running", "done", "stopped_early", "failed"
    settings: dict[str, Any] = field(default_factory=dict)
    iterations: list[Iteration] = field(default_factory=list)
    pending: dict[str, Any] | None = None  # the job in flight: {"iteration", "job_id", "started"}
    #: reference rows scored once per run beside the iterations, e.g. M0 through the System-2 strategy a
    #: distillation learns from: {"label", "model", "strategy", "accuracy", "lo", "hi", "n", "tokens", ...}
    references: list[dict[str, Any]] = field(default_factory=list)
    error: str = ""
    created_at: str = ""
    updated_at: str = ""

    @property
    def next_iteration(self) -> int:
        """The iteration to train next (1-based); len(iterations) once M0 is scored."""
        return len(self.iterations)

    @property
    def finished(self) -> bool:
        return self.status in ("done", "stopped_early")

    def rows(self) -> list[dict[str, Any]]:
        return [it.to_dict() for it in self.iterations]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id, "dir": str(self.dir), "task": self.task, "method": self.method, "model": self.model,
            "iterations_wanted": self.iterations_wanted, "status": self.status, "settings": self.settings,
            "iterations": self.rows(), "pending": self.pending, "references": self.references, "error": self.error,
            "created_at": self.created_at, "updated_at": self.updated_at,
        }  # fmt: skip

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any], path: Path) -> ImproveResult:
        return cls(
            id=int(doc["id"]), dir=path, task=doc["task"], method=doc["method"], model=doc["model"],
            iterations_wanted=int(doc["iterations_wanted"]), status=doc.get("status", "running"),
            settings=dict(doc.get("settings") or {}),
            iterations=[Iteration(**{k: _nan(v) for k, v in it.items()}) for it in doc.get("iterations", [])],
            pending=doc.get("pending"), references=list(doc.get("references") or []), error=doc.get("error", ""), created_at=doc.get("created_at", ""),
            updated_at=doc.get("updated_at", ""),
        )  # fmt: skip

    def save(self) -> None:
        self.updated_at = now_iso()
        self.dir.mkdir(parents=True, exist_ok=True)
        write_json(self.dir / STATE, self.to_dict())


# -- runs on disk ---------------------------------------------------------------------------------------------
def runs_dir(ctx: AppContext) -> Path:
    return Path(ctx.settings.data_dir) / SUBDIR


def list_runs(ctx: AppContext) -> list[ImproveResult]:
    """Every improve run under the data dir, newest first."""
    base = runs_dir(ctx)
    found = []
    for path in base.iterdir() if base.is_dir() else ():
        doc = read_json(path / STATE)
        if path.name.isdigit() and doc:
            found.append(ImproveResult.from_dict(doc, path))
    return sorted(found, key=lambda r: r.id, reverse=True)


def load(ctx: AppContext, run_id: int | str) -> ImproveResult:
    path = runs_dir(ctx) / str(run_id).strip()
    doc = read_json(path / STATE) if str(run_id).strip().isdigit() else None
    if not doc:
        known = ", ".join(str(r.id) for r in list_runs(ctx)) or "none yet"
        raise InputError(f"no improve run {run_id!r} in {runs_dir(ctx)}; runs: {known}")
    return ImproveResult.from_dict(doc, path)


# -- the loop -------------------------------------------------------------------------------------------------
def improve(
    ctx: AppContext,
    task: str,
    method: str,
    iterations: int,
    *,
    progress: Progress | None = None,
    **options: Any,
) -> ImproveResult:
    """Score M0 on ``task``'s test split, then train and score ``iterations`` times with ``method``.

    ``options`` are :func:`prepare`'s: ``model`` (M0, default the default model), ``values`` (the method's
    settings for every iteration: ``--set`` values; ``task`` and ``base_model`` are set here), ``eval_limit``
    (score on the first N test items only), ``stop_early``, ``eval_strategy`` (ask the task's prompt through this
    strategy; default: the method's own, :data:`EVAL_STRATEGY`), ``eval_params`` (decoding settings of the scores;
    default greedy, the method's answer budget), ``new`` (a run with the same settings that already exists is
    continued unless ``new=True``). Bad input raises :class:`InputError` before anything runs."""
    return _loop(ctx, prepare(ctx, task, method, iterations, **options), progress)


def prepare(
    ctx: AppContext,
    task: str,
    method: str,
    iterations: int,
    *,
    model: str | None = None,
    values: Mapping[str, Any] | None = None,
    eval_limit: int | None = None,
    stop_early: bool = True,
    eval_strategy: str | None = None,
    eval_params: Mapping[str, Any] | None = None,
    new: bool = False,
) -> ImproveResult:
    """:func:`improve`'s checks and its run (new, or the existing one with these settings), saved; runs nothing."""
    if int(iterations) < 1:
        raise InputError(f"iterations must be >= 1, not {iterations}")
    if eval_limit is not None and int(eval_limit) < 1:
        raise InputError(f"eval_limit must be >= 1, not {eval_limit}")
    the_task, m0 = _check(ctx, task, method, model, values)
    strategy = eval_strategy or _own(method, "eval_strategy", EVAL_STRATEGY) or "system1"
    prompt = "" if eval_strategy else _wording(ctx, method, values, "eval_prompt", EVAL_PROMPT)
    answer = "" if eval_strategy else _wording(ctx, method, values, "eval_answer", EVAL_ANSWER)
    params = _eval_params(ctx, method, values, strategy, eval_params)
    settings = {
        "task": the_task.name, "method": method, "model": m0, "values": dict(values or {}),
        "eval_limit": None if eval_limit is None else int(eval_limit), "eval_strategy": strategy,
        "eval_prompt": prompt, "eval_params": params, "stop_early": bool(stop_early),
        "reference": _reference(ctx, method, values, dict(eval_params or {})),
    }  # fmt: skip
    if answer:  # only when set: runs saved before the answer split existed still match
        settings["eval_answer"] = answer
    run = None if new else _matching(ctx, settings)
    if run is None:
        run = ImproveResult(
            _next_id(ctx), Path(), the_task.name, method, m0, int(iterations), "running", settings,
            created_at=now_iso(),
        )  # fmt: skip
        run.dir = runs_dir(ctx) / str(run.id)
    else:
        run.iterations_wanted = max(run.iterations_wanted, int(iterations))
        run.settings["stop_early"] = bool(stop_early)
    run.save()
    return run


def resume(ctx: AppContext, run_id: int | str, *, progress: Progress | None = None) -> ImproveResult:
    """Continue run ``run_id`` at its next iteration (nothing finished is redone)."""
    return _loop(ctx, _reload(ctx, run_id), progress)


def _reload(ctx: AppContext, run_id: int | str) -> ImproveResult:
    run = load(ctx, run_id)
    s = run.settings
    _check(ctx, s["task"], s["method"], s["model"], s["values"])
    return run


def _loop(ctx: AppContext, run: ImproveResult, progress: Progress | None) -> ImproveResult:
    report = progress or (lambda done, total, msg: None)
    task = _task(run.task)
    if run.finished and run.next_iteration > run.iterations_wanted:
        return run
    if run.status == "stopped_early" and run.settings.get("stop_early", True):
        report(0, 0, f"improve {run.id}: stopped early at iteration {run.next_iteration - 1}; nothing to do")
        return run
    run.status, run.error = "running", ""
    run.save()
    try:
        if not run.iterations:
            report(0, 0, f"improve {run.id}: scoring M0 = {run.model} on {task.name}'s test split")
            score = score_model(ctx, task, run.model, **_score_args(run), name=f"improve-{run.id}-m0",
                                progress=report)  # fmt: skip
            run.iterations.append(_row(0, run.model, "", None, score, 0.0, None))
            run.save()
        _score_reference(ctx, run, task, report)
        while run.next_iteration <= run.iterations_wanted:
            t = run.next_iteration
            parent = run.iterations[-1]
            job, train_s = _train(ctx, run, t, parent.model, report)
            child = _trained_model(ctx, job, parent.model)
            report(0, 0, f"improve {run.id}: iteration {t}: scoring {child} on {task.name}'s test split")
            score = score_model(ctx, task, child, **_score_args(run), name=f"improve-{run.id}-m{t}",
                                progress=report)  # fmt: skip
            improved = score.accuracy > parent.accuracy
            run.iterations.append(_row(t, child, parent.model, job.id, score, train_s, improved))
            run.pending = None
            run.save()
            report(t, run.iterations_wanted, f"improve {run.id}: M{t} {child}: accuracy "
                   f"{score.accuracy:.3f} [{score.lo:.3f}, {score.hi:.3f}] (M{t - 1}: {parent.accuracy:.3f})")  # fmt: skip
            if not improved and run.settings.get("stop_early", True):
                run.status = "stopped_early"
                run.save()
                return run
        run.status = "done"
        run.save()
        return run
    except BaseException as e:  # recorded, then raised: the finished iterations stay in the state file
        run.status = "cancelled" if isinstance(e, Stopped) else "failed"
        run.error = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e)
        run.save()
        raise


def _train(ctx: AppContext, run: ImproveResult, t: int, base: str, report: Progress) -> tuple[Any, float]:
    """Start (or pick up) iteration ``t``'s job from ``base``; wait for it; (job, train seconds)."""
    runner = ctx.runner
    pending = run.pending if run.pending and run.pending.get("iteration") == t else None
    job = None
    if pending is not None:
        job = runner.sync(int(pending["job_id"]))
        if job.state in ("failed", "cancelled"):
            report(0, 0, f"improve {run.id}: iteration {t}: job {job.id} was {job.state}; resuming it")
            job = runner.resume(job.id)
    if job is None:
        values = {**run.settings["values"], "task": run.task, "base_model": base}
        if "start_iteration" in _fields(run.method):  # the trainer names its model <output_name>-m<number>
            values["start_iteration"] = t - 1
            values.setdefault("output_name", f"{run.method}-improve{run.id}")
        values.setdefault("output_name", ctx.registry.unique_name(f"{run.method}-improve{run.id}-m{t}"))
        job = runner.start(run.method, values)
        pending = {"iteration": t, "job_id": job.id, "started": time.time()}
        run.pending = pending
        run.save()
        report(0, 0, f"improve {run.id}: iteration {t}: training job {job.id} ({run.method} from {base})")
    last = None
    while not job.done:
        job = runner.wait(job.id, timeout=5.0)
        if (job.state, job.step) != last:
            last = (job.state, job.step)
            report(job.step, job.max_steps, f"improve {run.id}: iteration {t}: job {job.id} {job.state} "
                   f"step {job.step}/{job.max_steps or '?'}")  # fmt: skip
    if job.state == "cancelled":
        raise Stopped(
            f"improve {run.id}: iteration {t}: training job {job.id} was cancelled (Resume continues it; "
            "finished iterations are kept)"
        )
    if job.state != "succeeded":
        raise StudioError(
            f"improve {run.id}: iteration {t}: training job {job.id} {job.state}"
            f"{': ' + job.error if job.error else ''} (fix it, then rerun: finished iterations are kept)"
        )
    return job, round(time.time() - float(pending["started"]), 2)


def _trained_model(ctx: AppContext, job: Any, parent: str) -> str:
    """The chat model the job registered (the last one, for a job that runs several inner iterations)."""
    chat = set(ctx.registry.names())
    names = [n for n in job.models if n in chat]
    if not names:
        raise StudioError(
            f"training job {job.id} succeeded but registered no chat model (trained from {parent})"
        )
    return names[-1]


def _row(t: int, model: str, parent: str, job_id: int | None, score: Score, train_s: float,
         improved: bool | None) -> Iteration:  # fmt: skip
    return Iteration(
        t, model, parent, job_id, score.accuracy, score.lo, score.hi, score.n, score.tokens, round(train_s, 2),
        round(score.eval_s, 2), round(train_s + score.eval_s, 2), improved, score.eval_name, score.engine,
    )  # fmt: skip


# -- scoring --------------------------------------------------------------------------------------------------
def score_model(
    ctx: AppContext,
    task: Task,
    model: str,
    *,
    limit: int | None = None,
    strategy: str = "system1",
    prompt: str = "",
    answer: str = "",
    params: Mapping[str, Any] | None = None,
    name: str | None = None,
    progress: Progress | None = None,
    n_boot: int = 1000,
) -> Score:
    """``model`` on ``task``'s test split (first ``limit`` items) through the eval harness: mean task reward
    with a bootstrap CI, mean completion tokens. ``prompt``: ``module:function(task, item)`` that words each
    question (default ``task.prompt``); ``answer``: ``module:function(answer)``, the part the reward scores
    (default all of it). Resumable under ``name`` (answers already recorded are kept)."""
    from studio.eval import EvalSpec, parse_methods, run_eval
    from studio.metrics.bootstrap import estimate
    from studio.models import engine

    started = time.monotonic()
    test = task.load("test")
    items = test.items[:limit] if limit else test.items
    ask = _load_ref(prompt, "question wording") if prompt else (lambda t, item: t.prompt(item))
    part = _load_ref(answer, "answer split") if answer else (lambda text: text)
    asked = replace(test, items=tuple(replace(i, question=ask(task, i)) for i in items))
    spec = EvalSpec(parse_methods(strategy), (model,), dict(params or {}))
    outcome = run_eval(asked, spec, ctx.store, ctx.registry, name=name, progress=progress)
    if outcome.failed:
        raise StudioError(
            f"scoring {model} on {task.name}: {outcome.failed} answers failed ({'; '.join(outcome.errors[:2])}); "
            "rerun to retry them"
        )
    by_id = {i.id: i for i in asked.items}
    rows = [{"reward": task.reward(by_id[r["item"]], part(r.get("answer") or "")),
             "tokens": float(r.get("tokens_out") or 0)} for r in outcome.rows]  # fmt: skip
    est = estimate(rows, lambda rs: sum(r["reward"] for r in rs) / len(rs), n_boot=n_boot)
    tokens = sum(r["tokens"] for r in rows) / len(rows) if rows else math.nan
    ctx.registry.unload(model)  # the next job trains in its own process: free this one's memory
    return Score(est.value, est.lo, est.hi, est.n, round(tokens, 2), time.monotonic() - started, outcome.name,
                 engine(ctx.registry.get(model)))  # fmt: skip


def _score_args(run: ImproveResult) -> dict[str, Any]:
    s = run.settings
    return {
        "limit": s.get("eval_limit"), "strategy": s["eval_strategy"], "prompt": s.get("eval_prompt", ""),
        "answer": s.get("eval_answer", ""), "params": s["eval_params"],
    }  # fmt: skip


def _reference(
    ctx: AppContext, method: str, values: Mapping[str, Any] | None, given: Mapping[str, Any]
) -> dict[str, Any] | None:
    """What a method that learns from a strategy is compared with: M0 asked through that strategy. The trainer
    class names the config field holding it with ``teacher_field`` (System-2 distillation: ``strategy``, with
    its ``variant``); the answers get that method's ``max_new_tokens`` (tokens per step of the strategy),
    greedy, under the user's ``given`` eval settings. None for other methods."""
    from studio.methods import Method
    from studio.strategies import resolve_params
    from studio.training.runner import trainer_class

    teacher = getattr(trainer_class(method), "teacher_field", None)
    if not teacher:
        return None
    cfg = ctx.runner.config(method, dict(values or {}))
    variant = str(getattr(cfg, "variant", "") or "")
    strategy = str(getattr(cfg, teacher)) + (f":{variant}" if variant else "")
    Method.parse(strategy).resolve()
    tokens = int(getattr(cfg, "max_new_tokens", 0) or 0) or DEFAULT_EVAL_MAX_NEW_TOKENS
    params = {"temperature": 0.0, "max_new_tokens": tokens, **dict(given)}
    resolve_params(params, {})
    return {"label": f"System 2 ({strategy}) on M0", "strategy": strategy, "params": params}


def _score_reference(ctx: AppContext, run: ImproveResult, task: Task, report: Progress) -> None:
    """Score the run's reference row once (kept in the state: a resumed run does not score it again)."""
    ref = run.settings.get("reference")
    if not ref or any(r.get("label") == ref["label"] for r in run.references):
        return
    report(0, 0, f"improve {run.id}: scoring {ref['label']} on {task.name}'s test split")
    score = score_model(
        ctx, task, run.model, limit=run.settings.get("eval_limit"), strategy=ref["strategy"],
        prompt=run.settings.get("eval_prompt", ""), answer=run.settings.get("eval_answer", ""),
        params=ref["params"],
        name=f"improve-{run.id}-m0-{ref['strategy'].replace(':', '-')}", progress=report,
    )  # fmt: skip
    run.references.append({
        "label": ref["label"], "model": run.model, "strategy": ref["strategy"], "accuracy": score.accuracy,
        "lo": _finite(score.lo), "hi": _finite(score.hi), "n": score.n, "tokens": score.tokens,
        "eval_s": round(score.eval_s, 2), "eval_name": score.eval_name, "engine": score.engine,
    })  # fmt: skip
    run.save()


def _own(method: str, attr: str, table: Mapping[str, str]) -> str:
    """The trainer class's own ``attr`` (a string), else ``table``'s entry for ``method``, else ""."""
    from studio.training.runner import trainer_class

    own = getattr(trainer_class(method), attr, None)
    return own if isinstance(own, str) and own else table.get(method, "")


def _wording(
    ctx: AppContext, method: str, values: Mapping[str, Any] | None, attr: str, table: Mapping[str, str]
) -> str:
    """The trainer class's ``<attr>_for(config)`` for the run's settings when it gives one, else :func:`_own`."""
    from studio.training.runner import trainer_class

    for_config = getattr(trainer_class(method), f"{attr}_for", None)
    ref = for_config(ctx.runner.config(method, dict(values or {}))) if for_config else ""
    if ref:
        _load_ref(ref, attr.replace("_", " "))  # a bad reference fails before anything runs
    return ref or _own(method, attr, table)


def _load_ref(ref: str, what: str) -> Any:
    import importlib

    module, _, name = ref.partition(":")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError) as e:
        raise InputError(f"no {what} {ref!r} ({e})") from None


def _eval_params(
    ctx: AppContext,
    method: str,
    values: Mapping[str, Any] | None,
    strategy: str,
    given: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Greedy, with the method's answer budget (its training setting), under the user's ``given`` settings."""
    from studio.methods import Method
    from studio.strategies import resolve_params

    Method.parse(strategy).resolve()  # an unknown strategy fails here
    field_name = _own(method, "eval_tokens", EVAL_TOKENS)
    cfg = ctx.runner.config(method, dict(values or {})) if field_name else None
    tokens = (int(getattr(cfg, field_name, 0) or 0) if field_name else 0) or DEFAULT_EVAL_MAX_NEW_TOKENS
    params = {"temperature": 0.0, "max_new_tokens": tokens, **dict(given or {})}
    resolve_params(params, {})  # bad settings fail before anything runs
    return params


# -- checks ---------------------------------------------------------------------------------------------------
def _task(name: str) -> Task:
    from studio.eval.tasks import get_task

    return get_task(name)


def _check(
    ctx: AppContext, task: str, method: str, model: str | None, values: Mapping[str, Any] | None
) -> tuple[Task, str]:
    """The task, and M0's registered name; every bad input is an InputError before anything runs."""
    the_task = _task(task)
    if not {"task", "base_model"} <= _fields(method):
        raise InputError(
            f"method {method!r} does not train on a task (its settings have no 'task'); methods that do: "
            + (", ".join(task_methods()) or "none registered")
        )
    given = dict(values or {})
    for key in ("task", "base_model", "start_iteration"):
        if key in given:
            raise InputError(f"--set {key}=... is the improve loop's to set (use --task / --model)")
    # one engine for every row: trained adapters run on transformers, so a llama.cpp-served M0 is trained from
    # and scored on its transformers twin (a GGUF without one: InputError)
    m0 = ctx.registry.transformers_twin(ctx.registry.get(model or ctx.settings.default_model).name)
    ctx.runner.config(method, {**given, "task": the_task.name, "base_model": m0})  # bad settings fail here
    the_task.load("test")  # a task whose data is missing fails here
    return the_task, m0


def _fields(method: str) -> set[str]:
    """The names of ``method``'s settings (an unknown method is an InputError naming the methods)."""
    from studio.training.runner import trainer_class

    return {f.name for f in trainer_class(method).Config.fields_info()}


def task_methods() -> list[str]:
    """The training methods whose settings take a task and a base model: the ones the loop can run."""
    from studio.training.base import TRAINERS

    return [n for n in TRAINERS.names() if {"task", "base_model"} <= _fields(n)]


def _matching(ctx: AppContext, settings: Mapping[str, Any]) -> ImproveResult | None:
    for run in list_runs(ctx):
        if all(run.settings.get(k) == settings.get(k) for k in KEY_FIELDS):
            return run
    return None


def _next_id(ctx: AppContext) -> int:
    base = runs_dir(ctx)
    base.mkdir(parents=True, exist_ok=True)
    n = max((int(p.name) for p in base.iterdir() if p.name.isdigit()), default=0) + 1
    while True:
        try:
            (base / str(n)).mkdir()
            return n
        except FileExistsError:
            n += 1


def _finite(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def _nan(v: Any) -> Any:
    return math.nan if v is None else v


def table(run: ImproveResult) -> str:
    """The per-iteration table as text: iteration, model, accuracy [lo, hi], tokens/answer, wall s; then the
    reference rows (``ref``), e.g. M0 through the System-2 strategy a distillation learns from."""
    head = f"{'iter':>4}  {'model':<32} {'accuracy [95% CI]':<24} {'n':>4} {'tokens':>7} {'wall s':>8}"
    lines = [head, "-" * len(head)]
    for it in run.iterations:
        ci = f"{it.accuracy:.3f} [{_fmt(it.lo)}, {_fmt(it.hi)}]"
        lines.append(
            f"{it.iteration:>4}  {it.model:<32} {ci:<24} {it.n:>4} {it.tokens:>7.1f} {it.wall_s:>8.1f}"
        )
    for r in run.references:
        ci = f"{r['accuracy']:.3f} [{_fmt(r['lo'])}, {_fmt(r['hi'])}]"
        lines.append(
            f"{'ref':>4}  {r['label']:<32} {ci:<24} {r['n']:>4} {r['tokens']:>7.1f} {r['eval_s']:>8.1f}"
        )
    return "\n".join(lines)


def _fmt(v: float | None) -> str:
    return "nan" if v is None or math.isnan(v) else f"{v:.3f}"


# -- a background run for the UI ------------------------------------------------------------------------------
@dataclass
class Live:
    """The improve run this studio runs in the background (or ran last): its latest progress line, and the error
    it ended with as text."""

    run_id: int
    message: str = ""
    error: str = ""
    running: bool = True
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


_LIVE: dict[str, Live] = {}
_LIVE_LOCK = threading.Lock()


def _key(ctx: AppContext) -> str:
    return str(runs_dir(ctx).resolve())


def active(ctx: AppContext) -> Live | None:
    """This studio's background run: the one running, else the last one started (None before any)."""
    return _LIVE.get(_key(ctx))


def start(ctx: AppContext, task: str, method: str, iterations: int, **kwargs: Any) -> int:
    """:func:`improve` in a daemon thread; returns the run id at once. Bad input raises :class:`InputError` here,
    before the thread starts; one improve run at a time per studio."""
    with _LIVE_LOCK:
        _idle(ctx)
        return _launch(ctx, prepare(ctx, task, method, iterations, **kwargs))


def start_resume(ctx: AppContext, run_id: int | str) -> int:
    """:func:`resume` in a daemon thread; returns the run id."""
    with _LIVE_LOCK:
        _idle(ctx)
        return _launch(ctx, _reload(ctx, run_id))


def stop(ctx: AppContext, run_id: int | str) -> str:
    """Stop the background run: cancel its job in flight (through the runner) and interrupt its scoring. It ends
    "cancelled" with its finished iterations kept; Resume continues it."""
    live = active(ctx)
    if live is None or not live.running or str(live.run_id) != str(run_id).strip():
        raise InputError(f"improve run {run_id} is not running in this studio")
    live.stop.set()
    pending = load(ctx, live.run_id).pending
    if pending:
        try:
            job = ctx.runner.cancel(int(pending["job_id"]))
            return f"stopping improve run {live.run_id}: training job {job.id} {job.state}"
        except InputError:  # the job ended meanwhile: the loop stops at its next step
            pass
    return f"stopping improve run {live.run_id} at its next step"


def _idle(ctx: AppContext) -> None:
    live = active(ctx)
    if live is not None and live.running:
        raise InputError(
            f"improve run {live.run_id} is running in this studio: stop it or wait for it (one improve run at "
            "a time)"
        )


def _launch(ctx: AppContext, run: ImproveResult) -> int:
    live = Live(run.id, f"improve {run.id}: starting")

    def report(done: int, total: int, msg: str) -> None:
        live.message = f"[{done}/{total}] {msg}" if total else msg
        if live.stop.is_set():
            raise Stopped(
                f"improve {run.id}: stopped by the user (Resume continues it; finished iterations are kept)"
            )

    def work() -> None:
        try:
            _loop(ctx, run, report)
        except StudioError as e:
            live.error = str(e)
        except Exception as e:  # shown as text in the UI; the state file says "failed"
            log.exception("improve run %s failed", run.id)
            live.error = f"{type(e).__name__}: {e}"
        finally:
            live.running = False

    live.thread = threading.Thread(target=work, name=f"improve-{run.id}", daemon=True)
    _LIVE[_key(ctx)] = live
    live.thread.start()
    return run.id


__all__: Sequence[str] = (
    "EVAL_ANSWER", "EVAL_PROMPT", "EVAL_STRATEGY", "EVAL_TOKENS", "ImproveResult", "Iteration", "Live", "Score",
    "Stopped", "active", "improve", "list_runs", "load", "prepare", "resume", "score_model", "start", "start_resume", "stop",
    "table", "task_methods",
)  # fmt: skip
