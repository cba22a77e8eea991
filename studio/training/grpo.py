"""GRPO with verifiable rewards (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300; DeepSeek-R1 2025, arXiv
2501.12948) with ``trl.GRPOTrainer``.

For each train question of a verifiable task (``studio.eval.tasks``: ``task``, its TRAIN split only, at most
``max_items``, optionally only some difficulty ``levels``), the policy samples a group of G answers
(``num_generations``); each answer's reward is

    correctness (the task's own metric, ``task.reward(item, answer)``: the held-out eval score)
    + ``format_weight`` x format (1 when the answer states its final answer the way the metric reads it first)

and its advantage is its reward minus the group's mean, over the group's standard deviation: no value model and
no reward model. A group whose G rewards are all equal (all wrong, or all right) has zero advantage and teaches
nothing; TRL logs the share of such groups as ``frac_reward_zero_std``. ``beta`` weighs a KL penalty to the
starting model (with LoRA: the base with the adapter disabled, or a frozen copy of a starting adapter).

The job reads the items from the files that ship with the package (``items.jsonl`` in the run dir names the ids the
runner chose); it never opens the store and never reads the test split.
"""

from __future__ import annotations

import functools
import re
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from studio.errors import InputError
from studio.training import data
from studio.training.base import Trainer
from studio.training.config import TrainConfig, opt
from studio.training.rundir import RunDir, read_jsonl, write_jsonl

if TYPE_CHECKING:
    from studio.eval.data import EvalItem
    from studio.eval.tasks import Task

# -- the format reward: one check per task metric ----------------------------------------------------------------
#: numeric: an explicit "answer is N" / "Answer: N" / "answer = N" (the number the metric reads before falling
#: back to the text's last number); the same pattern as studio.eval.metrics
_ANSWER_NUMBER = re.compile(r"\banswer\s*(?:is|:|=)?\s*[$€£]?\s*-?\d", re.IGNORECASE)
#: game24: an "Answer:" / "Final answer:" marker (the line the verifier reads first); as studio.eval.game24
_ANSWER_MARKER = re.compile(r"(?:final\s+answer|answer)\s*[:：]", re.IGNORECASE)


def _states_number(text: str) -> bool:
    return bool(_ANSWER_NUMBER.search(text))


def _has_marker(text: str) -> bool:
    return bool(_ANSWER_MARKER.search(text))


def _one_word(text: str) -> bool:
    """exact_match compares the whole answer: only a bare one-word answer can match."""
    return len(text.split()) == 1


FORMAT_CHECKS: dict[str, tuple[Callable[[str], bool], str]] = {
    "numeric": (_states_number, 'states a number after "answer is", "answer:" or "answer ="'),
    "game24": (_has_marker, 'has an "Answer:" (or "Final answer:") line'),
    "exact_match": (_one_word, "is a single word (exact match compares the whole answer)"),
}


def completion_text(completion: Any) -> str:
    """The text of one completion: TRL passes a list of messages for chat prompts, a string otherwise."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, Sequence) and completion:
        last = completion[-1]
        return str(last.get("content", "")) if isinstance(last, dict) else str(last)
    return ""


def format_ok(metric: str, text: str) -> float:
    check = FORMAT_CHECKS.get(metric)
    return float(bool(check and check[0](text.strip())))


# -- the reward functions (module level + functools.partial: TRL names them and may pickle them) -----------------
def correctness(
    prompts: list, completions: list, *, task: str, items: dict[str, EvalItem], item_id: list[str], **_: Any
) -> list[float]:
    """The task's metric of each completion: exactly the held-out eval score."""
    from studio.eval.tasks import get_task

    t = get_task(task)
    return [t.reward(items[i], completion_text(c)) for i, c in zip(item_id, completions, strict=True)]


def answer_format(prompts: list, completions: list, *, metric: str, **_: Any) -> list[float]:
    """1 when the completion states its final answer the way ``metric`` reads it first (FORMAT_CHECKS)."""
    return [format_ok(metric, completion_text(c)) for c in completions]


def signal(rewards: Sequence[float], group: int) -> float:
    """The share of consecutive groups of ``group`` rewards that are not all equal (the ones GRPO learns from)."""
    groups = [rewards[i : i + group] for i in range(0, len(rewards), group)]
    return sum(statistics.pstdev(g) > 0 for g in groups) / len(groups) if groups else 0.0


# -- the config ----------------------------------------------------------------------------------------------------
@dataclass
class GRPOTrainConfig(TrainConfig):
    """GRPO (Shao et al. 2024, arXiv 2402.03300): group-normalised verifiable rewards, KL to the start."""

    trl_class: ClassVar[str] = "trl:GRPOConfig"
    task: str = opt("arithmetic", "verifiable task whose TRAIN split is trained on (studio.eval.tasks)")
    max_items: int = opt(64, "train questions used, from the start of the train split (0 = all)")
    levels: list[int] = opt(
        [],
        "only questions of these difficulty levels (an item's meta 'level', e.g. arithmetic 1..4; empty = all). "
        "The default model gets no 2-digit sum right, so a group there is all zeros: no signal",
    )
    format_weight: float = opt(
        0.1, "weight of the format reward (1 when the answer states its final answer as the metric reads it)"
    )
    num_generations: int = opt(4, "G: answers sampled per question (>= 2; the paper: 64)")
    max_completion_length: int = opt(64, "tokens generated per answer")
    temperature: float = opt(
        0.8,
        "sampling temperature of the group (TRL's default is 1.0; 0.8 keeps the small model's answers coherent "
        "while the groups still differ, see the README)",
    )
    beta: float = opt(
        0.04, "KL coefficient to the starting model (the paper: 0.04; DeepSeek-R1: 0.001; 0 = no reference)"
    )
    loss_type: str = opt(
        "grpo",
        "grpo: the paper's per-answer length-normalised loss; dapo (TRL's default), dr_grpo, bnpo...",
    )
    per_device_train_batch_size: int = opt(
        8, "answers per device per step (a multiple of num_generations: 8 = two questions of G=4)"
    )
    min_examples: int = opt(2, "refuse to start with fewer train questions than this")
    max_steps: int = opt(
        10, "optimizer steps (each samples per_device_train_batch_size answers); -1 = num_train_epochs"
    )

    def validate(self) -> None:
        super().validate()
        if self.num_generations < 2:
            raise InputError(f"GRPO needs num_generations >= 2 (a group), not {self.num_generations}")
        if (self.per_device_train_batch_size * self.gradient_accumulation_steps) % self.num_generations:
            raise InputError(
                "GRPO: per_device_train_batch_size x gradient_accumulation_steps "
                f"({self.per_device_train_batch_size} x {self.gradient_accumulation_steps}) must be a multiple "
                f"of num_generations ({self.num_generations}): each step samples whole groups"
            )
        if self.format_weight < 0:
            raise InputError(f"format_weight must be >= 0, not {self.format_weight}")
        if self.max_items < 0:
            raise InputError(f"max_items must be >= 0 (0 = all), not {self.max_items}")
        if self.max_completion_length < 1:
            raise InputError(f"max_completion_length must be >= 1, not {self.max_completion_length}")
        if self.temperature <= 0:
            raise InputError("temperature must be > 0: a group of greedy answers is one answer G times")

    def method_trl_args(self) -> dict[str, Any]:
        names = ("num_generations", "max_completion_length", "temperature", "beta", "loss_type")
        return {
            **self.same_names(*names),
            "reward_weights": [1.0, self.format_weight],
            "log_completions": False,
        }


# -- data -------------------------------------------------------------------------------------------------------
def train_items(cfg: GRPOTrainConfig) -> tuple[Task, list[EvalItem]]:
    """The task and the train questions the config selects (levels, then the first ``max_items``)."""
    from studio.eval.tasks import get_task

    task = get_task(cfg.task)
    items = list(task.load("train").items)
    if cfg.levels:
        if not any("level" in i.meta for i in items):
            raise InputError(f"task {task.name!r} has no difficulty levels; leave levels empty")
        wanted = {int(v) for v in cfg.levels}
        items = [i for i in items if i.meta.get("level") in wanted]
    return task, items[: cfg.max_items] if cfg.max_items else items


def prompt_rows(task: Task, items: Sequence[EvalItem]) -> list[dict[str, Any]]:
    """TRL's conversational prompts, each with the item id the reward function looks the answer up by."""
    return [{"prompt": [{"role": "user", "content": task.prompt(i)}], "item_id": i.id} for i in items]


class GRPO(Trainer):
    Config = GRPOTrainConfig
    description = (
        "GRPO with verifiable rewards: groups of answers to a task's train questions, scored by its metric"
    )
    paper = "Shao et al. 2024, DeepSeekMath (GRPO), arXiv 2402.03300; DeepSeek-AI 2025, DeepSeek-R1, arXiv 2501.12948"
    # "loss" first, as every method lists it (it reads about 0 for GRPO: watch the reward curves)
    curves = (
        "loss",
        "reward",
        "reward_std",
        "grpo/correct_rate",
        "grpo/format_rate",
        "frac_reward_zero_std",
        "kl",
    )
    aliases = {
        "grpo/correct_rate": "rewards/correctness/mean",
        "grpo/format_rate": "rewards/answer_format/mean",
    }

    # -- parent side ----------------------------------------------------------------------------------------------
    @classmethod
    def _data(cls, store: Any, config: Any, limit: int) -> tuple[data.DataPreview, Any]:
        try:
            task, items = train_items(config)
        except InputError as e:
            preview = data.DataPreview(cls.registered_name, "prompts", 0, problems=[str(e)])
            return preview, []
        rows = [{"id": i.id, "prompt": task.prompt(i), "answer": i.reference or ""} for i in items]
        preview = data.DataPreview(
            cls.registered_name, "prompts", len(rows), rows[:limit], {"items": len(rows)},
            notes=[f"task {task.name}, train split ({task.source}); reward = {task.metric} + "
                   f"{config.format_weight} x format ({FORMAT_CHECKS.get(task.metric, ('', 'none'))[1]})"],
        )  # fmt: skip
        hint = "raise max_items, widen levels, or pick another task"
        preview.problems += data.too_few(len(rows), config.min_examples, "train questions", hint)
        return preview, rows

    @classmethod
    def _write(cls, rows: Any, run: RunDir) -> None:
        write_jsonl(run.path / "items.jsonl", rows)

    # -- job side -------------------------------------------------------------------------------------------------
    def items(self) -> tuple[Task, list[EvalItem]]:
        """The snapshot's items, read back from the shipped train split by id."""
        from studio.eval.tasks import get_task

        task = get_task(self.config.task)
        by_id = {i.id: i for i in task.load("train").items}
        ids = [r["id"] for r in read_jsonl(self.run.path / "items.jsonl")]
        missing = [i for i in ids if i not in by_id]
        if missing:
            raise InputError(
                f"{len(missing)} snapshot items are not in {task.name}'s train split: {missing[:3]}"
            )
        return task, [by_id[i] for i in ids]

    def reward_funcs(self, task: Task, items: Sequence[EvalItem]) -> list[Any]:
        by_id = {i.id: i for i in items}
        return [
            functools.partial(correctness, task=task.name, items=by_id),
            functools.partial(answer_format, metric=task.metric),
        ]

    def train(self) -> dict[str, Any]:
        from datasets import Dataset
        from trl import GRPOTrainer

        from studio.training.common import load_tokenizer, policy_model, resume_from, save_policy, trl_config

        cfg = self.config
        task, items = self.items()
        model, peft = policy_model(cfg)
        trainer = GRPOTrainer(
            model=model, reward_funcs=self.reward_funcs(task, items), args=trl_config(cfg, self.run),
            train_dataset=Dataset.from_list(prompt_rows(task, items)), processing_class=load_tokenizer(cfg.model_path),
            peft_config=peft, callbacks=[self.callback()],
        )  # fmt: skip
        out = trainer.train(resume_from_checkpoint=resume_from(self.run))
        paths = save_policy(trainer, cfg, self.run)
        entry = self.model_entry(paths, task=task.name, items=len(items), format_weight=cfg.format_weight)
        return {"models": [entry], "metrics": dict(out.metrics), "steps": trainer.state.global_step}
