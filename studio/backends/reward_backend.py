"""A reward model as a backend: scores answers (``reward``), never generates.

Two kinds of model load here:

- a reward model trained in the studio (:mod:`studio.training.reward`): the base causal LM as a sequence classifier
  with one output, plus the base's own adapter (when it was trained from an adapter model) and the reward LoRA
  adapter with its trained ``score`` head, merged (:func:`studio.training.reward.load_reward_model`);
- any Hugging Face ``AutoModelForSequenceClassification`` dir with one label (``models add --kind reward``).

Each answer is tokenized as ``trl.RewardTrainer`` (1.12) tokenized a conversational pair: the chat template over
the prompt messages plus the answer as an assistant message (no generation prompt), padded on the right with
the tokenizer's pad token, which is also the model's ``pad_token_id``: the classifier reads the last non-pad
token. A tokenizer without a chat template gets TRL's plain-text form: prompt text + answer + EOS.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from studio.backends.base import Backend, Completion, Conversation, GenParams, OnDelta, validate_conversation
from studio.backends.transformers_backend import pick_device, pick_dtype, right_padded, token_chunks
from studio.errors import BackendError, InputError

NOT_A_GENERATOR = "a reward model scores answers; it does not generate: use it as a judge (reward_model)"


class RewardModelBackend(Backend):
    supports_reward = True

    def __init__(
        self,
        path: str,
        *,
        adapter: str | None = None,
        base_adapter: str | None = None,
        dtype: str = "auto",
        device: str | None = None,
        model_name: str = "",
        **_: Any,
    ) -> None:
        self.model_name = model_name or path
        self.device = device or pick_device()
        self.dtype = pick_dtype(dtype, self.device)
        self._lock = threading.Lock()
        for what, where in (
            ("model dir", path),
            ("adapter dir", adapter),
            ("base adapter dir", base_adapter),
        ):
            if where and where.startswith((".", "/", "~")) and not Path(where).expanduser().exists():
                raise BackendError(f"{what} {where!r} does not exist")
        self.tokenizer = self._tokenizer(path)
        model = self._model(path, adapter or "", base_adapter or "")
        model.config.pad_token_id = self.tokenizer.pad_token_id  # as RewardTrainer set it
        self.model = model.to(self.device).eval()
        self.context_length = int(getattr(model.config, "max_position_embeddings", 2048) or 2048)

    @staticmethod
    def _tokenizer(path: str) -> Any:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(Path(path).expanduser()))
        if tok.pad_token is None:  # as the studio's trainers do (studio.training.common.load_tokenizer)
            tok.pad_token = tok.eos_token
        tok.padding_side = "right"
        return tok

    def _model(self, path: str, adapter: str, base_adapter: str) -> Any:
        from transformers import AutoConfig

        local = str(Path(path).expanduser())
        if adapter:  # trained in the studio: the head is in the adapter (modules_to_save)
            from studio.training.reward import load_reward_model

            return load_reward_model(local, base_adapter=base_adapter, adapter=adapter, dtype=self.dtype)
        config = AutoConfig.from_pretrained(local)
        archs = getattr(config, "architectures", None) or []
        if not any(a.endswith("ForSequenceClassification") for a in archs) or config.num_labels != 1:
            raise InputError(
                f"{path!r} is not a reward model: a reward model is a sequence classifier with one label "
                f"(architectures {archs or 'unknown'}, {config.num_labels} labels); a studio-trained reward "
                "model is registered with its adapter"
            )
        from transformers import AutoModelForSequenceClassification

        return AutoModelForSequenceClassification.from_pretrained(local, dtype=self.dtype)

    # -- what a reward model does -------------------------------------------------------------------------------
    def _ids(self, conversation: Conversation, completion: str) -> list[int]:
        validate_conversation(conversation)
        tok = self.tokenizer
        if tok.chat_template:
            answered = [*conversation, {"role": "assistant", "content": completion}]
            ids = tok.apply_chat_template(answered, tokenize=True, return_dict=True)["input_ids"]
        else:
            text = "\n".join(m["content"] for m in conversation) + completion
            ids = tok(text + (tok.eos_token or ""))["input_ids"]
        if len(ids) > self.context_length:
            raise InputError(
                f"the prompt and answer are {len(ids)} tokens, but {self.model_name} reads at most "
                f"{self.context_length}: shorten them"
            )
        return list(ids)

    def reward(self, conversations: Sequence[Conversation], completions: Sequence[str]) -> list[float]:
        """The classifier's output for each (conversation, answer); right-padded passes of similar lengths."""
        rows = [self._ids(c, a) for c, a in zip(conversations, completions, strict=True)]
        out = [0.0] * len(rows)
        for chunk in token_chunks([len(r) for r in rows]):
            for i, score in zip(chunk, self._scores([rows[i] for i in chunk]), strict=True):
                out[i] = score
        return out

    def _scores(self, rows: list[list[int]]) -> list[float]:
        import torch

        input_ids, mask = right_padded(rows, self.tokenizer.pad_token_id, self.device)
        with self._lock, torch.no_grad():
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits
        return [float(x) for x in logits[:, 0].float().tolist()]

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False))

    # -- what it does not do ------------------------------------------------------------------------------------
    def chat(
        self, conversations: Sequence[Conversation], params: GenParams, on_delta: OnDelta | None = None
    ) -> list[Completion]:
        raise InputError(f"{self.model_name}: {NOT_A_GENERATOR}")

    def stream(self, conversation: Conversation, params: GenParams) -> Iterator[str]:
        raise InputError(f"{self.model_name}: {NOT_A_GENERATOR}")
