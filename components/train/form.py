"""The Train tab's form: method, base model, data filters, the settings widgets and box; Preview and Start.

The widgets are built from ``studio.training.describe(method)``; what differs from the defaults is kept in one
settings box (JSON, or key=value lines), which is also what the API endpoints take.
"""

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd

from components.common import friendly, optional, table
from components.train.compare import CompareHandles
from components.train.events import PRIVATE, QUIET
from components.train.jobs import JobHandles, jobs_frame, live_outputs, live_view_fn
from components.train.js import merge_js
from storage import Filters
from studio.context import AppContext
from studio.errors import InputError
from studio.training import DataPreview, FieldInfo, MethodInfo, describe
from studio.training.config import parse_value

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


SETTING_COLUMNS = ["setting", "default", "type", "help"]


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


def parse_settings_box(text: str | None) -> dict[str, Any]:
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
    values = parse_settings_box(settings_text)
    if optional(base_model):
        values["base_model"] = optional(base_model)
    return values


def data_filters(prompt_set: str | None, source: str | None, annotator: str | None) -> Filters:
    if (source or "both") not in SOURCES:
        raise InputError(f"source is one of {', '.join(SOURCES)}, not {source!r}")
    return Filters(
        source=SOURCES[source or "both"], prompt_set=optional(prompt_set), annotator=optional(annotator)
    )


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
        p = ctx.runner.preview(m, train_values(base, text), filters=data_filters(ps, src, ann), limit=5)
        return preview_markdown(p), rows_frame(p.rows)

    @friendly
    def train_start(
        m: str, base: str, text: str, ps: str, src: str, ann: str
    ) -> tuple[str, int, pd.DataFrame]:
        runner = ctx.runner
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
