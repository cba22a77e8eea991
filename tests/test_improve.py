"""The improve loop (``studio improve`` / :mod:`studio.improve`) on the real default model.

M0 is scored on the task's test split through the eval harness (accuracy = mean task reward with a bootstrap
CI, tokens per answer); one real training iteration of a task trainer (the first of irpo, grpo, s2_distill that
is registered) makes M1, registered with parent M0 and scored the same way; the state file records both rows and
a rerun continues without retraining. Bad input is one ``error:`` line and exit 2.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
from pathlib import Path

import pytest

from studio import improve as imp
from studio.cli import main
from studio.context import AppContext
from studio.eval.tasks import get_task
from studio.training.base import TRAINERS

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

#: a tiny iteration of each task trainer: a handful of train items, one optimiser step, short answers
TINY = {
    # IRPO needs a correct and an incorrect answer to one question: 6 items x 4 samples, as tests/test_irpo.py
    "irpo": {"max_items": 6, "samples": 4, "max_new_tokens": 64, "max_steps": 1, "max_length": 256,
             "lora_r": 4, "lora_alpha": 8, "per_device_train_batch_size": 2},
    "grpo": {"max_items": 4, "num_generations": 2, "max_completion_length": 16, "max_steps": 1,
             "lora_r": 4, "lora_alpha": 8, "per_device_train_batch_size": 2},
    "s2_distill": {"max_items": 4, "samples": 2, "max_new_tokens": 32, "max_steps": 1, "max_length": 128,
                   "lora_r": 4, "lora_alpha": 8, "per_device_train_batch_size": 1, "agreement": 0.5},
}  # fmt: skip
FAST_EVAL = {"max_new_tokens": 16}


def cli(data: Path, *args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--data-dir", str(data), "--threads", "1"])
    return code, out.getvalue(), err.getvalue()


def cli_error(data: Path, *args: str) -> str:
    code, _, err = cli(data, *args)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1, (code, err[-2000:])
    assert "Traceback" not in err
    return lines[0]


def test_score_is_the_task_reward_with_a_ci_and_resumes(settings) -> None:
    """M0's held-out score: the harness's answers on the TEST split, scored by task.reward; a rerun under the
    same eval name runs nothing again."""
    task = get_task("arithmetic")
    with AppContext(settings) as ctx:
        score = imp.score_model(ctx, task, "smollm2-135m", limit=4, params={"temperature": 0, **FAST_EVAL},
                                name="improve-test")  # fmt: skip
        results = Path(settings.data_dir) / "evals" / "improve-test" / "results.jsonl"
        rows = [json.loads(line) for line in results.read_text().splitlines()]
        again = imp.score_model(ctx, task, "smollm2-135m", limit=4, params={"temperature": 0, **FAST_EVAL},
                                name="improve-test")  # fmt: skip
    assert score.n == 4 and 0.0 <= score.accuracy <= 1.0
    assert score.lo <= score.accuracy <= score.hi and not math.isnan(score.lo)
    assert 0 < score.tokens <= FAST_EVAL["max_new_tokens"]
    test_ids = {i.id for i in task.load("test").items[:4]}
    assert {r["item"] for r in rows} == test_ids  # the test split, never train
    by_id = {i.id: i for i in task.load("test").items}
    assert score.accuracy == sum(task.reward(by_id[r["item"]], r["answer"]) for r in rows) / 4
    assert len(results.read_text().splitlines()) == len(rows)  # the rerun recorded nothing new
    assert again.accuracy == score.accuracy


def test_bad_input_is_one_line(settings) -> None:
    data = settings.data_dir
    assert "no task 'nope'" in cli_error(data, "improve", "--task", "nope", "--method", "dpo")
    assert "unknown training method" in cli_error(data, "improve", "--task", "arithmetic", "--method", "nope")
    assert "does not train on a task" in cli_error(data, "improve", "--task", "arithmetic", "--method", "dpo")
    assert "name a task and a method" in cli_error(data, "improve", "--task", "arithmetic")
    assert "no improve run" in cli_error(data, "improve", "--resume", "7")
    assert "iterations must be >= 1" in cli_error(
        data, "improve", "--task", "arithmetic", "--method", "dpo", "--iterations", "0"
    )
    code, out, _ = cli(data, "improve", "--list")
    assert code == 0 and "no improve runs" in out


def _trainer() -> str:
    """IRPO: every task trainer is registered now, so a missing one is a failure, not a skip."""
    assert {"irpo", "grpo", "s2_distill"} <= set(TRAINERS.names())
    return "irpo"


def test_bad_model_and_settings_are_one_line(settings) -> None:
    method = _trainer()
    data = settings.data_dir
    assert "unknown model 'nope'" in cli_error(
        data, "improve", "--task", "arithmetic", "--method", method, "--model", "nope"
    )
    assert "is the improve loop's to set" in cli_error(
        data, "improve", "--task", "arithmetic", "--method", method, "--set", "task=game24"
    )
    assert "unknown strategy" in cli_error(
        data, "improve", "--task", "arithmetic", "--method", method, "--eval-strategy", "nope"
    )
    assert not (Path(data) / "improve").exists() or not any((Path(data) / "improve").iterdir())


def test_one_iteration_registers_scores_and_resumes(settings) -> None:
    """M0 scored, one real training job from M0, M1 registered with parent M0 and scored; the state file has
    both rows; rerunning the same command trains nothing."""
    method = _trainer()
    data = settings.data_dir
    args = ["improve", "--task", "arithmetic", "--method", method, "--iterations", "1", "--eval-limit", "4",
            "--eval-max-new-tokens", "16", "--json"]  # fmt: skip
    for key, value in TINY[method].items():
        args += ["--set", f"{key}={value}"]
    code, out, err = cli(data, *args)
    assert code == 0, err[-3000:]
    body = json.loads(out)
    rows = body["iterations"]
    assert [r["iteration"] for r in rows] == [0, 1]
    assert rows[0]["model"] == "smollm2-135m" and rows[1]["parent"] == "smollm2-135m"
    assert rows[1]["model"].endswith("-m1")  # M1 by name too
    for r in rows:
        assert 0.0 <= r["accuracy"] <= 1.0 and r["lo"] <= r["accuracy"] <= r["hi"] and r["tokens"] > 0
    assert rows[1]["job_id"] is not None and rows[1]["train_s"] > 0
    with AppContext(settings) as ctx:
        m1 = ctx.registry.get(rows[1]["model"])
        assert m1.parent == "smollm2-135m" and m1.adapter and Path(m1.adapter).is_dir()
        assert m1.training_run == str(rows[1]["job_id"])
        jobs = len(ctx.runner.list())
    state = json.loads((Path(body["dir"]) / imp.STATE).read_text())
    assert state["status"] in ("done", "stopped_early") and state["pending"] is None
    assert [it["model"] for it in state["iterations"]] == [r["model"] for r in rows]
    assert state["settings"]["task"] == "arithmetic" and state["settings"]["method"] == method
    assert state["settings"]["eval_strategy"] == imp.EVAL_STRATEGY.get(method, "system1")  # as it trains

    code, out2, err = cli(data, *args)  # the same command again: continues (nothing left), trains nothing
    assert code == 0, err[-3000:]
    assert json.loads(out2)["id"] == body["id"] and json.loads(out2)["iterations"] == rows
    code, out3, _ = cli(data, "improve", "--resume", str(body["id"]))
    assert code == 0 and rows[1]["model"] in out3 and "accuracy" in out3
    with AppContext(settings) as ctx:
        assert len(ctx.runner.list()) == jobs
    code, listed, _ = cli(data, "improve", "--list")
    assert code == 0 and f"{body['id']}: arithmetic {method}" in listed


def test_a_failed_iteration_keeps_m0_and_a_rerun_picks_up_its_job(settings) -> None:
    """An iteration whose job fails (IRPO with 2-token answers: no correct sample, no pair) leaves M0's row and
    the job in the state file; the rerun does not score M0 again and resumes that job (not a new one)."""
    _trainer()
    data = settings.data_dir
    args = ["improve", "--task", "game24", "--method", "irpo", "--eval-limit", "2", "--eval-max-new-tokens", "8",
            "--set", "max_items=2", "--set", "samples=2", "--set", "max_new_tokens=2"]  # fmt: skip
    line = cli_error(data, *args)
    assert "iteration 1: training job" in line and "failed" in line and "no chosen answer" in line
    [run] = imp.list_runs(AppContext(settings))
    assert run.status == "failed" and [it.iteration for it in run.iterations] == [0]
    assert run.pending and run.pending["iteration"] == 1
    job_id = run.pending["job_id"]
    results = Path(data) / "evals" / run.iterations[0].eval_name / "results.jsonl"
    answers = results.read_text()

    line = cli_error(data, *args)  # rerun: the same run, the same job resumed; M0 is not scored again
    assert f"training job {job_id} failed" in line
    assert results.read_text() == answers
    with AppContext(settings) as ctx:
        assert [j.id for j in ctx.runner.list()] == [job_id]
        assert ctx.runner.get(job_id).resumed
    [again] = imp.list_runs(AppContext(settings))
    assert again.id == run.id and [it.model for it in again.iterations] == [run.model]


def test_scores_get_the_methods_answer_budget(settings) -> None:
    """Greedy, with the tokens the method trains its answers with (a method without such a setting: 64)."""
    with AppContext(settings) as ctx:
        for method, field_name in imp.EVAL_TOKENS.items():
            if method in TRAINERS:
                params = imp._eval_params(ctx, method, {field_name: 40}, "system1", None)
                assert params == {"temperature": 0.0, "max_new_tokens": 40}
        if "s2_distill" in TRAINERS:
            params = imp._eval_params(ctx, "s2_distill", {}, "system1", {"max_new_tokens": 8})
            assert params["max_new_tokens"] == 8
            assert imp._eval_params(ctx, "s2_distill", {}, "system1", None)["max_new_tokens"] == 64


#: a tiny Self-Rewarding iteration with Thought Preference Optimization: 3 train questions, 2 structured
#: thought + response answers each, the log-prob judge, one DPO step
TPO = {"max_prompts": 3, "n_samples": 2, "max_new_tokens": 48, "judge_score_mode": "logprob", "tpo": True,
       "tpo_structured": True, "max_steps": 1, "max_length": 384, "lora_r": 4, "lora_alpha": 8,
       "per_device_train_batch_size": 1}  # fmt: skip


def test_self_rewarding_tpo_is_scored_as_it_was_trained(settings) -> None:
    """``--method self_rewarding --set tpo=true``: M0 and M1 are asked each held-out question inside the thought
    prompt the model trains with, and the task reward scores the answer's response part; M1 is registered with
    its lineage (parent M0, the task, TPO), scored, and in the table."""
    assert "self_rewarding" in TRAINERS  # registered in pyproject.toml: missing is a failure, not a skip
    from studio.training.self_rewarding import thought_prompt, tpo_generic_response

    task = get_task("arithmetic")
    with AppContext(settings) as ctx:
        run = imp.improve(ctx, "arithmetic", "self_rewarding", 1, values=TPO, eval_limit=4, stop_early=False)
        s = run.settings
        assert s["eval_prompt"] == "studio.training.self_rewarding:tpo_generic_question"
        assert s["eval_answer"] == "studio.training.self_rewarding:tpo_generic_response"
        assert s["eval_params"]["max_new_tokens"] == TPO["max_new_tokens"]  # the trained answer budget
        assert [it.iteration for it in run.iterations] == [0, 1] and run.status == "done"
        m1 = run.iterations[1]
        assert m1.parent == "smollm2-135m" and m1.job_id is not None and 0.0 <= m1.accuracy <= 1.0
        assert m1.lo <= m1.accuracy <= m1.hi and m1.n == 4 and m1.tokens > 0
        assert ctx.registry.get(m1.model).parent == "smollm2-135m"
        config = ctx.store.get_model(m1.model)["config"]
        assert (config["task"], config["tpo"], config["iteration"]) == ("arithmetic", "generic", 1)
        by_id = {i.id: i for i in task.load("test").items}
        for it in run.iterations:  # asked inside the thought prompt; the reward reads the response
            path = Path(settings.data_dir) / "evals" / it.eval_name / "results.jsonl"
            rows = [json.loads(line) for line in path.read_text().splitlines()]
            assert {r["item"] for r in rows} == {i.id for i in task.load("test").items[:4]}
            for r in rows:
                assert ctx.store.get_prompt(r["prompt_id"])["text"] == thought_prompt(
                    task.prompt(by_id[r["item"]])
                )
            rewards = [task.reward(by_id[r["item"]], tpo_generic_response(r["answer"])) for r in rows]
            assert it.accuracy == sum(rewards) / 4
    assert m1.model in imp.table(run)


def test_a_grpo_iteration_is_trained_registered_and_scored(settings) -> None:
    """GRPO through the loop: one real GRPOTrainer step from M0 on train questions; M1's LoRA weights moved, it is
    registered with its lineage (parent M0, the task) and scored on the test split like M0."""
    from tests.test_grpo import TINY as GRPO_TINY  # level-1 questions, G=4: seeded so that a group has signal
    from tests.test_training_methods import assert_adapter_moved

    values = {k: v for k, v in GRPO_TINY.items() if k != "task"}
    with AppContext(settings) as ctx:
        run = imp.improve(ctx, "arithmetic", "grpo", 1, values=values, eval_limit=4, stop_early=False,
                          eval_params=FAST_EVAL, new=True)  # fmt: skip
        assert [it.iteration for it in run.iterations] == [0, 1] and run.status == "done"
        m0, m1 = run.iterations
        assert run.settings["eval_strategy"] == "system1"  # GRPO answers the task's prompt as asked
        for it in (m0, m1):
            assert it.n == 4 and it.lo <= it.accuracy <= it.hi and it.tokens > 0
        spec = ctx.registry.get(m1.model)
        assert spec.parent == "smollm2-135m" and spec.training_run == str(m1.job_id)
        assert ctx.store.get_model(m1.model)["config"]["task"] == "arithmetic"
        assert_adapter_moved(Path(spec.adapter))
