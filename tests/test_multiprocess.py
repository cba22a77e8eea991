"""Training beyond one process, for real: a DPO job and a GRPO step run through the runner under
``accelerate launch --num_processes 2`` on CPU (the ``ddp`` profile; the job's TRL config says ``use_cpu``, so
accelerate joins the two ranks over gloo). Each checks that both ranks trained in one process group, that the
metrics were logged once (rank 0 writes them, no step twice), and that the adapter was saved and registered."""

from __future__ import annotations

import re
from collections import Counter

import pytest

from storage import Store
from studio.settings import Settings
from studio.training import RunDir, Runner
from studio.training.launch import PROFILES
from tests.seeds import ANSWERS, QUESTIONS, ranked_prompt

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

#: two processes of one thread each (the job's OMP_NUM_THREADS and torch threads), on the CPU's scheduling slot
TWO_RANKS = {
    "launcher": "ddp",
    "num_processes": 2,
    "device": "cpu",
    "threads": 1,
    "lora_r": 4,
    "lora_alpha": 8,
}
RANK_LINE = re.compile(r"\[studio\] rank (\d) of (\d) \((\w+)\) finished training")


def run_two_ranks(settings: Settings, store: Store, method: str, values: dict) -> tuple[Runner, int, RunDir]:
    runner = Runner(settings, store)
    job = runner.start(method, {**TWO_RANKS, **values})
    command = runner.get(job.id)
    run = RunDir(command.run_dir)
    argv = run.status()["command"]
    assert (
        argv[1:3] == ["-m", "accelerate.commands.launch"] and argv[argv.index("--num_processes") + 1] == "2"
    )
    assert argv[argv.index("--config_file") + 1] == str(PROFILES["ddp"])
    job = runner.wait(job.id, timeout=240)
    assert job.state == "succeeded", f"{job.error}\n{run.tail(60)}"
    return runner, job.id, run


def assert_both_ranks_and_one_log(runner: Runner, store: Store, job_id: int, run: RunDir, steps: int) -> None:
    ranks = {(int(r), int(w), backend) for r, w, backend in RANK_LINE.findall(run.log.read_text())}
    assert ranks == {(0, 2, "gloo"), (1, 2, "gloo")}, run.tail(60)  # one process group of two, not two runs
    rows = run.read_metrics()[0]
    per_step = Counter(row["step"] for row in rows if "loss" in row and "train_loss" not in row)
    assert per_step == {step: 1 for step in range(1, steps + 1)}, rows  # rank 1 wrote nothing
    assert [step for step, _ in store.metrics(job_id)["loss"]] == list(range(1, steps + 1))
    assert run.result()["steps"] == steps
    (name,) = runner.get(job_id).models
    spec = runner.registry.get(name)
    assert (spec.adapter, spec.training_run, spec.parent) == (str(run.adapter), str(job_id), "smollm2-135m")
    assert (run.adapter / "adapter_model.safetensors").is_file()
    assert store.get_model(name)["parent"] == "smollm2-135m"  # the store's lineage index has it too


def test_dpo_job_on_two_processes(settings: Settings) -> None:
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        for question, answers in zip(QUESTIONS[:2], ANSWERS[:2], strict=True):
            ranked_prompt(store, "multiprocess", question, answers)  # 3 pairs each: 6 pairs
        runner, job_id, run = run_two_ranks(
            settings, store, "dpo", {"max_steps": 2, "max_length": 128, "per_device_train_batch_size": 1}
        )
        assert_both_ranks_and_one_log(runner, store, job_id, run, 2)
        assert {"rewards/margins", "rewards/accuracies"} <= set(run.metric_series())


def test_grpo_step_on_two_processes(settings: Settings) -> None:
    values = {
        "task": "arithmetic", "levels": [1], "max_items": 2, "num_generations": 2, "per_device_train_batch_size": 2,
        "max_completion_length": 16, "max_steps": 1, "save_steps": 100,
    }  # fmt: skip
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        runner, job_id, run = run_two_ranks(settings, store, "grpo", values)
        assert_both_ranks_and_one_log(runner, store, job_id, run, 1)
        assert {"reward", "grpo/correct_rate", "frac_reward_zero_std"} <= set(run.metric_series())
