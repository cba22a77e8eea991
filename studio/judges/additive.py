"""Self-Rewarding additive 5-point judge (Yuan et al. 2024, arXiv 2401.10020): the published prompt, verbatim.

Each answer is judged ``n`` times (the paper: 3, sampled) and the parsed scores are averaged. A sample whose
output has no ``Score: N`` with N in 0..5 is a failed sample; the verdict fails only when every sample failed.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from studio.backends.base import Backend
from studio.errors import InputError
from studio.judges.base import (
    JUDGES,
    Judge,
    JudgeConfig,
    JudgeItem,
    Verdict,
    render,
    safe_chat,
    text_of,
    user,
)

# "Score: 4", "**Score:** 4", "Score: 4/5", "score: 4 points"; the last one in the text is the conclusion.
_SCORE = re.compile(r"score\s*(?:\*\*)?\s*[:=]\s*(?:\*\*)?\s*(\d+(?:\.\d+)?)(?!\.?\d)", re.IGNORECASE)


def parse_score(text: str, top: int = 5) -> float | None:
    """The last ``Score: N`` in ``text`` if 0 <= N <= ``top``, else None."""
    found = _SCORE.findall(text or "")
    if not found:
        return None
    value = float(found[-1])
    return value if 0 <= value <= top else None


@dataclass(frozen=True)
class AdditiveConfig(JudgeConfig):
    n: int = 3  # samples per answer, averaged (the paper: 3)
    temperature: float = 0.7  # sampling, so that the n samples differ
    top_p: float = 0.9
    max_new_tokens: int = 256  # "justify ... up to 100 words", then the score


@JUDGES.register("additive")
class AdditiveJudge(Judge):
    mode = "single"
    description = "Self-Rewarding additive 5-point score of one answer, averaged over n samples"
    source = "Yuan et al. 2024, Self-Rewarding Language Models, arXiv 2401.10020"
    Config = AdditiveConfig
    prompts = ("self_rewarding_additive",)

    def check_config(self) -> None:
        super().check_config()
        if self.config.n < 1:
            raise InputError(f"additive judge: n must be >= 1, not {self.config.n}")
        if self.config.n > 1 and self.config.temperature == 0:
            raise InputError(
                f"additive judge: {self.config.n} greedy samples would be identical; "
                "set temperature > 0 or n = 1"
            )

    def judge(self, items: Sequence[JudgeItem], backend: Backend) -> list[Verdict]:
        self.check_items(items)
        n = self.config.n
        convs = [
            user(render("self_rewarding_additive", prompt=it.question, response=it.answers[0].text))
            for it in items
            for _ in range(n)
        ]
        results = safe_chat(backend, convs, self.config.gen_params())
        return [self._verdict(it, results[i * n : (i + 1) * n], backend) for i, it in enumerate(items)]

    def _verdict(self, item: JudgeItem, results: list, backend: Backend) -> Verdict:
        raws, errors = zip(*(text_of(r) for r in results), strict=True)
        samples = [parse_score(t) if not e else None for t, e in zip(raws, errors, strict=True)]
        valid = [s for s in samples if s is not None]
        failed = len(samples) - len(valid)
        scores = {"samples": samples, "failed_samples": failed}
        notes = [f"{failed} of {len(samples)} samples had no readable score"] if failed and valid else []
        error = "" if valid else (next((e for e in errors if e), "") or "no 'Score: N' (N in 0..5) found")
        return self.verdict(
            item,
            backend,
            ok=bool(valid),
            rating=sum(valid) / len(valid) if valid else None,
            orders=["A"],
            scores=scores,
            raw=list(raws),
            error=error,
            notes=notes,
        )
