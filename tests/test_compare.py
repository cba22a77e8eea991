"""Compare with parent on the real default model: a LoRA child against SmolLM2-135M on a 3-prompt set, judged by
the log-prob judge (and, from the CLI, the additive judge); runs, blind comparisons and verdicts land in the store,
the comparisons stay unlabelled for people, and bad input reads clearly before any model runs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storage import Store
from studio.cli import main
from studio.compare import CompareItem, CompareResult, compare_with_parent, find_parent
from studio.errors import InputError
from studio.judges.logprob import winner_from_prob
from studio.judging import Scope, snapshot, targets
from studio.models import ModelRegistry, ModelSpec

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]
PROMPTS = ["What is 2+2?", "Name a colour.", "What is the capital of France?"]
CHILD = "smol-child"


@pytest.fixture(scope="module")
def adapter_dir(tmp_path_factory: pytest.TempPathFactory, default_model_dir: Path) -> Path:
    """A LoRA adapter with random (not zero) B matrices, so the child answers differently from its parent;
    made in a second, far quicker than a training job (tests/test_train_tab.py compares a trained one)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("child") / "adapter"
    torch.manual_seed(0)  # the same child every run, so its verdicts (and the checks on them) are repeatable
    model = AutoModelForCausalLM.from_pretrained(default_model_dir)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, lora).save_pretrained(out)
    return out


@pytest.fixture()
def registry(settings, default_model_dir: Path, adapter_dir: Path) -> ModelRegistry:
    reg = ModelRegistry(settings)
    reg.add(
        ModelSpec(name=CHILD, path=str(default_model_dir), adapter=str(adapter_dir), parent="smollm2-135m")
    )
    return reg


@pytest.fixture()
def store(settings):
    with Store(settings.db_path, data_dir=settings.data_dir) as s:
        s.add_prompts(PROMPTS, "cmp")
        s.add_prompts(["Not this one."], "other")
        yield s


def test_compare_stores_runs_blind_comparisons_and_verdicts(store: Store, registry: ModelRegistry) -> None:
    calls: list[tuple[int, int, str]] = []
    result = compare_with_parent(
        store, registry, CHILD, prompt_set="cmp", params={"max_new_tokens": 16}, seed=3,
        # every verdict decides; the pair variant, whose position preference makes the child both win and lose here
        judge_config={"tie_margin": 0.0, "variant": "pair"},
        progress=lambda done, total, msg: calls.append((done, total, msg)),
    )  # fmt: skip
    assert (result.parent, result.judge, result.judge_model, result.strategy) == (
        "smollm2-135m", "logprob", "smollm2-135m", "system1",
    )  # fmt: skip
    assert [i.prompt for i in result.items] == PROMPTS and result.run_errors == 0
    assert len(result.comparison_ids) == 3 and len(result.verdict_ids) == 3
    assert result.wins + result.losses + result.ties + result.inconsistent + result.failed == 3
    assert result.failed == 0  # the log-prob judge always gives a verdict
    lo, hi = result.ci()
    assert 0 <= lo <= result.win_rate <= hi <= 1
    assert result.self_judged == 3  # the judge model is the parent: flagged
    assert any("answered 3/3" in m for _, _, m in calls) and any("judged 3/3" in m for _, _, m in calls)

    hand: list[float] = []  # the child's score per comparison, from the stored verdicts alone
    for item in result.items:
        cmp = store.get_comparison(item.comparison_id)
        shown = [item.child_run, item.parent_run][:: 1 if item.child_position == 0 else -1]
        assert cmp["run_ids"] == shown and cmp["blind"] is True  # the drawn positions are what is stored
        child, parent = store.get_run(item.child_run), store.get_run(item.parent_run)
        assert (child["model"], parent["model"]) == (CHILD, "smollm2-135m")
        assert child["strategy"] == "system1" and child["trace"]["steps"]
        assert child["params"]["compare"]["parent"] == "smollm2-135m"
        [verdict] = store.list_verdicts(comparison_id=item.comparison_id)
        assert verdict["judge"] == "logprob" and verdict["run_ids"] == shown and verdict["ok"]
        prob_a = verdict["prob_a"]
        assert item.prob_child == pytest.approx(prob_a if item.child_position == 0 else 1 - prob_a)
        assert verdict["winner"] == winner_from_prob(prob_a, 0.0)
        child_label = "AB"[cmp["run_ids"].index(item.child_run)]
        hand.append(
            1.0 if verdict["winner"] == child_label else 0.0 if verdict["winner"] in ("A", "B") else 0.5
        )
    assert result.win_rate == pytest.approx(sum(hand) / 3)
    assert 0.0 in hand and 1.0 in hand  # the child won and lost: a swap of child and parent would show
    assert (result.wins, result.losses, result.ties + result.inconsistent) == (
        hand.count(1.0), hand.count(0.0), hand.count(0.5)
    )  # fmt: skip
    assert {i.child_position for i in result.items} == {0, 1}  # seed 3 puts the child on both sides

    # no human label yet: the Judge tab's and `studio judge --unlabelled`'s scope holds them
    queued = targets(snapshot(store), Scope(labelled=False, prompt_set="cmp"), "pairwise")
    assert sorted(t.comparison_id for t in queued) == sorted(result.comparison_ids)
    assert json.loads(json.dumps(result.to_dict()))["compared"] == 3  # JSON-safe (no NaN)
    # three items are too few for the length-controlled GLM: no figure, and the reason, never a crash
    summary = result.summary()
    assert summary["lc_win_rate"] is None and summary["lc_ci_lo"] is None
    assert "too few judged items" in summary["lc_note"] and "length-controlled n/a (too few" in result.line()


def test_the_cli_compares_with_a_single_answer_judge(
    settings, store: Store, registry: ModelRegistry, capsys: pytest.CaptureFixture[str]
) -> None:
    store.close()  # the CLI opens the store itself
    args = ["compare", CHILD, "--prompt-set", "cmp", "--limit", "2", "--max-new-tokens", "8", "--judge", "additive",
            "--set", "n=1", "--set", "max_new_tokens=16", "--seed", "0", "--json",
            "--data-dir", str(settings.data_dir)]  # fmt: skip
    assert main(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert (out["judge"], out["prompts"], out["compared"]) == ("additive", 2, 2)
    assert out["lc_win_rate"] is None and "too few judged items" in out["lc_note"]  # raw and LC side by side
    # SmolLM2 rarely writes a parsable score: failed verdicts are counted, never dropped
    assert out["wins"] + out["losses"] + out["ties"] + out["failed"] == 2
    assert len(out["verdict_ids"]) == 4  # one rating per answer
    with Store(settings.db_path) as s:
        verdicts = s.list_verdicts(judge="additive")
        assert len(verdicts) == 4 and {v["mode"] for v in verdicts} == {"single"}
        assert {v["comparison_id"] for v in verdicts} == set(out["comparison_ids"])

    assert main(["compare", "smollm2-135m", "--prompt-set", "cmp", "--data-dir", str(settings.data_dir)]) == 2
    assert "has no parent" in capsys.readouterr().err


def test_parent_from_the_store_lineage(
    settings, store: Store, registry: ModelRegistry, default_model_dir: Path
) -> None:
    """A data dir from before models.toml owned lineage: a parent only the store's lineage table knew is adopted
    into models.toml once, when the registry is attached to the store (as a context does when it opens it)."""
    registry.add(ModelSpec(name="orphan", path=str(default_model_dir)))
    with pytest.raises(InputError, match="has no parent"):
        find_parent(registry, "orphan")
    store.add_model("orphan", "transformers", parent="smollm2-135m")
    older = settings.models_file.read_text().replace("format = 2\n", "")  # as an older studio wrote it
    settings.models_file.write_text(older)
    registry.attach(store)
    assert find_parent(registry, "orphan") == "smollm2-135m"
    assert find_parent(registry, CHILD) == "smollm2-135m"


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompt_set": "nope"}, "has no prompts; prompt sets: cmp, other"),
        ({"prompt_set": ""}, "choose a prompt set"),
        ({"judge": "oracle"}, "unknown judge"),
        ({"strategy": "telepathy"}, "telepathy"),
        ({"limit": 0}, "limit must be >= 1"),
        ({"parent": "ghost"}, "unknown model 'ghost'"),
    ],
)
def test_bad_input_is_clear_and_stores_nothing(
    store: Store, registry: ModelRegistry, kwargs: dict, message: str
) -> None:
    args = {"prompt_set": "cmp", **kwargs}
    with pytest.raises(Exception, match=message):
        compare_with_parent(store, registry, CHILD, **args)
    assert store.list_runs() == [] and store.list_comparisons() == []


def test_a_parent_that_is_not_registered(
    store: Store, registry: ModelRegistry, default_model_dir: Path
) -> None:
    registry.add(ModelSpec(name="stray", path=str(default_model_dir), parent="deleted-model"))
    with pytest.raises(InputError, match="'deleted-model', is not a registered model"):
        compare_with_parent(store, registry, "stray", prompt_set="cmp")


def test_a_child_that_wins_only_by_length_has_a_length_controlled_win_rate_near_half() -> None:
    """The figures of a compare-with-parent whose judge prefers the longer answer and nothing else: raw win rate
    high, length-controlled about 0.5, shown together in the result, its line, its JSON and the Train tab."""
    import numpy as np

    from components.train.compare import WIN_COLUMNS, compare_markdown, win_frame

    rng = np.random.default_rng(0)
    result = CompareResult(CHILD, "smollm2-135m", "cmp", "logprob", "smollm2-135m", "system1", n_boot=100)
    for k in range(120):
        parent = int(rng.integers(100, 500))
        child = max(10, parent + int(rng.normal(150, 200)))  # longer on average, shorter on some prompts
        p = 1 / (1 + np.exp(-4 * np.tanh((child - parent) / 200)))
        outcome = "child" if rng.random() < p else "parent"
        result.items.append(
            CompareItem(k, f"q{k}", 2 * k, 2 * k + 1, k, 0, "c" * child, "p" * parent, outcome)
        )
    s = result.summary()
    assert s["win_rate"] > 0.7 and s["ci_lo"] > 0.6
    assert abs(s["lc_win_rate"] - 0.5) < 0.1 and s["lc_ci_lo"] < 0.5 < s["lc_ci_hi"]
    assert s["length_coef"] > 1 and s["lc_note"] == ""
    assert f"length-controlled {s['lc_win_rate']:.2f} (95% CI" in result.line()
    assert json.loads(json.dumps(result.to_dict()))["lc_win_rate"] == pytest.approx(s["lc_win_rate"])
    frame = win_frame(result)
    assert list(frame.columns) == WIN_COLUMNS
    row = frame.iloc[0]
    assert row["LC win rate"] == pytest.approx(s["lc_win_rate"], abs=1e-3) and row["LC 95% CI"].startswith(
        "["
    )
    assert "length term +" in compare_markdown(result)
    assert result.length_control() is result.length_control()  # cached while the items stay as they are
