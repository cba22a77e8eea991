"""KTO (Ethayarajh et al. 2024, arXiv 2402.01306) with ``trl.KTOTrainer``, from unpaired labels.

The store turns votes and verdicts into (prompt, completion, desirable?) rows: a pair's winner is desirable and
its loser not; a human tie marks both desirable, a both-bad vote both undesirable; single judge ratings count
when ``good_rating`` is set (see ``storage.pairs``). The reference is the base with the adapter disabled.
"""

from __future__ import annotations

from typing import Any

from studio.training import data
from studio.training.base import Trainer
from studio.training.config import KTOTrainConfig


class KTO(Trainer):
    Config = KTOTrainConfig
    description = "KTO on unpaired desirable / undesirable answers (votes, both-bad, ties, single ratings)"
    paper = (
        "Ethayarajh et al. 2024, KTO: Model Alignment as Prospect Theoretic Optimization, arXiv 2402.01306"
    )
    curves = ("loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "kl")

    @classmethod
    def _data(cls, store: Any, config: Any, limit: int) -> tuple[data.DataPreview, Any]:
        return data.kto_preview(store, cls.registered_name, config, limit)

    def train(self) -> dict[str, Any]:
        from trl import KTOTrainer

        from studio.training.common import (
            load_table,
            load_tokenizer,
            policy_model,
            resume_from,
            save_policy,
            trl_config,
        )

        cfg = self.config
        model, peft = policy_model(cfg)
        trainer = KTOTrainer(
            model=model, args=trl_config(cfg, self.run), train_dataset=load_table(self.run.path / "train.parquet"),
            processing_class=load_tokenizer(cfg.model_path), peft_config=peft, callbacks=[self.callback()],
        )  # fmt: skip
        out = trainer.train(resume_from_checkpoint=resume_from(self.run))
        paths = save_policy(trainer, cfg, self.run)
        return {
            "models": [self.model_entry(paths)],
            "metrics": dict(out.metrics),
            "steps": trainer.state.global_step,
        }
