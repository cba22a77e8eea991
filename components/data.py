"""Data tab: browse, filter and search prompts, runs, votes, verdicts and step labels; open a run's trace; delete
votes and edit step labels; see who changed which label (the label audit); per prompt set, edit the annotation
guidelines and how many annotators each prompt needs, and see each prompt's labelling status; export preference
data (dpo/kto/rm as Parquet or JSONL) and import TRL files. Every table loads fresh when the tab is opened.

Filters the store's readers take (prompt set of prompts, model and strategy of runs, annotator of votes, judge
of verdicts) go to the store; the rest (text search, a run's prompt set, a vote's runs) are applied here to the
newest ``SCAN`` rows the readers return.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import cached_property
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
from studio.access import require_admin
from studio.api import list_strategies
from studio.context import AppContext
from studio.errors import InputError

SCAN = 20_000  # rows read when a filter is applied here rather than by the store
ANY = ("any", "")
KINDS = ("dpo", "kto", "rm")
FORMATS = ("parquet", "jsonl")
STEP_LABELS = ("wrong", "good")

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


@dataclass
class Handles:
    prompt_set: gr.Dropdown
    model: gr.Dropdown
    strategy: gr.Dropdown
    annotator: gr.Textbox
    search: gr.Textbox
    prompts: gr.Dataframe
    runs: gr.Dataframe
    votes: gr.Dataframe
    verdicts: gr.Dataframe
    step_labels: gr.Dataframe
    run_id: gr.Number
    trace: gr.HTML
    export_file: gr.File
    import_file: gr.File
    message: gr.Markdown
    workflow_set: gr.Dropdown
    guidelines: gr.Textbox
    guidelines_preview: gr.Markdown
    min_labels: gr.Number
    prompt_status: gr.Dataframe
    audit: gr.Dataframe


# -- reading ------------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Query:
    """The filter fields, with '' meaning any."""

    prompt_set: str | None = None
    model: str | None = None
    strategy: str | None = None
    annotator: str | None = None
    search: str | None = None
    limit: int | None = 100

    @classmethod
    def of(cls, prompt_set: Any, model: Any, strategy: Any, annotator: Any, search: Any, limit: Any) -> Query:
        return cls(*map(optional, (prompt_set, model, strategy, annotator, search)), limit_of(limit))

    @property
    def scan(self) -> int | None:
        """How many rows to ask the store for: all we show, or, when we filter here, the newest ``SCAN``."""
        local = self.search or self.prompt_set or self.model or self.strategy
        return SCAN if local else self.limit

    def finds(self, *texts: Any) -> bool:
        needle = (self.search or "").casefold()
        return not needle or any(needle in str(t).casefold() for t in texts if t is not None)

    def take(self, rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
        out = []
        for r in rows:
            if self.limit is not None and len(out) >= self.limit:
                break
            out.append(r)
        return out


def method(run: dict[str, Any]) -> str:
    return run["strategy"] + (f":{run['variant']}" if run.get("variant") else "")


class Index:
    """Prompts, runs (without traces) and comparisons by id, each read once per request when first needed."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @cached_property
    def prompts(self) -> dict[int, dict[str, Any]]:
        return {p["id"]: p for p in self.store.list_prompts(limit=None)}

    @cached_property
    def runs(self) -> dict[int, dict[str, Any]]:
        return {r["id"]: r for r in self.store.list_runs(limit=None)}

    @cached_property
    def comparisons(self) -> dict[int, dict[str, Any]]:
        return {c["id"]: c for c in self.store.list_comparisons(limit=None)}

    def prompt_of(self, prompt_id: int | None) -> dict[str, Any]:
        return self.prompts.get(prompt_id, {}) if prompt_id is not None else {}

    def runs_of(self, run_ids: Sequence[int]) -> list[dict[str, Any]]:
        return [self.runs[r] for r in run_ids if r in self.runs]

    def contestants(self, run_ids: Sequence[int]) -> str:
        return " | ".join(f"{r['model']} / {method(r)}" for r in self.runs_of(run_ids))

    def matches(self, q: Query, run_ids: Sequence[int], *texts: Any) -> bool:
        """A vote or verdict matches when one of its runs has the model / strategy (as pairs do in exports)."""
        runs = self.runs_of(run_ids)
        if q.model and all(r["model"] != q.model for r in runs):
            return False
        if q.strategy and all(q.strategy not in (r["strategy"], method(r)) for r in runs):
            return False
        prompt = self.prompt_of(runs[0]["prompt_id"] if runs else None)
        if q.prompt_set and prompt.get("prompt_set") != q.prompt_set:
            return False
        return q.finds(prompt.get("text"), *(r["answer"] for r in runs), *texts)


def frame(rows: list[dict[str, Any]], columns: list[str], width: int = 160) -> pd.DataFrame:
    return pd.DataFrame(table(rows, columns, width), columns=columns)


def prompt_rows(store: Store, q: Query) -> pd.DataFrame:
    rows = store.list_prompts(q.prompt_set, limit=q.limit if not q.search else None)
    return frame(q.take(p for p in rows if q.finds(p["text"], p.get("category"))), PROMPT_COLUMNS)


def run_rows(store: Store, q: Query) -> pd.DataFrame:
    index = Index(store)
    strategy, _, variant = (q.strategy or "").partition(":")
    found = store.list_runs(model=q.model, strategy=strategy or None, limit=q.scan)
    rows = []
    for r in found:
        prompt = index.prompt_of(r["prompt_id"])
        if variant and r.get("variant") != variant:
            continue
        if q.prompt_set and prompt.get("prompt_set") != q.prompt_set:
            continue
        if q.finds(prompt.get("text"), r["answer"]):
            rows.append({**r, "strategy": method(r), "prompt_set": prompt.get("prompt_set"),
                         "prompt": prompt.get("text")})  # fmt: skip
    return frame(q.take(rows), RUN_COLUMNS)


def vote_rows(store: Store, q: Query) -> pd.DataFrame:
    index = Index(store)
    rows = []
    for v in store.list_votes(annotator=q.annotator, limit=q.scan):
        cmp = index.comparisons.get(v["comparison_id"], {})
        run_ids = cmp.get("run_ids") or []
        if index.matches(q, run_ids, v.get("comment"), v["annotator"]):
            prompt = index.prompt_of(cmp.get("prompt_id")).get("text")
            rows.append(
                {**v, "run_ids": run_ids, "contestants": index.contestants(run_ids), "prompt": prompt}
            )
    return frame(q.take(rows), VOTE_COLUMNS)


def verdict_rows(store: Store, q: Query) -> pd.DataFrame:
    index = Index(store)
    rows = []
    for d in store.list_verdicts(judge=q.annotator, limit=q.scan):
        scores = d.get("scores") or {}
        error = scores.get("error") if isinstance(scores, dict) else None
        if index.matches(q, d["run_ids"], d.get("raw_output"), d["judge"], error):
            self_judge = scores.get("self_judge") if isinstance(scores, dict) else None
            rows.append({**d, "contestants": index.contestants(d["run_ids"]), "error": error,
                         "self_judge": self_judge})  # fmt: skip
    return frame(q.take(rows), VERDICT_COLUMNS)


def step_label_rows(store: Store, q: Query) -> pd.DataFrame:
    index = Index(store)
    rows = [
        s
        for s in reversed(store.list_step_labels())  # newest first, as the other tables
        if (not q.annotator or s["annotator"] == q.annotator)
        and index.matches(q, [s["run_id"]], s["label"], s.get("note"), s["step_id"], s["annotator"])
    ]
    return frame(q.take(rows), STEP_LABEL_COLUMNS)


def audit_rows(store: Store, q: Query) -> pd.DataFrame:
    """Who replaced or deleted which label, newest first (the store's label audit)."""
    return frame(store.label_audit(annotator=q.annotator, limit=q.limit), AUDIT_COLUMNS, width=200)


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
        f"(set {_esc(prompt.get('prompt_set'))}) · {_esc(run['model'])} · {_esc(method(run))} · {at}</div>"
    )
    return head + render_trace_html(trace, labels=labels)


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


# -- the tab ------------------------------------------------------------------------------------------------------
def build(ctx: AppContext, opened: Sequence[Any] = ()) -> Handles:
    """The tab's widgets and events. ``opened``: the events on which every table and picker is read again (the
    app passes the page load and the tab's select); none given, the page load."""
    strategies = [s.name for s in list_strategies()] + ["imported"]
    gr.Markdown(
        "Everything the studio has recorded. Filters apply to every table; the text search looks in prompts, "
        "answers, comments and judge outputs. Click a row to open its run below."
    )
    stats = gr.Markdown()
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
    filters = [prompt_set, model, strategy, annotator, search, limit]
    message = gr.Markdown()

    with gr.Tabs():
        with gr.Tab("Runs"):
            runs = gr.Dataframe(headers=RUN_COLUMNS, interactive=False, wrap=True, max_height=420)
        with gr.Tab("Prompts"):
            prompts = gr.Dataframe(headers=PROMPT_COLUMNS, interactive=False, wrap=True, max_height=420)
        with gr.Tab("Votes"):
            votes = gr.Dataframe(headers=VOTE_COLUMNS, interactive=False, wrap=True, max_height=420)
            with gr.Row(equal_height=True):
                vote_id = gr.Number(label="Vote id", precision=0, minimum=0, scale=1)
                delete_vote = gr.Button("Delete vote", variant="stop", scale=0)
        with gr.Tab("Verdicts"):
            verdicts = gr.Dataframe(headers=VERDICT_COLUMNS, interactive=False, wrap=True, max_height=420)
        with gr.Tab("Step labels"):
            step_labels = gr.Dataframe(
                headers=STEP_LABEL_COLUMNS, interactive=False, wrap=True, max_height=420
            )
            with gr.Row(equal_height=True):
                label_id = gr.Number(label="Step label id", precision=0, minimum=0, scale=1)
                label = gr.Dropdown(list(STEP_LABELS), label="Label", allow_custom_value=True, scale=1)
                note = gr.Textbox(label="Note", scale=3)
                save_label = gr.Button("Save", scale=0)
                delete_label = gr.Button("Delete", variant="stop", scale=0)
        with gr.Tab("Prompt sets"):
            gr.Markdown(
                "Per prompt set: the **annotation guidelines** (Markdown, shown above the Arena), how many "
                "annotators each prompt needs (**min labels**; *Next prompt* prefers prompts that still need "
                "labels), and each prompt's status."
            )
            with gr.Row(equal_height=True):
                workflow_set = gr.Dropdown([], label="Prompt set", scale=2)
                min_labels = gr.Number(1, label="Min labels per prompt", precision=0, minimum=1, scale=1)
                save_set = gr.Button("Save guidelines and min labels", variant="primary", scale=1)
            with gr.Row():
                guidelines = gr.Textbox(label="Guidelines (Markdown)", lines=10, max_lines=30, scale=1)
                with gr.Column(scale=1):
                    gr.Markdown("**Preview**")
                    guidelines_preview = gr.Markdown(NO_GUIDELINES)
            status_summary = gr.Markdown()
            prompt_status = gr.Dataframe(headers=STATUS_COLUMNS, interactive=False, wrap=True, max_height=420,
                                         label="Prompt status")  # fmt: skip
        with gr.Tab("Label audit"):
            gr.Markdown(
                "Every replaced or deleted label: who labelled it, who changed it (actor), the old and the new "
                "value. The annotator filter and the row limit above apply."
            )
            audit = gr.Dataframe(headers=AUDIT_COLUMNS, interactive=False, wrap=True, max_height=420)
        with gr.Tab("Export / import"):
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
                    import_annotator = gr.Textbox(
                        label="Annotator", placeholder="default: import:<file name>"
                    )
                    do_import = gr.Button("Import", variant="primary")

    gr.Markdown("### Run")
    with gr.Row(equal_height=True):
        run_id = gr.Number(label="Run id", precision=0, minimum=0, scale=1)
        open_run = gr.Button("Open run", scale=0)
        gr.HTML(scale=4)  # keeps the id box narrow
    trace = gr.HTML(label="Run trace")

    # -- handlers: read ---------------------------------------------------------------------------------------
    def reader(fn: Callable[[Store, Query], pd.DataFrame]) -> Callable[..., pd.DataFrame]:
        @friendly
        def read(ps: Any, m: Any, s: Any, a: Any, q: Any, n: Any) -> pd.DataFrame:
            return fn(ctx.store, Query.of(ps, m, s, a, q, n))

        return read

    @friendly
    def data_stats() -> tuple[str, gr.Dropdown]:
        store = ctx.store
        sets = [ANY, *store.prompt_sets()]
        return stats_markdown(store), gr.Dropdown(choices=sets)

    @friendly
    def data_open() -> tuple[Any, ...]:
        """Opening the tab: the counts and the pickers as they are now (prompt sets, models)."""
        store = ctx.store
        names = store.prompt_sets()
        return (stats_markdown(store), gr.Dropdown(choices=[ANY, *names]),
                gr.Dropdown(choices=[ANY, *ctx.model_names()]), gr.Dropdown(choices=names))  # fmt: skip

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

    @friendly
    def data_run_trace(rid: Any) -> str:
        return run_html(ctx.store, row_id(rid, "run"))

    def pick_id(evt: gr.SelectData) -> Any:
        """A row's id (the first column)."""
        row = evt.row_value or []
        return row[0] if row and row[0] != "" else gr.skip()

    def first_run(evt: gr.SelectData) -> Any:
        """A vote's or verdict's row: open its first run."""
        row = evt.row_value or []
        cols = VOTE_COLUMNS if len(row) == len(VOTE_COLUMNS) else VERDICT_COLUMNS
        ids = str(row[cols.index("run_ids")]).strip("[]").split(",") if row else []
        return int(ids[0]) if ids and ids[0].strip().isdigit() else gr.skip()

    def pick_label(evt: gr.SelectData) -> tuple[Any, Any, Any, Any]:
        row = evt.row_value or []
        if len(row) != len(STEP_LABEL_COLUMNS):
            return gr.skip(), gr.skip(), gr.skip(), gr.skip()
        get = dict(zip(STEP_LABEL_COLUMNS, row, strict=True)).get
        return get("id"), get("label"), get("note"), get("run_id")

    # -- handlers: write --------------------------------------------------------------------------------------
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

    @friendly
    def data_export(
        k: str, f: str, src: str, conv: bool, agree: bool, ps: Any, m: Any, s: Any, a: Any,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio reads the tracker from the default
    ) -> tuple[str, str]:  # fmt: skip
        if k not in KINDS or f not in FORMATS:
            raise InputError(
                f"export kind is one of {', '.join(KINDS)} and format one of {', '.join(FORMATS)}"
            )
        progress(0.1, desc=f"exporting {k} as {f}")
        result = ctx.store.export(k, f, export_name(k, f), export_filters(src, agree, ps, m, s, a),
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

    # -- wiring -----------------------------------------------------------------------------------------------
    tables = [
        (prompts, prompt_rows, "data_prompts"),
        (runs, run_rows, "data_runs"),
        (votes, vote_rows, "data_votes"),
        (verdicts, verdict_rows, "data_verdicts"),
        (step_labels, step_label_rows, "data_step_labels"),
        (audit, audit_rows, "data_label_audit"),
    ]
    refresh.click(data_stats, None, [stats, prompt_set], api_name="data_stats")  # Refresh rereads everything
    on_open = list(opened) or None  # None: gradio's page load
    pickers = [stats, prompt_set, model, workflow_set]
    # "always_last": a tab opened while the page-load read still runs is read once more after it, not skipped
    gr.on(on_open, data_open, None, pickers, api_name="data_open", api_visibility="undocumented",
          show_progress="hidden", trigger_mode="always_last")  # fmt: skip
    for component, fn, name in tables:  # each table follows the filters, and is read again when the tab opens
        read = reader(fn)
        gr.on([*opened, *(c.change for c in filters)] if opened else None, read, filters, component,
              api_name=name, trigger_mode="always_last")  # fmt: skip
        refresh.click(read, filters, component, api_visibility="private")
    workflow = [guidelines, guidelines_preview, min_labels, status_summary, prompt_status]
    workflow_set.change(data_prompt_set, workflow_set, workflow, api_name="data_prompt_set")
    guidelines.input(lambda text: text or NO_GUIDELINES, guidelines, guidelines_preview, api_visibility="private",
                     show_progress="hidden")  # fmt: skip
    save_set.click(data_save_prompt_set, [workflow_set, guidelines, min_labels],
                   [message, status_summary, prompt_status], api_name="data_save_prompt_set")  # fmt: skip
    gr.on([refresh.click, *opened], data_prompt_set, workflow_set, workflow, api_visibility="private",
          trigger_mode="always_last")  # fmt: skip

    def reread(event: Any, *which: gr.Dataframe) -> None:
        """After a change, reread the stats and the tables it touched."""
        event = event.success(data_stats, None, [stats, prompt_set], api_visibility="private")
        for component, fn, _ in tables:
            if component in which:
                event.then(reader(fn), filters, component, api_visibility="private")

    open_run.click(data_run_trace, run_id, trace, api_name="data_run_trace")
    run_id.submit(data_run_trace, run_id, trace, api_visibility="private")
    runs.select(pick_id, None, run_id, api_visibility="private").success(
        data_run_trace, run_id, trace, api_visibility="private"
    )
    for component in (votes, verdicts):
        component.select(first_run, None, run_id, api_visibility="private").success(
            data_run_trace, run_id, trace, api_visibility="private"
        )
    votes.select(pick_id, None, vote_id, api_visibility="private")
    step_labels.select(pick_label, None, [label_id, label, note, run_id], api_visibility="private").success(
        data_run_trace, run_id, trace, api_visibility="private"
    )

    reread(delete_vote.click(data_delete_vote, vote_id, message, api_name="data_delete_vote"), votes, audit)
    reread(
        save_label.click(data_update_step_label, [label_id, label, note], message,
                         api_name="data_update_step_label"),
        step_labels, audit,
    )  # fmt: skip
    reread(
        delete_label.click(data_delete_step_label, label_id, message, api_name="data_delete_step_label"),
        step_labels, audit,
    )  # fmt: skip
    export.click(
        data_export,
        [kind, fmt, source, conversational, agree_only, prompt_set, model, strategy, annotator],
        [export_file, message],
        api_name="data_export",
    )
    reread(
        do_import.click(data_import, [import_file, import_set, import_annotator], message,
                        api_name="data_import"),
        prompts, runs, votes,
    )  # fmt: skip
    return Handles(prompt_set, model, strategy, annotator, search, prompts, runs, votes, verdicts,
                   step_labels, run_id, trace, export_file, import_file, message, workflow_set, guidelines,
                   guidelines_preview, min_labels, prompt_status, audit)  # fmt: skip
