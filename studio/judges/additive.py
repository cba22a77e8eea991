"""Self-Rewarding additive 5-point judge (Yuan et al. 2024, arXiv 2401.10020): the published prompt, verbatim.

Each answer is judged ``n`` times (the paper: 3, sampled) and the parsed scores are averaged. A sample whose
output has no ``Score: N`` with N in 0..5 is a failed sample; the verdict fails only when every sample failed.

``score_mode="logprob"`` (the studio's own reading, for small local models that rarely write a parsable score):
the same verbatim prompt, then an assistant turn prefilled with ``Score: ``; the next-token probabilities of
"0".."5" give the score as the expectation sum k * P(k). It always exists, is calibrated, and is read for every
item in one batched ``choice_probs`` call (``n``, temperature and the token budget do not apply).

``structured=True``: each sample is generated under ``prompts/self_rewarding_additive.schema.json`` (the
justification, then the score, the paper's order), its justification bounded by :func:`explanation_cap` of
``max_new_tokens`` so that the JSON closes within the budget. The default model never writes a free-text
``Score: N`` (measured: 0 of 8 samples at 64 and 112 tokens), and under the schema scores every sample (8 of 8);
:func:`paper_text` gives such a sample back in the published form.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from studio.backends.base import Backend
from studio.errors import InputError
from studio.judges.base import (
    Judge,
    JudgeConfig,
    JudgeGen,
    JudgeItem,
    Verdict,
    load_schema,
    messages,
    probs_of,
    read,
)
from studio.judges.single import explanation_cap
from studio.strategies.base import RunContext
from studio.strategies.parsing import json_field, parse_json

# "Score: 4", "**Score:** 4", "Score: 4/5", "score: 4 points"; the last one in the text is the conclusion.
_SCORE = re.compile(r"score\s*(?:\*\*)?\s*[:=]\s*(?:\*\*)?\s*(\d+(?:\.\d+)?)(?!\.?\d)", re.IGNORECASE)


def parse_score(text: str, top: int = 5) -> float | None:
    """The last ``Score: N`` in ``text`` if 0 <= N <= ``top``, else None."""
    found = _SCORE.findall(text or "")
    if not found:
        return None
    value = float(found[-1])
    return value if 0 <= value <= top else None


def json_score(obj: object, top: int = 5) -> float | None:
    """The score of a structured verdict (``{"justification": ..., "score": 4}``) if 0 <= score <= ``top``."""
    value = json_field(obj, "score")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if 0 <= value <= top else None


def paper_text(raw: str) -> str:
    """A structured sample (``{"justification": ..., "score": N}``) in the form the published prompt asks for:
    the justification, then ``Score: N``; any other text as it is."""
    obj = parse_json(raw or "")
    score = json_score(obj)
    justification = json_field(obj, "justification")
    if score is None or not isinstance(justification, str):
        return raw
    return f"{justification.strip()}\nScore: {int(score)}"


@dataclass(frozen=True)
class AdditiveConfig(JudgeConfig):
    n: int = 3  # samples per answer, averaged (the paper: 3)
    temperature: float = 0.7  # sampling, so that the n samples differ
    top_p: float = 0.9
    max_new_tokens: int = 256  # "justify ... up to 100 words", then the score
    score_mode: str = "text"  # text: parse the generated "Score: N"; logprob: sum k * P(k) after "Score: "


SCORE_MODES = ("text", "logprob")
DIGITS = tuple(str(k) for k in range(6))  # the additive scale, 0..5
PREFILL = "Score: "


class AdditiveJudge(Judge):
    mode = "single"
    description = "Self-Rewarding additive 5-point score of one answer, averaged over n samples"
    source = "Yuan et al. 2024, Self-Rewarding Language Models, arXiv 2401.10020"
    Config = AdditiveConfig
    prompts = ("self_rewarding_additive",)

    def check_config(self) -> None:
        super().check_config()
        if self.config.score_mode not in SCORE_MODES:
            raise InputError(
                f"additive judge: score_mode must be one of {', '.join(SCORE_MODES)}, "
                f"not {self.config.score_mode!r}"
            )
        if self.config.score_mode == "logprob":
            return  # one deterministic reading per item: n and the sampling settings do not apply
        if self.config.n < 1:
            raise InputError(f"additive judge: n must be >= 1, not {self.config.n}")
        if self.config.n > 1 and self.config.temperature == 0:
            raise InputError(
                f"additive judge: {self.config.n} greedy samples would be identical; "
                "set temperature > 0 or n = 1"
            )

    def config_dict(self) -> dict[str, Any]:
        """The settings; ``score_mode`` only when not the default "text", so text-mode hashes (and with them
        the resume of judging jobs over stored verdicts) stay what they were before log-prob mode existed."""
        d = super().config_dict()
        if d.get("score_mode") == "text":
            del d["score_mode"]
        return d

    def check_backend(self, backend: Backend) -> None:
        if self.config.score_mode == "logprob" and not backend.supports_choice_probs:
            raise InputError(
                f"additive judge: score_mode 'logprob' reads next-token probabilities, which model "
                f"{backend.model_name!r} does not offer; use a local (transformers) model or score_mode 'text'"
            )

    def run(self, item: JudgeItem, ctx: RunContext) -> JudgeGen:
        conv = messages("self_rewarding_additive", prompt=item.question, response=item.answers[0].text)
        if self.config.score_mode == "logprob":  # the verbatim prompt, then the assistant's "Score: "
            prefilled = [*conv, {"role": "assistant", "content": PREFILL}]
            (result,) = yield [ctx.request("choice_probs", prefilled, choices=DIGITS)]
            return self._logprob_verdict(item, probs_of(result), ctx.trace.model)
        n = self.config.n
        schema = load_schema(
            "self_rewarding_additive", max_justification=explanation_cap(self.config.max_new_tokens)
        )
        requests = [
            ctx.request("judge", conv, label=f"sample {k + 1} of {n}", schema=schema) for k in range(n)
        ]
        raws, errors, samples = read(ctx, requests, (yield requests), parse_score, "score", json_score)
        valid = [s for s in samples if s is not None]
        failed = len(samples) - len(valid)
        notes = [f"{failed} of {len(samples)} samples had no readable score"] if failed and valid else []
        error = "" if valid else (next((e for e in errors if e), "") or "no 'Score: N' (N in 0..5) found")
        return self.verdict(
            item,
            ctx.trace.model,
            ok=bool(valid),
            rating=sum(valid) / len(valid) if valid else None,
            orders=["A"],
            scores={"samples": samples, "failed_samples": failed},
            raw=raws,
            error=error,
            notes=notes,
        )

    def _logprob_verdict(self, item: JudgeItem, probs: dict[str, float] | str, model: str) -> Verdict:
        if isinstance(probs, str):  # this item alone was refused (e.g. too long a prompt)
            return self.verdict(
                item, model, ok=False, orders=["A"], error=probs, scores={"reading": "logprob"}
            )
        expected = sum(k * probs[d] for k, d in enumerate(DIGITS))
        return self.verdict(
            item,
            model,
            ok=True,
            rating=expected,
            orders=["A"],
            scores={"reading": "logprob", "probs": probs, "argmax": int(max(probs, key=probs.__getitem__))},
            raw=[json.dumps(probs)],
            notes=[f"log-prob reading: sum k * P(k) over '0'..'5' after '{PREFILL}', not a generated score"],
        )
