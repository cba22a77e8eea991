"""The live view's curves: one subplot per metric (DPO's chosen and rejected rewards share one), and the
latest value of each."""

import math
from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from components.common import table
from studio.training import TrainingJob

LATEST_COLUMNS = ["curve", "step", "value", "points"]


PAIRED = {"rewards/chosen": "rewards/chosen vs rejected", "rewards/rejected": "rewards/chosen vs rejected"}


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


def curves_figure(job: TrainingJob, curves: dict[str, list[tuple[int, float]]]) -> Figure:
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
        steps_shown = [step for name in names for step, _ in curves[name]]
        if min(steps_shown) == max(steps_shown):  # one step so far: integer ticks around it, not ±0.045
            ax.set_xlim(min(steps_shown) - 1, max(steps_shown) + 1)
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
