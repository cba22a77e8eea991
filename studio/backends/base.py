"""The Backend protocol: what every model backend offers to strategies, judges and the UI."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from studio.errors import InputError
from studio.registry import Registry

Message = dict[str, str]  # {"role": "system"|"user"|"assistant", "content": str}
Conversation = list[Message]
#: ``on_delta(index, text_so_far)``: live text of one row of a batch while it is generated
OnDelta = Callable[[int, str], None]
#: ``on_row_done(index, completion)``: one row of a batch has finished (see ``Backend.supports_rows``)
OnRowDone = Callable[[int, "Completion"], None]


@dataclass(frozen=True)
class Decoding:
    """The decoding fields, declared and checked once: :class:`GenParams` (one model call) and
    :class:`~studio.strategies.base.StrategyParams` (a whole run) both start with them."""

    max_new_tokens: int = 256
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    #: CTRL-style penalty on tokens already generated (1.0 = off): breaks a small model's loops. The
    #: transformers backend counts the output only; a server (vLLM, llama.cpp) applies its own rule
    repetition_penalty: float = 1.0
    #: no n-gram of this size occurs twice in the output (0 = off)
    no_repeat_ngram_size: int = 0

    def __post_init__(self) -> None:
        if self.max_new_tokens < 1:
            raise InputError(f"max_new_tokens must be >= 1, not {self.max_new_tokens}")
        if not 0.5 <= self.repetition_penalty <= 3.0:
            raise InputError(f"repetition_penalty must be in [0.5, 3], not {self.repetition_penalty}")
        if self.no_repeat_ngram_size < 0:
            raise InputError(f"no_repeat_ngram_size must be >= 0 (0 = off), not {self.no_repeat_ngram_size}")
        if self.temperature < 0:
            raise InputError(f"temperature must be >= 0, not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise InputError(f"top_p must be in (0, 1], not {self.top_p}")


@dataclass(frozen=True)
class GenParams(Decoding):
    """Decoding parameters. ``temperature == 0`` means greedy decoding."""

    stop: tuple[str, ...] = ()
    #: a JSON schema (canonical JSON text, see :func:`schema_text`) the output must follow; None = free text.
    #: A backend that cannot constrain generates free text and says so (``Completion.constrained``).
    schema: str | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        object.__setattr__(self, "stop", tuple(self.stop or ()))

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def replace(self, **kw: Any) -> GenParams:
        return GenParams(**{**asdict(self), **kw})

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["stop"] = list(self.stop)
        return d

    @property
    def batch_key(self) -> GenParams:
        """What rows must share to be one batch of a backend that ``supports_rows``: everything but the
        per-row fields (``max_new_tokens``, ``schema``)."""
        return self.replace(max_new_tokens=1, schema=None)


def row_params(params: GenParams | Sequence[GenParams], n: int) -> list[GenParams]:
    """One GenParams per row: ``params`` repeated, or the per-row list checked to have ``n`` entries that share
    a :attr:`GenParams.batch_key`."""
    if isinstance(params, GenParams):
        return [params] * n
    rows = list(params)
    if len(rows) != n:
        raise ValueError(f"{len(rows)} params for {n} conversations")
    if len({p.batch_key for p in rows}) > 1:
        raise ValueError("the rows of one batch may differ in max_new_tokens and schema only")
    return rows


@dataclass
class Completion:
    text: str
    prompt_tokens: int
    completion_tokens: int
    latency_s: float
    finish_reason: str = "stop"  # "stop" | "length" | "error"
    model: str = ""
    warnings: list[str] = field(default_factory=list)
    #: whether the output was generated under ``GenParams.schema`` (False: free text, even if a schema was asked)
    constrained: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Backend(ABC):
    """A loaded model. Implementations must be safe to call from many threads at once."""

    #: the registry name of the model this backend serves (set by the model registry)
    model_name: str = ""
    #: the model's decoding defaults (StrategyParams fields), set by the model registry from ``models.toml``;
    #: the fields a run does not set come from here (:func:`studio.strategies.base.resolve_params`)
    decoding_defaults: dict[str, Any] = {}  # noqa: RUF012 - replaced per instance, never mutated
    #: whether ``choice_probs`` / ``sequence_logprob`` work
    supports_choice_probs: bool = False
    supports_sequence_logprob: bool = False
    #: whether ``reward`` works (a reward model: a sequence classifier with one output)
    supports_reward: bool = False
    #: whether ``chat`` takes per-row params and reports rows as they finish: ``params`` may be a list, one
    #: GenParams per conversation, differing only in ``max_new_tokens`` and ``schema`` (same
    #: :attr:`GenParams.batch_key`), and ``on_row_done(index, completion)`` is called (from any thread) as soon
    #: as a row has finished, with that row's own ``latency_s`` (batch start to its last token), before
    #: ``chat`` returns the same completions. The driver passes either only to a backend that declares this.
    supports_rows: bool = False

    @abstractmethod
    def chat(
        self, conversations: Sequence[Conversation], params: GenParams, on_delta: OnDelta | None = None
    ) -> list[Completion]:
        """Answer a batch of independent conversations; one Completion each, in order.

        With ``on_delta``, each row's text so far is reported while it is generated (for live UIs). A backend
        that ``supports_rows`` also takes a list of params and ``on_row_done`` (see there)."""

    @abstractmethod
    def stream(self, conversation: Conversation, params: GenParams) -> Iterator[str]:
        """Yield text chunks of one answer as they are generated."""

    def choice_probs(
        self, conversations: Sequence[Conversation], choices: Sequence[str]
    ) -> list[dict[str, float]]:
        """Next-token probabilities over single-token ``choices``, renormalised to sum to 1."""
        raise NotImplementedError(f"{type(self).__name__} cannot read next-token probabilities")

    def sequence_logprob(
        self, conversations: Sequence[Conversation], completions: Sequence[str]
    ) -> list[float]:
        """Sum of log-probabilities of each completion given its conversation."""
        raise NotImplementedError(f"{type(self).__name__} cannot score sequences")

    def reward(self, conversations: Sequence[Conversation], completions: Sequence[str]) -> list[float]:
        """A reward model's scalar score of each completion as the answer to its conversation."""
        raise NotImplementedError(f"{type(self).__name__} is not a reward model")

    def count_tokens(self, text: str) -> int:
        """Token count; backends without a tokenizer estimate ~4 characters per token."""
        return max(1, len(text) // 4)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (threads, HTTP pools)."""


BACKENDS: Registry[Backend] = Registry("backend", Backend, "studio.backends")


def schema_text(schema: dict[str, Any] | str) -> str:
    """The compact JSON text of a JSON schema: the same schema gives the same text (so equal params batch).
    Keys keep their order: a grammar generates properties in the schema's order (reasoning before a verdict)."""
    import json

    obj = json.loads(schema) if isinstance(schema, str) else schema
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def validate_conversation(conversation: Conversation) -> None:
    """Reject conversations the user could not have meant: empty, whitespace only, or NUL bytes."""
    if not conversation:
        raise InputError("the conversation is empty: type a prompt first")
    for m in conversation:
        if m.get("role") not in ("system", "user", "assistant"):
            raise InputError(f"message role must be system, user or assistant, not {m.get('role')!r}")
        content = m.get("content")
        if not isinstance(content, str):
            raise InputError("message content must be text")
        if "\x00" in content:
            raise InputError("the prompt contains NUL bytes (\\x00); remove them and try again")
    if not any(m["role"] == "user" and m["content"].strip() for m in conversation):
        raise InputError("the prompt is empty or whitespace only: type a question first")


def apply_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """Cut ``text`` at the first stop string. Returns (text, whether a stop string was found)."""
    cut = min((i for s in stop if s and (i := text.find(s)) >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


def until_stop(chunks: Iterable[str], stop: Sequence[str]) -> Iterator[str]:
    """Stream ``chunks`` up to the first stop string: the text before it is yielded, the rest is not read."""
    emitted = ""
    for chunk in chunks:
        if not chunk:
            continue
        candidate, stopped = apply_stop(emitted + chunk, stop)
        if stopped:
            if len(candidate) > len(emitted):
                yield candidate[len(emitted) :]
            return
        emitted = candidate
        yield chunk


class Stopwatch:
    def __init__(self) -> None:
        self.t0 = time.perf_counter()

    @property
    def elapsed(self) -> float:
        return time.perf_counter() - self.t0
