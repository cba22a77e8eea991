"""The arena service: run several columns (strategy x model) on one prompt, store every run at once, show the
columns in shuffled positions when blind, and record what people say about them. No gradio here.

A column is written ``strategy[:variant] @ model``, e.g. ``cove:factored @ smollm2-135m``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import random
import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from storage import Store, StoreError
from studio.api import RunSpec, stream_many
from studio.backends.base import validate_conversation
from studio.errors import InputError
from studio.methods import Method, method_choices
from studio.models import ModelRegistry
from studio.runs import save_run
from studio.strategies import StrategyParams, TraceEvent

MAX_COLUMNS = 6
DEFAULT_COLUMNS = ("system1", "cove:factored", "s2a:default", "bsm:generation")
ARENA_SET = "arena"  # the prompt set of prompts typed into the arena
LETTERS = "ABCDEF"  # screen positions, left to right
# The steps whose text is a column's answer. While a comparison is blind, only these steps' text streams to the
# screen: the other steps' text (a CoVe plan, an S2A rewrite, BSM branches) would tell the method apart.
ANSWER_STEPS = frozenset({"answer", "final_verified", "merge"})


@dataclass(frozen=True)
class ArenaColumn:
    strategy: str
    variant: str | None
    model: str

    @property
    def method(self) -> Method:
        return Method(self.strategy, self.variant)

    @property
    def label(self) -> str:
        return f"{self.method} @ {self.model}"

    @classmethod
    def parse(cls, text: str, default_model: str) -> ArenaColumn:
        method, _, model = (text or "").partition("@")
        try:
            m = Method.parse(method)
        except InputError:
            raise InputError(f"a column is 'strategy[:variant] @ model', not {text!r}") from None
        return cls(m.strategy, m.variant, model.strip() or default_model)

    @classmethod
    def of(cls, run: Mapping[str, Any]) -> ArenaColumn:
        """The column of a stored run."""
        m = Method.of(run)
        return cls(m.strategy, m.variant, run.get("model") or "?")


def column_choices(models: Sequence[str]) -> list[str]:
    """Every strategy x variant x model combination, as column labels."""
    methods = method_choices()
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
    included: list[int] = field(default_factory=list)  # positions in the comparison (failed runs are not)
    voted: bool = False

    @property
    def hidden(self) -> bool:
        """True while the page may not say which column is which: a blind comparison nobody here labelled yet."""
        return self.blind and self.comparison_id is not None and not self.voted

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
    prompt_id: int | None = None,
) -> Iterator[ArenaUpdate]:
    """Run every column on ``question``; store each run the moment it finishes and the comparison at the end.

    Blind mode shuffles the columns' screen positions; the positions are what the comparison stores. A column
    whose run fails is stored with its error and left out of the comparison; with fewer than two answers no
    comparison is stored. ``prompt_id`` (a prompt loaded from a set) is used when its text is ``question``, so
    the label counts for that prompt; otherwise the prompt is stored in ``prompt_set``."""
    cols = check_run(registry, question, columns)
    if blind:
        random.Random(shuffle_seed).shuffle(cols)
    specs = [RunSpec(c.strategy, c.variant, registry.backend(c.model)) for c in cols]
    loaded = _store(lambda: store.get_prompt(int(prompt_id))) if prompt_id is not None else None
    if loaded is not None and loaded["text"] == question:
        prompt_id = int(loaded["id"])
    else:
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
    for kind, position, payload in _threaded(question, specs, params, registry.settings.generation_nice):
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
                lambda r=r, c=cols[position]: save_run(store, prompt_id, r, model=c.model)
            )
            yield ArenaUpdate("stored", position, state=state)
    state.included = [p for p, rid in enumerate(state.run_ids) if rid is not None and not state.errors[p]]
    if len(state.included) >= 2:
        ids = [state.run_ids[p] for p in state.included]
        state.comparison_id = _store(lambda: store.add_comparison(ids, blind=blind))
    yield ArenaUpdate("done", state=state)


def check_prompt(question: Any, max_chars: int) -> str:
    """The prompt, or one clear error: not text, empty, NUL bytes, or longer than ``max_chars``."""
    if not isinstance(question, str):
        raise InputError(f"the prompt must be text, not {type(question).__name__}")
    if len(question) > max_chars:
        raise InputError(
            f"the prompt is {len(question):,} characters; the limit is {max_chars:,} (setting max_prompt_chars)"
        )
    validate_conversation([{"role": "user", "content": question}])
    return question


def check_run(registry: ModelRegistry, question: Any, columns: Sequence[str] | None) -> list[ArenaColumn]:
    """Everything about a run request that can be checked before anything runs or is stored."""
    check_prompt(question, registry.settings.max_prompt_chars)
    cols = [ArenaColumn.parse(c, registry.settings.default_model) for c in columns or []]
    if not 1 <= len(cols) <= MAX_COLUMNS:
        raise InputError(f"pick between 1 and {MAX_COLUMNS} columns, not {len(cols)}")
    known = registry.names()
    for c in cols:
        c.method.make()  # unknown strategies and variants are user errors
        if c.model not in known:
            raise InputError(f"unknown model {c.model!r}; registered: {', '.join(known)}")
    return cols


def _threaded(
    question: str, specs: list[RunSpec], params: Any, nice: int = 0
) -> Iterator[tuple[str, int, Any]]:
    """Drive the runs in a worker thread so token deltas (from the backend) and trace events interleave. The
    worker runs at OS priority ``nice``, and so do the threads it starts (Linux nice is per thread and
    inherited): the backend's generate thread and the OpenMP workers torch starts for it."""
    q: queue.Queue[tuple[str, int, Any]] = queue.Queue()
    done = object()

    def on_delta(position: int, step_id: str, text: str) -> None:
        q.put(("delta", position, (step_id, text)))

    def work() -> None:
        lower_priority(nice)
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


def lower_priority(nice: int) -> None:
    """Give the CPU to request handling first: votes and page loads wait for no generation (measured in
    bench/load.py). Only this thread and those it starts from now on; raising nice needs no privilege."""
    if nice > 0 and hasattr(os, "setpriority"):
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)


def _store(fn: Any) -> Any:
    try:
        return fn()
    except StoreError as e:
        raise InputError(f"could not save to the store: {e}") from None


# -- labels --------------------------------------------------------------------------------------------------------
PAIRWISE = {"A": "A", "B": "B", "Tie": "tie", "Both bad": "both_bad", "tie": "tie", "both_bad": "both_bad"}


@dataclass(frozen=True)
class Label:
    """One label on a comparison: a pairwise ``choice`` (a two-run comparison) or a full ``ranks`` list by the
    comparison's positions (more runs; 1 = best, equal = tie). As typed it may be wrong; :func:`check_vote`
    returns it checked (the canonical choice, whole-number ranks, the stripped comment or None), and
    :func:`record_vote` stores it."""

    comparison_id: int | None
    annotator: str
    choice: str | None = None
    ranks: Sequence[int | str | None] | None = None
    comment: str | None = None


def check_vote(store: Store, label: Label) -> Label:
    """Everything about a label that can be checked before it is stored; one clear error otherwise.

    ``ranks`` are by the comparison's positions; blanks after the last column are ignored, ranks for columns
    the comparison does not have are refused."""
    comparison_id, choice, ranks, comment = label.comparison_id, label.choice, label.ranks, label.comment
    annotator = annotator_name(label.annotator)
    if comparison_id in (None, "", 0):  # 0: the page's empty comparison box (ids start at 1)
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
        return Label(cid, annotator, choice=PAIRWISE[choice], comment=text)
    given = list(ranks or [])
    extra = [r for r in given[n:] if r not in (None, "")]
    if extra:
        filled = sum(r not in (None, "") for r in given)
        raise InputError(
            f"comparison {cid} has {n} columns, but {filled} ranks were given: give exactly one rank per column"
        )
    given = given[:n]
    if len(given) < n or any(r in (None, "") for r in given):
        what = (
            "pick A, B, Tie or Both bad" if n == 2 else f"give all {n} columns a rank (1 = best; equal = tie)"
        )
        raise InputError(f"incomplete label: {what}")
    try:
        ints = [int(r) for r in given]  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"ranks must be whole numbers, not {given}") from None
    if any(not 1 <= r <= n for r in ints):
        raise InputError(f"ranks go from 1 (best) to {n} for {n} columns, not {ints}")
    return Label(cid, annotator, ranks=ints, comment=text)


def record_vote(store: Store, label: Label) -> int:
    """Store a label (checked first by :func:`check_vote`). One label per annotator: a second label on the same
    comparison replaces the first (the store keeps the old one in its audit table). Returns the vote id."""
    lab = check_vote(store, label)
    if lab.choice is not None:
        return _store(
            lambda: store.add_vote(lab.comparison_id, lab.choice, lab.annotator, comment=lab.comment)
        )
    return _store(lambda: store.add_ranking(lab.comparison_id, lab.ranks, lab.annotator, comment=lab.comment))


def comparison_ranks(
    state: ArenaState, comparison_id: int | None, ranks: Sequence[int | str | None]
) -> list[int | str | None]:
    """Ranks given by screen position, as the comparison's positions: a failed column is not in the
    comparison, so it may not have a rank. Ranks for another comparison (an API call) are taken as they are."""
    ranks = list(ranks)
    if comparison_id is None or state.comparison_id != int(comparison_id):
        return ranks
    if len(state.included) == len(state.run_ids):
        return ranks
    for p, r in enumerate(ranks):
        if p not in state.included and r not in (None, ""):
            raise InputError(f"column {LETTERS[p]} failed, so it has no rank; clear it")
    return [ranks[p] if p < len(ranks) else None for p in state.included]


def own_label(store: Store, comparison_id: int | None, annotator: str | None) -> dict[str, Any] | None:
    """This annotator's stored label on the comparison, if any."""
    name = (annotator or "").strip()
    if comparison_id is None or not name:
        return None
    return _store(lambda: store.get_label(int(comparison_id), name))


def reveal(store: Store, comparison_id: int) -> list[str]:
    """The column labels (strategy:variant @ model) of a comparison, by its positions."""
    cmp = store.get_comparison(int(comparison_id))
    if cmp is None:
        return []
    return [_label(store.get_run(rid) or {}) for rid in cmp["run_ids"]]


def revealed_columns(store: Store, state: ArenaState, comparison_id: int | None) -> list[dict[str, Any]]:
    """What the page shows once a comparison is labelled, by screen position: each column's ``label``,
    stored ``trace`` and ``error``. Positions come from this session's run, or from the comparison."""
    if state.comparison_id is not None and comparison_id is not None and state.comparison_id == comparison_id:
        run_ids = state.run_ids
    else:
        cmp = store.get_comparison(int(comparison_id)) if comparison_id is not None else None
        run_ids = cmp["run_ids"] if cmp else []
    out = []
    for rid in run_ids:
        run = (store.get_run(rid) if rid is not None else None) or {}
        out.append({"label": _label(run), "trace": run.get("trace"), "error": run.get("error")})
    return out


def _label(run: dict[str, Any]) -> str:
    return ArenaColumn.of(run).label


def annotator_name(name: str | None) -> str:
    """A typed annotator name, stripped; one clear error when it is missing or unusable."""
    name = (name or "").strip()
    if not name:
        raise InputError("enter your name (annotator) before labelling, so your labels can be told apart")
    if len(name) > 100 or "\x00" in name:
        raise InputError("the annotator name must be at most 100 characters, without NUL bytes")
    return name


def label_step(
    store: Store, state: ArenaState, position: int, step_id: str, label: str, annotator: str, note: str = ""
) -> int:
    """Flag one step of one column's trace as wrong or good (after the vote, when the comparison was blind)."""
    run_id, annotator = check_step(state, position, step_id, annotator)
    return _store(lambda: store.add_step_label(run_id, step_id, label, annotator, note=note.strip() or None))


def node_step(tree: Mapping[str, Any] | None, node_id: str) -> str | None:
    """The step a flag on a Tree-of-Thoughts node labels (``Trace.summary["tree"]``): the node's first value
    step, or the step that proposed it when it has none; None for a node with neither (the root)."""
    return dict(flaggable_nodes(tree)).get(str(node_id))


def flaggable_nodes(tree: Mapping[str, Any] | None) -> list[tuple[str, str]]:
    """(node id, step id) of every node of a tree that can be flagged (:func:`node_step`), in the tree's order."""
    out = []
    nodes = tree.get("nodes") if isinstance(tree, Mapping) else None
    for node in nodes or []:
        if isinstance(node, Mapping) and node.get("id") is not None:
            values = node.get("value_steps") or []
            step = values[0] if values else node.get("propose_step")
            if step:
                out.append((str(node["id"]), str(step)))
    return out


def check_step(state: ArenaState, position: int, step_id: str, annotator: str) -> tuple[int, str]:
    """The run id and annotator of a step label on screen; one clear error when it cannot be given yet."""
    annotator = annotator_name(annotator)
    if state.hidden:
        raise InputError("steps can be flagged after your vote: the traces of a blind comparison open then")
    if not 0 <= position < len(state.run_ids) or state.run_ids[position] is None:
        raise InputError("that column has no stored run yet")
    if step_id not in {s for s, _ in state.step_ids[position]}:
        raise InputError(f"column {LETTERS[position]} has no step {step_id!r}")
    return int(state.run_ids[position]), annotator  # type: ignore[arg-type]


# -- the labelling workflow: the next prompt, skips, progress, guidelines ------------------------------------------
def next_prompt(
    store: Store, prompt_set: str | None, annotator: str, *, exclude: Sequence[int] = ()
) -> dict[str, Any] | None:
    """The next prompt (a prompt row) that ``annotator`` has neither labelled nor skipped, of ``prompt_set``
    (every prompt when it is empty), never one in ``exclude`` (the prompt on screen); None when none is left."""
    annotator = annotator_name(annotator)
    name = (prompt_set or "").strip() or None
    if name is not None and not store.list_prompts(name, limit=1):
        raise InputError(f"prompt set {name!r} is empty; import a text or JSONL file first")
    return _store(lambda: store.next_prompt(name, annotator, exclude=[int(i) for i in exclude]))


def skip_prompt(store: Store, prompt_id: int | None, annotator: str) -> None:
    """Record that ``annotator`` skipped this prompt, so it is not offered to them again."""
    annotator = annotator_name(annotator)
    if prompt_id is None:
        raise InputError("nothing to skip: load a prompt with Next prompt first")
    _store(lambda: store.skip_prompt(int(prompt_id), annotator))


def progress(store: Store, prompt_set: str | None, annotator: str | None) -> dict[str, int] | None:
    """``{"total", "labelled", "skipped", "remaining"}`` of a prompt set for one annotator; None without both."""
    name, who = (prompt_set or "").strip(), (annotator or "").strip()
    if not name or not who:
        return None
    return _store(lambda: store.annotator_progress(name, who))


def guidelines(store: Store, prompt_set: str | None) -> str:
    """The prompt set's annotation guidelines (Markdown; '' when it has none)."""
    name = (prompt_set or "").strip()
    return _store(lambda: store.get_prompt_set(name))["guidelines"] if name else ""


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
