"""Job side: loading models, tokenizers and data, building TRL configs, saving results. Imports torch.

Everything here runs in the job process, which never opens the store (see ``studio.training.rundir``).
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import torch

from studio.errors import InputError, StudioError
from studio.training.config import TrainConfig
from studio.training.rundir import RunDir

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def cuda() -> bool:
    return torch.cuda.is_available()


def weights_dtype(cfg: TrainConfig) -> torch.dtype:
    """The dtype asked for; auto: fp32 on a CPU (stable, and what TRL uses), and on a GPU with bf16 the frozen
    base of a LoRA run in bf16 (a full fine-tune keeps fp32 master weights under bf16 autocast)."""
    if cfg.dtype != "auto":
        return DTYPES[cfg.dtype]
    bf16 = cuda() and torch.cuda.is_bf16_supported() and cfg.use_lora
    return torch.bfloat16 if bf16 else torch.float32


def prepare_torch(threads: int) -> None:
    """Threads from the settings, and gradients on (a generation backend in this process turns them off)."""
    if threads > 0:
        torch.set_num_threads(threads)
    torch.set_grad_enabled(True)


def load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_causal_lm(cfg: TrainConfig, *, adapter: str | None = None, trainable: bool = True) -> Any:
    """The base weights plus ``adapter`` (None: the config's own adapter, if the base is an adapter model)."""
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(cfg.model_path, dtype=weights_dtype(cfg))
    adapter = cfg.adapter_path if adapter is None else adapter
    if adapter:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, adapter, is_trainable=trainable)
    return model


def merged_causal_lm(cfg: TrainConfig, adapter: str | None = None) -> Any:
    """The base with ``adapter`` (None: the config's own) merged in: a plain model to put a new LoRA on."""
    adapter = cfg.adapter_path if adapter is None else adapter
    model = load_causal_lm(cfg, adapter=adapter, trainable=False)
    return model.merge_and_unload() if adapter else model


def policy_model(cfg: TrainConfig, adapter: str | None = None) -> tuple[Any, Any]:
    """(model, peft_config) for DPO, KTO and RLOO: a fresh LoRA on the base, or, when the start is itself an
    adapter (None: the config's own), that adapter trained on. TRL then keeps a frozen copy of it as the
    reference, so the reference is always the starting model."""
    adapter = cfg.adapter_path if adapter is None else adapter
    if adapter and cfg.use_lora:
        return load_causal_lm(cfg, adapter=adapter, trainable=True), None
    if adapter:
        return merged_causal_lm(cfg, adapter), None
    return load_causal_lm(cfg, adapter=""), lora_config(cfg, "CAUSAL_LM")


def lora_config(cfg: TrainConfig, task_type: str, modules_to_save: list[str] | None = None) -> Any:
    if not cfg.use_lora:
        return None
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=list(cfg.lora_target_modules),
        modules_to_save=modules_to_save,
        task_type=task_type,
    )


def load_table(path: Path) -> Any:
    """A snapshot as an in-memory ``datasets.Dataset`` (from Arrow: no cache files written anywhere)."""
    import pyarrow.parquet as pq
    from datasets import Dataset

    return Dataset(pq.read_table(path))


def trl_config(cfg: TrainConfig, run: RunDir, output_dir: Path | None = None, **overrides: Any) -> Any:
    """The TRL config instance for ``cfg``; a TRL field it rejects is a user error with TRL's message."""
    bf16_ok = cuda() and torch.cuda.is_bf16_supported()
    kwargs = cfg.trl_args(str(output_dir or run.checkpoints), cuda=cuda(), bf16_ok=bf16_ok)
    kwargs.update(overrides)
    try:
        return cfg.trl_config_class()(**kwargs)
    except (TypeError, ValueError) as e:
        raise InputError(f"invalid training settings: {e}") from None


def resume_from(run: RunDir, where: Path | None = None) -> str | None:
    """The checkpoint to resume from, when the runner asked for a resume."""
    if not run.status().get("resume"):
        return None
    ckpt = run.last_checkpoint(where)
    print(
        f"[studio] resuming from {ckpt}" if ckpt else "[studio] resume: no checkpoint yet, starting over",
        flush=True,
    )
    return ckpt


def save_policy(trainer: Any, cfg: TrainConfig, run: RunDir, target: Path | None = None) -> dict[str, str]:
    """Save the trained adapter (or full model) and the tokenizer; returns the registry paths."""
    if cfg.use_lora:
        out = target or run.adapter
        trainer.save_model(str(out))
        return {"path": cfg.model_path, "adapter": str(out)}
    out = target or run.model
    trainer.save_model(str(out))
    return {"path": str(out), "adapter": ""}


def describe_error(e: BaseException) -> str:
    """One line for the user: out of memory and a full disk are named as such, with what to do."""
    text = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
    if isinstance(e, torch.OutOfMemoryError) or "out of memory" in text.lower():
        return (
            f"out of memory: {text[:300]}. Lower per_device_train_batch_size or max_length, "
            "or turn on gradient_checkpointing"
        )
    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
        return f"the disk is full ({e.filename or 'run dir'}): free some space, then resume the job"
    if isinstance(e, StudioError):
        return text
    return f"{type(e).__name__}: {text[:500]}"
