"""PPO as in InstructGPT (Ouyang et al. 2022, arXiv 2203.02155) with ``trl.experimental.ppo.PPOTrainer``.

Prompts from the store; answers scored by the trained reward model; a value model (initialised from the reward
model, as in InstructGPT) gives the advantages; the reward is penalised by ``kl_coef`` * log(pi / pi_start).
With LoRA the start is the base with the adapter disabled; starting from an adapter model, a frozen merged copy
of it is the reference. TRL's PPO cannot resume from a checkpoint: a resumed PPO job starts over.
"""

from __future__ import annotations

import copy
from typing import Any

from studio.errors import InputError
from studio.training.config import PPOTrainConfig
from studio.training.online import OnlineRLTrainer


def tokenized_prompts(dataset: Any, tok: Any) -> Any:
    """``input_ids`` of each chat-templated prompt, ready for generation (PPO takes token ids)."""

    def encode(row: dict[str, Any]) -> dict[str, Any]:
        ids = tok.apply_chat_template(row["prompt"], add_generation_prompt=True, tokenize=True)
        return {"input_ids": list(ids["input_ids"] if hasattr(ids, "keys") else ids)}

    return dataset.map(encode, remove_columns=dataset.column_names)


class PPO(OnlineRLTrainer):
    Config = PPOTrainConfig
    description = (
        "PPO against a trained reward model with a value model and a KL penalty (InstructGPT step 3)"
    )
    paper = "Ouyang et al. 2022, Training language models to follow instructions with human feedback, arXiv 2203.02155"
    aliases = {"loss": "loss/policy_avg", "reward": "objective/scores", "kl": "objective/kl"}
    curves = ("loss", "reward", "kl", "objective/rlhf_reward", "loss/value_avg")
    resumable = False

    def train(self) -> dict[str, Any]:
        from trl.experimental.ppo import PPOTrainer

        from studio.training.common import load_tokenizer, save_policy, trl_config

        cfg = self.config
        tok = load_tokenizer(cfg.model_path)
        tok.padding_side = "left"  # generation continues the prompt's last token
        self._check_vocab(tok)
        reward = self.reward_model(tok)
        value = copy.deepcopy(reward).requires_grad_(True).train()
        policy, ref, peft = self._policy()
        prompts = tokenized_prompts(self.prompts(), tok)
        trainer = PPOTrainer(
            args=trl_config(cfg, self.run), processing_class=tok, model=policy, ref_model=ref,
            reward_model=reward, train_dataset=prompts, value_model=value, eval_dataset=prompts,
            peft_config=peft, callbacks=[self.callback()],
        )  # fmt: skip
        trainer.train()
        paths = save_policy(trainer, cfg, self.run)
        final = next((h for h in reversed(trainer.state.log_history) if "objective/scores" in h), {})
        entry = self.model_entry(paths, reward_run=cfg.reward_run)
        return {"models": [entry], "metrics": final, "steps": trainer.state.global_step}

    def _policy(self) -> tuple[Any, Any, Any]:
        """(policy, reference or None, peft config or None)."""
        from studio.training.common import load_causal_lm, lora_config, merged_causal_lm

        cfg = self.config
        if not cfg.adapter_path:
            return load_causal_lm(cfg, adapter=""), None, lora_config(cfg, "CAUSAL_LM")
        ref = merged_causal_lm(cfg).requires_grad_(False).eval()
        if cfg.use_lora:
            return load_causal_lm(cfg, trainable=True), ref, None
        return merged_causal_lm(cfg), ref, None

    def _check_vocab(self, tok: Any) -> None:
        from studio.training.common import load_tokenizer

        if load_tokenizer(self.config.reward_base_path).get_vocab() != tok.get_vocab():
            raise InputError(
                "PPO feeds the policy's tokens to the reward model, so both need the same tokenizer; "
                "train the reward model from the same base model, or use RLOO"
            )
