"""Data tab: browse, filter and search prompts, runs, votes, verdicts and step labels; open a run's or a verdict's
trace; delete votes and edit step labels; see who changed which label (the label audit); per prompt set, edit the
annotation guidelines and how many annotators each prompt needs, and see each prompt's labelling status; export
preference data (dpo/kto/rm as Parquet or JSONL) and import TRL files. Every table loads fresh when the tab is
opened.

The rows come from :mod:`studio.browse`: the filters (prompt set, model, strategy, annotator) are the store's run
filters, the ones the exports use, and the text search is done there too. This module lays the widgets out
(``*_layout``, each returning a handles dataclass) and wires their events (``wire_*``), as the Arena and Train
tabs do.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import gradio as gr
import pandas as pd

from components.common import (
    current_user,
    downloadable,
    friendly,
    limit_of,
    optional,
    render_trace_html,
    row_id,
    table,
)
from storage import Filters, Store
from studio import browse
from studio.access import require_admin
from studio.api import list_strategies
from studio.context import AppContext
from studio.errors import InputError
from studio.methods import Method

ANY = ("any", "")
KINDS = ("dpo", "kto", "rm")
FORMATS = ("parquet", "jsonl")
STEP_LABELS = ("wrong", "good")
PRIVATE = {"api_visibility": "private"}

PROMPT_COLUMNS = ["id", "prompt_set", "category", "text", "created_at"]
RUN_COLUMNS = ["id", "prompt_id", "prompt_set", "model", "strategy", "prompt", "answer", "tokens_in",
               "tokens_out", "latency_s", "created_at"]  # fmt: skip
VOTE_COLUMNS = ["id", "comparison_id", "kind", "choice", "ranks", "annotator", "run_ids", "contestants",
                "comment", "prompt", "created_at"]  # fmt: skip
VERDICT_COLUMNS = ["id", "judge", "judge_model", "mode", "comparison_id", "run_ids", "winner", "rating",
                   "prob_a", "ok", "self_judge", "contestants", "error", "created_at"]  # fmt: skip
STEP_LABEL_COLUMNS = ["id", "run_id", "step_id", "label", "note", "annotator", "created_at", "updated_at"]
AUDIT_COLUMNS = ["id", "at", "kind", "row_id", "comparison_id", "annotator", "actor", "action", "old", "new"]
STATUS_COLUMNS = ["prompt_id", "status", "labels", "min_labels", "skips", "text"]
NO_GUIDELINES = "*No guidelines yet for this prompt set.*"


# -- handles ------------------------------------------------------------------------------------------------------
@dataclass
class FilterHandles:
    prompt_set: gr.Dropdown
    model: gr.Dropdown
    strategy: gr.Dropdown
    annotator: gr.Textbox
    search: gr.Textbox
    limit: gr.Number
    refresh: gr.Button

    @property
    def inputs(self) -> list[Any]:
        """What every table reader takes, in :func:`query_of`'s order."""
        return [self.prompt_set, self.model, self.strategy, self.annotator, self.search, self.limit]


@dataclass
class TableHandles:
    prompts: gr.Dataframe
    runs: gr.Dataframe
    votes: gr.Dataframe
    verdicts: gr.Dataframe
    step_labels: gr.Dataframe
    vote_id: gr.Number
    delete_vote: gr.Button
    label_id: gr.Number
    label: gr.Dropdown
    note: gr.Textbox
    save_label: gr.Button
    delete_label: gr.Button
    audit: gr.Dataframe | None = None  # in its own tab after "Prompt sets": set by build()


@dataclass
class PromptSetHandles:
    name: gr.Dropdown
    min_labels: gr.Number
    save: gr.Button
    guidelines: gr.Textbox
    preview: gr.Markdown
    status_summary: gr.Markdown
    status: gr.Dataframe

    @property
    def outputs(self) -> list[Any]:
        return [self.guidelines, self.preview, self.min_labels, self.status_summary, self.status]


@dataclass
class ExchangeHandles:
    kind: gr.Radio
    fmt: gr.Radio
    source: gr.Radio
    conversational: gr.Checkbox
    agree_only: gr.Checkbox
    export: gr.Button
    export_file: gr.File
    import_file: gr.File
    import_set: gr.Textbox
    import_annotator: gr.Textbox
    do_import: gr.Button


@dataclass
class TraceHandles:
    run_id: gr.Number
    open_run: gr.Button
    verdict_id: gr.Number
    open_verdict: gr.Button
    trace: gr.HTML


@dataclass
class Handles:
    stats: gr.Markdown
    message: gr.Markdown
    filters: FilterHandles
    tables: TableHandles
    prompt_sets: PromptSetHandles
    exchange: ExchangeHandles
    trace: TraceHandles


# -- reading ------------------------------------------------------------------------------------------------------
def query_of(
    prompt_set: Any, model: Any, strategy: Any, annotator: Any, search: Any, limit: Any
) -> browse.Browse:
    """The filter boxes' values as a :class:`studio.browse.Browse` ('' means any; a row limit of 0 means all)."""
    return browse.Browse(*map(optional, (prompt_set, model, strategy, annotator, search)), limit_of(limit))


def frame(rows: list[dict[str, Any]], columns: list[str], width: int = 160) -> pd.DataFrame:
    return pd.DataFrame(table(rows, columns, width), columns=columns)


Reader = Callable[[Store, browse.Browse], list[dict[str, Any]]]
# each table: its studio reader, its columns, its cell width and its API name
TABLES: dict[str, tuple[Reader, list[str], int, str]] = {
    "prompts": (browse.prompt_rows, PROMPT_COLUMNS, 160, "data_prompts"),
    "runs": (browse.run_rows, RUN_COLUMNS, 160, "data_runs"),
    "votes": (browse.vote_rows, VOTE_COLUMNS, 160, "data_votes"),
    "verdicts": (browse.verdict_rows, VERDICT_COLUMNS, 160, "data_verdicts"),
    "step_labels": (browse.step_label_rows, STEP_LABEL_COLUMNS, 160, "data_step_labels"),
    "audit": (browse.audit_rows, AUDIT_COLUMNS, 200, "data_label_audit"),
}


def status_rows(store: Store, prompt_set: str | None) -> tuple[str, pd.DataFrame]:
    """Each prompt of a set with its labels, skips and status; a one-line summary above."""
    if not prompt_set:
        return "Pick a prompt set.", frame([], STATUS_COLUMNS)
    rows = store.prompt_status(prompt_set)
    counts = {s: sum(r["status"] == s for r in rows) for s in ("complete", "in progress", "unlabelled")}
    by_status = " · ".join(f"{n} {s}" for s, n in counts.items())
    summary = f"`{prompt_set}`: **{len(rows)}** prompts · {by_status}"
    return summary, frame(rows, STATUS_COLUMNS)


def stats_markdown(store: Store) -> str:
    s = store.stats()
    return (
        f"**{s['prompts']}** prompts · **{s['runs']}** runs · **{s['comparisons']}** comparisons · "
        f"**{s['votes']}** votes + **{s['rankings']}** rankings by **{s['annotators']}** annotator(s) · "
        f"**{s['verdicts']}** verdicts ({s['failed_verdicts']} failed) · **{s['step_labels']}** step labels · "
        f"exports now: **{s['dpo_rows']}** DPO pairs, **{s['kto_rows']}** KTO rows"
    )


def run_html(store: Store, run_id: int) -> str:
    """One stored run: what it answered, where it was shown, and its whole trace with people's step labels."""
    run = store.get_run(run_id)
    if run is None:
        raise InputError(f"no run with id {run_id}")
    prompt = store.get_prompt(run["prompt_id"]) or {}
    trace = run.get("trace") or {
        "strategy": run["strategy"], "variant": run.get("variant"), "model": run["model"],
        "question": prompt.get("text", ""), "final_answer": run["answer"], "steps": [],
        "notes": ["no step trace stored for this run (an imported or external answer)"],
    }  # fmt: skip
    labels: dict[str, list[str]] = {}
    for s in store.list_step_labels(run_id):
        note = f": {s['note']}" if s.get("note") else ""
        labels.setdefault(s["step_id"], []).append(f"{s['label']} ({s['annotator']}{note}) #{s['id']}")
    at = run["created_at"].strftime("%Y-%m-%d %H:%M") if isinstance(run.get("created_at"), datetime) else ""
    head = (
        f"<h3 style='margin:4px 0'>Run {run['id']}</h3><div style='opacity:0.75'>prompt {run['prompt_id']} "
        f"(set {_esc(prompt.get('prompt_set'))}) · {_esc(run['model'])} · {_esc(Method.of(run))} · {at}</div>"
    )
    return head + render_trace_html(trace, labels=labels)


def verdict_html(store: Store, verdict_id: int) -> str:
    """One stored verdict: what the judge concluded about which runs, and its trace (every model call)."""
    d = store.get_verdict(verdict_id)
    if d is None:
        raise InputError(f"no verdict with id {verdict_id}")
    outcome = d.get("winner") if d["mode"] == "pairwise" else d.get("rating")
    head = (
        f"<h3 style='margin:4px 0'>Verdict {d['id']}</h3><div style='opacity:0.75'>{_esc(d['judge'])} @ "
        f"{_esc(d.get('judge_model'))} · {d['mode']} · runs {_esc(d['run_ids'])} · "
        f"{'ok: ' + _esc(outcome) if d['ok'] else 'failed'}</div>"
    )
    trace = d.get("trace") or {
        "strategy": d["judge"], "model": d.get("judge_model") or "?", "final_answer": "", "steps": [],
        "notes": ["no trace stored for this verdict (judged before verdicts kept traces, or added by hand)"],
    }  # fmt: skip
    return head + render_trace_html(trace)


def _esc(value: Any) -> str:
    return html.escape("" if value is None else str(value))


# -- writing ------------------------------------------------------------------------------------------------------
def export_filters(
    source: Any, agree_only: bool, prompt_set: Any, model: Any, strategy: Any, annotator: Any
) -> Filters:
    src = optional(source)
    return Filters(
        annotator=optional(annotator),
        source=None if src in (None, "any") else src,
        model=optional(model),
        strategy=optional(strategy),
        prompt_set=optional(prompt_set),
        agree_only=bool(agree_only),
    )


def export_name(kind: str, fmt: str) -> str:
    """A fresh file under the data dir's ``exports/`` (the store resolves it against the data dir)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S-%f")
    return f"exports/{kind}-{stamp}.{fmt}"


# -- the tab: layout ----------------------------------------------------------------------------------------------
def build(ctx: AppContext, opened: Sequence[Any] = ()) -> Handles:
    """The tab's widgets and events. ``opened``: the events on which every table and picker is read again (the
    app passes the page load and the tab's select); none given, the page load."""
    gr.Markdown(
        "Everything the studio has recorded. Filters apply to every table; the text search looks in prompts, "
        "answers, comments and judge outputs. Click a row to open its run below."
    )
    stats = gr.Markdown()
    filters = filters_layout(ctx)
    message = gr.Markdown()
    with gr.Tabs():
        tables = tables_layout()
        with gr.Tab("Prompt sets"):
            prompt_sets = prompt_sets_layout()
        with gr.Tab("Label audit"):
            tables.audit = audit_layout()
        with gr.Tab("Export / import"):
            exchange = exchange_layout()
    h = Handles(stats, message, filters, tables, prompt_sets, exchange, trace_layout())
    wire_tables(ctx, h, opened)
    wire_prompt_sets(ctx, h, opened)
    wire_traces(ctx, h)
    wire_edits(ctx, h)
    wire_exchange(ctx, h)
    return h


def filters_layout(ctx: AppContext) -> FilterHandles:
    strategies = [s.name for s in list_strategies()] + ["imported"]
    with gr.Row(equal_height=True):
        prompt_set = gr.Dropdown([ANY], value="", label="Prompt set", allow_custom_value=True, scale=2)
        model = gr.Dropdown(
            [ANY, *ctx.model_names()], value="", label="Model", allow_custom_value=True, scale=2
        )
        strategy = gr.Dropdown(
            [ANY, *strategies], value="", label="Strategy", allow_custom_value=True, scale=2
        )
        annotator = gr.Textbox(label="Annotator / judge", placeholder="exact name", scale=2)
        search = gr.Textbox(label="Search", placeholder="text in prompts, answers, comments…", scale=3)
        limit = gr.Number(100, label="Rows (0 = all)", precision=0, minimum=0, scale=1)
        refresh = gr.Button("↻ Refresh", scale=1)
    return FilterHandles(prompt_set, model, strategy, annotator, search, limit, refresh)


def grid(columns: list[str]) -> gr.Dataframe:
    return gr.Dataframe(headers=columns, interactive=False, wrap=True, max_height=420)


def tab_grid(title: str, columns: list[str]) -> gr.Dataframe:
    with gr.Tab(title):
        return grid(columns)


def id_box(label: str) -> gr.Number:
    """A narrow box for a row id (ids start at 1; empty is 0)."""
    return gr.Number(label=label, precision=0, minimum=0, scale=1)


def tables_layout() -> TableHandles:
    """The Runs, Prompts, Votes, Verdicts and Step labels tabs (the label audit has its own layout)."""

    runs = tab_grid("Runs", RUN_COLUMNS)
    prompts = tab_grid("Prompts", PROMPT_COLUMNS)
    with gr.Tab("Votes"):
        votes = grid(VOTE_COLUMNS)
        with gr.Row(equal_height=True):
            vote_id = id_box("Vote id")
            delete_vote = gr.Button("Delete vote", variant="stop", scale=0)
    verdicts = tab_grid("Verdicts", VERDICT_COLUMNS)
    with gr.Tab("Step labels"):
        step_labels = grid(STEP_LABEL_COLUMNS)
        with gr.Row(equal_height=True):
            label_id = id_box("Step label id")
            label = gr.Dropdown(list(STEP_LABELS), label="Label", allow_custom_value=True, scale=1)
            note = gr.Textbox(label="Note", scale=3)
            save_label = gr.Button("Save", scale=0)
            delete_label = gr.Button("Delete", variant="stop", scale=0)
    return TableHandles(prompts, runs, votes, verdicts, step_labels, vote_id, delete_vote, label_id, label, note,
                        save_label, delete_label)  # fmt: skip


def audit_layout() -> gr.Dataframe:
    gr.Markdown(
        "Every replaced or deleted label: who labelled it, who changed it (actor), the old and the new "
        "value. The annotator filter and the row limit above apply."
    )
    return grid(AUDIT_COLUMNS)


def prompt_sets_layout() -> PromptSetHandles:
    gr.Markdown(
        "Per prompt set: the **annotation guidelines** (Markdown, shown above the Arena), how many "
        "annotators each prompt needs (**min labels**; *Next prompt* prefers prompts that still need "
        "labels), and each prompt's status."
    )
    with gr.Row(equal_height=True):
        name = gr.Dropdown([], label="Prompt set", scale=2)
        min_labels = gr.Number(1, label="Min labels per prompt", precision=0, minimum=1, scale=1)
        save = gr.Button("Save guidelines and min labels", variant="primary", scale=1)
    with gr.Row():
        guidelines = gr.Textbox(label="Guidelines (Markdown)", lines=10, max_lines=30, scale=1)
        with gr.Column(scale=1):
            gr.Markdown("**Preview**")
            preview = gr.Markdown(NO_GUIDELINES)
    status_summary = gr.Markdown()
    status = gr.Dataframe(headers=STATUS_COLUMNS, interactive=False, wrap=True, max_height=420,
                          label="Prompt status")  # fmt: skip
    return PromptSetHandles(name, min_labels, save, guidelines, preview, status_summary, status)


def exchange_layout() -> ExchangeHandles:
    gr.Markdown(
        "**Export** preference data in TRL's layout, with the filters above (prompt set, model, "
        "strategy, annotator). Files are kept in the data dir's `exports/` folder."
    )
    with gr.Row(equal_height=True):
        kind = gr.Radio(list(KINDS), value="dpo", label="Kind")
        fmt = gr.Radio(list(FORMATS), value="parquet", label="Format")
        source = gr.Radio(["any", "human", "judge"], value="any", label="From")
        conversational = gr.Checkbox(label="Conversational (messages)")
        agree_only = gr.Checkbox(label="Only where human and judge agree")
        export = gr.Button("Export", variant="primary")
    export_file = gr.File(label="Download", interactive=False)
    gr.Markdown(
        "**Import** a TRL preference file (JSONL or Parquet with `prompt`, `chosen`, `rejected`). "
        "Every row is checked first: one bad row imports nothing."
    )
    with gr.Row(equal_height=True):
        import_file = gr.File(label="Preference file", file_types=[".jsonl", ".json", ".parquet"])
        with gr.Column():
            import_set = gr.Textbox(label="Prompt set", placeholder="default: import:<file name>")
            import_annotator = gr.Textbox(label="Annotator", placeholder="default: import:<file name>")
            do_import = gr.Button("Import", variant="primary")
    return ExchangeHandles(kind, fmt, source, conversational, agree_only, export, export_file, import_file,
                           import_set, import_annotator, do_import)  # fmt: skip


def trace_layout() -> TraceHandles:
    gr.Markdown("### Run")
    with gr.Row(equal_height=True):
        run_id = id_box("Run id")
        open_run = gr.Button("Open run", scale=0)
        verdict_id = id_box("Verdict id")
        open_verdict = gr.Button("Open verdict", scale=0)
        gr.HTML(scale=3)  # keeps the id boxes narrow
    return TraceHandles(run_id, open_run, verdict_id, open_verdict, gr.HTML(label="Trace"))


# -- the tab: wiring ----------------------------------------------------------------------------------------------
def reader(ctx: AppContext, name: str) -> Callable[..., pd.DataFrame]:
    """The handler that reads one table with the filter boxes' values."""
    rows_of, columns, width, _ = TABLES[name]

    @friendly
    def read(ps: Any, m: Any, s: Any, a: Any, q: Any, n: Any) -> pd.DataFrame:
        return frame(rows_of(ctx.store, query_of(ps, m, s, a, q, n)), columns, width)

    return read


def wire_tables(ctx: AppContext, h: Handles, opened: Sequence[Any]) -> None:
    """The counts, the pickers and every table: read when the tab opens, when a filter changes and on Refresh."""
    f, stats = h.filters, h.stats

    @friendly
    def data_open() -> tuple[Any, ...]:
        """Opening the tab: the counts and the pickers as they are now (prompt sets, models)."""
        names = ctx.store.prompt_sets()
        return (stats_markdown(ctx.store), gr.Dropdown(choices=[ANY, *names]),
                gr.Dropdown(choices=[ANY, *ctx.model_names()]), gr.Dropdown(choices=names))  # fmt: skip

    f.refresh.click(
        data_stats_fn(ctx), None, [stats, f.prompt_set], api_name="data_stats"
    )  # rereads everything
    pickers = [stats, f.prompt_set, f.model, h.prompt_sets.name]
    # "always_last": a tab opened while the page-load read still runs is read once more after it, not skipped
    gr.on(list(opened) or None, data_open, None, pickers, api_name="data_open", api_visibility="undocumented",
          show_progress="hidden", trigger_mode="always_last")  # fmt: skip
    for name, (
        _,
        _,
        _,
        api_name,
    ) in TABLES.items():  # each follows the filters, and is read when the tab opens
        read, component = reader(ctx, name), getattr(h.tables, name)
        gr.on([*opened, *(c.change for c in f.inputs)] if opened else None, read, f.inputs, component,
              api_name=api_name, trigger_mode="always_last")  # fmt: skip
        f.refresh.click(read, f.inputs, component, **PRIVATE)


def data_stats_fn(ctx: AppContext) -> Callable[[], tuple[str, gr.Dropdown]]:
    @friendly
    def data_stats() -> tuple[str, gr.Dropdown]:
        return stats_markdown(ctx.store), gr.Dropdown(choices=[ANY, *ctx.store.prompt_sets()])

    return data_stats


def reread(ctx: AppContext, h: Handles, event: Any, *names: str) -> None:
    """After a change, reread the stats and the tables it touched."""
    event = event.success(data_stats_fn(ctx), None, [h.stats, h.filters.prompt_set], **PRIVATE)
    for name in names:
        event.then(reader(ctx, name), h.filters.inputs, getattr(h.tables, name), **PRIVATE)


def wire_prompt_sets(ctx: AppContext, h: Handles, opened: Sequence[Any]) -> None:
    """A prompt set's guidelines, min labels and prompt status: shown when picked, saved on Save."""
    p = h.prompt_sets

    @friendly
    def data_prompt_set(name: Any) -> tuple[Any, ...]:
        """A prompt set's guidelines (and their preview), min labels, and each prompt's status."""
        name = optional(name)
        if name is None:
            return "", NO_GUIDELINES, 1, *status_rows(ctx.store, None)
        found = ctx.store.get_prompt_set(name)
        text = found["guidelines"]
        return text, text or NO_GUIDELINES, found["min_labels"], *status_rows(ctx.store, name)

    @friendly
    def data_save_prompt_set(name: Any, text: Any, n: Any) -> tuple[str, str, pd.DataFrame]:
        name = optional(name)
        if name is None:
            raise InputError("pick a prompt set to save its guidelines")
        if n in (None, "") or float(n) != int(float(n)) or int(float(n)) < 1:
            raise InputError(f"min labels is a whole number of annotators, at least 1, not {n!r}")
        need = int(float(n))
        ctx.store.set_prompt_set(name, guidelines=str(text or ""), min_labels=need)
        return f"Saved the guidelines of `{name}` (min labels {need}).", *status_rows(ctx.store, name)

    p.name.change(data_prompt_set, p.name, p.outputs, api_name="data_prompt_set")
    p.guidelines.input(lambda text: text or NO_GUIDELINES, p.guidelines, p.preview, show_progress="hidden",
                       **PRIVATE)  # fmt: skip
    p.save.click(data_save_prompt_set, [p.name, p.guidelines, p.min_labels],
                 [h.message, p.status_summary, p.status], api_name="data_save_prompt_set")  # fmt: skip
    gr.on([h.filters.refresh.click, *opened], data_prompt_set, p.name, p.outputs, trigger_mode="always_last",
          **PRIVATE)  # fmt: skip


def pick_id(evt: gr.SelectData) -> Any:
    """A row's id (the first column)."""
    row = evt.row_value or []
    return row[0] if row and row[0] != "" else gr.skip()


def first_run(evt: gr.SelectData) -> Any:
    """A vote's row: open its first run."""
    row = evt.row_value or []
    ids = str(row[VOTE_COLUMNS.index("run_ids")]).strip("[]").split(",") if row else []
    return int(ids[0]) if ids and ids[0].strip().isdigit() else gr.skip()


def pick_label(evt: gr.SelectData) -> tuple[Any, Any, Any, Any]:
    row = evt.row_value or []
    if len(row) != len(STEP_LABEL_COLUMNS):
        return gr.skip(), gr.skip(), gr.skip(), gr.skip()
    get = dict(zip(STEP_LABEL_COLUMNS, row, strict=True)).get
    return get("id"), get("label"), get("note"), get("run_id")


def wire_traces(ctx: AppContext, h: Handles) -> None:
    """Open a run's or a verdict's trace: by id, or by clicking a row."""
    t, tables = h.trace, h.tables

    @friendly
    def data_run_trace(rid: Any) -> str:
        return run_html(ctx.store, row_id(rid, "run"))

    @friendly
    def data_verdict_trace(vid: Any) -> str:
        return verdict_html(ctx.store, row_id(vid, "verdict"))

    t.open_run.click(data_run_trace, t.run_id, t.trace, api_name="data_run_trace")
    t.run_id.submit(data_run_trace, t.run_id, t.trace, **PRIVATE)
    tables.runs.select(pick_id, None, t.run_id, **PRIVATE).success(
        data_run_trace, t.run_id, t.trace, **PRIVATE
    )
    tables.votes.select(first_run, None, t.run_id, **PRIVATE).success(
        data_run_trace, t.run_id, t.trace, **PRIVATE
    )
    t.open_verdict.click(data_verdict_trace, t.verdict_id, t.trace, api_name="data_verdict_trace")
    t.verdict_id.submit(data_verdict_trace, t.verdict_id, t.trace, **PRIVATE)
    tables.verdicts.select(pick_id, None, t.verdict_id, **PRIVATE).success(
        data_verdict_trace, t.verdict_id, t.trace, **PRIVATE
    )
    tables.votes.select(pick_id, None, tables.vote_id, **PRIVATE)
    tables.step_labels.select(
        pick_label, None, [tables.label_id, tables.label, tables.note, t.run_id], **PRIVATE
    ).success(data_run_trace, t.run_id, t.trace, **PRIVATE)


def wire_edits(ctx: AppContext, h: Handles) -> None:
    """Delete a vote, edit or delete a step label (annotators only their own; the audit names who did)."""
    tables = h.tables

    @friendly
    def data_delete_vote(vid: Any, request: gr.Request) -> str:
        vid = row_id(vid, "vote")
        user = current_user(ctx, request)  # annotators delete only their own votes; the audit names who did
        ctx.store.delete_vote(vid, actor=user.name, admin=user.is_admin)
        return f"Deleted vote {vid}."

    @friendly
    def data_update_step_label(lid: Any, lab: Any, text: Any, request: gr.Request) -> str:
        lid = row_id(lid, "step label")
        if optional(lab) is None and optional(text) is None:
            raise InputError("give a new label or a note to save")
        user = current_user(ctx, request)
        ctx.store.update_step_label(lid, label=optional(lab), note=optional(text), actor=user.name,
                                    admin=user.is_admin)  # fmt: skip
        return f"Saved step label {lid}."

    @friendly
    def data_delete_step_label(lid: Any, request: gr.Request) -> str:
        lid = row_id(lid, "step label")
        user = current_user(ctx, request)
        ctx.store.delete_step_label(lid, actor=user.name, admin=user.is_admin)
        return f"Deleted step label {lid}."

    deleted = tables.delete_vote.click(
        data_delete_vote, tables.vote_id, h.message, api_name="data_delete_vote"
    )
    reread(ctx, h, deleted, "votes", "audit")
    saved = tables.save_label.click(data_update_step_label, [tables.label_id, tables.label, tables.note],
                                    h.message, api_name="data_update_step_label")  # fmt: skip
    reread(ctx, h, saved, "step_labels", "audit")
    removed = tables.delete_label.click(data_delete_step_label, tables.label_id, h.message,
                                        api_name="data_delete_step_label")  # fmt: skip
    reread(ctx, h, removed, "step_labels", "audit")


def wire_exchange(ctx: AppContext, h: Handles) -> None:
    """Export with the filters above; import a TRL preference file (admins only)."""
    x, f = h.exchange, h.filters

    @friendly
    def data_export(
        k: str, fmt: str, src: str, conv: bool, agree: bool, ps: Any, m: Any, s: Any, a: Any,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio reads the tracker from the default
    ) -> tuple[str, str]:  # fmt: skip
        if k not in KINDS or fmt not in FORMATS:
            raise InputError(
                f"export kind is one of {', '.join(KINDS)} and format one of {', '.join(FORMATS)}"
            )
        progress(0.1, desc=f"exporting {k} as {fmt}")
        result = ctx.store.export(k, fmt, export_name(k, fmt), export_filters(src, agree, ps, m, s, a),
                                  conversational=bool(conv))  # fmt: skip
        if not result.rows:
            gr.Warning("No rows matched: the file is empty. Vote in the Arena or widen the filters.")
        progress(1.0, desc="done")
        return downloadable(result.path), f"Exported **{result.rows}** {k} rows to `{result.path}`."

    @friendly
    def data_import(
        path: Any,
        ps: Any,
        ann: Any,
        request: gr.Request,
        progress: gr.Progress = gr.Progress(),  # noqa: B008
    ) -> str:
        user = current_user(ctx, request)
        require_admin(user, "import data")
        if not path:
            raise InputError("choose a JSONL or Parquet file to import")
        progress(0.1, desc="checking every row, then importing")
        # with logins, the labels carry the importer's name or the file's import:<name> source, never another's
        by = user.name if ctx.settings.auth_file else None
        result = ctx.store.import_preferences(
            path, prompt_set=optional(ps), annotator=optional(ann), imported_by=by
        )
        progress(1.0, desc="done")
        return (
            f"Imported **{result.rows}** preference pairs into prompt set `{result.prompt_set}` "
            f"(annotator `{result.annotator}`)."
        )

    x.export.click(
        data_export,
        [
            x.kind,
            x.fmt,
            x.source,
            x.conversational,
            x.agree_only,
            f.prompt_set,
            f.model,
            f.strategy,
            f.annotator,
        ],
        [x.export_file, h.message],
        api_name="data_export",
    )
    imported = x.do_import.click(data_import, [x.import_file, x.import_set, x.import_annotator], h.message,
                                 api_name="data_import")  # fmt: skip
    reread(ctx, h, imported, "prompts", "runs", "votes")
