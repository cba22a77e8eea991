"""Iterative Reasoning Preference Optimization (Pang et al. 2024, arXiv 2404.19733), as ``METHODS.md`` and issue
16 specify it. For t = 0 .. ``iterations``-1, from M_0 = the starting model:

1. M_t samples N chain-of-thought answers per train question of a verifiable task (``samples``, temperature 0.8),
   in batches, in the job process. The instruction (``prompt``): ``cot``, the studio's Chain-of-Thought strategy
   prompt, which ``studio improve`` scores the models with (the same words at training and test time, as in the
   paper), or ``paper``, the paper's GSM8K instruction (``prompts/irpo_cot.txt``);
2. each answer's final answer (after the last "Answer:" / "Final answer:", else its last line: the CoT strategy's
   own split) is scored by the task's reward (``studio.eval.tasks``: the same code and input as the held-out
   score); an answer is correct when its reward is 1;
3. pairs: chosen = a correct answer, rejected = an incorrect one of the same question, up to K per question
   (``pairs_per_question``; the paper: 10 of its 30 samples), drawn at random among the distinct combinations.
   A question with no correct or no incorrect answer gives no pair; both are counted;
4. DPO + NLL on the chosen answer: TRL's ``DPOConfig(loss_type=["sigmoid", "sft"], loss_weights=[1, alpha])``
   (``nll_weight`` alpha; the paper: 1). TRL's "sft" term is the cross-entropy of the chosen completions' tokens,
   averaged over the batch's tokens (the paper divides each sequence's NLL by its own length: the same at batch 1);
5. training starts from M_t with M_t as the reference (with LoRA: TRL's adapter-disabled base for a fresh adapter,
   or a frozen copy of M_t's adapter when M_t is itself one, as ``studio/training/dpo.py`` does), giving
   M_{t+1}, saved in ``iter_<t>/adapter`` and registered with its lineage (parent M_t, iteration).

The job reads the task's *train* split only (the files ship with the package; the job never opens the store);
the test split is for measuring the models. With no pair the job fails with the counts (a model that is never
right has no chosen answer). Resume: a finished iteration is skipped; one whose pairs were written continues with
DPO from its last checkpoint. Curves: the DPO ones, ``irpo/correct_rate``, ``irpo/pairs``.
"""

from __future__ import annotations

import gc
import itertools
import random
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.errors import InputError
from studio.prompts import Prompts
from studio.training import data
from studio.training.base import Trainer
from studio.training.config import DTYPES, DPOTrainConfig, opt
from studio.training.dpo import DPO_CURVES
from studio.training.rundir import RunDir, read_json, read_jsonl, write_json, write_jsonl

if TYPE_CHECKING:
    from storage import Store

PROMPTS = Prompts(Path(__file__).parent / "prompts", tidy=True)
CORRECT = 1.0  # a reward at least this is a correct answer (the tasks' rewards are 0 or 1)


@dataclass
class IRPOConfig(DPOTrainConfig):
    """IRPO (Pang et al. 2024, arXiv 2404.19733): sampled CoT answers, correct vs incorrect, DPO + NLL, iterated."""

    task: str = opt("arithmetic", "the verifiable task whose train split is sampled and rewarded")
    prompt: str = opt(
        "cot",
        "the CoT instruction: cot = the studio's Chain-of-Thought strategy prompt, the one `studio improve` scores "
        "with (same words at training and test time); paper = the paper's GSM8K instruction",
        choices=("cot", "paper"),
    )
    max_items: int = opt(32, "train questions per iteration (0 = the whole train split)")
    iterations: int = opt(
        1, "iterations T in this job: M_t -> M_t+1 -> ... (the improve loop runs one per job)"
    )
    start_iteration: int = opt(
        0, "the iteration number of the starting model (0 = M_0); the trained model is M_{start+1}"
    )
    samples: int = opt(4, "chain-of-thought answers sampled per question, N (the paper: 30)")
    temperature: float = opt(0.8, "sampling temperature of the answers (the paper: 0.8)")
    top_p: float = opt(1.0, "nucleus sampling of the answers (1 = off)")
    max_new_tokens: int = opt(
        192, "tokens per answer (an answer cut off before its final answer is incorrect)"
    )
    gen_batch_size: int = opt(32, "answers generated per batch")
    pairs_per_question: int = opt(1, "at most K (correct, incorrect) pairs per question (the paper: 10)")
    nll_weight: float = opt(
        1.0, "alpha: weight of the NLL term on the chosen answers (the paper: 1; 0 = plain iterative DPO)"
    )
    min_pairs: int = opt(1, "fewer pairs than this in an iteration fails it, with the counts")
    min_examples: int = opt(1, "refuse to start with fewer train questions than this")
    max_length: int = opt(512, "maximum tokens per example (question + answer)")
    max_steps: int = opt(10, "DPO steps per iteration; -1 = num_train_epochs over the iteration's pairs")
    gen_dtype: str = opt("auto", "dtype for sampling (auto: bf16 where fast)", choices=DTYPES)

    def validate(self) -> None:
        super().validate()
        for name in ("iterations", "samples", "pairs_per_question", "gen_batch_size", "min_pairs"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.samples < 2:
            raise InputError("samples must be >= 2: a pair needs a correct and an incorrect answer")
        if self.temperature <= 0:
            raise InputError("temperature must be > 0: N answers are sampled, not one greedy one")
        if self.max_items < 0 or self.start_iteration < 0:
            raise InputError("max_items and start_iteration must be >= 0")
        if self.nll_weight < 0:
            raise InputError(f"nll_weight must be >= 0, not {self.nll_weight}")
        if self.launcher != "local":
            raise InputError("IRPO samples and trains in one process: use launcher=local")

    def method_trl_args(self) -> dict[str, Any]:
        args = super().method_trl_args()
        if self.nll_weight:
            args.update(loss_type=[self.loss_type, "sft"], loss_weights=[1.0, self.nll_weight])
        return args


def cot_prompt(task: Any, item: Any, prompt: str = "cot") -> str:
    """The question as M_t is asked it: the task's prompt inside the CoT instruction (``prompt``: cot or paper)."""
    if prompt == "paper":
        return PROMPTS.text("irpo_cot", question=task.prompt(item))
    from studio.strategies.base import render

    return render("cot_answer", question=task.prompt(item))


def final_answer(completion: str) -> str:
    """The final answer of a chain of thought, split as the CoT strategy splits it (and the held-out score reads it)."""
    from studio.strategies.parsing import split_cot

    return split_cot(completion).final


def reward(task: Any, item: Any, completion: str) -> float:
    """The task's reward of a sampled answer: its metric on the final answer."""
    return float(task.reward(item, final_answer(completion)))


def build_pairs(
    answers: list[str], rewards: list[float], k: int, rng: random.Random
) -> list[tuple[int, int]]:
    """Up to ``k`` (correct, incorrect) index pairs of one question, drawn at random among the pairs of distinct
    texts; [] when there is no correct or no incorrect answer."""
    good = _distinct([i for i, r in enumerate(rewards) if r >= CORRECT], answers)
    bad = _distinct([i for i, r in enumerate(rewards) if r < CORRECT], answers)
    options = [(g, b) for g, b in itertools.product(good, bad) if answers[g] != answers[b]]
    return rng.sample(options, min(k, len(options)))


def _distinct(indices: list[int], texts: list[str]) -> list[int]:
    seen: set[str] = set()
    return [i for i in indices if not (texts[i] in seen or seen.add(texts[i]))]  # type: ignore[func-returns-value]


def count(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The iteration's counts: questions, answers, correct answers, questions with a correct / an incorrect
    answer / a pair, pairs, and the correct rate (correct answers / answers)."""
    answers = sum(len(r["rewards"]) for r in rows)
    correct = sum(x >= CORRECT for r in rows for x in r["rewards"])
    return {
        "questions": len(rows),
        "answers": answers,
        "correct": correct,
        "correct_rate": correct / answers if answers else 0.0,
        "questions_right": sum(any(x >= CORRECT for x in r["rewards"]) for r in rows),
        "questions_wrong": sum(any(x < CORRECT for x in r["rewards"]) for r in rows),
        "questions_paired": sum(bool(r["pairs"]) for r in rows),
        "pairs": sum(len(r["pairs"]) for r in rows),
    }


def shortfall(t: int, counts: dict[str, Any], cfg: IRPOConfig) -> str:
    """Why iteration ``t`` has too few pairs, with the counts and what to change."""
    q, n = counts["questions"], cfg.samples
    head = (
        f"iteration {t}: {counts['pairs']} preference pairs (< min_pairs={cfg.min_pairs}): the model got "
        f"{counts['questions_right']} of {q} {cfg.task} questions right in {n} samples "
        f"({counts['correct']} of {counts['answers']} answers correct)"
    )
    if counts["questions_right"] == 0:
        return f"{head}: no chosen answer; pick an easier task level or more samples"
    if counts["questions_wrong"] == 0:
        return f"{head}: every answer was correct, so no rejected answer; pick a harder task level"
    return (
        f"{head}; no question had both a correct and an incorrect answer "
        f"({counts['questions_paired']} paired): use more samples or more questions (max_items)"
    )


class IRPO(Trainer):
    Config = IRPOConfig
    description = (
        "Iterative Reasoning Preference Optimization: M_t samples chain-of-thought answers to a verifiable task, "
        "correct vs incorrect pairs, DPO + NLL -> M_t+1"
    )
    paper = "Pang et al. 2024, Iterative Reasoning Preference Optimization, arXiv 2404.19733"
    curves = (*DPO_CURVES, "irpo/correct_rate", "irpo/pairs")

    # -- parent side ----------------------------------------------------------------------------------------------
    @classmethod
    def _data(cls, store: Store | None, config: Any, limit: int) -> tuple[data.DataPreview, Any]:
        """The task's train questions (from the shipped files, not the store)."""
        task = load_task(config.task)
        items = train_items(task, config.max_items)
        preview = data.DataPreview(
            cls.registered_name, "questions", len(items),
            [{"prompt": cot_prompt(task, it, config.prompt), "answer": it.reference} for it in items[:limit]],
            {"questions": len(items)},
        )  # fmt: skip
        preview.notes.append(f"task {task.name} (train split; metric {task.metric}): {task.source}")
        preview.problems += data.too_few(len(items), config.min_examples, "train questions", "")
        return preview, {"task": task.name, "questions": len(items)}

    @classmethod
    def _write(cls, snapshot: Any, run: RunDir) -> None:
        write_json(run.path / "task.json", snapshot)  # the record; the job reads the task's own files

    # -- job side -------------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        cfg = self.config
        current, name, step = cfg, cfg.base_model, 0
        models: list[dict[str, Any]] = []
        for t in range(cfg.iterations):
            entry, current, step = self.iteration(t, current, name, step)
            models.append(entry)
            name = entry["name"]
        last = read_json(self.run.iteration(len(models) - 1) / "counts.json", {})
        return {"models": models, "steps": step, "metrics": last}

    def iteration(self, t: int, current: Any, name: str, step: int) -> tuple[dict[str, Any], Any, int]:
        """One iteration from M_t (``current``: its weights and adapter; ``name``); returns M_{t+1}."""
        it = self.run.iteration(t)
        it.mkdir(exist_ok=True)
        finished = self.finished_iteration(t, current)
        if finished:  # resumed: this iteration is complete
            return finished
        if not (it / "pairs.jsonl").exists():
            self.generate(t, current, name, step)
        pairs, counts = read_jsonl(it / "pairs.jsonl"), read_json(it / "counts.json")
        if len(pairs) < self.config.min_pairs:
            raise InputError(shortfall(t, counts, self.config))
        return self.update(t, current, name, step, pairs, counts)

    # steps 1-3
    def generate(self, t: int, current: Any, name: str, step: int) -> None:
        from studio.backends.transformers_backend import TransformersBackend

        cfg = self.config
        task = load_task(cfg.task)
        items = train_items(task, cfg.max_items)
        prompts = [cot_prompt(task, item, cfg.prompt) for item in items]
        policy = TransformersBackend(
            current.model_path, adapter=current.adapter_path or None, dtype=cfg.gen_dtype, model_name=name
        )
        try:
            answers = self.sample(policy, prompts, cfg.seed + 1000 * t)
        finally:
            policy.close()
            del policy
            gc.collect()
        rng = random.Random(cfg.seed + t)
        rows, pairs = [], []
        for item, prompt, group in zip(items, prompts, answers, strict=True):
            rewards = [reward(task, item, a) for a in group]
            chosen = build_pairs(group, rewards, cfg.pairs_per_question, rng)
            rows.append({"id": item.id, "prompt": prompt, "reference": item.reference, "answers": group,
                         "rewards": rewards, "pairs": chosen})  # fmt: skip
            pairs += [{"id": item.id, "prompt": prompt, "chosen": group[g], "rejected": group[b],
                       "chosen_index": g, "rejected_index": b} for g, b in chosen]  # fmt: skip
        counts = {**count(rows), "task": task.name, "samples": cfg.samples, "policy": name, "iteration": t}
        it = self.run.iteration(t)
        write_jsonl(it / "samples.jsonl", rows)
        write_json(it / "counts.json", counts)
        write_jsonl(it / "pairs.jsonl", pairs)  # last: its presence means the iteration's data is complete
        self._log(step, {"irpo/iteration": t, "irpo/questions": counts["questions"],
                         "irpo/correct_rate": counts["correct_rate"],
                         "irpo/questions_right": counts["questions_right"], "irpo/pairs": counts["pairs"]})  # fmt: skip
        print(f"[studio] irpo iteration {t}: {counts}", flush=True)

    def sample(self, policy: Any, prompts: list[str], seed: int) -> list[list[str]]:
        """N answers per question, ``gen_batch_size`` rows per generate call."""
        from studio.backends import GenParams

        cfg, n = self.config, self.config.samples
        params = GenParams(max_new_tokens=cfg.max_new_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                           seed=seed)  # fmt: skip
        convs = [[{"role": "user", "content": p}] for p in prompts for _ in range(n)]
        texts: list[str] = []
        for start in range(0, len(convs), cfg.gen_batch_size):
            batch = convs[start : start + cfg.gen_batch_size]
            texts += [c.text for c in policy.chat(batch, params.replace(seed=seed + start))]
        return [texts[i * n : (i + 1) * n] for i in range(len(prompts))]

    # steps 4-5
    def update(self, t: int, current: Any, name: str, step: int, pairs: list[dict], counts: dict) -> tuple:
        from datasets import Dataset

        cfg = self.config
        rows = [
            {
                "prompt": [{"role": "user", "content": p["prompt"]}],
                "chosen": [{"role": "assistant", "content": p["chosen"]}],
                "rejected": [{"role": "assistant", "content": p["rejected"]}],
            }
            for p in pairs
        ]
        out = self.dpo_iteration(t, current, step, Dataset.from_list(rows))
        number = cfg.start_iteration + t + 1
        entry = self.model_entry(
            out, name=f"{cfg.output_name}-m{number}", parent=name, iteration=number, task=cfg.task,
            pairs=len(pairs), correct_rate=counts.get("correct_rate"), nll_weight=cfg.nll_weight,
        )  # fmt: skip
        return self.finish_iteration(t, current, step, out, entry)


def load_task(name: str) -> Any:
    """The verifiable task (``studio.eval.tasks``); an unknown name is an ``InputError`` listing the names."""
    from studio.eval.tasks import get_task

    return get_task(name)


def train_items(task: Any, max_items: int) -> list[Any]:
    """The first ``max_items`` questions of the task's train split (never its test split)."""
    items = list(task.load("train").items)
    return items[:max_items] if max_items else items
