"""Reward model (InstructGPT step 2, Ouyang et al. 2022, arXiv 2203.02155) with ``trl.RewardTrainer``.

``AutoModelForSequenceClassification`` with one output, LoRA on the attention projections plus the fresh
``score`` head trained in full (``modules_to_save=["score"]``). The loss is -log sigma(r(x, y_w) - r(x, y_l)); the
pairs come from the store (rankings are already expanded into their C(K, 2) pairs there). A share of the pairs
is held out, and accuracy on it (``eval_accuracy``: the chosen answer scores higher) is logged.
"""

from __future__ import annotations

from typing import Any

from studio.training import data
from studio.training.base import Trainer
from studio.training.config import RewardTrainConfig


def load_reward_model(base: str, *, base_adapter: str = "", adapter: str = "", dtype: Any = None) -> Any:
    """A plain sequence classifier: the base (+ its own adapter, merged) + the reward adapter, merged."""
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(base, num_labels=1, dtype=dtype)
    for path in (base_adapter, adapter):
        if path:
            model = PeftModel.from_pretrained(model, path).merge_and_unload()
    return model


def split(dataset: Any, fraction: float, seed: int) -> tuple[Any, Any]:
    """(train, held out): at least one pair held out when ``fraction`` > 0."""
    if fraction <= 0 or len(dataset) < 2:
        return dataset, None
    n_eval = max(1, round(len(dataset) * fraction))
    parts = dataset.train_test_split(test_size=n_eval, seed=seed)
    return parts["train"], parts["test"]


class RewardModel(Trainer):
    Config = RewardTrainConfig
    description = "Reward model on preference pairs (sequence classifier + LoRA), accuracy on held-out pairs"
    paper = "Ouyang et al. 2022, Training language models to follow instructions with human feedback, arXiv 2203.02155"
    produces = "reward"
    curves = ("loss", "accuracy", "margin", "eval_accuracy")

    @classmethod
    def _data(cls, store: Any, config: Any, limit: int) -> tuple[data.DataPreview, Any]:
        preview, table = data.pairs_preview(store, cls.registered_name, config, limit, kind="rm")
        if config.eval_fraction > 0 and 0 < preview.count < 2:
            preview.problems.append(
                "holding out pairs for accuracy needs at least 2 pairs (or eval_fraction=0)"
            )
        return preview, table

    def train(self) -> dict[str, Any]:
        from trl import RewardTrainer

        from studio.training.common import load_table, load_tokenizer, lora_config, resume_from, trl_config

        cfg = self.config
        train_set, eval_set = split(load_table(self.run.path / "train.parquet"), cfg.eval_fraction, cfg.seed)
        tok = load_tokenizer(cfg.model_path)
        model = self._model(tok)
        extra = {"eval_strategy": "steps", "eval_steps": cfg.save_steps} if eval_set is not None else {}
        trainer = RewardTrainer(
            model=model, args=trl_config(cfg, self.run, **extra), train_dataset=train_set, eval_dataset=eval_set,
            processing_class=tok, peft_config=lora_config(cfg, "SEQ_CLS", modules_to_save=["score"]),
            callbacks=[self.callback()],
        )  # fmt: skip
        out = trainer.train(resume_from_checkpoint=resume_from(self.run))
        metrics = dict(out.metrics)
        if eval_set is not None:
            metrics.update(trainer.evaluate())
        paths = self._save(trainer)
        reward = {"base": cfg.model_path, "base_adapter": cfg.adapter_path, "adapter": paths["adapter"]}
        if not cfg.use_lora:
            reward = {"base": paths["path"], "base_adapter": "", "adapter": ""}
        entry = self.model_entry(paths)
        return {
            "models": [entry],
            "reward_model": reward,
            "metrics": metrics,
            "steps": trainer.state.global_step,
        }

    def _model(self, tok: Any) -> Any:
        from studio.training.common import weights_dtype

        model = load_reward_model(
            self.config.model_path, base_adapter=self.config.adapter_path, dtype=weights_dtype(self.config)
        )
        model.config.pad_token_id = tok.pad_token_id  # the classifier reads the last non-pad token
        return model

    def _save(self, trainer: Any) -> dict[str, str]:
        from studio.training.common import save_policy

        return save_policy(trainer, self.config, self.run)
