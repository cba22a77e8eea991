"""Browsing what the store holds (the Data tab's tables): prompts, runs, votes, verdicts, step labels and the label
audit, narrowed by the store's run filters and searched for text. No gradio here.

The run filters (prompt set, model, strategy or ``strategy:variant``) and the annotator go to the store's readers,
which apply them in SQL (``storage.pairs.match_where``, the filters the exports use): a vote or a verdict matches
when one of its runs does. The text search looks, case-insensitively, in the prompt, the answers and the row's
own text; it reads the newest ``SCAN`` rows the filters leave.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from storage import Filters, Store
from studio.methods import Method

SCAN = 20_000  # rows read when the text search has to look at them

Row = dict[str, Any]


@dataclass(frozen=True)
class Browse:
    """What to show: every field optional (None: any); ``limit`` None shows every row."""

    prompt_set: str | None = None
    model: str | None = None
    strategy: str | None = None
    annotator: str | None = None  # a vote's or a step label's annotator, a verdict's judge
    search: str | None = None
    limit: int | None = 100

    @property
    def filters(self) -> Filters:
        return Filters(model=self.model, strategy=self.strategy, prompt_set=self.prompt_set)

    @property
    def scan(self) -> int | None:
        """How many rows to ask the store for: all we show, or, when the text search picks, the newest ``SCAN``."""
        return SCAN if self.search else self.limit

    def finds(self, *texts: Any) -> bool:
        needle = (self.search or "").casefold()
        return not needle or any(needle in str(t).casefold() for t in texts if t is not None)

    def take(self, rows: Iterable[Row]) -> list[Row]:
        out: list[Row] = []
        for r in rows:
            if self.limit is not None and len(out) >= self.limit:
                break
            out.append(r)
        return out


class Index:
    """Prompts, runs (without traces) and comparisons by id, each read once per request when first needed."""

    def __init__(self, store: Store) -> None:
        self.store = store

    @cached_property
    def prompts(self) -> dict[int, Row]:
        return {p["id"]: p for p in self.store.list_prompts(limit=None)}

    @cached_property
    def runs(self) -> dict[int, Row]:
        return {r["id"]: r for r in self.store.list_runs(limit=None)}

    @cached_property
    def comparisons(self) -> dict[int, Row]:
        return {c["id"]: c for c in self.store.list_comparisons(limit=None)}

    def prompt_of(self, prompt_id: int | None) -> Row:
        return self.prompts.get(prompt_id, {}) if prompt_id is not None else {}

    def runs_of(self, run_ids: Sequence[int]) -> list[Row]:
        return [self.runs[r] for r in run_ids if r in self.runs]

    def contestants(self, run_ids: Sequence[int]) -> str:
        return " | ".join(f"{r['model']} / {Method.of(r)}" for r in self.runs_of(run_ids))

    def texts(self, run_ids: Sequence[int]) -> list[Any]:
        """What the search looks at for rows about these runs: their prompt and their answers."""
        runs = self.runs_of(run_ids)
        prompt = self.prompt_of(runs[0]["prompt_id"] if runs else None)
        return [prompt.get("text"), *(r["answer"] for r in runs)]


def prompt_rows(store: Store, q: Browse) -> list[Row]:
    rows = store.list_prompts(q.prompt_set, limit=q.limit if not q.search else None)
    return q.take(p for p in rows if q.finds(p["text"], p.get("category")))


def run_rows(store: Store, q: Browse) -> list[Row]:
    """Runs, newest first, with their prompt's set and text; ``strategy`` shows the method (strategy:variant)."""
    index = Index(store)
    rows = []
    for r in store.list_runs(filters=q.filters, limit=q.scan):
        prompt = index.prompt_of(r["prompt_id"])
        if q.finds(prompt.get("text"), r["answer"]):
            rows.append({**r, "strategy": Method.of(r).label, "prompt_set": prompt.get("prompt_set"),
                         "prompt": prompt.get("text")})  # fmt: skip
    return q.take(rows)


def vote_rows(store: Store, q: Browse) -> list[Row]:
    """Votes and rankings, newest first, with their runs, contestants and prompt."""
    index = Index(store)
    rows = []
    for v in store.list_votes(annotator=q.annotator, filters=q.filters, limit=q.scan):
        cmp = index.comparisons.get(v["comparison_id"], {})
        run_ids = cmp.get("run_ids") or []
        if q.finds(*index.texts(run_ids), v.get("comment"), v["annotator"]):
            prompt = index.prompt_of(cmp.get("prompt_id")).get("text")
            rows.append(
                {**v, "run_ids": run_ids, "contestants": index.contestants(run_ids), "prompt": prompt}
            )
    return q.take(rows)


def verdict_rows(store: Store, q: Browse) -> list[Row]:
    """Verdicts, newest first, with their contestants, error and whether the judge judged its own model."""
    index = Index(store)
    rows = []
    for d in store.list_verdicts(judge=q.annotator, filters=q.filters, limit=q.scan):
        scores = d.get("scores") if isinstance(d.get("scores"), dict) else {}
        error = scores.get("error")
        if q.finds(*index.texts(d["run_ids"]), d.get("raw_output"), d["judge"], error):
            rows.append({**d, "contestants": index.contestants(d["run_ids"]), "error": error,
                         "self_judge": scores.get("self_judge")})  # fmt: skip
    return q.take(rows)


def step_label_rows(store: Store, q: Browse) -> list[Row]:
    """Step labels, newest first."""
    index = Index(store)
    labels = store.list_step_labels(annotator=q.annotator, filters=q.filters)
    return q.take(
        s
        for s in reversed(labels)  # newest first, as the other tables
        if q.finds(*index.texts([s["run_id"]]), s["label"], s.get("note"), s["step_id"], s["annotator"])
    )


def audit_rows(store: Store, q: Browse) -> list[Row]:
    """Who replaced or deleted which label, newest first (the store's label audit)."""
    return store.label_audit(annotator=q.annotator, limit=q.limit)
