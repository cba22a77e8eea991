"""Local models through transformers: a dir, a hub id (when online), a GGUF file, or a base plus a LoRA adapter."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from studio.backends.base import (
    Backend,
    Completion,
    Conversation,
    GenParams,
    OnDelta,
    Stopwatch,
    apply_stop,
    until_stop,
    validate_conversation,
)
from studio.errors import BackendError, InputError


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

    def _gen_kwargs(self, params: GenParams) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "max_new_tokens": params.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if params.greedy:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        else:
            kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, top_k=None)
        if params.stop:
            kw.update(stop_strings=list(params.stop), tokenizer=self.tokenizer)
        return kw

    # -- Backend API -----------------------------------------------------------------------------------------
    def chat(
        self, conversations: Sequence[Conversation], params: GenParams, on_delta: OnDelta | None = None
    ) -> list[Completion]:
        import torch

        if not conversations:
            return []
        id_lists = [self._prompt_ids(c, params.max_new_tokens) for c in conversations]
        batch = self._batch(id_lists)
        kw = self._gen_kwargs(params)
        if on_delta is not None:
            kw["streamer"] = _BatchStreamer(self.tokenizer, len(id_lists), on_delta, self._eos_ids())
        with self._lock:
            if params.seed is not None:
                torch.manual_seed(params.seed)
            watch = Stopwatch()
            out = self.model.generate(**batch, **kw)
            latency = watch.elapsed
        new = out[:, batch["input_ids"].shape[1] :]
        eos = self._eos_ids()
        results = []
        for ids_in, row in zip(id_lists, new.tolist(), strict=True):
            n = next((i for i, t in enumerate(row) if t in eos), None)
            finished = n is not None
            row = row[:n] if finished else row
            text, stopped = apply_stop(self.tokenizer.decode(row, skip_special_tokens=True), params.stop)
            results.append(
                Completion(
                    text=text.strip(),
                    prompt_tokens=len(ids_in),
                    completion_tokens=len(row),
                    latency_s=latency,
                    finish_reason="stop" if finished or stopped else "length",
                    model=self.model_name,
                )
            )
        return results

    def _eos_ids(self) -> set[int]:
        return set(_as_list(self.model.generation_config.eos_token_id)) | {self.tokenizer.eos_token_id}

    def stream(self, conversation: Conversation, params: GenParams) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        ids = self._prompt_ids(conversation, params.max_new_tokens)
        batch = self._batch([ids])
        cancelled = threading.Event()

        class _Cancel(StoppingCriteria):
            def __call__(self, *_: Any, **__: Any) -> bool:
                return cancelled.is_set()

        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kw = self._gen_kwargs(params) | {
            "streamer": streamer,
            "stopping_criteria": StoppingCriteriaList([_Cancel()]),
        }
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

    def sequence_logprob(
        self, conversations: Sequence[Conversation], completions: Sequence[str]
    ) -> list[float]:
        import torch

        rows, spans = [], []
        for conv, comp in zip(conversations, completions, strict=True):
            prompt = self._prompt_ids(conv, 1)
            comp_ids = self.tokenizer.encode(comp, add_special_tokens=False)
            rows.append(prompt + comp_ids)
            spans.append(len(comp_ids))
        if not rows:
            return []
        batch = self._batch(rows)
        with self._lock, torch.no_grad():
            logits = self.model(**batch).logits.float()
        logp = torch.log_softmax(logits[:, :-1, :], dim=-1)
        target = batch["input_ids"][:, 1:]
        tok_lp = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1)
        return [float(tok_lp[i, tok_lp.shape[1] - n :].sum()) if n else 0.0 for i, n in enumerate(spans)]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))


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
