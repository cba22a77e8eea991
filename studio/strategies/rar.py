"""Rephrase and Respond (RaR), Deng et al. 2023, arXiv 2311.04205: let the model restate the question in its own
words before it answers.

- ``one_step``: one call, the question followed by "Rephrase and expand the question, and respond."
- ``two_step`` (default): ``rephrase`` asks the model to rephrase and expand the question, keeping all its
  information; ``answer`` then shows the original and the rephrased question together and asks for the answer
  to the original. The rephrasing is stripped of the quotes the model often wraps it in, as the authors' code does.

The prompts are verbatim from the authors' code (``prompts/rar_*.txt`` say where). Yu et al. 2024 distil RaR into
System 1 well.
"""

from __future__ import annotations

from studio.strategies.base import RunContext, Strategy, StrategyGen, render


def unquote(text: str) -> str:
    """The rephrased question without surrounding double quotes (the authors' code strips them too)."""
    text = (text or "").strip()
    if len(text) >= 2 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    return text


class RephraseAndRespond(Strategy):
    description = "Rephrase and Respond: the model rephrases and expands the question, then answers it."
    source = "Deng et al. 2023, arXiv 2311.04205"
    variants = ("one_step", "two_step")
    default_variant = "two_step"

    def run(self, question: str, ctx: RunContext) -> StrategyGen:
        if self.variant == "one_step":
            (out,) = yield [ctx.request("answer", render("rar_one_step", question=question))]
            return out.text
        rephrase = ctx.request("rephrase", render("rar_rephrase", question=question))
        (out,) = yield [rephrase]
        rephrased = unquote(out.text)
        if not rephrased:
            ctx.note(
                "the rephrasing was empty; the answer step shows the original question twice",
                step=rephrase.id,
            )
            rephrased = question
        ctx.parsed(rephrase.id, rephrased=rephrased)
        answer = ctx.request(
            "answer", render("rar_answer", question=question, rephrased=rephrased), parent=rephrase.id
        )
        (final,) = yield [answer]
        return final.text
