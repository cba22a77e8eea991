"""DPO (Rafailov et al. 2023, arXiv 2305.18290) with ``trl.DPOTrainer`` on the store's preference pairs.

With LoRA, no reference model is loaded: the reference is the base with the adapter disabled. Starting from a
model that is itself an adapter, that adapter keeps training and TRL keeps a frozen copy of it as the
reference (so the reference is the starting model, M_t, as Self-Rewarding needs).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studio.training import data
from studio.training.base import Trainer
from studio.training.config import DPOTrainConfig
from studio.training.rundir import RunDir

DPO_CURVES = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")


def run_dpo(
    cfg: DPOTrainConfig,
    run: RunDir,
    dataset: Any,
    *,
    callback: Any,
    adapter: str | None = None,
    checkpoints: Path | None = None,
    target: Path | None = None,
) -> dict[str, Any]:
    """Train DPO on ``dataset`` from the base (+ ``adapter``, None: the config's); save into ``target``. Returns paths and metrics."""
    from trl import DPOTrainer

    from studio.training.common import load_tokenizer, policy_model, resume_from, save_policy, trl_config

    checkpoints = checkpoints or run.checkpoints
    model, peft = policy_model(cfg, adapter)
    trainer = DPOTrainer(
        model=model,
        args=trl_config(cfg, run, checkpoints),
        train_dataset=dataset,
        processing_class=load_tokenizer(cfg.model_path),
        peft_config=peft,
        callbacks=[callback],
    )
    out = trainer.train(resume_from_checkpoint=resume_from(run, checkpoints))
    paths = save_policy(trainer, cfg, run, target)
    return {**paths, "metrics": dict(out.metrics), "steps": int(trainer.state.global_step)}


class DPO(Trainer):
    Config = DPOTrainConfig
    description = "DPO on preference pairs from the store (human votes, judge verdicts or both)"
    paper = "Rafailov et al. 2023, Direct Preference Optimization, arXiv 2305.18290"
    curves = DPO_CURVES

    @classmethod
    def _data(cls, store: Any, config: Any, limit: int) -> tuple[data.DataPreview, Any]:
        return data.pairs_preview(store, cls.registered_name, config, limit)

    def train(self) -> dict[str, Any]:
        from studio.training.common import load_table

        out = run_dpo(
            self.config, self.run, load_table(self.run.path / "train.parquet"), callback=self.callback()
        )
        return {"models": [self.model_entry(out)], "metrics": out["metrics"], "steps": out["steps"]}
