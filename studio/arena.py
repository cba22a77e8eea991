"""The arena service: run several columns (strategy x model) on one prompt, store every run at once, show the
columns in shuffled positions when blind, and record what people say about them. No gradio here.

A column is written ``strategy[:variant] @ model``, e.g. ``cove:factored @ smollm2-135m``.
"""

from __future__ import annotations

import queue
import random
import threading
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from storage import Store, StoreError
from studio.api import RunSpec, list_strategies, stream_many
from studio.backends.base import validate_conversation
from studio.errors import InputError
from studio.models import ModelRegistry
from studio.strategies import StrategyParams, TraceEvent

MAX_COLUMNS = 6
DEFAULT_COLUMNS = ("system1", "cove:factored", "s2a:default", "bsm:generation")
ARENA_SET = "arena"  # the prompt set of prompts typed into the arena


@dataclass(frozen=True)
class Column:
    strategy: str
    variant: str | None
    model: str

    @property
    def method(self) -> str:
        return f"{self.strategy}:{self.variant}" if self.variant else self.strategy

    @property
    def label(self) -> str:
        return f"{self.method} @ {self.model}"

    @classmethod
    def parse(cls, text: str, default_model: str) -> Column:
        method, _, model = (text or "").partition("@")
        strategy, _, variant = method.strip().partition(":")
        if not strategy:
            raise InputError(f"a column is 'strategy[:variant] @ model', not {text!r}")
        return cls(strategy.strip(), variant.strip() or None, model.strip() or default_model)


def column_choices(models: Sequence[str]) -> list[str]:
    """Every strategy x variant x model combination, as column labels."""
    methods = []
    for info in list_strategies():
        methods += [f"{info.name}:{v}" for v in info.variants] if info.variants else [info.name]
    return [f"{m} @ {model}" for model in models for m in methods]


def default_columns(model: str) -> list[str]:
    return [f"{m} @ {model}" for m in DEFAULT_COLUMNS]


@dataclass
class ArenaState:
    """What the screen shows after a run: positions are screen positions (0 = left)."""

    question: str = ""
    prompt_id: int | None = None
    comparison_id: int | None = None
    blind: bool = True
    columns: list[str] = field(default_factory=list)  # column labels, by position
    run_ids: list[int | None] = field(default_factory=list)  # by position
    step_ids: list[list[tuple[str, str]]] = field(default_factory=list)  # (step id, step name) by position
    answers: list[str] = field(default_factory=list)
    errors: list[str | None] = field(default_factory=list)
    voted: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any] | None) -> ArenaState:
        if not d:
            return cls()
        d = dict(d)
        d["step_ids"] = [[tuple(s) for s in col] for col in d.get("step_ids", [])]
        return cls(**d)


@dataclass
class ArenaUpdate:
    """One thing that happened: ``event`` for a column (its ``run`` is the screen position), or ``done``."""

    kind: str  # "event" | "delta" | "stored" | "done"
    position: int = -1
    event: TraceEvent | None = None
    step_id: str = ""
    text: str = ""
    state: ArenaState | None = None


def stream_arena(
    store: Store,
    registry: ModelRegistry,
    question: str,
    columns: Sequence[str],
    params: StrategyParams | dict[str, Any] | None = None,
    *,
    blind: bool = True,
    shuffle_seed: int | None = None,
    prompt_set: str = ARENA_SET,
) -> Iterator[ArenaUpdate]:
    """Run every column on ``question``; store each run the moment it finishes and the comparison at the end.

    Blind mode shuffles the columns' screen positions; the positions are what the comparison stores."""
    validate_conversation([{"role": "user", "content": question or ""}])
    cols = [Column.parse(c, registry.settings.default_model) for c in columns]
    if not 1 <= len(cols) <= MAX_COLUMNS:
        raise InputError(f"pick between 1 and {MAX_COLUMNS} columns, not {len(cols)}")
    if blind:
        random.Random(shuffle_seed).shuffle(cols)
    specs = [RunSpec(c.strategy, c.variant, registry.backend(c.model)) for c in cols]
    prompt_id = _store(lambda: store.add_prompt(question, prompt_set))
    state = ArenaState(
        question=question,
        prompt_id=prompt_id,
        blind=blind,
        columns=[c.label for c in cols],
        run_ids=[None] * len(cols),
        step_ids=[[] for _ in cols],
        answers=[""] * len(cols),
        errors=[None] * len(cols),
    )
    for kind, position, payload in _threaded(question, specs, params):
        if kind == "delta":
            step_id, text = payload
            yield ArenaUpdate("delta", position, step_id=step_id, text=text)
            continue
        ev: TraceEvent = payload
        if ev.kind == "step_started" and ev.step is not None:
            state.step_ids[position].append((ev.step.id, ev.step.name))
        yield ArenaUpdate("event", position, event=ev)
        if ev.kind == "run_finished" and ev.result is not None:
            r = ev.result
            state.answers[position], state.errors[position] = r.final_answer, r.error
            state.run_ids[position] = _store(
                lambda r=r, c=cols[position]: store.add_run(
                    prompt_id,
                    c.model,
                    r.strategy,
                    r.final_answer,
                    variant=r.variant,
                    params=r.params.to_dict(),
                    trace=r.trace.to_dict(),
                    tokens_in=r.totals.prompt_tokens,
                    tokens_out=r.totals.completion_tokens,
                    latency_s=r.trace.latency_s,
                )
            )
            yield ArenaUpdate("stored", position, state=state)
    ids = [i for i in state.run_ids if i is not None]
    if len(ids) >= 2 and len(ids) == len(state.run_ids):
        state.comparison_id = _store(lambda: store.add_comparison(ids, blind=blind))
    yield ArenaUpdate("done", state=state)


def _threaded(question: str, specs: list[RunSpec], params: Any) -> Iterator[tuple[str, int, Any]]:
    """Drive the runs in a worker thread so token deltas (from the backend) and trace events interleave."""
    q: queue.Queue[tuple[str, int, Any]] = queue.Queue()
    done = object()

    def on_delta(position: int, step_id: str, text: str) -> None:
        q.put(("delta", position, (step_id, text)))

    def work() -> None:
        try:
            for ev in stream_many(question, specs, params, on_delta=on_delta):
                q.put(("event", ev.run, ev))
        except BaseException as e:  # surfaced in the consumer's thread
            q.put(("error", -1, e))
        finally:
            q.put(("end", -1, done))

    threading.Thread(target=work, daemon=True, name="arena-run").start()
    while True:
        kind, position, payload = q.get()
        if kind == "end":
            return
        if kind == "error":
            raise payload
        yield kind, position, payload


def _store(fn: Any) -> Any:
    try:
        return fn()
    except StoreError as e:
        raise InputError(f"could not save to the store: {e}") from None


# -- labels --------------------------------------------------------------------------------------------------------
PAIRWISE = {"A": "A", "B": "B", "Tie": "tie", "Both bad": "both_bad", "tie": "tie", "both_bad": "both_bad"}


def record_vote(
    store: Store,
    comparison_id: int | None,
    annotator: str,
    *,
    choice: str | None = None,
    ranks: Sequence[int | str | None] | None = None,
    comment: str = "",
) -> int:
    """A pairwise vote (a two-run comparison) or a full ranking with ties (more runs; 1 = best)."""
    annotator = _annotator(annotator)
    if comparison_id is None or comparison_id == "":
        raise InputError("nothing to label yet: run a prompt with two or more columns first")
    cmp = store.get_comparison(int(comparison_id))
    if cmp is None:
        raise InputError(f"comparison {comparison_id} does not exist (was it deleted?)")
    n = len(cmp["run_ids"])
    cid = int(comparison_id)
    text = (comment or "").strip() or None
    if n == 2 and choice:
        if choice not in PAIRWISE:
            raise InputError(f"a pairwise vote is A, B, Tie or Both bad, not {choice!r}")
        return _store(lambda: store.add_vote(cid, PAIRWISE[choice], annotator, comment=text))
    given = list(ranks or [])[:n]
    if len(given) < n or any(r in (None, "") for r in given):
        what = (
            "pick A, B, Tie or Both bad" if n == 2 else f"give all {n} columns a rank (1 = best; equal = tie)"
        )
        raise InputError(f"incomplete label: {what}")
    try:
        ints = [int(r) for r in given]  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"ranks must be whole numbers, not {given}") from None
    return _store(lambda: store.add_ranking(cid, ints, annotator, comment=text))


def reveal(store: Store, comparison_id: int) -> list[str]:
    """The column labels (strategy:variant @ model) of a comparison, by screen position."""
    cmp = store.get_comparison(int(comparison_id))
    if cmp is None:
        return []
    out = []
    for rid in cmp["run_ids"]:
        run = store.get_run(rid) or {}
        out.append(Column(run.get("strategy", "?"), run.get("variant"), run.get("model", "?")).label)
    return out


def _annotator(name: str | None) -> str:
    name = (name or "").strip()
    if not name:
        raise InputError("enter your name (annotator) before labelling, so your labels can be told apart")
    if len(name) > 100 or "\x00" in name:
        raise InputError("the annotator name must be at most 100 characters, without NUL bytes")
    return name


def label_step(
    store: Store, state: ArenaState, position: int, step_id: str, label: str, annotator: str, note: str = ""
) -> int:
    """Flag one step of one column's trace as wrong or good."""
    annotator = _annotator(annotator)
    if not 0 <= position < len(state.run_ids) or state.run_ids[position] is None:
        raise InputError("that column has no stored run yet")
    if step_id not in {s for s, _ in state.step_ids[position]}:
        raise InputError(f"column {position + 1} has no step {step_id!r}")
    run_id = state.run_ids[position]
    return _store(lambda: store.add_step_label(run_id, step_id, label, annotator, note=note.strip() or None))


def next_prompt(store: Store, prompt_set: str) -> str:
    """The next prompt of a set that nobody has compared yet (a random one when all have been)."""
    prompts = store.list_prompts(prompt_set or None, limit=None)
    if not prompts:
        raise InputError(f"prompt set {prompt_set!r} is empty; import a text or JSONL file first")
    seen = {c["prompt_id"] for c in store.list_comparisons(limit=None)}
    return next((p for p in prompts if p["id"] not in seen), random.choice(prompts))["text"]


def import_prompt_file(store: Store, path: str, prompt_set: str) -> int:
    """Prompts from a text file (one per line) or JSONL (``{"prompt": ...}`` or ``{"text": ...}`` per line)."""
    import json
    from pathlib import Path

    prompt_set = (prompt_set or "").strip() or Path(path).stem
    try:
        raw = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{Path(path).name} is not valid UTF-8 (byte {e.start}); save it as UTF-8") from None
    texts: list[str] = []
    is_jsonl = path.endswith((".jsonl", ".json"))
    for i, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        if is_jsonl:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise InputError(f"line {i}: not valid JSON ({e.msg})") from None
            text = obj.get("prompt") or obj.get("text") if isinstance(obj, dict) else None
            if not isinstance(text, str) or not text.strip():
                raise InputError(f"line {i}: needs a non-empty 'prompt' or 'text' field")
        else:
            text = line
        if "\x00" in text:
            raise InputError(f"line {i}: contains NUL bytes")
        texts.append(text.strip())
    if not texts:
        raise InputError(f"{Path(path).name} holds no prompts")
    return len(_store(lambda: store.add_prompts(texts, prompt_set)))
