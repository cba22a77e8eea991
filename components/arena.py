"""Arena tab: one prompt, up to six columns (strategy x model) streaming side by side, then a label.

Handlers call :mod:`studio.arena` and format what it reports; the domain logic lives there. Bad input is
checked by a quick event first (one toast, nothing on screen replaced), and only then does the real one run.
While a comparison is blind and unlabelled, nothing on the page says which column is which: no method or
model names, no step names, counts or traces. They open with the vote.
"""

from __future__ import annotations

import html
import logging
import re
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

from components.common import current_user, number, render_trace_html, user_errors, whole
from components.tree import TREE_JS, summary_html
from studio import arena as svc
from studio.context import AppContext
from studio.errors import InputError
from studio.strategies import STEP_NAMES, StrategyParams

log = logging.getLogger("studio.ui")
LETTERS = svc.LETTERS
N = svc.MAX_COLUMNS
REFRESH_S = 0.15  # at most ~7 screen updates a second while tokens stream
EMPTY = '<div class="arena-live"></div>'
HIDDEN_TRACE = '<div class="arena-hidden">Traces open after your vote.</div>'
KEYS_HELP = (
    "**Keys** (when not typing in a box): `A` / `B` pick a side · `T` tie · `X` both bad · "
    "`1`–`6` rank the next column · `Enter` submit · `N` next prompt · `S` skip"
)


@dataclass
class ColumnHandles:
    box: gr.Column
    header: gr.Markdown
    answer: gr.HTML
    trace: gr.HTML
    rank: gr.Radio
    summary: gr.HTML  # what the run built beyond its steps: ToT's live tree, self-consistency's vote


@dataclass
class WorkflowHandles:
    """Who labels and what comes next: the name, the prompt set, Next / Skip / auto-advance, progress, guidelines."""

    annotator: gr.Textbox
    prompt_set: gr.Dropdown
    next_prompt: gr.Button
    skip: gr.Button
    auto: gr.Checkbox
    progress: gr.HTML
    guide_box: gr.Accordion
    guidelines: gr.Markdown


@dataclass
class OptionsHandles:
    """Decoding and method options pre-filled with the default model's decoding defaults; only those changed
    are sent, so each column's model fills the rest with its own (``studio.strategies.resolve_params``)."""

    structured: gr.Checkbox
    repetition_penalty: gr.Slider
    no_repeat_ngram_size: gr.Slider
    step_max_tokens: gr.Textbox
    breadth: gr.Slider
    depth: gr.Slider
    k: gr.Slider
    n_evaluate: gr.Slider
    value_threshold: gr.Number
    samples: gr.Slider
    sc_temperature: gr.Slider
    defaults: dict[str, Any]  # what the controls were pre-filled with (StrategyParams fields)

    @property
    def inputs(self) -> list[Any]:
        return [self.structured, self.repetition_penalty, self.no_repeat_ngram_size, self.step_max_tokens,
                self.breadth, self.depth, self.k, self.n_evaluate, self.value_threshold, self.samples,
                self.sc_temperature]  # fmt: skip


@dataclass
class RunHandles:
    """The prompt, the columns and decoding settings, Run, and importing a prompt set."""

    prompt: gr.Textbox
    blind: gr.Checkbox
    run: gr.Button
    setup: gr.Accordion
    columns: gr.Dropdown
    max_new_tokens: gr.Slider
    temperature: gr.Slider
    top_p: gr.Slider
    seed: gr.Number
    max_questions: gr.Slider
    max_branches: gr.Slider
    token_budget: gr.Number
    options: OptionsHandles
    upload: gr.File
    set_name: gr.Textbox
    import_prompts: gr.Button


@dataclass
class LabelHandles:
    """The label: a pairwise choice (or the columns' ranks), a comment, Submit; and flagging one step."""

    pairwise: gr.Radio
    comment: gr.Textbox
    comparison: gr.Number
    submit: gr.Button
    vote_msg: gr.Markdown
    step: gr.Dropdown
    flag: gr.Radio
    note: gr.Textbox
    flag_step: gr.Button
    flag_box: gr.Accordion


@dataclass
class Handles:
    workflow: WorkflowHandles
    run: RunHandles
    status: gr.Markdown
    cols: list[ColumnHandles]
    label: LabelHandles
    state: gr.State  # the comparison on screen (ArenaState as a dict)
    loaded: gr.State  # the prompt loaded from a set: {"id", "text"}
    go: gr.State  # bumped to run the loaded prompt (auto-advance)

    @property
    def columns(self) -> gr.Dropdown:
        """The column picker (the app refreshes its choices on every page load)."""
        return self.run.columns

    @property
    def run_inputs(self) -> list[Any]:
        r = self.run
        return [r.prompt, r.columns, r.blind, r.max_new_tokens, r.temperature, r.top_p, r.seed, r.max_questions,
                r.max_branches, r.token_budget, *r.options.inputs, self.loaded]  # fmt: skip

    @property
    def run_outputs(self) -> list[Any]:
        lab, cols = self.label, self.cols
        col_outputs = [c.box for c in cols] + [c.header for c in cols] + [c.answer for c in cols]
        col_outputs += [c.trace for c in cols] + [c.rank for c in cols] + [c.summary for c in cols]
        return [self.state, lab.comparison, self.status, lab.step, lab.pairwise, lab.vote_msg, self.run.setup,
                *col_outputs]  # fmt: skip

    @property
    def next_inputs(self) -> list[Any]:
        w = self.workflow
        return [w.prompt_set, w.annotator, self.loaded, self.run.prompt, self.state, w.auto, self.go]

    @property
    def next_outputs(self) -> list[Any]:
        return [self.run.prompt, self.loaded, self.go, self.workflow.progress]


# -- formatting ------------------------------------------------------------------------------------------------------
def header_md(position: int, label: str | None, failed: bool = False, done: bool = False) -> str:
    """A column's heading: its letter, its name once it may be shown, and 'failed' or 'done' once it ended."""
    end = " · failed" if failed else (" · done" if done else "")
    return f"### {LETTERS[position]}" + (f" · {label}" if label else "") + end


def answer_html(answer: str | None, live: str = "", error: str | None = None) -> str:
    if error:
        return f'<div class="arena-error">⚠ {html.escape(error)}</div>'
    if answer is None:
        body = html.escape(live) if live else '<span class="arena-wait">waiting…</span>'
        return f'<div class="arena-live">{body}</div>'
    return f'<div class="arena-answer">{html.escape(answer) or "<em>(empty answer)</em>"}</div>'


def live_text(steps: list[dict[str, Any]], live: dict[str, str], *, hidden: bool = False) -> str:
    """What a running column shows: the newest step's name and its text so far. Hidden (blind): the text of
    an answer step only, without its name; the other steps would tell the method apart."""
    running = [s for s in steps if s.get("status") == "running"]
    if not running:
        return ""
    s = running[-1]
    if hidden:
        return live.get(s["id"], "") if s.get("name") in svc.ANSWER_STEPS else ""
    return f"[{s['name']}] {live.get(s['id'], '')}"


def trace_html(trace: dict[str, Any], live: dict[str, str]) -> str:
    return render_trace_html(trace, live_outputs=live, summary=False)


def progress_html(p: dict[str, int] | None, who: str, prompt_set: str) -> str:
    """The annotator's progress through a prompt set: a bar (labelled, skipped) and the counts."""
    if not p:
        return ""
    total = max(p["total"], 1)
    done, skipped = 100 * p["labelled"] / total, 100 * p["skipped"] / total
    return (
        '<div class="arena-progress">'
        f'<div class="arena-bar"><span class="arena-bar-done" style="width:{done:.1f}%"></span>'
        f'<span class="arena-bar-skipped" style="width:{skipped:.1f}%"></span></div>'
        f"<div>{html.escape(who)} · {html.escape(prompt_set)}: <b>{p['labelled']}</b> labelled · "
        f"<b>{p['skipped']}</b> skipped · <b>{p['remaining']}</b> remaining of {p['total']}</div></div>"
    )


# -- decoding options ------------------------------------------------------------------------------------------------
CAPS_FORMAT = "'step=tokens, …' (e.g. 'merge=160, answer=96')"
_CAP = re.compile(r"\s*([A-Za-z_]\w*)\s*[=:]\s*(\S+)\s*\Z")
#: the options sent only when changed from their pre-filled default (StrategyParams fields)
OPTION_FIELDS = ("structured", "repetition_penalty", "no_repeat_ngram_size", "step_max_tokens", "breadth",
                 "depth", "k", "n_evaluate", "value_threshold", "samples", "sc_temperature")  # fmt: skip


def step_caps(text: Any) -> dict[str, int]:
    """Per-step token caps typed as ``merge=160, answer=96`` (commas, semicolons or new lines between them) as
    ``StrategyParams.step_max_tokens``; one clear error saying what is wrong and how to write it."""
    if text is not None and not isinstance(text, str):
        raise InputError(f"per-step token caps are text written {CAPS_FORMAT}, not {type(text).__name__}")
    caps: dict[str, int] = {}
    for item in re.split(r"[,;\n]", text or ""):
        if not item.strip():
            continue
        m = _CAP.match(item)
        if not m:
            raise InputError(f"per-step token caps are written {CAPS_FORMAT}; {item.strip()!r:.60} is not")
        name, cap = m[1], m[2]
        if name not in STEP_NAMES:
            raise InputError(
                f"per-step token caps: {name!r} is not a step name; the steps: {', '.join(STEP_NAMES)}"
            )
        if not cap.isdigit() or int(cap) < 1:
            raise InputError(
                f"per-step token caps: the cap of {name} must be a whole number >= 1, not {cap!r:.20}"
            )
        if name in caps:
            raise InputError(f"per-step token caps: {name} is given twice")
        caps[name] = int(cap)
    return caps


def caps_text(caps: Any) -> str:
    """Per-step token caps as the text box shows them: ``merge=160, answer=96``."""
    return ", ".join(f"{k}={v}" for k, v in dict(caps or {}).items())


def option_params(values: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """The decoding and method options as typed (by :data:`OPTION_FIELDS`), checked, and only those that differ
    from the pre-filled ``defaults``: a field left as it is takes each column's model's own default."""
    checked = {
        "structured": bool(values.get("structured")),
        "repetition_penalty": _number_or(
            values.get("repetition_penalty"),
            "repetition penalty",
            defaults.get("repetition_penalty"),
            lo=0.5,
            hi=3,
        ),
        "no_repeat_ngram_size": _whole_or(
            values.get("no_repeat_ngram_size"),
            "no-repeat n-gram size",
            defaults.get("no_repeat_ngram_size"),
            lo=0,
        ),
        "step_max_tokens": step_caps(values.get("step_max_tokens")),
        "breadth": _whole_or(values.get("breadth"), "ToT breadth", defaults.get("breadth"), lo=1),
        "depth": _whole_or(values.get("depth"), "ToT depth", defaults.get("depth"), lo=1),
        "k": _whole_or(values.get("k"), "ToT thoughts per state (k)", defaults.get("k"), lo=1),
        "n_evaluate": _whole_or(
            values.get("n_evaluate"), "ToT value samples", defaults.get("n_evaluate"), lo=1
        ),
        "value_threshold": _number_or(
            values.get("value_threshold"), "ToT value threshold", defaults.get("value_threshold")
        ),
        "samples": _whole_or(
            values.get("samples"), "self-consistency samples", defaults.get("samples"), lo=1
        ),
        "sc_temperature": _number_or(
            values.get("sc_temperature"), "self-consistency temperature", defaults.get("sc_temperature"), lo=0
        ),
    }
    return {k: v for k, v in checked.items() if v != defaults.get(k)}


def _whole_or(value: Any, what: str, default: Any, *, lo: int) -> Any:
    empty = value is None or (isinstance(value, str) and not value.strip())
    return default if empty else whole(value, what, lo=lo)


def _number_or(
    value: Any, what: str, default: Any, *, lo: float | None = None, hi: float | None = None
) -> Any:
    n = number(value, what, lo=lo, hi=hi)
    return default if n is None else n


def decoding_defaults(ctx: AppContext) -> dict[str, Any]:
    """The options' pre-fill: the default model's decoding defaults (``models.toml`` params) over the class
    defaults. A broken models.toml must not stop the page from building: the class defaults then, and a log line
    (runs say why)."""
    base = StrategyParams().to_dict()
    try:
        base.update(ctx.registry.decoding_defaults())
    except Exception as e:
        log.warning("the default model's decoding defaults are unreadable: %s", e)
    return base


# -- the tab: layout ----------------------------------------------------------------------------------------------------
def build(ctx: AppContext) -> Handles:
    """The tab: its widgets, then its events (run, vote, the labelling workflow, step flags, imports)."""
    h = layout(ctx)
    run_arena = wire_run(ctx, h)
    voted = wire_vote(ctx, h)
    wire_workflow(ctx, h, run_arena, voted)
    wire_flags(ctx, h)
    wire_import(ctx, h)
    return h


def layout(ctx: AppContext) -> Handles:
    workflow = workflow_layout(ctx)
    run = run_layout(ctx)
    gr.Markdown(KEYS_HELP, elem_id="arena-keys")
    status = gr.Markdown(elem_id="arena-status")
    cols = columns_layout()
    label = label_layout()
    return Handles(workflow, run, status, cols, label, gr.State({}), gr.State({}), gr.State(0))


def workflow_layout(ctx: AppContext) -> WorkflowHandles:
    with gr.Row(equal_height=True):
        annotator = gr.Textbox(
            label="Your name (stored with your labels)",
            placeholder="annotator name",
            visible=not ctx.settings.auth_file,
            scale=2,
        )
        prompt_set = gr.Dropdown(
            _prompt_sets(ctx),
            label="Prompt set",
            allow_custom_value=True,
            scale=2,
            value=None,
            elem_id="arena-set",
        )
        next_btn = gr.Button("Next prompt", scale=0, elem_id="arena-next")
        skip_btn = gr.Button("Skip", scale=0, elem_id="arena-skip")
        auto = gr.Checkbox(False, label="Auto-advance: run the next prompt after a vote", scale=1,
                           elem_id="arena-auto")  # fmt: skip
    progress = gr.HTML(elem_id="arena-progress")
    with gr.Accordion("Guidelines", open=False, visible=False, elem_id="arena-guidelines") as guide_box:
        guidelines = gr.Markdown()
    return WorkflowHandles(annotator, prompt_set, next_btn, skip_btn, auto, progress, guide_box, guidelines)


def run_layout(ctx: AppContext) -> RunHandles:
    settings = ctx.settings
    prompt = gr.Textbox(label="Prompt", placeholder="Ask something…", lines=3, elem_id="arena-prompt")
    with gr.Row(equal_height=True):
        blind = gr.Checkbox(
            True, label="Blind: hide names, shuffle positions", scale=4, elem_id="arena-blind"
        )
        run = gr.Button("Run", variant="primary", scale=0, elem_id="arena-run")
    with gr.Accordion("Columns and decoding", open=True, elem_id="arena-setup") as setup:
        columns = gr.Dropdown(
            svc.column_choices(ctx.model_names()),
            value=svc.default_columns(settings.default_model),
            multiselect=True,
            max_choices=N,
            label="Columns (strategy:variant @ model), up to 6",
            elem_id="arena-columns",
        )
        with gr.Accordion("Decoding and limits", open=False, elem_id="arena-decoding"):
            with gr.Row():
                max_new_tokens = gr.Slider(
                    16, 2048, settings.max_new_tokens, step=16, label="max_new_tokens (per step)",
                    elem_id="arena-max-new-tokens",
                )  # fmt: skip
                temperature = gr.Slider(0, 1.5, 0, step=0.05, label="temperature (0 = greedy)")
                top_p = gr.Slider(0.05, 1, 1, step=0.05, label="top_p")
                seed = gr.Number(None, label="seed (optional)", precision=0)
            with gr.Row():
                max_questions = gr.Slider(1, 10, 5, step=1, label="CoVe: max verification questions")
                max_branches = gr.Slider(1, 10, 5, step=1, label="BSM: max branches")
                token_budget = gr.Number(None, label="token budget per run (optional)", precision=0)
            options = options_layout(ctx)
    with gr.Accordion("Import a prompt set (text: one per line, or JSONL with 'prompt')", open=False):
        with gr.Row():
            upload = gr.File(label="File", file_types=[".txt", ".jsonl", ".json"], type="filepath")
            set_name = gr.Textbox(label="Prompt set name (the file name when empty)")
            import_btn = gr.Button("Import", scale=0)
    return RunHandles(prompt, blind, run, setup, columns, max_new_tokens, temperature, top_p, seed, max_questions,
                      max_branches, token_budget, options, upload, set_name, import_btn)  # fmt: skip


def options_layout(ctx: AppContext) -> OptionsHandles:
    """Decoding against loops, structured steps, per-step caps, and the ToT and self-consistency params, all
    pre-filled with the default model's decoding defaults."""
    d = decoding_defaults(ctx)
    gr.Markdown(
        f"The fields below start at **{html.escape(ctx.settings.default_model)}**'s decoding defaults. A field "
        "left as it is is not sent: each column's model then uses its own default.",
        elem_id="arena-defaults-note",
    )
    with gr.Row():
        structured = gr.Checkbox(
            bool(d["structured"]),
            label="structured: parsed steps follow a JSON schema",
            elem_id="arena-structured",
        )
        repetition_penalty = gr.Slider(
            0.5, 3, float(d["repetition_penalty"]), step=0.05, label="repetition_penalty (1 = off)"
        )
        no_repeat = gr.Slider(
            0, max(10, int(d["no_repeat_ngram_size"])), int(d["no_repeat_ngram_size"]), step=1,
            label="no_repeat_ngram_size (0 = off)",
        )  # fmt: skip
        caps = gr.Textbox(
            caps_text(d["step_max_tokens"]),
            label="per-step token caps (step=tokens)",
            placeholder="merge=160, answer=96",
            elem_id="arena-step-caps",
        )
    with gr.Row():
        breadth = gr.Slider(1, max(8, d["breadth"]), d["breadth"], step=1, label="ToT breadth (states kept)",
                            elem_id="arena-tot-breadth")  # fmt: skip
        depth = gr.Slider(
            1, max(6, d["depth"]), d["depth"], step=1, label="ToT depth", elem_id="arena-tot-depth"
        )
        k = gr.Slider(1, max(8, d["k"]), d["k"], step=1, label="ToT k (per state)", elem_id="arena-tot-k")
        n_evaluate = gr.Slider(1, max(5, d["n_evaluate"]), d["n_evaluate"], step=1,
                               label="ToT n_evaluate", elem_id="arena-tot-n-evaluate")  # fmt: skip
        threshold = gr.Number(float(d["value_threshold"]), label="ToT dfs: value threshold")
    with gr.Row():
        samples = gr.Slider(1, max(20, d["samples"]), d["samples"], step=1, label="self-consistency samples")
        sc_temperature = gr.Slider(
            0, 1.5, float(d["sc_temperature"]), step=0.05, label="self-consistency temperature"
        )
    return OptionsHandles(structured, repetition_penalty, no_repeat, caps, breadth, depth, k, n_evaluate,
                          threshold, samples, sc_temperature, d)  # fmt: skip


def columns_layout() -> list[ColumnHandles]:
    cols: list[ColumnHandles] = []
    with gr.Row(equal_height=False):
        for i in range(N):
            with gr.Column(
                visible=i < len(svc.DEFAULT_COLUMNS), min_width=240, elem_id=f"arena-col-{i}"
            ) as box:
                header = gr.Markdown(header_md(i, None))
                answer = gr.HTML(EMPTY, elem_classes="arena-col-answer", elem_id=f"arena-answer-{i}")
                summary = gr.HTML("", elem_id=f"arena-tree-{i}", js_on_load=TREE_JS)
                with gr.Accordion("Trace", open=False, elem_id=f"arena-trace-{i}"):
                    trace = gr.HTML()
                rank = gr.Radio(  # 1-6 until a run: an API session may rank any comparison
                    [str(k) for k in range(1, N + 1)],
                    value=None,
                    label="Rank (1 = best)",
                    elem_id=f"arena-rank-{i}",
                    visible=len(svc.DEFAULT_COLUMNS) > 2,
                )
            cols.append(ColumnHandles(box, header, answer, trace, rank, summary))
    return cols


def label_layout() -> LabelHandles:
    with gr.Group():
        with gr.Row():
            pairwise = gr.Radio(
                ["A", "B", "Tie", "Both bad"],
                label="Which is better?",
                visible=False,
                elem_id="arena-pairwise",
            )
            comment = gr.Textbox(label="Comment (optional)", scale=2, elem_id="arena-comment")
            comparison = gr.Number(None, label="Comparison id", precision=0, interactive=False, scale=0)
        with gr.Row(equal_height=True):
            submit = gr.Button("Submit label", variant="primary", elem_id="arena-submit", scale=0)
            vote_msg = gr.Markdown(elem_id="arena-vote-msg")
    with gr.Accordion(
        "Flag a step (or a tree node) as wrong or good", open=False, elem_id="arena-flag"
    ) as flag_box:
        with gr.Row():
            step = gr.Dropdown([], value=None, label="Step", scale=2, elem_id="arena-flag-step")
            flag = gr.Radio(["wrong", "good"], value="wrong", label="Label")
            note = gr.Textbox(label="Note (optional)", scale=2, elem_id="arena-note")
            flag_btn = gr.Button("Flag step", scale=0, elem_id="arena-flag-btn")
    return LabelHandles(pairwise, comment, comparison, submit, vote_msg, step, flag, note, flag_btn, flag_box)


# -- the tab: events ----------------------------------------------------------------------------------------------------
QUIET: dict[str, Any] = {"show_progress": "hidden", "api_visibility": "private"}  # the quick checks


def generate(ctx: AppContext) -> dict[str, Any]:
    """Events that generate share the model with every other generation, ``settings.concurrency`` at a time."""
    return {"concurrency_id": "generate", "concurrency_limit": ctx.settings.concurrency}


def wire_run(ctx: AppContext, h: Handles) -> Callable[..., Iterator[list[Any]]]:
    """Run (and Enter in the prompt box); returns the run handler, which auto-advance also calls."""

    defaults = h.run.options.defaults

    def check_run(prompt: str, columns: list[str], caps: str) -> None:
        with user_errors():
            svc.check_run(ctx.registry, prompt, columns)
            step_caps(caps)

    def run_arena(
        prompt: str,
        columns: list[str],
        blind: bool,
        max_new_tokens: float,
        temperature: float,
        top_p: float,
        seed: float | None,
        max_questions: float,
        max_branches: float,
        token_budget: float | None,
        structured: bool,
        repetition_penalty: float,
        no_repeat_ngram_size: float,
        step_max_tokens: str,
        breadth: float,
        depth: float,
        k: float,
        n_evaluate: float,
        value_threshold: float | None,
        samples: float,
        sc_temperature: float,
        loaded: dict | None,
    ) -> Iterator[list[Any]]:
        options = dict(zip(OPTION_FIELDS, (structured, repetition_penalty, no_repeat_ngram_size, step_max_tokens,
                                          breadth, depth, k, n_evaluate, value_threshold, samples, sc_temperature),
                           strict=True))  # fmt: skip
        with user_errors():
            params = {
                "max_new_tokens": whole(max_new_tokens, "max_new_tokens", lo=1),
                "temperature": number(temperature, "temperature", lo=0) or 0.0,
                "top_p": number(top_p, "top_p", lo=0, hi=1) or 1.0,
                "seed": _int(seed, "seed"),
                "max_questions": whole(max_questions, "max verification questions", lo=1),
                "max_branches": whole(max_branches, "max branches", lo=1),
                "token_budget": _int(token_budget, "token budget") or None,
            } | option_params(options, defaults)
            cols = list(columns or [])
            if not cols:
                raise InputError("pick at least one column")
            updates = svc.stream_arena(
                ctx.store, ctx.registry, prompt, cols, params, blind=bool(blind), prompt_id=_loaded_id(loaded, prompt)
            )  # fmt: skip
            yield from _render_stream(updates, len(cols), bool(blind), prompt)

    checked = [h.run.prompt, h.run.columns, h.run.options.step_max_tokens]
    # a quick check first: bad input is one toast and the previous results stay on screen. The API endpoint
    # (run_arena) is the second event alone; it checks the same things itself.
    h.run.run.click(check_run, checked, None, **QUIET).success(
        run_arena, h.run_inputs, h.run_outputs, api_name="run_arena", **generate(ctx)
    )
    h.run.prompt.submit(check_run, checked, None, **QUIET).success(
        run_arena, h.run_inputs, h.run_outputs, api_visibility="private", **generate(ctx)
    )
    return run_arena


def wire_vote(ctx: AppContext, h: Handles) -> Any:
    """Submit: the pairwise choice or the ranks, checked first; reveals the names. Returns the vote event."""

    def check_vote(
        comparison_id: float | None, choice: str | None, annotator: str, arena_state: dict, *ranks: str | None
    ) -> None:
        with user_errors():
            st = svc.ArenaState.from_dict(arena_state)
            cid = _int(comparison_id, "comparison id")
            by_cmp = svc.comparison_ranks(st, cid, ranks)
            svc.check_vote(
                ctx.store, svc.Label(cid, _name(ctx, None, annotator), choice=choice, ranks=by_cmp)
            )

    def vote(
        comparison_id: float | None,
        choice: str | None,
        comment: str,
        annotator: str,
        rank_a: str | None,
        rank_b: str | None,
        rank_c: str | None,
        rank_d: str | None,
        rank_e: str | None,
        rank_f: str | None,
        arena_state: dict,
        request: gr.Request,
    ) -> list[Any]:
        with user_errors():
            who = _name(ctx, request, annotator)
            cid = _int(comparison_id, "comparison id")
            st = svc.ArenaState.from_dict(arena_state)
            by_cmp = svc.comparison_ranks(st, cid, [rank_a, rank_b, rank_c, rank_d, rank_e, rank_f])
            before = svc.own_label(ctx.store, cid, who)
            vote_id = svc.record_vote(
                ctx.store, svc.Label(cid, who, choice=choice, ranks=by_cmp, comment=comment)
            )
            after = svc.own_label(ctx.store, cid, who)
            shown = svc.revealed_columns(ctx.store, st, cid)
        if st.comparison_id == cid:
            st.voted = True
        labels = " · ".join(f"{LETTERS[i]} = {c['label']}" for i, c in enumerate(shown))
        verb = "Saved" if before is None or _same(before, after) else "Replaced the label:"
        status = f"{verb} vote #{vote_id} by **{html.escape(who)}**. {labels}"
        if before is None:
            msg = (
                f"✓ Saved vote #{vote_id} on comparison #{cid}. You labelled this comparison; "
                "submitting again replaces your label."
            )
        elif _same(before, after):
            msg = f"✓ Your label on comparison #{cid} is unchanged (vote #{vote_id})."
        else:
            msg = f"✓ Replaced your label on comparison #{cid} (vote #{vote_id}); the old one is kept in the audit."
        return [
            status,
            msg,
            st.to_dict(),
            gr.Radio(value=None),
            "",
            "",
            gr.Dropdown(
                choices=_step_choices(st, [(c["trace"] or {}).get("summary") for c in shown]), value=None
            ),
            *[gr.Markdown(_revealed_header(i, shown)) for i in range(N)],
            *[_revealed_trace(i, shown) for i in range(N)],
            *[gr.Radio(value=None) for _ in range(N)],
            *[_revealed_error(i, shown) for i in range(N)],
            *[_revealed_summary(i, shown) for i in range(N)],
        ]

    lab, cols, who = h.label, h.cols, h.workflow.annotator
    ranks = [c.rank for c in cols]
    vote_inputs = [lab.comparison, lab.pairwise, lab.comment, who, *ranks, h.state]
    vote_outputs = [h.status, lab.vote_msg, h.state, lab.pairwise, lab.comment, lab.note, lab.step,
                    *[c.header for c in cols], *[c.trace for c in cols], *ranks, *[c.answer for c in cols],
                    *[c.summary for c in cols]]  # fmt: skip
    checked = [lab.comparison, lab.pairwise, who, h.state, *ranks]
    return lab.submit.click(check_vote, checked, None, **QUIET).success(
        vote, vote_inputs, vote_outputs, api_name="vote"
    )


def wire_workflow(ctx: AppContext, h: Handles, run_arena: Callable[..., Any], voted: Any) -> None:
    """Next prompt, Skip, auto-advance after a vote, the progress bar and the prompt set's guidelines."""

    def show_progress(prompt_set: str | None, annotator: str, request: gr.Request) -> str:
        name = _typed(ctx, request, annotator)
        try:
            p = svc.progress(ctx.store, prompt_set, name)
        except InputError:
            return ""
        return progress_html(p, name, prompt_set or "")

    def advance(
        prompt_set: str | None, annotator: str, current: dict | None, prompt: str, arena_state: dict,
        auto: bool, go: int, request: gr.Request | None, skip: bool,
    ) -> list[Any]:  # fmt: skip
        """Skip the prompt on screen (when asked), load the next one, and bump ``go`` to run it (auto-advance)."""
        with user_errors():
            who = _name(ctx, request, annotator)
            on_screen = _on_screen(current, arena_state, prompt)
            if skip:
                svc.skip_prompt(ctx.store, on_screen, who)
            row = svc.next_prompt(ctx.store, prompt_set, who, exclude=[on_screen] if on_screen else [])
            bar = progress_html(svc.progress(ctx.store, prompt_set, who), who, prompt_set or "")
        if row is None:
            where = f"prompt set {prompt_set!r}" if prompt_set else "the store"
            gr.Info(f"No prompt left for {who} in {where}: each one is labelled or skipped.")
            return [gr.skip(), gr.skip(), gr.skip(), bar]
        return [row["text"], {"id": row["id"], "text": row["text"]}, go + 1 if auto else gr.skip(), bar]

    def check_next(annotator: str, request: gr.Request) -> None:
        with user_errors():
            svc.annotator_name(_name(ctx, request, annotator))

    def check_skip(
        annotator: str, current: dict | None, prompt: str, arena_state: dict, request: gr.Request
    ) -> None:
        with user_errors():
            svc.annotator_name(_name(ctx, request, annotator))
            if _on_screen(current, arena_state, prompt) is None:
                raise InputError("nothing to skip: load a prompt with Next prompt first")

    def load_next(
        prompt_set: str | None, annotator: str, current: dict | None, prompt: str, arena_state: dict,
        auto: bool, go: int, request: gr.Request,
    ) -> list[Any]:  # fmt: skip
        return advance(prompt_set, annotator, current, prompt, arena_state, auto, go, request, False)

    def skip_and_next(
        prompt_set: str | None, annotator: str, current: dict | None, prompt: str, arena_state: dict,
        auto: bool, go: int, request: gr.Request,
    ) -> list[Any]:  # fmt: skip
        return advance(prompt_set, annotator, current, prompt, arena_state, auto, go, request, True)

    w = h.workflow
    w.next_prompt.click(check_next, w.annotator, None, **QUIET).success(
        load_next, h.next_inputs, h.next_outputs, api_name="next_prompt", show_progress="hidden"
    )
    w.skip.click(check_skip, [w.annotator, h.loaded, h.run.prompt, h.state], None, **QUIET).success(
        skip_and_next, h.next_inputs, h.next_outputs, api_name="skip_prompt", show_progress="hidden"
    )

    def after_vote(
        prompt_set: str | None, annotator: str, current: dict | None, prompt: str, arena_state: dict,
        auto: bool, go: int, request: gr.Request,
    ) -> list[Any]:  # fmt: skip
        if auto:
            return advance(prompt_set, annotator, current, prompt, arena_state, auto, go, request, False)
        return [gr.skip(), gr.skip(), gr.skip(), show_progress(prompt_set, annotator, request)]

    voted.success(after_vote, h.next_inputs, h.next_outputs, **QUIET)
    h.go.change(run_arena, h.run_inputs, h.run_outputs, api_visibility="private", **generate(ctx))

    def set_chosen(prompt_set: str | None, annotator: str, request: gr.Request) -> list[Any]:
        try:
            text = svc.guidelines(ctx.store, prompt_set)
        except InputError:
            text = ""
        return [gr.Accordion(visible=bool(text.strip())), text, show_progress(prompt_set, annotator, request)]

    w.prompt_set.change(
        set_chosen, [w.prompt_set, w.annotator], [w.guide_box, w.guidelines, w.progress], **QUIET
    )

    def name_changed(
        prompt_set: str | None, annotator: str, comparison_id: float | None, request: gr.Request
    ) -> list[Any]:
        """A new name: its progress, and whether it already labelled the comparison on screen."""
        who = _typed(ctx, request, annotator)
        try:
            cid = _int(comparison_id, "comparison id")
            own = svc.own_label(ctx.store, cid, who) if cid else None
        except InputError:
            cid, own = None, None
        notice = (
            f"You labelled this comparison (vote #{own['id']}); submitting again replaces your label."
            if own
            else ""
        )
        return [show_progress(prompt_set, annotator, request), notice if cid else gr.skip()]

    named = [w.prompt_set, w.annotator, h.label.comparison]
    w.annotator.blur(name_changed, named, [w.progress, h.label.vote_msg], **QUIET)


def wire_flags(ctx: AppContext, h: Handles) -> None:
    """Flag one step of a column as wrong or good, checked first."""

    def check_flag(arena_state: dict, step: str | None, annotator: str, request: gr.Request) -> None:
        with user_errors():
            position, step_id = _step(step)
            svc.check_step(
                svc.ArenaState.from_dict(arena_state), position, step_id, _name(ctx, request, annotator)
            )

    def flag_step(
        arena_state: dict, step: str | None, label: str, note: str, annotator: str, request: gr.Request
    ) -> list[str]:
        with user_errors():
            position, step_id = _step(step)
            node = _node(step)
            st = svc.ArenaState.from_dict(arena_state)
            who = _name(ctx, request, annotator)
            text = f"node {node}" + (f": {note.strip()}" if (note or "").strip() else "") if node else note
            lid = svc.label_step(ctx.store, st, position, step_id, label, who, text)
        what = f"{step_id} (node {node})" if node else step_id
        return [f"Saved step label #{lid}: {LETTERS[position]} {what} is **{label}**.", ""]

    lab, who = h.label, h.workflow.annotator
    lab.flag_step.click(check_flag, [h.state, lab.step, who], None, **QUIET).success(
        flag_step, [h.state, lab.step, lab.flag, lab.note, who], [h.status, lab.note], api_name="flag_step"
    )
    for i, col in enumerate(h.cols):
        col.summary.click(node_picker(i), h.state, [lab.step, lab.flag_box, h.status], **QUIET)


def node_picker(position: int) -> Callable[..., list[Any]]:
    """The click handler of column ``position``'s tree (gradio reads the ``gr.EventData`` hint off it)."""

    def pick(arena_state: dict, evt: gr.EventData) -> list[Any]:
        return pick_node(position, arena_state, evt)

    return pick


def pick_node(position: int, arena_state: dict, evt: gr.EventData) -> list[Any]:
    """A tree node's flag button: pick the node in the flag picker (its label goes to the node's step) and open
    the picker; the label is then given with Flag step, like any step's."""
    data = evt._data if isinstance(getattr(evt, "_data", None), dict) else {}
    node, step = str(data.get("node") or ""), str(data.get("step") or "")
    st = svc.ArenaState.from_dict(arena_state)
    known = {sid for sid, _ in st.step_ids[position]} if position < len(st.step_ids) else set()
    if st.hidden or not node or step not in known:
        return [gr.skip(), gr.skip(), gr.skip()]
    return [
        gr.Dropdown(value=f"{position}|{step}|{node}"),
        gr.Accordion(open=True),
        f"Node {node} of column {LETTERS[position]} is picked in *Flag a step*: its label goes to step {step}. "
        "Choose wrong or good, add a note if you like, and press **Flag step**.",
    ]


def wire_import(ctx: AppContext, h: Handles) -> None:
    """Import a prompt set from a file; the prompt-set picker offers it at once."""

    def import_prompts(file: str | None, prompt_set: str, progress: gr.Progress = gr.Progress()) -> list[Any]:  # noqa: B008
        with user_errors():
            if not file:
                raise InputError("choose a file to import")
            progress(0.1, desc="Reading prompts")
            n = svc.import_prompt_file(ctx.store, file, prompt_set)
        gr.Info(f"Imported {n} prompts")
        return [f"Imported {n} prompts.", gr.Dropdown(choices=_prompt_sets(ctx))]

    r = h.run
    r.import_prompts.click(
        import_prompts, [r.upload, r.set_name], [h.status, h.workflow.prompt_set], api_name="import_prompts"
    )


def _render_stream(
    updates: Iterator[svc.ArenaUpdate], n: int, blind: bool, question: str
) -> Iterator[list[Any]]:
    """Fold arena updates into screen states; yield at most every REFRESH_S seconds (and at the end)."""
    traces: list[dict[str, Any]] = [
        {"steps": [], "notes": [], "question": question, "strategy": "", "model": "", "summary": {}}
        for _ in range(n)
    ]
    live: list[dict[str, str]] = [{} for _ in range(n)]
    answers: list[str | None] = [None] * n
    errors: list[str | None] = [None] * n
    state = svc.ArenaState(blind=blind)
    sent = Sent()
    last = 0.0
    first = True
    for u in updates:
        if u.kind == "delta":
            live[u.position][u.step_id] = u.text
        elif u.kind == "event" and u.event is not None:
            _apply(traces[u.position], u.event, answers, errors, u.position)
        if u.state is not None:
            state = u.state
            for t, label in zip(traces, state.columns, strict=True):
                t["strategy"], _, t["model"] = label.partition(" @ ")
        now = time.monotonic()
        if first or u.kind in ("stored", "done") or now - last >= REFRESH_S:
            last = now
            yield _screen(
                state, traces, live, answers, errors, n, blind, final=u.kind == "done", first=first, sent=sent
            )
            first = False


@dataclass
class Sent:
    """What the browser already shows of a run's outputs that are redrawn only when they change: an opened tree
    node stays open, and a step picked to flag stays picked, while the other columns stream."""

    summaries: list[str | None] = field(default_factory=lambda: [None] * N)
    steps: list[tuple[str, str]] | None = None


def _apply(trace: dict[str, Any], ev: Any, answers: list, errors: list, pos: int) -> None:
    if ev.kind in ("step_started", "step_finished") and ev.step is not None:
        step = ev.step.to_dict()
        steps = trace["steps"]
        idx = next((i for i, s in enumerate(steps) if s["id"] == step["id"]), None)
        if idx is None:
            steps.append(step)
        else:
            steps[idx] = step
    elif ev.kind == "note":
        trace["notes"].append(ev.text)
    elif ev.kind == "summary" and ev.text:
        trace["summary"][ev.text] = ev.data
    elif ev.kind == "error":
        errors[pos] = ev.text
        trace["error"] = ev.text
    elif ev.kind == "run_finished" and ev.result is not None:
        answers[pos] = ev.result.final_answer
        trace["final_answer"] = ev.result.final_answer
        trace["summary"] = dict(ev.result.trace.summary) or trace["summary"]
        if ev.result.error:
            errors[pos] = errors[pos] or ev.result.error


def _screen(
    state: svc.ArenaState,
    traces: list[dict[str, Any]],
    live: list[dict[str, str]],
    answers: list[str | None],
    errors: list[str | None],
    n: int,
    blind: bool,
    *,
    final: bool,
    first: bool,
    sent: Sent | None = None,
) -> list[Any]:
    """One screen state. Blind: names, steps, traces and trees stay hidden until the vote, unless the run ended
    with nothing to compare (then there is nothing to keep blind). A column is 'done' once its run finished."""
    sent = sent or Sent()
    hidden = blind and not (final and state.comparison_id is None)
    included = state.included if final else list(range(n))
    failed = [p for p in range(n) if errors[p]]
    status = _status(state, n, failed, final)
    labels = state.columns
    boxes = [gr.Column(visible=i < n) for i in range(N)]
    headers = [
        gr.Markdown(
            header_md(
                i,
                None if hidden or i >= len(labels) else labels[i],
                i in failed,
                done=i < n and answers[i] is not None,
            )
        )
        for i in range(N)
    ]
    ans = [_answer(i, answers, errors, traces, live, hidden) if i < n else "" for i in range(N)]
    trs = [(HIDDEN_TRACE if hidden else trace_html(traces[i], live[i])) if i < n else "" for i in range(N)]
    ranked = len(included) > 2
    ranks = [
        gr.Radio(
            choices=[str(k) for k in range(1, len(included) + 1)],
            value=None,
            visible=ranked and i in included,
        )
        for i in range(N)
    ]
    steps = [] if hidden else _step_choices(state, [t.get("summary") for t in traces])
    whole = first or final  # the last screen is complete: an API caller's result is the last screen alone
    if whole or steps != sent.steps:
        picker = gr.Dropdown(choices=steps, value=None) if first else gr.Dropdown(choices=steps)
        sent.steps = steps
    else:
        picker = gr.skip()
    sums = []
    for i in range(N):
        text = (
            ""
            if hidden or i >= n
            else summary_html(traces[i].get("summary"), traces[i]["steps"], flaggable=True)
        )
        sums.append(text if whole or text != sent.summaries[i] else gr.skip())
        sent.summaries[i] = text
    return [
        state.to_dict(),
        state.comparison_id,
        status,
        picker,
        _pairwise(included, visible=len(included) == 2 and (not final or state.comparison_id is not None)),
        "" if final else gr.skip(),
        gr.Accordion(open=False) if blind and first else gr.skip(),
        *boxes,
        *headers,
        *ans,
        *trs,
        *ranks,
        *sums,
    ]


def _answer(
    i: int,
    answers: list[str | None],
    errors: list[str | None],
    traces: list[dict[str, Any]],
    live: list[dict[str, str]],
    hidden: bool,
) -> str:
    if errors[i] and hidden:  # an error text can name the model or the endpoint
        return answer_html(
            None, error="this column failed and is left out of the comparison; why shows after your vote"
        )
    if errors[i]:
        return answer_html(None, error=f"{errors[i]} (left out of the comparison)")
    return answer_html(answers[i], live_text(traces[i]["steps"], live[i], hidden=hidden))


def _status(state: svc.ArenaState, n: int, failed: list[int], final: bool) -> str:
    if not final:
        done = sum(rid is not None for rid in state.run_ids)
        return f"Running… {done}/{n} columns finished."
    text = f"All {n} columns finished."
    if failed:
        names = ", ".join(LETTERS[p] for p in failed)
        text += f" {len(failed)} failed ({names}): {'it is' if len(failed) == 1 else 'they are'} left out."
    cid = state.comparison_id
    if cid is not None:
        what = "pick the better one" if len(state.included) == 2 else "rank the columns"
        text += f" Comparison #{cid} saved: {what} and submit."
    elif n >= 2:
        text += " Fewer than two columns answered, so there is nothing to compare; the runs are stored."
    return text


def _pairwise(included: list[int], *, visible: bool) -> gr.Radio:
    """A/B/Tie/Both bad; the two sides carry the letters of the columns they are on screen."""
    a, b = (LETTERS[p] for p in included) if len(included) == 2 else ("A", "B")
    choices = [(a, "A"), (b, "B"), ("Tie", "Tie"), ("Both bad", "Both bad")]
    return gr.Radio(choices=choices, value=None, visible=visible)


def _step_choices(
    state: svc.ArenaState, summaries: Sequence[Mapping[str, Any] | None] = ()
) -> list[tuple[str, str]]:
    """The flag picker: every step of every column ('position|step'), then every node of a column's Tree of
    Thoughts ('position|step|node': the node's label goes to its step, :func:`studio.arena.node_step`)."""
    choices = [
        (f"{LETTERS[p]} · {sid} · {name}", f"{p}|{sid}")
        for p, col in enumerate(state.step_ids)
        for sid, name in col
    ]
    for p, summary in enumerate(summaries):
        tree = summary.get("tree") if isinstance(summary, Mapping) else None
        known = {sid for sid, _ in state.step_ids[p]} if p < len(state.step_ids) else set()
        choices += [
            (f"{LETTERS[p]} · node {nid} → {sid}", f"{p}|{sid}|{nid}")
            for nid, sid in svc.flaggable_nodes(tree)
            if sid in known
        ]
    return choices


def _revealed_header(i: int, shown: list[dict[str, Any]]) -> str:
    if i >= len(shown):
        return header_md(i, None)
    return header_md(i, shown[i]["label"], bool(shown[i]["error"]))


def _revealed_trace(i: int, shown: list[dict[str, Any]]) -> str:
    return render_trace_html(shown[i]["trace"], summary=False) if i < len(shown) else ""


def _revealed_summary(i: int, shown: list[dict[str, Any]]) -> str:
    trace = shown[i]["trace"] if i < len(shown) else None
    if not trace:
        return ""
    return summary_html(trace.get("summary"), trace.get("steps") or [], flaggable=True)


def _revealed_error(i: int, shown: list[dict[str, Any]]) -> Any:
    """A failed column's error, hidden while blind, shows with the vote; answers stay as they are."""
    if i < len(shown) and shown[i]["error"]:
        return answer_html(None, error=f"{shown[i]['error']} (left out of the comparison)")
    return gr.skip()


def _same(a: dict[str, Any] | None, b: dict[str, Any] | None) -> bool:
    keys = ("kind", "choice", "ranks", "comment")
    return a is not None and b is not None and all(a.get(k) == b.get(k) for k in keys)


# -- helpers -------------------------------------------------------------------------------------------------------------
def column_picker(ctx: AppContext) -> gr.Dropdown:
    """The column choices for the models registered now (called on every page load)."""
    return gr.Dropdown(choices=svc.column_choices(ctx.model_names()))


def opened(ctx: AppContext) -> list[gr.Dropdown]:
    """What the Arena reads again when it is opened: the column choices and the prompt sets (a set imported in
    the Data tab is offered without a page reload)."""
    return [column_picker(ctx), gr.Dropdown(choices=_prompt_sets(ctx))]


def _prompt_sets(ctx: AppContext) -> list[str]:
    try:
        return ctx.store.prompt_sets()
    except Exception:  # a locked or broken store must not stop the page from building; actions say why
        return []


def _name(ctx: AppContext, request: gr.Request | None, typed: str | None) -> str:
    """Who labels: the logged-in user with ``--auth``; otherwise the name typed in this browser session (required,
    so labels can be told apart: '' makes the label checks ask for it)."""
    if ctx.settings.auth_file:
        return current_user(ctx, request, typed).name
    return (typed or "").strip()


def _typed(ctx: AppContext, request: gr.Request | None, typed: str | None) -> str:
    """``_name`` for display only: never an error (a missing login shows nothing)."""
    try:
        return _name(ctx, request, typed)
    except InputError:
        return ""


def _step(step: str | None) -> tuple[int, str]:
    """A step picked in the flag dropdown ('position|step', or 'position|step|node' for a tree node): (screen
    position, step id)."""
    position, _, rest = (step or "").partition("|")
    step_id = rest.partition("|")[0]
    if not step_id or not position.isdigit():
        raise InputError("pick a step to flag")
    return int(position), step_id


def _node(step: str | None) -> str:
    """The tree node of a flag picked as 'position|step|node' ('' for a plain step)."""
    return (step or "").split("|")[2] if (step or "").count("|") >= 2 else ""


def _loaded_id(loaded: dict | None, prompt: str) -> int | None:
    """The id of the prompt loaded from a set, while the prompt box still holds its text."""
    if loaded and loaded.get("id") is not None and loaded.get("text") == prompt:
        return int(loaded["id"])
    return None


def _on_screen(loaded: dict | None, arena_state: dict | None, prompt: str) -> int | None:
    """The stored prompt the prompt box shows: the one loaded from a set, or the one last run."""
    pid = _loaded_id(loaded, prompt)
    if pid is None and arena_state and arena_state.get("question") == prompt:
        pid = arena_state.get("prompt_id")
    return pid


def _int(x: Any, what: str) -> int | None:
    n = number(x, what)
    if n is None:
        return None
    if not n.is_integer():
        raise InputError(f"the {what} must be a whole number, not {x!r}")
    return int(n)
