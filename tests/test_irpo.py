"""IRPO (Pang et al. 2024, arXiv 2404.19733) on the real default model.

One iteration runs as a job through the studio's runner (in this process, as tests/test_training_methods.py does):
M_0 samples chain-of-thought answers to a handful of arithmetic train questions, each answer is scored by the
task's own reward, correct vs incorrect answers form the pairs, and one DPO + NLL step gives M_1, registered with
its lineage. A model that is never right has no chosen answer: that job must fail with the counts.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from storage import Store
from studio.errors import InputError
from studio.eval.tasks import get_task
from studio.settings import Settings
from studio.training import RunDir, Runner
from studio.training.irpo import IRPOConfig, build_pairs, cot_prompt, count, reward, shortfall
from studio.training.job import run as run_job
from tests.conftest import with_default_model

pytestmark = [pytest.mark.filterwarnings("ignore::FutureWarning")]

TINY = {"max_steps": 1, "max_length": 256, "lora_r": 4, "lora_alpha": 8, "per_device_train_batch_size": 2,
        "save_steps": 100}  # fmt: skip


# -- pure parts ---------------------------------------------------------------------------------------------------
def test_the_trl_loss_is_dpo_plus_nll_on_the_chosen() -> None:
    args = IRPOConfig.from_dict({}).trl_args("/tmp/x", cuda=False, bf16_ok=False)
    assert args["loss_type"] == ["sigmoid", "sft"] and args["loss_weights"] == [
        1.0,
        1.0,
    ]  # the paper: alpha = 1
    args = IRPOConfig.from_dict({"nll_weight": 0.5}).trl_args("/tmp/x", cuda=False, bf16_ok=False)
    assert args["loss_weights"] == [1.0, 0.5]
    args = IRPOConfig.from_dict({"nll_weight": 0}).trl_args("/tmp/x", cuda=False, bf16_ok=False)
    assert args["loss_type"] == ["sigmoid"] and "loss_weights" not in args  # plain iterative DPO (ablation)
    trl_config = IRPOConfig.trl_config_class()(**args)  # TRL 1.12 accepts the list and the weights
    assert trl_config.loss_type == ["sigmoid"]
    default = IRPOConfig.from_dict({}).trl_args("/tmp/x", cuda=False, bf16_ok=False)
    assert IRPOConfig.trl_config_class()(**default).loss_weights == [1.0, 1.0]
    for bad in ({"samples": 1}, {"temperature": 0}, {"nll_weight": -1}, {"pairs_per_question": 0}):
        with pytest.raises(InputError):
            IRPOConfig.from_dict(bad)


def test_pairs_are_correct_vs_incorrect_answers_of_one_question() -> None:
    rng = random.Random(0)
    answers = ["so 7. Final answer: 7", "Final answer: 8", "Final answer: 7", "Final answer: 9"]
    rewards = [1.0, 0.0, 1.0, 0.0]
    pairs = build_pairs(answers, rewards, 10, rng)
    assert sorted(pairs) == [(0, 1), (0, 3), (2, 1), (2, 3)]  # every distinct combination, at most K
    assert len(build_pairs(answers, rewards, 1, rng)) == 1
    assert build_pairs(answers, [1.0] * 4, 3, rng) == [] == build_pairs(answers, [0.0] * 4, 3, rng)
    assert build_pairs(["a", "a", "b"], [1.0, 1.0, 0.0], 5, rng) == [(0, 2)]  # duplicate texts count once
    task = get_task("arithmetic")
    item = task.load("train").items[0]
    assert task.prompt(item) in cot_prompt(task, item) and '"Answer:"' in cot_prompt(task, item)
    assert "Final answer:" in cot_prompt(task, item, "paper") and task.prompt(item) in cot_prompt(
        task, item, "paper"
    )
    assert item.question == "What is 9 * 1?" and item.answers == ("9",)
    assert reward(task, item, "9 * 1 = 9, so\nAnswer: 9") == 1.0 == reward(task, item, "Final answer: 9")
    assert (
        reward(task, item, "Final Answer: 9 * 1 equals") == 0.0
    )  # the final answer, not an operand after it
    assert reward(task, item, "Answer: 8") == 0.0


def test_the_shortfall_names_the_counts_and_what_to_change() -> None:
    cfg = IRPOConfig.from_dict({"task": "arithmetic"})
    none_right = count([{"rewards": [0.0] * 4, "pairs": []} for _ in range(32)])
    msg = shortfall(0, none_right, cfg)
    assert "got 0 of 32 arithmetic questions right in 4 samples" in msg and "no chosen answer" in msg
    assert "easier task level or more samples" in msg
    all_right = count([{"rewards": [1.0] * 4, "pairs": []} for _ in range(3)])
    assert "no rejected answer" in shortfall(0, all_right, cfg)
    mixed = count([{"rewards": [1.0] * 4, "pairs": []}, {"rewards": [0.0] * 4, "pairs": []}])
    assert "no question had both" in shortfall(0, mixed, cfg) and mixed["correct_rate"] == 0.5


# -- real runs ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def irpo_settings(tmp_path_factory: pytest.TempPathFactory, default_model_dir: Path) -> Settings:
    return with_default_model(tmp_path_factory.mktemp("irpo") / "data", default_model_dir, threads=1)


def start(settings: Settings, values: dict) -> tuple[Runner, Store, object]:
    store = Store(settings.db_path, data_dir=settings.data_dir)
    runner = Runner(settings, store, autostart=False)
    return runner, store, runner.start("irpo", values)


@pytest.mark.slow
def test_one_irpo_iteration_trains_m1_from_correct_vs_incorrect_samples(irpo_settings: Settings) -> None:
    values = {**TINY, "task": "arithmetic", "max_items": 4, "samples": 4, "max_new_tokens": 40}
    runner, store, job = start(irpo_settings, values)
    with store:
        run = RunDir(job.run_dir)
        assert json.loads((run.path / "task.json").read_text()) == {"task": "arithmetic", "questions": 4}
        code = run_job(Path(job.run_dir) / "config.yaml")
        job = runner.sync(job.id)
        assert code == 0 and job.state == "succeeded", job.error
        model = store.get_model(f"irpo-{job.id}-m1")
    it = run.iteration(0)
    rows = [json.loads(line) for line in (it / "samples.jsonl").read_text().splitlines()]
    task, train = get_task("arithmetic"), {i.id: i for i in get_task("arithmetic").load("train").items}
    assert len(rows) == 4 and all(len(r["answers"]) == len(r["rewards"]) == 4 for r in rows)
    for r in rows:  # every reward is the task's own metric of that sample
        assert r["rewards"] == [reward(task, train[r["id"]], a) for a in r["answers"]]
    pairs = [json.loads(line) for line in (it / "pairs.jsonl").read_text().splitlines()]
    assert pairs and len(pairs) <= 4  # at most one pair per question (pairs_per_question = 1)
    for p in pairs:
        row = next(r for r in rows if r["id"] == p["id"])
        assert row["rewards"][p["chosen_index"]] == 1.0 and row["rewards"][p["rejected_index"]] == 0.0
        assert (row["answers"][p["chosen_index"]], row["answers"][p["rejected_index"]]) == (
            p["chosen"], p["rejected"]
        )  # fmt: skip
    counts = json.loads((it / "counts.json").read_text())
    series = run.metric_series()
    assert series["irpo/pairs"][-1][1] == len(pairs) == counts["pairs"]
    assert (
        series["irpo/correct_rate"][-1][1]
        == counts["correct_rate"]
        == pytest.approx(sum(x for r in rows for x in r["rewards"]) / 16)
    )
    assert {"loss", "rewards/margins"} <= set(series)  # the DPO + NLL step ran
    weights = _lora_b(it / "adapter")
    assert any(t.abs().sum() > 0 for t in weights.values()), "every LoRA B is still zero: no learning step"
    assert model["parent"] == "smollm2-135m" and model["config"]["method"] == "irpo"
    assert model["adapter_path"] == str(it / "adapter")
    assert model["config"]["iteration"] == 1 and model["training_run_id"] == job.id
    (announced,) = [json.loads(line) for line in (run.path / "models.jsonl").read_text().splitlines()]
    assert announced["pairs"] == len(pairs) and announced["task"] == "arithmetic"
    assert announced["adapter"] == str(it / "adapter")
    print([r["rewards"] for r in rows])
    print(f"irpo: correct rate {counts['correct_rate']:.3f} ({counts['correct']}/{counts['answers']}), "
          f"{counts['questions_right']}/4 questions right, {len(pairs)} pairs")  # fmt: skip


@pytest.mark.slow
def test_no_correct_answer_fails_the_job_with_the_counts(irpo_settings: Settings) -> None:
    """Two-token answers can never solve a Game of 24 puzzle: no chosen answer, so no pair and no training."""
    values = {**TINY, "task": "game24", "max_items": 2, "samples": 2, "max_new_tokens": 2}
    runner, store, job = start(irpo_settings, values)
    with store:
        assert run_job(Path(job.run_dir) / "config.yaml") != 0
        job = runner.sync(job.id)
    assert job.state == "failed"
    assert "got 0 of 2 game24 questions right in 2 samples" in job.error and "no chosen answer" in job.error
    assert not (RunDir(job.run_dir).iteration(0) / "adapter").exists()


def test_an_unknown_task_is_refused_before_launch(irpo_settings: Settings) -> None:
    with Store(irpo_settings.db_path, data_dir=irpo_settings.data_dir) as store:
        runner = Runner(irpo_settings, store, autostart=False)
        before = len(runner.list())
        with pytest.raises(InputError, match="no task 'arithmatic'; tasks: arithmetic"):
            runner.start("irpo", {"task": "arithmatic"})
        assert len(runner.list()) == before  # nothing recorded or launched


def _lora_b(adapter: Path) -> dict:
    from safetensors.torch import load_file

    weights = load_file(adapter / "adapter_model.safetensors")
    return {name: t for name, t in weights.items() if "lora_B" in name}
