"""Every training method, for real, on the default model (CPU, tiny settings: 1-3 steps, LoRA r=4, 128 tokens).

DPO runs the whole way a user would: ``studio train dpo --wait`` starts a job process from a store snapshot; the
adapter must be saved, changed, registered with its lineage, and load and generate. The other methods run
their job in this process (``studio.training.job.run``), which is the same code without the process start-up.
Self-Rewarding runs with the default model as its own judge, as in the paper. SmolLM2-135M almost never writes a
parsable ``Score: N``, so the judge reads the score from P("0".."5") after an assistant "Score: " prefill
(``judge_score_mode="logprob"``), which always exists.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storage import Filters, Store
from studio.settings import Settings
from studio.training import RunDir, Runner
from studio.training.job import run as run_job
from tests.conftest import with_default_model
from tests.seeds import ranked_prompts

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

TINY = {"max_steps": 2, "max_length": 128, "lora_r": 4, "lora_alpha": 8, "per_device_train_batch_size": 2,
        "save_steps": 100}  # fmt: skip


@pytest.fixture(scope="module")
def studio_settings(tmp_path_factory: pytest.TempPathFactory, default_model_dir: Path) -> Settings:
    data = tmp_path_factory.mktemp("training") / "data"
    settings = with_default_model(data, default_model_dir, threads=1)
    with Store(settings.db_path, data_dir=data) as store:
        list(ranked_prompts(store, "train-test"))  # 12 DPO / RM pairs, 8 KTO labels
    return settings


def train_here(settings: Settings, method: str, values: dict) -> tuple[int, RunDir]:
    """Queue a job (snapshot from the store), run it in this process, sync it back; (job id, run dir)."""
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        runner = Runner(settings, store, autostart=False)
        job = runner.start(method, values)
        assert run_job(Path(job.run_dir) / "config.yaml") == 0, RunDir(job.run_dir).status().get("error")
        job = runner.sync(job.id)
    assert job.state == "succeeded", job.error
    return job.id, RunDir(job.run_dir)


@pytest.fixture(scope="module")
def reward_job(studio_settings: Settings) -> tuple[int, RunDir]:
    return train_here(studio_settings, "reward", {**TINY, "max_steps": 3})


# -- DPO, the way a user starts it ------------------------------------------------------------------------------
def test_dpo_job_from_the_cli(studio_settings: Settings) -> None:

    from studio.cli import main

    data = str(studio_settings.data_dir)
    sets = [f"--set={k}={json.dumps(v)}" for k, v in {**TINY, "max_steps": 3}.items()]
    assert main(["train", "dpo", *sets, "--prompt-set", "train-test", "--wait", "--data-dir", data]) == 0
    with Store(studio_settings.db_path) as store:
        row = next(r for r in store.list_training_runs() if r["method"] == "dpo")
        assert (row["method"], row["status"]) == ("dpo", "done")
        run = RunDir(row["output_path"])
        assert {"rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= set(
            store.metrics(row["id"])
        )
        lineage = store.lineage(f"dpo-{row['id']}")
    series = run.metric_series()
    assert {"loss", "rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"} <= set(
        series
    )
    assert [step for step, _ in series["loss"]] == [1, 2, 3]
    assert_adapter_moved(run.adapter)
    assert [m["name"] for m in lineage] == [f"dpo-{row['id']}"] and lineage[0]["parent"] == "smollm2-135m"
    check_registered_adapter_generates(studio_settings, f"dpo-{row['id']}", run.adapter)


def assert_adapter_moved(adapter: Path) -> dict:
    """The saved adapter's LoRA B matrices, which start at zero, are not all zero any more: training changed the
    weights. Returns the saved tensors."""
    from safetensors.torch import load_file

    weights = load_file(adapter / "adapter_model.safetensors")
    lora_b = {name: t for name, t in weights.items() if "lora_B" in name}
    assert lora_b, sorted(weights)[:5]
    assert any(t.abs().sum() > 0 for t in lora_b.values()), "every LoRA B is still zero: no learning step"
    return weights


def check_registered_adapter_generates(settings: Settings, name: str, adapter: Path) -> None:
    from studio.backends import GenParams
    from studio.backends.transformers_backend import TransformersBackend
    from studio.models import ModelRegistry

    spec = ModelRegistry(settings).get(name)  # in the Arena's model picker
    assert (Path(spec.adapter), spec.parent, spec.backend) == (adapter, "smollm2-135m", "transformers")
    backend = TransformersBackend(spec.path, adapter=spec.adapter, model_name=name)
    out = backend.chat([[{"role": "user", "content": "Capital of France?"}]], GenParams(max_new_tokens=8))
    assert out[0].text.strip()


# -- reward model, KTO ----------------------------------------------------------------------------------------
def test_reward_model(studio_settings: Settings, reward_job: tuple[int, RunDir], tmp_path: Path) -> None:
    from studio.models import ModelRegistry

    job_id, run = reward_job
    series = run.metric_series()
    assert {"loss", "accuracy", "eval_accuracy", "eval_loss"} <= set(series)  # accuracy on the held-out pairs
    keys = assert_adapter_moved(run.adapter)
    assert any("score" in k for k in keys)  # LoRA + the trained head
    assert run.result()["reward_model"]["adapter"] == str(run.adapter)
    # the saved reward model (what PPO and RLOO load) is the one that was evaluated: on the same held-out pairs
    # it gives the logged eval loss and accuracy
    evaluated = evaluate_saved_reward_model(run, tmp_path)
    assert evaluated["eval_loss"] == pytest.approx(series["eval_loss"][-1][1], abs=1e-3)
    assert evaluated["eval_accuracy"] == series["eval_accuracy"][-1][1]
    with Store(studio_settings.db_path) as store:
        model = store.get_model(f"reward-{job_id}")
    assert model["backend"] == "reward-model" and model["training_run_id"] == job_id
    assert f"reward-{job_id}" not in ModelRegistry(studio_settings).names()  # not a chat model for the Arena


def evaluate_saved_reward_model(run: RunDir, tmp_path: Path) -> dict[str, float]:
    """TRL's evaluation of the saved, merged reward model on the job's held-out split."""
    from trl import RewardConfig, RewardTrainer

    from studio.training.common import load_table, load_tokenizer
    from studio.training.reward import load_reward_model, split

    cfg = run.read_config()["config"]
    _, held_out = split(load_table(run.path / "train.parquet"), cfg["eval_fraction"], cfg["seed"])
    reward = run.result()["reward_model"]
    tok = load_tokenizer(reward["base"])
    model = load_reward_model(reward["base"], base_adapter=reward["base_adapter"], adapter=reward["adapter"])
    model.config.pad_token_id = tok.pad_token_id
    args = RewardConfig(
        output_dir=str(tmp_path / "eval"), max_length=cfg["max_length"], report_to=[], use_cpu=True, bf16=False,
        dataloader_num_workers=0, disable_tqdm=True,
    )  # fmt: skip
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=held_out, eval_dataset=held_out, processing_class=tok
    )  # no training: TRL wants a train set
    return trainer.evaluate()


def test_kto(studio_settings: Settings) -> None:
    _, run = train_here(studio_settings, "kto", TINY)
    assert {"loss", "rewards/chosen", "rewards/rejected", "kl"} <= set(run.metric_series())
    assert_adapter_moved(run.adapter)


# -- RLHF against the reward model ------------------------------------------------------------------------------
ONLINE = {**TINY, "max_steps": 1, "max_completion_length": 12, "prompt_set": "train-test"}


def test_rloo(studio_settings: Settings, reward_job: tuple[int, RunDir]) -> None:
    job_id, run = train_here(studio_settings, "rloo", {**ONLINE, "num_generations": 2})
    series = run.metric_series()
    assert {"loss", "reward", "kl"} <= set(series)
    assert run.read_config()["config"]["reward_run"] == reward_job[0]
    assert_adapter_moved(run.adapter)


def test_ppo(studio_settings: Settings, reward_job: tuple[int, RunDir]) -> None:
    job_id, run = train_here(studio_settings, "ppo", ONLINE)
    series = run.metric_series()
    assert {"objective/kl", "objective/scores", "loss/value_avg"} <= set(series)
    assert {"loss", "reward", "kl"} <= set(series)  # the canonical names the Train tab plots
    assert_adapter_moved(run.adapter)
    with Store(studio_settings.db_path) as store:
        assert store.get_model(f"ppo-{job_id}")["parent"] == "smollm2-135m"


# -- Self-Rewarding --------------------------------------------------------------------------------------------
def test_one_self_rewarding_iteration(studio_settings: Settings) -> None:
    """One iteration on the real default model: M_0 writes prompts, answers, judges itself, DPO gives M_1."""
    values = {
        **TINY, "prompt_source": "both", "n_new_prompts": 4, "max_prompts": 4, "few_shot": 3,
        "prompt_max_new_tokens": 24, "n_samples": 2, "max_new_tokens": 16, "judge_score_mode": "logprob",
        "agreement_max_pairs": 2, "agreement_threshold": 0.99,
    }  # fmt: skip
    job_id, run = train_here(studio_settings, "self_rewarding", values)
    it = run.iteration(0)
    written = json.loads((it / "written_prompts.json").read_text())
    assert len(written["kept"]) + len(written["dropped"]) == 4 * 3  # step 0: M_0 wrote candidates, filtered
    rows = [json.loads(line) for line in (it / "generated.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and all(len(r["answers"]) == 2 and len(r["verdicts"]) == 2 for r in rows)
    verdicts = [v for r in rows for v in r["verdicts"]]  # step 2: M_0 judged itself, every answer scored
    assert all(v["ok"] and 0 <= v["rating"] <= 5 and v["scores"]["reading"] == "logprob" for v in verdicts)
    pairs = [r["pair"] for r in rows if r["pair"]]
    assert pairs and all(p["chosen_score"] > p["rejected_score"] for p in pairs)  # step 3: ties dropped
    agreement = json.loads((it / "agreement.json").read_text())
    assert agreement["pairs"] == 2 and agreement["failed"] == 0  # measured on the human pairs beforehand
    series = run.metric_series()
    assert {"selfreward/pairs", "selfreward/mean_score", "judge/human_agreement", "rewards/margins"} <= set(
        series
    )  # step 5: the DPO step ran
    assert series["selfreward/pairs"][-1][1] == len(pairs)
    print(f"self-rewarding: {len(pairs)} pairs, mean score {series['selfreward/mean_score'][-1][1]:.3f}")
    meta = json.loads((it / "meta.json").read_text())
    assert meta["judge_model"] == meta["policy"] == "smollm2-135m"  # the policy is its own judge
    assert meta["judge_config"]["score_mode"] == "logprob"
    with Store(studio_settings.db_path) as store:
        stored = store.preference_pairs(
            Filters(annotator="ai-judge", prompt_set=f"self-rewarding-{job_id}-iter0")
        )
        assert len(stored) == len(pairs)  # step 4: the pairs are in the store, by ai-judge, iteration 0
        additive = store.list_verdicts(judge="additive", limit=None)
        assert len(additive) == 8 and {v["judge_model"] for v in additive} == {"smollm2-135m"}
        assert {v["judge_config"]["iteration"] for v in additive} == {0}
        assert {v["judge_config"]["source"] for v in additive} == {"ai-judge"}
        model = store.get_model(f"self_rewarding-{job_id}-m1")  # step 5: M_1, with its lineage
    assert model["parent"] == "smollm2-135m" and model["config"]["judge_model"] == "smollm2-135m"
    assert_adapter_moved(it / "adapter")  # M_1 = M_0 + a DPO step on the judged pairs
