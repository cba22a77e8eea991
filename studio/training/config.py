"""One config dataclass per training method. Every field has a default and a help text.

A studio config holds the settings a person chooses (the Train tab's form, ``studio train --set``). It builds
the TRL config (``DPOConfig``, ``RewardConfig``, ...) with :meth:`TrainConfig.trl_args`; any other field of that
TRL config can be given too and is passed through unchanged (``trl``; ``--set warmup_steps=2`` lands there).
The defaults train the default model (SmolLM2-135M) on a 2-core CPU in a minute or two.

Fields marked ``resolved`` are filled in by the runner before the job starts (paths, the run id); a person
leaves them empty.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from typing import Any, ClassVar

from studio.errors import InputError

LAUNCHERS = ("local", "ddp", "zero2", "zero3", "fsdp", "multinode")
DTYPES = ("auto", "float32", "bfloat16", "float16")


def opt(default: Any, help: str, *, choices: tuple[str, ...] = (), resolved: bool = False) -> Any:
    """A dataclass field with its help text (and choices) in the metadata; lists and dicts get a factory."""
    meta = {"help": help, "choices": choices, "resolved": resolved}
    if isinstance(default, list | dict):
        return field(default_factory=lambda: json.loads(json.dumps(default)), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class FieldInfo:
    """One config field, for building a form: name, default, type name, help and allowed values."""

    name: str
    default: Any
    type: str
    help: str
    choices: tuple[str, ...] = ()
    group: str = "method"


@dataclass
class TrainConfig:
    """Settings every method shares: the starting model, the data, LoRA, the optimiser, the launch."""

    trl_class: ClassVar[str] = ""  # the TRL config this one builds, as "module:Class"
    # -- model
    base_model: str = opt("", "registered model to start from (empty: the default model)")
    output_name: str = opt("", "name to register the trained model under (empty: <method>-<run id>)")
    use_lora: bool = opt(True, "train a LoRA adapter (PEFT); false = full fine-tune, saving all weights")
    lora_r: int = opt(16, "LoRA rank")
    lora_alpha: int = opt(32, "LoRA alpha (scale = alpha / r)")
    lora_dropout: float = opt(0.05, "LoRA dropout")
    lora_target_modules: list[str] = opt(
        ["q_proj", "k_proj", "v_proj", "o_proj"], "modules that get LoRA adapters"
    )
    dtype: str = opt("auto", "training dtype; auto = bf16 on a GPU that has it, else float32", choices=DTYPES)
    # -- data
    filters: dict[str, Any] = opt(
        {},
        "store filters: annotator, source (human|judge), model, strategy, prompt_set, since, until, agree_only",
    )
    min_examples: int = opt(4, "refuse to start with fewer training examples than this")
    max_examples: int = opt(0, "use at most this many examples (0 = all)")
    # -- optimisation
    learning_rate: float = opt(5e-5, "peak learning rate")
    max_steps: int = opt(20, "optimizer steps; -1 = run num_train_epochs instead")
    num_train_epochs: float = opt(1.0, "epochs over the data (used when max_steps is -1)")
    per_device_train_batch_size: int = opt(2, "examples per device per step")
    gradient_accumulation_steps: int = opt(1, "micro-batches per optimizer step")
    max_length: int = opt(256, "maximum tokens per example (prompt + answer); longer ones are truncated")
    logging_steps: int = opt(1, "log metrics every N steps")
    save_steps: int = opt(10, "save a checkpoint (for resume) every N steps")
    save_total_limit: int = opt(2, "keep at most this many checkpoints")
    gradient_checkpointing: bool = opt(False, "recompute activations to save memory (slower)")
    seed: int = opt(0, "random seed")
    threads: int = opt(0, "torch CPU threads in the job (0 = the studio's threads setting)")
    # -- launch
    launcher: str = opt("local", "local process, or accelerate launch with a profile", choices=LAUNCHERS)
    num_processes: int = opt(1, "accelerate: processes (GPUs) per machine")
    num_machines: int = opt(1, "accelerate: machines (multinode)")
    machine_rank: int = opt(0, "accelerate: this machine's rank (multinode)")
    main_process_ip: str = opt("", "accelerate: the rank-0 machine's address (multinode)")
    main_process_port: int = opt(29500, "accelerate: the rank-0 machine's port (multinode)")
    device: str = opt(
        "auto", "scheduling slot: jobs on the same device run one at a time (auto: cuda or cpu)"
    )
    trl: dict[str, Any] = opt({}, "any other field of the TRL config, passed through unchanged")
    # -- resolved by the runner
    run_id: int = opt(0, "the training run id in the store", resolved=True)
    model_path: str = opt("", "weights dir of the base model", resolved=True)
    adapter_path: str = opt("", "adapter of the base model, if it is itself an adapter", resolved=True)

    # -- building ----------------------------------------------------------------------------------------------
    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """A config from plain values; unknown names are routed to ``trl`` if the TRL config has them."""
        own = {f.name: f.type for f in dataclasses.fields(cls)}
        kwargs = {k: _typed(k, own[k], v) for k, v in values.items() if k in own}
        extra = {k: v for k, v in values.items() if k not in own}
        if extra:
            kwargs["trl"] = {**kwargs.get("trl", {}), **cls.check_trl_keys(extra)}
        try:
            cfg = cls(**kwargs)
        except TypeError as e:
            raise InputError(f"{cls.__name__}: {e}") from None
        cfg.validate()
        return cfg

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return type(self).from_dict({**self.to_dict(), **changes})

    @classmethod
    def trl_config_class(cls) -> type:
        import importlib

        module, _, name = cls.trl_class.partition(":")
        return getattr(importlib.import_module(module), name)

    @classmethod
    def check_trl_keys(cls, extra: dict[str, Any]) -> dict[str, Any]:
        """``extra`` if every key is a field of the TRL config; otherwise a user error naming the close ones."""
        known = {f.name for f in dataclasses.fields(cls.trl_config_class())}
        own = [f.name for f in dataclasses.fields(cls)]
        for key in extra:
            if key not in known:
                close = difflib.get_close_matches(key, list(dict.fromkeys(own + sorted(known))), n=3)
                hint = f"; did you mean {', '.join(close)}?" if close else ""
                raise InputError(f"{cls.__name__} has no setting {key!r}{hint}")
        return extra

    def validate(self) -> None:
        """Reject values that cannot work, before anything is launched."""
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            if choices and getattr(self, f.name) not in choices:
                raise InputError(f"{f.name} is one of {', '.join(choices)}, not {getattr(self, f.name)!r}")
        positive = ("per_device_train_batch_size", "gradient_accumulation_steps", "max_length", "save_steps")
        for name in positive:
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.max_steps == 0 or self.max_steps < -1:
            raise InputError(f"max_steps must be >= 1, or -1 for num_train_epochs; not {self.max_steps}")
        if self.learning_rate <= 0:
            raise InputError(f"learning_rate must be > 0, not {self.learning_rate}")
        if self.use_lora and self.lora_r < 1:
            raise InputError(f"lora_r must be >= 1, not {self.lora_r}")

    @classmethod
    def fields_info(cls) -> list[FieldInfo]:
        """The settings a person can change (resolved ones left out), for a form or ``--help``."""
        shared = {f.name for f in dataclasses.fields(TrainConfig)}
        out = []
        for f in dataclasses.fields(cls):
            if f.metadata.get("resolved"):
                continue
            default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
            group = "shared" if f.name in shared else "method"
            out.append(
                FieldInfo(f.name, default, str(f.type), f.metadata["help"], f.metadata["choices"], group)
            )
        return out

    # -- the TRL config ----------------------------------------------------------------------------------------
    def method_trl_args(self) -> dict[str, Any]:
        """The method's own TRL fields (beta, loss_type...); subclasses extend."""
        return {}

    def same_names(self, *names: str) -> dict[str, Any]:
        """These fields as the TRL fields of the same names."""
        return {name: getattr(self, name) for name in names}

    def trl_args(self, output_dir: str, *, cuda: bool, bf16_ok: bool) -> dict[str, Any]:
        """Keyword arguments for the TRL config: shared fields, the method's fields, then ``trl``."""
        bf16 = self.dtype == "bfloat16" or (self.dtype == "auto" and cuda and bf16_ok)
        args: dict[str, Any] = {
            "output_dir": output_dir,
            **self.same_names(
                "learning_rate", "max_steps", "num_train_epochs", "per_device_train_batch_size"
            ),
            **self.same_names("gradient_accumulation_steps", "logging_steps"),
            "save_strategy": "steps",
            **self.same_names("save_steps", "save_total_limit", "gradient_checkpointing", "seed"),
            "bf16": bf16,
            "fp16": self.dtype == "float16",
            "use_cpu": not cuda,
            "report_to": [],
            "disable_tqdm": True,  # the log file gets one line per logging step, not progress-bar redraws
            "dataloader_num_workers": 0,
        }
        args.update(self.method_trl_args())
        args.update(self.trl)
        return args


@dataclass
class DPOTrainConfig(TrainConfig):
    """DPO (Rafailov et al. 2023, arXiv 2305.18290): the reference is the base with the adapter disabled."""

    trl_class: ClassVar[str] = "trl:DPOConfig"
    beta: float = opt(0.1, "DPO beta: how far the policy may move from the reference")
    loss_type: str = opt(
        "sigmoid",
        "DPO loss: sigmoid (the paper), hinge, ipo, robust, exo_pair, nca_pair, bco_pair, sppo_hard, apo_zero...",
    )

    def method_trl_args(self) -> dict[str, Any]:
        return {"beta": self.beta, "loss_type": [self.loss_type], "max_length": self.max_length}


@dataclass
class RewardTrainConfig(TrainConfig):
    """A reward model (InstructGPT step 2): a sequence classifier with one output, trained on pairs."""

    trl_class: ClassVar[str] = "trl:RewardConfig"
    learning_rate: float = opt(1e-4, "peak learning rate")
    eval_fraction: float = opt(0.2, "share of the pairs held out to measure accuracy (at least one pair)")
    center_rewards_coefficient: float = opt(0.0, "push the mean reward towards 0 (0 = off)")

    def validate(self) -> None:
        super().validate()
        if not 0 <= self.eval_fraction < 1:
            raise InputError(f"eval_fraction must be in [0, 1), not {self.eval_fraction}")

    def method_trl_args(self) -> dict[str, Any]:
        coef = self.center_rewards_coefficient or None
        return {"max_length": self.max_length, "center_rewards_coefficient": coef}


@dataclass
class KTOTrainConfig(TrainConfig):
    """KTO (Ethayarajh et al. 2024, arXiv 2402.01306): unpaired desirable / undesirable answers."""

    trl_class: ClassVar[str] = "trl:KTOConfig"
    beta: float = opt(0.1, "KTO beta")
    desirable_weight: float = opt(1.0, "weight of desirable examples (raise it when they are fewer)")
    undesirable_weight: float = opt(1.0, "weight of undesirable examples")
    good_rating: float = opt(
        0.0, "also label single judge ratings: >= this is desirable (0 = do not use ratings)"
    )

    def method_trl_args(self) -> dict[str, Any]:
        return self.same_names("beta", "desirable_weight", "undesirable_weight", "max_length")


@dataclass
class OnlineRLConfig(TrainConfig):
    """Shared by PPO and RLOO: prompts from the store, answers scored by a trained reward model."""

    reward_run: int = opt(0, "training run id of the reward model to optimise against (0 = the newest one)")
    prompt_set: str = opt("", "prompts from this prompt set (empty: every prompt in the store)")
    max_prompts: int = opt(64, "use at most this many prompts")
    max_completion_length: int = opt(48, "tokens generated per answer")
    temperature: float = opt(0.7, "sampling temperature of the answers")
    min_examples: int = opt(2, "refuse to start with fewer prompts than this")
    max_steps: int = opt(10, "optimizer steps; -1 = run num_train_epochs instead")
    reward_base_path: str = opt("", "base weights of the reward model", resolved=True)
    reward_base_adapter_path: str = opt("", "adapter merged into the reward model's base", resolved=True)
    reward_adapter_path: str = opt("", "adapter of the reward model", resolved=True)


@dataclass
class RLOOTrainConfig(OnlineRLConfig):
    """RLOO (Ahmadian et al. 2024, arXiv 2402.14740): REINFORCE with a leave-one-out baseline, KL to the start."""

    trl_class: ClassVar[str] = "trl:RLOOConfig"
    num_generations: int = opt(2, "answers per prompt (>= 2: each one's baseline is the others' mean)")
    beta: float = opt(0.05, "KL coefficient to the starting policy")

    def validate(self) -> None:
        super().validate()
        if self.num_generations < 2:
            raise InputError(f"RLOO needs num_generations >= 2, not {self.num_generations}")
        if (self.per_device_train_batch_size * self.gradient_accumulation_steps) % self.num_generations:
            raise InputError(
                "RLOO: per_device_train_batch_size x gradient_accumulation_steps "
                f"({self.per_device_train_batch_size} x {self.gradient_accumulation_steps}) must be a multiple "
                f"of num_generations ({self.num_generations})"
            )

    def method_trl_args(self) -> dict[str, Any]:
        names = ("num_generations", "max_completion_length", "temperature", "beta")
        return {**self.same_names(*names), "log_completions": False}


@dataclass
class PPOTrainConfig(OnlineRLConfig):
    """PPO as in InstructGPT (Ouyang et al. 2022, arXiv 2203.02155): a value model and a KL penalty to the start."""

    trl_class: ClassVar[str] = "trl.experimental.ppo:PPOConfig"
    kl_coef: float = opt(0.05, "KL penalty coefficient (beta in beta * log(pi / pi_start))")
    vf_coef: float = opt(0.1, "value-loss coefficient")
    cliprange: float = opt(0.2, "PPO clip range of the policy ratio")
    num_ppo_epochs: int = opt(1, "PPO epochs over each batch of rollouts")
    missing_eos_penalty: float = opt(
        0.0, "subtract this from the score of answers cut off by the length limit"
    )

    def method_trl_args(self) -> dict[str, Any]:
        batch = self.per_device_train_batch_size * self.gradient_accumulation_steps
        episodes = None if self.max_steps == -1 else self.max_steps * batch
        return {
            "total_episodes": episodes,
            "num_mini_batches": 1,
            "num_ppo_epochs": self.num_ppo_epochs,
            "response_length": self.max_completion_length,
            **self.same_names("temperature", "kl_coef", "vf_coef", "cliprange"),
            "missing_eos_penalty": self.missing_eos_penalty or None,
            "stop_token": "eos",
            "num_sample_generations": 0,
        }

    def trl_args(self, output_dir: str, *, cuda: bool, bf16_ok: bool) -> dict[str, Any]:
        args = super().trl_args(output_dir, cuda=cuda, bf16_ok=bf16_ok)
        args.pop("max_steps")  # PPO counts episodes (total_episodes), not steps
        return args


@dataclass
class SelfRewardingConfig(DPOTrainConfig):
    """Self-Rewarding (Yuan et al. 2024, arXiv 2401.10020): M_t writes prompts, answers, judges, then DPO."""

    iterations: int = opt(1, "iterations T: M_0 -> M_1 -> ... -> M_T")
    task: str = opt(
        "",
        "a verifiable task (arithmetic, game24, last_letter): the prompts are max_prompts questions of its TRAIN "
        "split (their answers are never read: the model judges itself); empty = prompt_source",
    )
    start_iteration: int = opt(
        0, "the iteration number of the starting model (0 = M_0); the trained model is M_{start+1}"
    )
    prompt_source: str = opt(
        "generate",
        "generate: M_t writes new prompts (Self-Instruct); store: use prompt_set as given; both",
        choices=("generate", "store", "both"),
    )
    prompt_set: str = opt("", "seed prompts (generate) or the training prompts (store); empty = all")
    n_new_prompts: int = opt(8, "new prompts M_t writes per iteration")
    few_shot: int = opt(8, "example prompts shown per generated prompt (the paper: 8)")
    prompt_temperature: float = opt(1.0, "sampling temperature when writing prompts")
    prompt_max_new_tokens: int = opt(64, "tokens per written prompt")
    rouge_threshold: float = opt(0.7, "drop a new prompt whose ROUGE-L with a kept one is >= this")
    max_prompts: int = opt(16, "at most this many training prompts per iteration")
    n_samples: int = opt(4, "answers per prompt, N (the paper: 4)")
    temperature: float = opt(0.7, "answer sampling temperature (the paper: 0.7)")
    top_p: float = opt(0.9, "answer nucleus sampling (the paper: 0.9)")
    max_new_tokens: int = opt(128, "tokens per answer")
    judge_model: str = opt("", "registered model that judges (empty: the policy M_t judges itself)")
    judge_samples: int = opt(3, "judgements per answer, averaged (the paper: 3)")
    judge_temperature: float = opt(0.7, "sampling temperature of the judge")
    judge_max_new_tokens: int = opt(256, "tokens per judgement")
    judge_score_mode: str = opt(
        "text",
        "text: parse the judge's 'Score: N' (the paper); logprob: read P(0..5) after 'Score:' and take the "
        "expectation: always yields a score, for small models (local judge only)",
        choices=("text", "logprob"),
    )
    judge_structured: bool = opt(
        False,
        "text judge: write each judgement as JSON (justification, then score) under the additive schema; the "
        "default model rarely writes a free-text 'Score: N'",
    )
    agreement_threshold: float = opt(
        0.0, "judge-human pairwise accuracy below this triggers agreement_action"
    )
    agreement_action: str = opt(
        "warn", "below the threshold: warn and go on, or stop", choices=("warn", "stop")
    )
    agreement_max_pairs: int = opt(8, "human-labelled pairs used to measure agreement per iteration")
    min_pairs: int = opt(1, "an iteration with fewer (max, min) pairs stops the loop")
    min_examples: int = opt(1, "refuse to start with fewer seed prompts than this")
    max_steps: int = opt(10, "DPO steps per iteration; -1 = num_train_epochs over the iteration's pairs")
    tpo: bool = opt(
        False,
        "Thought Preference Optimization (Wu et al. 2024, arXiv 2410.10630): the model writes a thought, then a "
        "response after the thought prompt's marker; the judge sees only the response, DPO trains on the whole "
        "output; answers without a response are dropped and counted",
    )
    tpo_prompt: str = opt(
        "generic", "the paper's thought prompt (tpo): generic or specific (draft + evaluation, then <R>)",
        choices=("generic", "specific"),
    )  # fmt: skip
    tpo_structured: bool = opt(
        False,
        "tpo: write the thought and the response as JSON fields under a schema (the response field is what the "
        "judge sees) instead of after the prompt's marker; the default model never writes the marker",
    )
    meta_rewarding: bool = opt(
        False,
        "Meta-Rewarding (Wu et al. 2024, arXiv 2407.19594): the model also compares two of its own judgements of "
        "an answer; consistent preferences train the judge with DPO in the same step as the answer pairs",
    )
    meta_pairs: int = opt(1, "judgement pairs meta-judged per answer (meta_rewarding)")
    meta_judgements: int = opt(
        2,
        "text judgements sampled per answer for the meta-judge when judge_score_mode=logprob (meta_rewarding)",
    )
    meta_max_new_tokens: int = opt(128, "tokens per meta-judgement (meta_rewarding)")
    gen_dtype: str = opt("auto", "dtype for generating and judging (auto: bf16 where fast)", choices=DTYPES)
    judge_model_path: str = opt("", "weights of the judge model", resolved=True)

    def validate(self) -> None:
        super().validate()
        for name in ("iterations", "n_samples", "judge_samples", "meta_pairs", "meta_max_new_tokens"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.n_samples < 2:
            raise InputError("n_samples must be >= 2: a pair needs a best and a worst answer")
        if self.start_iteration < 0:
            raise InputError(f"start_iteration must be >= 0, not {self.start_iteration}")
        if self.task:
            from studio.eval.tasks import get_task

            get_task(self.task)  # an unknown task names the tasks
            if self.max_prompts < 1:
                raise InputError(f"max_prompts must be >= 1 with a task, not {self.max_prompts}")
        elif self.prompt_source != "store" and self.n_new_prompts < 1:
            raise InputError("n_new_prompts must be >= 1 when prompts are generated")
        if self.meta_rewarding:
            if self.judge_model:
                raise InputError(
                    "meta_rewarding trains the model as its own judge: leave judge_model empty (M_t judges)"
                )
            samples = self.judge_samples if self.judge_score_mode == "text" else self.meta_judgements
            if samples < 2:
                raise InputError(
                    "meta_rewarding compares two judgements of one answer: judge_samples (text mode) or "
                    f"meta_judgements (logprob mode) must be >= 2, not {samples}"
                )
            if self.judge_temperature <= 0:
                raise InputError("meta_rewarding samples judgements: judge_temperature must be > 0")
        if self.launcher != "local":
            raise InputError(
                "the Self-Rewarding loop generates and judges in one process: use launcher=local"
            )


#: prompt-set names that mark a held-out split (``prefs-test``, ``eval_set``, ``heldout``): never trained on
TEST_SPLIT_WORDS = ("test", "eval", "heldout", "holdout", "validation", "val", "dev")


def looks_like_test_split(name: str) -> bool:
    """Whether a prompt set's name marks it as a held-out split (a word of ``TEST_SPLIT_WORDS`` in it)."""
    import re

    return any(w in TEST_SPLIT_WORDS for w in re.split(r"[^a-z0-9]+", name.lower()))


@dataclass
class SelfTaughtConfig(DPOTrainConfig):
    """Self-Taught Evaluator (Wang et al. 2024, arXiv 2408.02666), optionally with Meta-Rewarding's meta-judge
    (Wu et al. 2024, arXiv 2407.19594): the model trains itself as a pairwise judge on synthetic pairs."""

    iterations: int = opt(
        1, "iterations: the judge trained in one annotates the next (each trains from the seed)"
    )
    prompt_set: str = opt(
        "prefs-train",
        "the instructions x (a store prompt set; empty = every set except held-out ones). A set named like a "
        "held-out split (test, eval, heldout, validation, dev) is refused: judges are measured there",
    )
    max_prompts: int = opt(16, "use at most this many prompts")
    max_new_tokens: int = opt(128, "tokens per response (y_w to x, y_l to x')")
    response_temperature: float = opt(0.0, "sampling temperature of the responses (0 = greedy)")
    instruction_max_new_tokens: int = opt(64, "tokens of the modified instruction x'")
    instruction_temperature: float = opt(0.7, "sampling temperature of the modified instruction x'")
    samples: int = opt(4, "judgements sampled per pair and order, N")
    judge_temperature: float = opt(0.8, "sampling temperature of the judgements")
    judge_max_new_tokens: int = opt(192, "tokens per judgement")
    judge_structured: bool = opt(
        True,
        "judge under the pairwise verdict's JSON schema. On the default model free-text judgements never end in "
        "[[A]]/[[B]]/[[C]] (measured: 36 of 36 unreadable), so nothing could be kept",
    )
    keep_per_order: int = opt(
        1, "correct judgements kept per pair and order (the paper: one, drawn at random); 0 = all"
    )
    balance_orders: bool = opt(
        True,
        "keep as many judgements from order AB as from BA (the paper balances the verdict labels); off: "
        "keep all, even if they teach a position bias",
    )
    objective: str = opt(
        "sft",
        "sft: fine-tune on the kept judgements (the paper); dpo: kept (chosen) vs wrong (rejected) judgements "
        "of the same pair and order",
        choices=("sft", "dpo"),
    )
    meta: bool = opt(
        False,
        "Meta-Rewarding: the model also judges pairs of its own judgements; those pairs join the DPO data",
    )
    meta_pairs: int = opt(1, "judgement pairs meta-judged per pair and order (meta)")
    meta_max_new_tokens: int = opt(128, "tokens per meta-judgement")
    min_kept: int = opt(
        1, "fewer training examples than this (after keeping) fails the job, naming the counts"
    )
    max_length: int = opt(1024, "maximum tokens per example (judge prompt + judgement)")
    max_steps: int = opt(10, "optimizer steps per iteration; -1 = num_train_epochs over the kept data")
    min_examples: int = opt(1, "refuse to start with fewer prompts than this")
    gen_dtype: str = opt("auto", "dtype for generating and judging (auto: bf16 where fast)", choices=DTYPES)

    def validate(self) -> None:
        super().validate()
        for name in ("iterations", "samples", "max_prompts", "min_kept", "meta_pairs"):
            if getattr(self, name) < 1:
                raise InputError(f"{name} must be >= 1, not {getattr(self, name)}")
        if self.keep_per_order < 0:
            raise InputError(f"keep_per_order must be >= 0 (0 = all), not {self.keep_per_order}")
        if self.judge_temperature <= 0:
            raise InputError("judge_temperature must be > 0: N judgements are sampled, not one greedy one")
        if self.prompt_set and looks_like_test_split(self.prompt_set):
            raise InputError(
                f"prompt set {self.prompt_set!r} is named like a held-out split: the self-taught judge never "
                "reads test prompts (its agreement is measured on them); use the train split, e.g. prefs-train"
            )
        if self.meta and self.objective != "dpo":
            raise InputError("meta=true adds preference pairs of judgements: it needs objective=dpo")
        if self.launcher != "local":
            raise InputError(
                "the Self-Taught Evaluator generates and judges in one process: use launcher=local"
            )


def parse_value(raw: str) -> Any:
    """A ``--set`` value: JSON when it parses (3, 0.7, true, null, [..]), else the text itself."""
    try:
        return json.loads(raw)
    except json.JSONDecodeError:
        return raw


def parse_sets(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` strings into a dict; a bad pair is a user error."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--set takes KEY=VALUE, not {pair!r}")
        out[key.strip()] = parse_value(value)
    return out


_KINDS = {"int": "a whole number", "float": "a number", "bool": "true or false", "str": "text"}


def _typed(name: str, annotation: Any, value: Any) -> Any:
    """``value`` as the field's declared scalar type (a settings box sends JSON, a form may send strings);
    one clear error when it is not one, instead of a TypeError deep in validation."""
    kind = str(annotation).replace(" | None", "").strip()
    if kind not in _KINDS or (value is None and "None" in str(annotation)):
        return value
    ok = value
    if kind == "str" and isinstance(value, int | float) and not isinstance(value, bool):
        ok = str(value)
    if kind in ("int", "float") and not isinstance(value, bool):
        try:
            number = float(value) if isinstance(value, str | int | float) else None
        except ValueError:
            number = None
        if number is not None and (kind == "float" or number.is_integer()):
            ok = int(number) if kind == "int" else number
    if type(ok).__name__ != kind:
        raise InputError(f"setting {name!r} must be {_KINDS[kind]}, not {value!r}")
    return ok
