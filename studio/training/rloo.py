"""RLOO (Ahmadian et al. 2024, arXiv 2402.14740) with ``trl.RLOOTrainer``: the stable alternative to PPO.

For each prompt from the store, ``num_generations`` answers are sampled and scored by the trained reward
model; each answer's baseline is the mean reward of the others (leave-one-out), so no value model is needed.
``beta`` weighs a KL penalty to the starting policy (the base with the adapter disabled).
"""

from __future__ import annotations

from typing import Any

from studio.training.config import RLOOTrainConfig
from studio.training.online import OnlineRLTrainer


class RLOO(OnlineRLTrainer):
    Config = RLOOTrainConfig
    description = "RLOO against a trained reward model, on prompts from the store (KL to the start)"
    paper = "Ahmadian et al. 2024, Back to Basics: Revisiting REINFORCE Style Optimization, arXiv 2402.14740"

    def train(self) -> dict[str, Any]:
        from trl import RLOOTrainer

        from studio.training.common import load_tokenizer, policy_model, resume_from, save_policy, trl_config

        cfg = self.config
        tok = load_tokenizer(cfg.model_path)
        reward_tok = load_tokenizer(cfg.reward_base_path)
        model, peft = policy_model(cfg)
        trainer = RLOOTrainer(
            model=model, reward_funcs=self.reward_model(reward_tok), args=trl_config(cfg, self.run),
            train_dataset=self.prompts(), processing_class=tok, reward_processing_classes=reward_tok,
            peft_config=peft, callbacks=[self.callback()],
        )  # fmt: skip
        out = trainer.train(resume_from_checkpoint=resume_from(self.run))
        paths = save_policy(trainer, cfg, self.run)
        entry = self.model_entry(paths, reward_run=cfg.reward_run)
        return {"models": [entry], "metrics": dict(out.metrics), "steps": trainer.state.global_step}
