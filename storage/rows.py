"""The rows the ``Store`` readers return, as ``TypedDict`` s: one per table row or computed row.

At run time a row is the plain ``dict`` it always was (``row["answer"]``, ``dict(row)``, ``json.dumps(row)``
all work); the types say which keys a reader returns and what their values are, for readers and type checkers.
JSON columns (``params``, ``trace``, ``config``...) come back decoded; times are naive UTC ``datetime`` s.
A ``list_*`` reader that leaves a large column out (runs' and verdicts' traces) returns the base row; its
``get_*`` returns the row ``With`` it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, TypedDict

VoteKind = Literal["pairwise", "ranking"]
Choice = Literal["A", "B", "tie", "both_bad"]
Winner = Literal["A", "B", "tie", "inconsistent"]
Outcome = Literal["A", "B", "tie"]


class PromptRow(TypedDict):
    """``get_prompt``, ``list_prompts``, ``next_prompt``. ``messages``: a multi-turn prompt's messages, else None.
    ``reference``: the prompt's known answer (e.g. for math; reference-guided judges show it), else None."""

    id: int
    text: str
    prompt_set: str
    category: str | None
    tags: list[str]
    created_at: datetime
    messages: list[dict[str, Any]] | None
    reference: str | None


class PromptSetRow(TypedDict):
    """``get_prompt_set``, ``set_prompt_set``: '' and 1 for a set never configured."""

    name: str
    guidelines: str
    min_labels: int


class AnnotatorProgress(TypedDict):
    """``annotator_progress``: a prompt set's prompts as one annotator stands with them."""

    total: int
    labelled: int
    skipped: int
    remaining: int


class PromptStatusRow(TypedDict):
    """``prompt_status``: one prompt's labelling status (labels and skips count distinct annotators)."""

    prompt_id: int
    text: str
    labels: int
    min_labels: int
    skips: int
    status: Literal["complete", "in progress", "unlabelled"]


class RunRow(TypedDict):
    """``list_runs``: a run without its trace. ``error`` is None for a run that succeeded."""

    id: int
    prompt_id: int
    model: str
    strategy: str
    variant: str | None
    params: dict[str, Any] | None
    answer: str
    tokens_in: int | None
    tokens_out: int | None
    latency_s: float | None
    created_at: datetime
    error: str | None


class RunWithTrace(RunRow):
    """``get_run``: a run with its trace (the strategy's JSON trace)."""

    trace: Any


class ComparisonRow(TypedDict):
    """``get_comparison``, ``list_comparisons``: ``run_ids`` in screen order (position 0 first)."""

    id: int
    prompt_id: int
    blind: bool
    created_at: datetime
    run_ids: list[int]


class VoteRow(TypedDict):
    """``list_votes``, ``get_label``: a pairwise vote (``choice``) or a ranking; ``ranks`` is filled for both
    (a pairwise vote's ranks are those its choice gives: A = [1, 2], B = [2, 1], tie and both_bad = [1, 1])."""

    id: int
    comparison_id: int
    kind: VoteKind
    choice: Choice | None
    ranks: list[int]
    annotator: str
    comment: str | None
    created_at: datetime


class VotePairRow(TypedDict):
    """``vote_pairs``: two runs of a voted comparison and the vote's outcome for them (A = the earlier position)."""

    vote_id: int
    comparison_id: int
    annotator: str
    run_a: int
    run_b: int
    outcome: Outcome


class LabelAuditRow(TypedDict):
    """``label_audit``: a replaced, deleted or deduplicated label; ``old``/``new`` are its values (``new`` is None
    for a delete). ``annotator`` is the label's, ``actor`` who changed it."""

    id: int
    kind: Literal["vote", "step_label"]
    row_id: int
    comparison_id: int | None
    annotator: str | None
    actor: str | None
    action: Literal["replace", "delete", "dedupe"]
    old: dict[str, Any] | None
    new: dict[str, Any] | None
    at: datetime


class VerdictRow(TypedDict):
    """``list_verdicts``: a judge's verdict without its trace. ``run_ids``: one run (single) or A, B (pairwise)."""

    id: int
    judge: str
    judge_model: str | None
    judge_config: dict[str, Any] | None
    mode: Literal["single", "pairwise"]
    run_ids: list[int]
    comparison_id: int | None
    orders: list[str]
    winner: Winner | None
    rating: float | None
    prob_a: float | None
    scores: Any
    raw_output: str | None
    ok: bool
    created_at: datetime


class VerdictWithTrace(VerdictRow):
    """``get_verdict``: a verdict with the trace of the model calls behind it."""

    trace: Any


class StepLabelRow(TypedDict):
    """``list_step_labels``: a person's label on one step of a run's trace."""

    id: int
    run_id: int
    step_id: str
    label: str
    note: str | None
    annotator: str
    created_at: datetime
    updated_at: datetime | None


class ModelRow(TypedDict):
    """``get_model``, ``list_models``, ``lineage``: a model's lineage record (``parent`` is a model name)."""

    id: int
    name: str
    backend: str
    base: str | None
    adapter_path: str | None
    parent: str | None
    training_run_id: int | None
    config: dict[str, Any] | None
    created_at: datetime


class TrainingRunRow(TypedDict):
    """``get_training_run``, ``list_training_runs``. ``status``: one of ``store.TRAINING_STATUSES``."""

    id: int
    method: str
    base_model: str | None
    config: dict[str, Any] | None
    status: str
    output_path: str | None
    log_path: str | None
    error: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class PreferencePairRow(TypedDict):
    """``preference_pairs``: a deduplicated (prompt, chosen, rejected) pair with its provenance."""

    prompt: str
    chosen: str
    rejected: str
    chosen_run_id: int
    rejected_run_id: int
    sources: list[str]
    annotators: list[str]
    n_events: int
    first_at: datetime


class KtoRow(TypedDict):
    """``kto_rows``: one completion and its merged label (True = desirable)."""

    prompt: str
    completion: str
    label: bool


class RmPairRow(TypedDict):
    """``rm_pairs``: a reward-model pair; ``margin`` is the mean single-verdict rating difference, or None."""

    prompt: str
    chosen: str
    rejected: str
    margin: float | None


class WinCountRow(TypedDict):
    """``win_counts``: decisive wins of one model (or strategy) over another."""

    winner: str
    loser: str
    wins: int


class StoreStats(TypedDict):
    """``stats``: row counts, vote and verdict breakdowns, and the DPO pairs and KTO rows an export would give."""

    schema_version: int
    prompts: int
    runs: int
    comparisons: int
    votes: int
    rankings: int
    verdicts: int
    failed_verdicts: int
    step_labels: int
    models: int
    training_runs: int
    annotators: int
    choices: dict[str, int]
    dpo_rows: int
    kto_rows: int
