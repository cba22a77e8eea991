"""Judge tab: run judges over a scope of the store with progress, and a dashboard of what the store holds --
agreement bars with CIs (a judge trained in the studio scored on the votes outside its training data, or both
splits side by side), each judge's swap-flip rate, judge lineage (v0 → v1), a human-vs-judge confusion matrix,
Bradley-Terry leaderboards with CIs (raw and style-controlled), win-rate heatmaps, and the items where a judge
and the humans disagree (open one to read both runs' traces)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from components.common import friendly, optional, table
from components.data import run_html
from components.judge_boards import BoardsHandles, boards_layout, boards_view
from studio.context import AppContext
from studio.errors import InputError
from studio.judges import JUDGES, make_judge
from studio.judging import (
    HUMAN,
    JobResult,
    Scope,
    agreement,
    annotator_alpha,
    check_judge_model,
    disagreements,
    judge_models,
    judge_scope,
    leaderboards,
    snapshot,
)

N_BOOT = 300  # bootstrap resamples for the dashboard's CIs: enough for a 95% interval, quick on two cores
EMPTY = "No votes or verdicts yet: vote in the Arena, or run a judge above."
ONE_CONTESTANT = "No win rates: every vote compares runs of one (model, strategy), e.g. imported pairs."
LABELLED = {"all": None, "labelled": True, "unlabelled": False}
OUTCOMES = ("A", "B", "tie")
STATS = (
    ("s1", "S1 (with ties)", "#4c78a8"),
    ("s2", "S2 (without ties)", "#72b7b2"),
    ("kappa", "Cohen's κ", "#f58518"),
)

#: how a judge trained in the studio is scored: the picker's labels and the values agreement() takes
SPLIT_CHOICES = [
    ("held-out: trained judges on the votes outside their training data", "held-out"),
    ("both: train and held-out side by side", "both"),
    ("all votes (includes a trained judge's training votes: not its agreement)", "all"),
]
ALPHA_COLUMNS = ["labels", "level", "alpha", "95% CI", "items", "annotators"]
AGREEMENT_COLUMNS = ["x", "y", "split", "pairs", "S1", "S2", "kappa", "swap-flip", "training pairs left out",
                     "failed verdicts"]  # fmt: skip
LINEAGE_COLUMNS = ["judge", "version", "model", "pairs", "S1", "S2", "kappa", "swap-flip"]
JUDGE_COLUMNS = ["judge", "mode", "description", "settings", "source"]
BOARD_COLUMNS = ["board", "rank", "contestant", "elo", "elo 95% CI", "matches", "wins", "win_rate"]
DISAGREEMENT_COLUMNS = [
    "comparison_ids",
    "run_a",
    "run_b",
    "prompt_set",
    "a",
    "b",
    "human",
    "judge",
    "prompt",
]


@dataclass
class RunHandles:
    """Running judges: which judges, on which model, over which items, with which settings."""

    judges: gr.CheckboxGroup
    judge_model: gr.Dropdown
    source: gr.Radio
    labelled: gr.Radio
    prompt_set: gr.Dropdown
    limit: gr.Number
    batch_size: gr.Number
    settings: gr.Code
    run: gr.Button
    summary: gr.Markdown
    catalogue: gr.Dataframe  # every registered judge with its default settings and its source

    @property
    def inputs(self) -> list[Any]:
        return [self.judges, self.judge_model, self.source, self.labelled, self.prompt_set, self.limit,
                self.batch_size, self.settings]  # fmt: skip


@dataclass
class DashboardHandles:
    """What the store holds: agreement, α, the confusion matrix, leaderboards, win rates, disagreements."""

    rater: gr.Dropdown
    combined: gr.Checkbox
    split: gr.Radio
    refresh: gr.Button
    status: gr.Markdown
    alpha: gr.Dataframe
    agreement_table: gr.Dataframe  # each rater pair's S1, S2, κ with CIs, split, swap-flip rate
    lineage: gr.Dataframe  # judge v0 → v1: the same judge on a model and on its ancestors
    agreement_plot: gr.Plot
    confusion_plot: gr.Plot
    leaderboard_plot: gr.Plot
    heatmap_plot: gr.Plot
    leaderboard: gr.Dataframe
    disagreements: gr.Dataframe
    items: gr.HTML  # both runs of a disagreement row, opened by clicking it
    boards: BoardsHandles  # the raw and the style-controlled boards side by side, with the style coefficients

    @property
    def inputs(self) -> list[Any]:
        return [self.rater, self.combined, self.split]

    @property
    def outputs(self) -> list[Any]:
        """What :func:`wire_dashboard`'s reader returns, in order."""
        return [self.status, self.rater, self.agreement_plot, self.confusion_plot, self.leaderboard_plot,
                self.heatmap_plot, self.leaderboard, self.disagreements, self.alpha, self.agreement_table,
                self.lineage]  # fmt: skip


@dataclass
class Handles:
    run: RunHandles
    dashboard: DashboardHandles


# -- running judges -----------------------------------------------------------------------------------------------
def judge_settings(text: str, names: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Per-judge settings from JSON such as ``{"additive": {"n": 1}}``; empty means every judge's defaults."""
    if not (text or "").strip():
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f'judge settings are JSON, e.g. {{"additive": {{"n": 1}}}} ({e.msg})') from None
    if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
        raise InputError('judge settings map a judge name to its settings, e.g. {"additive": {"n": 1}}')
    unknown = sorted(set(value) - set(JUDGES.names()))
    if unknown:
        raise InputError(f"no judge named {', '.join(unknown)}; judges: {', '.join(JUDGES.names())}")
    return {k: v for k, v in value.items() if k in names}


def judge_catalogue() -> pd.DataFrame:
    """Every registered judge: its mode, what it does, its default settings and the paper it follows."""
    rows = []
    for name in JUDGES.names():
        judge = make_judge(name)
        rows.append({"judge": name, "mode": judge.mode, "description": judge.description,
                     "settings": json.dumps(judge.config_dict()), "source": judge.source})  # fmt: skip
    return pd.DataFrame(table(rows, JUDGE_COLUMNS, width=400), columns=JUDGE_COLUMNS)


def judge_model_choices(ctx: AppContext) -> list[tuple[str, str]]:
    """The chat models, then the reward models (only the reward_model judge scores with those)."""
    rewards = sorted(n for n, spec in ctx.registry.specs(kind=None).items() if spec.kind == "reward")
    return [(n, n) for n in ctx.model_names()] + [(f"{n} (reward model)", n) for n in rewards]


def flips_text(flips: dict[str, Any] | None) -> str:
    """A swap-flip rate as ``0.25 (3/12)``; ``n/a`` where no verdict was read in both orders."""
    if not flips or not flips.get("n") or flips.get("rate") is None:
        return "n/a"
    return f"{flips['rate']:.2f} ({flips['flips']}/{flips['n']})"


def summary_line(r: JobResult) -> str:
    line = (
        f"**{r.judge}** on `{r.judge_model}` (config `{r.config_hash}`): {r.total} items in scope, "
        f"{r.skipped} already judged, {r.judged} judged — {r.ok} ok, {r.failed} failed, in {r.elapsed_s:.1f} s"
    )
    flips = getattr(r, "swap_flip", None)
    if flips:
        line += f" · swap-flip rate {flips_text(flips)}"
    if r.self_judged:
        line += f" ⚠ {r.self_judged} self-judged (the judge model judged its own answers)"
    return line


# -- figures ------------------------------------------------------------------------------------------------------
def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), layout="constrained")


def note_figure(text: str) -> Figure:
    fig = _figure(7, 1.6)
    ax = fig.subplots()
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center", wrap=True, fontsize=11, color="#555")
    return fig


def _num(value: Any) -> float:
    return math.nan if value is None else float(value)


def agreement_figure(entries: Sequence[dict[str, Any]]) -> Figure:
    """S1, S2 and κ per rater pair (overall), as horizontal bars with their 95% bootstrap CIs."""
    shown = [e for e in entries if e["pairs"]]
    if not shown:
        return note_figure("No agreement yet: it needs two raters on the same items.")
    fig = _figure(9, 1.2 + 0.9 * len(shown))
    ax = fig.subplots()
    y = np.arange(len(shown))
    height = 0.26
    for k, (key, name, color) in enumerate(STATS):
        est = [e[key][0] for e in shown]
        vals = np.array([_num(s["value"]) for s in est])
        lo = np.array([_num(s["lo"]) for s in est])
        hi = np.array([_num(s["hi"]) for s in est])
        err = np.vstack([np.nan_to_num(vals - lo), np.nan_to_num(hi - vals)]).clip(min=0)
        pos = y + (k - 1) * height
        ax.barh(pos, np.nan_to_num(vals), height, xerr=err, color=color, label=name, capsize=3)
        for p, v in zip(pos, vals, strict=True):
            ax.text(0.01 if math.isnan(v) else max(v, 0) + 0.02, p, "n/a" if math.isnan(v) else f"{v:.2f}",
                    va="center", fontsize=8)  # fmt: skip
    ax.set_yticks(y, [f"{_kind(e)}{_split_tag(e)}\n{e['x']} vs {e['y']}  (n={e['pairs']})" for e in shown],
                  fontsize=8)  # fmt: skip
    ax.invert_yaxis()
    kappas = [v for e in shown if not math.isnan(v := _num(e["kappa"][0]["value"]))]
    ax.set_xlim(min([-0.1, *kappas]) - 0.05, 1.12)
    ax.axvline(0, color="#999", lw=0.8)
    ax.set_xlabel("agreement (95% bootstrap CI)")
    ax.legend(loc="lower right", fontsize=8)
    fig.suptitle("Agreement: human–human, judge–human, judge–judge", fontsize=11)
    return fig


def _split_tag(e: dict[str, Any]) -> str:
    """How a trained judge's entry was scored: on held-out votes, on its training votes, or on all."""
    if not e.get("trained"):
        return ""
    return {"held-out": " · held-out", "train": " · TRAIN votes (not its agreement)",
            "all": " · all votes (incl. training)"}.get(e.get("split", ""), "")  # fmt: skip


def _kind(e: dict[str, Any]) -> str:
    if e["x"] == HUMAN and e["y"] == HUMAN:
        return "human–human"
    return "judge–human" if HUMAN in (e["x"], e["y"]) else "judge–judge"


def confusion_figure(entry: dict[str, Any] | None) -> Figure:
    """Human majority-free vote pairs: rows are the human's outcome, columns the judge's."""
    if not entry or not entry.get("pairs"):
        return note_figure(
            "No confusion matrix yet: it needs human votes and judge verdicts on the same items."
        )
    m = np.array(entry["confusion"], dtype=float)
    fig = _figure(4.6, 3.8)
    ax = fig.subplots()
    ax.imshow(m, cmap="Blues")
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            ax.text(j, i, f"{int(m[i, j])}", ha="center", va="center",
                    color="white" if m[i, j] > m.max() / 2 else "black")  # fmt: skip
    ax.set_xticks(range(len(OUTCOMES)), OUTCOMES)
    ax.set_yticks(range(len(OUTCOMES)), OUTCOMES)
    ax.set_xlabel(f"judge: {entry['y']}", fontsize=8)
    ax.set_ylabel("human")
    fig.suptitle(f"Human vs judge ({entry['pairs']} vote pairs)", fontsize=11)
    return fig


def leaderboard_figure(boards: dict[str, list[dict[str, Any]]]) -> Figure:
    """Each board's Elo-scale Bradley-Terry strengths with 95% bootstrap CIs, best on top."""
    if not boards:
        return note_figure(EMPTY)
    rows = max(len(b) for b in boards.values())
    fig = _figure(4.2 * len(boards) + 1.5, 1.2 + 0.45 * rows)
    axes = np.atleast_1d(fig.subplots(1, len(boards)))
    for ax, (name, board) in zip(axes, boards.items(), strict=True):
        elo = np.array([r["elo"] for r in board])
        lo = np.array([_num(r["elo_lo"]) for r in board])
        hi = np.array([_num(r["elo_hi"]) for r in board])
        err = np.vstack([np.nan_to_num(elo - lo), np.nan_to_num(hi - elo)]).clip(min=0)
        y = np.arange(len(board))
        ax.errorbar(elo, y, xerr=err, fmt="o", capsize=4, color="#4c78a8")
        ax.set_yticks(y, [r["contestant"] for r in board], fontsize=8)
        ax.invert_yaxis()
        ax.set_title(f"{name} board", fontsize=10)
        ax.set_xlabel("Elo-scale strength (95% CI)", fontsize=8)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle("Leaderboard (Bradley–Terry)", fontsize=11)
    return fig


def heatmap_figure(win_rates: dict[str, dict[str, Any]]) -> Figure:
    """Row vs column win rate (ties half) per board; blank where the two never met."""
    # a board whose matches were all between one contestant's own runs (e.g. imported pairs) has no matrix
    shown = {name: m for name, m in win_rates.items() if m.get("labels")}
    if not shown:
        return note_figure(EMPTY if not win_rates else ONE_CONTESTANT)
    win_rates = shown
    n = max(len(m["labels"]) for m in win_rates.values())
    fig = _figure(max(5.0, 1.2 + 1.1 * n) * len(win_rates), 1.8 + 0.9 * n)
    axes = np.atleast_1d(fig.subplots(1, len(win_rates)))
    for ax, (name, m) in zip(axes, win_rates.items(), strict=True):
        values = np.array([[_num(v) for v in row] for row in m["values"]], dtype=float).reshape(
            len(m["labels"]), -1
        )
        image = ax.imshow(np.ma.masked_invalid(values), cmap="RdYlGn", vmin=0, vmax=1)
        for i in range(values.shape[0]):
            for j in range(values.shape[1]):
                if not math.isnan(values[i, j]):
                    ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=8)
        labels = [str(x) for x in m["labels"]]
        ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right", fontsize=7)
        ax.set_yticks(range(len(labels)), labels, fontsize=7)
        ax.set_title(f"{name}: row's win rate vs column", fontsize=10)
    fig.colorbar(image, ax=list(axes), shrink=0.8)
    fig.suptitle("Win rates", fontsize=11)
    return fig


# -- dashboard rows -------------------------------------------------------------------------------------------------
def alpha_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    shaped = []
    for r in rows:
        alpha, lo, hi = (_num(r.get(k)) for k in ("alpha", "lo", "hi"))
        shaped.append({
            **r, "items": r.get("n_items"), "annotators": r.get("n_annotators"),
            "alpha": round(alpha, 3) if not math.isnan(alpha)
            else "n/a: every label is the same" if r.get("n_items") else "n/a: no item has two annotators",
            "95% CI": "" if math.isnan(lo) or math.isnan(hi) else f"[{lo:.2f}, {hi:.2f}]",
        })  # fmt: skip
    return pd.DataFrame(table(shaped, ALPHA_COLUMNS), columns=ALPHA_COLUMNS)


def ci_text(e: dict[str, Any] | None) -> str:
    """An estimate as ``0.75 [0.61, 0.88]``; ``n/a`` when undefined."""
    value = _num((e or {}).get("value"))
    if math.isnan(value):
        return "n/a"
    lo, hi = _num(e.get("lo")), _num(e.get("hi"))  # type: ignore[union-attr]
    return f"{value:.2f}" + ("" if math.isnan(lo) or math.isnan(hi) else f" [{lo:.2f}, {hi:.2f}]")


def agreement_frame(entries: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """One row per rater pair (overall): S1, S2, κ with 95% CIs, the split a trained judge was scored on, how
    many vote pairs on its training data were left out, its swap-flip rate and failed verdicts."""
    rows = []
    for e in entries:
        split = e.get("split", "")
        if e.get("trained"):
            split = {"held-out": "held-out", "train": "TRAIN (not its agreement)",
                     "all": "all (incl. training)"}.get(split, split)  # fmt: skip
        left_out = e.get("train_pairs_excluded", "")
        rows.append({
            "x": e["x"], "y": e["y"], "split": split if e.get("trained") else "", "pairs": e["pairs"],
            "S1": ci_text(e["s1"][0]), "S2": ci_text(e["s2"][0]), "kappa": ci_text(e["kappa"][0]),
            "swap-flip": flips_text(e.get("swap_flip")) if "swap_flip" in e else "",
            "training pairs left out": left_out,
            "failed verdicts": f"{e['failed_verdicts']}/{e['verdicts']}" if "verdicts" in e else "",
        })  # fmt: skip
    return pd.DataFrame(table(rows, AGREEMENT_COLUMNS), columns=AGREEMENT_COLUMNS)


def lineage_frame(entries: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """Judge lineage: per judge whose model has a parent, each version's agreement with people on the same
    (held-out) vote pairs, the root first."""
    rows = []
    for e in entries:
        if e.get("split") == "train":
            continue
        for v in e.get("lineage") or []:
            rows.append({
                "judge": e["y"], "version": v["version"], "model": v["model"], "pairs": v.get("pairs", 0),
                "S1": ci_text(v.get("s1")), "S2": ci_text(v.get("s2")), "kappa": ci_text(v.get("kappa")),
                "swap-flip": flips_text(v.get("swap_flip")),
            })  # fmt: skip
    return pd.DataFrame(table(rows, LINEAGE_COLUMNS), columns=LINEAGE_COLUMNS)


def board_frame(boards: dict[str, list[dict[str, Any]]]) -> pd.DataFrame:
    rows = [
        {**r, "board": name, "elo": round(r["elo"]),
         "elo 95% CI": "" if math.isnan(_num(r["elo_lo"])) else f"[{r['elo_lo']:.0f}, {r['elo_hi']:.0f}]"}
        for name, board in boards.items()
        for r in board
    ]  # fmt: skip
    return pd.DataFrame(table(rows, BOARD_COLUMNS), columns=BOARD_COLUMNS)


def disagreement_frame(rows: Sequence[dict[str, Any]]) -> pd.DataFrame:
    shaped = [
        {**r, "a": f"{r['model_a']} / {r['strategy_a']}", "b": f"{r['model_b']} / {r['strategy_b']}"}
        for r in rows
    ]
    return pd.DataFrame(table(shaped, DISAGREEMENT_COLUMNS, width=200), columns=DISAGREEMENT_COLUMNS)


# -- the tab: layout ------------------------------------------------------------------------------------------------
def build(ctx: AppContext, opened: Sequence[Any] = ()) -> Handles:
    """The tab's widgets and events. ``opened``: the events on which the pickers and the dashboard are read again
    (the app passes the page load and the tab's select); none given, the page load."""
    gr.Markdown(
        "Judge stored answers with any registered model, then compare the judges with the people. "
        "Judging resumes: items already judged with the same judge settings are skipped."
    )
    run = run_layout(ctx)
    gr.Markdown("### Dashboard")
    dashboard = dashboard_layout()
    dashboard_reader = wire_dashboard(ctx, opened, run, dashboard)
    wire_run(ctx, run, dashboard, dashboard_reader)
    wire_items(ctx, dashboard)
    return Handles(run, dashboard)


def run_layout(ctx: AppContext) -> RunHandles:
    names = JUDGES.names()
    with gr.Row():
        with gr.Column(scale=3):
            judges = gr.CheckboxGroup(
                names, value=["logprob"] if "logprob" in names else names[:1], label="Judges",
                info=" · ".join(f"{n}: {make_judge(n).description}" for n in names),
            )  # fmt: skip
            with gr.Row():
                judge_model = gr.Dropdown(
                    judge_model_choices(ctx), value=ctx.settings.default_model, label="Judge model",
                    info="reward_model needs a reward model; dpo_implicit a DPO-trained model (its parent is the "
                    "reference)",
                )  # fmt: skip
                source = gr.Radio(["comparisons", "runs"], value="comparisons", label="Judge",
                                  info="pairs shown to people, or every pair of runs per prompt")  # fmt: skip
                labelled = gr.Radio(list(LABELLED), value="all", label="Items")
            with gr.Row():
                prompt_set = gr.Dropdown([("any", "")], value="", label="Prompt set", allow_custom_value=True)
                limit = gr.Number(0, label="At most (0 = all)", precision=0, minimum=0)
                batch_size = gr.Number(8, label="Batch size", precision=0, minimum=1)
            with gr.Accordion("Judge settings", open=False):
                settings = gr.Code(
                    "", language="json", label='Per judge, e.g. {"additive": {"n": 1, "max_new_tokens": 128}}'
                )
            with gr.Accordion("The judges, their default settings and sources", open=False):
                catalogue = gr.Dataframe(
                    judge_catalogue(), headers=JUDGE_COLUMNS, interactive=False, wrap=True, max_height=320
                )
        with gr.Column(scale=2):
            run = gr.Button("Run judges", variant="primary")
            summary = gr.Markdown()
    return RunHandles(
        judges,
        judge_model,
        source,
        labelled,
        prompt_set,
        limit,
        batch_size,
        settings,
        run,
        summary,
        catalogue,
    )


def dashboard_layout() -> DashboardHandles:
    with gr.Row(equal_height=True):
        rater = gr.Dropdown([], label="Judge config (confusion matrix, disagreements)", allow_custom_value=True,
                            scale=3)  # fmt: skip
        combined = gr.Checkbox(label="Also a combined human + judge board", scale=1)
        refresh = gr.Button("↻ Refresh dashboard", scale=1)
    split = gr.Radio(
        SPLIT_CHOICES, value="held-out", label="Judges trained in the studio are scored on",
        info="a judge is never scored on the votes it was trained on, unless asked (and then labelled so)",
    )  # fmt: skip
    status = gr.Markdown()
    alpha = gr.Dataframe(
        headers=ALPHA_COLUMNS, interactive=False, label="Inter-annotator agreement among people: Krippendorff's α "
        "(nominal for pairwise votes, ordinal for rankings; 95% bootstrap CI over items)",
    )  # fmt: skip
    with gr.Row():
        # the figures carry their own titles: gradio's label badge would sit on top of the tick labels
        agreement_plot = gr.Plot(label="Agreement", show_label=False, scale=3)
        confusion_plot = gr.Plot(label="Human vs judge", show_label=False, scale=2)
    agreement_table = gr.Dataframe(
        headers=AGREEMENT_COLUMNS, interactive=False, wrap=True, label="Agreement (95% bootstrap CIs) and "
        "swap-flip rate (verdicts whose two orders picked differently)",
    )  # fmt: skip
    lineage = gr.Dataframe(
        headers=LINEAGE_COLUMNS, interactive=False, label="Judge lineage: the same judge on a trained judge "
        "model (v1) and on the model it came from (v0), on the same held-out vote pairs",
    )  # fmt: skip
    leaderboard_plot = gr.Plot(label="Leaderboard", show_label=False)
    heatmap_plot = gr.Plot(label="Win rates", show_label=False)
    leaderboard = gr.Dataframe(headers=BOARD_COLUMNS, interactive=False, label="Leaderboard")
    with gr.Accordion("Leaderboards with style control: raw and style-controlled side by side", open=True):
        boards = boards_layout()
    disagreements_table = gr.Dataframe(
        headers=DISAGREEMENT_COLUMNS, interactive=False, wrap=True, max_height=360,
        label="Disagreements (human majority vs judge): click a row to read both runs",
    )  # fmt: skip
    items = gr.HTML()
    return DashboardHandles(rater, combined, split, refresh, status, alpha, agreement_table, lineage,
                            agreement_plot, confusion_plot, leaderboard_plot, heatmap_plot, leaderboard,
                            disagreements_table, items, boards)  # fmt: skip


# -- the tab: events ------------------------------------------------------------------------------------------------
def dashboard_view(
    ctx: AppContext, chosen_rater: Any, with_combined: bool, split: Any = "held-out"
) -> tuple[Any, ...]:
    """The dashboard as the store is now, for ``DashboardHandles.outputs``; the rater picked, or the first.
    ``split``: how judges trained in the studio are scored (held-out, both, all)."""
    snap = snapshot(ctx.store)
    if not snap.votes and not snap.verdicts:
        note = note_figure(EMPTY)
        empty = (pd.DataFrame(columns=BOARD_COLUMNS), pd.DataFrame(columns=DISAGREEMENT_COLUMNS),
                 pd.DataFrame(columns=ALPHA_COLUMNS), pd.DataFrame(columns=AGREEMENT_COLUMNS),
                 pd.DataFrame(columns=LINEAGE_COLUMNS))  # fmt: skip
        return EMPTY, gr.Dropdown(choices=[], value=None), note, note, note, note, *empty
    models = judge_models(snap, ctx.registry, ctx.settings.runs_dir)
    agree = agreement(snap, n_boot=N_BOOT, models=models, split=optional(split) or "held-out")
    against = [e for e in agree if e["x"] == HUMAN and e["y"] != HUMAN and e.get("split") != "train"]
    raters = [e["y"] for e in against]
    pick = optional(chosen_rater)
    pick = pick if pick in raters else (raters[0] if raters else None)
    boards = leaderboards(snap, combined=bool(with_combined), n_boot=N_BOOT)
    entry = next((e for e in against if e["y"] == pick), None)
    found = disagreements(snap, pick) if pick else []
    tau = boards["kendall_tau"]
    trained = sorted(models.trained)
    status_md = (
        f"{len(snap.votes)} human votes · {len(snap.verdicts)} verdicts by {len(raters)} judge config(s) · "
        f"{len(found)} disagreement(s) for `{pick or '-'}`"
        + (f" · Kendall τ between the human and judge boards {tau['tau']:.2f} over {tau['n']} contestants"
           if tau.get("tau") is not None else "")
        + (f"\n\nJudge models trained in the studio: {', '.join(f'`{m}`' for m in trained)} — "
           + {"held-out": "scored on the votes outside their training data.",
              "both": "train and held-out figures side by side; the held-out one is the agreement.",
              "all": "**pooled with their training votes: not their agreement.**"}[optional(split) or "held-out"]
           if trained else "")
    )  # fmt: skip
    return (
        status_md,
        gr.Dropdown(choices=raters, value=pick),
        agreement_figure(agree),
        confusion_figure(entry),
        leaderboard_figure(boards["boards"]),
        heatmap_figure(boards["win_rates"]),
        board_frame(boards["boards"]),
        disagreement_frame(found),
        alpha_frame(annotator_alpha(snap, n_boot=N_BOOT)),
        agreement_frame(agree),
        lineage_frame(agree),
    )


def wire_dashboard(
    ctx: AppContext, opened: Sequence[Any], r: RunHandles, d: DashboardHandles
) -> Callable[..., tuple[Any, ...]]:
    """Opening the tab rereads the pickers and the dashboard; Refresh, the rater and the combined box redraw
    it. Returns the dashboard reader (a finished judge run redraws it too)."""

    @friendly
    def judge_dashboard(chosen_rater: Any, with_combined: bool, split: Any = "held-out") -> tuple[Any, ...]:
        return dashboard_view(ctx, chosen_rater, with_combined, split)

    @friendly
    def prompt_sets() -> gr.Dropdown:
        return gr.Dropdown(choices=[("any", ""), *ctx.store.prompt_sets()])

    @friendly
    def judge_open() -> tuple[gr.Dropdown, gr.Dropdown]:
        """The judge model and prompt set pickers as they are now (a model registered since shows up)."""
        return gr.Dropdown(choices=judge_model_choices(ctx)), prompt_sets()

    # opening the tab shows what was labelled and registered since the page loaded
    on_open = list(opened) or None  # None: gradio's page load
    # "always_last": a tab opened while the page-load read still runs is read once more after it, not skipped
    gr.on(on_open, judge_open, None, [r.judge_model, r.prompt_set], api_name="judge_open",
          api_visibility="undocumented", show_progress="hidden", trigger_mode="always_last")  # fmt: skip

    @friendly
    def judge_boards() -> tuple[Any, ...]:
        return boards_view(ctx)

    # the rater, combined and split fields answer user input only, not the dashboard's own updates
    d.refresh.click(judge_dashboard, d.inputs, d.outputs, api_name="judge_dashboard").then(  # first: the name
        judge_boards, None, d.boards.outputs, api_name="judge_boards"
    )
    gr.on(on_open, judge_dashboard, d.inputs, d.outputs, api_visibility="private",
          trigger_mode="always_last").then(judge_boards, None, d.boards.outputs, api_visibility="private")  # fmt: skip
    d.rater.input(judge_dashboard, d.inputs, d.outputs, api_visibility="private")
    d.combined.input(judge_dashboard, d.inputs, d.outputs, api_visibility="private")
    d.split.input(judge_dashboard, d.inputs, d.outputs, api_visibility="private")
    return judge_dashboard


def wire_run(
    ctx: AppContext, r: RunHandles, d: DashboardHandles, dashboard: Callable[..., tuple[Any, ...]]
) -> None:
    """Run judges: each chosen judge over the scope, with progress; then the dashboard is redrawn."""

    @friendly
    def judge_run(
        chosen: list[str], model: str, src: str, lab: str, ps: Any, lim: Any, batch: Any, conf: str,
        progress: gr.Progress = gr.Progress(),  # noqa: B008 - gradio reads the tracker from the default
    ) -> str:  # fmt: skip
        if not chosen:
            raise InputError("choose at least one judge")
        per_judge = judge_settings(conf, chosen)
        made = [make_judge(n, per_judge.get(n)) for n in chosen]  # bad settings fail before the model loads
        for judge in made:  # a reward model for a text judge, or a chat model for reward_model: said now
            check_judge_model(ctx.registry, judge.name, optional(model))
        scope = Scope(src, LABELLED.get(lab), optional(ps), limit=int(lim) if lim else None)
        backend = ctx.registry.backend(optional(model), progress=lambda f, m: progress(f, desc=m))
        for judge in made:  # every judge is ready for this model before any of them runs
            judge.bind(ctx.registry, backend.model_name)
            judge.check_backend(backend)
        lines = []
        for i, judge in enumerate(made, 1):

            def report(done: int, total: int, msg: str, name: str = judge.name, i: int = i) -> None:
                progress((done, total) if total else 0.0, desc=f"[{i}/{len(made)}] {name}: {msg}")

            result = judge_scope(
                ctx.store, backend, judge, scope, batch_size=int(batch or 8), progress=report
            )
            lines.append("- " + summary_line(result))
        return "\n".join(lines)

    r.run.click(
        judge_run,
        r.inputs,
        r.summary,
        api_name="judge_run",
        concurrency_id="generate",  # shares the model with the Arena's generations
        concurrency_limit=ctx.settings.concurrency,
    ).success(dashboard, d.inputs, d.outputs, api_visibility="private").then(
        friendly(lambda: boards_view(ctx)), None, d.boards.outputs, api_visibility="private"
    )


def wire_items(ctx: AppContext, d: DashboardHandles) -> None:
    """Clicking a disagreement opens both runs' traces side by side."""

    @friendly
    def open_pair(evt: gr.SelectData) -> str:
        row = dict(zip(DISAGREEMENT_COLUMNS, evt.row_value or [], strict=False))
        if not str(row.get("run_a", "")).isdigit():
            return gr.skip()
        a, b = int(row["run_a"]), int(row["run_b"])
        head = (
            f"<p>Human said <b>{row['human']}</b>, the judge said <b>{row['judge']}</b> (A = run {a}, B = run {b}; "
            f"open either by id in the Data tab's run viewer).</p>"
        )
        cols = "".join(f'<div style="flex:1;min-width:320px">{run_html(ctx.store, r)}</div>' for r in (a, b))
        return f'{head}<div style="display:flex;gap:12px;flex-wrap:wrap">{cols}</div>'

    d.disagreements.select(open_pair, None, d.items, api_visibility="private")
