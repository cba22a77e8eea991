"""The studio's log-prob pairwise judge (METHODS.md): read next-token probabilities instead of generating text.

Three variants (``variant``):

- ``"pair"`` (METHODS.md): the pairwise question is asked in both orders, and the next-token probabilities of
  ``A`` and ``B`` are read (``backend.choice_probs``, renormalised over the two letters). P(A better) is the mean
  of P("A") with A shown first and P("B") with A shown second, which cancels a pure position preference. Each
  order's own pick (``order_winners``) is kept, so that swap flips are counted as for the generating judges.
- ``"pointwise"`` (the studio's own): each answer is shown *alone* (``prompts/logprob_point.txt``) and P("Yes") to
  "Is this answer correct and helpful?" is read; no answer is ever shown beside the other, so there is no position
  to prefer (no orders, no swap flips). P(A better) = pA(1 - pB) / (pA(1 - pB) + pB(1 - pA)): the chance that A is
  the one judged good, given that exactly one of the two is.

- ``"pmi"`` (the studio's own; contextual calibration, Zhao et al. 2021, arXiv 2102.09690, applied to the
  answer's likelihood): each answer's log-probability as the model's reply to the question, minus its
  log-probability as the reply to the content-free input "N/A" (``prompts/logprob_content_free.txt``), per
  character of the answer: how much the question makes that answer more likely (pointwise mutual information).
  P(A better) = σ(PMI_A − PMI_B). Four ``sequence_logprob`` scores per item, through the driver; no position.

Every variant's P(A better) (``prob_a``) always exists, even for a tiny model, and every item goes to the backend in
one batch. The winner is A or B when P(A better) is more than ``tie_margin`` away from 1/2, else a tie.

**Measured** on the shipped preference set (``studio.judging.prefset``: written for the studio, with known
preferred answers; positions shuffled with seed 0), default model SmolLM2-135M-Instruct, bf16, CPU. Agreement with
the known preference: S1 counts a tie as a disagreement, S2 leaves ties out (n = decisive verdicts); 95% Wilson CI.
Bands were chosen on *train* (145 pairs), then reported on *test* (96 pairs):

| variant | tie band | train S1 | train S2 (n) | test S1 | test S2 [95% CI] (n) |
|---|---|---|---|---|---|
| pair | 0 | 0.614 | 0.614 (145) | 0.573 | 0.573 [0.47, 0.67] (96) |
| pair | 0.05 | 0.007 | 1.000 (1) | 0.000 | – (0) |
| pair | 0.1 | 0.000 | – (0) | 0.000 | – (0) |
| pointwise | 0 | 0.290 | 0.393 (107) | 0.250 | 0.343 [0.24, 0.46] (70) |
| pointwise | 0.05 | 0.172 | 0.397 (63) | 0.177 | 0.378 [0.25, 0.52] (45) |
| pointwise | 0.1 | 0.048 | 0.438 (16) | 0.083 | 0.421 [0.23, 0.64] (19) |
| pmi | 0 | 0.800 | 0.800 (145) | 0.823 | 0.823 [0.73, 0.89] (96) |
| pmi | 0.05 | 0.434 | 0.900 (70) | 0.448 | 0.956 [0.85, 0.99] (45) |
| pmi | 0.1 | 0.262 | 0.974 (39) | 0.260 | 1.000 [0.87, 1.00] (25) |

- **pair**: P(A better) spans only 0.46..0.57: the model says "A" whoever is shown first (P("A") 0.90 in both
  orders; every one of the 241 pairs flips under the swap), so the old band of 0.05 made 240 of 241 verdicts
  ties. Band 0 (the default, the best S1 on train) makes every verdict decisive: 0.57 on test, a CI that
  includes 1/2. Contextual calibration of the two letters (dividing by P("A"), P("B") for two "N/A" answers,
  per order) did not help: train S2 0.63 with 51 exact ties (bf16 logits).
- **pointwise** P("Yes") is *worse than chance*: it prefers the padded answer (concise 8 of 38 on train).
- **pmi** is the one that carries signal: 0.82 on test without ties at band 0, CI above 1/2 (concise 31/32,
  helpful 28/32, correct 20/32: whether a fact is right is what it sees least). Band 0 has the best S1 on train.
  So it is the default ``variant``. It needs ``sequence_logprob`` (local models; an OpenAI-compatible server
  offers only top log-probs): on such a model, ``variant=pair`` reads the two letters instead.

Measured with ``choice_probs`` / ``sequence_logprob`` on every train and test pair (the features the variants
read), and the ``pmi`` variant checked through this judge to match them on 12 test pairs.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Any

from studio.backends.base import Backend
from studio.errors import InputError
from studio.judges.base import (
    ORDERS,
    Judge,
    JudgeGen,
    JudgeItem,
    Verdict,
    messages,
    pair_values,
    probs_of,
    render,
    text_of,
    to_caller_label,
    user,
)
from studio.strategies.base import RunContext

CHOICES = ("A", "B")
YES_NO = ("Yes", "No")
VARIANTS = ("pair", "pointwise", "pmi")
DEFAULT_VARIANT = "pmi"
DEFAULT_TIE_MARGIN = 0.0


@dataclass(frozen=True)
class LogprobConfig:
    tie_margin: float = DEFAULT_TIE_MARGIN  # |P(A better) - 1/2| at or below this is a tie
    variant: str = DEFAULT_VARIANT  # "pair": both orders, P("A") vs P("B"); "pointwise": P("Yes") per answer


def p_a_better(p_ab: dict[str, float], p_ba: dict[str, float]) -> float:
    """Both orders averaged: P("A") when A is shown first, P("B") when A is shown second."""
    return (p_ab["A"] + p_ba["B"]) / 2


def p_a_better_pointwise(yes_a: float, yes_b: float) -> float:
    """P(A better) from each answer's own P("Yes"): P(A good, B not | exactly one good); 1/2 when undefined."""
    a, b = yes_a * (1 - yes_b), yes_b * (1 - yes_a)
    return a / (a + b) if a + b > 0 else 0.5


def pmi_per_char(logp_question: float, logp_content_free: float, answer: str) -> float:
    """How much the question raises the answer's log-probability, per character of the answer (+1 for its end)."""
    return (logp_question - logp_content_free) / (len(answer) + 1)


def p_a_better_pmi(pmi_a: float, pmi_b: float) -> float:
    return 1 / (1 + math.exp(-(pmi_a - pmi_b)))


def winner_from_prob(prob_a: float, tie_margin: float) -> str:
    if abs(prob_a - 0.5) <= tie_margin:
        return "tie"
    return "A" if prob_a > 0.5 else "B"


def logprob_conversation(item: JudgeItem, order: str) -> list[dict[str, str]]:
    return messages("logprob_pair", **pair_values(item, order))


def pointwise_conversation(item: JudgeItem, k: int) -> list[dict[str, str]]:
    """Answer ``k`` of ``item`` shown alone."""
    return messages("logprob_point", question=item.question, answer=item.answers[k].text)


class LogprobJudge(Judge):
    mode = "pairwise"
    description = (
        "Log-prob judge: pmi (default) = how much the question raises each answer's log-probability, per "
        "character, against a content-free input; pair = P('A') vs P('B') in both orders; pointwise = P('Yes')"
    )
    source = (
        "the studio's own (METHODS.md); pair layout from MT-Bench, arXiv 2306.05685; pmi's content-free input "
        "from contextual calibration, Zhao et al. 2021, arXiv 2102.09690"
    )
    Config = LogprobConfig
    prompts = ("logprob_pair",)
    needs_choice_probs = True

    def check_config(self) -> None:
        if not 0 <= self.config.tie_margin < 0.5:
            raise InputError(f"logprob judge: tie_margin must be in [0, 0.5), not {self.config.tie_margin}")
        if self.config.variant not in VARIANTS:
            raise InputError(
                f"logprob judge: variant must be one of {', '.join(VARIANTS)}, not {self.config.variant!r}"
            )
        if self.config.variant != "pair":  # the template this variant sends is the one in its hash
            self.prompts = (
                ("logprob_point",) if self.config.variant == "pointwise" else ("logprob_content_free",)
            )

    def check_backend(self, backend: Backend) -> None:
        if self.config.variant != "pmi":
            return super().check_backend(backend)
        if not backend.supports_sequence_logprob:
            raise InputError(
                f"logprob judge: variant 'pmi' scores answers by their log-probability, which model "
                f"{backend.model_name!r} does not offer; use a local (transformers) model, or the setting variant=pair"
            )

    def config_dict(self) -> dict[str, Any]:
        """The settings; ``variant`` only when not "pair", so the pair variant keeps its earlier hashes."""
        d = asdict(self.config)
        if d.get("variant") == "pair":
            del d["variant"]
        return d

    def run(self, item: JudgeItem, ctx: RunContext) -> JudgeGen:
        if self.config.variant == "pmi":
            contexts = [
                ("question", user(item.question)),
                ("content-free", user(render("logprob_content_free"))),
            ]
            requests = [
                ctx.request("score", conv, label=f"answer {k}, {where}", score="logprob", completion=a.text)
                for k, a in enumerate(item.answers)
                for where, conv in contexts
            ]
            results = yield requests
            return self._pmi_verdict(item, results, ctx.trace.model)
        if self.config.variant == "pointwise":
            requests = [
                ctx.request(
                    "choice_probs", pointwise_conversation(item, k), label=f"answer {k}", choices=YES_NO
                )
                for k in range(2)
            ]
            results = yield requests
            return self._pointwise_verdict(item, [probs_of(r) for r in results], ctx.trace.model)
        requests = [
            ctx.request("choice_probs", logprob_conversation(item, o), label=f"order {o}", choices=CHOICES)
            for o in ORDERS
        ]
        results = yield requests
        return self._verdict(item, [probs_of(r) for r in results], ctx.trace.model)

    def _verdict(self, item: JudgeItem, results: list[dict[str, float] | str], model: str) -> Verdict:
        raws = [r if isinstance(r, str) else json.dumps(r) for r in results]
        errors = [r for r in results if isinstance(r, str)]
        if errors:
            return self.verdict(item, model, ok=False, orders=list(ORDERS), raw=raws, error=errors[0])
        p_ab, p_ba = results
        prob = p_a_better(p_ab, p_ba)
        picks = [max(CHOICES, key=lambda c, p=p: p[c]) for p in results]  # each order's own top letter
        return self.verdict(
            item,
            model,
            ok=True,
            winner=winner_from_prob(prob, self.config.tie_margin),
            prob_a=prob,
            orders=list(ORDERS),
            order_winners=[to_caller_label(p, o) for p, o in zip(picks, ORDERS, strict=True)],
            scores={
                "probs": dict(zip(ORDERS, results, strict=True)),
                "picks": dict(zip(ORDERS, picks, strict=True)),
            },
            raw=raws,
        )

    def _pmi_verdict(self, item: JudgeItem, results: list[Any], model: str) -> Verdict:
        texts = [text_of(r) for r in results]
        raws = [raw or err for raw, err in texts]
        errors = [err for _, err in texts if err]
        if errors:
            return self.verdict(item, model, ok=False, raw=raws, error=errors[0], scores={"variant": "pmi"})
        lq_a, lc_a, lq_b, lc_b = (float(json.loads(raw)) for raw, _ in texts)
        a, b = item.answers
        pmi = {"A": pmi_per_char(lq_a, lc_a, a.text), "B": pmi_per_char(lq_b, lc_b, b.text)}
        prob = p_a_better_pmi(pmi["A"], pmi["B"])
        return self.verdict(
            item,
            model,
            ok=True,
            winner=winner_from_prob(prob, self.config.tie_margin),
            prob_a=prob,
            scores={
                "variant": "pmi",
                "pmi_per_char": pmi,
                "logprob": {"A": [lq_a, lc_a], "B": [lq_b, lc_b]},  # [after the question, after "N/A"]
            },
            raw=raws,
        )

    def _pointwise_verdict(
        self, item: JudgeItem, results: list[dict[str, float] | str], model: str
    ) -> Verdict:
        raws = [r if isinstance(r, str) else json.dumps(r) for r in results]
        errors = [r for r in results if isinstance(r, str)]
        if errors:
            return self.verdict(
                item, model, ok=False, raw=raws, error=errors[0], scores={"variant": "pointwise"}
            )
        yes = [r["Yes"] for r in results]  # type: ignore[index]
        prob = p_a_better_pointwise(*yes)
        return self.verdict(
            item,
            model,
            ok=True,
            winner=winner_from_prob(prob, self.config.tie_margin),
            prob_a=prob,
            scores={"variant": "pointwise", "p_yes": dict(zip(CHOICES, yes, strict=True))},
            raw=raws,
        )
