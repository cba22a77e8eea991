"""Branch-Solve-Merge as a judge (Saha et al. 2024, arXiv 2310.15123), in both orders.

1. **branch**: from the question alone, propose up to ``max_criteria`` evaluation criteria;
2. **solve**: one call per criterion and order, scoring answers A and B from 1 to 5;
3. **merge**: sum each answer's scores over the criteria whose output parsed.

Each order's winner is the answer with the larger sum (equal sums: a tie). A wins only if both orders agree;
a disagreement is 'inconsistent', which counts as a tie. The branch depends on the question only, so one branch
call per distinct question serves both orders. Rounds are batched across every item.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from studio.backends.base import Completion
from studio.errors import InputError
from studio.judges.base import (
    ORDERS,
    Judge,
    JudgeConfig,
    JudgeGen,
    JudgeItem,
    load_schema,
    messages,
    pair_values,
    read,
    text_of,
)
from studio.strategies.base import RunContext
from studio.strategies.parsing import json_field, json_strings, parse_json

#: used when the branch output yields no criterion; the verdict notes it
FALLBACK_CRITERION = "Overall quality: how helpful, relevant, accurate and detailed the answer is"

_MARKER = re.compile(r"^\s*(?:\(?\d+[.):]|[-*•]|criterion\s*\d*\s*[:.)-])\s*", re.IGNORECASE)
_SCORE = re.compile(
    r"(?:assistant|answer|response)?\s*\b([AB])\b(?:'s)?(?:\s+score)?\s*\**\s*[:=]\s*\**\s*(\d+)(?:\s*/\s*5)?",
    re.IGNORECASE,
)


def parse_criteria(text: str, cap: int = 5) -> list[str]:
    """Criteria from the branch output: numbered or bulleted lines, or plain lines; header lines are dropped."""
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    marked = [_MARKER.sub("", ln, count=1) for ln in lines if _MARKER.match(ln)]
    items = marked or lines
    out: list[str] = []
    for item in items:
        item = item.replace("**", "").strip().strip("\"'`").strip()
        is_header = item.endswith(":") and len(item.split()) <= 5
        key = item.casefold()
        if item and re.search(r"\w", item) and not is_header and key not in {o.casefold() for o in out}:
            out.append(item)
    return out[:cap]


def parse_criterion_scores(text: str) -> tuple[int, int] | None:
    """(score of A, score of B) from the last "Assistant A: N" and "Assistant B: N" lines; None unless both are 1..5."""
    found: dict[str, int] = {}
    for letter, value in _SCORE.findall(text or ""):
        found[letter.upper()] = int(value)  # later matches win: the conclusion comes last
    a, b = found.get("A"), found.get("B")
    if a is None or b is None or not (1 <= a <= 5 and 1 <= b <= 5):
        return None
    return a, b


def json_criterion_scores(obj: object) -> tuple[int, int] | None:
    """(score of A, score of B) from a structured solve (``{"explanation", "score_assistant_a", "score_assistant_b"}``)."""
    a, b = json_field(obj, "score_assistant_a"), json_field(obj, "score_assistant_b")
    if not all(isinstance(x, int) and not isinstance(x, bool) and 1 <= x <= 5 for x in (a, b)):
        return None
    return a, b


def merge(per_criterion: Sequence[tuple[int, int] | None]) -> tuple[int, int, str] | None:
    """Sum the parsed criteria: (sum A, sum B, the order's pick 'A'|'B'|'tie'); None if no criterion parsed."""
    parsed = [s for s in per_criterion if s is not None]
    if not parsed:
        return None
    sa, sb = sum(s[0] for s in parsed), sum(s[1] for s in parsed)
    return sa, sb, "A" if sa > sb else "B" if sb > sa else "tie"


@dataclass(frozen=True)
class BSMEvalConfig(JudgeConfig):
    max_criteria: int = 5
    branch_max_new_tokens: int = 256
    max_new_tokens: int = 384  # per solve call: an explanation, then the two score lines


class BSMEvalJudge(Judge):
    mode = "pairwise"
    description = (
        "Branch-Solve-Merge judge: criteria from the question, 1-5 per criterion, summed, both orders"
    )
    source = "Saha et al. 2024, Branch-Solve-Merge Improves Large Language Model Evaluation, arXiv 2310.15123"
    Config = BSMEvalConfig
    prompts = ("bsm_branch", "bsm_solve")

    def check_config(self) -> None:
        super().check_config()
        if not 1 <= self.config.max_criteria <= 10:
            raise InputError(f"bsm_eval: max_criteria must be 1..10, not {self.config.max_criteria}")
        self.config.gen_params(max_new_tokens=self.config.branch_max_new_tokens)

    def run(self, item: JudgeItem, ctx: RunContext) -> JudgeGen:
        """branch (one call per distinct question in the batch: ``shared``), then a solve per order and criterion;
        the merge is arithmetic (:func:`merge_orders`)."""
        prompt = messages("bsm_branch", question=item.question, max_criteria=str(self.config.max_criteria))
        schema = load_schema("bsm_branch", max_criteria=self.config.max_criteria)
        branch = ctx.request(
            "branch", prompt, shared=True, max_new_tokens=self.config.branch_max_new_tokens, schema=schema
        )
        (out,) = yield [branch]
        criteria, notes = self._criteria(out)
        refused = bool(text_of(out)[1])
        ctx.parsed(branch.id, criteria=criteria, **({} if refused else {"parse_ok": not notes}))
        for note in notes:
            ctx.note(note, step=branch.id)
        calls = [(order, c) for order in ORDERS for c in criteria]
        solve_schema = load_schema("bsm_solve")
        requests = [
            ctx.request(
                "solve",
                solve_conversation(item, o, c),
                parent=branch.id,
                label=f"{o}: {c}",
                schema=solve_schema,
            )
            for o, c in calls
        ]
        raws, _, per = read(
            ctx, requests, (yield requests), parse_criterion_scores, "scores", json_criterion_scores
        )
        scores, picks, errors = merge_orders(criteria, calls, per)
        raw = [text_of(out)[0], *raws]
        return self.swap_verdict(
            item, ctx.trace.model, picks, scores=scores, raw=raw, error="; ".join(errors), notes=notes
        )

    def _criteria(self, out: Completion) -> tuple[list[str], list[str]]:
        """The branch's criteria, or the generic one (noted) when none parsed."""
        raw, err = text_of(out)
        cap = self.config.max_criteria
        if out.constrained and not err:
            got = json_strings(json_field(parse_json(raw), "criteria"))
            if got:
                return got[:cap], []
            criteria = parse_criteria(raw, cap)
            if criteria:
                return criteria, ["the constrained output is not the expected JSON; read it as free text"]
        criteria = parse_criteria(raw, cap)
        if criteria:
            return criteria, []
        return [FALLBACK_CRITERION], [
            f"branch gave no criteria ({err or 'nothing parsed'}); used one generic criterion"
        ]


def solve_conversation(item: JudgeItem, order: str, criterion: str) -> list[dict[str, str]]:
    return messages("bsm_solve", criterion=criterion, **pair_values(item, order))


def merge_orders(
    criteria: list[str], calls: list[tuple[str, str]], per: list[tuple[int, int] | None]
) -> tuple[dict[str, Any], list[str | None], list[str]]:
    """MERGE in each order: (scores, each order's pick or None, errors). ``per`` holds each solve call's
    parsed (score A, score B), ``calls`` its (order, criterion)."""
    scores: dict[str, Any] = {"criteria": criteria}
    picks: list[str | None] = []
    errors = []
    for order in ORDERS:
        mine = [p for (o, _), p in zip(calls, per, strict=True) if o == order]
        merged = merge(mine)
        scores[order] = {"per_criterion": mine, "sum_a": merged and merged[0], "sum_b": merged and merged[1]}
        picks.append(merged[2] if merged else None)
        if merged is None:
            errors.append(f"order {order}: no criterion gave two scores 1..5")
    scores["picks"] = dict(zip(ORDERS, picks, strict=True))
    return scores, picks, errors
