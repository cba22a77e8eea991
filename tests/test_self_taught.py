"""The Self-Taught Evaluator (Wang et al. 2024, arXiv 2408.02666) on the real default model.

The data-building steps run on two prompts: the model writes modified instructions, answers both, and samples
judgements of (y_w, y_l) in both orders; the kept ones must prefer y_w in that order's own labels. A whole job then
runs through the studio's runner (in this process, as tests/test_training_methods.py does) and registers the
trained judge as judge v1 of v0. SmolLM2-135M, judging under the verdict schema, prefers Assistant A whatever the
answers, so it is right in order AB and almost never in BA: with the paper's order balancing nothing would be
left, which the failure message must say with the counts; the job trains with ``balance_orders=false``.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest

from storage import Store
from studio.errors import InputError
from studio.settings import Settings
from studio.training import RunDir, Runner
from studio.training.config import SelfTaughtConfig, looks_like_test_split
from studio.training.job import run as run_job
from studio.training.self_taught import (
    ORDERS,
    annotate,
    build_pairs,
    dpo_rows,
    judge_conversation,
    meta_pairs,
    modified_instruction,
    read_meta,
    select,
    sft_rows,
    shortfall,
)

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

PROMPTS = ["Give three tips for staying healthy.", "Explain what a prime number is."]
FAST = {"max_new_tokens": 40, "instruction_max_new_tokens": 32, "samples": 2, "judge_max_new_tokens": 64}
TINY = {"max_steps": 1, "max_length": 384, "lora_r": 4, "lora_alpha": 8, "per_device_train_batch_size": 1,
        "save_steps": 100}  # fmt: skip


@pytest.fixture(scope="module")
def built(backend) -> tuple[list[dict], list[dict], list[dict]]:
    """(pairs, dropped, judgements) on the default model, as a job's first iteration makes them."""
    cfg = SelfTaughtConfig.from_dict(FAST)
    pairs, dropped = build_pairs(backend, PROMPTS, cfg)
    return pairs, dropped, annotate(backend, pairs, cfg, seed=0) if pairs else []


def test_response_pairs_come_from_modified_instructions(built) -> None:
    pairs, dropped, _ = built
    assert len(pairs) + len(dropped) == len(PROMPTS)
    assert pairs, f"every modified instruction was dropped: {dropped}"
    for p in pairs:
        assert p["prompt"] in PROMPTS and p["modified"] and p["modified"].lower() != p["prompt"].lower()
        assert p["chosen"].strip() and p["rejected"].strip() and p["chosen"] != p["rejected"]
    for d in dropped:
        assert d["reason"]


def test_judgements_are_sampled_in_both_orders_and_kept_only_when_they_prefer_y_w(built) -> None:
    pairs, _, judgements = built
    cfg = SelfTaughtConfig.from_dict({**FAST, "balance_orders": False, "keep_per_order": 0})
    assert len(judgements) == len(pairs) * len(ORDERS) * cfg.samples
    for order in ORDERS:
        assert sum(j["order"] == order for j in judgements) == len(pairs) * cfg.samples
    for j in judgements:  # caller labels: A is y_w in both orders; the text's own letter is swapped in BA
        letter = {"AB": "A", "BA": "B"}[j["order"]]
        assert j["correct"] == (j["winner"] == "A")
        if j["correct"]:
            assert f"[[{letter}]]" in j["text"], j
    groups, counts = select(judgements, cfg, random.Random(0))
    kept = [j for g in groups.values() for j in g["kept"]]
    assert all(j["correct"] and j["text"].strip() for j in kept)
    for order in ORDERS:  # keep_per_order=0, no balancing: every distinct correct judgement is kept
        assert counts[f"kept_{order}"] == len({(j["pair"], j["text"]) for j in kept if j["order"] == order})
        assert counts[f"kept_{order}"] <= counts[f"correct_{order}"]
    rows = sft_rows(pairs, groups)
    assert len(rows) == len(kept)
    for row in rows:  # prompt = the studio's pairwise judge prompt, completion = the judgement
        assert row["prompt"][0]["role"] == "system" and "[User Question]" in row["prompt"][1]["content"]
    print(f"self-taught kept rates: AB {counts['kept_rate_AB']:.2f}, BA {counts['kept_rate_BA']:.2f} "
          f"({counts['candidates_AB']} judgements per order)")  # fmt: skip


def test_balancing_and_a_shortfall_name_the_counts(built) -> None:
    pairs, _, judgements = built
    cfg = SelfTaughtConfig.from_dict(FAST)  # the paper: one per pair and order, orders balanced
    groups, counts = select(judgements, cfg, random.Random(0))
    assert counts["kept_AB"] == counts["kept_BA"] == min(counts["selected_AB"], counts["selected_BA"])
    assert all(len(g["kept"]) <= 1 for g in groups.values())
    message = shortfall(0, {**counts, "pairs": len(pairs), "examples": 0}, cfg)
    assert f"of {counts['candidates_AB']} judgements prefer y_w" in message and "min_kept=1" in message
    lopsided = {
        **counts,
        "selected_AB": 2,
        "selected_BA": 0,
        "kept_AB": 0,
        "kept_BA": 0,
        "pairs": 2,
        "examples": 0,
    }
    assert "balance_orders=false" in shortfall(0, lopsided, cfg)


def test_dpo_pairs_and_meta_judged_pairs(built, backend) -> None:
    """DPO rows pair a kept judgement with a wrong one of the same pair and order; the meta-judge (the real
    model) compares two judgements with different verdicts in both positions and keeps consistent winners."""
    pairs, _, _ = built
    good, bad = "Assistant A answers the question. [[A]]", "Assistant B is better. [[B]]"
    judgements = [{"pair": 0, "order": "AB", "sample": k, "text": t, "winner": w, "correct": w == "A"}
                  for k, (t, w) in enumerate([(good, "A"), (bad, "B")])]  # fmt: skip
    cfg = SelfTaughtConfig.from_dict({**FAST, "objective": "dpo", "meta": True, "balance_orders": False,
                                      "meta_max_new_tokens": 48})  # fmt: skip
    groups, _ = select(judgements, cfg, random.Random(0))
    rows = dpo_rows(pairs, groups, random.Random(0))
    assert [(r["chosen"][0]["content"], r["rejected"][0]["content"]) for r in rows] == [(good, bad)]
    extra, counts = meta_pairs(backend, pairs, judgements, cfg, random.Random(0))
    assert counts["meta_candidates"] == 1 and counts["meta_consistent"] == len(extra) <= 1
    for r in extra:
        assert {r["chosen"][0]["content"], r["rejected"][0]["content"]} == {good, bad} and r[
            "source"
        ] == "meta"
    print(f"meta-judge: {counts}")


def test_test_splits_are_refused_and_the_prompts_are_cleaned() -> None:
    assert (
        looks_like_test_split("prefs-test")
        and looks_like_test_split("heldout")
        and looks_like_test_split("EVAL")
    )
    assert not looks_like_test_split("prefs-train") and not looks_like_test_split("latest")
    with pytest.raises(InputError, match="held-out split"):
        SelfTaughtConfig.from_dict({"prompt_set": "prefs-test"})
    with pytest.raises(InputError, match="objective=dpo"):
        SelfTaughtConfig.from_dict({"meta": True})
    assert (
        modified_instruction('1. Modified instruction: "Name two prime numbers."\nmore')
        == "Name two prime numbers."
    )
    assert read_meta('{"explanation": "x", "winner": "Judgement 2"}') == "2"
    assert read_meta("Judgement 1 is vague. Winner: Judgement 2") == "2" and read_meta("no verdict") is None
    conv = judge_conversation({"prompt": "Q?", "chosen": "good", "rejected": "bad"}, "BA")
    assert conv[1]["content"].index("bad") < conv[1]["content"].index("good")  # BA shows y_l as Assistant A


def test_a_self_taught_job_registers_judge_v1_of_v0(settings: Settings) -> None:
    """A whole job through the runner; the test prompts of the store are never read."""
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        for text in PROMPTS:
            store.add_prompt(text, "st-train")
        store.add_prompt("A held-out question that must not be read?", "prefs-test")
        runner = Runner(settings, store, autostart=False)
        values = {
            **TINY,
            **FAST,
            "prompt_set": "",
            "balance_orders": False,
            "keep_per_order": 0,
            "samples": 1,
        }
        job = runner.start("self_taught", values)
        run = RunDir(job.run_dir)
        snapshot = [
            json.loads(line)["text"] for line in (run.path / "prompts.jsonl").read_text().splitlines()
        ]
        assert snapshot == PROMPTS  # prompt_set "" = every set except held-out ones
        code = run_job(Path(job.run_dir) / "config.yaml")
        job = runner.sync(job.id)
        counts = json.loads((run.iteration(0) / "counts.json").read_text())
        if code != 0:  # the model kept nothing: the failure must say so with the counts
            assert job.state == "failed" and "judgements prefer y_w" in job.error, job.error
            assert counts["examples"] == 0
            pytest.skip(f"the default model kept no judgement this time: {job.error}")
        assert job.state == "succeeded", job.error
        name = f"self_taught-{job.id}-v1"
        model = store.get_model(name)
    assert model["parent"] == "smollm2-135m" and model["config"]["judge_model"] == "smollm2-135m"
    assert model["config"]["method"] == "self_taught" and model["config"]["iteration"] == 1
    series = run.metric_series()
    assert {"loss", "selftaught/candidates", "selftaught/kept_rate_AB", "selftaught/kept_rate_BA"} <= set(
        series
    )
    assert series["selftaught/candidates"][-1][1] == counts["pairs"] * 2  # one sample per order
    assert counts["examples"] == counts["kept_AB"] + counts["kept_BA"] >= 1
    assert (run.iteration(0) / "adapter" / "adapter_config.json").exists()
    print(f"self-taught job: {counts['pairs']} pairs, kept AB {counts['kept_AB']}, BA {counts['kept_BA']}")
