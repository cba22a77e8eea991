"""System 1: the question, answered directly in one call (the baseline every System 2 method is compared to)."""

from __future__ import annotations

from studio.strategies.base import RunContext, Strategy, StrategyGen, render


class System1(Strategy):
    description = "System 1 baseline: one call, the question answered directly."
    source = "baseline (METHODS.md)"

    def run(self, question: str, ctx: RunContext) -> StrategyGen:
        (out,) = yield [ctx.request("answer", render("system1_answer", question=question))]
        return out.text
