"""Training without a model: configs, accelerate command lines, the scheduler, process liveness, cancel, bad
input refused before launch, Self-Instruct filters and Self-Rewarding pairs. Job processes here are small
stand-ins (``python -c``) so that the queue and the process handling are tested in seconds."""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pytest
import yaml

from storage import Store
from studio.errors import InputError
from studio.training import STORE_STATUS, TRAINERS, RunDir, Runner, launch_command
from studio.training.config import DPOTrainConfig, PPOTrainConfig, RLOOTrainConfig, parse_sets
from studio.training.launch import PROFILES
from studio.training.rundir import now_iso
from studio.training.scheduler import alive, schedule, set_jobs_per_device
from studio.training.self_instruct import clean, problem, rouge_l
from studio.training.self_rewarding import build_pairs


# -- configs ------------------------------------------------------------------------------------------------
def test_every_method_is_registered_with_documented_defaults() -> None:
    assert TRAINERS.names() == [
        "dpo", "grpo", "irpo", "kto", "ppo", "reward", "rloo", "s2_distill", "self_rewarding", "self_taught",
    ]  # fmt: skip
    for name in TRAINERS.names():
        cls = TRAINERS.get(name)
        cls.make_config()  # the defaults are valid
        for f in cls.Config.fields_info():
            assert f.help, f"{name}.{f.name} has no help text"
        assert cls.curves[0] == "loss"


def test_set_values_route_to_the_trl_config_or_fail_clearly() -> None:
    values = parse_sets(["beta=0.2", "loss_type=ipo", "warmup_steps=2", 'lora_target_modules=["q_proj"]'])
    cfg = DPOTrainConfig.from_dict(values)
    assert (cfg.beta, cfg.loss_type, cfg.lora_target_modules) == (0.2, "ipo", ["q_proj"])
    assert cfg.trl == {"warmup_steps": 2}  # not a studio field: passed through to trl.DPOConfig
    with pytest.raises(InputError, match="did you mean beta"):
        DPOTrainConfig.from_dict({"bta": 0.1})
    with pytest.raises(InputError, match="max_steps"):
        DPOTrainConfig.from_dict({"max_steps": 0})
    with pytest.raises(InputError, match="launcher is one of"):
        DPOTrainConfig.from_dict({"launcher": "slurm"})
    with pytest.raises(InputError, match="multiple of num_generations"):
        RLOOTrainConfig.from_dict({"per_device_train_batch_size": 3, "num_generations": 2})
    with pytest.raises(InputError, match="KEY=VALUE"):
        parse_sets(["beta"])


def test_trl_configs_build_for_cpu(tmp_path: Path) -> None:
    cfg = DPOTrainConfig.from_dict({"warmup_steps": 2})
    args = cfg.trl_config_class()(**cfg.trl_args(str(tmp_path), cuda=False, bf16_ok=False))
    assert args.use_cpu and not args.gradient_checkpointing and args.report_to == []
    assert args.beta == 0.1 and args.loss_type == ["sigmoid"] and args.warmup_steps == 2 and not args.bf16
    ppo = PPOTrainConfig.from_dict({"max_steps": 3, "per_device_train_batch_size": 2})
    kwargs = ppo.trl_args(str(tmp_path), cuda=True, bf16_ok=True)
    assert kwargs["total_episodes"] == 6 and "max_steps" not in kwargs and kwargs["bf16"]


# -- accelerate command lines -------------------------------------------------------------------------------
def _accelerate_args(cmd: list[str]):
    from accelerate.commands.launch import launch_command_parser

    assert cmd[:3] == [sys.executable, "-m", "accelerate.commands.launch"]
    return launch_command_parser().parse_args(cmd[3:])  # accelerate itself accepts the argument list


@pytest.mark.parametrize(
    ("launcher", "distributed_type"),
    [
        ("ddp", "MULTI_GPU"),
        ("zero2", "DEEPSPEED"),
        ("zero3", "DEEPSPEED"),
        ("fsdp", "FSDP"),
        ("multinode", "MULTI_GPU"),
    ],
)
def test_runner_builds_the_accelerate_command_for_each_profile(launcher: str, distributed_type: str) -> None:
    extra = (
        {"num_machines": 2, "main_process_ip": "10.0.0.1", "machine_rank": 1}
        if launcher == "multinode"
        else {}
    )
    cfg = DPOTrainConfig.from_dict({"launcher": launcher, "num_processes": 4, **extra})
    cmd = launch_command("/runs/7/config.yaml", cfg)
    args = _accelerate_args(cmd)
    assert Path(args.config_file) == PROFILES[launcher]
    assert yaml.safe_load(PROFILES[launcher].read_text())["distributed_type"] == distributed_type
    assert args.module and args.training_script == "studio.training"
    assert args.training_script_args == ["/runs/7/config.yaml"]
    if launcher in ("zero2", "zero3"):
        stage = int(launcher[-1])
        assert yaml.safe_load(PROFILES[launcher].read_text())["deepspeed_config"]["zero_stage"] == stage
    if launcher == "multinode":
        assert args.num_processes == 8  # 4 per machine x 2 machines
        assert (args.num_machines, args.machine_rank, args.main_process_ip) == (2, 1, "10.0.0.1")
        other = _accelerate_args(launch_command("/runs/7/config.yaml", cfg, machine_rank=0))
        assert other.machine_rank == 0
    else:
        assert args.num_processes == 4


def test_local_command_and_multinode_errors() -> None:
    cfg = DPOTrainConfig()
    assert launch_command("/r/config.yaml", cfg) == [
        sys.executable,
        "-m",
        "studio.training",
        "/r/config.yaml",
    ]
    with pytest.raises(InputError, match="main_process_ip"):
        launch_command("c", DPOTrainConfig.from_dict({"launcher": "multinode", "num_machines": 2}))


# -- the scheduler and process handling, with stand-in jobs ---------------------------------------------------
def fake_job(runs: Path, run_id: int, script: str, device: str = "cpu") -> RunDir:
    """A queued run dir whose command is a small Python script (no model)."""
    run = RunDir(runs / str(run_id))
    run.path.mkdir(parents=True)
    run.update_status(
        state="queued", method="dpo", device=device, queued_at=now_iso(),
        command=[sys.executable, "-c", script, str(run.path)],
    )  # fmt: skip
    return run


def wait_for(predicate, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


SLEEP = "import time; time.sleep(60)"
QUICK = "import sys; print('done', sys.argv[1])"


def test_one_job_per_device_the_rest_queue(settings) -> None:
    runner = Runner(settings)
    runs = settings.runs_dir
    a, b = fake_job(runs, 1, SLEEP), fake_job(runs, 2, SLEEP)
    c = fake_job(runs, 3, SLEEP, device="cuda:1")  # another device: runs beside a
    assert schedule(runs) == [1, 3]
    assert [runner.get(i).state for i in (1, 2, 3)] == ["running", "queued", "running"]
    runner.cancel(1)  # frees the cpu slot: the queued job starts
    assert runner.get(2).state == "running"
    for run in (b, c):
        runner.cancel(run.id)
    assert not any(alive(r.status()) for r in (a, b, c))


def test_jobs_per_device_setting(settings) -> None:
    runs = settings.runs_dir
    set_jobs_per_device(runs, 2)
    for i in (1, 2, 3):
        fake_job(runs, i, SLEEP)
    assert schedule(runs) == [1, 2]
    runner = Runner(settings, jobs_per_device=2)
    for i in (1, 2, 3):
        runner.cancel(i)


def test_a_killed_job_is_marked_failed_and_the_next_one_starts(settings) -> None:
    runner = Runner(settings)
    run = fake_job(
        settings.runs_dir, 1, "print('about to be killed', flush=True); import time; time.sleep(60)"
    )
    fake_job(settings.runs_dir, 2, QUICK)
    schedule(settings.runs_dir)
    pid = runner.get(1).pid
    wait_for(lambda: "about to be killed" in run.tail())
    os.kill(pid, signal.SIGKILL)  # as the OOM killer would
    wait_for(lambda: not alive(run.status()))
    jobs = {j.id: j for j in runner.refresh()}
    assert jobs[1].state == "failed" and "without reporting" in jobs[1].error
    assert "about to be killed" in jobs[1].error  # the last log line hints at the cause
    assert jobs[2].state in ("running", "failed")  # started; the stand-in exits without reporting too


def test_a_recycled_pid_is_not_taken_for_the_job(settings) -> None:
    run = fake_job(settings.runs_dir, 1, SLEEP)
    run.update_status(
        state="running", pid=os.getpid(), pid_start="1", boot_id=""
    )  # our pid, other start time
    assert not alive(run.status())
    assert Runner(settings).get(1).state == "failed"  # noticed when a runner starts (e.g. after a reboot)


def test_cancel_kills_the_whole_process_group(settings, tmp_path: Path) -> None:
    child_file = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time; "
        "c = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(child_file)!r}, 'w').write(str(c.pid)); time.sleep(60)"
    )
    runner = Runner(settings)
    fake_job(settings.runs_dir, 1, script)
    schedule(settings.runs_dir)
    wait_for(child_file.exists)
    wait_for(lambda: child_file.read_text().strip() != "")
    child = int(child_file.read_text())
    job = runner.cancel(1)
    assert job.state == "cancelled"
    assert not Path(f"/proc/{job.pid}").exists() or not alive(RunDir(job.run_dir).status())
    wait_for(lambda: not Path(f"/proc/{child}").exists() or _zombie(child))
    with pytest.raises(InputError, match="only queued or running jobs can be cancelled"):
        runner.cancel(1)


def _zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rfind(")") + 2] in "ZX"


def test_status_mapping_is_complete() -> None:
    from storage.store import TRAINING_STATUSES

    assert set(STORE_STATUS.values()) == set(TRAINING_STATUSES)


# -- bad input is refused before anything is launched ---------------------------------------------------------
def test_no_pairs_is_a_clear_error_before_launch(settings) -> None:
    with Store(settings.db_path) as store:
        runner = Runner(settings, store)
        with pytest.raises(InputError, match="no preference pairs match"):
            runner.start("dpo")
        pid = store.add_prompt("Q?", "s")
        a, b = store.add_run(pid, "m", "s", "yes"), store.add_run(pid, "m", "s", "no")
        store.add_vote(store.add_comparison([a, b]), "A", "alice")
        with pytest.raises(InputError, match="only 1 preference pairs .* min_examples=4"):
            runner.start("dpo")
        assert runner.preview("dpo", {"min_examples": 1}).ok
        tie = store.add_prompt("Tie?", "ties")
        c, d = store.add_run(tie, "m", "s", "fine"), store.add_run(tie, "m", "s", "also fine")
        store.add_vote(store.add_comparison([c, d]), "tie", "alice")  # both desirable, nothing undesirable
        with pytest.raises(InputError, match="desirable and undesirable"):
            runner.start("kto", {"min_examples": 1, "filters": {"prompt_set": "ties"}})
        with pytest.raises(InputError, match="none has been trained"):
            runner.start("rloo")
        with pytest.raises(InputError, match="unknown training method"):
            runner.start("sft")
        assert store.list_training_runs() == []  # nothing was recorded
    assert not [p for p in settings.runs_dir.iterdir() if p.is_dir()]  # no run dir either


def test_a_job_cannot_start_without_the_store(settings) -> None:
    with pytest.raises(InputError, match="needs the store"):
        Runner(settings, None).start("dpo")


# -- Self-Instruct filters and Self-Rewarding pairs -----------------------------------------------------------
def test_self_instruct_cleaning_and_filters() -> None:
    assert clean('**Task 9:** "Explain why the sky is blue."\nmore') == "Explain why the sky is blue."
    assert rouge_l("write a poem about rain", "write a poem about the rain") > 0.9
    seeds = ["Write a haiku about rain."]
    assert problem("Write a haiku about the rain.", seeds, 0.7).startswith("near-duplicate")
    assert problem("Hi", seeds, 0.7) == "too short"
    assert problem("Here's your new task, have fun", seeds, 0.7).startswith("a reply")
    assert problem("Name three rivers in Africa.", seeds, 0.7) is None


def test_self_rewarding_pairs_take_max_and_min_and_drop_ties() -> None:
    pair = build_pairs("q", ["a", "b", "c", "d"], [2.0, None, 4.5, 1.0])
    assert (pair["chosen"], pair["rejected"], pair["chosen_score"], pair["rejected_score"]) == (
        "c",
        "d",
        4.5,
        1.0,
    )
    assert build_pairs("q", ["a", "b"], [3.0, 3.0]) is None  # tie
    assert build_pairs("q", ["a", "b"], [3.0, None]) is None  # one failed verdict: nothing to compare
    assert build_pairs("q", ["same", "same"], [1.0, 5.0]) is None  # identical texts
