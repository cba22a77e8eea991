"""The Improve tab's view functions and the background improve service (:func:`studio.improve.start` / ``stop`` /
``start_resume``) on a real tiny System-2-distillation run with the default model: the reference row (M0 through
the System-2 strategy) is scored once and kept through a stop and a resume; Stop cancels the job in flight and
keeps M0's row; Resume continues the same job; the table, references, plot and Open-in-Arena columns come from
the state file. Bad input is a clear message before anything runs.
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from matplotlib.figure import Figure

from components import improve as tab
from studio import improve as imp
from studio.context import AppContext
from studio.errors import InputError, StudioError
from tests.test_improve import TINY

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

SETTINGS = "\n".join(f"{k}={v}" for k, v in TINY["s2_distill"].items())
FORM = ("arithmetic", "s2_distill", "smollm2-135m", 1, 4, False, SETTINGS)


def wait_for(what, timeout: float = 300.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s")


def finish(ctx: AppContext) -> imp.Live:
    live = imp.active(ctx)
    assert live is not None and live.thread is not None
    live.thread.join(timeout=600)
    assert not live.running
    return live


def test_bad_input_is_a_message_before_anything_runs(settings) -> None:
    with AppContext(settings) as ctx:
        for form, match in [
            (("", "s2_distill", "", 1, 4, True, ""), "pick a task and a method"),
            (("arithmetic", "dpo", "", 1, 4, True, ""), "does not train on a task"),
            (("arithmetic", "s2_distill", "", 0, 4, True, ""), "number of iterations must be >= 1"),
            (("arithmetic", "s2_distill", "", 1, "lots", True, ""), "eval limit must be a number"),
            (("arithmetic", "s2_distill", "nope", 1, 4, True, ""), "unknown model 'nope'"),
            (("arithmetic", "s2_distill", "", 1, 4, True, "max_steps"), "key=value"),
            (("arithmetic", "s2_distill", "", 1, 4, True, "task=game24"), "improve loop's to set"),
            (("arithmetic", "s2_distill", "", 1, 4, True, "strategy=nope"), "unknown strategy"),
        ]:
            with pytest.raises(StudioError, match=match):  # InputError, or ModelNotFound for a model
                tab.start_run(ctx, *form)
        with pytest.raises(InputError, match="pick an improve run"):
            tab.stop_run(ctx, "")
        with pytest.raises(InputError, match="is not running"):
            tab.stop_run(ctx, "3")
        with pytest.raises(InputError, match="no improve run '3'"):
            tab.resume_run(ctx, "3")
        assert imp.list_runs(ctx) == [] and imp.active(ctx) is None
        assert "No improve runs yet" in tab.view(ctx)[1]
        assert "System-2 distillation" in tab.about_markdown("arithmetic", "s2_distill")
        assert "Yu et al. 2024" in tab.about_markdown("arithmetic", "s2_distill")
        assert "s2_distill" in imp.task_methods() and "dpo" not in imp.task_methods()


def test_stop_keeps_m0_and_the_reference_and_resume_finishes_the_run(settings) -> None:
    started = time.monotonic()
    with AppContext(settings) as ctx:
        message, run_id = tab.start_run(ctx, *FORM)
        assert f"run **{run_id}**" in message
        with pytest.raises(InputError, match="one improve run at a time"):
            tab.start_run(ctx, *FORM)
        # the job in flight: Stop cancels it through the runner
        pending = wait_for(lambda: imp.load(ctx, run_id).pending, timeout=300)
        run = imp.load(ctx, run_id)
        assert [it.iteration for it in run.iterations] == [0]
        [ref] = run.references  # scored before iteration 1 starts
        assert ref["label"] == "System 2 (cot) on M0" and ref["strategy"] == "cot" and ref["n"] == 4
        assert 0 <= ref["accuracy"] <= 1 and ref["tokens"] > 0
        assert "stopping improve run" in tab.stop_run(ctx, run_id)
        live = finish(ctx)
        assert "stopped by the user" in live.error
        run = imp.load(ctx, run_id)
        assert run.status == "cancelled" and [it.iteration for it in run.iterations] == [0]
        assert ctx.runner.get(pending["job_id"]).state == "cancelled"
        assert "cancelled" in tab.status_markdown(ctx, run)
        answers = Path(settings.data_dir) / "evals" / ref["eval_name"] / "results.jsonl"
        before = answers.read_text()

        # Resume: the same job resumed, M1 scored; M0 and the reference are not scored again
        assert "Resumed improve run" in tab.resume_run(ctx, run_id)
        finish(ctx)
        run = imp.load(ctx, run_id)
        assert run.status in ("done", "stopped_early"), run.error
        assert [it.iteration for it in run.iterations] == [0, 1] and run.iterations[1].job_id == pending[
            "job_id"
        ]
        assert ctx.runner.get(pending["job_id"]).resumed
        assert run.references == [ref] and answers.read_text() == before
        assert [j.id for j in ctx.runner.list()] == [pending["job_id"]]

        # the view
        shown = tab.view(ctx, None)
        picker, status, rows, refs, plot, curves, runs, arena_model, timer = shown
        assert picker.value == run_id and f"Improve run {run_id}" in status
        assert list(rows["model"]) == [it.model for it in run.iterations]
        assert rows["parent"][1] == "smollm2-135m" and rows["95% CI"][0].startswith("[")
        assert list(refs["reference"]) == ["System 2 (cot) on M0"]
        assert isinstance(plot, Figure) and isinstance(curves, Figure)
        assert list(runs["id"]) == [int(run_id)] and arena_model.value == run.iterations[1].model
        m1 = run.iterations[1].model
        assert tab.arena_columns(ctx, run_id, m1) == ["system1 @ smollm2-135m", f"system1 @ {m1}"]
        with pytest.raises(InputError, match="pick a trained model"):
            tab.arena_columns(ctx, run_id, "smollm2-135m")
        assert "System 2 (cot) on M0" in imp.table(run)
    assert time.monotonic() - started < 240
