"""Arena tab: one prompt, up to six columns (strategy x model) streaming side by side, then a label.

Handlers call :mod:`studio.arena` and format what it reports; the domain logic lives there.
"""

import html
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import gradio as gr

from components.common import render_trace_html, user_errors
from studio import arena as svc
from studio.context import AppContext
from studio.errors import InputError

LETTERS = "ABCDEF"
N = svc.MAX_COLUMNS
REFRESH_S = 0.15  # at most ~7 screen updates a second while tokens stream


@dataclass
class ColumnHandles:
    box: gr.Column
    header: gr.Markdown
    answer: gr.HTML
    trace: gr.HTML
    rank: gr.Dropdown


@dataclass
class Handles:
    prompt: gr.Textbox
    columns: gr.Dropdown
    blind: gr.Checkbox
    run: gr.Button
    status: gr.Markdown
    comparison: gr.Number
    cols: list[ColumnHandles]
    pairwise: gr.Radio
    comment: gr.Textbox
    annotator: gr.Textbox
    submit: gr.Button
    step: gr.Dropdown
    state: gr.State


# -- formatting ------------------------------------------------------------------------------------------------------
def header_md(position: int, label: str | None) -> str:
    return f"### {LETTERS[position]}" + (f" · {label}" if label else "")


def answer_html(answer: str | None, live: str = "", error: str | None = None) -> str:
    if error:
        return f'<div class="arena-error">⚠ {html.escape(error)}</div>'
    if answer is None:
        body = html.escape(live) if live else '<span class="arena-wait">waiting…</span>'
        return f'<div class="arena-live">{body}</div>'
    return f'<div class="arena-answer">{html.escape(answer) or "<em>(empty answer)</em>"}</div>'


def live_text(steps: list[dict[str, Any]], live: dict[str, str]) -> str:
    """What a running column shows: the newest step's name and its text so far."""
    running = [s for s in steps if s.get("status") == "running"]
    if not running:
        return ""
    s = running[-1]
    return f"[{s['name']}] {live.get(s['id'], '')}"


def trace_html(trace: dict[str, Any], live: dict[str, str]) -> str:
    return render_trace_html(trace, live_outputs=live)


# -- the tab -------------------------------------------------------------------------------------------------------------
def build(ctx: AppContext) -> Handles:
    settings = ctx.settings
    models = ctx.model_names()
    with gr.Row():
        annotator = gr.Textbox(
            label="Your name (stored with your labels)",
            placeholder="annotator name",
            visible=not settings.auth_file,
            scale=1,
        )
        prompt_set = gr.Dropdown(
            _prompt_sets(ctx), label="Prompt set", allow_custom_value=True, scale=1, value=None
        )
        next_btn = gr.Button("Next prompt", scale=0)
    prompt = gr.Textbox(label="Prompt", placeholder="Ask something…", lines=3, elem_id="arena-prompt")
    with gr.Row():
        columns = gr.Dropdown(
            svc.column_choices(models),
            value=svc.default_columns(settings.default_model),
            multiselect=True,
            max_choices=N,
            label="Columns (strategy:variant @ model), up to 6",
            scale=4,
        )
        blind = gr.Checkbox(True, label="Blind: hide names, shuffle positions", scale=1)
        run = gr.Button("Run", variant="primary", scale=0, elem_id="arena-run")
    with gr.Accordion("Decoding and limits", open=False):
        with gr.Row():
            max_new_tokens = gr.Slider(
                16, 2048, settings.max_new_tokens, step=16, label="max_new_tokens (per step)"
            )
            temperature = gr.Slider(0, 1.5, 0, step=0.05, label="temperature (0 = greedy)")
            top_p = gr.Slider(0.05, 1, 1, step=0.05, label="top_p")
            seed = gr.Number(None, label="seed (optional)", precision=0)
        with gr.Row():
            max_questions = gr.Slider(1, 10, 5, step=1, label="CoVe: max verification questions")
            max_branches = gr.Slider(1, 10, 5, step=1, label="BSM: max branches")
            token_budget = gr.Number(None, label="token budget per run (optional)", precision=0)
    with gr.Accordion("Import a prompt set (text: one per line, or JSONL with 'prompt')", open=False):
        with gr.Row():
            upload = gr.File(label="File", file_types=[".txt", ".jsonl", ".json"], type="filepath")
            set_name = gr.Textbox(label="Prompt set name (default: file name)")
            import_btn = gr.Button("Import", scale=0)
    status = gr.Markdown(elem_id="arena-status")
    cols: list[ColumnHandles] = []
    with gr.Row(equal_height=False):
        for i in range(N):
            with gr.Column(visible=i < len(svc.DEFAULT_COLUMNS), min_width=240) as box:
                header = gr.Markdown(header_md(i, None))
                answer = gr.HTML(
                    answer_html(""), elem_classes="arena-col-answer", elem_id=f"arena-answer-{i}"
                )
                with gr.Accordion("Trace", open=False, elem_id=f"arena-trace-{i}"):
                    trace = gr.HTML()
                rank = gr.Dropdown(
                    [str(k) for k in range(1, N + 1)], label="Rank (1 = best)", elem_id=f"arena-rank-{i}"
                )
            cols.append(ColumnHandles(box, header, answer, trace, rank))
    with gr.Group():
        with gr.Row():
            pairwise = gr.Radio(["A", "B", "Tie", "Both bad"], label="Which is better?", visible=False)
            comment = gr.Textbox(label="Comment (optional)", scale=2)
            comparison = gr.Number(None, label="Comparison id", precision=0, interactive=False, scale=0)
        submit = gr.Button("Submit label", variant="primary", elem_id="arena-submit")
    with gr.Accordion("Flag a step as wrong or good", open=False):
        with gr.Row():
            step = gr.Dropdown([], label="Step", scale=2)
            flag = gr.Radio(["wrong", "good"], value="wrong", label="Label")
            note = gr.Textbox(label="Note (optional)", scale=2)
            flag_btn = gr.Button("Flag step", scale=0)
    state = gr.State({})

    col_outputs = [c.box for c in cols] + [c.header for c in cols] + [c.answer for c in cols]
    col_outputs += [c.trace for c in cols] + [c.rank for c in cols]

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
    ) -> Iterator[list[Any]]:
        params = {
            "max_new_tokens": int(max_new_tokens),
            "temperature": float(temperature),
            "top_p": float(top_p),
            "seed": _int(seed),
            "max_questions": int(max_questions),
            "max_branches": int(max_branches),
            "token_budget": _int(token_budget) or None,
        }
        with user_errors():
            if not columns:
                raise InputError("pick at least one column")
            updates = svc.stream_arena(ctx.store, ctx.registry, prompt, columns, params, blind=bool(blind))
            yield from _render_stream(updates, len(columns), bool(blind), prompt)

    run_inputs = [prompt, columns, blind, max_new_tokens, temperature, top_p, seed]
    run_inputs += [max_questions, max_branches, token_budget]
    run_outputs = [state, comparison, status, step, pairwise, *col_outputs]
    gen = {"concurrency_id": "generate", "concurrency_limit": settings.concurrency}
    run.click(run_arena, run_inputs, run_outputs, api_name="run_arena", **gen)
    prompt.submit(run_arena, run_inputs, run_outputs, api_visibility="private", **gen)

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
        request: gr.Request,
    ) -> list[Any]:
        ranks = [rank_a, rank_b, rank_c, rank_d, rank_e, rank_f]
        with user_errors():
            who = _who(request, annotator)
            cid = _int(comparison_id)
            vote_id = svc.record_vote(ctx.store, cid, who, choice=choice, ranks=ranks, comment=comment)
            labels = svc.reveal(ctx.store, cid)
        msg = f"Saved vote #{vote_id} by **{html.escape(who)}**. " + " · ".join(
            f"{LETTERS[i]} = {lab}" for i, lab in enumerate(labels)
        )
        headers = [gr.Markdown(header_md(i, labels[i] if i < len(labels) else None)) for i in range(N)]
        return [msg, *headers]

    submit.click(
        vote,
        [comparison, pairwise, comment, annotator, *[c.rank for c in cols]],
        [status, *[c.header for c in cols]],
        api_name="vote",
    )

    def flag_step(
        arena_state: dict, step: str | None, label: str, note: str, annotator: str, request: gr.Request
    ) -> str:
        with user_errors():
            if not step:
                raise InputError("pick a step to flag")
            position, step_id = step.split("|", 1)
            st = svc.ArenaState.from_dict(arena_state)
            lid = svc.label_step(ctx.store, st, int(position), step_id, label, _who(request, annotator), note)
        return f"Saved step label #{lid}: {LETTERS[int(position)]} {step_id} is **{label}**."

    flag_btn.click(flag_step, [state, step, flag, note, annotator], status, api_name="flag_step")

    def next_prompt(prompt_set: str | None) -> str:
        with user_errors():
            return svc.next_prompt(ctx.store, prompt_set or "")

    next_btn.click(next_prompt, prompt_set, prompt, api_name="next_prompt")

    def import_prompts(file: str | None, prompt_set: str, progress: gr.Progress = gr.Progress()) -> list[Any]:  # noqa: B008
        with user_errors():
            if not file:
                raise InputError("choose a file to import")
            progress(0.1, desc="Reading prompts")
            n = svc.import_prompt_file(ctx.store, file, prompt_set)
        gr.Info(f"Imported {n} prompts")
        return [f"Imported {n} prompts.", gr.Dropdown(choices=_prompt_sets(ctx))]

    import_btn.click(import_prompts, [upload, set_name], [status, prompt_set], api_name="import_prompts")

    return Handles(prompt, columns, blind, run, status, comparison, cols, pairwise, comment, annotator, submit,
                   step, state)  # fmt: skip


def _render_stream(
    updates: Iterator[svc.ArenaUpdate], n: int, blind: bool, question: str
) -> Iterator[list[Any]]:
    """Fold arena updates into screen states; yield at most every REFRESH_S seconds (and at the end)."""
    traces: list[dict[str, Any]] = [{"steps": [], "notes": [], "question": question} for _ in range(n)]
    for t in traces:  # the trace header names the method, so blind mode hides it until the vote
        t["strategy"], t["model"] = ("hidden", "until the vote") if blind else ("", "")
    live: list[dict[str, str]] = [{} for _ in range(n)]
    answers: list[str | None] = [None] * n
    errors: list[str | None] = [None] * n
    labels: list[str] = []
    state = svc.ArenaState()
    last = 0.0
    for u in updates:
        if u.kind == "delta":
            live[u.position][u.step_id] = u.text
        elif u.kind == "event" and u.event is not None:
            _apply(traces[u.position], u.event, answers, errors, u.position)
        if u.state is not None:
            state = u.state
            labels = state.columns
            if not blind:
                for t, label in zip(traces, labels, strict=True):
                    t["strategy"], _, t["model"] = label.partition(" @ ")
        now = time.monotonic()
        if u.kind in ("stored", "done") or now - last >= REFRESH_S:
            last = now
            yield _screen(state, labels, traces, live, answers, errors, n, blind, final=u.kind == "done")


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
    elif ev.kind == "error":
        errors[pos] = ev.text
        trace["error"] = ev.text
    elif ev.kind == "run_finished" and ev.result is not None:
        answers[pos] = ev.result.final_answer
        trace["final_answer"] = ev.result.final_answer


def _screen(
    state: svc.ArenaState,
    labels: list[str],
    traces: list[dict[str, Any]],
    live: list[dict[str, str]],
    answers: list[str | None],
    errors: list[str | None],
    n: int,
    blind: bool,
    *,
    final: bool,
) -> list[Any]:
    done = sum(a is not None or e is not None for a, e in zip(answers, errors, strict=True))
    if final:
        cid = state.comparison_id
        status = f"All {n} columns finished." + (
            f" Comparison #{cid} saved: rank the columns and submit." if cid else ""
        )
    else:
        status = f"Running… {done}/{n} columns finished."
    steps = [
        (f"{LETTERS[p]} · {sid} · {name}", f"{p}|{sid}")
        for p, col in enumerate(state.step_ids)
        for sid, name in col
    ]
    boxes = [gr.Column(visible=i < n) for i in range(N)]
    headers = [gr.Markdown(header_md(i, None if blind or i >= len(labels) else labels[i])) for i in range(N)]
    ans = [
        answer_html(answers[i], live_text(traces[i]["steps"], live[i]), errors[i]) if i < n else ""
        for i in range(N)
    ]
    trs = [trace_html(traces[i], live[i]) if i < n else "" for i in range(N)]
    ranks = [
        gr.Dropdown(choices=[str(k) for k in range(1, n + 1)], value=None, visible=n > 2) for _ in range(N)
    ]
    return [
        state.to_dict(),
        state.comparison_id,
        status,
        gr.Dropdown(choices=steps, value=None),
        gr.Radio(visible=n == 2, value=None),
        *boxes,
        *headers,
        *ans,
        *trs,
        *ranks,
    ]


# -- helpers -------------------------------------------------------------------------------------------------------------
def column_picker(ctx: AppContext) -> gr.Dropdown:
    """The column choices for the models registered now (called on every page load)."""
    return gr.Dropdown(choices=svc.column_choices(ctx.model_names()))


def _prompt_sets(ctx: AppContext) -> list[str]:
    try:
        return ctx.store.prompt_sets()
    except Exception:  # a locked or broken store must not stop the page from building; actions say why
        return []


def _who(request: gr.Request | None, name: str) -> str:
    """The logged-in user when auth is on; otherwise the name typed for this browser session."""
    user = getattr(request, "username", None) if request is not None else None
    return user or name


def _int(x: Any) -> int | None:
    return None if x in (None, "") else int(x)
