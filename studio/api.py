"""The one-call Python API for running reasoning strategies.

One strategy on one question::

    from studio.api import run_strategy
    result = run_strategy("Who wrote Hamlet?", "cove", "factored", params={"max_new_tokens": 128})
    print(result.final_answer)
    print(result.trace.to_json())          # every step: messages, output, tokens, latency, notes

The same, step by step as it runs (for a UI)::

    for event in stream_strategy("Who wrote Hamlet?", "s2a"):
        if event.kind == "step_finished":
            print(event.step.name, event.step.output)
        elif event.kind == "run_finished":
            print(event.result.final_answer)

Several strategies on one prompt, possibly on different models (the arena). Independent steps of all the
columns that share a model and params go to it as one batch; events carry the column index in ``run``::

    results = run_many("Who wrote Hamlet?", [("system1", None, None), ("cot", None, None), ("cove", "factored", "gpt")])

``model`` is a registered model name, a loaded :class:`~studio.backends.base.Backend`, or None for the
settings' default model. ``params`` is a :class:`~studio.strategies.StrategyParams` (used as is) or a dict of
the fields you set -- ``max_new_tokens`` (per step), ``temperature``, ``top_p``, ``seed``, ``repetition_penalty``,
``no_repeat_ngram_size``, ``step_max_tokens``, ``structured``, ``max_questions``, ``max_branches``,
``token_budget``, the ToT and self-consistency fields -- and the model's decoding defaults (``models.toml``
``params``, see :meth:`~studio.models.ModelRegistry.decoding_defaults`) fill the rest.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from studio.backends.base import Backend, validate_conversation
from studio.errors import InputError
from studio.settings import Settings
from studio.strategies import (
    STRATEGIES,
    DriveJob,
    RunResult,
    StrategyParams,
    TraceEvent,
    drive,
    make_strategy,
    resolve_params,
)

ModelArg = str | Backend | None
ParamsArg = StrategyParams | Mapping[str, Any] | None

__all__ = [
    "RunSpec",
    "StrategyInfo",
    "list_strategies",
    "run_many",
    "run_strategy",
    "stream_many",
    "stream_strategy",
]


@dataclass(frozen=True)
class RunSpec:
    """One arena column: a strategy, its variant, the model (name, Backend or None) and optional own params."""

    strategy: str
    variant: str | None = None
    model: ModelArg = None
    params: ParamsArg = None  # None: the params given to run_many / stream_many


@dataclass(frozen=True)
class StrategyInfo:
    name: str
    variants: tuple[str, ...]
    default_variant: str | None
    description: str
    source: str


def list_strategies() -> list[StrategyInfo]:
    """Every registered strategy, with its variants and a one-line description."""
    out = []
    for name in STRATEGIES.names():
        cls = STRATEGIES.get(name)
        default = cls.default_variant or (cls.variants[0] if cls.variants else None)
        out.append(StrategyInfo(name, cls.variants, default, cls.description, cls.source))
    return out


def run_strategy(
    question: str,
    strategy: str,
    variant: str | None = None,
    model: ModelArg = None,
    params: ParamsArg = None,
    settings: Settings | None = None,
    *,
    batching: bool = True,
    raise_errors: bool = True,
) -> RunResult:
    """Run one strategy to its final answer and return the result with its full trace.

    A failed run (the backend failed, the prompt is too long for the model) raises its error, unless
    ``raise_errors=False``, in which case the result has ``error`` set and the trace so far.
    """
    result: RunResult | None = None
    for ev in stream_strategy(question, strategy, variant, model, params, settings, batching=batching):
        if ev.kind == "run_finished":
            result = ev.result
    assert result is not None  # the driver always finishes every run
    if raise_errors and result.exception is not None:
        raise result.exception
    return result


def stream_strategy(
    question: str,
    strategy: str,
    variant: str | None = None,
    model: ModelArg = None,
    params: ParamsArg = None,
    settings: Settings | None = None,
    *,
    batching: bool = True,
) -> Iterator[TraceEvent]:
    """Like :func:`run_strategy`, but yields :class:`TraceEvent` s as steps start and finish.

    The last event is ``run_finished``, whose ``result`` is the :class:`RunResult`.
    Bad arguments (unknown strategy, blank question) raise :class:`InputError` before anything runs.
    """
    return stream_many(question, [RunSpec(strategy, variant, model)], params, settings, batching=batching)


def run_many(
    question: str,
    specs: Sequence[RunSpec | tuple[Any, ...]],
    params: ParamsArg = None,
    settings: Settings | None = None,
    *,
    batching: bool = True,
) -> list[RunResult]:
    """Run several strategies on one question together; results in ``specs`` order. Failures do not raise:
    a failed column has ``error`` set."""
    results: dict[int, RunResult] = {}
    for ev in stream_many(question, specs, params, settings, batching=batching):
        if ev.kind == "run_finished" and ev.result is not None:
            results[ev.run] = ev.result
    return [results[i] for i in range(len(specs))]


def stream_many(
    question: str,
    specs: Sequence[RunSpec | tuple[Any, ...]],
    params: ParamsArg = None,
    settings: Settings | None = None,
    *,
    batching: bool = True,
    on_delta: Callable[[int, str, str], None] | None = None,
) -> Iterator[TraceEvent]:
    """Run several strategies on one question in lockstep, yielding events tagged with the column index
    (``event.run``, the index in ``specs``). Each spec is a :class:`RunSpec` or a tuple
    ``(strategy, variant, model[, params])``. The first steps of all columns on the same model and params
    (System 1, CoT, the CoVe baseline, the S2A rewrite, the BSM branch) go to the model as one batch.

    ``on_delta(column, step_id, text_so_far)`` is called from the generating thread with each step's live
    text (token by token on local models), for UIs that show answers as they are written.
    """
    jobs = _jobs(question, specs, params, settings)  # validated eagerly, before the generator starts
    if on_delta is not None:
        for i, job in enumerate(jobs):
            job.on_delta = functools.partial(on_delta, i)
    return drive(jobs, batching=batching)


# -- argument handling -------------------------------------------------------------------------------------------------
def _jobs(
    question: str, specs: Sequence[RunSpec | tuple[Any, ...]], params: ParamsArg, settings: Settings | None
) -> list[DriveJob]:
    if not isinstance(question, str):
        raise InputError(f"the question must be text, not {type(question).__name__}")
    validate_conversation([{"role": "user", "content": question}])
    if not specs:
        raise InputError("give at least one strategy to run")
    _params(params)  # bad params fail before any model loads
    specs = [_spec(s) for s in specs]
    strategies = [
        make_strategy(s.strategy, s.variant) for s in specs
    ]  # bad names fail before any model loads
    backends = _backends([s.model for s in specs], settings)
    run_params = [
        resolve_params(params if s.params is None else s.params, b.decoding_defaults)
        for s, b in zip(specs, backends, strict=True)
    ]
    return [DriveJob(st, question, b, p) for st, b, p in zip(strategies, backends, run_params, strict=True)]


def _spec(s: RunSpec | tuple[Any, ...]) -> RunSpec:
    if isinstance(s, RunSpec):
        return s
    if isinstance(s, str):
        return RunSpec(s)
    if isinstance(s, tuple | list) and 1 <= len(s) <= 4:
        return RunSpec(*s)
    raise InputError(f"a run spec is (strategy, variant, model[, params]) or a RunSpec, not {s!r}")


def _params(params: ParamsArg) -> StrategyParams:
    if params is None:
        return StrategyParams()
    if isinstance(params, StrategyParams):
        return params
    return StrategyParams.from_dict(dict(params))


def _backends(models: list[ModelArg], settings: Settings | None) -> list[Backend]:
    """Resolve names to loaded backends, through the process's default context (one copy per model)."""
    if all(isinstance(m, Backend) for m in models):
        return list(models)  # type: ignore[arg-type]
    from studio.context import default_context

    registry = default_context(settings).registry
    return [m if isinstance(m, Backend) else registry.backend(m) for m in models]
