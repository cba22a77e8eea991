"""System-2 distillation (Yu et al. 2024, "Distilling System 2 into System 1", arXiv 2407.06023): the model's
own System-2 answers, filtered by self-consistency, taught to its System 1, with no intermediate steps.

1. **System 2 on unlabelled inputs.** The task's TRAIN split (``task``, at most ``max_items``; read in the job
   process from the files shipped with the package; the test split is never read) is asked of the starting model
   through a System-2 strategy (``strategy``: cot, rar, s2a, bsm, sc... any registered one), ``samples`` times
   per input at ``temperature``, through the studio's driver (every input and sample of a chunk in one batch).
   The gold answers are not used to build the training data;
2. **self-consistency filter** (the paper's unsupervised curation): each run's final answer is normalised as a
   vote (for a ``numeric`` task the harness's last-number rule, :func:`studio.eval.metrics.last_number`; else
   :func:`studio.eval.metrics.normalize`). An input is kept when the majority vote's share of the ``samples``
   runs is at least ``agreement`` (0.75 by default); a failed run or an empty answer is a vote for nothing.
   The target is the majority's answer text (the first majority run's final answer; ``target=vote``: the vote
   itself, e.g. the bare number);
3. **SFT of System 1** on input -> target only (prompt = the question as System 1 is asked it, completion = the
   final answer; the loss is on the completion), with TRL's ``SFTTrainer`` and LoRA;
4. the distilled model is registered with its lineage (parent = the starting model, ``method`` s2_distill, the
   strategy, the task, the counts), so it enters the Arena and the eval like any chat model.

The run dir keeps ``samples.jsonl`` (every System-2 run: input id, sample, final answer, vote, tokens),
``kept.jsonl`` (input, target, agreement), ``dropped.jsonl`` (input, reason) and ``counts.json``. Curves:
``s2distill/inputs``, ``s2distill/kept``, ``s2distill/kept_rate``, ``s2distill/mean_agreement``,
``s2distill/system2_tokens`` (completion tokens per System-2 run: the cost the distilled model saves), ``loss``.
``s2distill/kept_correct_rate`` measures the filter after the fact (the share of kept targets the task metric
scores correct); it never selects anything. No input kept fails the job with the counts.

Measured on the default model (SmolLM2-135M, CPU, one run, seed 0): CoT x 4 at temperature 0.7, 96 tokens, on
the first 24 arithmetic train inputs (about 4 minutes): mean agreement 0.375; ``agreement`` 0.75 kept 1 input
(correct), 0.5 kept 10 (3 correct). After 12 SFT steps, greedy System 1 on 60 test items (24 tokens): M0 25.0%,
distilled 46.7% (0.75) and 33.3% (0.5); a precise filter matters more than a large one at this size.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from studio.errors import InputError
from studio.training import data
from studio.training.base import Trainer
from studio.training.config import DTYPES, TrainConfig, opt
from studio.training.rundir import RunDir, read_jsonl, write_json, write_jsonl

if TYPE_CHECKING:
    from storage import Store
    from studio.eval.data import EvalItem
    from studio.eval.tasks import Task


@dataclass
class S2DistillConfig(TrainConfig):
    """System-2 distillation (Yu et al. 2024, arXiv 2407.06023): SFT System 1 on self-consistent System-2 answers."""

    trl_class: ClassVar[str] = "trl:SFTConfig"
    task: str = opt("arithmetic", "verifiable task whose TRAIN split gives the unlabelled inputs")
    max_items: int = opt(64, "use at most this many train inputs")
    strategy: str = opt("cot", "the System-2 strategy run on each input (cot, rar, s2a, bsm, sc...)")
    variant: str = opt("", "the strategy's variant (empty: its default)")
    samples: int = opt(4, "System-2 runs per input, N, for the self-consistency filter")
    temperature: float = opt(0.7, "sampling temperature of the System-2 runs")
    top_p: float = opt(1.0, "nucleus sampling of the System-2 runs")
    max_new_tokens: int = opt(192, "tokens per step of the System-2 strategy")
    strategy_params: dict[str, Any] = opt(
        {}, "other run params of the strategy (StrategyParams fields, e.g. structured, step_max_tokens)"
    )
    batch_items: int = opt(16, "inputs per driver batch (each with all its samples); lower it to save memory")
    agreement: float = opt(
        0.75, "keep an input when the majority answer's share of the N runs is at least this (the SC filter)"
    )
    target: str = opt(
        "text",
        "the SFT target: text = the majority's own final answer text; vote = the normalised vote (for a numeric "
        "task the bare number)",
        choices=("text", "vote"),
    )
    min_kept: int = opt(1, "fewer kept inputs than this fails the job, naming the counts")
    learning_rate: float = opt(2e-4, "peak learning rate")
    max_steps: int = opt(20, "SFT optimizer steps; -1 = num_train_epochs over the kept inputs")
    per_device_train_batch_size: int = opt(4, "examples per device per step")
    max_length: int = opt(256, "maximum tokens per example (question + answer)")
    min_examples: int = opt(1, "refuse to start with fewer train inputs than this")
    gen_dtype: str = opt("auto", "dtype for the System-2 runs (auto: bf16 where fast)", choices=DTYPES)

    def validate(self) -> None:
        super().validate()
        from studio.eval.tasks import get_task
        from studio.strategies import STRATEGIES

        get_task(self.task)
        if self.strategy not in STRATEGIES:
            raise InputError(f"unknown strategy {self.strategy!r}; known: {', '.join(STRATEGIES.names())}")
        for name in ("max_items", "samples", "batch_items", "min_kept", "max_new_tokens"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, not {getattr(self, name)}")
        if not 0 < self.agreement <= 1:
            raise InputError(f"agreement must be in (0, 1], not {self.agreement}")
        if self.samples > 1 and self.temperature <= 0:
            raise InputError("temperature must be > 0 when samples > 1: greedy runs would always agree")
        self.run_params()  # bad strategy params fail before anything is launched
        if self.launcher != "local":
            raise InputError("System-2 distillation generates and trains in one process: use launcher=local")

    def run_params(self, seed: int | None = None) -> dict[str, Any]:
        """The strategy's run params as the user set them (the model's decoding defaults fill the rest)."""
        from studio.strategies import StrategyParams

        given = {
            **self.strategy_params,
            "max_new_tokens": self.max_new_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "sc_temperature": self.temperature,
            "seed": self.seed if seed is None else seed,
        }
        StrategyParams.from_dict(given)
        return given

    def method_trl_args(self) -> dict[str, Any]:
        return {"max_length": self.max_length, "completion_only_loss": True}


# -- step 1: System-2 runs --------------------------------------------------------------------------------------
def system2_runs(
    backend: Any, questions: Sequence[tuple[str, str]], cfg: S2DistillConfig, seed: int
) -> list[dict[str, Any]]:
    """``cfg.samples`` runs of the strategy per (input id, question), through the studio's driver in one batch;
    one row per run: id, sample, final answer, error, completion tokens."""
    from studio.strategies import DriveJob, make_strategy, resolve_params
    from studio.strategies.driver import run_jobs

    params = resolve_params(cfg.run_params(seed), backend.decoding_defaults)
    variant = cfg.variant or None
    plan = [(qid, q, k) for qid, q in questions for k in range(cfg.samples)]
    jobs = [DriveJob(make_strategy(cfg.strategy, variant), q, backend, params) for _, q, _ in plan]
    rows = []
    for (qid, _, k), res in zip(plan, run_jobs(jobs), strict=True):
        totals = res.totals
        rows.append({"id": qid, "sample": k, "final": res.final_answer or "", "error": res.error,
                     "completion_tokens": totals.completion_tokens, "tokens": totals.tokens,
                     "calls": totals.calls})  # fmt: skip
    return rows


# -- step 2: the self-consistency filter ------------------------------------------------------------------------
def vote_rule(metric: str) -> Callable[[str], str | None]:
    """How a final answer becomes a vote: the harness's last-number rule for a numeric task, else its SQuAD-style
    normalisation. None: no vote (no number, or nothing left after normalising)."""
    from studio.eval.metrics import last_number, normalize

    if metric == "numeric":

        def number(text: str) -> str | None:
            value = last_number(text)
            if value is None:
                return None
            return str(int(value)) if value.is_integer() else repr(value)

        return number
    return lambda text: normalize(text) or None


def select(
    inputs: Sequence[dict[str, Any]], runs: Sequence[dict[str, Any]], cfg: S2DistillConfig, metric: str
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(kept, dropped): per input the majority vote of its runs and its share of all ``samples`` runs; kept when
    the share is >= ``agreement``. Kept rows: id, prompt, target, vote, agreement; dropped rows add the reason."""
    vote = vote_rule(metric)
    by_id: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by_id.setdefault(r["id"], []).append(r)
    kept, dropped = [], []
    for item in inputs:
        mine = sorted(by_id.get(item["id"], []), key=lambda r: r["sample"])
        votes = [None if r["error"] else vote(r["final"]) for r in mine]
        tally = Counter(v for v in votes if v is not None)
        row = {"id": item["id"], "prompt": item["prompt"], "votes": votes}
        if not tally:
            failed = sum(bool(r["error"]) for r in mine)
            why = f"no answer in any of the {cfg.samples} runs" + (f" ({failed} failed)" if failed else "")
            dropped.append({**row, "agreement": 0.0, "reason": why})
            continue
        best = max(tally.values())
        winner = next(v for v in votes if v is not None and tally[v] == best)  # a tie: the earliest run's
        share = best / cfg.samples
        first = mine[votes.index(winner)]["final"].strip()
        row = {**row, "vote": winner, "agreement": share, "target": winner if cfg.target == "vote" else first}
        if share + 1e-9 < cfg.agreement:
            dropped.append({**row, "reason": f"majority {best}/{cfg.samples} ({share:.0%}) is below agreement "
                                             f"{cfg.agreement:.0%}"})  # fmt: skip
        elif not row["target"]:
            dropped.append({**row, "reason": "the majority answer's text is empty"})
        else:
            kept.append(row)
    return kept, dropped


def sft_rows(kept: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """System 1's training data: the question as System 1 is asked it -> the final answer only."""
    return [
        {
            "prompt": [{"role": "user", "content": r["prompt"]}],
            "completion": [{"role": "assistant", "content": r["target"]}],
        }  # fmt: skip
        for r in kept
    ]


def counts_of(
    inputs: Sequence[dict], runs: Sequence[dict], kept: Sequence[dict], dropped: Sequence[dict]
) -> dict[str, Any]:
    agreements = [r["agreement"] for r in (*kept, *dropped)]
    return {
        "inputs": len(inputs),
        "runs": len(runs),
        "failed_runs": sum(bool(r["error"]) for r in runs),
        "kept": len(kept),
        "dropped": len(dropped),
        "kept_rate": len(kept) / len(inputs) if inputs else 0.0,
        "mean_agreement": sum(agreements) / len(agreements) if agreements else 0.0,
        "system2_tokens": sum(r["completion_tokens"] for r in runs) / len(runs) if runs else 0.0,
    }


def shortfall(counts: dict[str, Any], cfg: S2DistillConfig, dropped: Sequence[dict]) -> str:
    reasons = Counter(d["reason"].split(" (")[0] for d in dropped).most_common(3)
    why = "; ".join(f"{n} x {r}" for r, n in reasons)
    return (
        f"{counts['kept']} of {counts['inputs']} inputs kept, fewer than min_kept={cfg.min_kept}: "
        f"{cfg.strategy} x {cfg.samples} runs each ({counts['failed_runs']} failed), mean agreement "
        f"{counts['mean_agreement']:.2f} vs the threshold {cfg.agreement} ({why}). Lower agreement, raise "
        "max_new_tokens or max_items, or use a stronger model (see dropped.jsonl in the run dir)"
    )


# -- the trainer ------------------------------------------------------------------------------------------------
class S2Distill(Trainer):
    Config = S2DistillConfig
    description = (
        "System-2 distillation: run a System-2 strategy N times on unlabelled task inputs, keep the inputs whose "
        "answers agree (self-consistency), and fine-tune System 1 on input -> final answer, without the steps"
    )
    paper = "Yu et al. 2024, Distilling System 2 into System 1, arXiv 2407.06023"
    teacher_field = "strategy"  # studio improve also scores M0 through it: System 1, System 2, distilled
    curves = ("loss", "s2distill/kept_rate", "s2distill/mean_agreement", "s2distill/kept", "s2distill/inputs",
              "s2distill/system2_tokens")  # fmt: skip

    # -- parent side ----------------------------------------------------------------------------------------------
    @classmethod
    def _data(cls, store: Store | None, config: Any, limit: int) -> tuple[data.DataPreview, Any]:
        """The task's train inputs (shipped files, not the store): counted here, read again by the job."""
        from studio.eval.tasks import get_task

        task = get_task(config.task)
        items = task.load("train").items[: config.max_items]
        rows = [{"prompt": task.prompt(i)} for i in items[:limit]]
        preview = data.DataPreview(cls.registered_name, "prompts", len(items), rows, {"inputs": len(items)})
        preview.notes.append(
            f"{config.strategy} x {config.samples} runs per input; kept when >= {config.agreement:.0%} agree"
        )
        if len(items) < config.min_examples:
            preview.problems.append(
                f"task {config.task!r} gives {len(items)} train inputs, fewer than min_examples={config.min_examples}"
            )
        return preview, None

    @classmethod
    def _write(cls, rows: Any, run: RunDir) -> None:
        """Nothing to snapshot: the job reads the task's shipped train split."""

    # -- job side -------------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        from studio.eval.tasks import get_task

        cfg = self.config
        task = get_task(cfg.task)
        items = task.load("train").items[: cfg.max_items]
        inputs = [{"id": i.id, "prompt": task.prompt(i)} for i in items]
        if len(inputs) < cfg.min_examples:
            raise InputError(
                f"task {cfg.task!r} has {len(inputs)} train inputs, fewer than {cfg.min_examples}"
            )
        write_jsonl(self.run.path / "inputs.jsonl", inputs)
        runs = self.sample(inputs)
        kept, dropped = select(inputs, runs, cfg, task.metric)
        counts = {**counts_of(inputs, runs, kept, dropped), "kept_correct_rate": _correct(task, items, kept)}
        write_jsonl(self.run.path / "kept.jsonl", kept)
        write_jsonl(self.run.path / "dropped.jsonl", dropped)
        write_json(self.run.path / "counts.json", counts)
        self._log(0, {f"s2distill/{k}": float(v) for k, v in counts.items() if k != "runs"})
        print(f"[studio] s2_distill: {json.dumps(counts)}", flush=True)
        if len(kept) < cfg.min_kept:
            raise InputError(shortfall(counts, cfg, dropped))
        out = self.fit(sft_rows(kept))
        entry = self.model_entry(
            out, parent=cfg.base_model, strategy=cfg.strategy, variant=cfg.variant, task=cfg.task,
            samples=cfg.samples, agreement=cfg.agreement, kept=len(kept), inputs=len(inputs),
        )  # fmt: skip
        return {"models": [entry], "metrics": {**counts, **out["metrics"]}, "steps": out["steps"]}

    def sample(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Step 1, chunk by chunk; finished chunks are kept in ``samples.jsonl``, so a resumed job skips them."""
        import gc

        from studio.backends.transformers_backend import TransformersBackend

        cfg, path = self.config, self.run.path / "samples.jsonl"
        runs = read_jsonl(path) if path.exists() else []
        done = {r["id"] for r in runs}
        todo = [r for r in inputs if r["id"] not in done]
        if not todo:
            return runs
        backend = TransformersBackend(cfg.model_path, adapter=cfg.adapter_path or None, dtype=cfg.gen_dtype,
                                      model_name=cfg.base_model)  # fmt: skip
        try:
            for start in range(0, len(todo), cfg.batch_items):
                chunk = todo[start : start + cfg.batch_items]
                seed = cfg.seed + start
                runs += system2_runs(backend, [(r["id"], r["prompt"]) for r in chunk], cfg, seed)
                write_jsonl(path, runs)  # atomic: a killed job leaves whole chunks only
                print(f"[studio] s2_distill: {len(runs) // cfg.samples}/{len(inputs)} inputs run", flush=True)
        finally:
            backend.close()
            gc.collect()
        return runs

    def fit(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        """Step 3: SFT (LoRA) of the starting model on input -> final answer, loss on the answer only."""
        import torch
        from datasets import Dataset
        from trl import SFTTrainer

        from studio.training.common import load_tokenizer, policy_model, resume_from, save_policy, trl_config

        torch.set_grad_enabled(True)  # the generation backend turned gradients off process-wide
        cfg = self.config
        args = trl_config(cfg, self.run)
        model, peft = policy_model(cfg)
        trainer = SFTTrainer(
            model=model, args=args, train_dataset=Dataset.from_list(rows),
            processing_class=load_tokenizer(cfg.model_path), peft_config=peft, callbacks=[self.callback()],
        )  # fmt: skip
        out = trainer.train(resume_from_checkpoint=resume_from(self.run))
        paths = save_policy(trainer, cfg, self.run)
        return {**paths, "metrics": dict(out.metrics), "steps": int(trainer.state.global_step)}


def _correct(task: Task, items: Sequence[EvalItem], kept: Sequence[dict[str, Any]]) -> float:
    """The share of kept targets the task metric scores correct: a measurement of the filter, after selection."""
    if not kept:
        return 0.0
    by_id = {i.id: i for i in items}
    return sum(task.reward(by_id[r["id"]], r["target"]) for r in kept) / len(kept)
