"""A trained judge scored honestly: judge the store's voted comparisons *outside* the judge model's training data,
then report its agreement with people on those votes, with the bootstrap CI and the count.

This is the Train tab's one click after a reward-model or DPO job (:data:`JUDGE_OF_METHOD` names the judge for
each method) and works for any trained judge model. Items the model was trained on are not judged at all; the
agreement figure is :func:`studio.judging.figures.agreement`'s held-out entry, which leaves them out anyway.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.errors import InputError
from studio.judges import make_judge
from studio.judging.batch import (
    JobResult,
    Scope,
    judge_item,
    judged_keys,
    store_verdict,
    swap_flip_dict,
    targets,
)
from studio.judging.figures import JudgeModels, agreement, judge_models, rater_of
from studio.judging.snapshot import HUMAN, snapshot
from studio.progress import Progress

if TYPE_CHECKING:
    from storage import Store

#: the judge that scores with what a training method made: a reward model's rewards, a DPO policy's implicit reward
JUDGE_OF_METHOD = {"reward": "reward_model", "dpo": "dpo_implicit"}


@dataclass
class HeldOutResult:
    """The judging job on the held-out votes, and the judge's agreement with people on them."""

    job: JobResult
    rater: str  # the judge config as figures name it: judge@model#hash
    held_out_items: int  # voted run pairs outside the training data (judged, or already judged)
    train_items: int  # voted run pairs in the training data (not judged)
    entry: dict[str, Any] | None = None  # figures.agreement's held-out entry for this judge vs people
    swap_flip: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "job": self.job.to_dict(),
            "rater": self.rater,
            "held_out_items": self.held_out_items,
            "train_items": self.train_items,
            "agreement": self.entry,
            "swap_flip": self.swap_flip,
        }


def check_judge_model(registry: Any, judge_name: str, model: str | None) -> None:
    """Refuse, before any model loads, a judge on a model of the wrong kind: a reward model only scores answers
    (the ``reward_model`` judge), and ``reward_model`` needs one. ``registry`` is the ``ModelRegistry``."""
    name = model or registry.settings.default_model
    spec = registry.specs(kind=None).get(name)
    if spec is None:
        return  # the registry names the unknown model itself when asked to load it
    is_reward = spec.kind == "reward" or spec.backend == "reward-model"
    if is_reward and judge_name != "reward_model":
        raise InputError(
            f"{name!r} is a reward model: it scores answers, it does not write or read a verdict; judge with it "
            f"using reward_model, or pick a chat model for {judge_name}"
        )
    if judge_name == "reward_model" and not is_reward:
        raise InputError(
            f"reward_model scores with a reward model, and {name!r} is a chat model: pick a reward model (train "
            "one in the Train tab, method reward, or register a sequence-classification model with kind reward)"
        )


def judge_held_out(
    store: Store,
    registry: Any,
    runs_dir: str | Path,
    model: str,
    judge_name: str,
    *,
    settings: dict[str, Any] | None = None,
    batch_size: int = 8,
    n_boot: int = 1000,
    progress: Progress | None = None,
) -> HeldOutResult:
    """Judge with ``judge_name`` on ``model`` every voted comparison pair that ``model`` (and its trained
    ancestors) was not trained on, store the verdicts (resumable, like :func:`~studio.judging.judge_scope`), and
    return the held-out agreement. ``registry`` is the ``ModelRegistry``; ``runs_dir`` holds the run dirs."""
    from studio.judging.heldout import training_pairs

    report = progress or (lambda done, total, msg: None)
    judge = make_judge(judge_name, settings)  # bad settings fail before a model loads
    check_judge_model(registry, judge_name, model)
    report(0, 0, f"loading {model}")
    backend = registry.backend(model)
    judge.bind(registry, backend.model_name)
    judge.check_backend(backend)
    started = time.perf_counter()
    snap = snapshot(store)
    trained = training_pairs(registry, runs_dir, model)
    known = JudgeModels(trained={model: set(trained)} if trained is not None else {})
    voted = targets(snap, Scope("comparisons", labelled=True), judge.mode)
    if not voted:
        raise InputError("no voted comparisons to judge: vote in the Arena, or import preference pairs")

    def on_train(t: Any) -> bool:
        runs = [snap.runs[r] for r in t.run_ids]
        text = snap.prompts[runs[0]["prompt_id"]]["text"]
        return len(runs) == 2 and known.trained_on(model, text, runs[0]["answer"], runs[1]["answer"])

    outside = [t for t in voted if not on_train(t)]
    config_hash = judge.config_hash(backend.model_name)
    done = judged_keys(snap, config_hash)
    todo = [t for t in outside if t.key not in done]
    job = JobResult(
        judge.name, backend.model_name, config_hash, len(outside), len(outside) - len(todo), 0, 0, 0, 0
    )
    report(
        0,
        len(todo),
        f"{len(todo)} held-out pairs to judge ({len(voted) - len(outside)} training pairs left out)",
    )
    judged: list[Any] = []
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        verdicts = judge.judge([judge_item(snap, t) for t in batch], backend)
        judged += verdicts
        for target, verdict in zip(batch, verdicts, strict=True):
            job.verdict_ids.append(store_verdict(store, verdict, target))
            job.ok += verdict.ok
            job.failed += not verdict.ok
            job.self_judged += verdict.self_judge
        job.judged += len(batch)
        report(job.judged, len(todo), f"judged {job.judged}/{len(todo)} ({job.failed} failed)")
    job.swap_flip = swap_flip_dict(judged)  # of the verdicts judged now, as judge_scope reports it
    job.elapsed_s = time.perf_counter() - started
    rater = rater_of(
        {"judge": judge.name, "judge_model": backend.model_name, "judge_config": {"config_hash": config_hash}}
    )
    after = snapshot(store)
    found = agreement(
        after, n_boot=n_boot, judge_vs_judge=False, models=judge_models(after, registry, runs_dir)
    )
    entry = next((e for e in found if e["x"] == HUMAN and e["y"] == rater), None)
    return HeldOutResult(
        job, rater, len(outside), len(voted) - len(outside), entry, (entry or {}).get("swap_flip", {})
    )
