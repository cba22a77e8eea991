"""Step 0 of Self-Rewarding: M_t writes new prompts few-shot from existing ones (Self-Instruct style).

Each candidate is written from a different random sample of ``few_shot`` seed prompts. Candidates are cleaned
(first line, numbering and quotes removed) and filtered as Self-Instruct does: degenerate text (too short, too
long, no letters, a refusal or a reply instead of a task) and near-duplicates (ROUGE-L >= threshold against a seed
or an already kept prompt) are dropped, each with its reason, so that the run dir shows what was filtered.
"""

from __future__ import annotations

import random
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from studio.backends.base import Backend, GenParams

TEMPLATE = Path(__file__).parent / "prompts" / "self_instruct.txt"
OVERSAMPLE = 3  # candidates written per prompt wanted: many are filtered out
_NUMBERING = re.compile(r"^\s*(?:task\s*)?\d+\s*[.:)\-]\s*", re.IGNORECASE)
_NOT_A_TASK = re.compile(
    r"^(?:i'm|i am|i cannot|i can't|as an ai|sure|here is|here are|here's|certainly|output|answer)\b", re.I
)
_META = re.compile(r"\btasks?\b", re.I)  # talks about "the task" instead of being one
MIN_WORDS, MAX_WORDS = 3, 80


@dataclass
class WrittenPrompts:
    kept: list[str] = field(default_factory=list)
    dropped: list[dict[str, str]] = field(default_factory=list)  # {"text", "reason"}


def template() -> str:
    lines = TEMPLATE.read_text(encoding="utf-8").splitlines()
    return "\n".join(line for line in lines if not line.startswith("#")).strip()


def few_shot_message(examples: Sequence[str]) -> str:
    numbered = "\n".join(f"{i}. {' '.join(e.split())}" for i, e in enumerate(examples, 1))
    return template().replace("{examples}", numbered).replace("{next}", str(len(examples) + 1))


def clean(text: str) -> str:
    """The first non-empty line, without list numbering, 'Task N:', markdown emphasis or wrapping quotes."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    line = _NUMBERING.sub("", line.replace("**", "")).strip()
    return line.strip("\"'` ").strip()


def tokens(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def rouge_l(a: str, b: str) -> float:
    """ROUGE-L F-measure between two texts (word-level longest common subsequence)."""
    x, y = tokens(a), tokens(b)
    if not x or not y:
        return 0.0
    prev = [0] * (len(y) + 1)
    for xi in x:
        row = [0]
        for j, yj in enumerate(y, 1):
            row.append(prev[j - 1] + 1 if xi == yj else max(prev[j], row[j - 1]))
        prev = row
    lcs = prev[-1]
    if not lcs:
        return 0.0
    p, r = lcs / len(x), lcs / len(y)
    return 2 * p * r / (p + r)


def problem(text: str, others: Sequence[str], threshold: float) -> str | None:
    """Why ``text`` is not a usable new prompt, or None."""
    words = len(text.split())
    if words < MIN_WORDS:
        return "too short"
    if words > MAX_WORDS:
        return "too long"
    if not re.search(r"[A-Za-z]", text):
        return "no letters"
    if not text[0].isalnum():
        return "starts with punctuation"
    if _NOT_A_TASK.match(text) or _META.search(text):
        return "a reply or a remark, not a task"
    if text.endswith(":"):
        return "unfinished"
    close = max((rouge_l(text, o) for o in others), default=0.0)
    if close >= threshold:
        return f"near-duplicate (ROUGE-L {close:.2f})"
    return None


def write_prompts(
    backend: Backend,
    seeds: Sequence[str],
    n: int,
    *,
    few_shot: int = 8,
    params: GenParams,
    threshold: float = 0.7,
    seed: int = 0,
) -> WrittenPrompts:
    """Ask ``backend`` for ``n`` new prompts (writing ``OVERSAMPLE`` x n candidates in one batch) and filter."""
    rng = random.Random(seed)
    k = min(few_shot, len(seeds))
    convs = [
        [{"role": "user", "content": few_shot_message(rng.sample(list(seeds), k))}]
        for _ in range(n * OVERSAMPLE)
    ]
    out = WrittenPrompts()
    for completion in backend.chat(convs, params):
        text = clean(completion.text)
        reason = "enough kept" if len(out.kept) >= n else problem(text, [*seeds, *out.kept], threshold)
        if reason:
            out.dropped.append({"text": text, "reason": reason})
        else:
            out.kept.append(text)
    return out
