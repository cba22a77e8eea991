"""The reward-model judge: a trained reward model scores both answers; P(A better) = sigma(r_A - r_B).

A reward model trained on preference pairs with the Bradley-Terry loss -log sigma(r(x, y_w) - r(x, y_l))
(InstructGPT, Ouyang et al. 2022, arXiv 2203.02155) gives, by construction, P(y_A preferred) = sigma(r_A - r_B).
The judge model is a reward model (``reward-model`` backend: one trained in the studio, or any Hugging Face
sequence classifier with one label). Both answers are scored through the driver in one batch
(``score="reward"``); every item of a judged batch goes in the same call.

Each answer is scored on its own, so the order they are shown in cannot matter: one order ("AB") is recorded,
and the swap-flip rate is 0 by construction. The winner is A or B when P(A better) is more than ``tie_margin``
from 1/2 (default 0: a tie only when the rewards are equal); the raw rewards are in ``scores``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from scipy.special import expit

from studio.backends.base import Backend
from studio.errors import InputError
from studio.judges.base import Judge, JudgeGen, JudgeItem, Verdict, text_of, user
from studio.judges.logprob import winner_from_prob
from studio.strategies.base import RunContext

#: the one order recorded: each answer is scored alone, so position cannot matter
ORDER = "AB"


@dataclass(frozen=True)
class RewardJudgeConfig:
    tie_margin: float = 0.0  # |P(A better) - 1/2| at or below this is a tie


def check_tie_margin(judge: str, tie_margin: float) -> None:
    if isinstance(tie_margin, bool) or not isinstance(tie_margin, int | float) or not 0 <= tie_margin < 0.5:
        raise InputError(f"{judge} judge: tie_margin must be in [0, 0.5), not {tie_margin}")


def read_scores(results: list, labels: tuple[str, ...]) -> tuple[dict[str, float], list[str], str]:
    """(label -> score, raw texts, the first refusal or '') of score requests' completions."""
    scores, raws, error = {}, [], ""
    for label, result in zip(labels, results, strict=True):
        raw, err = text_of(result)
        raws.append(raw or err)
        if err:
            error = error or err
        else:
            scores[label] = float(json.loads(raw))
    return scores, raws, error


def pair_verdict(judge: Judge, item: JudgeItem, model: str, r_a: float, r_b: float, **kw) -> Verdict:
    """A position-free pairwise verdict from the two answers' rewards: P(A better) = sigma(r_A - r_B)."""
    prob = float(expit(r_a - r_b))
    winner = winner_from_prob(prob, judge.config.tie_margin)
    return judge.verdict(
        item, model, ok=True, winner=winner, prob_a=prob, orders=[ORDER], order_winners=[winner], **kw
    )


class RewardModelJudge(Judge):
    mode = "pairwise"
    description = (
        "Reward-model judge: a trained reward model scores both answers, P(A better) = sigma(r_A - r_B); "
        "position cannot matter (one order)"
    )
    source = "InstructGPT reward model, Ouyang et al. 2022, arXiv 2203.02155 (Bradley-Terry preference model)"
    Config = RewardJudgeConfig

    def check_config(self) -> None:
        check_tie_margin("reward_model", self.config.tie_margin)

    def check_backend(self, backend: Backend) -> None:
        if not backend.supports_reward:
            raise InputError(
                f"judge 'reward_model' needs a reward model, and {backend.model_name!r} is not one: pick a "
                "reward model trained in the Train tab, or register a sequence-classification dir with "
                "`studio models add NAME --kind reward --path DIR`"
            )

    def run(self, item: JudgeItem, ctx: RunContext) -> JudgeGen:
        conversation = user(item.question)
        labels = ("A", "B")
        results = yield [
            ctx.request("reward", conversation, label=f"answer {lab}", score="reward", completion=a.text)
            for lab, a in zip(labels, item.answers, strict=True)
        ]
        rewards, raws, error = read_scores(results, labels)
        model = ctx.trace.model
        if error:
            return self.verdict(item, model, ok=False, orders=[ORDER], raw=raws, error=error)
        return pair_verdict(
            self, item, model, rewards["A"], rewards["B"], scores={"reward": rewards}, raw=raws
        )
