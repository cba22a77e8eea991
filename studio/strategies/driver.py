"""The driver: runs strategy generators in lockstep and batches their independent steps.

Each round it collects the pending requests of every active run, groups them by (backend, params) and sends
each group to ``backend.chat`` as one batch. So CoVe's factored verifications, BSM's solves, and (in the arena)
the first steps of several strategies share a forward pass. Groups on different backends run concurrently.

It reports progress as :class:`TraceEvent` s: ``drive(jobs)`` is a generator of events; the runs' results
arrive in ``run_finished`` events. ``run_jobs(jobs)`` is the blocking form.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field

from studio.backends.base import Backend, Completion, GenParams, validate_conversation
from studio.errors import StudioError, redact
from studio.strategies.base import (
    RunContext,
    RunResult,
    Step,
    StepRequest,
    Strategy,
    StrategyGen,
    StrategyParams,
    Trace,
    TraceEvent,
)


@dataclass
class Job:
    """One run to drive: a strategy (with its variant) on a question, on a backend, with params."""

    strategy: Strategy
    question: str
    backend: Backend
    params: StrategyParams = field(default_factory=StrategyParams)
    #: ``on_delta(step_id, text_so_far)``: live text of this run's steps while the backend generates them
    on_delta: Callable[[str, str], None] | None = None


@dataclass(eq=False)  # identity semantics: runs are dict keys
class _Run:
    index: int
    job: Job
    ctx: RunContext
    gen: StrategyGen
    t0: float
    pending: list[StepRequest] = field(default_factory=list)
    results: dict[str, Completion] = field(default_factory=dict)
    result: RunResult | None = None

    @property
    def trace(self) -> Trace:
        return self.ctx.trace


_Item = tuple[_Run, StepRequest]
_Outcome = Completion | BaseException


def drive(jobs: Sequence[Job], *, batching: bool = True) -> Iterator[TraceEvent]:
    """Run ``jobs`` to completion, yielding events as steps start and finish.

    ``batching=False`` sends every request on its own, one after another (for benchmarks and debugging).
    A failing run (a backend error, a bug) ends with an ``error`` event; the other runs go on.
    """
    runs = [_start(i, job) for i, job in enumerate(jobs)]
    for run in runs:
        yield from _advance(run, None)
    round_no = 0
    pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="studio-driver") if batching else None
    try:
        while active := [r for r in runs if r.result is None and r.pending]:
            round_no += 1
            items = [(r, req) for r in active for req in r.pending]
            groups = _group(items, batching)
            sizes = {(r.index, req.id): len(g) for g in groups for r, req in g}
            for r, req in items:
                yield _started(r, req, round_no, sizes[r.index, req.id])
            for group, outcomes in _execute(groups, pool):
                for (r, req), outcome in zip(group, outcomes, strict=True):
                    yield from _record(r, req, outcome)
                # a run moves on as soon as all its requests are back, not when the whole round is
                for r in dict.fromkeys(r for r, _ in group):
                    if r.result is None and all(req.id in r.results for req in r.pending):
                        yield from _advance(r, [r.results[req.id] for req in r.pending])
    finally:
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)


def run_jobs(jobs: Sequence[Job], *, batching: bool = True) -> list[RunResult]:
    """Blocking form of :func:`drive`: the results, in job order."""
    results: dict[int, RunResult] = {}
    for ev in drive(jobs, batching=batching):
        if ev.kind == "run_finished" and ev.result is not None:
            results[ev.run] = ev.result
    return [results[i] for i in range(len(jobs))]


# -- run lifecycle ---------------------------------------------------------------------------------------------------
def _start(index: int, job: Job) -> _Run:
    s = job.strategy
    trace = Trace(s.name, s.variant, job.backend.model_name, job.question, job.params.to_dict())
    ctx = RunContext(job.question, job.params, trace)
    return _Run(index, job, ctx, s.run(job.question, ctx), time.perf_counter())


def _advance(run: _Run, comps: list[Completion] | None) -> Iterator[TraceEvent]:
    """Hand the round's completions to the strategy and take its next requests (or its answer)."""
    finished_steps = [run.trace.step(req.id) for req in run.pending]
    run.pending, run.results = [], {}
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
    params = req.params or run.job.params.gen_params()
    step = Step(
        id=req.id,
        name=req.name,
        parent=req.parent,
        messages=req.messages,
        params=params.to_dict(),
        label=req.label,
        model=run.job.backend.model_name,
        round=round_no,
        batch_size=batch_size,
        started_s=time.perf_counter() - run.t0,
    )
    run.trace.steps.append(step)
    return TraceEvent("step_started", run.index, step=step.snapshot())


def _record(run: _Run, req: StepRequest, outcome: _Outcome) -> Iterator[TraceEvent]:
    """Fill the step from its completion; an exception fails the whole run."""
    if run.result is not None:  # the run already failed on another request of this round
        return
    step = run.trace.step(req.id)
    step.finished_s = time.perf_counter() - run.t0
    if isinstance(outcome, BaseException):
        step.status = "error"
        run.gen.close()
        yield from _fail(run, outcome)
        return
    step.status = "done"
    step.output = outcome.text
    step.prompt_tokens, step.completion_tokens = outcome.prompt_tokens, outcome.completion_tokens
    step.latency_s, step.finish_reason = outcome.latency_s, outcome.finish_reason
    step.model = outcome.model or step.model
    if outcome.finish_reason == "length":
        step.notes.append(f"output cut at max_new_tokens={step.params['max_new_tokens']}")
    run.results[req.id] = outcome


# -- batching ----------------------------------------------------------------------------------------------------------
def _params(run: _Run, req: StepRequest) -> GenParams:
    return req.params or run.job.params.gen_params()


def _group(items: list[_Item], batching: bool) -> list[list[_Item]]:
    """One group per (backend, params) when batching; one group per request otherwise."""
    if not batching:
        return [[it] for it in items]
    groups: dict[tuple[int, GenParams], list[_Item]] = {}
    for run, req in items:
        groups.setdefault((id(run.job.backend), _params(run, req)), []).append((run, req))
    return list(groups.values())


def _call(group: list[_Item]) -> list[_Outcome]:
    """One ``backend.chat`` for the group. If the batch fails, retry one by one so only the bad request fails."""
    run0, req0 = group[0]
    backend, params = run0.job.backend, _params(run0, req0)
    try:
        comps = backend.chat([req.messages for _, req in group], params, **_deltas(group))
        if len(comps) != len(group):
            raise StudioError(f"{backend.model_name} returned {len(comps)} answers for {len(group)} prompts")
        return list(comps)
    except Exception as e:
        if len(group) == 1:
            return [e]
    outcomes: list[_Outcome] = []
    for item in group:
        try:
            outcomes.append(backend.chat([item[1].messages], params, **_deltas([item]))[0])
        except Exception as e:
            outcomes.append(e)
    return outcomes


def _deltas(group: list[_Item]) -> dict[str, Callable[[int, str], None]]:
    """``on_delta=`` routing a batch row's live text to the run that asked for it; nothing when no run
    listens, so backends written before ``on_delta`` existed keep working."""
    if not any(run.job.on_delta for run, _ in group):
        return {}

    def on_delta(i: int, text: str) -> None:
        run, req = group[i]
        if run.job.on_delta is not None:
            run.job.on_delta(req.id, text)

    return {"on_delta": on_delta}


def _execute(
    groups: list[list[_Item]], pool: ThreadPoolExecutor | None
) -> Iterator[tuple[list[_Item], list[_Outcome]]]:
    """Yield (group, outcomes) as groups complete; concurrently when there is a pool and several groups."""
    if pool is None or len(groups) == 1:
        for g in groups:
            yield g, _call(g)
        return
    futures: dict[Future[list[_Outcome]], list[_Item]] = {pool.submit(_call, g): g for g in groups}
    while futures:
        done, _ = wait(futures, return_when=FIRST_COMPLETED)
        for f in done:
            yield futures.pop(f), f.result()
