"""MT-Bench pairwise judge (Zheng et al. 2023, arXiv 2306.05685): the published "pair-v2" prompt, both orders.

Each order's output must end in a verdict ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie). A winner is declared only when
both orders agree; when they disagree the pair is *inconsistent*, which counts as a tie and is kept as such.
An order whose output has no verdict fails the whole verdict (``ok=False``, both raw outputs kept).

**Reference-guided grading** (MT-Bench "pair-math-v1", verbatim): an item with a reference answer
(``JudgeItem.reference``, e.g. a math prompt's known answer) is judged with the prompt that shows the reference
and asks the judge to compare both answers with it, unless ``reference_guided`` is off.

``structured``: each order's verdict is generated as ``{"explanation": ..., "verdict": "[[A]]"}``
(``prompts/mtbench_pair.schema.json``), the explanation bounded so that the whole JSON fits ``max_new_tokens``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from studio.judges.base import (
    ORDERS,
    Judge,
    JudgeConfig,
    JudgeGen,
    JudgeItem,
    load_schema,
    pair_values,
    read,
    render,
    user,
)
from studio.judges.single import explanation_cap
from studio.strategies.base import RunContext
from studio.strategies.parsing import json_field, json_text

_VERDICT = re.compile(r"\[\[\s*([ABC])\s*\]\]", re.IGNORECASE)
# the instruction's own format spec, echoed back by a small model: '"[[A]]" if assistant A is better'
_ECHO = re.compile(r"\"?\[\[\s*[ABC]\s*\]\]\"?\s+(?:if|for)\b", re.IGNORECASE)


def parse_pairwise(text: str) -> str | None:
    """'A', 'B' or 'tie' from the last ``[[A]]``/``[[B]]``/``[[C]]`` in ``text``; None if there is none.

    Verdict tokens that belong to an echoed copy of the format instruction are ignored.
    """
    cleaned = _ECHO.sub(" ", text or "")
    found = _VERDICT.findall(cleaned)
    if not found:
        return None
    letter = found[-1].upper()
    return "tie" if letter == "C" else letter


def json_pick(obj: object) -> str | None:
    """'A', 'B' or 'tie' from a structured verdict (``{"explanation": ..., "verdict": "[[A]]"}``), else None."""
    return parse_pairwise(json_text(json_field(obj, "verdict")) or "")


def pairwise_conversation(item: JudgeItem, order: str, reference_guided: bool = True) -> list[dict[str, str]]:
    """One order's conversation: pair-math-v1 (with the reference) when the item has one, else pair-v2."""
    if reference_guided and item.reference:
        body = render("mtbench_pair_math_user", reference=item.reference, **pair_values(item, order))
        return user(body, system=render("mtbench_pair_math_system"))
    body = render("mtbench_pair_user", **pair_values(item, order))
    return user(body, system=render("mtbench_pair_system"))


@dataclass(frozen=True)
class PairwiseConfig(JudgeConfig):
    #: an item with a reference answer is judged with MT-Bench's reference-guided "pair-math-v1" prompt
    reference_guided: bool = True


class PairwiseJudge(Judge):
    mode = "pairwise"
    description = "MT-Bench pairwise judge: [[A]]/[[B]]/[[C]] in both orders; disagreement is inconsistent"
    source = "Zheng et al. 2023, Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena, arXiv 2306.05685"
    Config = PairwiseConfig
    prompts = (
        "mtbench_pair_system",
        "mtbench_pair_user",
        "mtbench_pair_math_system",
        "mtbench_pair_math_user",
    )

    def config_dict(self) -> dict[str, Any]:
        """The settings; ``reference_guided`` only when off (the default was added later)."""
        d = super().config_dict()
        if d.get("reference_guided") is True:
            del d["reference_guided"]
        return d

    def run(self, item: JudgeItem, ctx: RunContext) -> JudgeGen:
        schema = load_schema("mtbench_pair", max_explanation=explanation_cap(self.config.max_new_tokens))
        guided = bool(self.config.reference_guided and item.reference)
        requests = [
            ctx.request(
                "judge",
                pairwise_conversation(item, o, self.config.reference_guided),
                label=f"order {o}" + (", reference-guided" if guided else ""),
                schema=schema,
            )
            for o in ORDERS
        ]
        raws, errors, picks = read(ctx, requests, (yield requests), parse_pairwise, "pick", json_pick)
        error = ""
        if None in picks:
            bad = [o for o, p in zip(ORDERS, picks, strict=True) if p is None]
            reason = next((e for e in errors if e), "") or "no [[A]], [[B]] or [[C]] verdict found"
            error = f"order {', '.join(bad)}: {reason}"
        scores = {
            "picks": dict(zip(ORDERS, picks, strict=True)),
            "prompt": "pair-math-v1" if guided else "pair-v2",
        }
        return self.swap_verdict(item, ctx.trace.model, picks, scores=scores, raw=raws, error=error)
