"""Reading the store once, for batch judging and the figures: prompts, runs, comparisons, votes (with the run
pairs each vote gives, from the store's one ranking-to-pairs rule), and verdicts. Failed runs are left out."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from studio.methods import Method

if TYPE_CHECKING:
    from storage import Store

ALL = None  # the store's list_* readers: every row
HUMAN = "human"


@dataclass
class Snapshot:
    prompts: dict[int, dict[str, Any]]
    runs: dict[int, dict[str, Any]]
    comparisons: dict[int, dict[str, Any]]
    votes: list[dict[str, Any]]
    verdicts: list[dict[str, Any]]
    # every vote as run pairs with its outcome, as Store.vote_pairs gives them (the exports' pairs, ties kept)
    vote_pairs: list[dict[str, Any]] = field(default_factory=list)
    store: Store | None = field(
        default=None, repr=False, compare=False
    )  # for the run filters (Store.matching)

    def voted(self) -> set[int]:
        return {v["comparison_id"] for v in self.votes}


def snapshot(store: Store) -> Snapshot:
    """Everything the figures need, read with the store's own readers (no SQL here). Failed runs are left out,
    with any comparison, vote or verdict that involves one: judges and figures never see a failed run."""
    runs = {r["id"]: r for r in store.list_runs(failed=False, limit=ALL)}
    comparisons = {
        c["id"]: c for c in store.list_comparisons(limit=ALL) if all(r in runs for r in c["run_ids"])
    }
    return Snapshot(
        prompts={p["id"]: p for p in store.list_prompts(limit=ALL)},
        runs=runs,
        comparisons=comparisons,
        votes=[v for v in store.list_votes(limit=ALL) if v["comparison_id"] in comparisons],
        verdicts=[d for d in store.list_verdicts(limit=ALL) if all(r in runs for r in d["run_ids"])],
        vote_pairs=[p for p in store.vote_pairs() if p["comparison_id"] in comparisons],
        store=store,
    )


def contestant(run: dict[str, Any]) -> tuple[str, str]:
    """(model, strategy[:variant]) of a run: the unit the leaderboard ranks."""
    return run["model"], Method.of(run).label
