"""Strategy building blocks: run params, step requests, the trace, trace events and the ``Strategy`` base.

A strategy is a generator. It yields a list of independent :class:`StepRequest` s, receives one
:class:`~studio.backends.base.Completion` per request, and finally returns the answer text::

    def run(self, question, ctx):
        (baseline,) = yield [ctx.request("baseline", render("cove_baseline", question=question))]
        ...
        return final

``ctx.request`` builds a request (``ctx`` is a :class:`RunContext`); :data:`render`, defined below from
:mod:`studio.prompts`, fills a template in ``prompts/`` and returns the text of its one user message.

The driver (:mod:`studio.strategies.driver`) runs many such generators in lockstep and sends all the requests of
one round that share a backend and decoding params to ``backend.chat`` as one batch.
"""

from __future__ import annotations

import json
from collections.abc import Generator, Mapping
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

from studio.backends.base import Completion, Conversation, Decoding, GenParams, schema_text
from studio.errors import InputError
from studio.prompts import Prompts
from studio.registry import Registry

PROMPTS_DIR = Path(__file__).parent / "prompts"

#: Step names, in the papers' own terms.
STEP_NAMES = (
    "answer",  # System 1, CoT, S2A step 2
    "baseline",  # CoVe stage 1
    "plan_verifications",  # CoVe stage 2 (joint: planning and answering in one prompt)
    "execute_verifications",  # CoVe stage 3, two_step: one prompt answers every question
    "execute_verification",  # CoVe stage 3, factored: one prompt per question
    "cross_check",  # CoVe stage 3, factor_revise: one per question
    "final_verified",  # CoVe stage 4
    "rewrite",  # S2A step 1
    "branch",  # BSM
    "solve",  # BSM, one per branch
    "merge",  # BSM
    "propose",  # ToT: k next thoughts from one state
    "value",  # ToT: one evaluation sample of one state
    "vote",  # ToT: a vote across the states of one depth
    "rephrase",  # RaR two-step, step 1
)


@dataclass(frozen=True)
class StrategyParams(Decoding):
    """Everything a run can be tuned with: the decoding fields of :class:`~studio.backends.base.Decoding` (the
    same as :class:`GenParams`'), then the strategies' own. ``max_new_tokens`` applies to each step, not to the
    run."""

    max_questions: int = 5  # CoVe: verification questions kept after parsing
    max_branches: int = 5  # BSM: branches kept after parsing
    token_budget: int | None = None  # prompt + completion tokens per run; None = no limit
    #: run the parsed steps (CoVe plan and cross-check, S2A rewrite, BSM branch, ToT propose/value, judges'
    #: verdicts) under a JSON schema, so they parse on any model (``RunContext.request(schema=...)``)
    structured: bool = False
    #: per-step caps on new tokens, by step name (e.g. {"merge": 160}); the lower of this and max_new_tokens wins
    step_max_tokens: dict[str, int] = field(default_factory=dict)
    samples: int = 5  # self-consistency: paths sampled
    sc_temperature: float = 0.7  # self-consistency: the paths' sampling temperature
    breadth: int = 2  # ToT: states kept per depth (b; the paper: 5)
    depth: int = 3  # ToT: depth limit (the paper, Game of 24: 3)
    k: int = 3  # ToT: thoughts proposed per state
    n_evaluate: int = 2  # ToT: value samples per state (the paper: 3)
    value_threshold: float = 1.0  # ToT dfs: states valued below this are pruned

    def __post_init__(self) -> None:
        for name in ("max_questions", "max_branches", "samples", "breadth", "depth", "k", "n_evaluate"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.token_budget is not None and self.token_budget < 1:
            raise InputError(f"token_budget must be >= 1 (or unset for no limit), not {self.token_budget}")
        if self.sc_temperature < 0:
            raise InputError(f"sc_temperature must be >= 0, not {self.sc_temperature}")
        caps = dict(self.step_max_tokens or {})
        for step, cap in caps.items():
            if not isinstance(cap, int) or isinstance(cap, bool) or cap < 1:
                raise InputError(f"step_max_tokens[{step!r}] must be a whole number >= 1, not {cap!r}")
        object.__setattr__(self, "step_max_tokens", caps)
        super().__post_init__()  # validates max_new_tokens, temperature and top_p

    def __hash__(self) -> int:  # step_max_tokens is a dict
        return hash(json.dumps(self.to_dict(), sort_keys=True, default=str))

    def gen_params(self) -> GenParams:
        """The decoding fields as the params of one model call."""
        return GenParams(**{f.name: getattr(self, f.name) for f in fields(Decoding)})

    def step_params(self, name: str) -> GenParams:
        """The params of one step called ``name``: the decoding fields, with its ``step_max_tokens`` cap."""
        p = self.gen_params()
        cap = self.step_max_tokens.get(name)
        return p.replace(max_new_tokens=min(cap, p.max_new_tokens)) if cap else p

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> StrategyParams:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise InputError(
                f"unknown strategy params: {', '.join(sorted(unknown))}; known: {', '.join(sorted(known))}"
            )
        return cls(**d)


def resolve_params(
    given: StrategyParams | Mapping[str, Any] | None, defaults: Mapping[str, Any]
) -> StrategyParams:
    """The one rule for a run's params: a full :class:`StrategyParams` is used as is; a dict names only the
    fields the user set, and the model's decoding ``defaults`` fill the rest (then the class defaults). A field
    is replaced whole: a given ``step_max_tokens`` is the run's caps (what the Arena shows is what runs)."""
    if isinstance(given, StrategyParams):
        return given
    return StrategyParams.from_dict({**defaults, **dict(given or {})})


@dataclass
class StepRequest:
    """One model call a strategy asks for. ``params=None`` means the run's params."""

    id: str
    name: str
    messages: Conversation
    parent: str | None = None
    label: str = ""  # a short human label, e.g. the verification question this step answers
    params: GenParams | None = None
    #: read the next-token probabilities of these single-token choices (``backend.choice_probs``) instead of
    #: generating; the completion's text is the probabilities as JSON
    choices: tuple[str, ...] | None = None
    #: identical shared requests of several runs in one round are sent once (a judge's branch step per question)
    shared: bool = False
    #: score ``completion`` as the answer to ``messages`` instead of generating: "logprob" (the sum of its
    #: token log-probabilities, ``backend.sequence_logprob``) or "reward" (a reward model's scalar,
    #: ``backend.reward``); the completion's text is the score as JSON
    score: Literal["logprob", "reward"] | None = None
    completion: str = ""
    #: send this request to another loaded backend than the run's (a DPO judge's reference model)
    backend: Any = None


StepStatus = Literal["running", "done", "error"]


@dataclass
class Step:
    """The record of one model call: what was sent, what came back, what it cost, what was parsed from it."""

    id: str
    name: str
    parent: str | None
    messages: Conversation
    params: dict[str, Any]
    label: str = ""
    status: StepStatus = "running"
    output: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float = 0.0  # this step's own decode time: from its batch's start to its own last token
    finish_reason: str = ""
    model: str = ""
    round: int = 0  # the driver round this step ran in
    batch_size: int = 1  # how many requests went to the backend in the same call
    started_s: float = 0.0  # seconds since the run started
    finished_s: float = 0.0
    parsed: dict[str, Any] = field(default_factory=dict)  # e.g. {"questions": [...]}, {"reasoning", "final"}
    notes: list[str] = field(default_factory=list)  # fallbacks taken while reading this step's output
    constrained: bool = False  # generated under a JSON schema (``params["schema"]``)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Step:
        return cls(**d)

    def snapshot(self) -> Step:
        """A copy for an event, so later changes to the live step do not rewrite history."""
        return Step.from_dict(json.loads(json.dumps(self.to_dict())))


@dataclass
class Totals:
    prompt_tokens: int = 0
    completion_tokens: int = 0
    calls: int = 0  # model calls (steps), whether or not they were batched
    rounds: int = 0  # driver rounds this run took part in (its sequential depth)
    latency_s: float = 0.0  # wall-clock time of the run, start to final answer

    @property
    def tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Trace:
    """Everything one run did, in order. Serialises to JSON and back without loss."""

    strategy: str
    variant: str | None
    model: str
    question: str
    params: dict[str, Any]
    steps: list[Step] = field(default_factory=list)
    notes: list[str] = field(
        default_factory=list
    )  # run-level notes: budget hit, fallbacks that change the answer
    final_answer: str = ""
    error: str | None = None
    latency_s: float = 0.0
    #: what a strategy built beyond its steps, by key: ToT's ``tree``, self-consistency's ``vote``
    summary: dict[str, Any] = field(default_factory=dict)

    def step(self, step_id: str) -> Step:
        for s in self.steps:
            if s.id == step_id:
                return s
        raise KeyError(f"no step {step_id!r} in this trace")

    def by_name(self, name: str) -> list[Step]:
        return [s for s in self.steps if s.name == name]

    def children(self, step_id: str) -> list[Step]:
        return [s for s in self.steps if s.parent == step_id]

    @property
    def totals(self) -> Totals:
        done = [s for s in self.steps if s.status != "running"]
        return Totals(
            prompt_tokens=sum(s.prompt_tokens for s in done),
            completion_tokens=sum(s.completion_tokens for s in done),
            calls=len(done),
            rounds=len({s.round for s in done}),
            latency_s=self.latency_s,
        )

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "steps"}
        d["steps"] = [s.to_dict() for s in self.steps]
        d["totals"] = self.totals.to_dict()
        return d

    def to_json(self, indent: int | None = 2) -> str:
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Trace:
        body = {k: v for k, v in d.items() if k not in ("steps", "totals")}
        return cls(**body, steps=[Step.from_dict(s) for s in d.get("steps", [])])

    @classmethod
    def from_json(cls, text: str) -> Trace:
        return cls.from_dict(json.loads(text))


@dataclass
class RunResult:
    """The outcome of one strategy run. ``error`` is set when the run failed; the trace shows how far it got."""

    question: str
    strategy: str
    variant: str | None
    model: str
    params: StrategyParams
    final_answer: str
    trace: Trace
    error: str | None = None
    exception: BaseException | None = field(default=None, repr=False, compare=False)  # not serialised

    @property
    def totals(self) -> Totals:
        return self.trace.totals

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "strategy": self.strategy,
            "variant": self.variant,
            "model": self.model,
            "params": self.params.to_dict(),
            "final_answer": self.final_answer,
            "totals": self.totals.to_dict(),
            "error": self.error,
            "trace": self.trace.to_dict(),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RunResult:
        keys = ("question", "strategy", "variant", "model", "final_answer", "error")
        return cls(
            **{k: d.get(k) for k in keys},
            params=StrategyParams.from_dict(d["params"]),
            trace=Trace.from_dict(d["trace"]),
        )


EventKind = Literal["step_started", "step_finished", "note", "summary", "run_finished", "error"]


@dataclass
class TraceEvent:
    """What the driver reports while runs progress. ``run`` is the column index (0 for a single run).

    - ``step_started``: ``step`` holds the messages about to be sent (status ``running``).
    - ``step_finished``: ``step`` holds output, tokens, latency, and what the strategy parsed from it.
    - ``note``: ``text`` is a run-level note (token budget, a fallback); ``step_id`` names a step if it is about one.
    - ``summary``: ``text`` is a key of ``Trace.summary`` and ``data`` its new value (ToT's live ``tree``).
    - ``error``: ``text`` is the message; a ``run_finished`` for the same run follows.
    - ``run_finished``: ``result`` is the run's :class:`RunResult`.
    """

    kind: EventKind
    run: int = 0
    step: Step | None = None
    text: str = ""
    step_id: str | None = None
    result: RunResult | None = None
    data: Any = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "run": self.run,
            "step": self.step.to_dict() if self.step else None,
            "text": self.text,
            "step_id": self.step_id,
            "data": self.data,
            "result": self.result.to_dict() if self.result else None,
        }


# -- prompts ------------------------------------------------------------------------------------------------------
#: the strategies' templates (tidied: an empty section leaves no hole); see :mod:`studio.prompts`
PROMPTS = Prompts(PROMPTS_DIR, tidy=True)
load_prompt = PROMPTS.load
render_messages = PROMPTS.messages
render = PROMPTS.text  # a one-message template, filled: the text of its single user message


# -- the run context and the strategy base ------------------------------------------------------------------------
class RunContext:
    """What a running strategy can touch: its params, its trace, notes, and the best answer so far."""

    def __init__(self, question: str, params: StrategyParams, trace: Trace) -> None:
        self.question = question
        self.params = params
        self.trace = trace
        #: the answer returned if the run stops early (token budget); strategies update it as they go
        self.best: str | None = None
        self.best_from = ""
        self._next_id = 1
        self._pending_notes: list[tuple[str | None, str]] = []
        self._pending_summaries: list[tuple[str, Any]] = []

    def request(
        self,
        name: str,
        prompt: str | Conversation,
        *,
        parent: str | None = None,
        label: str = "",
        choices: tuple[str, ...] | None = None,
        shared: bool = False,
        schema: dict[str, Any] | None = None,
        score: Literal["logprob", "reward"] | None = None,
        completion: str = "",
        backend: Any = None,
        **param_overrides: Any,
    ) -> StepRequest:
        """A new step request; a string prompt becomes one user message.

        ``schema``: the JSON schema this step's output follows when the run is ``structured`` (ignored
        otherwise). The step's ``step_max_tokens`` cap applies unless ``max_new_tokens`` is overridden."""
        messages = [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)
        if schema is not None and self.params.structured:
            param_overrides["schema"] = schema_text(schema)
        base = self.params.step_params(name)
        params = base.replace(**param_overrides) if param_overrides else base
        if params == self.params.gen_params():
            params = None
        req = StepRequest(
            f"s{self._next_id}",
            name,
            messages,
            parent,
            label,
            params,
            tuple(choices) if choices else None,
            shared,
            score,
            completion,
            backend,
        )
        self._next_id += 1
        return req

    def note(self, text: str, step: str | None = None) -> None:
        """Record a fallback or a decision. With ``step``, it is attached to that step."""
        if step is None:
            self.trace.notes.append(text)
        else:
            self.trace.step(step).notes.append(text)
        self._pending_notes.append((step, text))

    def parsed(self, step: str, **data: Any) -> None:
        """Attach what was parsed from a step's output (questions, verdicts, sections...)."""
        self.trace.step(step).parsed.update(data)

    def set_summary(self, key: str, value: Any) -> None:
        """Set ``Trace.summary[key]`` (JSON-able) and report it live (a ``summary`` event)."""
        self.trace.summary[key] = value
        self._pending_summaries.append((key, json.loads(json.dumps(value))))

    def take_summaries(self) -> list[tuple[str, Any]]:
        out, self._pending_summaries = self._pending_summaries, []
        return out

    def set_best(self, answer: str, source: str) -> None:
        self.best, self.best_from = answer, source

    def take_notes(self) -> list[tuple[str | None, str]]:
        notes, self._pending_notes = self._pending_notes, []
        return notes

    @property
    def tokens_used(self) -> int:
        return self.trace.totals.tokens


StrategyGen = Generator[list[StepRequest], list[Completion], str]


class Strategy:
    """Base class. Subclasses set ``description`` and ``variants`` and implement :meth:`run` as a generator."""

    registered_name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: allowed variants. Empty: the strategy has no variants.
    variants: ClassVar[tuple[str, ...]] = ()
    #: the variant used when none is given (default: the first of ``variants``)
    default_variant: ClassVar[str | None] = None
    #: the paper behind the strategy, for listings
    source: ClassVar[str] = ""

    def __init__(self, variant: str | None = None) -> None:
        if variant is None or variant == "":
            variant = self.default_variant or (self.variants[0] if self.variants else None)
        elif variant not in self.variants:
            allowed = ", ".join(self.variants) if self.variants else "none"
            raise InputError(
                f"strategy {self.registered_name!r} has no variant {variant!r}; variants: {allowed}"
            )
        self.variant = variant

    @property
    def name(self) -> str:
        return self.registered_name

    def run(self, question: str, ctx: RunContext) -> StrategyGen:
        raise NotImplementedError


STRATEGIES: Registry[Strategy] = Registry("strategy", Strategy, "studio.strategies")


def make_strategy(name: str, variant: str | None = None) -> Strategy:
    """The strategy ``name`` with ``variant``; unknown names and variants are user errors."""
    if name not in STRATEGIES:
        raise InputError(f"unknown strategy {name!r}; known: {', '.join(STRATEGIES.names())}")
    return STRATEGIES.get(name)(variant)
