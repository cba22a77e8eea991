"""The driver: the one engine every model call goes through, for strategy runs and judge items alike.

It runs many programs in lockstep: a :class:`~studio.strategies.base.Strategy` on a question, or a judge on one
item (:class:`studio.judges.base.JudgeRun`). Each is a generator that yields a list of independent
:class:`StepRequest` s and receives one :class:`Completion` per request. Each round the driver collects the
pending requests of every active run, groups them by (backend, params) -- or (backend, choices) for a
next-token-probability reading, or (backend, score kind) for scoring a given completion (its log-probability,
or a reward model's scalar) -- and sends each group to the backend as one batch. A request names its own
backend when it is not its run's (a DPO judge's reference model). So CoVe's factored
verifications, BSM's solves, the first steps of several arena columns, and every item and order of a judge batch
share a forward pass. A backend that ``supports_rows`` takes rows that differ in ``max_new_tokens`` (per-step
caps) and ``schema`` in one batch, so those fields do not split a group. Identical ``shared`` requests of one
round are sent once (a judge's branch step per distinct question).

**Rows as they finish.** A backend that ``supports_rows`` reports each row the moment it ends, with its own
latency (batch start to its last token). The driver records the step then, and a run whose requests are all back
moves on at once: a finished run's ``run_finished`` comes while other rows of its batch still decode. A run's new
requests wait until their backend's calls in flight have ended, then go out together as the next round (one
model, one ``generate`` at a time: a second call could not start sooner, and waiting lets it batch). Backends
are independent: each starts its next round when its own calls end, not when the slowest backend's do.

Every step is recorded the same way: :class:`TraceEvent` s while it runs, a :class:`Step` in the run's
:class:`Trace`. ``drive(jobs)`` is a generator of events; the runs' results arrive in ``run_finished`` events.
``run_jobs(jobs)`` is the blocking form.

**Fallback policy** (one rule for every model call):

1. A batch call that raises, whatever the exception, is retried one request at a time, so the failure lands
   on the request that caused it and the rest of the batch is still answered (rows already delivered as they
   finished are kept, not asked again).
2. A request that fails alone fails its step (status ``error``). If the error is an ``InputError`` (the
   request itself was refused, e.g. too long a prompt) and the program accepts refusals (judges do), the
   program receives a completion with ``finish_reason="error"`` and the message as its text, and goes on.
3. Otherwise the run ends with the error and keeps its trace so far; the other runs go on. The caller decides
   what a failed run means: the arena shows it in its column, ``run_strategy`` raises it; a judge gives a
   failed verdict for an ``InputError`` and raises anything else (a backend failure says nothing about the
   item, so it must not become a stored failed verdict that a resumed job would skip).
"""

from __future__ import annotations

import json
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from studio.backends.base import Backend, Completion, GenParams, validate_conversation
from studio.errors import InputError, StudioError, redact
from studio.strategies.base import (
    RunContext,
    RunResult,
    Step,
    StepRequest,
    StrategyGen,
    StrategyParams,
    Trace,
    TraceEvent,
)


class Program(Protocol):
    """What the driver runs: a :class:`~studio.strategies.base.Strategy`, or a judge on one item. ``run`` is a
    generator of step-request rounds that returns the run's final text. A program with a true
    ``accepts_refusals`` attribute receives refused requests as error completions (see the fallback policy)."""

    @property
    def name(self) -> str: ...

    variant: str | None

    def run(self, question: str, ctx: RunContext) -> StrategyGen: ...


@dataclass
class DriveJob:
    """One run to drive: a strategy (with its variant) or a judge's item program, on a backend, with params."""

    strategy: Program
    question: str
    backend: Backend
    params: StrategyParams = field(default_factory=StrategyParams)
    #: ``on_delta(step_id, text_so_far)``: live text of this run's steps while the backend generates them
    on_delta: Callable[[str, str], None] | None = None


@dataclass(eq=False)  # identity semantics: runs are dict keys
class _Run:
    index: int
    job: DriveJob
    ctx: RunContext
    gen: StrategyGen
    t0: float
    pending: list[StepRequest] = field(default_factory=list)
    sent: bool = False  # whether ``pending`` went to a backend
    results: dict[str, Completion] = field(default_factory=dict)
    result: RunResult | None = None

    @property
    def trace(self) -> Trace:
        return self.ctx.trace


_Item = tuple[_Run, StepRequest]
_Outcome = Completion | BaseException
#: what a batch call posts to the driver: ("row", run, request, outcome) per request, then ("end", backend id)
_Message = tuple[Any, ...]


def drive(jobs: Sequence[DriveJob], *, batching: bool = True) -> Iterator[TraceEvent]:
    """Run ``jobs`` to completion, yielding events as steps start and finish.

    ``batching=False`` sends every request on its own, one after another (for benchmarks and debugging).
    A failing run (a backend error, a bug) ends with an ``error`` event; the other runs go on.
    """
    runs = [_start(i, job) for i, job in enumerate(jobs)]
    for run in runs:
        yield from _advance(run, None)
    round_no = 0
    inbox: queue.SimpleQueue[_Message] = queue.SimpleQueue()
    busy: dict[int, int] = {}  # backend id -> its calls in flight
    pool = ThreadPoolExecutor(max_workers=8, thread_name_prefix="studio-driver") if batching else None
    try:
        while True:
            ready = [r for r in runs if r.result is None and r.pending and not r.sent]
            ready = [r for r in ready if not busy.get(id(r.job.backend))]
            if ready:
                round_no += 1
                items = [(r, req) for r in ready for req in r.pending]
                groups = _group(items, batching)
                sizes = {(r.index, req.id): len(_rows(g)) for g in groups for r, req in g}
                for r, req in items:
                    yield _started(r, req, round_no, sizes[r.index, req.id])
                for r in ready:
                    r.sent = True
                for g in groups:
                    bid = id(_backend(*g[0]))
                    busy[bid] = busy.get(bid, 0) + 1
                    if pool is None:  # one after another, in this thread
                        _call(g, inbox.put)
                    else:
                        pool.submit(_call, g, inbox.put)
            if not any(busy.values()):
                break
            msg = inbox.get()
            if msg[0] == "end":
                busy[msg[1]] -= 1
                continue
            _, run, req, outcome = msg
            yield from _record(run, req, outcome)
            # a run moves on as soon as all its requests are back, not when its batch or round is
            if run.result is None and all(q.id in run.results for q in run.pending):
                yield from _advance(run, [run.results[q.id] for q in run.pending])
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def run_jobs(jobs: Sequence[DriveJob], *, batching: bool = True) -> list[RunResult]:
    """Blocking form of :func:`drive`: the results, in job order."""
    results: dict[int, RunResult] = {}
    for ev in drive(jobs, batching=batching):
        if ev.kind == "run_finished" and ev.result is not None:
            results[ev.run] = ev.result
    return [results[i] for i in range(len(jobs))]


# -- run lifecycle ---------------------------------------------------------------------------------------------------
def _start(index: int, job: DriveJob) -> _Run:
    s = job.strategy
    trace = Trace(s.name, s.variant, job.backend.model_name, job.question, job.params.to_dict())
    ctx = RunContext(job.question, job.params, trace)
    return _Run(index, job, ctx, s.run(job.question, ctx), time.perf_counter())


def _advance(run: _Run, comps: list[Completion] | None) -> Iterator[TraceEvent]:
    """Hand the round's completions to the strategy and take its next requests (or its answer)."""
    finished_steps = [run.trace.step(req.id) for req in run.pending]
    run.pending, run.results, run.sent = [], {}, False
    try:
        nxt = next(run.gen) if comps is None else run.gen.send(comps)
        while not nxt:  # an empty request list needs no model: answer it at once
            nxt = run.gen.send([])
    except StopIteration as stop:
        yield from _flush(run, finished_steps)
        yield from _finish(run, stop.value or "")
        return
    except Exception as e:  # a strategy bug must end this run only, with the trace so far
        yield from _flush(run, finished_steps)
        yield from _fail(run, e)
        return
    yield from _flush(run, finished_steps)
    try:
        for req in nxt:
            validate_conversation(req.messages)
    except StudioError as e:
        run.gen.close()
        yield from _fail(run, e)
        return
    if _over_budget(run):
        yield from _stop_for_budget(run, nxt)
        return
    run.pending = list(nxt)


def _flush(run: _Run, finished: list[Step]) -> Iterator[TraceEvent]:
    """step_finished events (after the strategy parsed them), then notes not already shown on those steps."""
    shown = {s.id for s in finished}
    for s in finished:
        yield TraceEvent("step_finished", run.index, step=s.snapshot())
    for step_id, text in run.ctx.take_notes():
        if step_id is None or step_id not in shown:
            yield TraceEvent("note", run.index, text=text, step_id=step_id)
    for key, value in run.ctx.take_summaries():
        yield TraceEvent("summary", run.index, text=key, data=value)


def _over_budget(run: _Run) -> bool:
    budget = run.job.params.token_budget
    return budget is not None and run.ctx.tokens_used >= budget


def _stop_for_budget(run: _Run, skipped: list[StepRequest]) -> Iterator[TraceEvent]:
    t = run.trace.totals
    names = ", ".join(dict.fromkeys(r.name for r in skipped))
    source = (
        f"the best answer so far ({run.ctx.best_from})"
        if run.ctx.best
        else "empty: no answer was produced yet"
    )
    run.ctx.note(
        f"token budget of {run.job.params.token_budget} reached ({t.tokens} tokens used: {t.prompt_tokens} in, "
        f"{t.completion_tokens} out); skipped {names}; the final answer is {source}"
    )
    run.gen.close()
    yield from _flush(run, [])
    yield from _finish(run, run.ctx.best or "")


def _finish(run: _Run, answer: str) -> Iterator[TraceEvent]:
    run.trace.final_answer = (answer or "").strip()
    run.trace.latency_s = time.perf_counter() - run.t0
    run.result = _result(run)
    yield TraceEvent("run_finished", run.index, result=run.result)


def _fail(run: _Run, e: BaseException) -> Iterator[TraceEvent]:
    msg = str(e) if isinstance(e, StudioError) else redact(f"{type(e).__name__}: {e}")  # stored and shown
    run.trace.error = msg
    run.trace.final_answer = run.ctx.best or ""
    run.trace.latency_s = time.perf_counter() - run.t0
    for s in run.trace.steps:
        if s.status == "running":
            s.status = "error"
    run.result = _result(run, e)
    yield TraceEvent("error", run.index, text=msg)
    yield TraceEvent("run_finished", run.index, result=run.result)


def _result(run: _Run, exc: BaseException | None = None) -> RunResult:
    t = run.trace
    return RunResult(
        t.question,
        t.strategy,
        t.variant,
        t.model,
        run.job.params,
        t.final_answer,
        t,
        error=t.error,
        exception=exc,
    )


# -- steps -------------------------------------------------------------------------------------------------------------
def _started(run: _Run, req: StepRequest, round_no: int, batch_size: int) -> TraceEvent:
    step = Step(
        id=req.id,
        name=req.name,
        parent=req.parent,
        messages=req.messages,
        params=_step_params(run, req),
        label=req.label,
        model=_backend(run, req).model_name,
        round=round_no,
        batch_size=batch_size,
        started_s=time.perf_counter() - run.t0,
    )
    run.trace.steps.append(step)
    return TraceEvent("step_started", run.index, step=step.snapshot())


def _record(run: _Run, req: StepRequest, outcome: _Outcome) -> Iterator[TraceEvent]:
    """Fill the step from its completion; an exception fails the whole run unless the program takes refusals."""
    if run.result is not None:  # the run already failed on another request of this round
        return
    step = run.trace.step(req.id)
    step.finished_s = time.perf_counter() - run.t0
    if isinstance(outcome, InputError) and getattr(run.job.strategy, "accepts_refusals", False):
        step.status = "error"
        step.notes.append(f"refused: {outcome}")
        run.results[req.id] = refusal(outcome)
        return
    if isinstance(outcome, BaseException):
        step.status = "error"
        run.gen.close()
        yield from _fail(run, outcome)
        return
    step.status = "done"
    step.output = outcome.text
    step.prompt_tokens, step.completion_tokens = outcome.prompt_tokens, outcome.completion_tokens
    step.latency_s, step.finish_reason = outcome.latency_s, outcome.finish_reason  # its own decode time
    step.model = outcome.model or step.model
    step.constrained = bool(outcome.constrained)
    step.notes.extend(w for w in outcome.warnings if w not in step.notes)
    if step.params.get("schema") and not step.constrained and not outcome.warnings:
        step.notes.append(f"{step.model} cannot constrain output to a schema; ran as free text")
    if outcome.finish_reason == "length":
        step.notes.append(f"output cut at max_new_tokens={step.params['max_new_tokens']}")
    run.results[req.id] = outcome


def refusal(e: InputError) -> Completion:
    """What a program that accepts refusals receives for a refused request: no text, the reason, "error"."""
    return Completion(str(e), 0, 0, 0.0, finish_reason="error")


# -- batching ----------------------------------------------------------------------------------------------------------
def _params(run: _Run, req: StepRequest) -> GenParams:
    return req.params or run.job.params.gen_params()


def _backend(run: _Run, req: StepRequest) -> Backend:
    """The backend a request goes to: its own (a judge's reference model), else its run's."""
    return req.backend if req.backend is not None else run.job.backend


def _step_params(run: _Run, req: StepRequest) -> dict[str, Any]:
    if req.choices:
        return {"choices": list(req.choices)}
    if req.score:  # the scored completion is part of what was sent
        return {"score": req.score, "completion": req.completion}
    return _params(run, req).to_dict()


def _group(items: list[_Item], batching: bool) -> list[list[_Item]]:
    """One group per (backend, params) -- or (backend, choices) -- when batching; one per request otherwise.
    For a backend that ``supports_rows``, params that differ only in per-row fields share a group."""
    if not batching:
        return [[it] for it in items]
    groups: dict[tuple[int, Any], list[_Item]] = {}
    for run, req in items:
        backend = _backend(run, req)
        if req.choices:
            how: Any = ("choices", req.choices)
        elif req.score:
            how = ("score", req.score)
        else:
            params = _params(run, req)
            how = params.batch_key if _rows_supported(backend) else params
        groups.setdefault((id(backend), how), []).append((run, req))
    return list(groups.values())


def _rows_supported(backend: Backend) -> bool:
    return bool(getattr(backend, "supports_rows", False))


def _rows(group: list[_Item]) -> list[list[_Item]]:
    """The group's batch rows: one per request, except that identical ``shared`` requests share one row."""
    rows: list[list[_Item]] = []
    seen: dict[str, int] = {}
    for run, req in group:
        key = json.dumps([req.messages, req.completion]) if req.shared else None
        if key is not None and key in seen:
            rows[seen[key]].append((run, req))
            continue
        if key is not None:
            seen[key] = len(rows)
        rows.append([(run, req)])
    return rows


def _call(group: list[_Item], post: Callable[[_Message], None]) -> None:
    """One backend call for the group. Each request's outcome is posted as ``("row", run, req, outcome)`` the
    moment it is known -- a row the backend reports finished, at once -- then ``("end", backend id)``. A call
    that raises is retried one row at a time for the rows not yet delivered (see the fallback policy)."""
    rows = _rows(group)
    lock = threading.Lock()
    delivered: set[int] = set()

    def deliver(i: int, outcome: _Outcome) -> None:
        with lock:  # a row reported while the call fails, and its retry, must not both be posted
            if i in delivered:
                return
            delivered.add(i)
        for run, req in rows[i]:
            post(("row", run, req, outcome))

    try:
        try:
            comps = _send(rows, deliver)
        except Exception as e:
            left = [i for i in range(len(rows)) if i not in delivered]
            for i in left:
                deliver(i, e if len(rows) == 1 else _alone(rows[i]))
        else:
            for i, c in enumerate(comps):
                deliver(i, c)
    finally:
        post(("end", id(_backend(*group[0]))))


def _alone(row: list[_Item]) -> _Outcome:
    try:
        return _send([row])[0]
    except Exception as e:
        return e


def _send(
    rows: list[list[_Item]], on_row: Callable[[int, Completion], None] | None = None
) -> list[Completion]:
    """``backend.chat`` (or ``choice_probs``) on the rows' conversations; a short answer list is an error.
    ``on_row`` hears of each row as it finishes, from a backend that ``supports_rows``."""
    run0, req0 = rows[0][0]
    backend = _backend(run0, req0)
    convs = [row[0][1].messages for row in rows]
    if req0.choices or req0.score:
        t0 = time.perf_counter()
        if req0.choices:
            values: list[Any] = backend.choice_probs(convs, req0.choices)
        else:
            scorer = backend.sequence_logprob if req0.score == "logprob" else backend.reward
            values = scorer(convs, [row[0][1].completion for row in rows])
        took = time.perf_counter() - t0
        comps = [Completion(json.dumps(v), 0, 0, took, model=backend.model_name) for v in values]
    elif _rows_supported(backend):
        params = [_params(*row[0]) for row in rows]
        extra: dict[str, Any] = {"on_row_done": on_row} if on_row is not None else {}
        comps = list(backend.chat(convs, params, **_deltas(rows), **extra))
    else:
        comps = list(backend.chat(convs, _params(run0, req0), **_deltas(rows)))
    if len(comps) != len(rows):
        raise StudioError(f"{backend.model_name} returned {len(comps)} answers for {len(rows)} prompts")
    return comps


def _deltas(rows: list[list[_Item]]) -> dict[str, Callable[[int, str], None]]:
    """``on_delta=`` routing a batch row's live text to the runs that asked for it; nothing when no run
    listens, so backends written before ``on_delta`` existed keep working."""
    if not any(run.job.on_delta for row in rows for run, _ in row):
        return {}

    def on_delta(i: int, text: str) -> None:
        for run, req in rows[i]:
            if run.job.on_delta is not None:
                run.job.on_delta(req.id, text)

    return {"on_delta": on_delta}
