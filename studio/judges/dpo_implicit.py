"""The DPO implicit-reward judge: "your language model is secretly a reward model" (Rafailov et al. 2023).

A policy pi trained with DPO against a reference pi_ref defines the reward r(x, y) = beta * (log pi(y|x) -
log pi_ref(y|x)) (up to a term in x alone, which cancels between two answers to the same x), and its Bradley-Terry
model gives P(y_A preferred) = sigma(r_A - r_B) (arXiv 2305.18290, eq. 5 and section 5).

The judge model is the DPO-trained policy; the reference is its parent in the model registry (the model DPO
started from, which with LoRA is exactly the frozen reference), or the ``reference`` setting. The four log-probs
(policy and reference, each answer) go through the driver in one round (``score="logprob"``, the reference's
with ``backend=``); the backends score the answer tokens as DPO training saw them (chat template, answer and its
end of turn). ``beta`` defaults to the DPO job's own beta (its run's config), else 0.1.

Each answer is scored on its own, so the order they are shown in cannot matter: one order ("AB") is recorded.
The winner is A or B when P(A better) is more than ``tie_margin`` from 1/2 (default 0).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from studio.backends.base import Backend
from studio.errors import InputError
from studio.judges.base import Judge, JudgeGen, JudgeItem, user
from studio.judges.reward_model import ORDER, check_tie_margin, pair_verdict, read_scores
from studio.strategies.base import RunContext

DEFAULT_BETA = 0.1  # trl's and the studio's DPO default
BETA_METHODS = ("dpo", "self_rewarding")  # jobs whose config's beta is a DPO beta


@dataclass(frozen=True)
class DPOImplicitConfig:
    #: the reference model pi_ref ('' = the judge model's parent in the registry)
    reference: str = ""
    #: DPO's beta (None = the judge model's DPO job's beta, else 0.1); it scales the rewards, not the winner
    beta: float | None = None
    tie_margin: float = 0.0  # |P(A better) - 1/2| at or below this is a tie


def job_beta(registry: Any, model: str) -> float | None:
    """The beta of the DPO job that trained ``model``: its lineage, else its run dir's config; None if unknown."""
    from studio.training.rundir import RunDir

    spec = registry.spec(model)
    if spec.training_config.get("method") not in BETA_METHODS:
        return None
    if "beta" in spec.training_config:
        return float(spec.training_config["beta"])
    run = RunDir(registry.settings.runs_dir / spec.training_run)
    if spec.training_run.isdigit() and run.config.exists():
        beta = (run.read_config().get("config") or {}).get("beta")
        return float(beta) if beta is not None else None
    return None


class DPOImplicitJudge(Judge):
    mode = "pairwise"
    description = (
        "DPO implicit-reward judge: r = beta * (log pi(y|x) - log pi_ref(y|x)) of a DPO-trained model and its "
        "reference, P(A better) = sigma(r_A - r_B); position cannot matter (one order)"
    )
    source = "Rafailov et al. 2023, Direct Preference Optimization, arXiv 2305.18290 (sec. 5)"
    Config = DPOImplicitConfig

    def __init__(self, config: Any = None, **overrides: Any) -> None:
        super().__init__(config, **overrides)
        self.reference_backend: Backend | None = None
        self.bound_model = ""

    def check_config(self) -> None:
        check_tie_margin("dpo_implicit", self.config.tie_margin)
        beta = self.config.beta
        if beta is not None and (isinstance(beta, bool) or not isinstance(beta, int | float) or not beta > 0):
            raise InputError(f"dpo_implicit judge: beta must be a number > 0, not {beta!r}")

    def bind(self, registry: Any, judge_model: str) -> None:
        """Load the reference (the ``reference`` setting, else the judge model's parent) and settle beta (the
        setting, else the model's DPO job's, else 0.1); both then count in the config hash."""
        spec = registry.spec(judge_model)
        reference = self.config.reference or spec.parent
        if not reference:
            raise InputError(
                f"judge 'dpo_implicit' compares {judge_model!r} with its reference model, and {judge_model!r} "
                "has no parent in the registry: set the judge's reference (e.g. --set reference=smollm2-135m)"
            )
        if reference == judge_model:
            raise InputError("judge 'dpo_implicit': the reference must be another model than the judge model")
        beta = self.config.beta
        if beta is None:
            beta = job_beta(registry, judge_model) or DEFAULT_BETA
        self.use_reference(registry.backend(reference), judge_model, beta)

    def use_reference(self, reference: Backend, judge_model: str, beta: float) -> None:
        """Judge ``judge_model``'s answers against the loaded ``reference`` with this ``beta`` (:meth:`bind` does
        this from the registry)."""
        self.config = dataclasses.replace(self.config, reference=reference.model_name, beta=float(beta))
        self.check_config()
        self._hashes.clear()  # the settled settings are part of the hash
        self.reference_backend, self.bound_model = reference, judge_model

    def check_backend(self, backend: Backend) -> None:
        if self.reference_backend is None:
            raise InputError(
                "judge 'dpo_implicit' needs its reference model loaded: bind it to the judge model first "
                "(Judge.bind(registry, model))"
            )
        if backend.model_name != self.bound_model:
            raise InputError(
                f"judge 'dpo_implicit' was set up for {self.bound_model!r}, not {backend.model_name!r}"
            )
        for b in (backend, self.reference_backend):
            if not b.supports_sequence_logprob:
                raise InputError(
                    f"judge 'dpo_implicit' reads answer log-probabilities, which {b.model_name!r} does not "
                    "offer; use local (transformers) models"
                )

    def run(self, item: JudgeItem, ctx: RunContext) -> JudgeGen:
        conversation = user(item.question)
        labels = ("A", "B", "ref A", "ref B")
        backends = (None, None, self.reference_backend, self.reference_backend)
        answers = (*item.answers, *item.answers)
        results = yield [
            ctx.request("logprob", conversation, label=lab, score="logprob", completion=a.text, backend=b)
            for lab, a, b in zip(labels, answers, backends, strict=True)
        ]
        logps, raws, error = read_scores(results, labels)
        model = ctx.trace.model
        if error:
            return self.verdict(item, model, ok=False, orders=[ORDER], raw=raws, error=error)
        beta = float(self.config.beta)
        rewards = {s: beta * (logps[s] - logps[f"ref {s}"]) for s in ("A", "B")}
        scores = {
            "reward": rewards,
            "logprob": {s: logps[s] for s in ("A", "B")},
            "ref_logprob": {s: logps[f"ref {s}"] for s in ("A", "B")},
            "beta": beta,
            "reference": self.config.reference,
        }
        return pair_verdict(self, item, model, rewards["A"], rewards["B"], scores=scores, raw=raws)
