"""Eval items and datasets: one loader for the shipped sets, JSONL files, HF dataset dirs and store prompt sets.

An item is a question plus whatever its metrics need: accepted ``answers`` (exact match, contains-answer,
numeric), a ``gold`` list of entities with aliases (CoVe's list questions), ``choices`` with the correct
``answer_index`` (multiple choice). ``condition`` names a variation of a base question (an injected opinion,
a distractor sentence); items made from one base question share ``base``, so the bootstrap resamples them
together and a gap between conditions is a paired difference.

Field names accepted in a JSONL line or an HF dataset row (the first present wins):

- question: ``question``, ``prompt``, ``input``, ``query``, ``instruction``
- answers: ``answers`` (a list, a string, or ``{"text": [...]}``), ``answer`` (a string, a number, a list,
  a letter or an index when there are choices, or TriviaQA's ``{"value", "aliases"}``), ``target``
- gold list: ``gold`` or ``gold_list``: a list whose entries are a name or a list of aliases
- choices: ``choices`` or ``options`` (a list, or ARC's ``{"text": [...], "label": [...]}``); the key is
  ``answer`` / ``answerKey`` / ``label``
- ``id``, ``condition``, ``base``, ``task`` (list, qa, math, mc, open, game24); every other field goes to ``meta``
  (a ``game24`` item's ``numbers``, which its verifier metric reads).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.errors import InputError

if TYPE_CHECKING:
    from storage import Store

TASKS = ("list", "qa", "math", "mc", "open", "game24")
#: conditions that are the reference point of a gap (no injected opinion, no distractor)
BASELINE_CONDITIONS = ("none", "clean")
STORE_PREFIX = "store:"

_QUESTION_KEYS = ("question", "prompt", "input", "query", "instruction")
_KNOWN_KEYS = {
    *_QUESTION_KEYS,
    *("id", "answers", "answer", "target", "gold", "gold_list", "choices", "options", "answerKey"),
    *("label", "condition", "base", "task"),
}
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")


@dataclass(frozen=True)
class EvalItem:
    id: str
    question: str
    answers: tuple[str, ...] = ()
    gold: tuple[tuple[str, ...], ...] = ()  # list questions: each gold entity with its aliases
    choices: tuple[str, ...] = ()
    answer_index: int | None = None
    condition: str | None = None
    base: str | None = None
    task: str = "open"
    meta: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def cluster(self) -> str:
        """The bootstrap unit: the base question, or the item itself."""
        return self.base or self.id

    @property
    def reference(self) -> str | None:
        """A reference answer for judges that compare against one."""
        if self.choices and self.answer_index is not None:
            return self.choices[self.answer_index]
        if self.answers:
            return self.answers[0]
        if self.gold:
            return ", ".join(g[0] for g in self.gold)
        return None


@dataclass(frozen=True)
class EvalDataset:
    name: str
    items: tuple[EvalItem, ...]
    source: str
    description: str = ""

    @property
    def prompt_set(self) -> str:
        """The store prompt set that holds this dataset's questions."""
        return f"eval:{self.name}"

    @property
    def tasks(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.task for i in self.items))

    @property
    def task(self) -> str:
        tasks = self.tasks
        return tasks[0] if len(tasks) == 1 else "mixed"

    @property
    def conditions(self) -> tuple[str, ...]:
        """The conditions present, baseline first, then in order of appearance."""
        found = list(dict.fromkeys(i.condition for i in self.items if i.condition))
        return tuple(sorted(found, key=lambda c: c not in BASELINE_CONDITIONS))

    def limited(self, limit: int | None) -> EvalDataset:
        """The first ``limit`` base questions (every condition of each); an item without a base is its own."""
        if limit is None:
            return self
        if limit < 1:
            raise InputError(f"limit must be >= 1, not {limit}")
        keep = list(dict.fromkeys(i.cluster for i in self.items))[:limit]
        chosen = set(keep)
        items = tuple(i for i in self.items if i.cluster in chosen)
        return EvalDataset(self.name, items, self.source, self.description)


# -- reading one row ----------------------------------------------------------------------------------------------
def _texts(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, Mapping):
        for key in ("text", "aliases", "value"):
            if key in value:
                found = _texts(value[key])
                if key == "aliases" and "value" in value:  # TriviaQA: the canonical value first
                    found = [str(value["value"]), *found]
                return list(dict.fromkeys(found))
        return []
    if isinstance(value, str | int | float) and not isinstance(value, bool):
        return [str(value).strip()] if str(value).strip() else []
    if isinstance(value, Sequence):
        return [t for v in value for t in _texts(v)]
    raise InputError(f"an answer must be text, a number or a list of them, not {type(value).__name__}")


def _gold(value: Any, where: str) -> tuple[tuple[str, ...], ...]:
    if not isinstance(value, list) or not value:
        raise InputError(f"{where}: 'gold' must be a non-empty list of names (or lists of aliases)")
    out = []
    for entry in value:
        aliases = tuple(_texts(entry))
        if not aliases:
            raise InputError(f"{where}: a gold entry is empty")
        out.append(aliases)
    return tuple(out)


def _choices(row: Mapping[str, Any], where: str) -> tuple[tuple[str, ...], int | None]:
    raw = row.get("choices", row.get("options"))
    if raw is None:
        return (), None
    labels: list[str] = []
    if isinstance(raw, Mapping):
        labels = [str(x) for x in raw.get("label", [])]
        raw = raw.get("text", [])
    choices = tuple(str(c) for c in raw)
    if len(choices) < 2:
        raise InputError(f"{where}: a multiple-choice item needs at least two choices")
    key = next((row[k] for k in ("answer", "answerKey", "label") if row.get(k) is not None), None)
    return choices, _choice_index(key, choices, labels, where)


def _choice_index(key: Any, choices: Sequence[str], labels: Sequence[str], where: str) -> int:
    letters = labels or [chr(65 + i) for i in range(len(choices))]
    if isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(choices):
        return key
    text = str(key).strip() if key is not None else ""
    if text in letters:
        return letters.index(text)
    if text.upper() in letters:
        return letters.index(text.upper())
    if text in choices:
        return choices.index(text)
    if text.isdigit() and 0 <= int(text) < len(choices):
        return int(text)
    raise InputError(f"{where}: the answer {key!r} is not one of the choices or their letters")


def _infer_task(item: dict[str, Any]) -> str:
    if item["gold"]:
        return "list"
    if item["choices"]:
        return "mc"
    if item["answers"]:
        return "math" if all(_NUMBER.match(a.replace(",", "")) for a in item["answers"]) else "qa"
    return "open"


def item_from_row(row: Mapping[str, Any], where: str) -> EvalItem:
    """One :class:`EvalItem` from a JSON object or dataset row; ``where`` names it in error messages."""
    if not isinstance(row, Mapping):
        raise InputError(f"{where}: expected a JSON object, not {type(row).__name__}")
    question = next((row[k] for k in _QUESTION_KEYS if isinstance(row.get(k), str) and row[k].strip()), None)
    if question is None:
        raise InputError(f"{where}: no question (a non-empty 'question' or 'prompt' field)")
    choices, index = _choices(row, where)
    gold_raw = row.get("gold", row.get("gold_list"))
    answers = [] if choices else _texts(row.get("answers", row.get("answer", row.get("target"))))
    fields = {
        "answers": tuple(answers),
        "gold": _gold(gold_raw, where) if gold_raw is not None else (),
        "choices": choices,
    }
    task = row.get("task") or _infer_task(fields)
    if task not in TASKS:
        raise InputError(f"{where}: task is one of {', '.join(TASKS)}, not {task!r}")
    item_id = str(row["id"]) if row.get("id") not in (None, "") else _text_id(question)
    meta = {k: v for k, v in row.items() if k not in _KNOWN_KEYS}
    if task == "game24":
        _check_numbers(meta.get("numbers"), where)
    return EvalItem(
        item_id, question, answer_index=index, task=task, meta=meta,
        condition=_opt(row.get("condition")), base=_opt(row.get("base")), **fields,
    )  # fmt: skip


def _check_numbers(value: Any, where: str) -> None:
    """A game24 item's ``numbers``: the whole numbers its answer must use, each once."""
    ok = isinstance(value, list) and 1 <= len(value) <= 8
    if not ok or not all(isinstance(n, int) and not isinstance(n, bool) and n >= 0 for n in value):
        raise InputError(f"{where}: a game24 item needs 'numbers', a list of 1 to 8 whole numbers >= 0")


def _opt(value: Any) -> str | None:
    return None if value in (None, "") else str(value)


def _text_id(question: str) -> str:
    return "q-" + hashlib.sha1(question.encode()).hexdigest()[:10]


def check_unique(items: Iterable[EvalItem], source: str) -> tuple[EvalItem, ...]:
    out, seen = [], set()
    for item in items:
        if item.id in seen:
            raise InputError(f"{source}: item id {item.id!r} appears twice; ids must be unique")
        seen.add(item.id)
        out.append(item)
    if not out:
        raise InputError(f"{source} has no items")
    return tuple(out)


# -- sources ------------------------------------------------------------------------------------------------------
def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The objects of a JSONL file; blank lines are skipped, a bad line is an error naming its number."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise InputError(f"{path} is not valid UTF-8") from None
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from None
    rows = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise InputError(f"{path.name} line {n}: not valid JSON ({e.msg})") from None
    return rows


def load_jsonl(path: Path, name: str | None = None) -> EvalDataset:
    rows = read_jsonl(path)
    items = [item_from_row(r, f"{path.name} line {n}") for n, r in enumerate(rows, 1)]
    return EvalDataset(name or path.stem, check_unique(items, str(path)), str(path))


def load_hf_dir(path: Path, name: str | None = None, split: str | None = None) -> EvalDataset:
    """A ``datasets.save_to_disk`` dir: a Dataset, or a DatasetDict (``split``, else 'test', else its only split)."""
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError) as e:
        raise InputError(f"{path} is not a dataset saved with save_to_disk ({e})") from None
    if isinstance(ds, datasets.DatasetDict):
        splits = list(ds)
        pick = split or ("test" if "test" in ds else splits[0] if len(splits) == 1 else None)
        if pick not in ds:
            raise InputError(f"{path} has splits {', '.join(splits)}; name one as {path}:SPLIT")
        ds = ds[pick]
    items = [item_from_row(r, f"{path.name} row {n}") for n, r in enumerate(ds, 1)]
    return EvalDataset(name or path.name, check_unique(items, str(path)), str(path))


def load_prompt_set(store: Store, prompt_set: str) -> EvalDataset:
    """A store prompt set: questions without references, so only a judge can score them."""
    prompts = store.list_prompts(prompt_set, limit=None)
    if not prompts:
        known = ", ".join(store.prompt_sets()) or "(none)"
        raise InputError(f"the store has no prompt set {prompt_set!r}; prompt sets: {known}")
    items = [EvalItem(f"p{p['id']}", p["text"], meta={"prompt_id": p["id"]}) for p in prompts]
    return EvalDataset(prompt_set, check_unique(items, f"prompt set {prompt_set}"), STORE_PREFIX + prompt_set)


def load_dataset(
    spec: str | Path, *, store: Store | None = None, limit: int | None = None, name: str | None = None
) -> EvalDataset:
    """A dataset by shipped name (``cove_lists``), JSONL path, HF dataset dir (``DIR`` or ``DIR:SPLIT``) or
    store prompt set (``store:NAME``); the first ``limit`` base questions of it."""
    from studio.eval.datasets import SHIPPED, load_shipped

    text = str(spec).strip()
    if not text:
        raise InputError("name a dataset: a shipped set, a JSONL file, a dataset dir or store:PROMPT_SET")
    if text in SHIPPED:
        ds = load_shipped(text)
    elif text.startswith(STORE_PREFIX):
        if store is None:
            raise InputError(f"{text} is a store prompt set, but no store is open")
        ds = load_prompt_set(store, text[len(STORE_PREFIX) :])
    else:
        ds = _load_path(text, name)
    return ds.limited(limit)


def _load_path(text: str, name: str | None) -> EvalDataset:
    from studio.eval.datasets import SHIPPED

    path, split = Path(text).expanduser(), None
    if not path.exists() and ":" in text:
        head, _, split = text.rpartition(":")
        path = Path(head).expanduser()
    if path.is_dir():
        return load_hf_dir(path, name, split)
    if path.is_file():
        return load_jsonl(path, name)
    raise InputError(
        f"no dataset {text!r}: not a shipped set ({', '.join(SHIPPED)}), a file, a dataset dir, or store:NAME"
    )
