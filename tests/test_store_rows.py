"""The readers' rows have exactly the keys of their ``storage.rows`` TypedDicts (the types match the SQL)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from storage import Store, rows


@pytest.fixture()
def filled(tmp_path: Path):
    """One of each row: prompts, runs, a comparison with a vote (then replaced), a verdict, a step label, a
    model trained by a training run."""
    with Store(tmp_path / "studio.duckdb") as s:
        pid = s.add_prompt("Q?", "set1")
        a = s.add_run(pid, "m1", "system1", "yes", trace={"steps": []}, params={"temperature": 0.0})
        b = s.add_run(pid, "m2", "cove", "no", variant="factored")
        cid = s.add_comparison([a, b])
        s.add_vote(cid, "A", "alice")
        s.add_vote(cid, "B", "alice")
        s.add_verdict("j", "pairwise", comparison_id=cid, winner="B", orders=["AB"], trace={"steps": []})
        s.add_step_label(a, "s0", "good", "alice")
        s.set_prompt_set("set1", guidelines="be kind")
        tid = s.add_training_run("dpo", {"beta": 0.1}, base_model="m1")
        s.add_model("m1", "transformers")
        s.add_model("m1-dpo", "transformers", parent="m1", training_run_id=tid)
        yield s, pid, a, cid


def _keys(row_type: Any) -> set[str]:
    return set(row_type.__required_keys__ | row_type.__optional_keys__)


def test_rows_match_their_types(filled: tuple[Store, int, int, int]) -> None:
    s, pid, run_id, cid = filled
    verdict_id = s.list_verdicts()[0]["id"]
    cases: list[tuple[type, Any]] = [
        (rows.PromptRow, s.get_prompt(pid)),
        (rows.PromptRow, s.list_prompts()[0]),
        (rows.PromptRow, s.next_prompt(None, "bob")),
        (rows.PromptSetRow, s.get_prompt_set("set1")),
        (rows.AnnotatorProgress, s.annotator_progress(None, "alice")),
        (rows.PromptStatusRow, s.prompt_status(None)[0]),
        (rows.RunWithTrace, s.get_run(run_id)),
        (rows.RunRow, s.list_runs()[0]),
        (rows.ComparisonRow, s.get_comparison(cid)),
        (rows.ComparisonRow, s.list_comparisons()[0]),
        (rows.VoteRow, s.get_label(cid, "alice")),
        (rows.VoteRow, s.list_votes()[0]),
        (rows.VotePairRow, s.vote_pairs()[0]),
        (rows.LabelAuditRow, s.label_audit()[0]),
        (rows.VerdictWithTrace, s.get_verdict(verdict_id)),
        (rows.VerdictRow, s.list_verdicts()[0]),
        (rows.StepLabelRow, s.list_step_labels()[0]),
        (rows.ModelRow, s.get_model("m1-dpo")),
        (rows.ModelRow, s.lineage("m1-dpo")[1]),
        (rows.TrainingRunRow, s.get_training_run(1)),
        (rows.TrainingRunRow, s.list_training_runs()[0]),
        (rows.PreferencePairRow, s.preference_pairs()[0]),
        (rows.KtoRow, s.kto_rows()[0]),
        (rows.RmPairRow, s.rm_pairs()[0]),
        (rows.WinCountRow, s.win_counts()[0]),
        (rows.StoreStats, s.stats()),
    ]
    for row_type, row in cases:
        assert row is not None, row_type.__name__
        assert set(row) == _keys(row_type), row_type.__name__
    assert "trace" not in s.list_runs()[0] and "trace" not in s.list_verdicts()[0]
