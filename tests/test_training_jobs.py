"""Job control with real job processes on the default model: cancel a running job (its process is gone, its
status cancelled), resume it from its last checkpoint to the end, and a job that crashes is marked failed with
its error; also how out-of-memory and full-disk errors read."""

from __future__ import annotations

import errno
import os
import shutil
import time
from pathlib import Path

import pytest

from storage import Store
from studio.training import RunDir, Runner
from studio.training.common import describe_error
from studio.training.scheduler import alive, schedule

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

TINY = {"max_length": 128, "lora_r": 4, "lora_alpha": 8, "per_device_train_batch_size": 2, "min_examples": 2}


def seed(store: Store) -> None:
    for q, good, bad in [
        ("2+2?", "4", "5"),
        ("Capital of France?", "Paris.", "Rome."),
        ("Hot or cold?", "Hot.", "Up."),
    ]:
        pid = store.add_prompt(q, "jobs-test")
        a, b = (
            store.add_run(pid, "smollm2-135m", "cot", good),
            store.add_run(pid, "smollm2-135m", "cove", bad),
        )
        store.add_vote(store.add_comparison([a, b]), "A", "alice")


@pytest.fixture()
def store(settings) -> Store:
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        seed(store)
        yield store


def wait_for(predicate, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_cancel_a_running_job_then_resume_it(settings, store: Store) -> None:
    """The cancel lands at a known step: checkpoint-3's weights file is a FIFO, so the job's save at step 3 waits
    there (opening a FIFO for writing blocks until someone reads it) with checkpoint-2 complete. Resumed, the
    job must continue from step 2: the steps it logs after the resume are 3 and 4, never 1 or 2 again."""
    runner = Runner(settings, store, autostart=False)
    # save_total_limit: no checkpoint is rotated away (TRL deletes the oldest by mtime: the trap would go first)
    job = runner.start("dpo", {**TINY, "max_steps": 4, "save_steps": 1, "save_total_limit": 10})
    run = RunDir(job.run_dir)
    trap = run.checkpoints / "checkpoint-3"
    trap.mkdir(parents=True)
    os.mkfifo(trap / "adapter_model.safetensors")
    schedule(settings.runs_dir)
    assert run.state == "running" and run.status()["pid"]
    second = str(run.checkpoints / "checkpoint-2")
    wait_for(lambda: run.last_checkpoint() == second or run.state != "running", 300, "checkpoint-2")
    status = run.status()
    assert status["state"] == "running", run.tail(40)
    job = runner.cancel(job.id)
    assert job.state == "cancelled" and not alive(status)
    assert not Path(f"/proc/{status['pid']}").exists()  # reaped, not a zombie
    assert store.get_training_run(job.id)["status"] == "cancelled"
    assert run.last_checkpoint() == second  # the job could not get past step 3's save
    logged_before = len(run.read_metrics()[0])

    shutil.rmtree(trap)
    job = runner.resume(job.id)
    assert job.state == "running"
    job = runner.wait(job.id, timeout=300)
    assert job.state == "succeeded", job.error
    assert f"[studio] resuming from {second}" in run.tail(400)
    after = run.read_metrics()[0][logged_before:]
    assert [row["step"] for row in after if "loss" in row] == [3, 4]  # continued from step 2, not from 0
    assert min(row["step"] for row in after) == 3
    assert run.result()["steps"] == 4
    row = store.get_training_run(job.id)
    assert row["status"] == "done" and row["error"] == ""
    assert f"dpo-{job.id}" in job.models


def test_a_crashing_job_is_marked_failed_with_its_error(settings, store: Store) -> None:
    runner = Runner(settings, store, autostart=False)
    job = runner.start("dpo", {**TINY, "max_steps": 2})
    (Path(job.run_dir) / "train.parquet").unlink()  # the job will crash reading its data
    schedule(settings.runs_dir)
    job = runner.wait(job.id, timeout=240)
    assert job.state == "failed" and "train.parquet" in job.error
    assert "Traceback" in runner.logs(job.id)
    row = store.get_training_run(job.id)
    assert row["status"] == "failed" and "train.parquet" in row["error"]
    with pytest.raises(Exception, match="only queued or running"):
        runner.cancel(job.id)


def test_out_of_memory_and_full_disk_read_clearly() -> None:
    import torch

    oom = describe_error(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert oom.startswith("out of memory") and "per_device_train_batch_size" in oom
    full = describe_error(OSError(errno.ENOSPC, "No space left on device", "/data/runs/3/checkpoints"))
    assert full.startswith("the disk is full") and "resume" in full
