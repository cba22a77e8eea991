"""Chain-of-Verification (CoVe), Dhuliawala et al. 2023, arXiv 2309.11495.

Baseline -> plan verifications -> execute verifications -> final verified response. The variants differ in
how the verifications are executed:

- ``joint``: the plan step also answers its questions, with the baseline in view.
- ``two_step``: one prompt answers all the questions; it sees the questions, not the baseline.
- ``factored``: one prompt per question, no baseline in context; the calls go out as one batch.
- ``factor_revise``: ``factored`` plus one cross-check per question (CONSISTENT / INCONSISTENT /
  PARTIALLY CONSISTENT), also batched.

The parsed steps (the plan, the joint plan, the 2-step answers, the cross-checks) ask for a JSON schema
(``prompts/<template>.schema.json``), used when the run is ``structured``. A constrained output is read as JSON;
free text (or JSON that does not decode) goes through the free-text parsers. Each parsed step records
``parse_ok``: False when the reading had to fall back (no questions, statements dropped, answers paired by
position, no verdict, or constrained output that was not the expected JSON).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

from studio.backends.base import Completion
from studio.strategies.base import (
    RunContext,
    StepRequest,
    Strategy,
    StrategyGen,
    render,
    render_messages,
)
from studio.strategies.parsing import (
    json_field,
    json_salvage_field,
    json_strings,
    json_text,
    looks_like_question,
    parse_answers,
    parse_json,
    parse_qa_pairs,
    parse_verdict,
    read_list,
)
from studio.strategies.schemas import load_schema

Sub = Generator[list[StepRequest], list[Completion], "list[Verification]"]


@dataclass
class Verification:
    question: str
    answer: str
    cross_checked: bool = False  # factor_revise only
    verdict: str | None = None  # None when the cross-check gave no verdict
    detail: str = ""


class ChainOfVerification(Strategy):
    description = "Chain-of-Verification: draft, plan fact-checking questions, answer them, revise."
    source = "Dhuliawala et al. 2023, arXiv 2309.11495"
    variants = ("joint", "two_step", "factored", "factor_revise")
    default_variant = "factored"

    def run(self, question: str, ctx: RunContext) -> StrategyGen:
        (base,) = yield [ctx.request("baseline", render("cove_baseline", question=question))]
        baseline = base.text
        ctx.set_best(baseline, "baseline")
        if self.variant == "joint":
            checks = yield from self._joint(question, baseline, ctx)
        else:
            checks = yield from self._plan_and_execute(question, baseline, ctx)
        if not checks:
            ctx.note(
                "no verification question could be parsed from the plan; the final answer is the baseline"
            )
            return baseline
        final_req = ctx.request(
            "final_verified",
            render(
                "cove_final_verified", question=question, baseline=baseline, verifications=_format(checks)
            ),
        )
        (final,) = yield [final_req]
        if not final.text.strip():
            ctx.note(
                "the final verified response was empty; the final answer is the baseline", step=final_req.id
            )
            return baseline
        return final.text

    # -- stage 2 (+3 for joint) ----------------------------------------------------------------------------------
    def _joint(self, question: str, baseline: str, ctx: RunContext) -> Sub:
        cap = ctx.params.max_questions
        req = ctx.request(
            "plan_verifications",
            render_messages("cove_plan_verifications_joint", question=question, baseline=baseline),
            schema=load_schema("cove_plan_verifications_joint", max_questions=cap),
        )
        (out,) = yield [req]
        pairs = _json_pairs(out) if out.constrained else None
        from_json = pairs is not None
        if pairs is None:
            if out.constrained:
                ctx.note(NOT_JSON, step=req.id)
            pairs = parse_qa_pairs(out.text, cap=cap)
        pairs = pairs[:cap]
        missing = any(not a for _, a in pairs)
        ok = bool(pairs) and not missing and (from_json or not out.constrained)
        ctx.parsed(req.id, questions=[q for q, _ in pairs], answers=[a for _, a in pairs], parse_ok=ok)
        if missing:
            ctx.note("some planned questions came without an answer", step=req.id)
        return [Verification(q, a) for q, a in pairs]

    def _plan_and_execute(self, question: str, baseline: str, ctx: RunContext) -> Sub:
        plan = ctx.request(
            "plan_verifications",
            render_messages("cove_plan_verifications", question=question, baseline=baseline),
            schema=load_schema("cove_plan_verifications", max_questions=ctx.params.max_questions),
        )
        (out,) = yield [plan]
        items, from_json = read_list(out.text, out.constrained, "questions")
        if from_json is False:
            ctx.note(NOT_JSON, step=plan.id)
        # statements are not verification questions (small models restate the response instead)
        kept = [q for q in items if looks_like_question(q)]
        if len(kept) < len(items):
            ctx.note(f"dropped {len(items) - len(kept)} planned line(s) that are not questions", step=plan.id)
        questions = kept[: ctx.params.max_questions]
        ok = bool(questions) and len(kept) == len(items) and from_json is not False
        ctx.parsed(plan.id, questions=questions, parse_ok=ok)
        if not questions:
            return []
        if self.variant == "two_step":
            return (yield from self._two_step(questions, plan.id, ctx))
        checks, ids = yield from self._factored(questions, plan.id, ctx)
        if self.variant == "factor_revise":
            yield from self._cross_check(checks, ids, baseline, ctx)
        return checks

    # -- stage 3 -------------------------------------------------------------------------------------------------
    def _two_step(self, questions: list[str], plan_id: str, ctx: RunContext) -> Sub:
        numbered = "\n".join(f"{i}. {q}" for i, q in enumerate(questions, 1))
        n = len(questions)
        req = ctx.request(
            "execute_verifications",
            render("cove_execute_verifications_two_step", questions=numbered),
            parent=plan_id,
            schema=load_schema("cove_execute_verifications_two_step", n=n),
        )
        (out,) = yield [req]
        got = json_strings(json_field(parse_json(out.text), "answers")) if out.constrained else None
        if got is not None:
            answers, matched = (got + [""] * n)[:n], len(got) == n
        else:
            if out.constrained:
                ctx.note(NOT_JSON, step=req.id)
            answers, matched = parse_answers(out.text, n)
        ctx.parsed(req.id, answers=answers, parse_ok=matched and (got is not None or not out.constrained))
        if not matched:
            ctx.note(f"expected {len(questions)} numbered answers; paired them by position", step=req.id)
        return [Verification(q, a) for q, a in zip(questions, answers, strict=True)]

    def _factored(
        self, questions: list[str], plan_id: str, ctx: RunContext
    ) -> Generator[list[StepRequest], list[Completion], tuple[list[Verification], list[str]]]:
        # The prompt holds the question only: not the baseline, whose errors the answer could copy.
        reqs = [
            ctx.request(
                "execute_verification",
                render("cove_execute_verification_factored", question=q),
                parent=plan_id,
                label=q,
            )
            for q in questions
        ]
        outs = yield reqs
        return [Verification(q, o.text) for q, o in zip(questions, outs, strict=True)], [r.id for r in reqs]

    def _cross_check(
        self, checks: list[Verification], ids: list[str], baseline: str, ctx: RunContext
    ) -> Generator[list[StepRequest], list[Completion], None]:
        reqs = [
            ctx.request(
                "cross_check",
                render("cove_cross_check", baseline=baseline, question=v.question, answer=v.answer),
                parent=parent,
                label=v.question,
                schema=load_schema("cove_cross_check"),
            )
            for v, parent in zip(checks, ids, strict=True)
        ]
        outs = yield reqs
        for v, req, out in zip(checks, reqs, outs, strict=True):
            v.cross_checked = True
            read = _json_verdict(out) if out.constrained else None
            if read is None and out.constrained:
                ctx.note(NOT_JSON, step=req.id)
            elif read is not None and parse_json(out.text) is None:
                ctx.note(
                    "the JSON was cut off in its detail; the verdict is read, the detail is partial",
                    step=req.id,
                )
            v.verdict, v.detail = read or parse_verdict(out.text)
            ok = v.verdict is not None and (read is not None or not out.constrained)
            ctx.parsed(req.id, verdict=v.verdict, detail=v.detail, parse_ok=ok)
            if v.verdict is None:
                ctx.note("no CONSISTENT / INCONSISTENT / PARTIALLY CONSISTENT verdict found", step=req.id)


NOT_JSON = "the constrained output is not the expected JSON; read it as free text"


def _json_pairs(out: Completion) -> list[tuple[str, str]] | None:
    """The joint plan's (question, answer) pairs from its JSON, or None when it is not the expected JSON."""
    items = json_field(parse_json(out.text), "verifications")
    if not isinstance(items, list):
        return None
    pairs = []
    for item in items:
        q, a = json_text(json_field(item, "question")), json_text(json_field(item, "question_answer"))
        if q:
            pairs.append((q, a or ""))
    return pairs


def _json_verdict(out: Completion) -> tuple[str, str] | None:
    """A cross-check's (verdict, detail) from its JSON, or None when it has no readable verdict. JSON cut off at
    the token cap while writing the detail still has its verdict (the first field): it is read, with the detail
    as far as it got."""
    obj = parse_json(out.text)
    if obj is None:
        verdict, _ = parse_verdict(json_salvage_field(out.text, "verdict") or "")
        if verdict is None:
            return None
        return verdict, json_salvage_field(out.text, "verdict_detail", partial=True) or ""
    verdict, _ = parse_verdict(json_text(json_field(obj, "verdict")) or "")
    if verdict is None:
        return None
    return verdict, json_text(json_field(obj, "verdict_detail")) or ""


def _format(checks: list[Verification]) -> str:
    """The verification block of the final prompt: each Q/A pair, plus its cross-check in factor_revise."""
    blocks = []
    for i, v in enumerate(checks, 1):
        lines = [f"{i}. Question: {v.question}", f"   Answer: {v.answer or '(no answer)'}"]
        if v.cross_checked:
            detail = f" ({v.detail})" if v.detail else ""
            lines.append(f"   Cross-check: {v.verdict or 'NO VERDICT'}{detail}")
        blocks.append("\n".join(lines))
    return "\n".join(blocks)
