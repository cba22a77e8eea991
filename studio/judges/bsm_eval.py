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

from studio.backends.base import Backend, Completion
from studio.errors import InputError
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

    def judge(self, items: Sequence[JudgeItem], backend: Backend) -> list[Verdict]:
        self.check_items(items)
        branches = self.branch(sorted({it.question for it in items}), backend)
        calls = [
            (i, order, criterion)
            for i, it in enumerate(items)
            for order in ORDERS
            for criterion in branches[it.question][0]
        ]
        convs = [self._solve_conversation(items[i], order, c) for i, order, c in calls]
        results = safe_chat(backend, convs, self.config.gen_params())
        by_item: dict[int, list[tuple[str, str, Completion | str]]] = {}
        for (i, order, criterion), result in zip(calls, results, strict=True):
            by_item.setdefault(i, []).append((order, criterion, result))
        return [self._verdict(it, branches[it.question], by_item[i], backend) for i, it in enumerate(items)]

    def branch(self, questions: list[str], backend: Backend) -> dict[str, tuple[list[str], str, list[str]]]:
        """question -> (criteria, raw branch output, notes), one batched call for all questions."""
        convs = [
            user(render("bsm_branch", question=q, max_criteria=str(self.config.max_criteria)))
            for q in questions
        ]
        params = self.config.gen_params(max_new_tokens=self.config.branch_max_new_tokens)
        out = {}
        for q, result in zip(questions, safe_chat(backend, convs, params), strict=True):
            raw, err = text_of(result)
            criteria = parse_criteria(raw, self.config.max_criteria)
            notes = []
            if not criteria:
                criteria = [FALLBACK_CRITERION]
                notes.append(
                    f"branch gave no criteria ({err or 'nothing parsed'}); used one generic criterion"
                )
            out[q] = (criteria, raw, notes)
        return out

    def _solve_conversation(self, item: JudgeItem, order: str, criterion: str) -> list[dict[str, str]]:
        a, b = shown(item, order)
        return user(
            render("bsm_solve", criterion=criterion, question=item.question, answer_a=a.text, answer_b=b.text)
        )

    def _verdict(
        self,
        item: JudgeItem,
        branch: tuple[list[str], str, list[str]],
        solved: list[tuple[str, str, Completion | str]],
        backend: Backend,
    ) -> Verdict:
        criteria, branch_raw, notes = branch
        raws = [branch_raw]
        scores: dict[str, Any] = {"criteria": criteria}
        picks: list[str | None] = []
        errors = []
        for order in ORDERS:
            texts = [text_of(r) for o, _, r in solved if o == order]
            raws += [t for t, _ in texts]
            per = [None if e else parse_criterion_scores(t) for t, e in texts]
            merged = merge(per)
            scores[order] = {
                "per_criterion": per,
                "sum_a": merged and merged[0],
                "sum_b": merged and merged[1],
            }
            picks.append(merged[2] if merged else None)
            if merged is None:
                errors.append(f"order {order}: no criterion gave two scores 1..5")
        order_winners = [to_caller_label(p, o) for p, o in zip(picks, ORDERS, strict=True)]
        scores["picks"] = dict(zip(ORDERS, picks, strict=True))
        winner = combine_orders(order_winners)
        return self.verdict(
            item,
            backend,
            ok=winner is not None,
            winner=winner,
            orders=list(ORDERS),
            order_winners=order_winners,
            scores=scores,
            raw=raws,
            error="; ".join(errors),
            notes=list(notes),
        )
