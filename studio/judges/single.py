"""MT-Bench single-answer grading (Zheng et al. 2023, arXiv 2306.05685): a 1-10 rating of one answer.

The published "single-v1" prompt, verbatim (FastChat ``judge_prompts.jsonl``); for an item with a reference answer
(``JudgeItem.reference``, e.g. a math prompt's known answer) the reference-guided "single-math-v1" prompt instead,
unless ``reference_guided`` is off. The rating is read as MT-Bench reads it (FastChat ``llm_judge/common.py``): the
first ``[[N]]`` in the output, else the first ``[N]``; here N must also be on the 1..10 scale the prompt asks for.
The format example the prompt itself gives (``for example: "Rating: [[5]]"``) is not a rating when a small model
echoes it back. Output with no rating is a failed verdict (``ok=False``) with its raw text.

``structured``: the verdict is generated as ``{"explanation": ..., "rating": N}`` (``prompts/mtbench_single
.schema.json``), the explanation bounded so that the whole JSON fits ``max_new_tokens``.

Pairwise outcomes from two ratings (the figures' ``outcomes``): the higher rating wins, equal ratings tie
(``studio.metrics.report.winner_from_ratings``), as for every single-answer judge.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from studio.judges.base import (
    Judge,
    JudgeConfig,
    JudgeGen,
    JudgeItem,
    load_schema,
    read,
    render,
    user,
)
from studio.strategies.base import RunContext
from studio.strategies.parsing import json_field

# FastChat's one_score_pattern and one_score_pattern_backup
_RATING = re.compile(r"\[\[(\d+\.?\d*)\]\]")
_RATING_BACKUP = re.compile(r"\[(\d+\.?\d*)\]")
# the prompt's own format example, echoed back by a small model: 'for example: "Rating: [[5]]"'
_ECHO = re.compile(r"for example:?\s*\"?\s*Rating:\s*\[\[5\]\]\"?", re.IGNORECASE)
SCALE = (1, 10)
#: tokens a structured verdict's JSON may take besides its explanation, at worst one token per character:
#: '{"explanation": "' (17), '", "verdict": "[[A]]"}' (22) or '", "rating": 10}' (16), and the end of turn
JSON_OVERHEAD_TOKENS = 40


def parse_rating(text: str) -> float | None:
    """MT-Bench's reading: the first ``[[N]]``, else the first ``[N]``; None when there is none, or N is off the
    1..10 scale. An echoed copy of the prompt's format example is ignored."""
    cleaned = _ECHO.sub(" ", text or "")
    match = _RATING.search(cleaned) or _RATING_BACKUP.search(cleaned)
    if not match:
        return None
    value = float(match.group(1))
    return value if SCALE[0] <= value <= SCALE[1] else None


def json_rating(obj: object) -> float | None:
    """The rating of a structured verdict (``{"explanation": ..., "rating": 7}``) if on the 1..10 scale."""
    value = json_field(obj, "rating")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if SCALE[0] <= value <= SCALE[1] else None


def explanation_cap(max_new_tokens: int) -> int:
    """How many characters a structured verdict's explanation may take so that the JSON fits ``max_new_tokens``.

    One character per token: under a schema the default model spells a repetitive explanation in short tokens
    (measured: a 96-character explanation took 64 tokens, about 1.5 characters per token, and was cut at the
    cap), so only a bound of one character per token left is safe. At least 16."""
    return max(16, max_new_tokens - JSON_OVERHEAD_TOKENS)


@dataclass(frozen=True)
class SingleConfig(JudgeConfig):
    #: an item with a reference answer is graded with MT-Bench's reference-guided "single-math-v1" prompt
    reference_guided: bool = True


def single_conversation(item: JudgeItem, reference_guided: bool = True) -> list[dict[str, str]]:
    """The judge's conversation for one answer: single-math-v1 when the item has a reference, else single-v1."""
    values = {"question": item.question, "answer": item.answers[0].text}
    if reference_guided and item.reference:
        body = render("mtbench_single_math_user", reference=item.reference, **values)
    else:
        body = render("mtbench_single_user", **values)
    return user(body, system=render("mtbench_single_system"))


class SingleJudge(Judge):
    mode = "single"
    description = (
        "MT-Bench single-answer grading: 'Rating: [[N]]', 1-10; reference-guided when a reference exists"
    )
    source = "Zheng et al. 2023, Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena, arXiv 2306.05685"
    Config = SingleConfig
    prompts = ("mtbench_single_system", "mtbench_single_user", "mtbench_single_math_user")

    def run(self, item: JudgeItem, ctx: RunContext) -> JudgeGen:
        guided = bool(self.config.reference_guided and item.reference)
        schema = load_schema("mtbench_single", max_explanation=explanation_cap(self.config.max_new_tokens))
        conv = single_conversation(item, self.config.reference_guided)
        label = "reference-guided" if guided else "single"
        requests = [ctx.request("judge", conv, label=label, schema=schema)]
        raws, errors, (rating,) = read(ctx, requests, (yield requests), parse_rating, "rating", json_rating)
        error = ""
        if rating is None:
            error = errors[0] or "no 'Rating: [[N]]' with N in 1..10 found"
        scores: dict[str, Any] = {"prompt": "single-math-v1" if guided else "single-v1"}
        return self.verdict(
            item,
            ctx.trace.model,
            ok=rating is not None,
            rating=rating,
            orders=["A"],
            scores=scores,
            raw=raws,
            error=error,
        )
