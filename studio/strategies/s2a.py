"""System 2 Attention (S2A), Weston & Sukhbaatar 2023, arXiv 2311.11829.

Step 1 (``rewrite``) regenerates the user's text without opinion (or, in ``relevance``, without unrelated
sentences), in two labelled sections. Step 2 (``answer``) sees only those sections, except in
``keep_original``, which also shows the original text.

The rewrite asks for a JSON schema with one field per labelled section (``prompts/s2a_rewrite_*.schema.json``),
used when the run is ``structured``; the published prompt is sent unchanged either way. The rewrite step records
``parse_ok``: False when a label (or field) was missing or empty and the answer step had to fall back.
"""

from __future__ import annotations

from studio.backends.base import Completion
from studio.strategies.base import RunContext, Strategy, StrategyGen, render
from studio.strategies.parsing import Sections, json_field, json_text, parse_json, parse_sections
from studio.strategies.schemas import load_schema

# Per variant: (rewrite template, answer template, context labels, query labels). The first label is the
# published one; the others are aliases a small model writes instead.
_DEFAULT_LABELS = (
    ("Unbiased text context", "Unbiased context", "Context"),
    ("Question/Query", "Question", "Query"),
)
_RELEVANCE_LABELS = (
    ("Context text related to the question", "Related context", "Context"),
    ("Detailed question", "Question"),
)
VARIANTS = {
    "default": ("s2a_rewrite_default", "s2a_answer_default", *_DEFAULT_LABELS),
    "keep_original": ("s2a_rewrite_default", "s2a_answer_keep_original", *_DEFAULT_LABELS),
    "relevance": ("s2a_rewrite_relevance", "s2a_answer_default", *_RELEVANCE_LABELS),
}


class System2Attention(Strategy):
    description = (
        "System 2 Attention: rewrite the input without opinion or distractors, answer from the rewrite."
    )
    source = "Weston & Sukhbaatar 2023, arXiv 2311.11829"
    variants = ("default", "keep_original", "relevance")

    def run(self, question: str, ctx: RunContext) -> StrategyGen:
        rewrite_tpl, answer_tpl, context_labels, query_labels = VARIANTS[self.variant or "default"]
        rewrite = ctx.request(
            "rewrite", render(rewrite_tpl, question=question), schema=load_schema(rewrite_tpl)
        )
        (out,) = yield [rewrite]
        context, query = self._sections(
            out, rewrite_tpl, context_labels, query_labels, question, rewrite.id, ctx
        )
        answer = ctx.request("answer", render(answer_tpl, context=context, query=query, question=question))
        (final,) = yield [answer]
        return final.text

    @staticmethod
    def _sections(
        out: Completion,
        template: str,
        context_labels: tuple[str, ...],
        query_labels: tuple[str, ...],
        question: str,
        step: str,
        ctx: RunContext,
    ) -> tuple[str, str]:
        """The two sections, with METHODS.md's fallbacks: missing labels -> the whole rewrite, noted."""
        text = out.text
        s = _json_sections(out.text, template) if out.constrained else None
        from_json = s is not None
        if s is None:
            if out.constrained:
                ctx.note("the constrained output is not the expected JSON; read it as free text", step=step)
            s = parse_sections(text, context_labels, query_labels)
        else:  # the answer step and the fallbacks below see the sections, not the JSON
            text = "\n\n".join(p for p in (s.context, s.query) if p)
        ok = s.found_context and s.found_query and bool(s.context or s.query)
        ctx.parsed(
            step,
            context=s.context,
            query=s.query,
            found_context=s.found_context,
            found_query=s.found_query,
            parse_ok=ok and (from_json or not out.constrained),
        )
        if not text.strip():
            ctx.note("the rewrite was empty; the answer step falls back to the original text", step=step)
            return question, ""
        if not (s.found_context or s.found_query):
            ctx.note(
                "the rewrite has neither section label; the answer step uses the whole rewrite", step=step
            )
            return text.strip(), ""
        if not s.found_query:
            ctx.note(
                "the rewrite has no question label; the answer step sees the context section only", step=step
            )
        elif not s.found_context:
            ctx.note(
                "the rewrite has no context label; the text before the question label is the context",
                step=step,
            )
        if not (s.context or s.query):
            ctx.note(
                "both sections of the rewrite are empty; the answer step uses the whole rewrite", step=step
            )
            return text.strip(), ""
        return s.context, s.query


def _json_sections(text: str, template: str) -> Sections | None:
    """The two sections from a constrained rewrite: the schema's first field is the context, its second the
    question. None when the output is not a JSON object."""
    obj = parse_json(text)
    if not isinstance(obj, dict):
        return None
    context_key, query_key = list(load_schema(template)["properties"])
    context, query = json_text(json_field(obj, context_key)), json_text(json_field(obj, query_key))
    return Sections(context or "", query or "", context is not None, query is not None)
