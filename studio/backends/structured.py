"""Grammar-constrained step outputs on the transformers backend: a JSON schema per row, enforced by xgrammar.

:func:`build_processor` returns one ``transformers`` logits processor for a whole batch. Each row has its own
JSON schema (canonical text, :func:`studio.backends.base.schema_text`) or None (that row decodes freely). At each
step the processor feeds every constrained row's last token to that row's xgrammar matcher and masks the row's
logits to the tokens the schema allows next. When a row's JSON is complete the only token left is the end of turn,
so the row stops there instead of rambling on.

It never crashes generation: a row whose matcher rejects a token, or whose mask leaves no token at all (another
processor banned every allowed one), is released (decodes freely from then on) and recorded in
``processor.broken_rows``, so the backend reports that row ``constrained=False`` with the reason.

Why xgrammar (measured by ``bench/structured.py``, see docs/structured.md): it masks a 49k-token vocabulary in
tens of microseconds per row from a precompiled grammar, supports mixed constrained/free rows in one batch, and
is a small wheel.
"""

from __future__ import annotations

import functools
import json
import re
import threading
import weakref
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from studio.errors import BackendError, InputError

if TYPE_CHECKING:  # imported lazily at run time: torch and transformers are heavy, xgrammar may be missing
    import transformers

INSTALL_HINT = "install it with `pip install xgrammar` (it is a dependency of reasoning-studio)"
# JSON layout the grammar allows: one space after ',' and ':', no newlines. A free-whitespace grammar lets a small
# model emit newlines forever inside an object; a fixed layout also makes equal outputs byte-identical.
SEPARATORS = (", ", ": ")

# Row states. FREE: no schema. ACTIVE: constrained. DONE: the grammar accepted its end (the end-of-turn token was
# emitted); only end-of-turn tokens are allowed from then on. ENDED: generation stopped the row before its JSON
# was complete (its token cap, a stop string) and now feeds it padding. BROKEN: released, see broken_rows.
FREE, ACTIVE, DONE, ENDED, BROKEN = "free", "active", "done", "ended", "broken"


def _xgrammar() -> Any:
    try:
        import xgrammar
    except ImportError as e:
        raise BackendError(f"structured output needs the xgrammar package ({e}); {INSTALL_HINT}") from None
    return xgrammar


# -- compiling ------------------------------------------------------------------------------------------------------
class _Compilers:
    """One xgrammar compiler per (tokenizer, vocab size, stop tokens), and its compiled grammars per schema.

    Keyed on the tokenizer object itself (weakly: an unloaded model's entries go with its tokenizer). Building a
    TokenizerInfo reads the whole vocabulary (~0.15 s for 49k tokens); compiling a schema takes milliseconds."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_tokenizer: weakref.WeakKeyDictionary[Any, dict[tuple[Any, ...], _Compiler]] = (
            weakref.WeakKeyDictionary()
        )

    def get(self, tokenizer: Any, vocab_size: int, stop_token_ids: tuple[int, ...] | None) -> _Compiler:
        key = (vocab_size, stop_token_ids)
        with self._lock:
            per = self._by_tokenizer.setdefault(tokenizer, {})
            if key not in per:
                per[key] = _Compiler(tokenizer, vocab_size, stop_token_ids)
            return per[key]


class _Compiler:
    def __init__(self, tokenizer: Any, vocab_size: int, stop_token_ids: tuple[int, ...] | None) -> None:
        xgr = _xgrammar()
        stops = list(stop_token_ids) if stop_token_ids else None
        self.info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stops)
        self.compiler = xgr.GrammarCompiler(self.info, max_threads=2, cache_enabled=False)
        self.vocab_size = vocab_size
        self.stop_ids = list(self.info.stop_token_ids)
        self._grammars: dict[str, Any] = {}
        self._lock = threading.Lock()

    def grammar(self, schema: str) -> Any:
        with self._lock:
            if schema not in self._grammars:
                self._grammars[schema] = self._compile(schema)
            return self._grammars[schema]

    def _compile(self, schema: str) -> Any:
        check_schema(schema)
        try:
            return self.compiler.compile_json_schema(schema, any_whitespace=False, separators=SEPARATORS)
        except Exception as e:  # xgrammar raises RuntimeError with a C++ location prefix
            raise InputError(
                f"the JSON schema cannot be used for structured output: {_xgr_message(e)}"
            ) from None


_COMPILERS = _Compilers()


def _xgr_message(e: BaseException) -> str:
    """'[19:22:38] /project/cpp/json_schema_converter.cc:5082: Unsupported type "foo"' -> 'Unsupported type "foo"'."""
    text = " ".join(str(e).split()) or type(e).__name__
    return re.sub(r"\[[\d:]+\]\s*\S+\.cc:\d+:\s*", "", text).strip()


def check_schema(schema: str) -> dict[str, Any]:
    """The schema as a dict, or an InputError naming what is wrong with it: not JSON, not an object, or a
    keyword xgrammar would silently ignore (``maxLength``/``minLength`` beside ``pattern``, ``uniqueItems``)."""
    try:
        obj = json.loads(schema)
    except (TypeError, ValueError) as e:
        raise InputError(f"the JSON schema is not valid JSON: {e}") from None
    if not isinstance(obj, dict):
        raise InputError(f"a JSON schema must be a JSON object, not {type(obj).__name__}")
    for node in _walk(obj):
        if isinstance(node.get("pattern"), str) and any(
            isinstance(node.get(k), int) for k in ("maxLength", "minLength")
        ):
            raise InputError(
                f"string schema {json.dumps(node)[:120]} has both a pattern and min/maxLength; xgrammar would "
                "ignore the length, so put it in the pattern instead (e.g. '^[^?]{1,150}\\\\?$')"
            )
        pattern = node.get("pattern")
        if isinstance(pattern, str) and max(repetition_bounds(pattern), default=0) > MAX_REPEAT:
            raise InputError(
                f"pattern '{pattern}' repeats up to {max(repetition_bounds(pattern))} times; above {MAX_REPEAT} "
                "xgrammar computes every token's mask while decoding (about as slow as the model itself). "
                "Use an unbounded repetition (e.g. '^[^?\\n]+\\?$', and bound the list with maxItems) or a bound "
                f"up to {MAX_REPEAT} (compiling costs ~20 ms per count, once per process)"
            )
        if node.get("uniqueItems") is True:
            raise InputError(
                f"array schema {json.dumps(node)[:120]} asks for uniqueItems, which xgrammar does not enforce; "
                "drop it and deduplicate after parsing"
            )
    return obj


#: The largest bound of a repetition (``X{m,n}``) a pattern may use. xgrammar expands a bounded repetition into
#: one state per count and precomputes each state's token mask when compiling: ~20 ms of compile per count
#: (``[^?\\n]{1,60}`` 0.9 s, ``{1,127}`` 2.6 s, cached per process), then 0.005 ms per token. Above ~128 it
#: stops expanding and computes masks while decoding instead: 25-35 ms per token per row, as long as a decode
#: step of the default model. Splitting ``{3,300}`` into ``{3,100}{0,100}{0,100}`` is fast to decode but takes
#: 38 s to compile. Measured on the default model's 49k vocabulary (bench/structured.py).
MAX_REPEAT = 128
_BOUNDS = re.compile(r"\{(\d+)(?:,(\d+))?\}")


def repetition_bounds(pattern: str) -> list[int]:
    """The upper bound of every bounded repetition in a regular expression (``{n}`` and ``{m,n}``; ``{m,}``
    is unbounded and not listed): ``'^[^?]{3,300}\\?$'`` -> ``[300]``."""
    bounds, i = [], 0
    while i < len(pattern):
        j = _atom_end(pattern, i)
        m = _BOUNDS.match(pattern, j)
        if m and pattern[i:j] not in ("(", "|", "^"):
            bounds.append(int(m.group(2) or m.group(1)))
            j = m.end()
        i = j
    return bounds


def _atom_end(p: str, i: int) -> int:
    """The end of the atom starting at ``i``: an escape, a class, a whole group, or one character."""
    if p[i] == "\\":
        return min(i + 2, len(p))
    if p[i] == "[":
        k = i + 1
        if k < len(p) and p[k] == "^":
            k += 1
        if k < len(p) and p[k] == "]":
            k += 1
        while k < len(p) and p[k] != "]":
            k += 2 if p[k] == "\\" else 1
        return min(k + 1, len(p))
    if p[i] == "(":
        depth, k = 0, i
        while k < len(p):
            if p[k] == "\\":
                k += 2
                continue
            if p[k] == "[":
                k = _atom_end(p, k)
                continue
            depth += {"(": 1, ")": -1}.get(p[k], 0)
            k += 1
            if depth == 0:
                return k
        return len(p)
    return i + 1


def _walk(node: Any) -> Any:
    if isinstance(node, dict):
        yield node
        for v in node.values():
            yield from _walk(v)
    elif isinstance(node, list):
        for v in node:
            yield from _walk(v)


def compile_schemas(
    tokenizer: Any,
    vocab_size: int,
    schemas: Sequence[str | None],
    stop_token_ids: Sequence[int] | None = None,
) -> tuple[list[Any], list[int]]:
    """The compiled grammar of each row (None for a free row) and the grammar's stop tokens. Cached."""
    comp = _COMPILERS.get(
        tokenizer, int(vocab_size), tuple(sorted(stop_token_ids)) if stop_token_ids else None
    )
    return [None if s is None else comp.grammar(s) for s in schemas], comp.stop_ids


# -- the processor ----------------------------------------------------------------------------------------------------
def build_processor(
    tokenizer: Any,
    vocab_size: int,
    schemas: Sequence[str | None],
    *,
    stop_token_ids: Sequence[int] | None = None,
) -> transformers.LogitsProcessor | None:
    """One logits processor constraining each row of a batch to its JSON schema; None when no row has one.

    ``vocab_size`` is the width of the model's logits (``model.get_output_embeddings().weight.shape[0]``), which
    may exceed ``len(tokenizer)``. ``stop_token_ids``: the tokens that end a row (default: the tokenizer's end of
    sequence); give the same set ``generate`` stops on. Pass the processor in ``generate(logits_processor=[...])``
    after any other custom processor: transformers runs custom processors after its own penalties and before
    temperature/top-p, so sampling then happens among the allowed tokens only.

    After ``generate``, ``processor.broken_rows`` maps each row that had to be released to the reason (the row
    decoded freely from there on: report it ``constrained=False`` with that warning). Use one processor per
    ``generate`` call (a new call with a different prompt resets it). Raises :class:`BackendError` without
    xgrammar and :class:`InputError` for a schema it cannot compile."""
    schemas = list(schemas)
    if all(s is None for s in schemas):
        return None
    grammars, stop_ids = compile_schemas(tokenizer, vocab_size, schemas, stop_token_ids)
    pad = getattr(tokenizer, "pad_token_id", None)
    return _processor_class()(grammars, int(vocab_size), stop_ids, pad)


@functools.cache
def _processor_class() -> type:
    """The processor class, defined on first use so that importing this module costs nothing."""
    import torch
    import transformers

    xgr = _xgrammar()

    class SchemaLogitsProcessor(transformers.LogitsProcessor):
        """Per-row JSON-schema masks for one batch (see :func:`build_processor`)."""

        def __init__(
            self, grammars: list[Any], vocab_size: int, stop_ids: list[int], pad_id: int | None
        ) -> None:
            self.grammars = grammars
            self.vocab_size = vocab_size
            self.stop_ids = list(stop_ids)
            self.end_ids = set(stop_ids) | ({pad_id} if pad_id is not None else set())
            #: row -> why it was released from its schema (it then decoded freely)
            self.broken_rows: dict[int, str] = {}
            self.steps = 0  # decoding steps seen by this processor (one per generated token)
            self._prompt: Any = None
            self._start(None)

        # state ---------------------------------------------------------------------------------------------------
        def _start(self, prompt: Any) -> None:
            self._prompt = None if prompt is None else prompt.clone()
            self.matchers = [None if g is None else xgr.GrammarMatcher(g) for g in self.grammars]
            self.state = [FREE if g is None else ACTIVE for g in self.grammars]
            self.broken_rows = {}
            self.steps = 0
            self.bitmask = xgr.allocate_token_bitmask(len(self.grammars), self.vocab_size)
            self._eos_row = xgr.allocate_token_bitmask(1, self.vocab_size)[0].zero_()
            for t in self.stop_ids:
                bit = 1 << (t % 32)
                self._eos_row[t // 32] |= bit - (1 << 32) if bit >= 1 << 31 else bit  # int32 words

        def constrained(self, row: int) -> bool:
            """Whether the row's whole output was generated under its schema."""
            return self.grammars[row] is not None and row not in self.broken_rows

        def _break(self, row: int, why: str) -> None:
            self.state[row] = BROKEN
            self.broken_rows[row] = why

        def _is_new_call(self, input_ids: Any) -> bool:
            p = self._prompt
            if p is None:
                return True
            if input_ids.shape[0] != p.shape[0] or input_ids.shape[1] != p.shape[1] + self.steps + 1:
                return True
            return not torch.equal(input_ids[:, : p.shape[1]], p)

        # the step --------------------------------------------------------------------------------------------------
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if input_ids.shape[0] != len(self.grammars):
                raise RuntimeError(
                    f"structured output: the batch has {input_ids.shape[0]} rows but {len(self.grammars)} schemas "
                    "were given (beam search and num_return_sequences are not supported)"
                )
            if self._is_new_call(input_ids):
                self._start(input_ids)
            else:
                self.steps += 1
                self._accept(input_ids[:, -1].tolist())
            return self._mask(scores)

        def _accept(self, last: list[int]) -> None:
            for i, tok in enumerate(last):
                if self.state[i] != ACTIVE:
                    continue
                m = self.matchers[i]
                try:
                    ok = m.accept_token(tok)
                except Exception as e:  # never let the matcher end generation
                    self._break(i, f"the grammar matcher failed ({_xgr_message(e)}); the rest is free text")
                    continue
                if ok:
                    if m.is_terminated():
                        self.state[i] = DONE
                elif tok in self.end_ids:
                    self.state[i] = ENDED  # generate stopped the row (its cap, a stop string): it now pads
                else:
                    self._break(i, f"token {tok} broke the schema; the rest of this output is free text")

        def _mask(self, scores: Any) -> Any:
            active = [i for i, s in enumerate(self.state) if s == ACTIVE]
            done = [i for i, s in enumerate(self.state) if s == DONE]
            for i in list(active):
                try:
                    self.matchers[i].fill_next_token_bitmask(self.bitmask, i)
                except Exception as e:
                    self._break(i, f"the grammar matcher failed ({_xgr_message(e)}); the rest is free text")
                    active.remove(i)
            for i in done:  # the grammar has ended: only end-of-turn tokens
                self.bitmask[i] = self._eos_row
            rows = active + done
            if not rows:
                return scores
            before = scores.clone() if active else None  # a whole clone: 8x cheaper than picking rows
            bitmask = self.bitmask if scores.device.type == "cpu" else self.bitmask.to(scores.device)
            backend = (
                "cpu" if scores.device.type == "cpu" and scores.dtype == torch.float32 else "torch_native"
            )
            xgr.apply_token_bitmask_inplace(
                scores, bitmask, vocab_size=self.vocab_size, indices=rows, backend=backend
            )
            if scores.shape[-1] > self.vocab_size:  # logits wider than the grammar's vocabulary
                scores[rows, self.vocab_size :] = float("-inf")
            if active:
                self._release_empty(scores, active, before)
            return scores

        def _release_empty(self, scores: Any, active: list[int], before: Any) -> None:
            """A row whose mask left no token (another processor banned every allowed one) gets its logits back:
            sampling from nothing would crash. If those logits only allowed an end token, generation is ending
            the row on purpose (its own cap); otherwise the row is released from its schema."""
            top = scores.amax(dim=-1).tolist()
            for i in active:
                if top[i] != float("-inf"):
                    continue
                scores[i] = before[i]
                finite = torch.nonzero(~torch.isneginf(before[i])).flatten().tolist()
                if finite and set(finite) <= self.end_ids:
                    self.state[i] = ENDED
                else:
                    self._break(
                        i,
                        "no token allowed by the schema survived the other logits processors (e.g. "
                        "no_repeat_ngram_size); the rest of this output is free text",
                    )

    return SchemaLogitsProcessor
