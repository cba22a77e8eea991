"""Compare with parent: a trained model and the model it was trained from answer a prompt set, a judge grades
each pair blind, and the trained model's win rate is reported, raw and length-controlled."""

# no `from __future__ import annotations`: gradio reads the handlers' real annotations (gr.Progress)

from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from components.common import friendly, limit_of, optional, table
from studio.compare import CompareResult, compare_with_parent
from studio.context import AppContext
from studio.errors import InputError
from studio.judges import JUDGES
from studio.methods import method_choices

WIN_COLUMNS = ["model", "parent", "judge", "prompts", "judged", "wins", "losses", "ties", "inconsistent",
               "failed", "win rate", "95% CI", "LC win rate", "LC 95% CI", "length term"]  # fmt: skip


ITEM_COLUMNS = ["comparison", "child shown as", "outcome", "P(child better)", "prompt", "child answer",
                "parent answer", "error"]  # fmt: skip


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


def trained_models(ctx: AppContext) -> list[str]:
    return [name for name, spec in ctx.registry.specs().items() if spec.parent]


def model_pickers(ctx: AppContext) -> tuple[gr.Dropdown, gr.Dropdown, gr.Dropdown]:
    """The base model, the trained model to compare and the judge model, for the models registered now."""
    names = ctx.model_names()
    return gr.Dropdown(choices=names), gr.Dropdown(choices=trained_models(ctx)), gr.Dropdown(choices=names)


def win_frame(r: CompareResult) -> pd.DataFrame:
    s = r.summary()
    ci = "" if s["ci_lo"] is None else f"[{s['ci_lo']:.2f}, {s['ci_hi']:.2f}]"
    lc_ci = "" if s["lc_ci_lo"] is None else f"[{s['lc_ci_lo']:.2f}, {s['lc_ci_hi']:.2f}]"
    row = {**s, "judge": f"{r.judge}@{r.judge_model}", "win rate": s["win_rate"], "95% CI": ci,
           "LC win rate": s["lc_win_rate"], "LC 95% CI": lc_ci, "length term": s["length_coef"]}  # fmt: skip
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
    lc = r.length_control()
    length = (
        f"\n\n*Length-controlled* (AlpacaEval 2): the win rate a GLM of the outcome on the length difference "
        f"predicts at equal length; length term {lc.length_coef:+.2f} (> 0: the judge preferred the longer answer)."
        if not lc.note
        else f"\n\n*Length-controlled* win rate: n/a, {lc.note}."
    )
    return f"{r.line()} in {r.elapsed_s:.1f} s.{self_judge}{length}{queued}"


def compare_layout(ctx: AppContext) -> CompareHandles:
    with gr.Row():
        model = gr.Dropdown(trained_models(ctx), label="Trained model", allow_custom_value=True, scale=2)
        prompt_set = gr.Dropdown([], label="Prompt set", allow_custom_value=True, scale=2)
        judge = gr.Dropdown(JUDGES.names(), value="logprob", label="Judge", scale=1)
        judge_model = gr.Dropdown(ctx.model_names(), value=ctx.settings.default_model, label="Judge model",
                                  scale=2)  # fmt: skip
    with gr.Row():
        strategy = gr.Dropdown(method_choices(), value="system1", label="Strategy (both models)",
                               allow_custom_value=True)  # fmt: skip
        limit = gr.Number(20, label="At most N prompts (0 = all)", precision=0, minimum=0)
        max_new_tokens = gr.Number(128, label="Max new tokens", precision=0, minimum=1)
        run = gr.Button("Compare with parent", variant="primary")
    summary = gr.Markdown()
    win_rate = gr.Dataframe(headers=WIN_COLUMNS, interactive=False,
                            label="Win rate of the trained model: raw and length-controlled (LC)")  # fmt: skip
    items = gr.Dataframe(headers=ITEM_COLUMNS, interactive=False, wrap=True, max_height=360, label="Per prompt",
                         column_widths=["8%", "7%", "8%", "8%", "17%", "22%", "22%", "8%"])  # fmt: skip
    return CompareHandles(model, prompt_set, judge, judge_model, strategy, limit, max_new_tokens, run, summary,
                          win_rate, items)  # fmt: skip


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
