"""Export preference items (Parquet, JSONL, ``datasets``, the Hub) and import TRL preference sets.

``datasets`` is imported lazily, inside the functions that need it, so that opening a store stays light.
"""

from __future__ import annotations

import json
import os
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from storage.errors import StoreError
from storage.pairs import Filters

if TYPE_CHECKING:
    from storage.store import Store

FORMATS = ("parquet", "jsonl", "hf", "hub")
MAX_REPORTED = 10  # row errors listed in one import error
ROLES = ("system", "user", "assistant", "tool")
_REPO_ID = re.compile(r"^[\w.-]+(/[\w.-]+)?$")


@dataclass(frozen=True)
class ExportResult:
    kind: str
    fmt: str
    path: str  # a file or dir, or the repo id for the Hub
    rows: int


@dataclass(frozen=True)
class ImportResult:
    path: str
    rows: int
    prompt_set: str
    annotator: str
    imported_by: str | None = None


# -- export ---------------------------------------------------------------------------------------------------


def to_dataset(
    store: Store,
    kind: str,
    filters: Filters | None = None,
    *,
    conversational: bool = False,
    good_rating: float | None = None,
) -> Any:
    """A ``datasets.Dataset`` straight from the query's Arrow table."""
    from datasets import Dataset

    sql, params = store.items_sql(kind, filters, conversational=conversational, good_rating=good_rating)
    return Dataset(store.arrow(sql, params))


def export(
    store: Store,
    kind: str,
    fmt: str,
    path: str | Path,
    filters: Filters | None,
    *,
    conversational: bool,
    good_rating: float | None,
    allow_outside: bool,
    token: str | None,
) -> ExportResult:
    if fmt not in FORMATS:
        raise StoreError(f"export format is one of {', '.join(FORMATS)}, not {fmt!r}")
    options = {"conversational": conversational, "good_rating": good_rating}
    if fmt == "hub":
        return push_to_hub(to_dataset(store, kind, filters, **options), str(path), kind, token)
    target = export_target(store.data_dir, Path(path), allow_outside)
    target.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "hf":
        ds = to_dataset(store, kind, filters, **options)
        ds.save_to_disk(str(target))
        return ExportResult(kind, fmt, str(target), len(ds))
    sql, params = store.items_sql(kind, filters, **options)
    copy = f"COPY ({sql}) TO $_out (FORMAT {'parquet' if fmt == 'parquet' else 'json'})"
    try:
        rows = store._cur().execute(copy, {**params, "_out": str(target)}).fetchall()
    except duckdb.IOException as e:
        raise StoreError(f"cannot write {target}: {str(e).splitlines()[0]}") from None
    return ExportResult(kind, fmt, str(target), int(rows[0][0]) if rows else 0)


def export_target(data_dir: Path, path: Path, allow_outside: bool) -> Path:
    """A relative path is under the data dir; an absolute one must be too, unless explicitly allowed."""
    target = (path if path.is_absolute() else data_dir / path).resolve()
    root = data_dir.resolve()
    if not allow_outside and not target.is_relative_to(root):
        raise StoreError(
            f"export path {target} is outside the data dir {root}; "
            "give the path explicitly on the command line to write there"
        )
    if target.is_dir() and target == root:
        raise StoreError(f"export path {target} is the data dir itself; name a file or folder inside it")
    return target


def push_to_hub(ds: Any, repo_id: str, kind: str, token: str | None) -> ExportResult:
    """``Dataset.push_to_hub`` (private by default: preference data may be sensitive)."""
    token = token or os.environ.get("HF_TOKEN")
    if not token:
        raise StoreError("pushing to the Hugging Face Hub needs a token: set HF_TOKEN to a write token")
    if not _REPO_ID.match(repo_id):
        raise StoreError(f"{repo_id!r} is not a Hub dataset id; use 'user/name'")
    try:
        ds.push_to_hub(repo_id, token=token, private=True)
    except Exception as e:  # network, auth, permissions: all are the user's to fix
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise StoreError(
            f"push to the Hugging Face Hub ({repo_id}) failed: {type(e).__name__}: {first}"
        ) from None
    return ExportResult(kind, "hub", repo_id, len(ds))


# -- import ---------------------------------------------------------------------------------------------------


def import_preferences(
    store: Store,
    path: Path,
    *,
    prompt_set: str | None = None,
    annotator: str | None = None,
    imported_by: str | None = None,
    seed: int = 0,
) -> ImportResult:
    """Read, validate every row (row-numbered errors), then insert everything in one transaction.

    The votes' annotator is ``annotator``, else the source ``import:<file name>``; a column of the file never
    names it. With ``imported_by`` (the importing user), ``annotator`` may only be that user or the source
    (nobody imports labels under another person's name), and the user is recorded in each imported run's
    ``params`` as ``imported_by``.

    The chosen answer's screen position is shuffled, reproducibly from ``seed`` (half the pairs, rounded at
    random, show it second), and the vote says 'A' or 'B' to match: a judge that always picks the first answer
    then agrees with about half the votes, not all of them. ``seed`` is recorded in the runs' ``params``. A
    ``reference`` column (a known correct answer) fills the prompts' ``reference`` where it is still empty."""
    source = f"import:{path.name}"
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise StoreError(f"seed must be a whole number, not {seed!r}")
    if imported_by is not None:
        if not isinstance(imported_by, str) or not imported_by.strip():
            raise StoreError("imported_by must name the importing user")
        if annotator not in (None, imported_by, source):
            raise StoreError(
                f"imported labels carry your own name ({imported_by}) or the source {source}, "
                f"not {annotator!r}"
            )
    rows = _read(store, path)
    items, errors = _validate(rows)
    if errors:
        more = f"; and {len(errors) - MAX_REPORTED} more" if len(errors) > MAX_REPORTED else ""
        raise StoreError(
            f"{path.name}: {len(errors)} invalid row(s): {'; '.join(errors[:MAX_REPORTED])}{more}"
        )
    if not items:
        raise StoreError(f"{path.name}: no rows to import")
    prompt_set = prompt_set or f"import:{path.stem}"
    annotator = annotator or source
    keys = ("text", "messages", "chosen", "rejected", "reference")
    columns: dict[str, list] = {k: [it[i] for it in items] for i, k in enumerate(keys)}
    columns["flip"] = chosen_positions(len(items), seed)
    run_params = {"seed": seed} | ({"imported_by": imported_by} if imported_by else {})
    params = json.dumps(run_params, ensure_ascii=False)
    with store._write() as cur:
        _insert(
            store, cur, columns, prompt_set=prompt_set, annotator=annotator, source=path.name, params=params
        )
    return ImportResult(str(path), len(items), prompt_set, annotator, imported_by)


def _read(store: Store, path: Path) -> list[tuple[int, Any]]:
    """(row number, row) pairs; JSONL rows are numbered by line."""
    if not path.exists():
        raise StoreError(f"{path}: no such file or directory")
    if path.is_dir():
        return _read_hf(path)
    if path.suffix == ".parquet":
        try:
            cur = store._cur()
            cur.execute("SELECT * FROM read_parquet($p)", {"p": str(path)})
            cols = [d[0] for d in cur.description]
            return [(i, dict(zip(cols, r, strict=True))) for i, r in enumerate(cur.fetchall(), start=1)]
        except duckdb.Error as e:
            raise StoreError(f"{path.name}: cannot read as Parquet: {str(e).splitlines()[0]}") from None
    return _read_json(path)


def _read_hf(path: Path) -> list[tuple[int, Any]]:
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(path))
    except Exception as e:  # not a save_to_disk dir, or a damaged one
        raise StoreError(f"{path}: not a Hugging Face dataset dir ({type(e).__name__}: {e})") from None
    if isinstance(ds, DatasetDict):
        if "train" not in ds and len(ds) != 1:
            raise StoreError(f"{path}: dataset has splits {', '.join(ds)}; keep one, or name it 'train'")
        ds = ds["train"] if "train" in ds else next(iter(ds.values()))
    return list(enumerate(ds.to_list(), start=1))


def _read_json(path: Path) -> list[tuple[int, Any]]:
    data = path.read_bytes().removeprefix(b"\xef\xbb\xbf")
    if data.lstrip()[:1] == b"[":  # one JSON array rather than JSON lines
        text = _decode(data, path, None)
        try:
            return list(enumerate(json.loads(text), start=1))
        except json.JSONDecodeError as e:
            raise StoreError(f"{path.name}: not valid JSON ({e.msg} at line {e.lineno})") from None
    rows: list[tuple[int, Any]] = []
    for n, line in enumerate(data.split(b"\n"), start=1):
        if line.strip():
            text = _decode(line, path, n)
            try:
                rows.append((n, json.loads(text)))
            except json.JSONDecodeError as e:
                rows.append((n, _BadJson(f"not valid JSON ({e.msg} at column {e.colno})")))
    return rows


def _decode(data: bytes, path: Path, row: int | None) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        where = f"row {row}, byte {e.start + 1}" if row else f"byte {e.start + 1}"
        raise StoreError(f"{path.name}: invalid UTF-8 at {where}; save the file as UTF-8") from None


def chosen_positions(n: int, seed: int) -> list[int]:
    """The chosen answer's position (0 or 1) for each of ``n`` pairs: half of each, in a seeded random order."""
    positions = [i % 2 for i in range(n)]
    random.Random(seed).shuffle(positions)
    return positions


@dataclass(frozen=True)
class _BadJson:
    message: str


# prompt text, prompt messages JSON (multi-turn only), chosen, rejected, reference answer (or None)
Item = tuple[str, str | None, str, str, str | None]


def _validate(rows: list[tuple[int, Any]]) -> tuple[list[Item], list[str]]:
    items: list[Item] = []
    errors: list[str] = []
    for n, row in rows:
        try:
            items.append(_item(row))
        except ValueError as e:
            errors.append(f"row {n}: {e}")
    return items, errors


def _item(row: Any) -> Item:
    if isinstance(row, _BadJson):
        raise ValueError(row.message)
    if not isinstance(row, dict):
        raise ValueError(f"expected an object with prompt, chosen and rejected, not {type(row).__name__}")
    for key in ("prompt", "chosen", "rejected"):
        if row.get(key) is None:
            raise ValueError(f"{key!r} is missing")
    prompt, chosen, rejected = row["prompt"], row["chosen"], row["rejected"]
    reference = _reference(row.get("reference"))
    if isinstance(prompt, str):
        if not prompt.strip():
            raise ValueError("'prompt' is empty")
        for key, value in (("chosen", chosen), ("rejected", rejected)):
            if not isinstance(value, str):
                raise ValueError(f"{key!r} must be a string, as 'prompt' is (not {type(value).__name__})")
        return prompt, None, chosen, rejected, reference
    if isinstance(prompt, list):
        messages = _messages(prompt, "prompt")
        if messages[-1]["role"] != "user":
            raise ValueError("'prompt' must end with a user message")
        text, kept = _prompt_text(messages)
        return text, kept, _assistant(chosen, "chosen"), _assistant(rejected, "rejected"), reference
    raise ValueError(f"'prompt' must be a string or a list of messages, not {type(prompt).__name__}")


def _reference(value: Any) -> str | None:
    """A reference answer: a string (a number is written as text); empty or missing is None."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise ValueError(f"'reference' must be a string, not {type(value).__name__}")
    return value.strip() or None


def _messages(value: Any, key: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise ValueError(f"{key!r} must be a non-empty list of messages")
    out = []
    for i, m in enumerate(value, start=1):
        if not isinstance(m, dict) or not isinstance(m.get("content"), str) or m.get("role") not in ROLES:
            raise ValueError(
                f"{key!r} message {i} needs a 'role' ({', '.join(ROLES)}) and a string 'content'"
            )
        out.append({"role": m["role"], "content": m["content"]})
    return out


def _assistant(value: Any, key: str) -> str:
    messages = _messages(value, key)
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        raise ValueError(f"{key!r} must be exactly one assistant message (found {len(messages)} message(s))")
    return messages[0]["content"]


def _prompt_text(messages: list[dict[str, str]]) -> tuple[str, str | None]:
    """A single user turn is plain text; a longer prompt keeps its messages, and its text is a rendering."""
    if len(messages) == 1:
        return messages[0]["content"], None
    text = "\n\n".join(f"{m['role']}: {m['content']}" for m in messages)
    return text, json.dumps(messages, ensure_ascii=False)


def _insert(
    store: Store, cur: duckdb.DuckDBPyConnection, columns: dict[str, list], *, prompt_set: str,
    annotator: str, source: str, params: str | None = None,
) -> None:  # fmt: skip
    """Set-based insert: prompts (get or create), two runs, a comparison and a vote per row; ``flip`` 1 puts
    the chosen answer second and makes the vote 'B'."""
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _import AS
        SELECT generate_subscripts($text, 1) AS i, unnest($text) AS text, unnest($messages::VARCHAR[]) AS messages,
               unnest($chosen) AS chosen, unnest($rejected) AS rejected,
               unnest($reference::VARCHAR[]) AS reference, unnest($flip::INTEGER[]) AS flip""",
        columns,
    ).fetchall()
    _insert_rows(store, cur, len(columns["text"]), prompt_set, annotator, source, params)
    cur.execute("DROP TABLE _import; DROP TABLE _import_prompt").fetchall()  # on error, rollback drops them


def _insert_rows(
    store: Store,
    cur: duckdb.DuckDBPyConnection,
    n: int,
    prompt_set: str,
    annotator: str,
    source: str,
    params: str | None,
) -> None:
    p = {"set": prompt_set}
    cur.execute(
        """INSERT INTO prompts (text, prompt_set, messages)
        SELECT text, $set, messages::JSON
        FROM (SELECT text, messages, min(i) AS i FROM _import GROUP BY text, messages) i
        WHERE NOT EXISTS (SELECT 1 FROM prompts p WHERE p.prompt_set = $set AND p.text = i.text
                          AND p.messages IS NOT DISTINCT FROM i.messages::JSON)
        ORDER BY i.i""",  # new prompts get ids in file order, as add_prompts gives them ("next prompt" order)
        p,
    ).fetchall()
    cur.execute(
        """CREATE OR REPLACE TEMP TABLE _import_prompt AS
        SELECT i.i, min(p.id) AS prompt_id FROM _import i JOIN prompts p
          ON p.prompt_set = $set AND p.text = i.text AND p.messages IS NOT DISTINCT FROM i.messages::JSON
        GROUP BY i.i""",
        p,
    ).fetchall()
    cur.execute(  # a reference fills a prompt's empty one (first-come when a file gives two)
        """UPDATE prompts SET reference = r.reference
        FROM (SELECT ip.prompt_id, min(i.reference) AS reference FROM _import i JOIN _import_prompt ip USING (i)
              WHERE i.reference IS NOT NULL GROUP BY ip.prompt_id) r
        WHERE prompts.id = r.prompt_id AND prompts.reference IS NULL"""
    ).fetchall()
    runs, cmps, votes = (
        store._reserve(cur, t, k) for t, k in (("runs", 2 * n), ("comparisons", n), ("votes", n))
    )
    ids = {"runs": runs, "cmps": cmps, "votes": votes, "src": source, "who": annotator, "params": params}
    for sql in _IMPORT_INSERTS:
        cur.execute(sql, {k: v for k, v in ids.items() if f"${k}" in sql}).fetchall()


# Row i's runs are runs + 2(i-1) at position 0 and the next id at position 1 (ids follow the shown order, so figures
# that label a pair by its smaller run id see the shuffle too); the chosen answer is at position ``flip`` (0 first,
# 1 second), the rejected one at the other, and the vote names the chosen answer's position.
_IMPORT_INSERTS = (
    """INSERT INTO runs (id, prompt_id, model, strategy, variant, params, answer)
    SELECT $runs + 2 * (i.i - 1) + k, ip.prompt_id, 'imported', 'imported', $src, $params::JSON,
           CASE WHEN k = i.flip THEN i.chosen ELSE i.rejected END
    FROM _import i JOIN _import_prompt ip USING (i) CROSS JOIN range(2) r(k)""",
    """INSERT INTO comparisons (id, prompt_id, blind)
    SELECT $cmps + i - 1, prompt_id, FALSE FROM _import_prompt""",
    """INSERT INTO comparison_runs
    SELECT $cmps + i - 1, k, $runs + 2 * (i - 1) + k
    FROM _import_prompt CROSS JOIN range(2) r(k)""",
    """INSERT INTO votes (id, comparison_id, kind, choice, ranks, annotator)
    SELECT $votes + i - 1, $cmps + i - 1, 'pairwise', CASE flip WHEN 0 THEN 'A' ELSE 'B' END, NULL, $who
    FROM _import_prompt JOIN _import USING (i)""",
)
