"""Improve tab: a model trains itself on a verifiable task, one training job per iteration, every model scored on
the task's held-out test split (:mod:`studio.improve`). Pick a task, a method, a base model, iterations and the
method's per-iteration settings; Start runs the loop in the background (one run per studio), Stop cancels its job
in flight, Resume continues a run at its next iteration. While it runs a timer redraws the status, the live curves
of the job in flight, the per-iteration table (with the reference rows: M0 through the System-2 strategy a
distillation learns from) and the accuracy/tokens plot. "Open in Arena" puts M0 and a chosen M_t side by side.
"""

# no `from __future__ import annotations`: gradio reads the handlers' real annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd
from matplotlib.figure import Figure

from components.common import friendly, optional, table, whole
from components.train.events import OPEN, PRIVATE, QUIET
from components.train.form import method_markdown, parse_settings_box
from components.train.plots import curves_figure, note_figure
from studio import improve as imp
from studio.arena import column_choices
from studio.context import AppContext
from studio.errors import InputError
from studio.eval.tasks import TASKS, get_task
from studio.methods import Method
from studio.training import describe

POLL_S = 2.0
ITERATION_COLUMNS = ["iteration", "model", "parent", "accuracy", "95% CI", "n", "tokens", "train_s", "eval_s",
                     "improved"]  # fmt: skip
REFERENCE_COLUMNS = ["reference", "model", "strategy", "accuracy", "95% CI", "n", "tokens", "eval_s"]
RUN_COLUMNS = ["id", "task", "method", "model", "iterations", "status", "best accuracy", "updated"]


@dataclass
class Handles:
    task: gr.Dropdown
    method: gr.Dropdown
    model: gr.Dropdown
    iterations: gr.Number
    eval_limit: gr.Number
    stop_early: gr.Checkbox
    settings: gr.Textbox
    about: gr.Markdown
    start: gr.Button
    stop: gr.Button
    resume: gr.Button
    run: gr.Dropdown  # the run shown (its id)
    message: gr.Markdown
    status: gr.Markdown
    iterations_table: gr.Dataframe
    references: gr.Dataframe
    plot: gr.Plot
    curves: gr.Plot
    runs: gr.Dataframe
    arena_model: gr.Dropdown  # the M_t to open beside M0
    open_arena: gr.Button
    timer: gr.Timer

    @property
    def view(self) -> list[Any]:
        return [self.run, self.status, self.iterations_table, self.references, self.plot, self.curves, self.runs,
                self.arena_model, self.timer]  # fmt: skip


# -- what the view shows (plain functions: the tests call them) --------------------------------------------------
def about_markdown(task: str | None, method: str | None) -> str:
    lines = []
    if optional(task) in TASKS:
        t = get_task(str(task))
        lines.append(f"**Task {t.name}**: {t.description}. Scored by `{t.metric}` ({t.source}).")
    if optional(method):
        lines.append(method_markdown(describe(str(method))))
    return "\n\n".join(lines)


def start_run(
    ctx: AppContext, task: str | None, method: str | None, model: str | None, iterations: Any, eval_limit: Any,
    stop_early: bool, settings_text: str | None,
) -> tuple[str, str]:  # fmt: skip
    """Start a run in the background (or continue the one with these settings); (message, run id)."""
    if not optional(task) or not optional(method):
        raise InputError("pick a task and a method")
    limit = None if eval_limit in (None, "", 0) else whole(eval_limit, "eval limit", lo=1)
    run_id = imp.start(
        ctx, str(task), str(method), whole(iterations, "number of iterations", lo=1), model=optional(model),
        values=parse_settings_box(settings_text), eval_limit=limit, stop_early=bool(stop_early),
    )  # fmt: skip
    return f"Started improve run **{run_id}** ({task}, {method}).", str(run_id)


def stop_run(ctx: AppContext, run_id: str | None) -> str:
    return imp.stop(ctx, _run_id(run_id))


def resume_run(ctx: AppContext, run_id: str | None) -> str:
    rid = imp.start_resume(ctx, _run_id(run_id))
    return f"Resumed improve run **{rid}**: it continues at its next iteration."


def shown_run(ctx: AppContext, run_id: str | None = None) -> imp.ImproveResult | None:
    """The run to show: the one picked, else the one this studio runs, else the newest; None before any."""
    if optional(run_id):
        return imp.load(ctx, str(run_id))
    live = imp.active(ctx)
    if live is not None:
        return imp.load(ctx, live.run_id)
    runs = imp.list_runs(ctx)
    return runs[0] if runs else None


def status_markdown(ctx: AppContext, run: imp.ImproveResult | None) -> str:
    if run is None:
        return "No improve runs yet: pick a task and a method, then Start."
    live = imp.active(ctx)
    mine = live is not None and live.run_id == run.id
    running = mine and live.running
    state = run.status
    if run.status == "running" and not running:
        state = "interrupted (not running in this studio; Resume continues it)"
    done = max(len(run.iterations) - 1, 0)
    s = run.settings
    text = (
        f"**Improve run {run.id}** · {run.task} · {run.method} from `{run.model}` · **{state}** · "
        f"{done}/{run.iterations_wanted} iterations · scored with {s.get('eval_strategy')} on "
        f"{s.get('eval_limit') or 'all'} test items, greedy, {s.get('eval_params', {}).get('max_new_tokens')} "
        "tokens"
    )
    if running and live.message:
        text += f"\n\n⏳ {live.message}"
    error = (live.error if mine and not running else "") or run.error
    if error and run.status not in ("done", "stopped_early"):
        text += f"\n\n❌ **{error}**"
    return text


def iterations_frame(run: imp.ImproveResult | None) -> pd.DataFrame:
    rows = [
        {**r, "accuracy": _num(r["accuracy"]), "95% CI": _ci(r["lo"], r["hi"]), "tokens": _num(r["tokens"], 1),
         "improved": "" if r["improved"] is None else ("yes" if r["improved"] else "no")}
        for r in (run.rows() if run else [])
    ]  # fmt: skip
    return pd.DataFrame(table(rows, ITERATION_COLUMNS), columns=ITERATION_COLUMNS)


def references_frame(run: imp.ImproveResult | None) -> pd.DataFrame:
    rows = [
        {**r, "reference": r["label"], "accuracy": _num(r["accuracy"]), "95% CI": _ci(r["lo"], r["hi"]),
         "tokens": _num(r["tokens"], 1)}
        for r in (run.references if run else [])
    ]  # fmt: skip
    return pd.DataFrame(table(rows, REFERENCE_COLUMNS), columns=REFERENCE_COLUMNS)


def runs_frame(ctx: AppContext) -> pd.DataFrame:
    rows = [
        {"id": r.id, "task": r.task, "method": r.method, "model": r.model,
         "iterations": f"{max(len(r.iterations) - 1, 0)}/{r.iterations_wanted}", "status": r.status,
         "best accuracy": _num(max((it.accuracy for it in r.iterations), default=math.nan)),
         "updated": r.updated_at}
        for r in imp.list_runs(ctx)
    ]  # fmt: skip
    return pd.DataFrame(table(rows, RUN_COLUMNS), columns=RUN_COLUMNS)


def accuracy_figure(run: imp.ImproveResult | None) -> Figure:
    """Accuracy per iteration with its 95% bootstrap CI, and tokens per answer; reference rows as dashed lines."""
    if run is None or not run.iterations:
        return note_figure("No scores yet: M0 is scored on the test split first.")
    its = run.iterations
    xs = [it.iteration for it in its]
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    acc, tok = fig.subplots(1, 2)
    values = [it.accuracy for it in its]
    lows = [max(it.accuracy - it.lo, 0) if not math.isnan(it.lo) else 0 for it in its]
    highs = [max(it.hi - it.accuracy, 0) if not math.isnan(it.hi) else 0 for it in its]
    acc.errorbar(xs, values, yerr=[lows, highs], marker="o", capsize=4, label=f"{run.method} M_t")
    tok.plot(xs, [it.tokens for it in its], marker="o", label=f"{run.method} M_t")
    for i, ref in enumerate(run.references):
        color = f"C{i + 1}"
        acc.axhline(ref["accuracy"], ls="--", color=color, label=ref["label"])
        if ref.get("lo") is not None and ref.get("hi") is not None:
            acc.axhspan(ref["lo"], ref["hi"], color=color, alpha=0.12)
        tok.axhline(ref["tokens"], ls="--", color=color, label=ref["label"])
    acc.set_title(f"Held-out accuracy on {run.task} (95% bootstrap CI, n={its[0].n})", fontsize=10)
    tops = [it.hi if not math.isnan(it.hi) else it.accuracy for it in its]
    tops += [r["hi"] if r.get("hi") is not None else r["accuracy"] for r in run.references]
    # the differences readable, 0 always shown
    acc.set_ylim(0, min(1.02, max(max(tops, default=0) * 1.25, 0.1)))
    tok.set_title("Tokens per answer", fontsize=10)
    tok.set_ylim(bottom=0)
    for ax in (acc, tok):
        ax.set_xlabel("iteration (0 = M0)", fontsize=8)
        ax.set_xticks(xs)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


def job_figure(ctx: AppContext, run: imp.ImproveResult | None) -> Figure:
    """The live curves of the run's job in flight (the Train tab's figure), else of its last iteration's job."""
    job_id = (run.pending or {}).get("job_id") if run else None
    if job_id is None and run is not None:
        job_id = next((it.job_id for it in reversed(run.iterations) if it.job_id is not None), None)
    if job_id is None:
        return note_figure("No training job yet: iteration 1 starts after M0 is scored.")
    job = ctx.runner.get(int(job_id))
    return curves_figure(job, ctx.runner.curves(job.id))


def arena_columns(ctx: AppContext, run_id: str | None, model: str | None) -> list[str]:
    """The Arena's columns for M0 beside ``model`` (an M_t of the run), each asked as the run scores them."""
    run = imp.load(ctx, _run_id(run_id))
    models = [it.model for it in run.iterations]
    if optional(model) not in models[1:]:
        raise InputError(
            f"pick a trained model of run {run.id} (one of: {', '.join(models[1:]) or 'none yet'})"
        )
    strategy = Method.parse(run.settings.get("eval_strategy") or "system1").label
    return [f"{strategy} @ {run.model}", f"{strategy} @ {model}"]


def view(ctx: AppContext, run_id: str | None = None) -> tuple[Any, ...]:
    """Everything the Timer redraws, in :attr:`Handles.view` order."""
    run = shown_run(ctx, run_id)
    live = imp.active(ctx)
    running = live is not None and live.running and run is not None and live.run_id == run.id
    choices = [(f"{r.id}: {r.task} {r.method} ({r.status})", str(r.id)) for r in imp.list_runs(ctx)]
    trained = [it.model for it in run.iterations[1:]] if run else []
    return (
        gr.Dropdown(choices=choices, value=str(run.id) if run else None),
        status_markdown(ctx, run), iterations_frame(run), references_frame(run), accuracy_figure(run),
        job_figure(ctx, run), runs_frame(ctx),
        gr.Dropdown(choices=trained, value=trained[-1] if trained else None),
        gr.Timer(active=running),
    )  # fmt: skip


def _run_id(value: str | None) -> str:
    if not optional(value):
        raise InputError("pick an improve run (the Run picker, or a row of the runs table)")
    return str(value).strip()


def _num(v: Any, digits: int = 3) -> Any:
    return "" if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), digits)


def _ci(lo: Any, hi: Any) -> str:
    return "" if lo is None or hi is None or math.isnan(lo) or math.isnan(hi) else f"[{lo:.3f}, {hi:.3f}]"


# -- layout and events -------------------------------------------------------------------------------------------
def build(ctx: AppContext, opened: Sequence[Any] = ()) -> Handles:
    methods = imp.task_methods()
    first = "s2_distill" if "s2_distill" in methods else (methods[0] if methods else None)
    gr.Markdown(
        "Self-improvement on a verifiable task: M0 is scored on the task's held-out test split, then each "
        "iteration trains M_t → M_{t+1} as a training job (registered with lineage) and scores it the same way. "
        "Closing the page does not stop a run; Stop cancels its job in flight, Resume continues it."
    )
    with gr.Row():
        task = gr.Dropdown(list(TASKS), value="arithmetic", label="Task", scale=1, elem_id="improve-task")
        method = gr.Dropdown(methods, value=first, label="Method", scale=1, elem_id="improve-method")
        model = gr.Dropdown(
            ctx.model_names(), value=ctx.settings.default_model, label="Base model (M0)", scale=1
        )
        iterations = gr.Number(
            2, precision=0, label="Iterations", minimum=1, scale=1, elem_id="improve-iterations"
        )
        eval_limit = gr.Number(
            0, precision=0, label="Eval limit (first N test items; 0 = all)", minimum=0, scale=1,
            elem_id="improve-eval-limit",
        )  # fmt: skip
        stop_early = gr.Checkbox(True, label="Stop early when an iteration does not improve", scale=1)
    about = gr.Markdown(about_markdown("arithmetic", first))
    settings = gr.Textbox(
        "", lines=3, max_lines=8, elem_id="improve-settings",
        label="Per-iteration settings of the method (JSON, or key=value lines, as in the Train tab; the Train "
        "tab's 'Every setting' lists them)",
    )  # fmt: skip
    with gr.Row():
        start = gr.Button("Start", variant="primary", elem_id="improve-start")
        stop = gr.Button("Stop", variant="stop", elem_id="improve-stop")
        resume = gr.Button("Resume", elem_id="improve-resume")
        run = gr.Dropdown([], label="Run", scale=2, elem_id="improve-run")
    message = gr.Markdown(elem_id="improve-message")
    status = gr.Markdown(elem_id="improve-status")
    iterations_table = gr.Dataframe(headers=ITERATION_COLUMNS, interactive=False, label="Per iteration (test split)",
                                    elem_id="improve-table")  # fmt: skip
    references = gr.Dataframe(headers=REFERENCE_COLUMNS, interactive=False, elem_id="improve-references",
                              label="Reference rows: M0 through the distilled System-2 strategy (System-2 distillation runs only)")  # fmt: skip
    plot = gr.Plot(label="Accuracy and tokens per iteration", show_label=False, elem_id="improve-plot")
    with gr.Row():
        arena_model = gr.Dropdown([], label="Trained model (M_t)", scale=2, elem_id="improve-arena-model")
        open_arena = gr.Button("Open in Arena beside M0", scale=1, elem_id="improve-open-arena")
    with gr.Accordion("Training curves: the job in flight, else the last iteration's", open=True):
        curves = gr.Plot(label="Live curves", show_label=False, elem_id="improve-curves")
    with gr.Accordion("Runs", open=False):
        runs = gr.Dataframe(headers=RUN_COLUMNS, interactive=False, max_height=260, elem_id="improve-runs")
    timer = gr.Timer(POLL_S, active=False)
    h = Handles(task, method, model, iterations, eval_limit, stop_early, settings, about, start, stop, resume, run,
                message, status, iterations_table, references, plot, curves, runs, arena_model, open_arena, timer)  # fmt: skip
    _wire(ctx, h, opened)
    return h


def _wire(ctx: AppContext, h: Handles, opened: Sequence[Any]) -> None:
    @friendly
    def improve_start(*args: Any) -> tuple[Any, ...]:
        message, run_id = start_run(ctx, *args)
        return (message, *view(ctx, run_id))

    @friendly
    def improve_stop(run_id: str | None) -> tuple[Any, ...]:
        return (stop_run(ctx, run_id), *view(ctx, run_id))

    @friendly
    def improve_resume(run_id: str | None) -> tuple[Any, ...]:
        return (resume_run(ctx, run_id), *view(ctx, run_id))

    @friendly
    def improve_view(run_id: str | None) -> tuple[Any, ...]:
        return view(ctx, run_id)

    @friendly
    def improve_open() -> tuple[Any, ...]:
        return (gr.Dropdown(choices=ctx.model_names()), *view(ctx, None))

    def pick_run(evt: gr.SelectData) -> str:
        return str(evt.row_value[0]) if evt.row_value else gr.skip()

    out = [h.message, *h.view]
    form = [h.task, h.method, h.model, h.iterations, h.eval_limit, h.stop_early, h.settings]
    h.start.click(improve_start, form, out, api_name="improve_start")
    h.stop.click(improve_stop, h.run, out, api_name="improve_stop")
    h.resume.click(improve_resume, h.run, out, api_name="improve_resume")
    h.run.input(improve_view, h.run, h.view, **QUIET)
    h.runs.select(pick_run, None, h.run, **PRIVATE).then(improve_view, h.run, h.view, **QUIET)
    h.timer.tick(improve_view, h.run, h.view, **QUIET)
    gr.on([h.task.input, h.method.input], friendly(about_markdown), [h.task, h.method], h.about, **QUIET)
    gr.on(list(opened) or None, improve_open, None, [h.model, *h.view], api_name="improve_open", **OPEN)


def wire_arena(ctx: AppContext, h: Handles, tabs: gr.Tabs, arena_tab: str, columns: gr.Dropdown) -> None:
    """ "Open in Arena": switch to the Arena tab (id ``arena_tab``) with M0 and the chosen M_t as its columns."""

    @friendly
    def improve_open_arena(run_id: str | None, model: str | None) -> tuple[Any, Any]:
        cols = arena_columns(ctx, run_id, model)
        return gr.Tabs(selected=arena_tab), gr.Dropdown(choices=column_choices(ctx.model_names()), value=cols)

    h.open_arena.click(
        improve_open_arena, [h.run, h.arena_model], [tabs, columns], api_name="improve_open_arena"
    )
