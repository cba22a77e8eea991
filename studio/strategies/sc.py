"""Self-consistency, Wang et al. 2022, arXiv 2203.11171: sample several reasoning paths, vote on their answers.

A wrapper over another strategy, named by the variant (``sc:cot``, the default; ``sc:system1``, ``sc:rar``,
``sc:s2a``, ``sc:cove``, ``sc:bsm``, each with its own default variant). It runs ``samples`` copies of the inner
strategy in lockstep inside its own generator: each round yields the union of the copies' requests, so the
paths' steps go to the model as ONE batch (every path's requests carry the same params: temperature
``sc_temperature``, the run's seed and top-p), and splits the completions back to their paths. Each path's
steps are labelled "path i".

Each path's final answer (what the inner strategy returns) is normalised as a vote
(:func:`~studio.strategies.parsing.normalize_answer`: the number after the last "Answer:" / "answer is", else
the last number, else the SQuAD-normalised text); the majority wins, a tie goes to the earliest path, and the
run returns the majority's first path's own text. The vote share is the confidence: ``Trace.summary["vote"]``
holds every path, the tally and the share (updated live as paths finish), and a run note says
"majority 3/5 (60%)".

Paper: GSM8K, PaLM-540B, CoT 56.5% -> self-consistency 74.4% (40 paths, temperature 0.5-0.7).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from studio.backends.base import Completion, Conversation
from studio.strategies.base import (
    RunContext,
    StepRequest,
    Strategy,
    StrategyGen,
    make_strategy,
)
from studio.strategies.parsing import normalize_answer

#: the strategies a self-consistency run can wrap (the variant names the inner strategy)
INNER = ("cot", "system1", "rar", "s2a", "cove", "bsm")


class _PathContext(RunContext):
    """One path's view of the run's context: the same trace, step ids and params, but every request it makes
    is sampled at ``temperature`` and labelled "path i"; its notes name the path, its best answer is its own."""

    def __init__(self, parent: RunContext, path: int, temperature: float) -> None:
        super().__init__(parent.question, parent.params, parent.trace)
        self.parent, self.path, self.temperature = parent, path, temperature
        self.step_ids: list[str] = []

    def request(
        self,
        name: str,
        prompt: str | Conversation,
        *,
        label: str = "",
        **kw: Any,
    ) -> StepRequest:
        kw["temperature"] = self.temperature  # one value for every path, so they share one batch
        tag = f"path {self.path}"
        req = self.parent.request(name, prompt, label=f"{tag}: {label}" if label else tag, **kw)
        self.step_ids.append(req.id)
        return req

    def note(self, text: str, step: str | None = None) -> None:
        self.parent.note(text if step is not None else f"path {self.path}: {text}", step)

    def parsed(self, step: str, **data: Any) -> None:
        self.parent.parsed(step, **data)

    def set_summary(self, key: str, value: Any) -> None:
        self.parent.set_summary(f"path {self.path}: {key}", value)


@dataclass
class _Path:
    index: int  # 1-based
    ctx: _PathContext
    gen: StrategyGen
    pending: list[StepRequest] = field(default_factory=list)
    final: str | None = None  # set when the inner strategy returned

    @property
    def done(self) -> bool:
        return self.final is not None


class SelfConsistency(Strategy):
    description = "Self-consistency: sample N paths of a strategy (default CoT) as one batch, majority-vote their answers."
    source = "Wang et al. 2022, arXiv 2203.11171"
    variants = INNER
    default_variant = "cot"

    def run(self, question: str, ctx: RunContext) -> StrategyGen:
        n, temperature = ctx.params.samples, ctx.params.sc_temperature
        paths = []
        for i in range(1, n + 1):
            pctx = _PathContext(ctx, i, temperature)
            paths.append(_Path(i, pctx, make_strategy(self.variant or "cot").run(question, pctx)))
        for p in paths:
            _advance(p, None)
        self._update(paths, ctx, final=False)
        while active := [p for p in paths if not p.done]:
            batch = [req for p in active for req in p.pending]
            outs = yield batch
            pos = 0
            for p in active:
                mine, pos = list(outs[pos : pos + len(p.pending)]), pos + len(p.pending)
                _advance(p, mine)
            self._update(paths, ctx, final=False)
        return self._update(paths, ctx, final=True)

    def _update(self, paths: list[_Path], ctx: RunContext, *, final: bool) -> str:
        """The vote over the finished paths: the summary, the best answer so far, and (at the end) the note."""
        done = [p for p in paths if p.done]
        if not done and not final:
            # nothing finished yet: the best so far is the first path's own best (its baseline, say)
            first = next((p.ctx.best for p in paths if p.ctx.best), None)
            if first:
                ctx.set_best(first, "path 1's best so far")
            return ""
        votes = [(p, normalize_answer(p.final or "")) for p in done]
        tally = Counter(key for _, key in votes if key)
        answer, count = "", 0
        for p, key in votes:  # in path order: a tie goes to the earliest path
            if key and tally[key] > count:
                answer, count = p.final or "", tally[key]
        share = count / len(paths)
        ctx.set_summary(
            "vote",
            {
                "paths": [
                    {"path": p.index, "final": p.final, "normalized": key, "steps": p.ctx.step_ids}
                    for p, key in votes
                ],
                "tally": dict(tally.most_common()),
                "answer": answer,
                "share": share,
                "samples": len(paths),
            },
        )
        if answer:
            ctx.set_best(answer, f"majority of {len(done)} finished path(s)")
        if final:
            if answer:
                ctx.note(f"majority {count}/{len(paths)} ({share:.0%})")
            else:
                ctx.note(f"no path gave an answer to vote on ({len(paths)} paths)")
        return answer


def _advance(path: _Path, comps: list[Completion] | None) -> None:
    """Send a path its completions (None: start it) and take its next requests, or its final answer."""
    try:
        nxt = next(path.gen) if comps is None else path.gen.send(comps)
        while not nxt:  # an empty round needs no model
            nxt = path.gen.send([])
    except StopIteration as stop:
        path.final = (stop.value or "").strip()
        path.pending = []
        return
    path.pending = list(nxt)
