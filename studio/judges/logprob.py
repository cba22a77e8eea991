"""The studio's log-prob pairwise judge (METHODS.md): read P("A") vs P("B") instead of generating text.

The pairwise question is asked in both orders, and the next-token probabilities of ``A`` and ``B`` are read
(``backend.choice_probs``, renormalised over the two letters). The calibrated P(A better) is the mean of
P("A") with A shown first and P("B") with A shown second, which cancels a pure position preference. It always
exists, even for a tiny model. Every item and order goes to the backend in one batch.

The winner is A or B when P(A better) is more than ``tie_margin`` away from 1/2, else a tie. Each order's own
pick (``order_winners``) is kept, so that swap flips can be counted as for the generating judges.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from studio.errors import InputError
from studio.judges.base import (
    ORDERS,
    Judge,
    JudgeGen,
    JudgeItem,
    Verdict,
    messages,
    pair_values,
    probs_of,
    to_caller_label,
)
from studio.strategies.base import RunContext

CHOICES = ("A", "B")


@dataclass(frozen=True)
class LogprobConfig:
    tie_margin: float = 0.05  # |P(A better) - 1/2| at or below this is a tie


def p_a_better(p_ab: dict[str, float], p_ba: dict[str, float]) -> float:
    """Both orders averaged: P("A") when A is shown first, P("B") when A is shown second."""
    return (p_ab["A"] + p_ba["B"]) / 2


def winner_from_prob(prob_a: float, tie_margin: float) -> str:
    if abs(prob_a - 0.5) <= tie_margin:
        return "tie"
    return "A" if prob_a > 0.5 else "B"


def logprob_conversation(item: JudgeItem, order: str) -> list[dict[str, str]]:
    return messages("logprob_pair", **pair_values(item, order))


class LogprobJudge(Judge):
    mode = "pairwise"
    description = "Log-prob pairwise judge: P('A') vs P('B') as the next token, both orders averaged"
    source = "the studio's own (METHODS.md); question layout from MT-Bench, arXiv 2306.05685"
    Config = LogprobConfig
    prompts = ("logprob_pair",)
    needs_choice_probs = True

    def check_config(self) -> None:
        if not 0 <= self.config.tie_margin < 0.5:
            raise InputError(f"logprob judge: tie_margin must be in [0, 0.5), not {self.config.tie_margin}")

    def run(self, item: JudgeItem, ctx: RunContext) -> JudgeGen:
        requests = [
            ctx.request("choice_probs", logprob_conversation(item, o), label=f"order {o}", choices=CHOICES)
            for o in ORDERS
        ]
        results = yield requests
        return self._verdict(item, [probs_of(r) for r in results], ctx.trace.model)

    def _verdict(self, item: JudgeItem, results: list[dict[str, float] | str], model: str) -> Verdict:
        raws = [r if isinstance(r, str) else json.dumps(r) for r in results]
        errors = [r for r in results if isinstance(r, str)]
        if errors:
            return self.verdict(item, model, ok=False, orders=list(ORDERS), raw=raws, error=errors[0])
        p_ab, p_ba = results
        prob = p_a_better(p_ab, p_ba)
        picks = [max(CHOICES, key=lambda c, p=p: p[c]) for p in results]  # each order's own top letter
        return self.verdict(
            item,
            model,
            ok=True,
            winner=winner_from_prob(prob, self.config.tie_margin),
            prob_a=prob,
            orders=list(ORDERS),
            order_winners=[to_caller_label(p, o) for p, o in zip(picks, ORDERS, strict=True)],
            scores={
                "probs": dict(zip(ORDERS, results, strict=True)),
                "picks": dict(zip(ORDERS, picks, strict=True)),
            },
            raw=raws,
        )
