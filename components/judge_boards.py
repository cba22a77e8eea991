"""The Judge tab's style-control boards: the raw and the style-controlled Bradley–Terry boards side by side, per
rater (people, each judge config), with 95% CIs, and the fitted style coefficients.

Layout and wiring only: the figures come from :func:`studio.judging.boards.style_boards`. The Judge tab's
dashboard refresh calls :func:`boards_view` and puts its tuple into :attr:`BoardsHandles.outputs`.
"""

# no `from __future__ import annotations`: gradio reads real annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import pandas as pd

from components.common import table
from studio.context import AppContext
from studio.judging.boards import style_boards
from studio.judging.snapshot import Snapshot, snapshot

N_BOOT = 200  # bootstrap resamples for the boards' CIs
BOARD_COLUMNS = ["rater", "rank", "contestant", "rating", "95% CI", "matches"]
STYLE_COLUMNS = ["rater", "rank", "contestant", "rating", "95% CI", "vs raw"]
COEF_COLUMNS = ["rater", "feature", "coefficient", "95% CI", "reading"]
INTRO = (
    "**Style control** (Chatbot Arena, 2024): the board refitted with the answers' style as covariates (length, "
    "Markdown headers, list items, bold; each as a normalised difference, scaled). The style-controlled "
    "rating is what is left when both answers have the same style; a coefficient > 0 means the rater prefers "
    "more of that feature (log-odds per RMS of the scaled difference). Ratings on the leaderboard's Elo-like scale."
)
EMPTY = "No votes or verdicts yet: the style-controlled boards need decided comparisons."


@dataclass
class BoardsHandles:
    status: gr.Markdown
    raw: gr.Dataframe
    style: gr.Dataframe
    coefficients: gr.Dataframe

    @property
    def outputs(self) -> list[Any]:
        """What :func:`boards_view` returns, in order."""
        return [self.status, self.raw, self.style, self.coefficients]


def boards_layout() -> BoardsHandles:
    status = gr.Markdown(INTRO)
    with gr.Row():
        raw = gr.Dataframe(headers=BOARD_COLUMNS, interactive=False, label="Raw board", scale=1)
        style = gr.Dataframe(
            headers=STYLE_COLUMNS, interactive=False, label="Style-controlled board", scale=1
        )
    coefficients = gr.Dataframe(headers=COEF_COLUMNS, interactive=False, label="Style coefficients")
    return BoardsHandles(status, raw, style, coefficients)


def _ci(lo: float | None, hi: float | None, digits: int = 0) -> str:
    return "" if lo is None or hi is None else f"[{lo:.{digits}f}, {hi:.{digits}f}]"


def _reading(c: dict[str, Any]) -> str:
    if c["value"] is None:
        return "no variation in the data: left out"
    if c["lo"] is None or c["lo"] <= 0 <= c["hi"]:
        return "no clear effect (CI includes 0)"
    return "prefers more" if c["value"] > 0 else "prefers less"


def boards_frames(found: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The three tables of :func:`studio.judging.boards.style_boards`' result."""
    raw, style, coefs = [], [], []
    for rater, b in found["raters"].items():
        base = {r["contestant"]: r["rating"] for r in b["raw"]}
        for rank, r in enumerate(b["raw"], start=1):
            raw.append({"rater": rater, "rank": rank, "contestant": r["contestant"], "rating": round(r["rating"]),
                        "95% CI": _ci(r["lo"], r["hi"]), "matches": r["n"]})  # fmt: skip
        for rank, r in enumerate(b["style"], start=1):
            style.append({"rater": rater, "rank": rank, "contestant": r["contestant"], "rating": round(r["rating"]),
                          "95% CI": _ci(r["lo"], r["hi"]),
                          "vs raw": f"{r['rating'] - base[r['contestant']]:+.0f}"})  # fmt: skip
        for feature, c in b["coefficients"].items():
            coefs.append({"rater": rater, "feature": feature,
                          "coefficient": None if c["value"] is None else round(c["value"], 3),
                          "95% CI": _ci(c["lo"], c["hi"], 2), "reading": _reading(c)})  # fmt: skip
    return (
        pd.DataFrame(table(raw, BOARD_COLUMNS), columns=BOARD_COLUMNS),
        pd.DataFrame(table(style, STYLE_COLUMNS), columns=STYLE_COLUMNS),
        pd.DataFrame(table(coefs, COEF_COLUMNS), columns=COEF_COLUMNS),
    )


def boards_view(
    ctx: AppContext, snap: Snapshot | None = None, *, judges: Any = None, n_boot: int = N_BOOT
) -> tuple[Any, ...]:
    """The boards as the store is now (or as ``snap``, when the caller has read one), for
    :attr:`BoardsHandles.outputs`: (status markdown, raw table, style-controlled table, coefficient table)."""
    snap = snap if snap is not None else snapshot(ctx.store)
    found = style_boards(snap, judges=judges or None, n_boot=n_boot)
    frames = boards_frames(found)
    if not found["raters"]:
        return (f"{INTRO}\n\n{EMPTY}", *frames)
    counts = " · ".join(f"`{r}` {b['matches']} matches" for r, b in found["raters"].items())
    notes = "".join(f"\n\n⚠ `{r}`: {b['note']}." for r, b in found["raters"].items() if b["note"])
    return (f"{INTRO}\n\n{counts}{notes}", *frames)
