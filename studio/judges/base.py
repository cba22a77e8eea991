"""Judge building blocks: the items a judge sees, the ``Verdict`` it returns, swap logic and the ``Judge`` base.

A judge is a program for the driver (:mod:`studio.strategies.driver`), like a strategy: ``run(item, ctx)`` yields
rounds of step requests for one item and returns its :class:`Verdict`. :meth:`Judge.judge` drives every item of
a batch in lockstep, so one round of every item (every order, every sample) goes to the backend as one batch;
every call follows the driver's one fallback policy and leaves a step in the item's trace, which the verdict
carries (``Verdict.trace``, stored with it).

Verdicts are values. Output a judge cannot parse gives a verdict with ``ok=False`` and its raw text; it is never
dropped. ``winner`` is in the caller's labels: 'A' is ``item.answers[0]``, whatever order the judge saw them in.

Adding a judge is one file with one ``Judge`` subclass (set ``mode``, ``description``, ``source``, ``Config`` and
``prompts`` -- templates in ``prompts/``, citing their paper -- and write ``run``) plus one registration: a line
under ``[project.entry-points."studio.judges"]`` in ``pyproject.toml``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Literal

from studio.backends.base import Backend, Completion, Conversation, GenParams
from studio.errors import InputError
from studio.prompts import Prompts
from studio.registry import Registry
from studio.strategies.base import RunContext, RunResult, StepRequest, StrategyParams
from studio.strategies.driver import DriveJob, drive
from studio.strategies.parsing import parse_json
from studio.strategies.schemas import load_schema as _load_schema

PROMPTS_DIR = Path(__file__).parent / "prompts"
#: the judges' templates, sent byte for byte (published wording; the answers under judgement as they are)
PROMPTS = Prompts(PROMPTS_DIR, tidy=False)
load_prompt = PROMPTS.load
render = PROMPTS.text
messages = PROMPTS.messages  # a filled template as a conversation (one user message)


def load_schema(name: str, **values: Any) -> dict[str, Any]:
    """The verdict schema ``prompts/<name>.schema.json`` (used when the judge runs ``structured``)."""
    return _load_schema(name, PROMPTS_DIR, **values)


Mode = Literal["single", "pairwise"]
Winner = Literal["A", "B", "tie", "inconsistent"]
#: Orders a pairwise judge shows the answers in: "AB" shows answers[0] as Assistant A, "BA" swaps them.
ORDERS = ("AB", "BA")


@dataclass(frozen=True)
class Candidate:
    """One answer under judgement, with where it came from (for the self-judge flag and for the store)."""

    text: str
    model: str = ""
    strategy: str = ""
    run_id: int | None = None


@dataclass(frozen=True)
class JudgeItem:
    """A question and one answer (single mode) or two answers A and B (pairwise mode)."""

    question: str
    answers: tuple[Candidate, ...]
    key: Any = None  # the caller's handle (a comparison id, a tuple of run ids): copied onto the verdict
    #: a reference answer (the prompt's known answer, e.g. for math): reference-guided judges show it
    reference: str = ""

    @classmethod
    def single(
        cls, question: str, answer: str | Candidate, key: Any = None, reference: str = ""
    ) -> JudgeItem:
        return cls(question, (_candidate(answer),), key, reference)

    @classmethod
    def pair(
        cls, question: str, a: str | Candidate, b: str | Candidate, key: Any = None, reference: str = ""
    ) -> JudgeItem:
        return cls(question, (_candidate(a), _candidate(b)), key, reference)

    @property
    def models(self) -> set[str]:
        return {c.model for c in self.answers if c.model}


def _candidate(x: str | Candidate) -> Candidate:
    return x if isinstance(x, Candidate) else Candidate(str(x))


@dataclass
class Verdict:
    """What a judge concluded about one item. ``ok=False`` means the output could not be read; see ``error``.

    - ``winner`` (pairwise): 'A', 'B', 'tie', 'inconsistent' (the orders disagreed; counts as a tie), or None
      when the verdict failed.
    - ``rating`` (single): the score, averaged over samples. ``prob_a`` (log-prob): calibrated P(A better).
    - ``orders``: the orders judged ("AB", "BA", or "A" for a single answer); ``order_winners`` holds each
      order's own pick in the caller's labels (None where that order's output did not parse).
    - ``scores``: judge-specific detail (samples, per-criterion scores, per-order probabilities).
    - ``raw``: every raw model output, in call order.
    - ``self_judge``: the judge model is the model of one of the answers it judged.
    """

    judge: str
    judge_model: str
    config: dict[str, Any]
    config_hash: str
    mode: Mode
    ok: bool
    winner: Winner | None = None
    rating: float | None = None
    prob_a: float | None = None
    orders: list[str] = field(default_factory=list)
    order_winners: list[str | None] = field(default_factory=list)
    scores: dict[str, Any] = field(default_factory=dict)
    raw: list[str] = field(default_factory=list)
    self_judge: bool = False
    error: str = ""
    notes: list[str] = field(default_factory=list)
    key: Any = None
    #: every model call behind the verdict (``Trace.to_dict()``), as for a strategy run; stored with it
    trace: dict[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def outcome(self) -> str | None:
        """The winner as metrics count it: 'inconsistent' is a tie; None for a failed or single verdict."""
        return "tie" if self.winner == "inconsistent" else self.winner

    @property
    def summary(self) -> str:
        """The verdict in a few words: its trace's final answer."""
        if not self.ok:
            return f"failed: {self.error}" if self.error else "failed"
        if self.mode == "single":
            return f"rating {self.rating:.2f}" if self.rating is not None else "no rating"
        return f"winner {self.winner}" + (
            f" (P(A better) {self.prob_a:.3f})" if self.prob_a is not None else ""
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Verdict:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


# -- swap logic ---------------------------------------------------------------------------------------------------
def to_caller_label(pick: str | None, order: str) -> str | None:
    """A pick made in ``order`` ("AB" or "BA"), in the caller's labels: in "BA", Assistant A is answer B."""
    if pick is None or pick == "tie" or order == "AB":
        return pick
    return {"A": "B", "B": "A"}[pick]


def combine_orders(picks: Sequence[str | None]) -> Winner | None:
    """MT-Bench position swap: a winner only if every order agrees; any disagreement is 'inconsistent'.

    ``picks`` are per-order picks already in the caller's labels. A missing pick (None) fails the verdict.
    """
    if not picks or any(p is None for p in picks):
        return None
    return picks[0] if len(set(picks)) == 1 else "inconsistent"  # type: ignore[return-value]


def shown(item: JudgeItem, order: str) -> tuple[Candidate, Candidate]:
    """The two answers as the judge sees them in ``order``: (Assistant A, Assistant B)."""
    a, b = item.answers
    return (a, b) if order == "AB" else (b, a)


def pair_values(item: JudgeItem, order: str) -> dict[str, str]:
    """A pairwise template's values in ``order``: the question, Assistant A's and Assistant B's answers."""
    a, b = shown(item, order)
    return {"question": item.question, "answer_a": a.text, "answer_b": b.text}


# -- conversations and results ----------------------------------------------------------------------------------
def user(text: str, system: str | None = None) -> Conversation:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]


def text_of(result: Completion) -> tuple[str, str]:
    """(raw text, error): a completion's text, or the refusal that replaced it (the driver's fallback policy)."""
    return ("", result.text) if result.finish_reason == "error" else (result.text, "")


def probs_of(result: Completion) -> dict[str, float] | str:
    """A ``choices`` step's probabilities, or the refusal's message."""
    raw, err = text_of(result)
    return err if err else json.loads(raw)


def read(
    ctx: RunContext,
    requests: Sequence[StepRequest],
    results: Sequence[Completion],
    parse: Callable[[str], Any],
    key: str,
    structured: Callable[[Any], Any] | None = None,
) -> tuple[list[str], list[str], list[Any]]:
    """(raw texts, refusal messages or '', what was read or None when refused) of one round's outputs; each
    reading also goes on its step in the trace, as ``parsed[key]``, with ``parse_ok`` (False when nothing was
    read, or when constrained output was not the expected JSON and the free-text ``parse`` had to read it).

    A constrained completion is read by ``structured`` from its decoded JSON (None: not readable), else by
    ``parse`` from its text."""
    texts = [text_of(r) for r in results]
    raws, errors = [t for t, _ in texts], [e for _, e in texts]
    readings: list[Any] = []
    for req, result, raw, err in zip(requests, results, raws, errors, strict=True):
        if err:  # refused: nothing was parsed, so there is no parse to fail
            readings.append(None)
            ctx.parsed(req.id, **{key: None})
            continue
        reading = None
        from_json = False
        if result.constrained and structured is not None:
            obj = parse_json(raw)
            reading = structured(obj) if obj is not None else None
            from_json = reading is not None
            if not from_json:
                ctx.note("the constrained output is not the expected JSON; read it as free text", step=req.id)
        if reading is None:
            reading = parse(raw)
        readings.append(reading)
        ok = reading is not None and (from_json or not (result.constrained and structured is not None))
        ctx.parsed(req.id, **{key: reading}, parse_ok=ok)
    return raws, errors, readings


# -- the judge base -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JudgeConfig:
    """Decoding settings shared by every generating judge. Subclasses add their own fields, all with defaults."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0
    #: generate the verdict under its JSON schema (``prompts/<template>.schema.json``); the published prompt is
    #: sent unchanged. Left out of ``config_dict`` while False, so earlier verdicts keep their config hash.
    structured: bool = False

    def gen_params(self, **overrides: Any) -> GenParams:
        return GenParams(self.max_new_tokens, self.temperature, self.top_p, self.seed).replace(**overrides)


class Judge:
    """Base class. Subclasses set the class attributes and implement :meth:`judge`."""

    registered_name: ClassVar[str] = ""
    mode: ClassVar[Mode] = "pairwise"
    description: ClassVar[str] = ""
    source: ClassVar[str] = ""  # the paper behind the judge
    Config: ClassVar[type[Any]] = JudgeConfig
    prompts: ClassVar[tuple[str, ...]] = ()  # template names; their text is part of the config hash
    needs_choice_probs: ClassVar[bool] = False

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        if config is None or isinstance(config, dict):
            config = self.make_config({**(config or {}), **overrides})
        elif overrides:
            config = dataclasses.replace(config, **overrides)
        self.config = config
        self.check_config()
        self._hashes: dict[str, str] = {}

    @classmethod
    def make_config(cls, d: dict[str, Any]) -> Any:
        known = {f.name for f in fields(cls.Config)}
        unknown = set(d) - known
        if unknown:
            raise InputError(
                f"judge {cls.registered_name!r} has no setting {', '.join(sorted(unknown))}; "
                f"settings: {', '.join(sorted(known))}"
            )
        try:
            return cls.Config(**d)
        except (TypeError, ValueError) as e:
            raise InputError(f"judge {cls.registered_name!r}: {e}") from None

    def check_config(self) -> None:
        """Reject settings that cannot work; the generating judges validate their decoding params here."""
        if isinstance(self.config, JudgeConfig):
            self.config.gen_params()

    @property
    def name(self) -> str:
        return self.registered_name

    def config_dict(self) -> dict[str, Any]:
        d = asdict(self.config)
        if (
            d.get("structured") is False
        ):  # the default, added later: the hashes of earlier verdicts stay valid
            del d["structured"]
        return d

    def config_hash(self, judge_model: str) -> str:
        """Identifies (judge, judge model, settings, prompt text): equal hashes mean the same verdicts to expect."""
        if judge_model in self._hashes:
            return self._hashes[judge_model]
        body = {
            "judge": self.name,
            "judge_model": judge_model,
            "config": self.config_dict(),
            "prompts": {p: load_prompt(p) for p in self.prompts},
        }
        digest = hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()[:16]
        self._hashes[judge_model] = digest
        return digest

    def bind(self, registry: Any, judge_model: str) -> None:  # noqa: B027 - optional hook
        """Called once before judging by every service that owns a model registry (CLI, UI, compare, bench)
        with the judge model's name: a judge that scores with more than the judge model (``dpo_implicit``'s
        reference model) loads it here, through ``registry.backend(name)``. The default needs nothing."""

    def check_backend(self, backend: Backend) -> None:
        if self.needs_choice_probs and not backend.supports_choice_probs:
            raise InputError(
                f"judge {self.name!r} reads next-token probabilities, which model {backend.model_name!r} "
                "does not offer; use a local (transformers) model, or the 'pairwise' judge"
            )

    def check_items(self, items: Sequence[JudgeItem]) -> None:
        want = 1 if self.mode == "single" else 2
        for item in items:
            if len(item.answers) != want:
                raise InputError(
                    f"judge {self.name!r} judges {want} answer(s) per item, not {len(item.answers)}"
                )

    def run(self, item: JudgeItem, ctx: RunContext) -> JudgeGen:
        """One item's rounds of step requests (``ctx.request``), then its verdict (:meth:`verdict`)."""
        raise NotImplementedError

    def run_params(self) -> StrategyParams:
        """The driver's run params: this judge's decoding settings (a request may override them)."""
        if not isinstance(self.config, JudgeConfig):
            return StrategyParams()  # a judge that only reads next-token probabilities
        c = self.config
        return StrategyParams(
            max_new_tokens=c.max_new_tokens,
            temperature=c.temperature,
            top_p=c.top_p,
            seed=c.seed,
            structured=c.structured,
        )

    def judge(self, items: Sequence[JudgeItem], backend: Backend) -> list[Verdict]:
        """One verdict per item, in order; valid or failed, never missing; each carries its trace.

        Raises what the driver could not pin on an item (a backend failure, a bug): see its fallback policy.
        """
        self.check_items(items)
        self.check_backend(backend)
        programs = [JudgeRun(self, item) for item in items]
        events = drive([DriveJob(p, p.item.question, backend, self.run_params()) for p in programs])
        try:
            for ev in events:
                if ev.kind == "run_finished" and ev.result is not None:
                    programs[ev.run].finish(ev.result)
        finally:
            events.close()
        return [p.verdict for p in programs if p.verdict is not None]

    def verdict(self, item: JudgeItem, model: str, **kw: Any) -> Verdict:
        """A verdict for ``item`` by ``model`` with this judge's identity filled in."""
        return Verdict(
            judge=self.name,
            judge_model=model,
            config=self.config_dict(),
            config_hash=self.config_hash(model),
            mode=self.mode,
            self_judge=model in item.models,
            key=item.key,
            **kw,
        )

    def swap_verdict(self, item: JudgeItem, model: str, picks: Sequence[str | None], **kw: Any) -> Verdict:
        """A pairwise verdict from each order's own pick (in that order's labels), MT-Bench's position swap:
        a winner only if both orders agree, 'inconsistent' if they disagree, failed if either has no pick."""
        order_winners = [to_caller_label(p, o) for p, o in zip(picks, ORDERS, strict=True)]
        winner = combine_orders(order_winners)
        return self.verdict(
            item,
            model,
            ok=winner is not None,
            winner=winner,
            orders=list(ORDERS),
            order_winners=order_winners,
            **kw,
        )


JudgeGen = Generator[list[StepRequest], list[Completion], Verdict]


class JudgeRun:
    """The driver's program for one item: :meth:`Judge.run`, with its verdict kept and summed up as the
    trace's final answer. A refused request reaches the judge as an error completion (``accepts_refusals``)."""

    accepts_refusals = True
    variant = None

    def __init__(self, judge: Judge, item: JudgeItem) -> None:
        self.judge, self.item = judge, item
        self.verdict: Verdict | None = None

    @property
    def name(self) -> str:
        return self.judge.name

    def run(self, question: str, ctx: RunContext) -> Generator[list[StepRequest], list[Completion], str]:
        ctx.trace.params = self.judge.config_dict()
        self.verdict = yield from self.judge.run(self.item, ctx)
        return self.verdict.summary

    def finish(self, result: RunResult) -> None:
        """Attach the trace. A run ended by an ``InputError`` is a failed verdict; any other error is raised."""
        if result.exception is not None and not isinstance(result.exception, InputError):
            raise result.exception
        if result.error is not None:
            orders = list(ORDERS) if self.judge.mode == "pairwise" else ["A"]
            self.verdict = self.judge.verdict(
                self.item, result.model, ok=False, orders=orders, error=result.error
            )
        assert self.verdict is not None  # a finished run without an error returned its verdict
        self.verdict.trace = result.trace.to_dict()


JUDGES: Registry[Judge] = Registry("judge", Judge, "studio.judges")


def make_judge(name: str, config: dict[str, Any] | None = None) -> Judge:
    """The judge ``name`` with ``config``; unknown names and settings are user errors."""
    if name not in JUDGES:
        raise InputError(f"unknown judge {name!r}; known: {', '.join(JUDGES.names())}")
    return JUDGES.get(name)(config)
