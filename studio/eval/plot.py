"""The report as a figure: grouped bars per metric, one bar per strategy x model, with the bootstrap CIs.
Proportions (and gaps) share one axis; counts and judge scores, on another scale, get a second panel."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
from matplotlib.figure import Figure

if TYPE_CHECKING:
    from studio.eval.report import Report, ReportColumn

COLORS = ("#4c78a8", "#f58518", "#54a24b", "#e45756", "#72b7b2", "#b279a2", "#ff9da6", "#9d755d")


def _panel(ax, report: Report, columns: list[ReportColumn], ylabel: str) -> None:  # noqa: ANN001 - matplotlib Axes
    x = np.arange(len(columns))
    width = 0.8 / max(1, len(report.rows))
    for k, row in enumerate(report.rows):
        cells = [row.cells[c.key] for c in columns]
        vals = np.array([c.value for c in cells], dtype=float)
        lo = np.array([c.lo for c in cells], dtype=float)
        hi = np.array([c.hi for c in cells], dtype=float)
        err = np.vstack([np.nan_to_num(vals - lo), np.nan_to_num(hi - vals)]).clip(min=0)
        pos = x - 0.4 + width * (k + 0.5)
        ax.bar(pos, np.nan_to_num(vals), width, yerr=err, capsize=3, label=row.label,
               color=COLORS[k % len(COLORS)])  # fmt: skip
        for p, v in zip(pos, vals, strict=True):
            if not math.isnan(v):
                ax.text(p, v, f"{v:.2f}", ha="center", va="bottom" if v >= 0 else "top", fontsize=7)
    ax.set_xticks(x, [c.label for c in columns], rotation=20, ha="right", fontsize=8)
    ax.axhline(0, color="#999", lw=0.8)
    ax.set_ylabel(ylabel, fontsize=9)
    ax.grid(axis="y", alpha=0.3)


def report_figure(report: Report) -> Figure:
    wide = report.wide_columns()
    rates = [c for c in wide if c.rate]
    others = [c for c in wide if not c.rate]
    panels = [
        (cols, label) for cols, label in ((rates, "proportion (95% CI)"), (others, "mean (95% CI)")) if cols
    ]
    fig = Figure(figsize=(max(6.0, 1.3 * len(wide) + 0.6 * len(report.rows) + 3), 4.4), layout="constrained")
    if not panels or not report.rows:
        ax = fig.subplots()
        ax.axis("off")
        ax.text(0.5, 0.5, "Nothing to plot: no scored runs or no metric for this dataset.", ha="center")
        return fig
    ratios = [max(1, len(cols)) for cols, _ in panels]
    axes = np.atleast_1d(fig.subplots(1, len(panels), gridspec_kw={"width_ratios": ratios}))
    for ax, (cols, label) in zip(axes, panels, strict=True):
        _panel(ax, report, cols, label)
    axes[0].legend(fontsize=8, loc="best")
    fig.suptitle(report.title, fontsize=11)
    return fig
