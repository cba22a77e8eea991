"""The exported preference set trains: one TRL DPO step with a LoRA adapter on the real default model."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import Store


def build_store(path: Path) -> Store:
    """A handful of prompts, each with a 3-way ranking (3 pairs) and a pairwise vote."""
    store = Store(path)
    questions = ["What is 2+2?", "Name a primary colour.", "Capital of France?", "Opposite of hot?"]
    answers = [
        ("4", "5", "22"),
        ("Red.", "Purple.", "Dog."),
        ("Paris.", "Lyon.", "Rome."),
        ("Cold.", "Warm.", "Up."),
    ]
    for q, (good, ok, bad) in zip(questions, answers, strict=True):
        pid = store.add_prompt(q, "dpo-test")
        runs = [
            store.add_run(pid, "smollm2-135m", s, a)
            for s, a in zip(("cot", "system1", "cove"), (good, ok, bad), strict=True)
        ]
        store.add_ranking(store.add_comparison(runs), [1, 2, 3], "alice")
        store.add_vote(store.add_comparison([runs[2], runs[0]]), "B", "bob")
    return store


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*checkpointing.*:FutureWarning")  # TRL still sets the old alias
@pytest.mark.parametrize("conversational", [False, True], ids=["standard", "conversational"])
def test_one_dpo_step_accepts_the_exported_set(
    default_model_dir: Path, tmp_path: Path, conversational: bool
) -> None:
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    with build_store(tmp_path / "studio.duckdb") as store:
        train = store.to_dataset("dpo", conversational=conversational)
    assert len(train) == 12  # 4 prompts x C(3,2); bob's votes repeat alice's best-over-worst pairs
    model = AutoModelForCausalLM.from_pretrained(default_model_dir, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    args = DPOConfig(
        output_dir=str(tmp_path / "out"), max_steps=1, per_device_train_batch_size=2, gradient_accumulation_steps=1,
        max_length=64, gradient_checkpointing=False, report_to=[], use_cpu=True, logging_steps=1, save_strategy="no",
        dataloader_num_workers=0, dataset_num_proc=None, learning_rate=1e-4,
    )  # fmt: skip
    peft = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], task_type="CAUSAL_LM")
    trainer = DPOTrainer(
        model=model, args=args, train_dataset=train, processing_class=tokenizer, peft_config=peft
    )
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    trainer.train()
    assert trainer.state.global_step == 1
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert losses and all(loss == loss for loss in losses)  # logged and not NaN
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[n], after[n].detach()) for n in before)  # the adapter moved
