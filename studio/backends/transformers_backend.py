"""Local models through transformers: a dir, a hub id (when online), a GGUF file, or a base plus a LoRA adapter."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from studio.backends.base import (
    Backend,
    Completion,
    Conversation,
    GenParams,
    OnDelta,
    OnRowDone,
    Stopwatch,
    apply_stop,
    row_params,
    until_stop,
    validate_conversation,
)
from studio.errors import BackendError, InputError

try:  # the per-row stopping criteria subclass this; transformers is imported anyway with the backend
    from transformers import StoppingCriteria, StoppingCriteriaList
except ImportError:  # pragma: no cover - transformers is a hard dependency
    StoppingCriteria = object  # type: ignore[assignment,misc]


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return any(f in flags for f in ("avx512_bf16", "amx_bf16"))


def pick_device() -> str:
    import torch

    if torch.cuda.is_available():
        return "cuda"
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return "mps"
    return "cpu"


def pick_dtype(requested: str, device: str) -> Any:
    """``auto``: bf16 where the hardware does it natively (1.94x faster than fp32 on this CPU), else fp32/fp16."""
    import torch

    if requested != "auto":
        return getattr(torch, requested)
    if device == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device == "cpu" and _cpu_has_bf16():
        return torch.bfloat16
    return torch.float32


class TransformersBackend(Backend):
    supports_choice_probs = True
    supports_sequence_logprob = True

    def __init__(
        self,
        path: str,
        *,
        gguf_file: str | None = None,
        adapter: str | None = None,
        dtype: str = "auto",
        device: str | None = None,
        model_name: str = "",
        **_: Any,
    ) -> None:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.model_name = model_name or path
        self.device = device or pick_device()
        self.dtype = pick_dtype(dtype, self.device)
        # One lock per loaded model: generate() is not re-entrant, and the UI calls us from many threads.
        self._lock = threading.Lock()
        local = Path(path).expanduser()
        if (path.startswith((".", "/", "~")) or local.exists()) and not local.exists():
            raise BackendError(f"model dir {path!r} does not exist")
        kw: dict[str, Any] = {"gguf_file": gguf_file} if gguf_file else {}
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(str(local) if local.exists() else path, **kw)
            model = AutoModelForCausalLM.from_pretrained(
                str(local) if local.exists() else path, dtype=self.dtype, **kw
            )
        except OSError as e:
            raise BackendError(
                f"cannot load model {path!r}: {_first_line(e)}. Give a local model dir, or a hub id while online."
            ) from None
        if adapter:
            model = self._load_adapter(model, adapter)
        self.model = model.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)

    @staticmethod
    def _load_adapter(model: Any, adapter: str) -> Any:
        from peft import PeftModel

        if not Path(adapter).expanduser().exists():
            raise BackendError(f"adapter dir {adapter!r} does not exist")
        return PeftModel.from_pretrained(model, str(Path(adapter).expanduser()))

    # -- prompts -----------------------------------------------------------------------------------------
    def _prompt_ids(self, conversation: Conversation, reserve: int) -> list[int]:
        """Token ids of the chat-templated conversation; too long a prompt is rejected, never cut silently.

        A conversation ending with an assistant message is a prefill: the model continues that message (no
        end-of-turn after it, no new assistant header), e.g. "Score: " so the next token is the score."""
        validate_conversation(conversation)
        prefill = conversation[-1].get("role") == "assistant"
        ids = self.tokenizer.apply_chat_template(
            conversation,
            add_generation_prompt=not prefill,
            continue_final_message=prefill,
            tokenize=True,
        )
        if isinstance(ids, dict) or hasattr(ids, "keys"):
            ids = ids["input_ids"]
        limit = self.context_length - reserve
        if len(ids) > limit:
            raise InputError(
                f"the prompt is {len(ids)} tokens, but {self.model_name} accepts at most {limit} "
                f"({self.context_length} context minus {reserve} for the answer). Shorten the prompt "
                "or lower max_new_tokens."
            )
        return list(ids)

    def _batch(self, id_lists: Sequence[list[int]]) -> dict[str, Any]:
        import torch

        width = max(len(ids) for ids in id_lists)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.full((len(id_lists), width), pad, dtype=torch.long)
        mask = torch.zeros((len(id_lists), width), dtype=torch.long)
        for i, ids in enumerate(id_lists):  # left padding: every row's last token is the real last token
            input_ids[i, width - len(ids) :] = torch.tensor(ids)
            mask[i, width - len(ids) :] = 1
        return {"input_ids": input_ids.to(self.device), "attention_mask": mask.to(self.device)}

    def _gen_kwargs(
        self, rows: Sequence[GenParams], width: int, id_lists: Sequence[list[int]]
    ) -> dict[str, Any]:
        """``generate`` kwargs for a batch whose rows share ``rows[0].batch_key``: sampling, the global token cap
        (the largest row's; each row stops at its own in :class:`_RowStop`), and the logits processors."""
        from transformers import LogitsProcessorList

        params = rows[0]
        kw: dict[str, Any] = {
            "max_new_tokens": max(p.max_new_tokens for p in rows),
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if params.greedy:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=None)
        procs: list[Any] = []
        if params.repetition_penalty != 1.0:
            procs.append(_RepetitionPenalty(params.repetition_penalty, width, id_lists, self._eos_ids()))
        if params.no_repeat_ngram_size:
            free = [p.schema is None for p in rows]
            if any(free):
                procs.append(_NoRepeatNGram(params.no_repeat_ngram_size, width, free))
        kw["logits_processor"] = LogitsProcessorList(procs)
        return kw

    def _structured(self, schemas: Sequence[str | None]) -> tuple[Any, str]:
        """The grammar processor for the rows' schemas, or (None, why not) when it cannot be built."""
        try:
            from studio.backends.structured import build_processor
        except ImportError as e:
            return None, f"structured output is unavailable ({_first_line(e)}); ran as free text"
        try:
            vocab = int(self.model.get_output_embeddings().weight.shape[0])
        except Exception:  # a model without output embeddings: its config's vocab size
            vocab = int(self.model.config.vocab_size)
        try:
            return build_processor(
                self.tokenizer, vocab, list(schemas), stop_token_ids=sorted(self._eos_ids())
            ), ""
        except BackendError as e:
            return None, f"{e}; ran as free text"

    # -- Backend API -----------------------------------------------------------------------------------------
    supports_rows = True

    def chat(
        self,
        conversations: Sequence[Conversation],
        params: GenParams | Sequence[GenParams],
        on_delta: OnDelta | None = None,
        on_row_done: OnRowDone | None = None,
    ) -> list[Completion]:
        """One ``generate`` for the batch. Rows may differ in ``max_new_tokens`` and ``schema``; each row stops
        at its own end (end of turn, a stop string, its own cap) and is reported to ``on_row_done`` at once."""
        import torch

        if not conversations:
            return []
        rows = row_params(params, len(conversations))
        id_lists = [self._prompt_ids(c, p.max_new_tokens) for c, p in zip(conversations, rows, strict=True)]
        batch = self._batch(id_lists)
        width = batch["input_ids"].shape[1]
        kw = self._gen_kwargs(rows, width, id_lists)
        warnings: list[list[str]] = [[] for _ in rows]
        constrained = [p.schema is not None for p in rows]
        proc = None
        if any(constrained):
            proc, why = self._structured([p.schema for p in rows])
            if proc is None:
                for i in (i for i, c in enumerate(constrained) if c):
                    warnings[i].append(why)
                constrained = [False] * len(rows)
            else:
                kw["logits_processor"].append(proc)
        if rows[0].no_repeat_ngram_size:
            for i in (i for i, c in enumerate(constrained) if c):
                warnings[i].append(
                    f"no_repeat_ngram_size={rows[0].no_repeat_ngram_size} not applied: JSON output repeats "
                    "n-grams such as '\", \"' by design"
                )
        if on_delta is not None:
            kw["streamer"] = _BatchStreamer(self.tokenizer, len(id_lists), on_delta, self._eos_ids())
        watch = Stopwatch()
        grammar = proc if any(constrained) else None
        stop = _RowStop(self, rows, id_lists, width, watch, constrained, warnings, on_row_done, grammar)
        kw["stopping_criteria"] = StoppingCriteriaList([stop])
        with self._lock:
            if rows[0].seed is not None:
                torch.manual_seed(rows[0].seed)
            watch.t0 = time.perf_counter()
            out = self.model.generate(**batch, **kw)
        stop.finish_all(out[:, width:])
        return [c for c in stop.done if c is not None]

    def _eos_ids(self) -> set[int]:
        return set(_as_list(self.model.generation_config.eos_token_id)) | {self.tokenizer.eos_token_id}

    def stream(self, conversation: Conversation, params: GenParams) -> Iterator[str]:
        import torch
        from transformers import TextIteratorStreamer

        ids = self._prompt_ids(conversation, params.max_new_tokens)
        batch = self._batch([ids])
        cancelled = threading.Event()

        class _Cancel(StoppingCriteria):
            def __call__(self, *_: Any, **__: Any) -> bool:
                return cancelled.is_set()

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kw = self._gen_kwargs([params], len(ids), [ids]) | {
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_Cancel()]),
        }
        if params.schema is not None:  # constrained when possible; the text is the same JSON either way
            proc, _ = self._structured([params.schema])
            if proc is not None:
                kw["logits_processor"].append(proc)
        if params.stop:
            kw.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        errors: list[BaseException] = []

        def work() -> None:
            try:
                self.model.generate(**batch, **kw)
            except BaseException as e:  # surfaced to the consumer below
                errors.append(e)
                streamer.end()

        with self._lock:
            if params.seed is not None:
                torch.manual_seed(params.seed)
            thread = threading.Thread(target=work, daemon=True)
            thread.start()
            try:
                yield from until_stop(streamer, params.stop)
            finally:
                cancelled.set()  # the consumer stopped reading (or a stop string hit): end generation
                thread.join()
        if errors:
            raise BackendError(f"generation failed: {_first_line(errors[0])}")

    def _last_logits(self, conversations: Sequence[Conversation]) -> Any:
        import torch

        id_lists = [self._prompt_ids(c, 1) for c in conversations]
        batch = self._batch(id_lists)
        with self._lock, torch.no_grad():  # local, never process-wide: training may share the process
            logits = self.model(**batch, logits_to_keep=1).logits[:, -1, :]
        return logits.float()

    def choice_probs(
        self, conversations: Sequence[Conversation], choices: Sequence[str]
    ) -> list[dict[str, float]]:
        import torch

        token_ids = []
        for c in choices:
            ids = self.tokenizer.encode(c, add_special_tokens=False)
            if len(ids) != 1:
                raise InputError(
                    f"choice {c!r} is {len(ids)} tokens for {self.model_name}; choices must be single tokens"
                )
            token_ids.append(ids[0])
        if not conversations:
            return []
        probs = torch.softmax(self._last_logits(conversations)[:, token_ids], dim=-1)
        return [dict(zip(choices, row.tolist(), strict=True)) for row in probs]

    def completion_ids(self, conversation: Conversation, completion: str) -> tuple[list[int], list[int]]:
        """(prompt ids, completion ids) as ``trl.DPOTrainer`` (1.12) tokenizes a conversational pair: the prompt
        with the generation prompt, and what the chat template over prompt + answer (as an assistant message)
        adds after it: the answer and the template's end of turn (SmolLM2: ``<|im_end|>`` and a newline).
        A template that does not extend the prompt that way falls back to the answer's own tokens."""
        prompt = self._prompt_ids(conversation, 1)
        if conversation[-1].get("role") != "assistant":
            answered = [*conversation, {"role": "assistant", "content": completion}]
            full = self.tokenizer.apply_chat_template(answered, tokenize=True, return_dict=True)["input_ids"]
            if list(full[: len(prompt)]) == prompt and len(full) > len(prompt):
                return prompt, list(full[len(prompt) :])
        return prompt, self.tokenizer.encode(completion, add_special_tokens=False)

    def sequence_logprob(
        self, conversations: Sequence[Conversation], completions: Sequence[str]
    ) -> list[float]:
        """Sum of the log-probabilities of each completion's tokens (:meth:`completion_ids`: the answer and its
        end of turn, as DPO training scores them); the batch in forward passes of similar lengths (``token_chunks``)."""
        rows, spans = [], []
        for conv, comp in zip(conversations, completions, strict=True):
            prompt, comp_ids = self.completion_ids(conv, comp)
            rows.append(prompt + comp_ids)
            spans.append(len(comp_ids))
        out = [0.0] * len(rows)
        for chunk in token_chunks([len(r) for r in rows]):
            scores = self._completion_logprobs([rows[i] for i in chunk], [spans[i] for i in chunk])
            for i, score in zip(chunk, scores, strict=True):
                out[i] = score
        return out

    def _completion_logprobs(self, rows: list[list[int]], spans: list[int]) -> list[float]:
        """One forward pass; rows right-padded, as DPO's collator lays a batch out (every row starts at position 0,
        so a row scores the same alone or in a batch)."""
        import torch

        input_ids, mask = right_padded(rows, self.tokenizer.pad_token_id, self.device)
        with self._lock, torch.no_grad():
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits[:, :-1, :], dim=-1)
        tok_lp = logp.gather(-1, input_ids[:, 1:].unsqueeze(-1)).squeeze(-1)
        # token t is predicted at position t - 1: a row's completion is its last n real tokens
        return [
            float(tok_lp[i, len(r) - 1 - n : len(r) - 1].sum())
            for i, (r, n) in enumerate(zip(rows, spans, strict=True))
        ]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))


#: tokens per forward pass of a scoring call (rows x longest row): bounds the logits a pass holds
#: (2048 x the default model's 49152-entry vocabulary in fp32 is 400 MB)
SCORE_TOKENS = 2048


def token_chunks(lengths: Sequence[int], budget: int = SCORE_TOKENS) -> list[list[int]]:
    """Row indices in chunks of similar length whose (rows x longest) stays within ``budget`` tokens (a row
    longer than the budget goes alone); every index once, chunks in order of length."""
    chunks: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if chunks and (len(chunks[-1]) + 1) * lengths[i] <= budget:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


def right_padded(rows: Sequence[list[int]], pad: int, device: Any) -> tuple[Any, Any]:
    """(input_ids, attention_mask) of ``rows`` padded on the right with ``pad``."""
    import torch

    width = max(len(r) for r in rows)
    input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, ids in enumerate(rows):
        input_ids[i, : len(ids)] = torch.tensor(ids)
        mask[i, : len(ids)] = 1
    return input_ids.to(device), mask.to(device)


class _RowStop(StoppingCriteria):
    """Per-row ends for one batch: each row stops at its end of turn, its first stop string or its own token
    cap, and is finished at once: its Completion is built (latency = batch start to its last token) and handed
    to ``on_row_done`` from the generating thread, while the other rows go on decoding."""

    def __init__(
        self,
        backend: TransformersBackend,
        rows: Sequence[GenParams],
        id_lists: Sequence[list[int]],
        width: int,
        watch: Stopwatch,
        constrained: Sequence[bool],
        warnings: Sequence[list[str]],
        on_row_done: OnRowDone | None,
        grammar: Any = None,
    ) -> None:
        self.grammar = grammar  # the structured-output processor: it knows which rows broke their schema
        self.backend, self.rows, self.id_lists, self.width, self.watch = backend, rows, id_lists, width, watch
        self.constrained, self.warnings, self.on_row_done = constrained, warnings, on_row_done
        self.eos = backend._eos_ids()
        self.done: list[Completion | None] = [None] * len(rows)

    def __call__(self, input_ids: Any, scores: Any, **_: Any) -> Any:
        import torch

        n_new = input_ids.shape[1] - self.width
        last = input_ids[:, -1].tolist()
        flags = []
        for i, tok in enumerate(last):
            if self.done[i] is None and n_new > 0:
                if tok in self.eos:
                    self._finish(i, input_ids[i, self.width : -1].tolist(), "stop")
                elif self.rows[i].stop and self._stopped(input_ids[i, self.width :].tolist(), self.rows[i]):
                    self._finish(i, input_ids[i, self.width :].tolist(), "stop")
                elif n_new >= self.rows[i].max_new_tokens:
                    self._finish(i, input_ids[i, self.width :].tolist(), "length")
            flags.append(self.done[i] is not None)
        return torch.tensor(flags, dtype=torch.bool, device=input_ids.device)

    def _stopped(self, tokens: list[int], params: GenParams) -> bool:
        text = self.backend.tokenizer.decode(tokens, skip_special_tokens=True)
        return apply_stop(text, params.stop)[1]

    def _finish(self, i: int, tokens: list[int], reason: str) -> None:
        text = self.backend.tokenizer.decode(tokens, skip_special_tokens=True)
        text, stopped = apply_stop(text, self.rows[i].stop)
        constrained, warnings = self.constrained[i], list(self.warnings[i])
        if constrained and self.grammar is not None and not self.grammar.constrained(i):
            constrained = False
            warnings.append(self.grammar.broken_rows.get(i, "the output left its schema"))
        c = Completion(
            text=text.strip(),
            prompt_tokens=len(self.id_lists[i]),
            completion_tokens=len(tokens),
            latency_s=self.watch.elapsed,
            finish_reason="stop" if stopped else reason,
            model=self.backend.model_name,
            warnings=warnings,
            constrained=constrained,
        )
        self.done[i] = c
        if self.on_row_done is not None:
            self.on_row_done(i, c)

    def finish_all(self, new: Any) -> None:
        """After ``generate``: rows it ended without this criteria seeing them (none, normally) end here."""
        for i, row in enumerate(new.tolist()):
            if self.done[i] is None:
                n = next((k for k, t in enumerate(row) if t in self.eos), None)
                self._finish(i, row[:n] if n is not None else row, "stop" if n is not None else "length")


class _RepetitionPenalty:
    """CTRL's repetition penalty (Keskar et al. 2019) on each row's OUTPUT tokens only. transformers' own
    ``repetition_penalty`` also counts the prompt, which keeps a model from naming what the question names;
    measured on the default model (System 1, 10 base questions each; docs/eval.md "Decoding defaults"): at 1.1,
    prompt and output gave s2a_opinions 0.78 and cove_lists precision 0.53, output only 0.90 and 0.43 (no penalty:
    0.88 and 0.41); at 1.2 output only, 0.90 and 0.64. The loops it is for are in the output. The end-of-turn token
    is never penalised (it is also this model's pad token): penalising it keeps a small model from stopping."""

    def __init__(self, penalty: float, width: int, id_lists: Sequence[list[int]], eos: set[int]) -> None:
        self.penalty, self.starts = penalty, [width] * len(id_lists)
        self.eos = sorted(eos)

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        import torch

        scores = scores.clone()
        for i, start in enumerate(self.starts):
            ids = input_ids[i, start:]
            ids = ids[~torch.isin(ids, torch.tensor(self.eos, device=ids.device))]
            got = scores[i].gather(0, ids)
            scores[i].scatter_(0, ids, torch.where(got < 0, got * self.penalty, got / self.penalty))
        return scores


class _NoRepeatNGram:
    """No n-gram of ``size`` occurs twice in a row's output (the prompt does not count, unlike transformers'
    ``no_repeat_ngram_size``), on the rows marked in ``rows`` only (constrained rows are left alone: JSON repeats
    n-grams by design, and banning them could leave the grammar no token at all)."""

    def __init__(self, size: int, width: int, rows: Sequence[bool]) -> None:
        self.n, self.width, self.rows = size, width, list(rows)
        self.seen: list[dict[tuple[int, ...], set[int]]] = [{} for _ in rows]
        self.length = [0] * len(rows)  # output tokens already indexed into ``seen``

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        n = self.n
        new = input_ids[:, self.width :]
        if new.shape[1] < n - 1:
            return scores
        scores = scores.clone()
        for i, on in enumerate(self.rows):
            if not on:
                continue
            toks = new[i].tolist()
            for k in range(
                max(self.length[i], n - 1), len(toks)
            ):  # index the n-grams completed since last time
                self.seen[i].setdefault(tuple(toks[k - n + 1 : k]), set()).add(toks[k])
            self.length[i] = len(toks)
            banned = self.seen[i].get(tuple(toks[len(toks) - n + 1 :]) if n > 1 else ())
            if banned:
                scores[i, list(banned)] = float("-inf")
        return scores


class _BatchStreamer:
    """A ``generate`` streamer for a whole batch: reports each row's decoded text as it grows.

    (transformers' TextStreamer handles one row only.) The first ``put`` carries the prompt and is skipped."""

    def __init__(self, tokenizer: Any, n: int, on_delta: OnDelta, eos: set[int]) -> None:
        self.tokenizer, self.on_delta, self.eos = tokenizer, on_delta, eos
        self.rows: list[list[int]] = [[] for _ in range(n)]
        self.finished = [False] * n
        self.prompt_seen = False

    def put(self, value: Any) -> None:
        if not self.prompt_seen:
            self.prompt_seen = True
            return
        tokens = value.reshape(len(self.rows), -1)[:, -1].tolist()
        for i, tok in enumerate(tokens):
            if self.finished[i]:
                continue
            if tok in self.eos:
                self.finished[i] = True
                continue
            self.rows[i].append(tok)
            self.on_delta(i, self.tokenizer.decode(self.rows[i], skip_special_tokens=True))

    def end(self) -> None:
        pass


def _as_list(x: Any) -> list[int]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [int(x)]


def _first_line(e: BaseException) -> str:
    return (str(e).strip().splitlines() or [type(e).__name__])[0]
