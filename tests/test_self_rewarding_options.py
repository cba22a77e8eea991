"""Self-Rewarding, extended (issue 16): task mode (what ``studio improve --method self_rewarding`` runs), Thought
Preference Optimization (``tpo``) and Meta-Rewarding (``meta_rewarding``), each one real iteration on the default
model: a few arithmetic TRAIN questions, 2 short answers each, the log-prob judge, one DPO step."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storage import Store
from studio.errors import InputError, ModelNotFound
from studio.eval.tasks import get_task
from studio.judges.additive import parse_score
from studio.settings import Settings
from studio.training import Runner
from studio.training.job import run as run_job
from studio.training.rundir import RunDir
from studio.training.self_rewarding import split_thought
from tests.conftest import with_default_model
from tests.test_training_methods import TINY, assert_adapter_moved, train_here

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

TASK = {**TINY, "max_steps": 1, "task": "arithmetic", "max_prompts": 3, "n_samples": 2, "max_new_tokens": 24,
        "judge_score_mode": "logprob", "per_device_train_batch_size": 1}  # fmt: skip


@pytest.fixture(scope="module")
def studio_settings(tmp_path_factory: pytest.TempPathFactory, default_model_dir: Path) -> Settings:
    """A data dir with the default model and an empty store: task mode needs no store prompt."""
    return with_default_model(
        tmp_path_factory.mktemp("self_rewarding") / "data", default_model_dir, threads=1
    )


def generated(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "generated.jsonl").read_text().splitlines()]


def test_task_mode_trains_on_train_questions_only(studio_settings: Settings) -> None:
    job_id, run = train_here(studio_settings, "self_rewarding", {**TASK, "start_iteration": 2})
    rows = generated(run.iteration(0))
    task = get_task("arithmetic")
    train = {task.prompt(i) for i in task.load("train").items}
    test = {task.prompt(i) for i in task.load("test").items}
    assert len(rows) == 3 and {r["prompt"] for r in rows} <= train - test  # the train split only
    assert all(len(r["answers"]) == 2 and all(v["ok"] for v in r["verdicts"]) for r in rows)
    pairs = [r["pair"] for r in rows if r["pair"]]
    assert pairs and all(p["chosen"] in r["answers"] for r in rows if (p := r["pair"]))
    assert (
        not (run.path / "written_prompts.json").exists()
        and not (run.iteration(0) / "written_prompts.json").exists()
    )
    assert json.loads((run.path / "task.json").read_text()) == {"task": "arithmetic", "split": "train"}
    assert_adapter_moved(run.iteration(0) / "adapter")
    with Store(studio_settings.db_path) as store:
        model = store.get_model(f"self_rewarding-{job_id}-m3")  # M_{start+1}
    assert model["parent"] == "smollm2-135m"
    assert (model["config"]["iteration"], model["config"]["task"]) == (3, "arithmetic")
    print(f"task mode: {len(rows)} questions, {len(pairs)} pairs")


def test_structured_text_judge_scores_its_judgements(studio_settings: Settings) -> None:
    """The paper's text judge ('Score: N'), written under the additive schema: the default model's free text never
    holds a score, its structured judgements do, so pairs form without the log-prob reading."""
    values = {**TASK, "max_prompts": 2, "judge_score_mode": "text", "judge_structured": True,
              "judge_samples": 1, "judge_max_new_tokens": 64}  # fmt: skip
    with Store(studio_settings.db_path, data_dir=studio_settings.data_dir) as store:
        job = Runner(studio_settings, store, autostart=False).start("self_rewarding", values)
    run_job(
        Path(job.run_dir) / "config.yaml"
    )  # two equal scores per question (a tie) give no pair: fine here
    rows = generated(RunDir(job.run_dir).iteration(0))
    verdicts = [v for r in rows for v in r["verdicts"]]
    assert len(verdicts) == 4 and sum(v["ok"] for v in verdicts) >= 3, verdicts
    assert all(0 <= v["rating"] <= 5 for v in verdicts if v["ok"])
    print(f"structured text judge: {sum(v['ok'] for v in verdicts)}/4 scored")


def test_tpo_judge_sees_only_the_response(studio_settings: Settings) -> None:
    values = {**TASK, "tpo": True, "tpo_structured": True, "max_new_tokens": 48}
    job_id, run = train_here(studio_settings, "self_rewarding", values)
    rows = generated(run.iteration(0))
    kept = dropped = 0
    for row in rows:
        assert "User query:" in row["asked"] and row["prompt"] in row["asked"]  # the thought prompt
        for answer, thought, response, seen, v in zip(row["answers"], row["thoughts"], row["responses"],
                                                       row["judged"], row["verdicts"], strict=True):  # fmt: skip
            if response is None:  # no parsable response: dropped, never judged
                assert seen is None and not v["ok"] and v["scores"]["dropped"]
                dropped += 1
                continue
            kept += 1
            assert seen == response and response in answer and thought is not None  # the judge's input
            assert seen != answer and '"thought"' not in seen  # not the whole output: no thought field
        if row["pair"]:  # DPO on the whole output (thought + response), asked with the thought prompt
            assert row["pair"]["prompt"] == row["asked"] and row["pair"]["chosen"] in row["answers"]
    series = run.metric_series()
    assert series["selfreward/tpo_dropped"][-1][1] == dropped and kept + dropped == 6
    assert_adapter_moved(run.iteration(0) / "adapter")
    print(f"tpo: {kept} answers judged on their response, {dropped} dropped")


def test_thought_split_by_the_marker() -> None:
    assert split_thought("I add.\nHere is my response: 71", "generic") == ("I add.", "71")
    assert split_thought("draft 70, wrong <R> 71", "specific") == ("draft 70, wrong", "71")
    assert split_thought("no marker: 71", "generic") is None
    assert split_thought("thinking... Here is my response:  ", "generic") is None
    assert split_thought('{"thought": "add", "response": "71"}', structured=True) == ("add", "71")
    assert split_thought('{"thought": "add", "resp', structured=True) is None  # cut off


def test_meta_rewarding_trains_the_judge_too(studio_settings: Settings) -> None:
    values = {**TASK, "max_prompts": 2, "meta_rewarding": True, "meta_judgements": 2,
              "judge_max_new_tokens": 112, "meta_max_new_tokens": 48, "max_length": 512}  # fmt: skip
    job_id, run = train_here(studio_settings, "self_rewarding", values)
    it = run.iteration(0)
    counts = json.loads((it / "meta_counts.json").read_text())
    judge_pairs = [json.loads(line) for line in (it / "meta_pairs.jsonl").read_text().splitlines()]
    assert counts["answers"] == 4 and counts["meta_consistent"] == len(judge_pairs)
    # sampled under the additive schema, every judgement closes its JSON within 112 tokens and has a score
    assert counts["judgements"] == counts["scored_judgements"] == 8
    assert 1 <= counts["meta_candidates"] <= 4 and counts["meta_unreadable"] <= 2 * counts["meta_candidates"]
    if not judge_pairs:  # the default model names the same position in both orders: a counted zero, said why
        assert "no consistent winner" in counts["reason"]
    for p in judge_pairs:  # the judge prompt, then two of M_0's own judgements of one answer, as published
        assert "additive 5-point scoring system" in p["prompt"][0]["content"]
        assert p["chosen"][0]["content"] != p["rejected"][0]["content"]
        assert all(parse_score(p[side][0]["content"]) is not None for side in ("chosen", "rejected"))
    series = run.metric_series()
    assert series["selfreward/meta_pairs"][-1][1] == len(judge_pairs)  # counted, zero included
    assert_adapter_moved(it / "adapter")
    assert run.result()["models"][0]["judge_pairs"] == len(judge_pairs)
    print(f"meta-rewarding: {counts}")


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"task": "nope"}, "no task 'nope'"),
        ({"task": "arithmetic", "max_prompts": 0}, "max_prompts must be >= 1"),
        ({"meta_rewarding": True, "judge_score_mode": "logprob", "meta_judgements": 1}, "meta_judgements"),
        ({"meta_rewarding": True, "judge_model": "other"}, "leave judge_model empty"),
        ({"tpo_prompt": "mine"}, "tpo_prompt is one of"),
        ({"start_iteration": -1}, "start_iteration must be >= 0"),
    ],
)
def test_bad_settings(values: dict, message: str) -> None:
    from studio.training.config import SelfRewardingConfig

    with pytest.raises(InputError, match=message):
        SelfRewardingConfig.from_dict(values)


def test_unknown_base_model_is_refused(studio_settings: Settings) -> None:
    with Store(studio_settings.db_path, data_dir=studio_settings.data_dir) as store:
        runner = Runner(studio_settings, store, autostart=False)
        with pytest.raises(ModelNotFound, match="no-such-model"):  # before anything is recorded
            runner.start("self_rewarding", {**TASK, "base_model": "no-such-model"})
        assert runner.preview("self_rewarding", TASK).ok  # task mode: no store prompt needed
