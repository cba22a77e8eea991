"""Exported files reach their trainers: ``studio export`` writes DPO, KTO and reward-model files, ``datasets``
loads each file, and one step of the matching TRL trainer (LoRA, as the jobs train) runs on it and moves the
adapter, on the real default model."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import Store
from tests.seeds import ranked_prompts

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]


def build_store(path: Path) -> None:
    """Each prompt: a 3-way ranking (3 pairs) and a pairwise vote. A judge rated some answers (1-5), so some
    reward-model pairs have a rating margin and others have none: the case that must still export cleanly."""
    with Store(path, data_dir=path.parent) as store:
        for i, runs in enumerate(ranked_prompts(store, "dpo-test")):
            store.add_vote(store.add_comparison([runs[2], runs[0]]), "B", "bob")
            if i < 2:  # rated: the best and the worst answer of the first two prompts
                store.add_verdict("rater", "single", [runs[0]], rating=5)
                store.add_verdict("rater", "single", [runs[2]], rating=1)


def export(data: Path, kind: str, fmt: str, *extra: str) -> Path:
    from studio.cli import main

    out = data.parent / f"{kind}.{fmt}"
    assert main(["export", "--format", kind, "--to", fmt, str(out), *extra, "--data-dir", str(data)]) == 0
    return out


def load(path: Path):
    from datasets import load_dataset

    kind = "json" if path.suffix == ".jsonl" else "parquet"
    return load_dataset(kind, data_files=str(path), split="train", cache_dir=str(path.parent / "hf-cache"))


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    data = tmp_path_factory.mktemp("export") / "data"
    data.mkdir()
    build_store(data / "studio.duckdb")
    return data


def lora(task_type: str, **extra):
    from peft import LoraConfig

    targets = ["q_proj", "k_proj", "v_proj", "o_proj"]  # the jobs' default lora_target_modules
    return LoraConfig(r=4, lora_alpha=8, target_modules=targets, task_type=task_type, **extra)


TINY = {
    "max_steps": 1, "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "learning_rate": 1e-4,
    "report_to": [], "use_cpu": True, "bf16": False, "logging_steps": 1, "save_strategy": "no",
    "dataloader_num_workers": 0, "disable_tqdm": True,
}  # fmt: skip


def check_one_step(trainer) -> None:
    """One optimizer step ran, its loss is a number, and the LoRA adapter left its zero start."""
    import torch

    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters() if p.requires_grad}
    assert any("lora_B" in n for n in before) and all(
        torch.count_nonzero(p) == 0 for n, p in before.items() if "lora_B" in n
    )
    trainer.train()
    assert trainer.state.global_step == 1
    losses = [log["loss"] for log in trainer.state.log_history if "loss" in log]
    assert losses and all(loss == loss for loss in losses)  # logged and not NaN
    after = dict(trainer.model.named_parameters())
    assert any(not torch.equal(before[n], after[n].detach()) for n in before if "lora_B" in n)


@pytest.mark.parametrize(
    ("fmt", "conversational"), [("jsonl", False), ("parquet", True)], ids=["jsonl", "chat"]
)
def test_dpo_export_trains_with_dpo_trainer(
    data: Path, default_model_dir: Path, fmt: str, conversational: bool
):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    train = load(export(data, "dpo", fmt, *(["--conversational"] if conversational else [])))
    assert len(train) == 12  # 4 prompts x C(3,2); bob's votes repeat alice's best-over-worst pairs
    assert train.column_names == ["prompt", "chosen", "rejected"]
    assert isinstance(train[0]["prompt"], list) == conversational
    args = DPOConfig(output_dir=str(data.parent / "dpo-out"), max_length=64, **TINY)
    trainer = DPOTrainer(
        model=AutoModelForCausalLM.from_pretrained(default_model_dir, dtype=torch.float32),
        args=args,
        train_dataset=train,
        processing_class=AutoTokenizer.from_pretrained(default_model_dir),
        peft_config=lora("CAUSAL_LM"),
    )
    check_one_step(trainer)


def test_kto_export_trains_with_kto_trainer(data: Path, default_model_dir: Path):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import KTOConfig, KTOTrainer

    train = load(export(data, "kto", "jsonl", "--conversational"))
    assert train.column_names == ["prompt", "completion", "label"]
    labels = train["label"]
    assert len(train) == 8 and labels.count(True) == 4 and labels.count(False) == 4  # best / worst of each
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    trainer = KTOTrainer(
        model=AutoModelForCausalLM.from_pretrained(default_model_dir, dtype=torch.float32),
        args=KTOConfig(output_dir=str(data.parent / "kto-out"), max_length=64, **TINY),
        train_dataset=train,
        processing_class=tokenizer,
        peft_config=lora("CAUSAL_LM"),
    )
    check_one_step(trainer)


def test_reward_model_export_has_a_margin_in_every_row_and_trains(data: Path, default_model_dir: Path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    train = load(export(data, "rm", "jsonl"))
    assert train.column_names == ["prompt", "chosen", "rejected", "margin"]
    margins = {(row["chosen"], row["rejected"]): row["margin"] for row in train}
    assert None not in margins.values()  # RewardTrainer's collator needs a number in every row
    assert margins[("4", "22")] == 4.0 and margins[("Paris.", "Rome.")] == 0.0  # rated 5 vs 1; not rated
    assert margins[("4", "5")] == 0.0  # one side rated only: no difference is known
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    model = AutoModelForSequenceClassification.from_pretrained(
        default_model_dir, num_labels=1, dtype=torch.float32
    )
    model.config.pad_token_id = tokenizer.pad_token_id
    trainer = RewardTrainer(
        model=model,
        args=RewardConfig(output_dir=str(data.parent / "rm-out"), max_length=64, **TINY),
        train_dataset=train,
        processing_class=tokenizer,
        peft_config=lora("SEQ_CLS", modules_to_save=["score"]),
    )
    check_one_step(trainer)
