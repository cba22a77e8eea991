"""GRPO with verifiable rewards: the reward functions, the config's refusals, and a real tiny job on the default
model (one step on easy arithmetic train items) that saves a changed adapter, registers it with its lineage and
logs the reward curves."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storage import Store
from studio.errors import InputError
from studio.settings import Settings
from studio.training import RunDir, Runner
from studio.training.grpo import (
    GRPOTrainConfig,
    answer_format,
    correctness,
    format_ok,
    signal,
    train_items,
)
from studio.training.job import run as run_job

TINY = {"task": "arithmetic", "levels": [1], "max_items": 4, "num_generations": 4, "per_device_train_batch_size": 4,
        "max_steps": 1, "max_completion_length": 32, "lora_r": 4, "lora_alpha": 8, "save_steps": 100}  # fmt: skip


def test_rewards_are_the_task_metric_plus_a_format_check() -> None:
    task, items = train_items(
        GRPOTrainConfig.from_dict({"task": "arithmetic", "levels": [1], "max_items": 2})
    )
    item = items[0]
    right, wrong = f"The answer is {item.answers[0]}.", "The answer is 12345."
    chats = [[{"role": "assistant", "content": right}], [{"role": "assistant", "content": wrong}]]
    got = correctness([], chats, task="arithmetic", items={item.id: item}, item_id=[item.id, item.id])
    assert got == [task.reward(item, right), task.reward(item, wrong)] == [1.0, 0.0]
    assert answer_format([], chats + [[{"role": "assistant", "content": "9"}]], metric="numeric") == [1, 1, 0]
    assert format_ok("game24", "Answer: (4 + 8) * 2") == 1.0 and format_ok("game24", "(4 + 8) * 2") == 0.0
    assert format_ok("exact_match", " kkl ") == 1.0 and format_ok("exact_match", "It is kkl") == 0.0
    assert signal([0, 0, 1, 0, 1, 1], 2) == pytest.approx(1 / 3)  # only the middle group differs


def test_bad_settings_are_refused_with_a_reason() -> None:
    for values, words in (
        ({"num_generations": 1}, "num_generations >= 2"),
        ({"num_generations": 3}, "multiple of num_generations"),
        ({"format_weight": -1}, "format_weight"),
        ({"temperature": 0}, "temperature"),
    ):
        with pytest.raises(InputError, match=words):
            GRPOTrainConfig.from_dict(values)
    with pytest.raises(InputError, match="tasks: arithmetic"):
        train_items(GRPOTrainConfig.from_dict({"task": "nope"}))
    with pytest.raises(InputError, match="no difficulty levels"):
        train_items(GRPOTrainConfig.from_dict({"task": "game24", "levels": [1]}))
    cfg = GRPOTrainConfig.from_dict({"use_vllm": True, "vllm_mode": "server"})  # TRL's own names pass through
    assert cfg.trl == {"use_vllm": True, "vllm_mode": "server"}


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_a_grpo_job_trains_registers_and_logs_the_reward(settings: Settings) -> None:
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        runner = Runner(settings, store, autostart=False)
        job = runner.start("grpo", TINY)
        run = RunDir(job.run_dir)
        ids = [json.loads(line)["id"] for line in (run.path / "items.jsonl").read_text().splitlines()]
        assert len(ids) == 4 and all("-L1-train-" in i for i in ids)  # easy train items only, never test
        code = run_job(Path(job.run_dir) / "config.yaml")
        job = runner.sync(job.id)
        assert code == 0 and job.state == "succeeded", job.error
        name = f"grpo-{job.id}"
        model = store.get_model(name)
    assert model["parent"] == "smollm2-135m" and model["config"]["method"] == "grpo"
    series = run.metric_series()
    assert {
        "reward",
        "reward_std",
        "grpo/correct_rate",
        "grpo/format_rate",
        "frac_reward_zero_std",
        "kl",
        "loss",
    } <= set(series)
    assert len(series["reward"]) == 1
    with_signal = [v for _, v in series["frac_reward_zero_std"] if v < 1]
    assert with_signal, (
        "no group had different rewards: nothing to learn from (seeded, so this should not vary)"
    )
    from safetensors.torch import load_file

    weights = load_file(str(run.adapter / "adapter_model.safetensors"))
    lora_b = [t for n, t in weights.items() if "lora_B" in n]
    assert lora_b and any(t.abs().sum() > 0 for t in lora_b)  # B starts at zero: training moved it
    rewards = [round(v, 3) for _, v in series["reward"]]
    print(
        f"grpo job: reward per step {rewards}, zero-std groups {[v for _, v in series['frac_reward_zero_std']]}"
    )
