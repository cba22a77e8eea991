"""Parent side: the data a job trains on, read from the store and written into the run dir before the job starts.

The job never opens the store, so everything it needs is snapshot here: preference pairs and KTO labels as
Parquet in TRL's conversational layout, prompts as Parquet, seed prompts and human-labelled pairs as JSONL.
:func:`preview` gives the counts and a few rows without writing anything (the Train tab's data preview), and
names what would stop the job (``problems``) so that bad input is refused before anything is launched.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.training.rundir import write_jsonl

if TYPE_CHECKING:
    from storage import Filters, Store

FILTER_KEYS = ("annotator", "source", "model", "strategy", "prompt_set", "since", "until", "agree_only")


@dataclass
class DataPreview:
    """What a job would train on: counts, a few rows as plain text, and any reason it would refuse to start."""

    method: str
    kind: str  # pairs | labels | prompts
    count: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_dict(self) -> dict[str, Any]:
        return {**self.__dict__, "ok": self.ok}


def filters_from_dict(values: dict[str, Any] | None) -> Filters:
    """``Filters`` from the config's plain dict (dates as ISO text); unknown keys are a user error."""
    from storage import Filters
    from studio.errors import InputError

    values = dict(values or {})
    unknown = set(values) - set(FILTER_KEYS)
    if unknown:
        raise InputError(f"unknown filter {', '.join(sorted(unknown))}; filters: {', '.join(FILTER_KEYS)}")
    for key in ("since", "until"):
        if isinstance(values.get(key), str):
            values[key] = _when(values[key])
    try:
        return Filters(**values)
    except Exception as e:  # StoreError for a bad source
        raise InputError(str(e)) from None


def filters_to_dict(filters: Filters) -> dict[str, Any]:
    out = {}
    for key in FILTER_KEYS:
        value = getattr(filters, key)
        if value in (None, False, (), []):
            continue
        out[key] = value.isoformat() if isinstance(value, date | datetime) else value
        if isinstance(out[key], tuple):
            out[key] = list(out[key])
    return out


def _when(text: str) -> date | datetime:
    return datetime.fromisoformat(text) if "T" in text or " " in text else date.fromisoformat(text)


# -- preference items -----------------------------------------------------------------------------------------
def items_table(store: Store, kind: str, filters: dict[str, Any], **options: Any) -> Any:
    """dpo / kto / rm items as an Arrow table in TRL's conversational layout."""
    sql, params = store.items_sql(kind, filters_from_dict(filters), conversational=True, **options)
    return store.arrow(sql, params)


def _text(value: Any) -> str:
    """A conversational cell as plain text (the last message's content), for previews."""
    if isinstance(value, list) and value:
        return str(value[-1].get("content", ""))
    return "" if value is None else str(value)


def plain_rows(table: Any, limit: int) -> list[dict[str, Any]]:
    return [
        {k: v if isinstance(v, bool) else _text(v) for k, v in row.items()}
        for row in table.slice(0, limit).to_pylist()
    ]


def cap(table: Any, max_examples: int) -> Any:
    return table.slice(0, max_examples) if max_examples and table.num_rows > max_examples else table


def write_parquet(table: Any, path: Path) -> None:
    import pyarrow.parquet as pq

    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(table, tmp)
    tmp.replace(path)


def too_few(count: int, minimum: int, what: str, hint: str) -> list[str]:
    if count == 0:
        return [f"no {what} match the filters; {hint}"]
    if count < minimum:
        return [f"only {count} {what} match the filters, fewer than min_examples={minimum}; {hint}"]
    return []


PAIR_HINT = "label more comparisons in the Arena, run a judge, or widen the filters"


def pairs_preview(
    store: Store, method: str, cfg: Any, limit: int, kind: str = "dpo"
) -> tuple[DataPreview, Any]:
    table = cap(items_table(store, kind, cfg.filters), cfg.max_examples)
    if "margin" in table.column_names:  # the reward job trains InstructGPT's plain loss; exports keep margins
        table = table.drop(["margin"])
    n = table.num_rows
    preview = DataPreview(method, "pairs", n, plain_rows(table, limit), {"pairs": n})
    preview.problems += too_few(n, cfg.min_examples, "preference pairs", PAIR_HINT)
    return preview, table


def kto_preview(store: Store, method: str, cfg: Any, limit: int) -> tuple[DataPreview, Any]:
    table = cap(items_table(store, "kto", cfg.filters, good_rating=cfg.good_rating or None), cfg.max_examples)
    labels = table.column("label").to_pylist() if table.num_rows else []
    good, bad = sum(1 for x in labels if x), sum(1 for x in labels if not x)
    preview = DataPreview(method, "labels", table.num_rows, plain_rows(table, limit))
    preview.counts = {"desirable": good, "undesirable": bad}
    preview.problems += too_few(table.num_rows, cfg.min_examples, "labelled answers", PAIR_HINT)
    if table.num_rows and (not good or not bad):
        preview.problems.append(
            f"KTO needs desirable and undesirable answers; found {good} desirable and {bad} undesirable"
        )
    return preview, table


# -- prompts --------------------------------------------------------------------------------------------------
def prompt_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    messages = row.get("messages")
    if messages:
        return [{"role": m["role"], "content": m["content"]} for m in messages]
    return [{"role": "user", "content": row["text"]}]


def store_prompts(store: Store, prompt_set: str, limit: int) -> list[dict[str, Any]]:
    rows = store.list_prompts(prompt_set or None, limit=None)
    return rows[:limit] if limit else rows


PROMPT_HINT = "add prompts (the Arena, `studio import`), or choose another prompt_set"


def prompts_preview(store: Store, method: str, cfg: Any, limit: int) -> tuple[DataPreview, Any]:
    import pyarrow as pa

    rows = store_prompts(store, cfg.prompt_set, cfg.max_prompts)
    table = pa.Table.from_pylist([{"prompt": prompt_messages(r)} for r in rows])
    preview = DataPreview(method, "prompts", len(rows), [{"prompt": r["text"]} for r in rows[:limit]])
    preview.counts = {"prompts": len(rows)}
    preview.problems += too_few(len(rows), cfg.min_examples, "prompts", PROMPT_HINT)
    return preview, table


def human_pairs(store: Store, limit: int) -> list[dict[str, str]]:
    """Human-labelled pairs (plain text), to measure a judge's agreement with people."""
    from storage import Filters

    pairs = store.preference_pairs(Filters(source="human"))[:limit] if limit else []
    return [{"prompt": p["prompt"], "chosen": p["chosen"], "rejected": p["rejected"]} for p in pairs]


def self_rewarding_preview(store: Store | None, method: str, cfg: Any, limit: int) -> tuple[DataPreview, Any]:
    """Seed prompts from the store, or with ``cfg.task`` the task's train questions (no store prompt is read);
    human-labelled pairs from the store when there is one (judge-human agreement)."""
    humans = human_pairs(store, cfg.agreement_max_pairs) if store is not None else []
    if cfg.task:
        questions = task_questions(cfg.task, cfg.max_prompts, cfg.seed + cfg.start_iteration)
        preview = DataPreview(method, "prompts", len(questions), [{"prompt": q} for q in questions[:limit]])
        preview.notes.append(f"task {cfg.task}: {len(questions)} train-split questions (answers not read)")
        seeds: list[dict[str, Any]] = []
    else:
        seeds = store_prompts(store, cfg.prompt_set, 0) if store is not None else []
        preview = DataPreview(method, "prompts", len(seeds), [{"prompt": r["text"]} for r in seeds[:limit]])
    preview.counts = {"prompts": preview.count, "human_pairs": len(humans)}
    preview.problems += too_few(preview.count, cfg.min_examples, "prompts", PROMPT_HINT)
    if not humans:
        preview.notes.append("no human-labelled pairs: judge-human agreement cannot be measured")
    return preview, {"seeds": seeds, "human_pairs": humans, "task": cfg.task}


def task_questions(task: str, n: int, seed: int) -> list[str]:
    """``n`` questions of ``task``'s TRAIN split (never its test split), drawn with ``seed``, as the model is asked
    them (``task.prompt``); the reference answers are not read."""
    import random

    from studio.eval.tasks import get_task

    the_task = get_task(task)
    items = list(the_task.load("train").items)
    chosen = random.Random(seed).sample(items, min(n, len(items))) if n else items
    return [the_task.prompt(item) for item in chosen]


def write_self_rewarding(snapshot: dict[str, Any], run_path: Path) -> None:
    write_jsonl(
        run_path / "seed_prompts.jsonl", [{"text": r["text"], "id": r["id"]} for r in snapshot["seeds"]]
    )
    write_jsonl(run_path / "human_pairs.jsonl", snapshot["human_pairs"])
    if snapshot.get("task"):
        from studio.training.rundir import write_json

        write_json(run_path / "task.json", {"task": snapshot["task"], "split": "train"})
