"""Zero-shot Chain-of-Thought: reason step by step, then give the answer after an ``Answer:`` marker."""

from __future__ import annotations

from studio.strategies.base import RunContext, Strategy, StrategyGen, render
from studio.strategies.parsing import split_cot


class ChainOfThought(Strategy):
    description = "Chain-of-Thought: one call that reasons step by step; the answer follows 'Answer:'."
    source = "Kojima et al. 2022, arXiv 2205.11916; Wei et al. 2022, arXiv 2201.11903"

    def run(self, question: str, ctx: RunContext) -> StrategyGen:
        req = ctx.request("answer", render("cot_answer", question=question))
        (out,) = yield [req]
        split = split_cot(out.text)
        ctx.parsed(
            req.id,
            reasoning=split.reasoning,
            final=split.final,
            marker_found=split.marker_found,
            parse_ok=split.marker_found,
        )
        if not split.marker_found:
            ctx.note("no 'Answer:' marker in the output; the final answer is its last line", step=req.id)
        return split.final
