"""Train tab: pick a method and its main settings, preview the data, start a background job, follow its curves and
log live, cancel or resume it; then compare a trained model with its parent on a prompt set.

Jobs are processes with their state in their run dirs (and the store), never in the browser: a reopened page
re-attaches to the running job. The form's widgets are built from ``studio.training.describe(method)``; what
differs from the defaults is kept in one settings box (JSON), which is also what the API endpoints take.
"""

# no `from __future__ import annotations`: gradio reads the handlers' real annotations (gr.Progress)

import json
import math
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from components.common import friendly, limit_of, optional, row_id, table
from storage import Filters
from studio.api import list_strategies
from studio.compare import CompareResult, compare_with_parent
from studio.context import AppContext
from studio.errors import InputError
from studio.judges import JUDGES
from studio.training import DataPreview, FieldInfo, Job, MethodInfo, Runner, describe, methods
from studio.training.config import parse_value

POLL_S = 2.0  # the live view's refresh interval while a job is queued or running
LIVE = ("queued", "running")
SHARED_MAIN = (
    "learning_rate",
    "max_steps",
    "per_device_train_batch_size",
    "max_length",
    "use_lora",
    "lora_r",
    "output_name",
)
FORM_TYPES = ("int", "float", "bool", "str")  # lists and dicts go through the settings box
SOURCES = {"both": None, "human": "human", "judge": "judge"}
JOB_COLUMNS = ["id", "method", "state", "step", "base_model", "models", "device", "started_at", "finished_at",
               "error"]  # fmt: skip
LATEST_COLUMNS = ["curve", "step", "value", "points"]
SETTING_COLUMNS = ["setting", "default", "type", "help"]
WIN_COLUMNS = ["model", "parent", "judge", "prompts", "judged", "wins", "losses", "ties", "inconsistent",
               "failed", "win rate", "95% CI"]  # fmt: skip
ITEM_COLUMNS = ["comparison", "child shown as", "outcome", "P(child better)", "prompt", "child answer",
                "parent answer", "error"]  # fmt: skip
PAIRED = {"rewards/chosen": "rewards/chosen vs rejected", "rewards/rejected": "rewards/chosen vs rejected"}


@dataclass
class FormHandles:
    method: gr.Dropdown
    base_model: gr.Dropdown
    prompt_set: gr.Dropdown
    source: gr.Radio
    annotator: gr.Textbox
    about: gr.Markdown
    shared_fields: dict[str, gr.components.Component]  # the main shared settings, one widget each
    method_fields: dict[str, dict[str, gr.components.Component]]  # method -> its own settings' widgets
    groups: list[gr.Group]  # one per method, in ``method_fields`` order; only the chosen one is visible
    settings: gr.Textbox
    every: gr.Dataframe
    preview: gr.Button
    start: gr.Button
    preview_md: gr.Markdown
    preview_rows: gr.Dataframe
    message: gr.Markdown

    @property
    def inputs(self) -> list[gr.components.Component]:
        """What Preview and Start send: method, base model, settings box, prompt set, source, annotator."""
        return [self.method, self.base_model, self.settings, self.prompt_set, self.source, self.annotator]


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

    @property
    def view(self) -> list[gr.components.Component]:
        return [self.job_md, self.curves, self.latest, self.logs]


@dataclass
class CompareHandles:
    model: gr.Dropdown
    prompt_set: gr.Dropdown
    judge: gr.Dropdown
    judge_model: gr.Dropdown
    strategy: gr.Dropdown
    limit: gr.Number
    max_new_tokens: gr.Number
    run: gr.Button
    summary: gr.Markdown
    win_rate: gr.Dataframe
    items: gr.Dataframe


@dataclass
class Handles:
    form: FormHandles
    jobs: JobHandles
    compare: CompareHandles


# -- one runner per app context -----------------------------------------------------------------------------------
_RUNNERS: dict[int, tuple[AppContext, Runner]] = {}
_RUNNERS_LOCK = threading.Lock()


def runner_for(ctx: AppContext) -> Runner:
    """The context's job runner, made on first use (it opens the store, and fails dead jobs on start)."""
    with _RUNNERS_LOCK:
        entry = _RUNNERS.get(id(ctx))
        if entry is None or entry[0] is not ctx:
            entry = (ctx, Runner(ctx.settings, ctx.store))
            _RUNNERS[id(ctx)] = entry
        return entry[1]


# -- the form -----------------------------------------------------------------------------------------------------
def parse_settings(text: str | None) -> dict[str, Any]:
    """The settings box: a JSON object, or ``key=value`` lines as ``studio train --set`` takes them."""
    text = (text or "").strip()
    if not text:
        return {}
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f'settings are a JSON object, e.g. {{"max_steps": 2}} ({e.msg})') from None
        if not isinstance(value, dict):
            raise InputError('settings are a JSON object, e.g. {"max_steps": 2}')
        return value
    out: dict[str, Any] = {}
    for line in text.splitlines():
        key, sep, raw = line.partition("=")
        if line.strip() and (not sep or not key.strip()):
            raise InputError(f"a settings line is key=value, not {line.strip()!r}")
        if sep:
            out[key.strip()] = parse_value(raw.strip())
    return out


def dump_settings(values: dict[str, Any]) -> str:
    return json.dumps(values, ensure_ascii=False) if values else "{}"


def train_values(base_model: str | None, settings_text: str | None) -> dict[str, Any]:
    values = parse_settings(settings_text)
    if optional(base_model):
        values["base_model"] = optional(base_model)
    return values


def data_filters(prompt_set: str | None, source: str | None, annotator: str | None) -> Filters:
    if (source or "both") not in SOURCES:
        raise InputError(f"source is one of {', '.join(SOURCES)}, not {source!r}")
    return Filters(
        source=SOURCES[source or "both"], prompt_set=optional(prompt_set), annotator=optional(annotator)
    )


# Runs in the browser when a form widget changes: puts the value into the settings box, or drops it when it is
# the default. In the browser, so that quick edits of two widgets cannot race each other through the server.
MERGE_JS = """(text, value, method) => {
  const name = %(name)s, kind = %(kind)s, dflt = (%(defaults)s)[method];
  let v = value;
  if (v === null || v === undefined || (v === "" && (kind === "int" || kind === "float"))) v = null;
  else if (kind === "int") v = Math.round(Number(v));
  else if (kind === "float") v = Number(v);
  else if (kind === "bool") v = Boolean(v);
  else v = String(v);
  const src = (text || "").trim();
  if (src && !src.startsWith("{")) {
    const kept = src.split("\\n").filter((l) => l.split("=")[0].trim() !== name);
    if (v !== null && v !== dflt) kept.push(name + "=" + JSON.stringify(v));
    return kept.join("\\n");
  }
  let s;
  try { s = src ? JSON.parse(src) : {}; } catch (e) { return text; }
  if (typeof s !== "object" || s === null || Array.isArray(s)) return text;
  if (v === null || v === dflt) delete s[name]; else s[name] = v;
  return Object.keys(s).length ? JSON.stringify(s) : "{}";
}"""


def merge_js(f: FieldInfo, defaults: dict[str, Any]) -> str:
    """The browser-side merge for one setting; ``defaults`` maps each method to its default (methods differ:
    the reward model's learning rate, say). A key=value box keeps its format; broken JSON is left for
    Preview and Start to explain."""
    values = {"name": json.dumps(f.name), "kind": json.dumps(f.type), "defaults": json.dumps(defaults)}
    return MERGE_JS % values


def widget(f: FieldInfo) -> gr.components.Component:
    """A form widget for one setting, from its type, default, help and choices."""
    kw = {"label": f.name, "info": f.help}
    if f.choices:
        return gr.Dropdown(list(f.choices), value=f.default, **kw)
    if f.type == "bool":
        return gr.Checkbox(value=f.default, **kw)
    if f.type in ("int", "float"):
        return gr.Number(f.default, precision=0 if f.type == "int" else None, **kw)
    return gr.Textbox(f.default, **kw)


def fields_of(info: MethodInfo, names: Sequence[str] | None = None, group: str = "method") -> list[FieldInfo]:
    fs = [f for f in info.fields if f.type in FORM_TYPES]
    if names is not None:
        by_name = {f.name: f for f in fs}
        return [by_name[n] for n in names if n in by_name]
    return [f for f in fs if f.group == group]


def method_markdown(info: MethodInfo) -> str:
    note = "" if info.resumable else " Resume starts it over (TRL's trainer cannot resume)."
    return (
        f"**{info.name}**: {info.description} — {info.paper}. Produces a {info.produces}; "
        f"curves: {', '.join(info.curves)}.{note}"
    )


def settings_frame(info: MethodInfo) -> pd.DataFrame:
    rows = [{"setting": f.name, "default": shown_default(f.default), "type": f.type, "help": f.help}
            for f in info.fields]  # fmt: skip
    return pd.DataFrame(table(rows, SETTING_COLUMNS, width=200), columns=SETTING_COLUMNS)


def shown_default(value: Any) -> Any:
    """A default as the form's widget shows it: a float in full (5e-05 reads 0.00005, never a rounded 0)."""
    if isinstance(value, float) and math.isfinite(value):
        return np.format_float_positional(value, trim="-")
    return value


# -- data preview -------------------------------------------------------------------------------------------------
def preview_markdown(p: DataPreview) -> str:
    counts = ", ".join(f"{v} {k}" for k, v in p.counts.items()) or f"{p.count} {p.kind}"
    head = f"**{p.method}** would train on **{p.count} {p.kind}** ({counts})."
    lines = [head + (" Ready to start." if p.ok else "")]
    lines += [f"- ❌ **{problem}**" for problem in p.problems]
    lines += [f"- {note}" for note in p.notes]
    return "\n".join(lines)


def rows_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    return pd.DataFrame(table(rows, columns, width=200), columns=columns)


# -- jobs ---------------------------------------------------------------------------------------------------------
def jobs_frame(jobs: Sequence[Job]) -> pd.DataFrame:
    rows = [
        {
            **j.to_dict(),
            "step": f"{j.step}/{j.max_steps}" if j.max_steps else j.step,
            "models": ", ".join(j.models),
        }
        for j in jobs
    ]
    return pd.DataFrame(table(rows, JOB_COLUMNS), columns=JOB_COLUMNS)


def pick_job(jobs: Sequence[Job]) -> Job | None:
    """The job a (re)opened page shows: a running one, else a queued one, else the newest."""
    for state in LIVE:
        found = [j for j in jobs if j.state == state]
        if found:
            return found[-1] if state == "queued" else found[0]
    return jobs[0] if jobs else None


def job_markdown(job: Job) -> str:
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


def panels(names: Sequence[str]) -> list[tuple[str, list[str]]]:
    """Curves per subplot: DPO's chosen and rejected rewards share one, every other curve has its own."""
    out: dict[str, list[str]] = {}
    for name in names:
        out.setdefault(PAIRED.get(name, name), []).append(name)
    return list(out.items())


def note_figure(text: str) -> Figure:
    fig = Figure(figsize=(8, 1.4), layout="constrained")
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11, color="#555")
    return fig


def curves_figure(job: Job, curves: dict[str, list[tuple[int, float]]]) -> Figure:
    if not curves:
        return note_figure(f"Job {job.id} ({job.state}): no metrics yet; the first point comes after a step.")
    shown = panels(list(curves))
    cols = min(3, len(shown))
    rows = math.ceil(len(shown) / cols)
    fig = Figure(figsize=(4.2 * cols, 2.6 * rows + 0.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for ax, (title, names) in zip(axes, shown, strict=False):
        for name in names:
            steps, values = zip(*curves[name], strict=True)
            ax.plot(steps, values, marker="o" if len(steps) <= 40 else None, ms=3, label=name.split("/")[-1])
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(alpha=0.3)
        if len(names) > 1:
            ax.legend(fontsize=8)
    for ax in axes[len(shown) :]:
        ax.axis("off")
    fig.suptitle(f"Job {job.id} · {job.method} · {job.state}", fontsize=11)
    return fig


def latest_frame(curves: dict[str, list[tuple[int, float]]]) -> pd.DataFrame:
    rows = [{"curve": name, "step": pts[-1][0], "value": pts[-1][1], "points": len(pts)}
            for name, pts in curves.items() if pts]  # fmt: skip
    return pd.DataFrame(table(rows, LATEST_COLUMNS), columns=LATEST_COLUMNS)


def job_view(runner: Runner, job_id: int) -> tuple[str, Figure, pd.DataFrame, str]:
    """What the live view shows for one job: summary, curves, latest values, the end of the log."""
    job = runner.get(job_id)
    curves = runner.curves(job_id)
    return job_markdown(job), curves_figure(job, curves), latest_frame(curves), runner.logs(job_id, 200)


def empty_view(text: str = "No training jobs yet: preview the data, then Start.") -> tuple[Any, ...]:
    return text, note_figure(text), pd.DataFrame(columns=LATEST_COLUMNS), ""


def signature(runner: Runner, jobs: Sequence[Job], job_id: int | None) -> list[Any]:
    """Changes when anything the live view shows changes (so an idle tick redraws nothing)."""
    sig: list[Any] = [[j.id, j.state, j.step, j.error, j.models] for j in jobs] + [job_id]
    if job_id is not None and any(j.id == job_id for j in jobs):
        run = runner.rundir(job_id)
        sig += [_size(run.metrics_file), _size(run.log)]
    return sig


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


# -- compare with parent ------------------------------------------------------------------------------------------
def trained_models(ctx: AppContext) -> list[str]:
    return [name for name, spec in ctx.registry.specs().items() if spec.parent]


def model_pickers(ctx: AppContext) -> tuple[gr.Dropdown, gr.Dropdown, gr.Dropdown]:
    """The base model, the trained model to compare and the judge model, for the models registered now."""
    names = ctx.model_names()
    return gr.Dropdown(choices=names), gr.Dropdown(choices=trained_models(ctx)), gr.Dropdown(choices=names)


def strategy_choices() -> list[str]:
    out = []
    for info in list_strategies():
        out += [f"{info.name}:{v}" for v in info.variants] if info.variants else [info.name]
    return out


def win_frame(r: CompareResult) -> pd.DataFrame:
    s = r.summary()
    ci = "" if s["ci_lo"] is None else f"[{s['ci_lo']:.2f}, {s['ci_hi']:.2f}]"
    row = {**s, "judge": f"{r.judge}@{r.judge_model}", "win rate": s["win_rate"], "95% CI": ci}
    return pd.DataFrame(table([row], WIN_COLUMNS), columns=WIN_COLUMNS)


def items_frame(r: CompareResult) -> pd.DataFrame:
    rows = [
        {"comparison": i.comparison_id, "child shown as": "AB"[i.child_position] if i.comparison_id else "",
         "outcome": i.outcome or ("failed verdict" if i.comparison_id else "not compared"),
         "P(child better)": i.prob_child, "prompt": i.prompt, "child answer": i.child_answer,
         "parent answer": i.parent_answer, "error": i.error}
        for i in r.items
    ]  # fmt: skip
    return pd.DataFrame(table(rows, ITEM_COLUMNS, width=240), columns=ITEM_COLUMNS)


def compare_markdown(r: CompareResult) -> str:
    ids = r.comparison_ids
    queued = (
        f"\n\nThe {len(ids)} comparisons (ids {ids[0]}–{ids[-1]}, prompt set `{r.prompt_set}`) wait for human "
        "labels: they are the Judge tab's *unlabelled* items and show in the Data tab; "
        f"`studio judge --unlabelled --prompt-set {r.prompt_set}` judges them from a terminal."
        if ids
        else ""
    )
    self_judge = (
        f" ⚠ {r.self_judged} verdict(s) are self-judged (the judge model wrote one of the answers)."
        if r.self_judged
        else ""
    )
    return f"{r.line()} in {r.elapsed_s:.1f} s.{self_judge}{queued}"


# -- the tab ------------------------------------------------------------------------------------------------------
def build(ctx: AppContext, opened: Sequence[Any] = ()) -> Handles:
    """The tab's widgets and events. ``opened``: the events on which the model and prompt-set pickers are read
    again (the app passes the page load and the tab's select); none given, the page load."""
    infos = {m.name: m for m in methods()}
    gr.Markdown(
        "Fine-tune on the store's preferences. Each job runs as its own process: closing the page does not stop "
        "it, and reopening shows it again. The defaults train the default model with LoRA on a laptop CPU."
    )
    form = form_layout(ctx, infos)
    gr.Markdown("### Jobs")
    jobs = jobs_layout()
    gr.Markdown(
        "### Compare with parent\nAnswer a prompt set with a trained model and the model it was trained from, "
        "judge each pair blind, and report the trained model's win rate. The pairs stay unlabelled for people."
    )
    compare = compare_layout(ctx)
    wire_form(ctx, infos, form, jobs, compare)
    wire_jobs(ctx, form, jobs, compare)
    wire_compare(ctx, compare)
    wire_open(ctx, opened, form, compare)
    return Handles(form, jobs, compare)


def wire_open(ctx: AppContext, opened: Sequence[Any], f: FormHandles, c: CompareHandles) -> None:
    """Opening the tab rereads its pickers: a model registered since (Models tab, a job) and new prompt sets."""

    @friendly
    def train_open() -> tuple[gr.Dropdown, ...]:
        names = ctx.store.prompt_sets()
        sets = (gr.Dropdown(choices=[("any", ""), *names]), gr.Dropdown(choices=names))
        return (*model_pickers(ctx), *sets)

    outputs = [f.base_model, c.model, c.judge_model, f.prompt_set, c.prompt_set]
    gr.on(list(opened) or None, train_open, None, outputs, api_name="train_open", **OPEN)
    gr.on(list(opened) or None, None, None, None, js=SCROLL_LOG_JS, **PRIVATE)  # the log at its newest lines


def form_layout(ctx: AppContext, infos: dict[str, MethodInfo]) -> FormHandles:
    first = "dpo" if "dpo" in infos else next(iter(infos))
    with gr.Row():
        method = gr.Dropdown(list(infos), value=first, label="Method", scale=1)
        base_model = gr.Dropdown(
            ctx.model_names(), value=ctx.settings.default_model, label="Base model", scale=1,
            info="any local transformers model; a trained adapter keeps training",
        )  # fmt: skip
        prompt_set = gr.Dropdown([("any", "")], value="", label="Data: prompt set", allow_custom_value=True,
                                 scale=1)  # fmt: skip
        source = gr.Radio(list(SOURCES), value="both", label="Data: labels from", scale=1)
        annotator = gr.Textbox(label="Data: annotator (empty = all)", placeholder="alice, or a judge name",
                               scale=1)  # fmt: skip
    about = gr.Markdown(method_markdown(infos[first]))
    with gr.Row():
        shared_fields = {f.name: widget(f) for f in fields_of(infos[first], SHARED_MAIN)}
    method_fields: dict[str, dict[str, gr.components.Component]] = {}
    groups = []
    for name, info in infos.items():
        with gr.Group(visible=name == first) as group, gr.Row():
            method_fields[name] = {f.name: widget(f) for f in fields_of(info)}
        groups.append(group)
    settings = gr.Textbox(
        "{}", max_lines=6,
        label="Settings that differ from the defaults (JSON, or key=value lines; add any other setting or TRL "
        "field here)",
    )  # fmt: skip
    with gr.Accordion("Every setting of this method", open=False):
        every = gr.Dataframe(settings_frame(infos[first]), interactive=False, wrap=True, max_height=360)
    with gr.Row():
        preview = gr.Button("Preview data")
        start = gr.Button("Start", variant="primary")
    preview_md = gr.Markdown()
    preview_rows = gr.Dataframe(headers=["prompt", "chosen", "rejected"], interactive=False, wrap=True,
                                max_height=260, label="A few training rows")  # fmt: skip
    message = gr.Markdown()
    return FormHandles(method, base_model, prompt_set, source, annotator, about, shared_fields, method_fields,
                       groups, settings, every, preview, start, preview_md, preview_rows, message)  # fmt: skip


def jobs_layout() -> JobHandles:
    with gr.Row(equal_height=True):
        job_id = gr.Number(label="Job", precision=0, minimum=0, scale=1)
        refresh = gr.Button("↻ Refresh", scale=1)
        cancel = gr.Button("Cancel job", variant="stop", scale=1)
        resume = gr.Button("Resume job", scale=1)
    jobs = gr.Dataframe(headers=JOB_COLUMNS, interactive=False, max_height=240,
                        label="Runs (newest first): click a row to follow it")  # fmt: skip
    job_md = gr.Markdown()
    curves = gr.Plot(label="Curves", show_label=False)
    with gr.Row():
        latest = gr.Dataframe(headers=LATEST_COLUMNS, interactive=False, label="Latest values", scale=1)
        logs = gr.Textbox(label="Log (last 200 lines)", lines=12, max_lines=12, interactive=False, scale=2,
                          elem_id="train-log")  # fmt: skip
    timer = gr.Timer(POLL_S, active=False)
    return JobHandles(
        job_id, refresh, cancel, resume, jobs, job_md, curves, latest, logs, timer, gr.State(None)
    )


def compare_layout(ctx: AppContext) -> CompareHandles:
    with gr.Row():
        model = gr.Dropdown(trained_models(ctx), label="Trained model", allow_custom_value=True, scale=2)
        prompt_set = gr.Dropdown([], label="Prompt set", allow_custom_value=True, scale=2)
        judge = gr.Dropdown(JUDGES.names(), value="logprob", label="Judge", scale=1)
        judge_model = gr.Dropdown(ctx.model_names(), value=ctx.settings.default_model, label="Judge model",
                                  scale=2)  # fmt: skip
    with gr.Row():
        strategy = gr.Dropdown(strategy_choices(), value="system1", label="Strategy (both models)",
                               allow_custom_value=True)  # fmt: skip
        limit = gr.Number(20, label="At most N prompts (0 = all)", precision=0, minimum=0)
        max_new_tokens = gr.Number(128, label="Max new tokens", precision=0, minimum=1)
        run = gr.Button("Compare with parent", variant="primary")
    summary = gr.Markdown()
    win_rate = gr.Dataframe(headers=WIN_COLUMNS, interactive=False, label="Win rate of the trained model")
    items = gr.Dataframe(headers=ITEM_COLUMNS, interactive=False, wrap=True, max_height=360, label="Per prompt",
                         column_widths=["8%", "7%", "8%", "8%", "17%", "22%", "22%", "8%"])  # fmt: skip
    return CompareHandles(model, prompt_set, judge, judge_model, strategy, limit, max_new_tokens, run, summary,
                          win_rate, items)  # fmt: skip


# gradio's own autoscroll only follows a textbox while the page is scrolled to its bottom; a log should always
# show its newest lines, unless the reader has scrolled up in it. A log filled while its tab was hidden has no
# height to scroll, so this also runs when the tab opens, a few times while the tab lays itself out.
SCROLL_LOG_JS = """() => [50, 300, 1000].forEach((ms) => setTimeout(() => {
  const t = document.querySelector("#train-log textarea");
  if (t && (t.scrollTop === 0 || t.scrollHeight - t.scrollTop - t.clientHeight < 80)) t.scrollTop = t.scrollHeight;
}, ms))"""


# -- events -------------------------------------------------------------------------------------------------------
PRIVATE: dict[str, Any] = {"api_visibility": "private"}
# events run when a tab opens: callable but not listed; a tab opened while the page-load read still runs is read
# once more after it ("always_last"), not skipped
OPEN: dict[str, Any] = {"api_visibility": "undocumented", "show_progress": "hidden",
                        "trigger_mode": "always_last"}  # fmt: skip
QUIET: dict[str, Any] = {**PRIVATE, "show_progress": "hidden"}  # the live view redraws without a spinner


def wire_form(
    ctx: AppContext, infos: dict[str, MethodInfo], f: FormHandles, jobs: JobHandles, compare: CompareHandles
) -> None:
    own = [c for fields in f.method_fields.values() for c in fields.values()]

    def pick_method(name: str) -> tuple[Any, ...]:
        info = infos.get(name) or describe(name)
        defaults = {x.name: x.default for x in info.fields}
        return (
            method_markdown(info), "{}", settings_frame(info), *[gr.Group(visible=n == name) for n in infos],
            *[gr.update(value=defaults.get(n)) for n in f.shared_fields],
            # every method's own widgets back to their defaults: the form shows what the box will send
            *[gr.update(value=x.default) for i in infos.values() for x in fields_of(i)],
        )  # fmt: skip

    @friendly
    def train_preview(m: str, base: str, text: str, ps: str, src: str, ann: str) -> tuple[str, pd.DataFrame]:
        p = runner_for(ctx).preview(m, train_values(base, text), filters=data_filters(ps, src, ann), limit=5)
        return preview_markdown(p), rows_frame(p.rows)

    @friendly
    def train_start(
        m: str, base: str, text: str, ps: str, src: str, ann: str
    ) -> tuple[str, int, pd.DataFrame]:
        runner = runner_for(ctx)
        job = runner.start(m, train_values(base, text), filters=data_filters(ps, src, ann))
        msg = f"Started job **{job.id}** ({job.method}, {job.state}); it trains `{job.output_name}`."
        return msg, job.id, jobs_frame(runner.list())

    outputs = [f.about, f.settings, f.every, *f.groups, *f.shared_fields.values(), *own]
    f.method.input(pick_method, f.method, outputs, **PRIVATE)
    for name, component in f.shared_fields.items():
        defaults = {m: _default(i, name) for m, i in infos.items()}
        field_info = next(x for x in infos[f.method.value].fields if x.name == name)
        component.input(
            None, [f.settings, component, f.method], f.settings, js=merge_js(field_info, defaults)
        )
    for m, fields in f.method_fields.items():
        for name, component in fields.items():
            field_info = next(x for x in infos[m].fields if x.name == name)
            component.input(None, [f.settings, component, f.method], f.settings,
                            js=merge_js(field_info, {m: field_info.default}))  # fmt: skip
    f.preview.click(train_preview, f.inputs, [f.preview_md, f.preview_rows], api_name="train_preview")
    f.start.click(train_start, f.inputs, [f.message, jobs.job_id, jobs.jobs], api_name="train_start").success(
        live_view_fn(ctx), [jobs.job_id, jobs.seen], live_outputs(f, jobs, compare), **QUIET
    )


def _default(info: MethodInfo, name: str) -> Any:
    return next((x.default for x in info.fields if x.name == name), None)


def live_outputs(f: FormHandles, j: JobHandles, c: CompareHandles) -> list[gr.components.Component]:
    return [j.jobs, j.job_id, *j.view, f.base_model, c.model, c.judge_model, j.timer, j.seen]


def live_view_fn(ctx: AppContext) -> Callable[[Any, Any], tuple[Any, ...]]:
    def live_view(jid: Any, last: Any) -> tuple[Any, ...]:
        """The poll: sync every job, then redraw only what changed; the timer runs while a job is live."""
        runner = runner_for(ctx)
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


def wire_jobs(ctx: AppContext, f: FormHandles, j: JobHandles, c: CompareHandles) -> None:
    live_view = live_view_fn(ctx)
    live = ([j.job_id, j.seen], live_outputs(f, j, c))

    @friendly
    def train_jobs() -> pd.DataFrame:
        return jobs_frame(runner_for(ctx).refresh())

    @friendly
    def train_status(jid: Any) -> tuple[str, Figure, pd.DataFrame, str]:
        runner = runner_for(ctx)
        return job_view(runner, runner.sync(row_id(jid, "job")).id)

    @friendly
    def train_cancel(jid: Any) -> tuple[str, pd.DataFrame]:
        runner = runner_for(ctx)
        job = runner.cancel(row_id(jid, "job"))
        return f"Job **{job.id}** is {job.state}.", jobs_frame(runner.list())

    @friendly
    def train_resume(jid: Any) -> tuple[str, pd.DataFrame]:
        runner = runner_for(ctx)
        job = runner.resume(row_id(jid, "job"))
        msg = f"Job **{job.id}** is {job.state} again: {job.resume_note}."
        return msg, jobs_frame(runner.list())

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
    j.timer.tick(live_view, *live, **QUIET)
    j.logs.change(None, None, None, js=SCROLL_LOG_JS, **PRIVATE)
    # on page (re)load: show the running job (or the newest) and follow it while anything is live
    gr.on(None, lambda: live_view(None, None), None, live[1], **QUIET)


def wire_compare(ctx: AppContext, c: CompareHandles) -> None:
    @friendly
    def compare(
        model: str, ps: str, judge: str, judge_model: str, strategy: str, limit: Any, tokens: Any,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio reads the tracker from the default
    ) -> tuple[str, pd.DataFrame, pd.DataFrame]:  # fmt: skip
        if not optional(model):
            raise InputError("pick a trained model (one with a parent) to compare")

        def report(done: int, total: int, msg: str) -> None:
            progress((done, total) if total else 0.0, desc=msg)

        result = compare_with_parent(
            ctx.store, ctx.registry, optional(model), prompt_set=optional(ps) or "", judge=judge or "logprob",
            judge_model=optional(judge_model), strategy=optional(strategy) or "system1",
            limit=limit_of(limit, 20), params={"max_new_tokens": int(tokens or 128)}, progress=report,
        )  # fmt: skip
        return compare_markdown(result), win_frame(result), items_frame(result)

    c.run.click(
        compare,
        [c.model, c.prompt_set, c.judge, c.judge_model, c.strategy, c.limit, c.max_new_tokens],
        [c.summary, c.win_rate, c.items],
        api_name="compare_with_parent",
        concurrency_id="generate",  # shares the models with the Arena's generations
        concurrency_limit=ctx.settings.concurrency,
    )
