"""Train tab: pick a method and its main settings, preview the data, start a background job, follow its curves and
log live, cancel or resume it; then compare a trained model with its parent on a prompt set.

One module per part, each with its layout (widgets, returned as a handles dataclass) and its wiring (events):

- :mod:`~components.train.form`: the method form, the settings box, Preview and Start;
- :mod:`~components.train.jobs`: the jobs table and the live view of one job, Cancel and Resume;
- :mod:`~components.train.plots`: the curves figure and latest values;
- :mod:`~components.train.compare`: compare a trained model with its parent;
- :mod:`~components.train.js` and :mod:`~components.train.events`: browser snippets and event options.

Jobs run in the context's runner (``ctx.runner``): processes with their state in their run dirs, never in the
browser, so a reopened page re-attaches to the running job.
"""

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from components.common import friendly
from components.train.compare import CompareHandles, compare_layout, model_pickers, wire_compare
from components.train.events import OPEN, PRIVATE
from components.train.form import (
    FormHandles,
    data_filters,
    form_layout,
    parse_settings_box,
    settings_frame,
    train_values,
    wire_form,
)
from components.train.jobs import JobHandles, jobs_layout, pick_job, wire_jobs
from components.train.js import SCROLL_LOG_JS, merge_js
from components.train.plots import panels
from studio.context import AppContext
from studio.training import methods

__all__ = [
    "Handles",
    "build",
    "data_filters",
    "merge_js",
    "panels",
    "parse_settings_box",
    "pick_job",
    "settings_frame",
    "train_values",
]


@dataclass
class Handles:
    form: FormHandles
    jobs: JobHandles
    compare: CompareHandles


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
