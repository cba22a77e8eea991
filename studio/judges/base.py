"""Judge building blocks: the items a judge sees, the ``Verdict`` it returns, swap logic and the ``Judge`` base.

A judge takes a batch of items and one backend and returns one :class:`Verdict` per item, in order. Each judge
sends all the model calls of one round (every item, every order, every sample) to the backend as one batch.

Verdicts are values. Output a judge cannot parse gives a verdict with ``ok=False`` and its raw text; it is never
dropped. ``winner`` is in the caller's labels: 'A' is ``item.answers[0]``, whatever order the judge saw them in.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from functools import cache
from pathlib import Path
from typing import Any, ClassVar, Literal

from studio.backends.base import Backend, Completion, Conversation, GenParams
from studio.errors import InputError
from studio.registry import Registry

PROMPTS_DIR = Path(__file__).parent / "prompts"

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

    @classmethod
    def single(cls, question: str, answer: str | Candidate, key: Any = None) -> JudgeItem:
        return cls(question, (_candidate(answer),), key)

    @classmethod
    def pair(cls, question: str, a: str | Candidate, b: str | Candidate, key: Any = None) -> JudgeItem:
        return cls(question, (_candidate(a), _candidate(b)), key)

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

    @property
    def outcome(self) -> str | None:
        """The winner as metrics count it: 'inconsistent' is a tie; None for a failed or single verdict."""
        return "tie" if self.winner == "inconsistent" else self.winner

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


# -- prompts ------------------------------------------------------------------------------------------------------
_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")


@cache
def load_prompt(name: str) -> str:
    """A template from ``prompts/<name>.txt``, without its ``#`` header lines (which cite the source paper)."""
    lines = (PROMPTS_DIR / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "\n".join(lines).strip("\n")


def render(name: str, **values: str) -> str:
    """Fill ``{placeholders}`` in one pass, so braces inside a question or an answer are left alone."""
    template = load_prompt(name)
    missing = {m for m in _PLACEHOLDER.findall(template) if m not in values}
    if missing:
        raise KeyError(f"prompt {name!r} needs {', '.join(sorted(missing))}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), template)


def user(text: str, system: str | None = None) -> Conversation:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": text}]


# -- calling the backend without letting one bad item sink the batch ------------------------------------------------
def safe_chat(backend: Backend, convs: Sequence[Conversation], params: GenParams) -> list[Completion | str]:
    """``backend.chat`` on the whole batch; if the batch is refused (one prompt too long), each call alone.

    A call refused alone (``InputError``) gives its error message (a ``str``) in its slot instead of a Completion.
    """
    if not convs:
        return []
    try:
        return list(backend.chat(convs, params))
    except InputError:
        if len(convs) == 1:
            return [_refused(convs[0], backend, params)]
    return [_refused(conv, backend, params) for conv in convs]


def _refused(conv: Conversation, backend: Backend, params: GenParams) -> Completion | str:
    """One call alone; a refused prompt becomes its error text. A backend failure (server down) propagates:
    it says nothing about the item, so it must not become a failed verdict that a resumed job would skip."""
    try:
        return backend.chat([conv], params)[0]
    except InputError as e:
        return str(e)


def safe_choice_probs(
    backend: Backend, convs: Sequence[Conversation], choices: Sequence[str]
) -> list[dict[str, float] | str]:
    """``backend.choice_probs`` on the whole batch, falling back to one call each like :func:`safe_chat`."""
    if not convs:
        return []
    try:
        return list(backend.choice_probs(convs, choices))
    except InputError:
        pass
    out: list[dict[str, float] | str] = []
    for conv in convs:
        try:
            out.append(backend.choice_probs([conv], choices)[0])
        except InputError as e:
            out.append(str(e))
    return out


def text_of(result: Completion | str) -> tuple[str, str]:
    """(raw text, error): a Completion's text, or the error that replaced it."""
    return (result.text, "") if isinstance(result, Completion) else ("", result)


# -- the judge base -----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class JudgeConfig:
    """Decoding settings shared by every generating judge. Subclasses add their own fields, all with defaults."""

    max_new_tokens: int = 512
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = 0

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
        return asdict(self.config)

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

    def judge(self, items: Sequence[JudgeItem], backend: Backend) -> list[Verdict]:
        """One verdict per item, in order; valid or failed, never missing."""
        raise NotImplementedError

    def verdict(self, item: JudgeItem, backend: Backend, **kw: Any) -> Verdict:
        """A verdict for ``item`` with this judge's identity filled in."""
        model = backend.model_name
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


JUDGES: Registry[Judge] = Registry("judge", Judge, "studio.judges")


def make_judge(name: str, config: dict[str, Any] | None = None) -> Judge:
    """The judge ``name`` with ``config``; unknown names and settings are user errors."""
    if name not in JUDGES:
        raise InputError(f"unknown judge {name!r}; known: {', '.join(JUDGES.names())}")
    return JUDGES.get(name)(config)
