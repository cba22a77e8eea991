"""System-2 distillation (Yu et al. 2024, arXiv 2407.06023) on the real default model.

The filter is checked on hand-written runs (its edge cases: ties, failed runs, answers without a vote, the
threshold). Then a whole job runs through the studio's runner (in this process, as tests/test_self_taught.py
does): CoT twice on 4 easy arithmetic train inputs through the driver, the self-consistency filter, one SFT step
of System 1 on input -> final answer, and the distilled model registered with its lineage.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from storage import Store
from studio.errors import InputError
from studio.settings import Settings
from studio.training import RunDir, Runner
from studio.training.job import run as run_job
from studio.training.s2_distill import S2DistillConfig, select, sft_rows, vote_rule
from tests.test_training_methods import assert_adapter_moved

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

INPUTS = [{"id": f"q{i}", "prompt": f"question {i}"} for i in range(5)]


def _runs(qid: str, *finals: str | None) -> list[dict]:
    return [{"id": qid, "sample": k, "final": f or "", "error": "boom" if f is None else None,
             "completion_tokens": 3, "tokens": 9, "calls": 1} for k, f in enumerate(finals)]  # fmt: skip


def test_the_self_consistency_filter_keeps_majorities_at_the_threshold() -> None:
    cfg = S2DistillConfig.from_dict({"task": "arithmetic", "samples": 4, "agreement": 0.75})
    runs = [
        *_runs("q0", "It is 12.", "12", "Answer: 12 apples", "13"),  # 3/4 agree by the last-number rule
        *_runs("q1", "12", "12", "13", "13"),  # a tie at 2/4: below the threshold
        *_runs("q2", "no idea", "", "hmm", None),  # no number anywhere, one run failed
        *_runs("q3", "7", "7", "7", None),  # the failed run still counts in the denominator: 3/4
        *_runs("q4", "1,500", "1500.0", "Answer is 1500", "2"),
    ]
    kept, dropped = select(INPUTS, runs, cfg, "numeric")
    assert [k["id"] for k in kept] == ["q0", "q3", "q4"]
    assert kept[0]["target"] == "It is 12." and kept[0]["vote"] == "12" and kept[0]["agreement"] == 0.75
    assert kept[2]["vote"] == "1500"
    reasons = {d["id"]: d["reason"] for d in dropped}
    assert "2/4 (50%) is below agreement 75%" in reasons["q1"]
    assert reasons["q2"] == "no answer in any of the 4 runs (1 failed)"
    kept_vote, _ = select(INPUTS, runs, cfg.replace(target="vote"), "numeric")
    assert kept_vote[0]["target"] == "12"
    rows = sft_rows(kept)
    assert rows[0] == {"prompt": [{"role": "user", "content": "question 0"}],
                       "completion": [{"role": "assistant", "content": "It is 12."}]}  # fmt: skip
    text_vote = vote_rule("exact_match")
    assert text_vote("The Answer: KKL.") == text_vote("the answer kkl") and text_vote("...") is None


def test_bad_settings_are_input_errors() -> None:
    for bad in ({"task": "nope"}, {"strategy": "nope"}, {"agreement": 1.5}, {"temperature": 0},
                {"strategy_params": {"nope": 1}}, {"launcher": "ddp"}):  # fmt: skip
        with pytest.raises(InputError):
            S2DistillConfig.from_dict(bad)


def test_a_distillation_job_trains_system_1_on_agreeing_cot_answers(settings: Settings) -> None:
    """4 easy arithmetic train inputs, CoT x 2 samples, 1 SFT step; registered with lineage."""
    values = {"task": "arithmetic", "max_items": 4, "strategy": "cot", "samples": 2, "max_new_tokens": 32,
              "agreement": 0.5, "max_steps": 1, "max_length": 128, "lora_r": 4, "lora_alpha": 8,
              "per_device_train_batch_size": 2, "save_steps": 100}  # fmt: skip
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        runner = Runner(settings, store, autostart=False)
        preview = runner.preview("s2_distill", values)
        assert preview.ok and preview.count == 4
        job = runner.start("s2_distill", values)
        run = RunDir(job.run_dir)
        code = run_job(Path(job.run_dir) / "config.yaml")
        job = runner.sync(job.id)
        assert code == 0 and job.state == "succeeded", job.error
        model = store.get_model(f"s2_distill-{job.id}")
    inputs = [json.loads(x) for x in (run.path / "inputs.jsonl").read_text().splitlines()]
    samples = [json.loads(x) for x in (run.path / "samples.jsonl").read_text().splitlines()]
    kept = [json.loads(x) for x in (run.path / "kept.jsonl").read_text().splitlines()]
    dropped = [json.loads(x) for x in (run.path / "dropped.jsonl").read_text().splitlines()]
    counts = json.loads((run.path / "counts.json").read_text())
    assert len(inputs) == 4 and all(i["id"].startswith("arith-") and "-train-" in i["id"] for i in inputs)
    assert len(samples) == 8 and {(s["id"], s["sample"]) for s in samples} == {
        (i["id"], k) for i in inputs for k in range(2)
    }
    assert all(s["completion_tokens"] > 0 for s in samples if not s["error"])
    assert len(kept) + len(dropped) == 4 and counts["kept"] == len(kept) >= 1
    finals = {(s["id"], s["final"].strip()) for s in samples}
    for k in kept:  # a target is one of the real runs' final answers, the majority's
        assert (k["id"], k["target"]) in finals and k["agreement"] >= 0.5
    assert all(d["reason"] for d in dropped)
    assert_adapter_moved(run.adapter)
    assert model["parent"] == "smollm2-135m"
    assert model["config"]["method"] == "s2_distill"
    (entry,) = [json.loads(x) for x in (run.path / "models.jsonl").read_text().splitlines()]
    assert entry["strategy"] == "cot" and entry["task"] == "arithmetic" and entry["kept"] == len(kept)
    series = run.metric_series()
    assert {"loss", "s2distill/kept_rate", "s2distill/mean_agreement", "s2distill/inputs"} <= set(series)
    print(f"s2_distill job: {json.dumps(counts)}")
