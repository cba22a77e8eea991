"""What a trained judge was trained on: the preference pairs in its training jobs' data snapshots.

A judge model trained in the studio (a reward model, a DPO policy, a Self-Rewarding model) names its training
run in the model registry (``training_run``); the run dir (``<runs dir>/<id>/``) holds the exact data the job
read (``train.parquet``, see :mod:`studio.training.rundir`). A model trained from a trained model learned from
its parent's data too, so every trained ancestor's snapshot counts. Agreement with people is honest only on
votes outside that set (held out).

A pair is (prompt text, {answer, answer}): unordered, since a judge sees the two answers in either position.
The prompt text is the prompt's last user message (the prompt text itself for a single-turn prompt). Pairs held
out by a reward job for its own evaluation (``eval_fraction``) are in the snapshot and count as trained on:
the safe side for an honesty check. A KTO snapshot labels single answers; each (desirable, undesirable) answer
pair of one prompt counts. Self-Rewarding's generated pairs (``iter_<t>/pairs.jsonl``) count too.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from studio.training.rundir import read_jsonl

Pair = tuple[str, frozenset[str]]


def training_pairs(registry: Any, runs_dir: str | Path, judge_model: str) -> set[Pair] | None:
    """The preference pairs ``judge_model`` and its trained ancestors were trained on; None when neither it nor
    an ancestor was trained in the studio (no training run)."""
    runs = [spec.training_run for spec in _lineage(registry, judge_model) if spec.training_run]
    if not runs:
        return None
    pairs: set[Pair] = set()
    for run in runs:
        pairs |= run_pairs(Path(runs_dir) / run)
    return pairs


def is_training_pair(pairs: set[Pair] | None, prompt_text: str, answer_a: str, answer_b: str) -> bool:
    """Whether (prompt, {answer_a, answer_b}) is one of ``pairs`` (None: the judge was not trained here)."""
    return pairs is not None and (prompt_text, frozenset((answer_a, answer_b))) in pairs


def run_pairs(run_dir: Path) -> set[Pair]:
    """The pairs in one run dir's data snapshot (empty when it has none)."""
    pairs: set[Pair] = set()
    snapshot = run_dir / "train.parquet"
    if snapshot.exists():
        import pyarrow.parquet as pq

        rows = pq.read_table(snapshot).to_pylist()
        if rows and "chosen" in rows[0]:
            pairs |= {_pair(r["prompt"], r["chosen"], r["rejected"]) for r in rows}
        elif rows and "label" in rows[0]:
            pairs |= _label_pairs(rows)
    for path in sorted(run_dir.glob("iter_*/pairs.jsonl")):
        pairs |= {_pair(r["prompt"], r["chosen"], r["rejected"]) for r in read_jsonl(path)}
    return pairs


def _lineage(registry: Any, name: str) -> list[Any]:
    """``name``'s spec and its ancestors' (parent links; a cycle or a missing parent ends the chain)."""
    specs = registry.specs(kind=None)
    chain: list[Any] = []
    while name in specs and name not in {s.name for s in chain}:
        chain.append(specs[name])
        name = specs[name].parent
    return chain


def _text(cell: Any, role: str) -> str:
    """A snapshot cell as text: a plain string, or the content of its last ``role`` message (conversational)."""
    if isinstance(cell, str):
        return cell
    messages = [m for m in cell or [] if m.get("role") == role] or list(cell or [])
    return str(messages[-1].get("content", "")) if messages else ""


def _pair(prompt: Any, chosen: Any, rejected: Any) -> Pair:
    return _text(prompt, "user"), frozenset((_text(chosen, "assistant"), _text(rejected, "assistant")))


def _label_pairs(rows: Iterable[dict[str, Any]]) -> set[Pair]:
    by_prompt: dict[str, tuple[set[str], set[str]]] = {}
    for r in rows:
        good, bad = by_prompt.setdefault(_text(r["prompt"], "user"), (set(), set()))
        (good if r["label"] else bad).add(_text(r["completion"], "assistant"))
    return {(p, frozenset((g, b))) for p, (good, bad) in by_prompt.items() for g in good for b in bad}
