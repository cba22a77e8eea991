"""MT-Bench pairwise judge (Zheng et al. 2023, arXiv 2306.05685): the published "pair-v2" prompt, both orders.

Each order's output must end in a verdict ``[[A]]``, ``[[B]]`` or ``[[C]]`` (tie). A winner is declared only when
both orders agree; when they disagree the pair is *inconsistent*, which counts as a tie and is kept as such.
An order whose output has no verdict fails the whole verdict (``ok=False``, both raw outputs kept).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from studio.backends.base import Backend
from studio.judges.base import (
    ORDERS,
    Judge,
    JudgeConfig,
    JudgeItem,
    Verdict,
    combine_orders,
    render,
    safe_chat,
    shown,
    text_of,
    to_caller_label,
    user,
)

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


def pairwise_conversation(item: JudgeItem, order: str) -> list[dict[str, str]]:
    a, b = shown(item, order)
    body = render("mtbench_pair_user", question=item.question, answer_a=a.text, answer_b=b.text)
    return user(body, system=render("mtbench_pair_system"))


class PairwiseJudge(Judge):
    mode = "pairwise"
    description = "MT-Bench pairwise judge: [[A]]/[[B]]/[[C]] in both orders; disagreement is inconsistent"
    source = "Zheng et al. 2023, Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena, arXiv 2306.05685"
    Config = JudgeConfig
    prompts = ("mtbench_pair_system", "mtbench_pair_user")

    def judge(self, items: Sequence[JudgeItem], backend: Backend) -> list[Verdict]:
        self.check_items(items)
        convs = [pairwise_conversation(it, order) for it in items for order in ORDERS]
        results = safe_chat(backend, convs, self.config.gen_params())
        k = len(ORDERS)
        return [self._verdict(it, results[i * k : (i + 1) * k], backend) for i, it in enumerate(items)]

    def _verdict(self, item: JudgeItem, results: list, backend: Backend) -> Verdict:
        raws, errors = zip(*(text_of(r) for r in results), strict=True)
        picks = [None if e else parse_pairwise(t) for t, e in zip(raws, errors, strict=True)]
        order_winners = [to_caller_label(p, o) for p, o in zip(picks, ORDERS, strict=True)]
        winner = combine_orders(order_winners)
        error = ""
        if winner is None:
            bad = [o for o, p in zip(ORDERS, picks, strict=True) if p is None]
            reason = next((e for e in errors if e), "") or "no [[A]], [[B]] or [[C]] verdict found"
            error = f"order {', '.join(bad)}: {reason}"
        return self.verdict(
            item,
            backend,
            ok=winner is not None,
            winner=winner,
            orders=list(ORDERS),
            order_winners=order_winners,
            scores={"picks": dict(zip(ORDERS, picks, strict=True))},
            raw=list(raws),
            error=error,
        )
