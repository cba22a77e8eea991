"""The Train tab's jobs: the table, the live view of one job (summary, curves, latest values, log) polled while
a job is live, Cancel and Resume; after a reward-model or DPO job, one click judges the voted comparisons outside
its training data with the model it made and shows that judge's agreement with people. Jobs are processes with
their state in their run dirs: a reopened page re-attaches to the running job."""

# no `from __future__ import annotations`: gradio reads the handlers' real annotations (gr.SelectData)

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import gradio as gr
import pandas as pd
from matplotlib.figure import Figure

from components.common import friendly, row_id, table
from components.judge import ci_text, flips_text
from components.train.compare import CompareHandles, model_pickers
from components.train.events import PRIVATE, QUIET
from components.train.js import SCROLL_LOG_JS
from components.train.plots import LATEST_COLUMNS, curves_figure, latest_frame, note_figure
from studio.context import AppContext
from studio.errors import InputError
from studio.judging import JUDGE_OF_METHOD, HeldOutResult, judge_held_out
from studio.training import Runner, TrainingJob

if TYPE_CHECKING:  # form imports this module for its live view
    from components.train.form import FormHandles


POLL_S = 2.0  # the live view's refresh interval while a job is queued or running


LIVE = ("queued", "running")


JOB_COLUMNS = ["id", "method", "state", "step", "base_model", "models", "device", "started_at", "finished_at",
               "error"]  # fmt: skip


@dataclass
class JobHandles:
    job_id: gr.Number
    refresh: gr.Button
    cancel: gr.Button
    resume: gr.Button
    jobs: gr.Dataframe
    job_md: gr.Markdown
    curves: gr.Plot
    latest: gr.Dataframe
    logs: gr.Textbox
    timer: gr.Timer
    seen: gr.State  # the live view's last signature, per browser session
    judge_heldout: gr.Button  # after a reward-model or DPO job: judge the votes outside its training data
    heldout: gr.Markdown  # that judge's held-out agreement with people, with its CI and count

    @property
    def view(self) -> list[gr.components.Component]:
        return [self.job_md, self.curves, self.latest, self.logs]


def jobs_frame(jobs: Sequence[TrainingJob]) -> pd.DataFrame:
    rows = [
        {
            **j.to_dict(),
            "step": f"{j.step}/{j.max_steps}" if j.max_steps else j.step,
            "models": ", ".join(j.models),
        }
        for j in jobs
    ]
    return pd.DataFrame(table(rows, JOB_COLUMNS), columns=JOB_COLUMNS)


def pick_job(jobs: Sequence[TrainingJob]) -> TrainingJob | None:
    """The job a (re)opened page shows: a running one, else a queued one, else the newest."""
    for state in LIVE:
        found = [j for j in jobs if j.state == state]
        if found:
            return found[-1] if state == "queued" else found[0]
    return jobs[0] if jobs else None


def job_markdown(job: TrainingJob) -> str:
    progress = f"step {job.step}/{job.max_steps}" if job.max_steps else f"step {job.step}"
    parts = [f"**Job {job.id}** · {job.method} · **{job.state}** · {progress}",
             f"base `{job.base_model or '-'}` → `{job.output_name or '-'}`", f"device {job.device or '-'}"]  # fmt: skip
    text = " · ".join(parts)
    if job.resumed:
        text += f" · resumed: {job.resume_note}" if job.resume_note else " · resumed"
    if job.error:
        text += f"\n\n❌ **{job.error}**"
    if job.models:
        text += f"\n\nRegistered: {', '.join(f'`{m}`' for m in job.models)} (in the Arena's model picker)."
    return text


def heldout_markdown(r: HeldOutResult) -> str:
    """The one click's answer: held-out agreement with its CI and count, what was left out, the job's counts."""
    job, e = r.job, r.entry or {}
    head = (
        f"**{job.judge}** on `{job.judge_model}`: {r.held_out_items} voted pairs outside its training data "
        f"({job.skipped} already judged, {job.judged} judged now, {job.failed} failed); "
        f"{r.train_items} voted pairs in its training data left out"
    )
    if not e.get("pairs"):
        return (
            f"{head}.\n\nNo held-out vote pairs to score it on: every voted pair was in its training data. "
            "Vote on new comparisons in the Arena, or import held-out preference pairs."
        )
    return (
        f"{head}.\n\n**Held-out agreement with people** over {e['pairs']} vote pairs: "
        f"S2 (without ties) **{ci_text(e['s2'][0])}** · S1 (with ties) {ci_text(e['s1'][0])} · "
        f"Cohen's κ {ci_text(e['kappa'][0])} (95% bootstrap CIs) · swap-flip rate {flips_text(e.get('swap_flip'))}"
    )


def held_out_judge(job: TrainingJob) -> tuple[str, str]:
    """(judge, model) for the one click: the model a finished reward-model or DPO job made; else a clear error."""
    judge = JUDGE_OF_METHOD.get(job.method)
    if judge is None:
        methods = " or ".join(sorted(JUDGE_OF_METHOD))
        raise InputError(f"job {job.id} is a {job.method} job: judging held-out votes needs a {methods} job")
    if job.state != "succeeded":
        raise InputError(f"job {job.id} is {job.state}: judge its held-out votes once it has succeeded")
    if not job.models:
        raise InputError(f"job {job.id} registered no model to judge with")
    return judge, job.models[-1]


def job_view(runner: Runner, job_id: int) -> tuple[str, Figure, pd.DataFrame, str]:
    """What the live view shows for one job: summary, curves, latest values, the end of the log."""
    job = runner.get(job_id)
    curves = runner.curves(job_id)
    return job_markdown(job), curves_figure(job, curves), latest_frame(curves), runner.logs(job_id, 200)


def empty_view(text: str = "No training jobs yet: preview the data, then Start.") -> tuple[Any, ...]:
    return text, note_figure(text), pd.DataFrame(columns=LATEST_COLUMNS), ""


def signature(runner: Runner, jobs: Sequence[TrainingJob], job_id: int | None) -> list[Any]:
    """Changes when anything the live view shows changes (so an idle tick redraws nothing)."""
    sig: list[Any] = [[j.id, j.state, j.step, j.error, j.models] for j in jobs] + [job_id]
    if job_id is not None and any(j.id == job_id for j in jobs):
        run = runner.rundir(job_id)
        sig += [_size(run.metrics_file), _size(run.log)]
    return sig


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def jobs_layout() -> JobHandles:
    with gr.Row(equal_height=True):
        job_id = gr.Number(label="Job", precision=0, minimum=0, scale=1)
        refresh = gr.Button("↻ Refresh", scale=1)
        cancel = gr.Button("Cancel job", variant="stop", scale=1)
        resume = gr.Button("Resume job", scale=1)
    jobs = gr.Dataframe(headers=JOB_COLUMNS, interactive=False, max_height=240,
                        label="Runs (newest first): click a row to follow it")  # fmt: skip
    job_md = gr.Markdown()
    with gr.Row(equal_height=True):
        judge_heldout = gr.Button("Judge held-out votes", scale=1)
        heldout = gr.Markdown(
            "After a reward-model or DPO job: judge the voted comparisons outside its training data with the "
            "model it made (reward_model or dpo_implicit), and see its agreement with people.",
        )
    curves = gr.Plot(label="Curves", show_label=False)
    with gr.Row():
        latest = gr.Dataframe(headers=LATEST_COLUMNS, interactive=False, label="Latest values", scale=1)
        logs = gr.Textbox(label="Log (last 200 lines)", lines=12, max_lines=12, interactive=False, scale=2,
                          elem_id="train-log")  # fmt: skip
    timer = gr.Timer(POLL_S, active=False)
    return JobHandles(job_id, refresh, cancel, resume, jobs, job_md, curves, latest, logs, timer, gr.State(None),
                      judge_heldout, heldout)  # fmt: skip


def live_outputs(f: "FormHandles", j: JobHandles, c: CompareHandles) -> list[gr.components.Component]:
    return [j.jobs, j.job_id, *j.view, f.base_model, c.model, c.judge_model, j.timer, j.seen]


def live_view_fn(ctx: AppContext) -> Callable[[Any, Any], tuple[Any, ...]]:
    def live_view(jid: Any, last: Any) -> tuple[Any, ...]:
        """The poll: sync every job, then redraw only what changed; the timer runs while a job is live."""
        runner = ctx.runner
        try:
            all_jobs = runner.refresh()
        except Exception as e:  # a poll must never raise a toast every 2 s; say it once in the status line
            return (gr.skip(),) * 2 + (f"⚠ could not refresh the jobs: {e}",) + (gr.skip(),) * 7 + (last,)
        live = any(j.state in LIVE for j in all_jobs)
        chosen = int(jid) if jid not in (None, "") else None
        if chosen is None or all(j.id != chosen for j in all_jobs):
            chosen = getattr(pick_job(all_jobs), "id", None)
        sig = signature(runner, all_jobs, chosen)
        if sig == last:
            return (*(gr.skip(),) * 9, gr.Timer(active=live), last)
        view = job_view(runner, chosen) if chosen is not None else empty_view()
        # a job that just finished registered its model: every picker of this tab offers it now
        return (jobs_frame(all_jobs), chosen, *view, *model_pickers(ctx), gr.Timer(active=live), sig)

    return live_view


def wire_jobs(ctx: AppContext, f: "FormHandles", j: JobHandles, c: CompareHandles) -> None:
    live_view = live_view_fn(ctx)
    live = ([j.job_id, j.seen], live_outputs(f, j, c))

    @friendly
    def train_jobs() -> pd.DataFrame:
        return jobs_frame(ctx.runner.refresh())

    @friendly
    def train_status(jid: Any) -> tuple[str, Figure, pd.DataFrame, str]:
        runner = ctx.runner
        return job_view(runner, runner.sync(row_id(jid, "job")).id)

    @friendly
    def train_cancel(jid: Any) -> tuple[str, pd.DataFrame]:
        runner = ctx.runner
        job = runner.cancel(row_id(jid, "job"))
        return f"Job **{job.id}** is {job.state}.", jobs_frame(runner.list())

    @friendly
    def train_resume(jid: Any) -> tuple[str, pd.DataFrame]:
        runner = ctx.runner
        job = runner.resume(row_id(jid, "job"))
        msg = f"Job **{job.id}** is {job.state} again: {job.resume_note}."
        return msg, jobs_frame(runner.list())

    @friendly
    def train_judge_heldout(jid: Any, progress: gr.Progress = gr.Progress()) -> str:  # noqa: B008
        job = ctx.runner.sync(row_id(jid, "job"))
        judge, model = held_out_judge(job)

        def report(done: int, total: int, msg: str) -> None:
            progress((done, total) if total else 0.0, desc=f"{judge} on {model}: {msg}")

        found = judge_held_out(ctx.store, ctx.registry, ctx.settings.runs_dir, model, judge, progress=report)
        return heldout_markdown(found)

    def select_job(evt: gr.SelectData) -> Any:
        value = (evt.row_value or [None])[0]
        return int(value) if str(value).isdigit() else gr.skip()

    j.refresh.click(train_jobs, None, j.jobs, api_name="train_jobs").then(live_view, *live, **QUIET)
    j.job_id.input(train_status, j.job_id, j.view, api_name="train_status")
    j.jobs.select(select_job, None, j.job_id, **PRIVATE).then(train_status, j.job_id, j.view, **PRIVATE)
    j.cancel.click(train_cancel, j.job_id, [f.message, j.jobs], api_name="train_cancel").success(
        live_view, *live, **QUIET
    )
    j.resume.click(train_resume, j.job_id, [f.message, j.jobs], api_name="train_resume").success(
        live_view, *live, **QUIET
    )
    j.judge_heldout.click(
        train_judge_heldout, j.job_id, j.heldout, api_name="train_judge_heldout",
        concurrency_id="generate", concurrency_limit=ctx.settings.concurrency,  # the models the Arena uses too
    )  # fmt: skip
    j.timer.tick(live_view, *live, **QUIET)
    j.logs.change(None, None, None, js=SCROLL_LOG_JS, **PRIVATE)
    # on page (re)load: show the running job (or the newest) and follow it while anything is live
    gr.on(None, lambda: live_view(None, None), None, live[1], **QUIET)
