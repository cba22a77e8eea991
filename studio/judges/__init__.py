"""Judges: models grading answers. One file per judge, each registered in ``JUDGES`` by name.

- ``additive``: Self-Rewarding additive 5-point score of one answer (arXiv 2401.10020);
- ``pairwise``: MT-Bench [[A]]/[[B]]/[[C]], both orders, disagreement = inconsistent (arXiv 2306.05685);
- ``bsm_eval``: Branch-Solve-Merge evaluation, both orders (arXiv 2310.15123);
- ``logprob``: P(A better) from probabilities instead of text (the studio's own): ``variant`` "pair", P("A") vs
  P("B") in both orders, averaged; "pointwise", P("Yes") per answer; "pmi", each answer's log-probability after
  the question minus after "N/A", per character (the one that carries signal on the default model);
- ``single``: MT-Bench single-answer grading, ``Rating: [[N]]`` 1-10, reference-guided for math (arXiv 2306.05685).
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
