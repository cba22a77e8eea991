"""Branch-Solve-Merge (BSM), Saha et al. 2024, arXiv 2310.15123, for generation.

``branch`` splits the question into up to ``max_branches`` independent sub-questions or aspects; one
``solve`` per branch (batched: they are independent); ``merge`` integrates every solve output into one answer.

The branch step asks for a JSON schema (``prompts/bsm_branch.schema.json``), used when the run is ``structured``,
and records ``parse_ok``: False when no sub-question parsed (or constrained output was not the expected JSON).
"""

from __future__ import annotations

from studio.backends.base import Completion
from studio.strategies.base import RunContext, Strategy, StrategyGen, render
from studio.strategies.parsing import read_list
from studio.strategies.schemas import load_schema


class BranchSolveMerge(Strategy):
    description = "Branch-Solve-Merge: split into sub-questions, solve each (batched), merge into one answer."
    source = "Saha et al. 2024, arXiv 2310.15123"
    variants = ("generation",)

    def run(self, question: str, ctx: RunContext) -> StrategyGen:
        k = ctx.params.max_branches
        branch = ctx.request(
            "branch",
            render("bsm_branch", question=question, max_branches=str(k)),
            schema=load_schema("bsm_branch", max_branches=k),
        )
        (out,) = yield [branch]
        got, from_json = read_list(out.text, out.constrained, "sub_questions")
        if from_json is False:
            ctx.note(NOT_JSON, step=branch.id)
        branches = got[:k]
        ok = bool(branches) and from_json is not False
        ctx.parsed(branch.id, branches=branches, parse_ok=ok)
        if not branches:
            # Nothing to merge: solving the whole question as one branch is the honest degenerate case.
            ctx.note(
                "no sub-question could be parsed from the branch step; solved the question as one branch"
            )
            solve = ctx.request(
                "solve", render("bsm_solve", question=question, branch=question), parent=branch.id
            )
            (only,) = yield [solve]
            return only.text
        solves = yield [
            ctx.request("solve", render("bsm_solve", question=question, branch=b), parent=branch.id, label=b)
            for b in branches
        ]
        ctx.set_best(
            "\n\n".join(f"{b}\n{s.text}" for b, s in zip(branches, solves, strict=True)), "solve (unmerged)"
        )
        merge = ctx.request(
            "merge", render("bsm_merge", question=question, solutions=_format(branches, solves))
        )
        (merged,) = yield [merge]
        if not merged.text.strip():
            ctx.note("the merge output was empty; the final answer is the unmerged solves", step=merge.id)
            return ctx.best or ""
        return merged.text


NOT_JSON = "the constrained output is not the expected JSON; read it as free text"


def _format(branches: list[str], solves: list[Completion]) -> str:
    return "\n\n".join(
        f"Part {i}: {b}\nAnswer: {s.text.strip() or '(no answer)'}"
        for i, (b, s) in enumerate(zip(branches, solves, strict=True), 1)
    )
