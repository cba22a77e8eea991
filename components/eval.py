"""Eval tab: pick a dataset (a shipped set, an uploaded JSONL file, or a prompt set of the store), strategies and
models, run them with a progress bar, and read the paper-shaped table with bootstrap CIs, its plot, and the
CSV / Markdown exports. Handlers call :mod:`studio.eval`; nothing here computes a metric."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from components.common import downloadable, friendly, optional
from studio.context import AppContext
from studio.errors import InputError
from studio.eval import SHIPPED, EvalSpec, load_dataset, parse_methods, run_eval
from studio.eval.data import STORE_PREFIX
from studio.judges import JUDGES
from studio.methods import method_choices
from studio.strategies import StrategyParams

N_BOOT = 500  # bootstrap resamples in the UI: a 95% interval, quick on two cores
NO_JUDGE = "none"
DEFAULT_SET = "cove_lists"


@dataclass
class Handles:
    dataset: gr.Dropdown
    upload: gr.File
    strategies: gr.Dropdown
    models: gr.Dropdown
    limit: gr.Number
    max_new_tokens: gr.Number
    judge: gr.Dropdown
    run: gr.Button
    summary: gr.Markdown
    table: gr.Dataframe
    plot: gr.Plot
    csv: gr.File
    markdown: gr.File


def default_methods(dataset: str | None) -> list[str]:
    shipped = SHIPPED.get(dataset or "")
    return list(shipped.strategies) if shipped else ["system1"]


def dataset_choices(prompt_sets: list[str]) -> list[tuple[str, str]]:
    """Shipped sets first, then the store's own prompt sets (not the ones evals created)."""
    shipped = [(f"{s.name} — {s.description}", s.name) for s in SHIPPED.values()]
    stored = [
        (f"store: {p} (judge only)", STORE_PREFIX + p) for p in prompt_sets if not p.startswith("eval:")
    ]
    return shipped + stored


def summary_md(outcome: Any, caption: str) -> str:
    lines = [f"**{outcome.summary()}**", "", caption, "", f"Results: `{outcome.dir / 'results.jsonl'}`"]
    lines += [f"- ⚠ {e}" for e in outcome.errors]
    return "\n".join(lines)


def run_request(
    ctx: AppContext, source: str | None, strategies: list[str], models: list[str], limit: Any, max_new_tokens: Any,
    judge: Any, report: Any,
) -> tuple[Any, ...]:  # fmt: skip
    """Run the eval the tab describes; (summary, table, figure, CSV path, Markdown path)."""
    if not source:
        raise InputError("pick a dataset, or upload a JSONL file")
    spec = EvalSpec(
        parse_methods(strategies or []), tuple(models or ()) or (None,),
        StrategyParams(max_new_tokens=int(max_new_tokens or ctx.settings.max_new_tokens)),
        judge=None if optional(judge) in (None, NO_JUDGE) else judge,
    )  # fmt: skip
    dataset = load_dataset(source, store=ctx.store, limit=int(limit) if limit else None)
    outcome = run_eval(dataset, spec, ctx.store, ctx.registry, progress=report)
    result = outcome.report(n_boot=N_BOOT)
    files = result.save(outcome.dir)
    frame = pd.DataFrame(result.table(), columns=result.header())
    return (summary_md(outcome, result.caption()), frame, result.figure(),
            downloadable(files["csv"]), downloadable(files["markdown"]))  # fmt: skip


def build(ctx: AppContext, opened: Sequence[Any] = ()) -> Handles:
    """The tab's widgets and events. ``opened``: the events on which the dataset and model pickers are read again
    (the app passes the page load and the tab's select); none given, the page load."""
    gr.Markdown(
        "Score strategies × models on a dataset, shaped like the papers' tables (95% bootstrap CIs). "
        "Runs are batched, stored (prompt set `eval:<dataset>`) and resumed: runs already done are skipped. "
        "The default 135M model is far too small to reproduce the papers' gains; the table shows what it measures."
    )
    with gr.Row():
        with gr.Column(scale=3):
            with gr.Row():
                dataset = gr.Dropdown(dataset_choices([]), value=DEFAULT_SET, label="Dataset",
                                      allow_custom_value=True, scale=3)  # fmt: skip
                upload = gr.File(
                    label="…or upload a JSONL file", file_types=[".jsonl"], type="filepath", scale=2
                )
            strategies = gr.Dropdown(method_choices(), value=default_methods(DEFAULT_SET), multiselect=True,
                                     label="Strategies")  # fmt: skip
            with gr.Row():
                models = gr.Dropdown(ctx.model_names(), value=[ctx.settings.default_model], multiselect=True,
                                     label="Models", scale=2)  # fmt: skip
                limit = gr.Number(5, label="Base questions (0 = all)", precision=0, minimum=0)
                max_new_tokens = gr.Number(ctx.settings.max_new_tokens, label="Max new tokens per step",
                                           precision=0, minimum=1)  # fmt: skip
                judge = gr.Dropdown(
                    [NO_JUDGE, *JUDGES.names()], value=NO_JUDGE, label="Judge score (optional)"
                )
        with gr.Column(scale=2):
            run = gr.Button("Run eval", variant="primary")
            summary = gr.Markdown()
    table = gr.Dataframe(interactive=False, wrap=True, label="Results (value [95% CI])")
    plot = gr.Plot(label="Results", show_label=False)
    with gr.Row():
        csv_file = gr.File(label="CSV (every statistic)", interactive=False)
        md_file = gr.File(label="Markdown table", interactive=False)

    @friendly
    def eval_run(
        dataset: Any, upload: Any, strategies: list[str], models: list[str], limit: Any, max_new_tokens: Any,
        judge: Any, progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio reads the tracker from the default
    ) -> tuple[Any, ...]:  # fmt: skip
        def report(done: int, total: int, msg: str) -> None:
            progress((done, total) if total else 0.0, desc=msg)

        request = (optional(upload) or optional(dataset), strategies, models, limit, max_new_tokens, judge)
        return run_request(ctx, *request, report)

    @friendly
    def refresh_datasets() -> gr.Dropdown:
        return gr.Dropdown(choices=dataset_choices(ctx.store.prompt_sets()))

    @friendly
    def eval_open() -> tuple[gr.Dropdown, gr.Dropdown]:
        """The datasets and the models as they are now: a model registered since the page loaded shows up."""
        return refresh_datasets(), gr.Dropdown(choices=ctx.model_names())

    gr.on(list(opened) or None, eval_open, None, [dataset, models], api_name="eval_open",
          api_visibility="undocumented", show_progress="hidden", trigger_mode="always_last")  # fmt: skip
    dataset.input(
        lambda d: gr.Dropdown(value=default_methods(d)), dataset, strategies, api_visibility="private"
    )
    run.click(
        eval_run,
        [dataset, upload, strategies, models, limit, max_new_tokens, judge],
        [summary, table, plot, csv_file, md_file],
        api_name="eval_run",
        concurrency_id="generate",  # shares the models with the Arena's generations
        concurrency_limit=ctx.settings.concurrency,
    )
    return Handles(dataset, upload, strategies, models, limit, max_new_tokens, judge, run, summary, table, plot,
                   csv_file, md_file)  # fmt: skip
