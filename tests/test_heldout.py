"""Held-out honesty: a judge trained in the studio is scored on the votes outside its training data by default, with
the count left out; ``both`` shows its train and held-out figures side by side, ``all`` pools them and says so; a
judge not trained here is unchanged; judge lineage (v0 → v1) scores the same judge on the parent model on the same
items. The training data is a real run dir, written by the reward trainer's own snapshot from a real store, and
the registry names it exactly as a finished job would."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from storage import Store
from studio.cli import main
from studio.errors import InputError
from studio.judging import HUMAN, agreement, check_judge_model, judge_models, snapshot
from studio.models import ModelRegistry, ModelSpec
from studio.training.config import DPOTrainConfig, RewardTrainConfig
from studio.training.dpo import DPO
from studio.training.reward import RewardModel
from studio.training.rundir import RunDir

BASE = "smollm2-135m"
TRAIN_SET, TEST_SET = "prefs-train", "prefs-test"
QUESTIONS = {
    TRAIN_SET: [("What is 2+3?", "5", "6"), ("Capital of Italy?", "Rome", "Milan"),
                ("What is 7*6?", "42", "48"), ("Largest ocean?", "The Pacific", "The Atlantic")],
    TEST_SET: [("What is 9-4?", "5", "4"), ("Capital of Spain?", "Madrid", "Seville"),
               ("What is 3*3?", "9", "6")],
}  # fmt: skip


@dataclass
class Seeded:
    train: list[tuple[int, int]]  # (good run, bad run) of each training prompt; people voted the good one
    test: list[tuple[int, int]]
    comparisons: dict[tuple[int, int], int]


def seed(store: Store) -> Seeded:
    """Two prompt sets of pairs, each shown as a comparison and voted by two people for the right answer."""
    out = Seeded([], [], {})
    for prompt_set, rows in QUESTIONS.items():
        for question, good, bad in rows:
            pid = store.add_prompt(question, prompt_set)
            pair = (store.add_run(pid, BASE, "system1", good), store.add_run(pid, BASE, "cot", bad))
            cid = store.add_comparison(list(pair))
            store.add_vote(cid, "A", "alice")
            store.add_vote(cid, "A", "bob")
            (out.train if prompt_set == TRAIN_SET else out.test).append(pair)
            out.comparisons[pair] = cid
    return out


def train_run(store: Store, settings, run_id: int, trainer=RewardModel, config=RewardTrainConfig) -> Path:
    """A run dir holding the data snapshot the trainer writes for a job on the training prompt set."""
    run = RunDir(settings.runs_dir / str(run_id))
    run.path.mkdir(parents=True)
    cfg = config.from_dict({"filters": {"prompt_set": TRAIN_SET}, "min_examples": 1})
    trainer.snapshot(store, cfg, run)
    return run.path


def verdicts(store: Store, judge: str, model: str, seeded: Seeded, right_on_train: bool, right_on_test: bool):
    """A judge config's verdicts on every voted pair, right (A) or wrong (B) per split, with both orders read."""
    for split, right in ((seeded.train, right_on_train), (seeded.test, right_on_test)):
        for pair in split:
            winner = "A" if right else "B"
            store.add_verdict(judge, "pairwise", list(pair), comparison_id=seeded.comparisons[pair],
                              judge_model=model, judge_config={"config_hash": f"{judge}-{model}"},
                              orders=["AB", "BA"], winner=winner, scores={"order_winners": [winner, winner]})  # fmt: skip


@pytest.fixture()
def world(settings):
    """A store with votes, a reward model registered from a real run dir (trained on the training set only),
    and a text judge model trained from the base model (judge v1 of v0)."""
    settings.ensure_dirs()
    registry = ModelRegistry(settings)
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        seeded = seed(store)
        train_run(store, settings, 1)
        registry.add(ModelSpec("rm", path=str(settings.models_dir / BASE), kind="reward", parent=BASE,
                               training_run="1"))  # fmt: skip
        (settings.runs_dir / "2").mkdir()  # a self-taught judge's run: no preference pairs of the store
        registry.add(
            ModelSpec("judge-v1", path=str(settings.models_dir / BASE), parent=BASE, training_run="2")
        )
        # the reward model is right on its training votes and wrong on the rest: its honest figure is 0
        verdicts(store, "reward_model", "rm", seeded, right_on_train=True, right_on_test=False)
        verdicts(
            store, "pairwise", BASE, seeded, right_on_train=False, right_on_test=False
        )  # v0: always wrong
        verdicts(
            store, "pairwise", "judge-v1", seeded, right_on_train=True, right_on_test=True
        )  # v1: always right
    yield settings, registry, seeded
    registry.close()


def judge_entries(found: list[dict], rater_prefix: str) -> list[dict]:
    return [e for e in found if e["x"] == HUMAN and e["y"].startswith(rater_prefix)]


def test_training_pairs_are_the_snapshot_of_the_training_set(world) -> None:
    settings, registry, seeded = world
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        models = judge_models(snapshot(store), registry, settings.runs_dir)
    assert set(models.trained) == {"rm", "judge-v1"} and models.trained["judge-v1"] == set()
    assert models.trained["rm"] == {(q, frozenset((g, b))) for q, g, b in QUESTIONS[TRAIN_SET]}
    assert models.parents == {"rm": BASE, "judge-v1": BASE} and not models.is_trained(BASE)


def test_default_agreement_leaves_out_training_votes_and_both_shows_them_apart(world) -> None:
    settings, registry, seeded = world
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        snap = snapshot(store)
    models = judge_models(snap, registry, settings.runs_dir)
    n_train, n_test = 2 * len(seeded.train), 2 * len(seeded.test)  # two people's votes per pair

    [held] = judge_entries(agreement(snap, n_boot=50, models=models), "reward_model@rm")
    assert (held["split"], held["trained"], held["pairs"]) == ("held-out", True, n_test)
    assert held["train_pairs_excluded"] == n_train
    assert held["s1"][0]["value"] == 0.0 and held["s2"][0]["value"] == 0.0  # wrong on every held-out vote
    assert held["swap_flip"] == {"flips": 0, "n": len(seeded.test), "rate": 0.0}  # beside it, held-out only

    both = judge_entries(agreement(snap, n_boot=50, models=models, split="both"), "reward_model@rm")
    by_split = {e["split"]: e for e in both}
    assert set(by_split) == {"held-out", "train"}
    assert by_split["held-out"]["s1"][0]["value"] == 0.0 and by_split["held-out"]["pairs"] == n_test
    assert by_split["train"]["s1"][0]["value"] == 1.0 and by_split["train"]["pairs"] == n_train

    [pooled] = judge_entries(agreement(snap, n_boot=50, models=models, split="all"), "reward_model@rm")
    assert (pooled["split"], pooled["pairs"], pooled["includes_train_pairs"]) == (
        "all",
        n_train + n_test,
        n_train,
    )
    assert pooled["s1"][0]["value"] == pytest.approx(n_train / (n_train + n_test))

    # without the registry's knowledge nothing is split: the caller must pass models (the CLI and the UI do)
    [unknown] = judge_entries(agreement(snap, n_boot=50), "reward_model@rm")
    assert unknown["trained"] is False and unknown["pairs"] == n_train + n_test
    with pytest.raises(InputError, match="split is one of"):
        agreement(snap, models=models, split="train")


def test_a_judge_not_trained_here_is_unchanged(world) -> None:
    settings, registry, seeded = world
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        snap = snapshot(store)
    models = judge_models(snap, registry, settings.runs_dir)
    plain = judge_entries(agreement(snap, n_boot=50), f"pairwise@{BASE}")
    for split in ("held-out", "both", "all"):
        found = judge_entries(agreement(snap, n_boot=50, models=models, split=split), f"pairwise@{BASE}")
        assert len(found) == 1 and found[0]["split"] == "all" and found[0]["trained"] is False
        assert {k: found[0][k] for k in ("pairs", "s1", "s2", "kappa", "confusion")} == {
            k: plain[0][k] for k in ("pairs", "s1", "s2", "kappa", "confusion")
        }


def test_lineage_scores_v0_and_v1_on_the_same_items(world) -> None:
    settings, registry, seeded = world
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        snap = snapshot(store)
    models = judge_models(snap, registry, settings.runs_dir)
    [v1] = judge_entries(agreement(snap, n_boot=50, models=models), "pairwise@judge-v1")
    v0_row, v1_row = v1["lineage"]
    assert (v0_row["version"], v0_row["model"], v0_row["rater"]) == ("v0", BASE, f"pairwise@{BASE}#pairwi")
    assert (v1_row["version"], v1_row["model"]) == ("v1", "judge-v1")
    assert v0_row["pairs"] == v1_row["pairs"] == v1["pairs"] > 0
    assert v0_row["s1"]["value"] == 0.0 and v1_row["s1"]["value"] == 1.0 and v1_row["s1"]["lo"] == 1.0
    [rm] = judge_entries(agreement(snap, n_boot=50, models=models), "reward_model@rm")
    assert [row["rater"] for row in rm["lineage"]] == [None, "reward_model@rm#reward"]  # no v0 verdicts
    assert rm["lineage"][0]["pairs"] == 0


def test_cli_agreement_held_out_both_and_all(world, capsys) -> None:
    settings, _, seeded = world
    data = ["--data-dir", str(settings.data_dir), "--n-boot", "20", "--no-judge-vs-judge"]
    assert main(["agreement", *data]) == 0
    out = capsys.readouterr().out
    [line] = [x for x in out.splitlines() if "vs reward_model@rm" in x]
    assert f"[held-out: {2 * len(seeded.train)} vote pairs on its training data left out]" in line
    assert f": {2 * len(seeded.test)} pairs" in line and "swap-flip 0.00 (0/3)" in line
    assert "lineage v0 smollm2-135m" in out and "lineage v1 judge-v1" in out
    assert main(["agreement", "--held-out", *data]) == 0
    assert capsys.readouterr().out == out

    assert main(["agreement", "--split", "both", *data]) == 0
    out = capsys.readouterr().out
    assert "[TRAIN: its own training votes, not its agreement]" in out and "[held-out:" in out
    assert main(["agreement", "--split", "all", *data]) == 0
    out = capsys.readouterr().out
    assert (
        "POOLED, including the votes they were trained on" in out
        and "including 8 on its training data" in out
    )

    assert main(["agreement", "--json", "--split", "both", *data]) == 0
    found = json.loads(capsys.readouterr().out)
    splits = sorted(e["split"] for e in found["agreement"] if e["y"].startswith("reward_model"))
    assert found["split"] == "both" and splits == ["held-out", "train"]


def test_a_judge_on_a_model_of_the_wrong_kind_is_refused_before_loading(world) -> None:
    _, registry, _ = world
    with pytest.raises(InputError, match="'rm' is a reward model: it scores answers"):
        check_judge_model(registry, "pairwise", "rm")
    with pytest.raises(
        InputError, match="reward_model scores with a reward model, and 'smollm2-135m' is a chat"
    ):
        check_judge_model(registry, "reward_model", None)
    check_judge_model(registry, "reward_model", "rm")  # the right kinds pass
    check_judge_model(registry, "logprob", "judge-v1")


@pytest.mark.slow
def test_one_click_judges_only_the_held_out_votes_with_the_real_model(world) -> None:
    """The Train tab's one click after a DPO job: dpo_implicit on the job's model (here the base model registered
    as a DPO child of itself, so its implicit reward is 0 and every verdict is a tie) judges the voted pairs
    outside its training data only, and reports its held-out agreement with the count."""
    from studio.judging import judge_held_out

    settings, registry, seeded = world
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        train_run(store, settings, 3, DPO, DPOTrainConfig)
        registry.add(ModelSpec("dpo-v1", path=str(settings.models_dir / BASE), parent=BASE, training_run="3",
                               training_config={"method": "dpo", "beta": 0.1}))  # fmt: skip
        seen: list[tuple[int, int]] = []
        found = judge_held_out(store, registry, settings.runs_dir, "dpo-v1", "dpo_implicit", n_boot=50,
                               progress=lambda done, total, msg: seen.append((done, total)))  # fmt: skip
        judged = store.list_verdicts(judge="dpo_implicit", limit=None)
        again = judge_held_out(store, registry, settings.runs_dir, "dpo-v1", "dpo_implicit", n_boot=50)
    assert (found.held_out_items, found.train_items) == (len(seeded.test), len(seeded.train))
    assert (found.job.total, found.job.judged, found.job.ok) == (3, 3, 3) and seen[-1] == (3, 3)
    assert sorted(tuple(v["run_ids"]) for v in judged) == sorted(seeded.test)  # training pairs never judged
    assert all(v["winner"] == "tie" and v["prob_a"] == pytest.approx(0.5, abs=1e-3) for v in judged)
    entry = found.entry
    assert (entry["split"], entry["pairs"], entry["train_pairs_excluded"]) == ("held-out", 6, 0)
    assert entry["s1"][0]["value"] == 0.0  # people decided every pair; the judge tied them all
    assert (again.job.skipped, again.job.judged) == (3, 0)  # resumable
