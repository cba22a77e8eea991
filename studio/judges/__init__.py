"""Judges: models grading answers. One file per judge, each registered in ``JUDGES`` by name.

- ``additive``: Self-Rewarding additive 5-point score of one answer (arXiv 2401.10020);
- ``pairwise``: MT-Bench [[A]]/[[B]]/[[C]], both orders, disagreement = inconsistent (arXiv 2306.05685);
- ``bsm_eval``: Branch-Solve-Merge evaluation, both orders (arXiv 2310.15123);
- ``logprob``: P("A") vs P("B") from next-token probabilities, both orders averaged (the studio's own).
"""

from studio.judges.base import (
    JUDGES,
    ORDERS,
    Candidate,
    Judge,
    JudgeConfig,
    JudgeItem,
    Verdict,
    combine_orders,
    make_judge,
    to_caller_label,
)

__all__ = [
    "JUDGES",
    "ORDERS",
    "Candidate",
    "Judge",
    "JudgeConfig",
    "JudgeItem",
    "Verdict",
    "combine_orders",
    "make_judge",
    "to_caller_label",
]
