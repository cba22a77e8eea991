"""The shipped preference set (``studio/eval/datasets/prefs``): pairs written for the studio, with known
preferred answers (correct vs wrong, helpful vs evasive, concise vs padded), in a fixed train/test split.

- :func:`load` gives a split's rows ``{id, category, prompt, chosen, rejected, reference}``;
- :func:`items` gives them as pairwise :class:`JudgeItem` s, the chosen answer at a seeded random position;
- :func:`import_split` imports a split into the store (prompt set ``prefs-<split>``, annotator
  ``prefset:written``), shuffled with the same positions as :func:`items` for the same seed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from storage.exchange import ImportResult, chosen_positions
from studio.errors import InputError
from studio.eval.data import read_jsonl
from studio.judges.base import JudgeItem

if TYPE_CHECKING:
    from storage import Store

DIR = Path(__file__).resolve().parents[1] / "eval" / "datasets" / "prefs"
SPLITS = ("train", "test")
CATEGORIES = ("correct", "helpful", "concise")
ANNOTATOR = "prefset:written"


def path(split: str) -> Path:
    if split not in SPLITS:
        raise InputError(f"the preference set's split is one of {', '.join(SPLITS)}, not {split!r}")
    return DIR / f"{split}.jsonl"


def load(split: str) -> list[dict[str, Any]]:
    """The split's rows, in file (id) order."""
    return read_jsonl(path(split))


def items(split: str, seed: int = 0) -> list[JudgeItem]:
    """One pair per row; the chosen answer is at position ``chosen_positions(n, seed)[i]`` (half of the pairs
    show it second), and ``key = (id, chosen_position)``, so a verdict's winner says whether it picked the chosen
    answer: 'A' when the position is 0, 'B' when it is 1."""
    rows = load(split)
    out = []
    for row, pos in zip(rows, chosen_positions(len(rows), seed), strict=True):
        a, b = (row["chosen"], row["rejected"]) if pos == 0 else (row["rejected"], row["chosen"])
        out.append(JudgeItem.pair(row["prompt"], a, b, key=(row["id"], pos), reference=row["reference"]))
    return out


def prompt_set(split: str) -> str:
    path(split)  # validates the name
    return f"prefs-{split}"


def import_split(store: Store, split: str, seed: int = 0) -> ImportResult:
    """Import the split: each pair becomes a prompt (with its ``reference``), two runs, a comparison and a
    vote by ``prefset:written`` naming the chosen answer's (shuffled) position. Importing again adds nothing
    new to the exports (pairs are deduplicated there)."""
    return store.import_preferences(path(split), prompt_set=prompt_set(split), annotator=ANNOTATOR, seed=seed)
