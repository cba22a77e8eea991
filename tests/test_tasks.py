"""Verifiable tasks: shipped splits (sizes, disjoint, reproducible), the reward is the eval metric, lookups."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from studio.errors import InputError
from studio.eval import load_dataset
from studio.eval.datasets import SHIPPED, arithmetic, last_letter
from studio.eval.metrics import score_item
from studio.eval.tasks import TASKS, get_task
from studio.strategies import StrategyParams
from studio.strategies.base import make_strategy

SIZES = {"arithmetic": (800, 256), "game24": (500, 200), "last_letter": (600, 240)}


@pytest.mark.parametrize("name", sorted(TASKS))
def test_splits_have_their_sizes_and_share_no_question(name: str) -> None:
    task = get_task(name)
    train, test = task.load("train"), task.load("test")
    assert (len(train.items), len(test.items)) == SIZES[name]
    assert len(train.items) >= 500 and len(test.items) >= 200
    train_q, test_q = {i.question for i in train.items}, {i.question for i in test.items}
    assert len(train_q) == len(train.items) and len(test_q) == len(test.items)  # distinct within a split
    assert not train_q & test_q
    # the eval harness finds both by name, as the task names them
    assert load_dataset(task.dataset_name("test")).items == test.items
    assert load_dataset(f"{name}_train", limit=3).items == train.items[:3]
    assert task.metric in score_item(test.items[0], "nothing")
    assert all(task.prompt(i) == i.question for i in test.items[:5])


def test_arithmetic_levels_are_balanced_and_answers_right() -> None:
    test = get_task("arithmetic").load("test")
    assert Counter(i.meta["level"] for i in test.items) == {1: 64, 2: 64, 3: 64, 4: 64}
    assert [i.meta["level"] for i in test.limited(8).items] == [
        1,
        2,
        3,
        4,
        1,
        2,
        3,
        4,
    ]  # --limit takes each level
    assert all(f"-L{i.meta['level']}-" in i.id and i.task == "math" for i in test.items)
    for item in test.items:
        if item.meta["form"] == "bare":  # "What is 4 - 3 + 6?": check the stored answer by evaluating it
            expr = item.question.removeprefix("What is ").removesuffix("?")
            assert set(expr) <= set("0123456789 +-*")
            assert str(eval(expr)) == item.answers[0], item  # noqa: S307 (digits and + - * only)
        assert int(item.answers[0]) >= 0


def test_last_letter_answers_are_the_last_letters() -> None:
    items = get_task("last_letter").load("test").items
    assert Counter(i.meta["n_words"] for i in items) == {2: 80, 3: 80, 4: 80}
    for item in items:
        words = item.meta["words"]
        assert f'"{" ".join(words)}"' in item.question and 2 <= len(words) <= 4
        assert item.answers == ("".join(w[-1] for w in words).lower(),)
        assert item.answers[0] not in ("a", "an", "the")  # the normaliser would drop it


@pytest.mark.parametrize("module", [arithmetic, last_letter], ids=["arithmetic", "last_letter"])
def test_generator_rewrites_the_shipped_file_identically(module, tmp_path: Path) -> None:
    out = tmp_path / "again.jsonl"
    module.main(["--out", str(out)])
    assert out.read_bytes() == module.OUT.read_bytes()
    assert module.OUT == SHIPPED[module.OUT.stem].file
    other = tmp_path / "other.jsonl"
    module.main(["--out", str(other), "--seed", "1"])
    assert other.read_bytes() != out.read_bytes()


@pytest.mark.parametrize(
    ("name", "right", "wrong"),
    [
        ("arithmetic", "Mia has 9. The answer is {a}.", "The answer is 1000."),
        ("last_letter", "{a}", "The letters are {a}"),  # exact match: the letters only
        ("game24", "Answer: {s}", "Answer: 1 + 2 + 3 + 4"),
    ],
)
def test_reward_is_the_eval_metric(name: str, right: str, wrong: str) -> None:
    task = get_task(name)
    for item in task.load("train").items[:5]:
        good = right.format(a=item.reference, s=item.meta.get("solution", "").split("=")[0])
        bad = wrong.format(a=item.reference)
        assert task.reward(item, good) == 1.0 == score_item(item, good)[task.metric]
        assert task.reward(item, bad) == 0.0 == score_item(item, bad)[task.metric]
        assert task.reward(item, "") == 0.0


def test_get_task_and_bad_input_are_clear_errors() -> None:
    with pytest.raises(InputError, match="tasks: arithmetic, game24, last_letter"):
        get_task("gsm8k")
    task = get_task(" arithmetic ")
    with pytest.raises(InputError, match="train or test"):
        task.load("validation")
    other = get_task("game24").load("test").items[0]
    with pytest.raises(InputError, match="not scored by"):
        task.reward(other, "24")  # a game24 item has no numeric answer


def test_a_real_default_model_answer_is_scored_by_the_reward(backend) -> None:
    from studio.strategies import DriveJob, drive, resolve_params

    task = get_task("arithmetic")
    items = task.load("test").items[:2]
    params = resolve_params(StrategyParams(max_new_tokens=48), backend.decoding_defaults)
    jobs = [DriveJob(make_strategy("system1"), task.prompt(i), backend, params) for i in items]
    answers = {ev.run: ev.result.final_answer for ev in drive(jobs) if ev.kind == "run_finished"}
    assert len(answers) == 2
    for k, item in enumerate(items):
        assert answers[k].strip()
        reward = task.reward(item, answers[k])
        assert reward in (0.0, 1.0)
        assert reward == score_item(item, answers[k])["numeric"]
