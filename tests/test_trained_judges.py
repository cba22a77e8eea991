"""The trained judges on real trained models: a reward model and a DPO policy, each trained for a few steps on 16
preference pairs through the studio's own job path (store snapshot, run dir, registration), then judging pairs.

- ``reward_model``: P(A better) = sigma(r_A - r_B) of the registered reward model, whose rewards are what TRL's
  RewardTrainer tokenization gives on the saved model; batched = one at a time; a chat model is refused.
- ``dpo_implicit``: r = beta * (log pi - log pi_ref) with the DPO job's beta and the model's parent as the
  reference, the log-probs over the tokens DPOTrainer scores (answer + end of turn).
- ``training_pairs``: exactly the snapshot's pairs, for the model and for a model trained from it.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from scipy.special import expit

from storage import Store
from studio.errors import InputError
from studio.judges.base import JudgeItem, make_judge
from studio.models import ModelRegistry, ModelSpec
from studio.settings import Settings
from studio.training import RunDir
from tests.conftest import with_default_model
from tests.test_training_methods import TINY, train_here

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

#: 16 pairs (question, preferred, other), each voted for by a person
PAIRS = [
    ("What is 2+2?", "4", "5"),
    ("Capital of France?", "Paris.", "Rome."),
    ("Opposite of hot?", "Cold.", "Up."),
    ("Name a primary colour.", "Red.", "Dog."),
    ("What is 3*3?", "9", "6"),
    ("Capital of Italy?", "Rome.", "Paris."),
    ("Opposite of up?", "Down.", "Blue."),
    ("How many legs has a cat?", "Four.", "Seven."),
    ("What is 10-4?", "6", "14"),
    ("Capital of Spain?", "Madrid.", "Berlin."),
    ("Opposite of big?", "Small.", "Tall."),
    ("What colour is the sky on a clear day?", "Blue.", "Green."),
    ("How many days are in a week?", "Seven.", "Nine."),
    ("What is 5+5?", "10", "55"),
    ("Capital of Germany?", "Berlin.", "Vienna."),
    ("Which is a fruit: apple or chair?", "Apple.", "Chair."),
]
DPO_BETA = 0.2  # not the default, so that the judge must read it from the job


@pytest.fixture(scope="module")
def studio_settings(tmp_path_factory: pytest.TempPathFactory, default_model_dir: Path) -> Settings:
    data = tmp_path_factory.mktemp("trained-judges") / "data"
    # float32: the judges' numbers are compared with direct computations to 1e-4
    settings = with_default_model(data, default_model_dir, threads=1, dtype="float32")
    with Store(settings.db_path, data_dir=data) as store:
        for question, good, bad in PAIRS:
            pid = store.add_prompt(question, "judges-test")
            a = store.add_run(pid, "smollm2-135m", "cot", good)
            b = store.add_run(pid, "smollm2-135m", "system1", bad)
            store.add_vote(store.add_comparison([a, b]), "A", "alice")
    return settings


@pytest.fixture(scope="module")
def reward_job(studio_settings: Settings) -> tuple[int, RunDir]:
    return train_here(studio_settings, "reward", {**TINY, "max_steps": 3, "eval_fraction": 0.0})


@pytest.fixture(scope="module")
def dpo_job(studio_settings: Settings) -> tuple[int, RunDir]:
    return train_here(studio_settings, "dpo", {**TINY, "max_steps": 2, "beta": DPO_BETA})


@pytest.fixture(scope="module")
def registry(studio_settings: Settings) -> ModelRegistry:
    reg = ModelRegistry(studio_settings)
    yield reg
    reg.close()


ITEMS = [
    JudgeItem.pair("Capital of France?", "Paris.", "Rome."),
    JudgeItem.pair("What is 2+2?", "5", "4"),
    JudgeItem.pair("Name a large animal.", "An elephant.", "A mouse, which is very small."),
]


def user(q: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": q}]


# -- the reward-model judge -------------------------------------------------------------------------------------
def test_reward_model_judge(registry: ModelRegistry, reward_job: tuple[int, RunDir], backend) -> None:
    from studio.backends.reward_backend import RewardModelBackend

    job_id, run = reward_job
    name = f"reward-{job_id}"
    assert name not in registry.names()  # never offered as a chat model...
    rm = registry.backend(name)  # ...but loadable, as a reward model
    assert isinstance(rm, RewardModelBackend) and rm.supports_reward
    with pytest.raises(InputError, match="does not generate"):
        rm.chat([user("Hi")], None)

    verdicts = make_judge("reward_model").judge(ITEMS, rm)
    convs = [user(it.question) for it in ITEMS for _ in it.answers]
    answers = [a.text for it in ITEMS for a in it.answers]
    alone = [rm.reward([c], [a])[0] for c, a in zip(convs, answers, strict=True)]
    for i, v in enumerate(verdicts):
        r_a, r_b = v.scores["reward"]["A"], v.scores["reward"]["B"]
        assert v.ok and v.orders == ["AB"] and v.judge_model == name
        assert v.prob_a == pytest.approx(float(expit(r_a - r_b)), abs=1e-9)
        assert v.winner == ("A" if r_a > r_b else "B") and v.order_winners == [v.winner]
        assert (r_a, r_b) == pytest.approx((alone[2 * i], alone[2 * i + 1]), abs=1e-4)  # batched = alone
    # the rewards are the saved model's on RewardTrainer's own tokenization of prompt + answer
    assert alone[:2] == pytest.approx(direct_rewards(run, ITEMS[0]), abs=1e-4)

    with pytest.raises(InputError, match="needs a reward model"):
        make_judge("reward_model").judge(ITEMS[:1], backend)


def direct_rewards(run: RunDir, item: JudgeItem) -> list[float]:
    import torch
    from trl.data_utils import _tokenize

    from studio.training.common import load_tokenizer
    from studio.training.reward import load_reward_model

    saved = run.result()["reward_model"]
    tok = load_tokenizer(saved["base"])
    model = load_reward_model(saved["base"], base_adapter=saved["base_adapter"], adapter=saved["adapter"])
    model.config.pad_token_id = tok.pad_token_id
    out = []
    for answer in item.answers:  # as RewardTrainer's tokenize_fn: prompt + chosen, conversational
        ids = _tokenize(tok, user(item.question) + [{"role": "assistant", "content": answer.text}])[
            "input_ids"
        ]
        with torch.no_grad():
            out.append(float(model(input_ids=torch.tensor([ids])).logits[0, 0]))
    return out


def test_a_sequence_classification_dir_registers_as_a_reward_model(
    studio_settings: Settings, registry: ModelRegistry, reward_job: tuple[int, RunDir], tmp_path: Path
) -> None:
    from studio.cli import main
    from studio.training.reward import load_reward_model

    job_id, run = reward_job
    saved = run.result()["reward_model"]
    hf_dir = tmp_path / "rm"
    load_reward_model(saved["base"], adapter=saved["adapter"]).save_pretrained(hf_dir)
    registry.backend(f"reward-{job_id}").tokenizer.save_pretrained(hf_dir)
    data = ["--data-dir", str(studio_settings.data_dir)]
    assert main(["models", "add", "rm-hf", "--kind", "reward", "--path", str(hf_dir), *data]) == 0
    assert main(["models", "add", "not-rm", "--kind", "reward", "--path", saved["base"], *data]) == 0
    fresh = ModelRegistry(studio_settings)
    try:
        assert "rm-hf" not in fresh.names() and fresh.spec("rm-hf").kind == "reward"
        pair = [user("Capital of France?")] * 2, ["Paris.", "Rome."]
        expected = registry.backend(f"reward-{job_id}").reward(*pair)
        assert fresh.backend("rm-hf").reward(*pair) == pytest.approx(expected, abs=1e-4)
        with pytest.raises(InputError, match="not a reward model"):
            fresh.backend("not-rm")  # a causal LM: no trained head
    finally:
        fresh.close()


# -- the DPO implicit-reward judge ------------------------------------------------------------------------------
def test_dpo_implicit_judge(registry: ModelRegistry, dpo_job: tuple[int, RunDir]) -> None:
    job_id, _ = dpo_job
    name = f"dpo-{job_id}"
    judge = make_judge("dpo_implicit")
    judge.bind(registry, name)
    assert (judge.config.reference, judge.config.beta) == (
        "smollm2-135m",
        DPO_BETA,
    )  # the parent, the job's beta
    policy, ref = registry.backend(name), registry.backend("smollm2-135m")
    verdicts = judge.judge(ITEMS, policy)
    for item, v in zip(ITEMS, verdicts, strict=True):
        assert v.ok and v.orders == ["AB"] and v.config["beta"] == DPO_BETA
        lp = [direct_logprob(policy, item.question, a.text) for a in item.answers]
        lp_ref = [direct_logprob(ref, item.question, a.text) for a in item.answers]
        r = [DPO_BETA * (p - q) for p, q in zip(lp, lp_ref, strict=True)]
        assert [v.scores["logprob"][s] for s in "AB"] == pytest.approx(lp, abs=1e-3)
        assert [v.scores["ref_logprob"][s] for s in "AB"] == pytest.approx(lp_ref, abs=1e-3)
        assert v.prob_a == pytest.approx(float(expit(r[0] - r[1])), abs=1e-4)
        assert v.winner == ("A" if r[0] > r[1] else "B")
    # the policy moved: its log-probs differ from the reference's
    assert any(abs(v.scores["reward"]["A"]) > 1e-6 for v in verdicts)

    with pytest.raises(InputError, match="no parent"):
        make_judge("dpo_implicit").bind(registry, "smollm2-135m")
    with pytest.raises(InputError, match="bind"):
        make_judge("dpo_implicit").judge(ITEMS[:1], policy)


def direct_logprob(backend, question: str, answer: str) -> float:
    """log pi(answer | question) as DPOTrainer computes it: the answer tokens are what the chat template over
    prompt + answer adds after the prompt with its generation prompt; one unpadded row."""
    import torch
    from trl.data_utils import _tokenize

    tok = backend.tokenizer
    prompt = _tokenize(tok, user(question), add_generation_prompt=True)["input_ids"]
    full = _tokenize(tok, user(question) + [{"role": "assistant", "content": answer}])["input_ids"]
    assert full[: len(prompt)] == prompt and len(full) > len(prompt) + 1  # the answer and its end of turn
    ids = torch.tensor([full])
    with torch.no_grad():
        logp = torch.log_softmax(backend.model(input_ids=ids).logits[0, :-1].float(), dim=-1)
    return float(logp.gather(-1, ids[0, 1:].unsqueeze(-1))[len(prompt) - 1 :].sum())


def test_sequence_logprob_scores_the_answer_as_dpo_does(backend) -> None:
    """The answer tokens end with the chat template's end of turn, and a row scores the same in a batch."""
    q = user("Capital of France?")
    prompt, answer = backend.completion_ids(q, "Paris.")
    assert backend.tokenizer.decode(answer) == "Paris.<|im_end|>\n"
    convs, answers = [q, q, user("What is 2+2? Answer briefly.")], ["Paris.", "The capital is Rome.", "4"]
    batched = backend.sequence_logprob(convs, answers)
    alone = [backend.sequence_logprob([c], [a])[0] for c, a in zip(convs, answers, strict=True)]
    assert batched == pytest.approx(alone, abs=1e-3)
    assert batched[0] == pytest.approx(direct_logprob(backend, "Capital of France?", "Paris."), abs=1e-3)


# -- what a trained judge was trained on ------------------------------------------------------------------------
def test_training_pairs(
    studio_settings: Settings,
    registry: ModelRegistry,
    reward_job: tuple[int, RunDir],
    dpo_job: tuple[int, RunDir],
) -> None:
    from studio.judging.heldout import is_training_pair, training_pairs

    runs = studio_settings.runs_dir
    want = {(q, frozenset((good, bad))) for q, good, bad in PAIRS}
    assert training_pairs(registry, runs, f"reward-{reward_job[0]}") == want
    dpo = f"dpo-{dpo_job[0]}"
    assert training_pairs(registry, runs, dpo) == want
    assert training_pairs(registry, runs, "smollm2-135m") is None  # not trained in the studio
    # a model trained from the DPO model learned from its parent's data too
    spec = registry.spec(dpo)
    registry.add(ModelSpec(name="dpo-child", path=spec.path, adapter=spec.adapter, parent=dpo))
    pairs = training_pairs(registry, runs, "dpo-child")
    assert pairs == want
    assert is_training_pair(pairs, "Capital of France?", "Paris.", "Rome.")
    assert is_training_pair(pairs, "Capital of France?", "Rome.", "Paris.")  # either position
    assert not is_training_pair(pairs, "Capital of France?", "Paris.", "Lyon.")
    assert not is_training_pair(None, "Capital of France?", "Paris.", "Rome.")


@pytest.mark.parametrize(
    ("judge", "config", "message"),
    [
        ("dpo_implicit", {"beta": "x"}, "beta must be a number > 0"),
        ("dpo_implicit", {"beta": 0}, "beta must be a number > 0"),
        ("reward_model", {"tie_margin": 0.5}, "tie_margin must be in"),
        ("reward_model", {"tie_margin": "x"}, "tie_margin must be in"),
    ],
)
def test_bad_settings_are_input_errors(judge: str, config: dict, message: str) -> None:
    with pytest.raises(InputError, match=message):
        make_judge(judge, config)
