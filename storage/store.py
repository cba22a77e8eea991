"""The preference store: one DuckDB file, one ``Store`` class, a narrow set of verbs. Nothing else writes SQL.

- **Ids** are BIGINTs from one sequence per table; every ``add_*`` verb returns the new id, bulk verbs return the
  ids in input order. Readers return plain dicts (JSON columns decoded), typed by the TypedDicts of
  ``storage.rows`` (``get_run -> RunWithTrace | None``, ``list_votes -> list[VoteRow]``).
- **Threads:** each thread gets its own cursor (``con.cursor()``); writes also take one lock, so that many
  threads of a server process can write at once without transaction conflicts. One ``Store`` per file per
  process: DuckDB lets only one process open a file for writing, and a second gets ``StoreLocked`` naming the
  holder's PID.
- **Text** is always bound as a parameter, so any string round-trips exactly (quotes, NUL, emoji, RTL, megabytes).
- **Times** are naive UTC datetimes; an ``at=`` argument may be naive UTC or timezone-aware.
- **Readers** (``list_*``) return the newest rows first (prompts: oldest first); ``limit=None`` returns all.
- **Labels:** one label per (comparison, annotator). Voting again replaces the label in place (same vote id) and
  writes the replaced value to ``label_audit``; so do deletes and step-label edits, recording the actor. A
  two-run comparison is always stored as a pairwise vote: a 2-rank ranking given for it is stored as its choice.
- **Free text** (comments, notes) refuses NUL bytes and is capped at ``MAX_COMMENT_CHARS``.
- **Failed runs** keep their ``error``; they cannot be compared or judged, and no pair, KTO row, export or win
  count includes them.
"""

from __future__ import annotations

import json
import re
import threading
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TypeVar, cast

import duckdb

from storage import exchange
from storage.errors import StoreError, StoreLocked
from storage.migrations import MIGRATIONS, Migration, migrate, vote_json
from storage.pairs import (
    VOTE_PAIRS,
    VOTE_RANKS,
    Filters,
    has_run_filters,
    items_where,
    kto_sql,
    matching_items,
    pair_details_sql,
    pairs_sql,
    win_counts_sql,
)
from storage.rows import (
    AnnotatorProgress,
    ComparisonRow,
    KtoRow,
    LabelAuditRow,
    ModelRow,
    PreferencePairRow,
    PromptRow,
    PromptSetRow,
    PromptStatusRow,
    RmPairRow,
    RunRow,
    RunWithTrace,
    StepLabelRow,
    StoreStats,
    TrainingRunRow,
    VerdictRow,
    VerdictWithTrace,
    VotePairRow,
    VoteRow,
    WinCountRow,
)

CHOICES = ("A", "B", "tie", "both_bad")
WINNERS = ("A", "B", "tie", "inconsistent")
TRAINING_STATUSES = ("pending", "running", "done", "failed", "cancelled")
KINDS = ("dpo", "kto", "rm")
# The labels the arena offers for one step of a trace ("Flag step"); the store refuses any other.
STEP_LABELS = ("wrong", "good")
# (item, run_id) rows for the run filters (storage.pairs.items_where): a run is its own item, a vote's item is
# its comparison, a verdict's is itself
RUN_ITEMS = "SELECT id AS item, id AS run_id FROM runs"
COMPARISON_ITEMS = "SELECT comparison_id AS item, run_id FROM comparison_runs"
VERDICT_ITEMS = "SELECT id AS item, unnest(run_ids) AS run_id FROM verdicts"
MAX_COMMENT_CHARS = 4000  # comments on votes, notes on step labels
MAX_GUIDELINES_CHARS = 100_000  # a prompt set's Markdown guidelines
OWN_LABELS_ONLY = "you can only change your own labels"

_LOCK_RE = re.compile(r"Conflicting lock is held in (?P<holder>.*?) \(PID (?P<pid>\d+)\)")
_JSON_COLUMNS = {"params", "trace", "judge_config", "scores", "config", "messages", "old", "new"}


R = TypeVar("R")


def _first(rows: list[R]) -> R | None:
    return rows[0] if rows else None


def _now() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _utc(at: datetime | None) -> datetime:
    if at is None:
        return _now()
    return at.astimezone(timezone.utc).replace(tzinfo=None) if at.tzinfo else at


def _json(value: Any, what: str) -> str | None:
    if value is None:
        return None
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as e:
        raise StoreError(f"{what} is not JSON-serialisable: {e}") from None


def _text(value: Any, what: str, *, empty: bool = True) -> str:
    if not isinstance(value, str):
        raise StoreError(f"{what} must be a string, not {type(value).__name__}")
    if not empty and not value.strip():
        raise StoreError(f"{what} must not be empty")
    return value


def _free_text(value: Any, what: str, limit: int = MAX_COMMENT_CHARS) -> str | None:
    """Optional free text: no NUL bytes, at most ``limit`` characters."""
    if value is None:
        return None
    _text(value, what)
    if "\x00" in value:
        raise StoreError(f"{what} must not contain NUL bytes")
    if len(value) > limit:
        raise StoreError(f"{what} is {len(value)} characters long; the limit is {limit}")
    return value


def _step_label(label: Any) -> str:
    if label not in STEP_LABELS:
        raise StoreError(f"a step label is one of {', '.join(STEP_LABELS)}, not {label!r}")
    return label


def _check_owner(annotator: str, actor: str | None, admin: bool) -> None:
    if not admin and actor != annotator:
        raise StoreError(OWN_LABELS_ONLY)


def _holder_cmdline(pid: int) -> str | None:
    with suppress(OSError):
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
        return raw.replace(b"\0", b" ").decode(errors="replace").strip() or None
    return None


def _connect(path: Path) -> duckdb.DuckDBPyConnection:
    """Open the file, turning DuckDB's lock error into a message that names the holder."""
    try:
        return duckdb.connect(str(path))
    except duckdb.IOException as e:
        text = str(e)
        m = _LOCK_RE.search(text)
        if not m:
            raise StoreError(f"cannot open the store {path}: {text.splitlines()[0]}") from None
        pid = int(m["pid"])
        holder = _holder_cmdline(pid) or m["holder"]
        raise StoreLocked(
            f"the store {path} is in use by another process (PID {pid}: {holder}); "
            "stop that process or use another data dir",
            pid=pid,
            holder=holder,
        ) from None
    except duckdb.Error as e:
        raise StoreError(f"cannot open the store {path}: {str(e).splitlines()[0]}") from None


class Store:
    """Prompts, runs, comparisons, votes, verdicts, step labels, models and training runs, in one DuckDB file."""

    def __init__(
        self,
        path: str | Path,
        *,
        data_dir: str | Path | None = None,
        migrations: Sequence[Migration] = MIGRATIONS,
    ) -> None:
        self.path = Path(path)
        self.data_dir = Path(data_dir) if data_dir is not None else self.path.parent
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._con = _connect(self.path)
        self._lock = threading.RLock()
        self._local = threading.local()
        self._cursors: list[duckdb.DuckDBPyConnection] = []
        # What the migrations applied at this open changed in existing data, one line each (see migrations).
        self.migration_report: list[str] = []
        with self._lock:
            self._version = migrate(self._con, migrations, self.migration_report)

    # -- connection -------------------------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        """The number of migrations applied."""
        return self._version

    def close(self) -> None:
        with self._lock:
            for cur in self._cursors:
                with suppress(duckdb.Error):
                    cur.close()
            self._cursors.clear()
            self._con.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _cur(self) -> duckdb.DuckDBPyConnection:
        """This thread's cursor: DuckDB connections are not safe to share between threads."""
        cur = getattr(self._local, "cur", None)
        if cur is None:
            with self._lock:
                cur = self._con.cursor()
                self._cursors.append(cur)
            self._local.cur = cur
        return cur

    @contextmanager
    def _write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One transaction under the write lock."""
        with self._lock:
            cur = self._cur()
            cur.begin()
            try:
                yield cur
                cur.commit()
            except BaseException:
                cur.rollback()
                raise

    @contextmanager
    def _source(self, cur: duckdb.DuckDBPyConnection, table: Any) -> Iterator[str]:
        """Register a DuckDB-scannable object (Arrow table, pandas frame) under a fresh name."""
        name = f"_src_{uuid.uuid4().hex}"
        cur.register(name, table)
        try:
            yield name
        finally:
            cur.unregister(name)

    def _rows(self, sql: str, params: Any = None) -> list[Any]:
        """The rows as dicts, JSON columns decoded; each verb declares their type (a ``storage.rows`` TypedDict)."""
        cur = self._cur()
        cur.execute(sql, params)
        cols = [d[0] for d in cur.description]
        return [_decode(dict(zip(cols, row, strict=True))) for row in cur.fetchall()]

    def _scalar(self, sql: str, params: Any = None, cur: duckdb.DuckDBPyConnection | None = None) -> Any:
        rows = (cur or self._cur()).execute(sql, params).fetchall()
        return rows[0][0] if rows else None

    def _reserve(self, cur: duckdb.DuckDBPyConnection, table: str, n: int) -> int:
        """Take ``n`` consecutive ids from a table's sequence (under the write lock nobody else draws)."""
        lo, hi = cur.execute(
            f"SELECT min(i), max(i) FROM (SELECT nextval('{table}_id_seq') AS i FROM range(?))", [n]
        ).fetchall()[0]
        if n and hi - lo != n - 1:
            raise StoreError(f"could not reserve {n} consecutive {table} ids")
        return int(lo or 0)

    def _insert(self, cur: duckdb.DuckDBPyConnection, table: str, values: Mapping[str, Any]) -> int:
        """Insert one row with a fresh id; ``values`` keys are trusted column names, values are bound."""
        new_id = int(self._scalar(f"SELECT nextval('{table}_id_seq')", cur=cur))
        cols = ["id", *values]
        marks = ", ".join("?" * len(cols))
        cur.execute(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({marks})", [new_id, *values.values()])
        cur.fetchall()
        return new_id

    def _exists(self, table: str, row_id: int, cur: duckdb.DuckDBPyConnection | None = None) -> bool:
        return bool(self._scalar(f"SELECT count(*) FROM {table} WHERE id = ?", [row_id], cur))

    def _require(
        self, table: str, row_id: int, what: str, cur: duckdb.DuckDBPyConnection | None = None
    ) -> None:
        if not isinstance(row_id, int) or not self._exists(table, row_id, cur):
            raise StoreError(f"no {what} with id {row_id!r}")

    # -- prompts ----------------------------------------------------------------------------------------------

    def add_prompt(
        self,
        text: str,
        prompt_set: str = "default",
        *,
        category: str | None = None,
        tags: Sequence[str] = (),
        messages: Sequence[Mapping[str, str]] | None = None,
    ) -> int:
        """Get or create: the same text (and messages) in the same prompt set is one prompt, so its id is reused.

        ``messages`` keeps a multi-turn prompt whole (``text`` is then what lists and previews show)."""
        _text(text, "prompt text", empty=False)
        msg = _json(list(messages), "messages") if messages is not None else None
        with self._write() as cur:
            found = self._scalar(
                "SELECT min(id) FROM prompts WHERE prompt_set = ? AND text = ? AND messages IS NOT DISTINCT FROM ?",
                [prompt_set, text, msg],
                cur,
            )
            if found is not None:
                return int(found)
            values = {"text": text, "prompt_set": prompt_set, "category": category, "tags": list(tags)}
            return self._insert(cur, "prompts", {**values, "messages": msg, "created_at": _now()})

    def add_prompts(
        self, texts: Sequence[str], prompt_set: str = "default", *, category: str | None = None
    ) -> list[int]:
        """Bulk get-or-create of plain prompts; ids in input order."""
        texts = [_text(t, f"prompt {i + 1}", empty=False) for i, t in enumerate(texts)]
        with self._write() as cur:
            params = {"texts": texts, "set": prompt_set, "category": category}
            cur.execute(
                """INSERT INTO prompts (text, prompt_set, category)
                SELECT t, $set, $category
                FROM (SELECT t, min(i) AS i FROM (SELECT unnest($texts) AS t, generate_subscripts($texts, 1) AS i)
                      GROUP BY t) u
                WHERE NOT EXISTS (SELECT 1 FROM prompts p
                                  WHERE p.prompt_set = $set AND p.text = u.t AND p.messages IS NULL)
                ORDER BY u.i""",  # new prompts get ids in file order, so "next prompt" follows the file
                params,
            ).fetchall()
            rows = cur.execute(
                """SELECT min(p.id) FROM (SELECT unnest($texts) AS t, generate_subscripts($texts, 1) AS i) u
                JOIN prompts p ON p.prompt_set = $set AND p.text = u.t AND p.messages IS NULL
                GROUP BY u.i ORDER BY u.i""",
                {"texts": texts, "set": prompt_set},
            ).fetchall()
        return [int(r[0]) for r in rows]

    def get_prompt(self, prompt_id: int) -> PromptRow | None:
        """The prompt row, with its ``messages`` (multi-turn) and ``reference`` (a known answer), or None."""
        rows = self._rows("SELECT * FROM prompts WHERE id = ?", [prompt_id])
        return _first(rows)

    def list_prompts(
        self, prompt_set: str | None = None, *, limit: int | None = 100, offset: int = 0
    ) -> list[PromptRow]:
        return self._rows(
            "SELECT * FROM prompts WHERE ? IS NULL OR prompt_set = ? ORDER BY id LIMIT ? OFFSET ?",
            [prompt_set, prompt_set, limit, offset],
        )

    def prompt_sets(self) -> list[str]:
        return [r["prompt_set"] for r in self._rows("SELECT DISTINCT prompt_set FROM prompts ORDER BY 1")]

    # -- prompt sets and the labelling workflow ---------------------------------------------------------------

    def set_prompt_set(
        self, name: str, *, guidelines: str | None = None, min_labels: int | None = None
    ) -> PromptSetRow:
        """Set a prompt set's Markdown ``guidelines`` and/or ``min_labels`` (distinct annotators wanted per
        prompt); None keeps the current value. Returns ``get_prompt_set(name)``."""
        _text(name, "prompt set name", empty=False)
        guidelines = _free_text(guidelines, "guidelines", MAX_GUIDELINES_CHARS)
        if min_labels is not None and (
            not isinstance(min_labels, int) or isinstance(min_labels, bool) or min_labels < 1
        ):
            raise StoreError(f"min_labels must be a whole number >= 1, not {min_labels!r}")
        with self._write() as cur:
            params = {"n": name, "g": guidelines, "m": min_labels, "at": _now()}
            if self._scalar("SELECT count(*) FROM prompt_sets WHERE name = ?", [name], cur):
                cur.execute(
                    """UPDATE prompt_sets SET guidelines = coalesce($g, guidelines),
                    min_labels = coalesce($m, min_labels), updated_at = $at WHERE name = $n""",
                    params,
                ).fetchall()
            else:
                cur.execute("INSERT INTO prompt_sets VALUES ($n, $g, $m, $at)", params).fetchall()
        return self.get_prompt_set(name)

    def get_prompt_set(self, name: str) -> PromptSetRow:
        """``{"name", "guidelines" ('' if none), "min_labels" (1 if unset)}``; defaults for a set never set."""
        rows = self._rows(
            "SELECT coalesce(guidelines, '') AS g, coalesce(min_labels, 1) AS m FROM prompt_sets WHERE name = ?",
            [name],
        )
        g, m = (rows[0]["g"], rows[0]["m"]) if rows else ("", 1)
        return {"name": name, "guidelines": g, "min_labels": int(m)}

    def skip_prompt(self, prompt_id: int, annotator: str) -> None:
        """Record that ``annotator`` skipped this prompt: ``next_prompt`` no longer offers it to them."""
        _text(annotator, "annotator", empty=False)
        with self._write() as cur:
            self._require("prompts", prompt_id, "prompt", cur)
            cur.execute(
                """INSERT INTO skips (prompt_id, annotator, created_at) SELECT $p, $a, $at
                WHERE NOT EXISTS (SELECT 1 FROM skips WHERE prompt_id = $p AND annotator = $a)""",
                {"p": prompt_id, "a": annotator, "at": _now()},
            ).fetchall()

    def next_prompt(
        self, prompt_set: str | None, annotator: str, *, exclude: Sequence[int] = ()
    ) -> PromptRow | None:
        """The next prompt (a ``get_prompt`` row) for ``annotator``: one they have neither labelled (voted on a
        comparison of it) nor skipped, and not in ``exclude``; prompts with fewer distinct labellers than their
        set's ``min_labels`` first, then in id order. None when none is left. ``prompt_set`` None: every set."""
        rows = self._rows(
            f"""{_PROMPT_LABELS}
            SELECT p.* FROM prompts p
            LEFT JOIN labels n ON n.prompt_id = p.id LEFT JOIN prompt_sets s ON s.name = p.prompt_set
            WHERE ($set IS NULL OR p.prompt_set = $set) AND NOT list_contains($exclude::BIGINT[], p.id)
              AND NOT EXISTS (SELECT 1 FROM labelled l WHERE l.prompt_id = p.id AND l.annotator = $who)
              AND NOT EXISTS (SELECT 1 FROM skips k WHERE k.prompt_id = p.id AND k.annotator = $who)
            ORDER BY coalesce(n.labels, 0) >= coalesce(s.min_labels, 1), p.id LIMIT 1""",
            {"set": prompt_set, "who": annotator, "exclude": [int(i) for i in exclude]},
        )
        return _first(rows)

    def annotator_progress(self, prompt_set: str | None, annotator: str) -> AnnotatorProgress:
        """``{"total", "labelled", "skipped", "remaining"}`` of a prompt set for one annotator (a prompt both
        skipped and labelled counts as labelled)."""
        row = self._rows(
            f"""{_PROMPT_LABELS}
            SELECT count(*) AS total, count_if(lab) AS labelled, count_if(sk AND NOT lab) AS skipped FROM (
                SELECT EXISTS (SELECT 1 FROM labelled l WHERE l.prompt_id = p.id AND l.annotator = $who) AS lab,
                       EXISTS (SELECT 1 FROM skips k WHERE k.prompt_id = p.id AND k.annotator = $who) AS sk
                FROM prompts p WHERE $set IS NULL OR p.prompt_set = $set)""",
            {"set": prompt_set, "who": annotator},
        )[0]
        out = {k: int(row[k] or 0) for k in ("total", "labelled", "skipped")}
        return {**out, "remaining": out["total"] - out["labelled"] - out["skipped"]}

    def prompt_status(self, prompt_set: str | None) -> list[PromptStatusRow]:
        """Each prompt of the set (None: all) in id order: prompt_id, text, labels (distinct annotators who
        labelled it), min_labels, skips (distinct annotators who skipped it) and status ('complete' when
        labels >= min_labels, 'in progress' when some, 'unlabelled')."""
        return self._rows(
            f"""{_PROMPT_LABELS}
            SELECT p.id AS prompt_id, p.text, coalesce(n.labels, 0) AS labels,
                   coalesce(s.min_labels, 1) AS min_labels,
                   (SELECT count(DISTINCT annotator) FROM skips k WHERE k.prompt_id = p.id) AS skips,
                   CASE WHEN coalesce(n.labels, 0) >= coalesce(s.min_labels, 1) THEN 'complete'
                        WHEN n.labels > 0 THEN 'in progress' ELSE 'unlabelled' END AS status
            FROM prompts p LEFT JOIN labels n ON n.prompt_id = p.id LEFT JOIN prompt_sets s ON s.name = p.prompt_set
            WHERE $set IS NULL OR p.prompt_set = $set ORDER BY p.id""",
            {"set": prompt_set},
        )

    # -- runs -------------------------------------------------------------------------------------------------

    def add_run(
        self,
        prompt_id: int,
        model: str,
        strategy: str,
        answer: str,
        *,
        variant: str | None = None,
        params: Mapping[str, Any] | None = None,
        trace: Any = None,
        tokens_in: int | None = None,
        tokens_out: int | None = None,
        latency_s: float | None = None,
        at: datetime | None = None,
        error: str | None = None,
    ) -> int:
        """Record one answer; ``trace`` is the strategy's JSON-serialisable trace, stored as JSON text.

        A run that failed is stored with its ``error`` (and whatever ``answer`` it got, often ''): it keeps the
        record of what was tried, but it is never compared, judged or exported."""
        values = {
            "prompt_id": prompt_id,
            "model": _text(model, "model", empty=False),
            "strategy": _text(strategy, "strategy", empty=False),
            "variant": variant,
            "params": _json(dict(params) if params is not None else None, "params"),
            "answer": _text(answer, "answer"),
            "trace": _json(trace, "trace"),
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "latency_s": latency_s,
            "created_at": _utc(at),
            "error": None if error is None else _text(error, "error"),
        }
        with self._write() as cur:
            self._require("prompts", prompt_id, "prompt", cur)
            return self._insert(cur, "runs", values)

    def add_runs_bulk(self, rows: Any) -> list[int]:
        """Insert many runs from an Arrow table or pandas frame; ids in row order.

        Columns: ``prompt_id, model, strategy, answer`` and optionally ``variant, params, trace`` (JSON text),
        ``tokens_in, tokens_out, latency_s, created_at, error`` (NULL = the run succeeded)."""
        optional = (
            "variant",
            "params",
            "trace",
            "tokens_in",
            "tokens_out",
            "latency_s",
            "created_at",
            "error",
        )
        required = ("prompt_id", "model", "strategy", "answer")
        with self._write() as cur, self._source(cur, rows) as src:
            cols = self._columns(cur, src, required, optional)
            n = int(self._scalar(f"SELECT count(*) FROM {src}", cur=cur))
            bad = self._scalar(
                f"""SELECT min(i) FROM (SELECT row_number() OVER () AS i, * FROM {src}) s
                WHERE prompt_id NOT IN (SELECT id FROM prompts) OR model IS NULL OR strategy IS NULL
                   OR answer IS NULL""",
                cur=cur,
            )
            if bad is not None:
                raise StoreError(f"run row {bad}: unknown prompt_id or a missing model, strategy or answer")
            first = self._reserve(cur, "runs", n)
            listed = ", ".join(cols)
            cur.execute(
                f"""INSERT INTO runs (id, {listed})
                SELECT ids.id, {listed} FROM {src} POSITIONAL JOIN (SELECT ? + range AS id FROM range(?)) ids""",
                [first, n],
            ).fetchall()
        return list(range(first, first + n))

    @staticmethod
    def _columns(
        cur: duckdb.DuckDBPyConnection, src: str, required: Sequence[str], optional: Sequence[str]
    ) -> list[str]:
        cur.execute(f"SELECT * FROM {src} LIMIT 0")
        have = [d[0] for d in cur.description]
        cur.fetchall()
        missing = [c for c in required if c not in have]
        if missing:
            raise StoreError(f"bulk rows lack column(s) {', '.join(missing)}")
        return [*required, *(c for c in optional if c in have)]

    def get_run(self, run_id: int) -> RunWithTrace | None:
        rows = self._rows("SELECT * FROM runs WHERE id = ?", [run_id])
        return _first(rows)

    def list_runs(
        self,
        *,
        prompt_id: int | None = None,
        model: str | None = None,
        strategy: str | None = None,
        failed: bool | None = None,
        filters: Filters | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[RunRow]:
        """Runs without their traces (use ``get_run`` for one run's trace), newest first. ``failed`` False
        keeps the runs that succeeded, True those with an error, None all. ``filters``: the run filters (model,
        strategy or strategy:variant, prompt set; see ``storage.pairs``)."""
        params = {"p": prompt_id, "m": model, "s": strategy, "f": failed, "limit": limit, "offset": offset}
        return self._rows(
            f"""SELECT * EXCLUDE (trace) FROM runs
            WHERE ($p IS NULL OR prompt_id = $p) AND ($m IS NULL OR model = $m) AND ($s IS NULL OR strategy = $s)
              AND ($f IS NULL OR (error IS NOT NULL) = $f) AND {items_where("id", RUN_ITEMS, filters, params)}
            ORDER BY id DESC LIMIT $limit OFFSET $offset""",
            params,
        )

    # -- comparisons, votes, rankings -------------------------------------------------------------------------

    def add_comparison(
        self, run_ids: Sequence[int], *, blind: bool = True, at: datetime | None = None
    ) -> int:
        """Runs of one prompt as shown on screen: ``run_ids[0]`` at position 0 (left or first). Runs that
        failed are refused: a comparison holds only answers that can be ranked."""
        ids = list(run_ids)
        if len(ids) < 2 or len(set(ids)) != len(ids):
            raise StoreError(f"a comparison needs two or more distinct runs, not {ids}")
        with self._write() as cur:
            prompts = cur.execute(
                "SELECT id, prompt_id, error FROM runs WHERE list_contains(?, id) ORDER BY id", [ids]
            ).fetchall()
            if len(prompts) != len(ids):
                missing = sorted(set(ids) - {r[0] for r in prompts})
                raise StoreError(f"no run with id {missing[0]}")
            if len({r[1] for r in prompts}) != 1:
                raise StoreError("the runs of a comparison must answer the same prompt")
            if failed := [r[0] for r in prompts if r[2] is not None]:
                raise StoreError(f"run {failed[0]} failed; a comparison holds only runs that succeeded")
            cid = self._insert(
                cur, "comparisons", {"prompt_id": prompts[0][1], "blind": bool(blind), "created_at": _utc(at)}
            )
            cur.execute(
                "INSERT INTO comparison_runs SELECT $cid, generate_subscripts($ids, 1) - 1, unnest($ids)",
                {"cid": cid, "ids": ids},
            ).fetchall()
        return cid

    def add_comparisons_bulk(self, run_ids: Sequence[Sequence[int]], *, blind: bool = True) -> list[int]:
        """Many comparisons at once (for imports and benchmarks); ids in input order."""
        lists = [list(map(int, r)) for r in run_ids]
        with self._write() as cur:
            cur.execute(
                """CREATE OR REPLACE TEMP TABLE _new_cmp AS
                SELECT generate_subscripts($l, 1) AS i, unnest($l) AS run_ids""",
                {"l": lists},
            ).fetchall()
            ids = self._insert_comparisons(cur, "_new_cmp", blind)
            cur.execute("DROP TABLE _new_cmp").fetchall()  # on error, the rollback drops it
        return ids

    def _insert_comparisons(self, cur: duckdb.DuckDBPyConnection, table: str, blind: bool) -> list[int]:
        """Insert comparisons from ``table(i, run_ids)``; ``i`` is the 1-based input row."""
        bad = cur.execute(
            f"""SELECT t.i, len(t.run_ids), len(list_distinct(t.run_ids)), count(r.id), count(DISTINCT r.prompt_id)
            FROM {table} t LEFT JOIN (SELECT i, unnest(run_ids) AS run_id FROM {table}) u ON u.i = t.i
            LEFT JOIN runs r ON r.id = u.run_id GROUP BY ALL
            HAVING len(t.run_ids) < 2 OR len(list_distinct(t.run_ids)) <> len(t.run_ids)
                OR count(r.id) <> len(t.run_ids) OR count(DISTINCT r.prompt_id) <> 1 OR count(r.error) > 0
            ORDER BY t.i LIMIT 1"""
        ).fetchall()
        if bad:
            raise StoreError(
                f"comparison row {bad[0][0]}: needs two or more distinct, existing runs of one prompt "
                "that succeeded (none failed)"
            )
        n = int(self._scalar(f"SELECT count(*) FROM {table}", cur=cur))
        first = self._reserve(cur, "comparisons", n)
        cur.execute(
            f"""INSERT INTO comparisons (id, prompt_id, blind)
            SELECT ? + t.i - 1, r.prompt_id, ? FROM {table} t JOIN runs r ON r.id = t.run_ids[1]""",
            [first, bool(blind)],
        ).fetchall()
        cur.execute(
            f"""INSERT INTO comparison_runs
            SELECT ? + i - 1, generate_subscripts(run_ids, 1) - 1, unnest(run_ids) FROM {table}""",
            [first],
        ).fetchall()
        return list(range(first, first + n))

    def get_comparison(self, comparison_id: int) -> ComparisonRow | None:
        rows = self._rows(
            """SELECT c.*, (SELECT list(run_id ORDER BY position) FROM comparison_runs
                            WHERE comparison_id = c.id) AS run_ids
            FROM comparisons c WHERE c.id = ?""",
            [comparison_id],
        )
        return _first(rows)

    def list_comparisons(
        self, *, prompt_id: int | None = None, limit: int | None = 100
    ) -> list[ComparisonRow]:
        return self._rows(
            """SELECT c.*, (SELECT list(run_id ORDER BY position) FROM comparison_runs
                            WHERE comparison_id = c.id) AS run_ids
            FROM comparisons c WHERE $p IS NULL OR c.prompt_id = $p ORDER BY c.id DESC LIMIT $limit""",
            {"p": prompt_id, "limit": limit},
        )

    def _size(self, cur: duckdb.DuckDBPyConnection, comparison_id: int) -> int:
        if not isinstance(comparison_id, int):
            raise StoreError(f"no comparison with id {comparison_id!r}")
        size = self._scalar(
            "SELECT count(*) FROM comparison_runs WHERE comparison_id = ?", [comparison_id], cur
        )
        if not size:
            raise StoreError(f"no comparison with id {comparison_id}")
        return int(size)

    def add_vote(
        self,
        comparison_id: int,
        choice: str,
        annotator: str,
        *,
        comment: str | None = None,
        at: datetime | None = None,
        actor: str | None = None,
    ) -> int:
        """A pairwise vote on a two-run comparison: 'A' (position 0), 'B' (position 1), 'tie' or 'both_bad'.

        One label per (comparison, annotator): if ``annotator`` already labelled this comparison, that label is
        replaced in place (the same vote id is returned) and the old value goes to ``label_audit`` with
        ``actor`` (default: the annotator). Submitting the same label again changes nothing."""
        if choice not in CHOICES:
            raise StoreError(f"a vote is one of {', '.join(CHOICES)}, not {choice!r}")
        _text(annotator, "annotator", empty=False)
        comment = _free_text(comment, "comment")
        with self._write() as cur:
            if (k := self._size(cur, comparison_id)) != 2:
                raise StoreError(f"comparison {comparison_id} shows {k} runs; rank them with add_ranking")
            values = self._vote(comparison_id, "pairwise", choice, None, annotator, comment, at)
            return self._upsert_vote(cur, values, actor)

    def add_ranking(
        self,
        comparison_id: int,
        ranks: Sequence[int],
        annotator: str,
        *,
        comment: str | None = None,
        at: datetime | None = None,
        actor: str | None = None,
    ) -> int:
        """A k-way ranking: ``ranks[i]`` is the rank of the run at position ``i`` (1 = best, at most k; equal =
        tie). Exactly one rank per run. On a two-run comparison it is stored as the pairwise vote it equals
        ([1, 2] = 'A', [2, 1] = 'B', equal = 'tie'). Replaces this annotator's label as ``add_vote`` does."""
        ranks = list(ranks)
        if not ranks or any(not isinstance(r, int) or isinstance(r, bool) or r < 1 for r in ranks):
            raise StoreError(f"ranks must be whole numbers >= 1 (1 = best), not {ranks}")
        _text(annotator, "annotator", empty=False)
        comment = _free_text(comment, "comment")
        with self._write() as cur:
            if (k := self._size(cur, comparison_id)) != len(ranks):
                raise StoreError(
                    f"comparison {comparison_id} shows {k} runs but {len(ranks)} ranks were given"
                )
            if max(ranks) > k:
                raise StoreError(f"ranks go from 1 (best) to {k} for {k} runs, not {ranks}")
            if k == 2:
                choice = "A" if ranks[0] < ranks[1] else "B" if ranks[1] < ranks[0] else "tie"
                values = self._vote(comparison_id, "pairwise", choice, None, annotator, comment, at)
            else:
                values = self._vote(comparison_id, "ranking", None, ranks, annotator, comment, at)
            return self._upsert_vote(cur, values, actor)

    @staticmethod
    def _vote(
        cid: int,
        kind: str,
        choice: str | None,
        ranks: list[int] | None,
        annotator: str,
        comment: str | None,
        at: datetime | None,
    ) -> dict[str, Any]:
        return {
            "comparison_id": cid,
            "kind": kind,
            "choice": choice,
            "ranks": ranks,
            "annotator": annotator,
            "comment": comment,
            "created_at": _utc(at),
        }

    def _upsert_vote(self, cur: duckdb.DuckDBPyConnection, values: dict[str, Any], actor: str | None) -> int:
        """Insert the label, or replace this annotator's label on the comparison (auditing the old value)."""
        old = cur.execute(
            "SELECT id, kind, choice, ranks, comment FROM votes WHERE comparison_id = ? AND annotator = ?",
            [values["comparison_id"], values["annotator"]],
        ).fetchall()
        if not old:
            return self._insert(cur, "votes", values)
        vid = int(old[0][0])
        if tuple(old[0][1:]) == (values["kind"], values["choice"], values["ranks"], values["comment"]):
            return vid  # the same label again (a double submit): nothing to replace
        new = {"id": vid, **{k: values[k] for k in ("kind", "choice", "ranks", "comment", "created_at")}}
        new_json = json.dumps({**new, "created_at": str(new["created_at"])}, ensure_ascii=False)
        self._audit(cur, "vote", vid, "replace", actor or values["annotator"], new_json)
        cur.execute(
            "UPDATE votes SET kind = ?, choice = ?, ranks = ?, comment = ?, created_at = ? WHERE id = ?",
            [values["kind"], values["choice"], values["ranks"], values["comment"], values["created_at"], vid],
        ).fetchall()
        return vid

    @staticmethod
    def _audit(
        cur: duckdb.DuckDBPyConnection,
        kind: str,
        row_id: int,
        action: str,
        actor: str | None,
        new: str | None,
    ) -> None:
        """Write the stored value of a vote or step label to ``label_audit`` before it is replaced or deleted."""
        if kind == "vote":
            source = f"SELECT v.comparison_id, v.annotator, {vote_json('v')} FROM votes v WHERE v.id = $id"
        else:
            source = f"SELECT NULL, s.annotator, {STEP_LABEL_JSON} FROM step_labels s WHERE s.id = $id"
        cur.execute(
            f"""INSERT INTO label_audit (kind, row_id, comparison_id, annotator, actor, action, old, new, "at")
            SELECT $kind, $id, x.comparison_id, x.annotator, $actor, $action, x.old, $new::JSON, $at
            FROM ({source}) x(comparison_id, annotator, old)""",
            {"kind": kind, "id": row_id, "actor": actor, "action": action, "new": new, "at": _now()},
        ).fetchall()

    def get_label(self, comparison_id: int, annotator: str) -> VoteRow | None:
        """This annotator's label on the comparison (a ``list_votes`` row), or None."""
        rows = self._rows(
            f"SELECT * REPLACE ({VOTE_RANKS} AS ranks) FROM votes WHERE comparison_id = ? AND annotator = ?",
            [comparison_id, annotator],
        )
        return _first(rows)

    def labelled(self, keys: Sequence[tuple[int, str]]) -> set[tuple[int, str]]:
        """Which of these (comparison, annotator) pairs already have a label, in one query (a label writer asks
        before each batch, to tell each caller whether their vote replaced an earlier one)."""
        if not keys:
            return set()
        sql = """SELECT DISTINCT v.comparison_id, v.annotator FROM votes v
            JOIN (SELECT unnest($c) AS comparison_id, unnest($a) AS annotator) k USING (comparison_id, annotator)"""
        params = {"c": [int(c) for c, _ in keys], "a": [str(a) for _, a in keys]}
        return {(int(c), str(a)) for c, a in self._cur().execute(sql, params).fetchall()}

    def add_votes_bulk(self, rows: Any, *, actor: str | None = None) -> list[int]:
        """Many votes from an Arrow table or pandas frame; the vote id of each row, in row order.

        Columns: ``comparison_id, annotator`` and ``choice`` (pairwise) or ``ranks`` (ranking), optionally
        ``comment, created_at``. Every row is checked as ``add_vote``/``add_ranking`` check it (a 2-rank
        ranking on a two-run comparison becomes its choice). One label per (comparison, annotator): within the
        batch the latest row (by ``created_at``, then row order) is the label, and it replaces a stored one;
        every replaced value goes to ``label_audit`` (``actor`` default: the annotator). Rows of one
        (comparison, annotator) all get that label's id. Set-based: no per-row Python."""
        with self._write() as cur, self._source(cur, rows) as src:
            cols = self._columns(
                cur, src, ("comparison_id", "annotator"), ("choice", "ranks", "comment", "created_at")
            )
            if "choice" not in cols and "ranks" not in cols:
                raise StoreError("bulk votes need a 'choice' or a 'ranks' column")
            return self._upsert_votes(cur, src, cols, actor)

    def _upsert_votes(
        self, cur: duckdb.DuckDBPyConnection, src: str, cols: list[str], actor: str | None
    ) -> list[int]:
        """Check the rows; append them if no label repeats or replaces another (the common bulk load), else
        number them, pick each key's label, audit and write (``_merge_votes``)."""

        def col(name: str, cast: str) -> str:
            return f"{name}::{cast}" if name in cols else f"NULL::{cast}"

        rows = f"""SELECT comparison_id, annotator, {col("choice", "VARCHAR")} AS choice,
            {col("ranks", "INTEGER[]")} AS ranks, {col("comment", "VARCHAR")} AS comment,
            coalesce({col("created_at", "TIMESTAMP")}, $now) AS created_at FROM {src}"""
        check = {"max_comment": MAX_COMMENT_CHARS, "now": (now := _now())}
        sizes = "(SELECT comparison_id, count(*) AS k FROM comparison_runs GROUP BY 1) c"
        n_bad = f"""SELECT count(*) FROM ({rows}) s LEFT JOIN {sizes} ON c.comparison_id = s.comparison_id
            WHERE ({_BULK_VOTE_CHECK}) IS NOT NULL"""
        if self._scalar(n_bad, check, cur):  # only then number the rows, to name the first bad one
            first_bad = cur.execute(
                f"""SELECT s.i, {_BULK_VOTE_CHECK} FROM (SELECT row_number() OVER () AS i, * FROM ({rows})) s
                LEFT JOIN {sizes} ON c.comparison_id = s.comparison_id
                WHERE ({_BULK_VOTE_CHECK}) IS NOT NULL ORDER BY s.i LIMIT 1""",
                check,
            ).fetchall()[0]
            raise StoreError(f"vote row {first_bad[0]}: {first_bad[1]}")
        n = int(self._scalar(f"SELECT count(*) FROM {src}", cur=cur))
        repeats = self._scalar(
            f"""SELECT (SELECT count(*) - count(DISTINCT (comparison_id, annotator)) FROM {src})
                     + (SELECT count(*) FROM {src} s WHERE EXISTS (SELECT 1 FROM votes v
                        WHERE v.comparison_id = s.comparison_id AND v.annotator = s.annotator))""",
            cur=cur,
        )
        if repeats:
            return self._merge_votes(cur, rows, now, actor)
        first = self._reserve(cur, "votes", n)
        cur.execute(
            f"""INSERT INTO votes (id, comparison_id, annotator, kind, choice, ranks, comment, created_at)
            SELECT ids.id, s.comparison_id, s.annotator, {_NORMALISED}, s.comment, s.created_at
            FROM ({rows}) s POSITIONAL JOIN (SELECT $first + range AS id FROM range($n)) ids""",
            {"first": first, "n": n, "now": now},
        ).fetchall()
        return list(range(first, first + n))

    def _merge_votes(
        self, cur: duckdb.DuckDBPyConnection, rows: str, now: datetime, actor: str | None
    ) -> list[int]:
        """Bulk rows with repeated keys or stored labels: the latest row per (comparison, annotator) is the
        label; replaced values (stored, or earlier rows of the batch) go to the audit."""
        try:
            cur.execute(
                f"""CREATE OR REPLACE TEMP TABLE _bulk_votes AS
                SELECT i, comparison_id, annotator, comment, created_at, {_NORMALISED},
                       row_number() OVER (PARTITION BY comparison_id, annotator ORDER BY created_at DESC, i DESC)
                       AS rn
                FROM (SELECT row_number() OVER () AS i, * FROM ({rows})) s""",
                {"now": now},
            ).fetchall()
            cur.execute(
                """CREATE OR REPLACE TEMP TABLE _bulk_keys AS
                SELECT w.comparison_id, w.annotator, w.i AS win, f.first_i, v.id AS old_id, NULL::BIGINT AS id
                FROM _bulk_votes w
                JOIN (SELECT comparison_id, annotator, min(i) AS first_i FROM _bulk_votes GROUP BY ALL) f
                  ON f.comparison_id = w.comparison_id AND f.annotator = w.annotator
                LEFT JOIN votes v ON v.comparison_id = w.comparison_id AND v.annotator = w.annotator
                WHERE w.rn = 1"""
            ).fetchall()
            n_new = int(self._scalar("SELECT count(*) FROM _bulk_keys WHERE old_id IS NULL", cur=cur))
            first = self._reserve(cur, "votes", n_new)
            for sql in _BULK_VOTE_WRITES:
                params = {"first": first, "actor": actor, "at": _now()}
                cur.execute(sql, {k: v for k, v in params.items() if f"${k}" in sql}).fetchall()
            ids = cur.execute(
                """SELECT k.id FROM _bulk_votes b JOIN _bulk_keys k
                ON k.comparison_id = b.comparison_id AND k.annotator = b.annotator ORDER BY b.i"""
            ).fetchnumpy()["id"]
            return [int(x) for x in ids]
        finally:
            cur.execute("DROP TABLE IF EXISTS _bulk_votes; DROP TABLE IF EXISTS _bulk_keys").fetchall()

    def delete_vote(self, vote_id: int, *, actor: str | None = None, admin: bool = True) -> None:
        """Delete a vote; its value goes to ``label_audit`` with ``actor``. With ``admin`` False only the vote's
        own annotator (``actor``) may delete it."""
        with self._write() as cur:
            self._require("votes", vote_id, "vote", cur)
            _check_owner(
                self._scalar("SELECT annotator FROM votes WHERE id = ?", [vote_id], cur), actor, admin
            )
            self._audit(cur, "vote", vote_id, "delete", actor, None)
            cur.execute("DELETE FROM votes WHERE id = ?", [vote_id]).fetchall()

    def label_audit(
        self, *, comparison_id: int | None = None, annotator: str | None = None, limit: int | None = 100
    ) -> list[LabelAuditRow]:
        """Replaced, deleted and deduplicated labels, newest first: id, kind ('vote' | 'step_label'), row_id,
        comparison_id, annotator (the label's), actor (who changed it), action ('replace' | 'delete' |
        'dedupe'), old and new (the values; new is None for a delete), at."""
        return self._rows(
            """SELECT * FROM label_audit WHERE ($c IS NULL OR comparison_id = $c) AND ($a IS NULL OR annotator = $a)
            ORDER BY id DESC LIMIT $limit""",
            {"c": comparison_id, "a": annotator, "limit": limit},
        )

    def list_votes(
        self,
        *,
        comparison_id: int | None = None,
        annotator: str | None = None,
        filters: Filters | None = None,
        limit: int | None = 100,
    ) -> list[VoteRow]:
        """Votes and rankings, newest first; ``filters``: the run filters on the comparison's runs (any may match)."""
        params = {"c": comparison_id, "a": annotator, "limit": limit}
        return self._rows(
            f"""SELECT * REPLACE ({VOTE_RANKS} AS ranks) FROM votes
            WHERE ($c IS NULL OR comparison_id = $c) AND ($a IS NULL OR annotator = $a)
              AND {items_where("comparison_id", COMPARISON_ITEMS, filters, params)}
            ORDER BY id DESC LIMIT $limit""",
            params,
        )

    def vote_pairs(self) -> list[VotePairRow]:
        """Every vote as run pairs: ``vote_id, comparison_id, annotator, run_a, run_b, outcome`` ('A', 'B' or
        'tie'; A is the earlier screen position), newest vote first. The same pairs the exports read."""
        return self._rows(
            f"""WITH {VOTE_PAIRS}
            SELECT vote_id, comparison_id, annotator, run_a, run_b, outcome FROM vote_pairs
            ORDER BY vote_id DESC, position_a, position_b"""
        )

    # -- judge verdicts ---------------------------------------------------------------------------------------

    def add_verdict(
        self,
        judge: str,
        mode: str,
        run_ids: Sequence[int] | None = None,
        *,
        comparison_id: int | None = None,
        judge_model: str | None = None,
        judge_config: Mapping[str, Any] | None = None,
        orders: Sequence[str] = (),
        winner: str | None = None,
        rating: float | None = None,
        prob_a: float | None = None,
        scores: Any = None,
        raw_output: str | None = None,
        ok: bool = True,
        at: datetime | None = None,
        trace: Any = None,
    ) -> int:
        """A judge's verdict. ``single``: one run and its ``rating``. ``pairwise``: runs (A, B) -- or those of
        ``comparison_id`` -- and ``winner`` in A/B/tie/inconsistent, ``prob_a`` = P(A better) if the judge
        gives one. ``orders`` lists the presentation orders used (e.g. ["AB", "BA"]). A failed parse is
        ``ok=False`` with its ``raw_output``; it is stored and counted, never dropped. ``trace``: the judge's
        JSON-serialisable trace (its model calls), as a run's."""
        if mode not in ("single", "pairwise"):
            raise StoreError(f"a verdict's mode is 'single' or 'pairwise', not {mode!r}")
        _text(judge, "judge", empty=False)
        if winner is not None and (mode == "single" or winner not in WINNERS):
            raise StoreError(f"winner must be one of {', '.join(WINNERS)} (pairwise only), not {winner!r}")
        if mode == "pairwise" and ok and winner is None:
            raise StoreError("an ok pairwise verdict needs a winner (A, B, tie or inconsistent)")
        with self._write() as cur:
            ids = self._verdict_runs(cur, mode, run_ids, comparison_id)
            values = {
                "judge": judge, "judge_model": judge_model,
                "judge_config": _json(dict(judge_config) if judge_config else None, "judge_config"),
                "mode": mode, "run_ids": ids, "comparison_id": comparison_id, "orders": list(orders),
                "winner": winner, "rating": rating, "prob_a": prob_a, "scores": _json(scores, "scores"),
                "raw_output": raw_output, "ok": bool(ok), "created_at": _utc(at),
                "trace": _json(trace, "trace"),
            }  # fmt: skip
            return self._insert(cur, "verdicts", values)

    def get_verdict(self, verdict_id: int) -> VerdictWithTrace | None:
        """One verdict with its trace (``list_verdicts`` leaves traces out, as ``list_runs`` does)."""
        rows = self._rows("SELECT * FROM verdicts WHERE id = ?", [verdict_id])
        return _first(rows)

    def _verdict_runs(
        self,
        cur: duckdb.DuckDBPyConnection,
        mode: str,
        run_ids: Sequence[int] | None,
        comparison_id: int | None,
    ) -> list[int]:
        if run_ids is None and comparison_id is not None:
            self._size(cur, comparison_id)
            run_ids = cur.execute(
                "SELECT list(run_id ORDER BY position) FROM comparison_runs WHERE comparison_id = ?",
                [comparison_id],
            ).fetchall()[0][0]
        ids = list(run_ids or [])
        want = 1 if mode == "single" else 2
        if len(ids) != want:
            raise StoreError(f"a {mode} verdict concerns {want} run(s), not {len(ids)}")
        for rid in ids:
            self._require("runs", rid, "run", cur)
        failed = cur.execute(
            "SELECT min(id) FROM runs WHERE list_contains(?, id) AND error IS NOT NULL", [ids]
        )
        if (rid := failed.fetchall()[0][0]) is not None:
            raise StoreError(f"run {rid} failed; judges never see failed runs")
        return ids

    def list_verdicts(
        self,
        *,
        run_id: int | None = None,
        comparison_id: int | None = None,
        judge: str | None = None,
        filters: Filters | None = None,
        limit: int | None = 100,
    ) -> list[VerdictRow]:
        """Verdicts without their traces (``get_verdict`` has one's), newest first; ``filters``: the run filters
        on the verdict's runs (any may match)."""
        params = {"r": run_id, "c": comparison_id, "j": judge, "limit": limit}
        return self._rows(
            f"""SELECT * EXCLUDE (trace) FROM verdicts
            WHERE ($r IS NULL OR list_contains(run_ids, $r)) AND ($c IS NULL OR comparison_id = $c)
              AND ($j IS NULL OR judge = $j) AND {items_where("id", VERDICT_ITEMS, filters, params)}
            ORDER BY id DESC LIMIT $limit""",
            params,
        )

    # -- step labels ------------------------------------------------------------------------------------------

    def add_step_label(
        self, run_id: int, step_id: str, label: str, annotator: str, *, note: str | None = None
    ) -> int:
        """A person's label on one step of a run's trace: one of ``STEP_LABELS`` ('wrong' or 'good')."""
        values = {
            "run_id": run_id,
            "step_id": _text(step_id, "step id", empty=False),
            "label": _step_label(label),
            "note": _free_text(note, "note"),
            "annotator": _text(annotator, "annotator", empty=False),
            "created_at": _now(),
        }
        with self._write() as cur:
            self._require("runs", run_id, "run", cur)
            return self._insert(cur, "step_labels", values)

    def update_step_label(
        self,
        label_id: int,
        *,
        label: str | None = None,
        note: str | None = None,
        actor: str | None = None,
        admin: bool = True,
    ) -> None:
        """Change a step label's label and/or note (None keeps it); the old value goes to ``label_audit``. With
        ``admin`` False only the label's own annotator (``actor``) may change it."""
        label = None if label is None else _step_label(label)
        note = _free_text(note, "note")
        with self._write() as cur:
            self._require("step_labels", label_id, "step label", cur)
            row = cur.execute(
                "SELECT annotator, label, note FROM step_labels WHERE id = ?", [label_id]
            ).fetchall()
            annotator, old_label, old_note = row[0]
            _check_owner(annotator, actor, admin)
            new_label, new_note = label or old_label, old_note if note is None else note
            if (new_label, new_note) == (old_label, old_note):
                return
            new = self._rows(
                f"SELECT {STEP_LABEL_JSON} AS j FROM (SELECT * REPLACE (?::VARCHAR AS label, ?::VARCHAR AS note) "
                "FROM step_labels WHERE id = ?) s",
                [new_label, new_note, label_id],
            )[0]["j"]
            self._audit(cur, "step_label", label_id, "replace", actor, new)
            cur.execute(
                "UPDATE step_labels SET label = ?, note = ?, updated_at = ? WHERE id = ?",
                [new_label, new_note, _now(), label_id],
            ).fetchall()

    def delete_step_label(self, label_id: int, *, actor: str | None = None, admin: bool = True) -> None:
        """Delete a step label (audited with ``actor``); with ``admin`` False only its own annotator may."""
        with self._write() as cur:
            self._require("step_labels", label_id, "step label", cur)
            owner = self._scalar("SELECT annotator FROM step_labels WHERE id = ?", [label_id], cur)
            _check_owner(owner, actor, admin)
            self._audit(cur, "step_label", label_id, "delete", actor, None)
            cur.execute("DELETE FROM step_labels WHERE id = ?", [label_id]).fetchall()

    def list_step_labels(
        self, run_id: int | None = None, *, annotator: str | None = None, filters: Filters | None = None
    ) -> list[StepLabelRow]:
        """Step labels, oldest first; ``filters``: the run filters on the labelled run."""
        params: dict[str, Any] = {"r": run_id, "a": annotator}
        return self._rows(
            f"""SELECT * FROM step_labels WHERE ($r IS NULL OR run_id = $r) AND ($a IS NULL OR annotator = $a)
              AND {items_where("run_id", RUN_ITEMS, filters, params)} ORDER BY id""",
            params,
        )

    def matching(self, run_sets: Sequence[Sequence[int]], filters: Filters | None) -> list[int]:
        """The positions (in ``run_sets``) of the run sets that the run filters select (any run may match)."""
        if filters is None or not has_run_filters(filters):
            return list(range(len(run_sets)))
        params: dict[str, Any] = {"sets": [list(map(int, r)) for r in run_sets]}
        items = """SELECT item, unnest(ids) AS run_id
            FROM (SELECT generate_subscripts($sets, 1) - 1 AS item, unnest($sets) AS ids)"""
        return [
            int(r["item"]) for r in self._rows(f"{matching_items(items, filters, params)} ORDER BY 1", params)
        ]

    # -- models and training runs -----------------------------------------------------------------------------

    def add_model(
        self,
        name: str,
        backend: str,
        *,
        base: str | None = None,
        adapter_path: str | None = None,
        parent: str | None = None,
        training_run_id: int | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> int:
        """A model for lineage. Names are unique; ``parent`` is a model name."""
        _text(name, "model name", empty=False)
        with self._write() as cur:
            if self._scalar("SELECT count(*) FROM models WHERE name = ?", [name], cur):
                raise StoreError(f"a model named {name!r} is already recorded")
            if training_run_id is not None:
                self._require("training_runs", training_run_id, "training run", cur)
            values = {
                "name": name, "backend": backend, "base": base, "adapter_path": adapter_path, "parent": parent,
                "training_run_id": training_run_id, "config": _json(dict(config) if config else None, "config"),
                "created_at": _now(),
            }  # fmt: skip
            return self._insert(cur, "models", values)

    def get_model(self, name: str) -> ModelRow | None:
        rows = self._rows("SELECT * FROM models WHERE name = ?", [name])
        return _first(rows)

    def list_models(self) -> list[ModelRow]:
        return self._rows("SELECT * FROM models ORDER BY id")

    def remove_model(self, name: str) -> bool:
        """Forget a model's lineage row; runs that used it keep its name. Whether there was one."""
        with self._write() as cur:
            found = self._scalar("SELECT count(*) FROM models WHERE name = ?", [name], cur)
            cur.execute("DELETE FROM models WHERE name = ?", [name])
        return bool(found)

    def lineage(self, name: str) -> list[ModelRow]:
        """The model, then its parent, grandparent... as far as the store knows them."""
        chain: list[ModelRow] = []
        seen: set[str] = set()
        while name and name not in seen and (model := self.get_model(name)):
            chain.append(model)
            seen.add(name)
            name = model["parent"]
        return chain

    def add_training_run(
        self,
        method: str,
        config: Mapping[str, Any] | None = None,
        *,
        base_model: str | None = None,
        status: str = "pending",
        output_path: str | None = None,
        log_path: str | None = None,
    ) -> int:
        _check_status(status)
        values = {
            "method": _text(method, "method", empty=False), "base_model": base_model,
            "config": _json(dict(config) if config else None, "config"), "status": status,
            "output_path": output_path, "log_path": log_path, "created_at": _now(),
            "started_at": _now() if status == "running" else None,
        }  # fmt: skip
        with self._write() as cur:
            return self._insert(cur, "training_runs", values)

    def update_training_run(
        self,
        training_run_id: int,
        *,
        status: str | None = None,
        output_path: str | None = None,
        log_path: str | None = None,
        error: str | None = None,
        started_at: datetime | None = None,
        finished_at: datetime | None = None,
    ) -> None:
        """Set the given fields. Moving to 'running' stamps ``started_at``; to done/failed/cancelled,
        ``finished_at`` (unless given)."""
        if status is not None:
            _check_status(status)
            if status == "running" and started_at is None:
                started_at = _now()
            if status in ("done", "failed", "cancelled") and finished_at is None:
                finished_at = _now()
        fields = {
            "status": status, "output_path": output_path, "log_path": log_path, "error": error,
            "started_at": _utc(started_at) if started_at else None,
            "finished_at": _utc(finished_at) if finished_at else None,
        }  # fmt: skip
        fields = {k: v for k, v in fields.items() if v is not None}
        with self._write() as cur:
            self._require("training_runs", training_run_id, "training run", cur)
            if fields:
                sets = ", ".join(f"{k} = ?" for k in fields)
                cur.execute(
                    f"UPDATE training_runs SET {sets} WHERE id = ?", [*fields.values(), training_run_id]
                ).fetchall()

    def append_metrics(self, training_run_id: int, step: int, values: Mapping[str, float]) -> None:
        """One step's metrics (e.g. ``{"loss": 0.69, "rewards/margins": 0.1}``)."""
        names = list(values)
        with self._write() as cur:
            self._require("training_runs", training_run_id, "training run", cur)
            cur.execute(
                """INSERT INTO metrics (training_run_id, step, name, value)
                SELECT $r, $s, unnest($names), unnest($values)""",
                {
                    "r": training_run_id,
                    "s": int(step),
                    "names": names,
                    "values": [float(values[k]) for k in names],
                },
            ).fetchall()

    def metrics(self, training_run_id: int) -> dict[str, list[tuple[int, float]]]:
        """Metric series of a training run: name -> [(step, value), ...] in step order."""
        series: dict[str, list[tuple[int, float]]] = {}
        for r in self._rows(
            "SELECT name, step, value FROM metrics WHERE training_run_id = ? ORDER BY name, step, created_at",
            [training_run_id],
        ):
            series.setdefault(r["name"], []).append((r["step"], r["value"]))
        return series

    def get_training_run(self, training_run_id: int) -> TrainingRunRow | None:
        rows = self._rows("SELECT * FROM training_runs WHERE id = ?", [training_run_id])
        return _first(rows)

    def list_training_runs(
        self, *, status: str | None = None, limit: int | None = 100
    ) -> list[TrainingRunRow]:
        return self._rows(
            "SELECT * FROM training_runs WHERE ? IS NULL OR status = ? ORDER BY id DESC LIMIT ?",
            [status, status, limit],
        )

    # -- preference items -------------------------------------------------------------------------------------

    def preference_pairs(self, filters: Filters | None = None) -> list[PreferencePairRow]:
        """Deduplicated (prompt, chosen, rejected) pairs with their provenance; see ``storage.pairs``."""
        return self._rows(*pair_details_sql(filters or Filters()))

    def kto_rows(self, filters: Filters | None = None, *, good_rating: float | None = None) -> list[KtoRow]:
        """KTO rows (prompt, completion, label); ties, both-bad and ratings as documented in ``storage.pairs``."""
        return self._rows(*kto_sql(filters or Filters(), good_rating=good_rating))

    def rm_pairs(self, filters: Filters | None = None) -> list[RmPairRow]:
        """Reward-model pairs: prompt, chosen, rejected, margin (mean single-verdict rating difference, or None)."""
        return self._rows(*pairs_sql(filters or Filters(), margin=True))

    def win_counts(self, filters: Filters | None = None, *, by: str = "model") -> list[WinCountRow]:
        """Decisive wins per (winner, loser) model or strategy, counting every vote and verdict."""
        return self._rows(*win_counts_sql(filters or Filters(), by))

    def items_sql(
        self,
        kind: str,
        filters: Filters | None = None,
        *,
        conversational: bool = False,
        good_rating: float | None = None,
    ) -> tuple[str, dict[str, Any]]:
        """The query behind an export of ``kind`` (dpo, kto or rm) in TRL's column layout."""
        f = filters or Filters()
        if kind == "dpo":
            return pairs_sql(f, conversational=conversational)
        if kind == "rm":  # margin 0 where no rating difference is known: the plain pairwise loss
            return pairs_sql(f, conversational=conversational, margin=True, fill_margin=True)
        if kind == "kto":
            return kto_sql(f, conversational=conversational, good_rating=good_rating)
        raise StoreError(f"export kind is one of {', '.join(KINDS)}, not {kind!r}")

    def arrow(self, sql: str, params: Any = None) -> Any:
        """A query's result as a ``pyarrow.Table`` (straight from DuckDB, no per-row Python)."""
        return self._cur().sql(sql, params=params).to_arrow_table()

    def to_dataset(self, kind: str, filters: Filters | None = None, **options: Any) -> Any:
        """A ``datasets.Dataset`` of dpo/kto/rm items, built from Arrow. Options: conversational, good_rating."""
        return exchange.to_dataset(self, kind, filters, **options)

    def export(
        self,
        kind: str,
        fmt: str,
        path: str | Path,
        filters: Filters | None = None,
        *,
        conversational: bool = False,
        good_rating: float | None = None,
        allow_outside: bool = False,
        token: str | None = None,
    ) -> exchange.ExportResult:
        """Write dpo/kto/rm items as ``parquet``, ``jsonl``, ``hf`` (``save_to_disk``) or ``hub``
        (``push_to_hub``, ``path`` = repo id; needs ``token`` or ``HF_TOKEN``). A relative path is under the
        data dir; one outside it is refused unless ``allow_outside`` (the CLI sets it for a path it was given)."""
        return exchange.export(
            self, kind, fmt, path, filters, conversational=conversational, good_rating=good_rating,
            allow_outside=allow_outside, token=token,
        )  # fmt: skip

    def import_preferences(
        self,
        path: str | Path,
        *,
        prompt_set: str | None = None,
        annotator: str | None = None,
        imported_by: str | None = None,
        seed: int = 0,
    ) -> exchange.ImportResult:
        """Load a TRL preference set (JSONL, Parquet or a ``save_to_disk`` dir; standard or conversational).
        Each row becomes a prompt, two runs (strategy 'imported'), a comparison and a vote by ``annotator``
        (default ``import:<file name>``), so imported pairs come back out of every export. The chosen answer's
        position is shuffled from ``seed`` (half first, half second; the vote says 'A' or 'B' to match) and the
        seed is recorded in the runs' ``params``. A ``reference`` column fills the prompts' ``reference``. The
        file never names the annotator. ``imported_by`` (the logged-in user) restricts ``annotator`` to that
        user or the source, and is recorded in the runs' ``params``."""
        return exchange.import_preferences(
            self, Path(path), prompt_set=prompt_set, annotator=annotator, imported_by=imported_by, seed=seed
        )

    # -- summary ----------------------------------------------------------------------------------------------

    def stats(self) -> StoreStats:
        """Row counts, vote and verdict breakdowns, and how many DPO pairs and KTO rows an export would give."""
        cur = self._cur()
        counts = cur.execute(
            """SELECT (SELECT count(*) FROM prompts), (SELECT count(*) FROM runs),
                      (SELECT count(*) FROM comparisons), (SELECT count(*) FROM votes WHERE kind = 'pairwise'),
                      (SELECT count(*) FROM votes WHERE kind = 'ranking'), (SELECT count(*) FROM verdicts),
                      (SELECT count(*) FROM verdicts WHERE NOT ok), (SELECT count(*) FROM step_labels),
                      (SELECT count(*) FROM models), (SELECT count(*) FROM training_runs),
                      (SELECT count(DISTINCT annotator) FROM votes)"""
        ).fetchall()[0]
        keys = ("prompts", "runs", "comparisons", "votes", "rankings", "verdicts", "failed_verdicts",
                "step_labels", "models", "training_runs", "annotators")  # fmt: skip
        out: dict[str, Any] = {"schema_version": self.schema_version, **dict(zip(keys, counts, strict=True))}
        out["choices"] = dict(
            cur.execute(
                "SELECT choice, count(*) FROM votes WHERE choice IS NOT NULL GROUP BY 1 ORDER BY 1"
            ).fetchall()
        )
        for kind in ("dpo", "kto"):
            sql, params = self.items_sql(kind)
            out[f"{kind}_rows"] = int(self._scalar(f"SELECT count(*) FROM ({sql})", params))
        return cast(StoreStats, out)


# CTEs: who labelled which prompt (a vote on one of its comparisons), and how many distinct annotators each.
_PROMPT_LABELS = """WITH labelled AS (
    SELECT DISTINCT c.prompt_id, v.annotator FROM votes v JOIN comparisons c ON c.id = v.comparison_id
), labels AS (SELECT prompt_id, count(*) AS labels FROM labelled GROUP BY 1)"""

STEP_LABEL_JSON = (
    "to_json({'id': s.id, 'run_id': s.run_id, 'step_id': s.step_id, 'label': s.label, 'note': s.note, "
    "'annotator': s.annotator})"
)

# Why a bulk vote row ``s`` (with its comparison's size ``c.k``) is refused, or NULL: the checks of add_vote and
# add_ranking, in the same words.
_BULK_VOTE_CHECK = """CASE
    WHEN c.k IS NULL THEN 'no comparison with id ' || coalesce(s.comparison_id::VARCHAR, 'NULL')
    WHEN s.annotator IS NULL OR trim(s.annotator) = '' THEN 'annotator must not be empty'
    WHEN s.choice IS NOT NULL AND s.ranks IS NOT NULL THEN 'give a choice or ranks, not both'
    WHEN s.choice IS NULL AND s.ranks IS NULL THEN 'give a choice (A, B, tie, both_bad) or ranks'
    WHEN s.choice IS NOT NULL AND s.choice NOT IN ('A', 'B', 'tie', 'both_bad')
        THEN 'a vote is one of A, B, tie, both_bad, not ' || s.choice
    WHEN s.choice IS NOT NULL AND c.k <> 2
        THEN 'comparison ' || s.comparison_id || ' shows ' || c.k || ' runs; give ranks'
    WHEN s.choice IS NULL AND len(s.ranks) <> c.k
        THEN 'comparison ' || s.comparison_id || ' shows ' || c.k || ' runs but ' || len(s.ranks)
             || ' ranks were given'
    WHEN s.choice IS NULL AND (list_min(s.ranks) < 1 OR list_max(s.ranks) > c.k
                               OR len(list_filter(s.ranks, lambda x: x IS NULL)) > 0)
        THEN 'ranks go from 1 (best) to ' || c.k || ' for ' || c.k || ' runs'
    WHEN strpos(s.comment, chr(0)) > 0 THEN 'comment must not contain NUL bytes'
    WHEN length(s.comment) > $max_comment
        THEN 'comment is ' || length(s.comment) || ' characters long; the limit is ' || $max_comment
END"""


# A checked bulk row ``s`` as stored: a ranking of two runs becomes its pairwise choice (see add_ranking).
_NORMALISED = """CASE WHEN s.choice IS NULL AND len(s.ranks) > 2 THEN 'ranking' ELSE 'pairwise' END AS kind,
    coalesce(s.choice, CASE WHEN len(s.ranks) > 2 THEN NULL WHEN s.ranks[1] < s.ranks[2] THEN 'A'
                            WHEN s.ranks[2] < s.ranks[1] THEN 'B' ELSE 'tie' END) AS choice,
    CASE WHEN s.choice IS NULL AND len(s.ranks) > 2 THEN s.ranks END AS ranks"""


def _batch_json(row: str) -> str:
    """A bulk row's value as the label ``k.id`` (for ``label_audit``), in the shape of ``vote_json``."""
    return (
        f"to_json({{'id': k.id, 'kind': {row}.kind, 'choice': {row}.choice, 'ranks': {row}.ranks, "
        f"'comment': {row}.comment, 'created_at': {row}.created_at}})"
    )


def _differ(a: str, b: str) -> str:
    return " OR ".join(f"{a}.{c} IS DISTINCT FROM {b}.{c}" for c in ("kind", "choice", "ranks", "comment"))


# After _bulk_keys holds one row per (comparison, annotator) with its winning row ``win`` and stored ``old_id``:
# give new keys consecutive ids, audit every replaced value, update stored labels, insert new ones.
_BULK_VOTE_WRITES = (
    """CREATE OR REPLACE TEMP TABLE _bulk_keys AS
    SELECT * REPLACE (coalesce(old_id, $first - 1 + row_number() OVER (PARTITION BY old_id IS NULL
                                                                       ORDER BY first_i)) AS id)
    FROM _bulk_keys""",
    f"""INSERT INTO label_audit (kind, row_id, comparison_id, annotator, actor, action, old, new, "at")
    SELECT 'vote', k.id, v.comparison_id, v.annotator, coalesce($actor, v.annotator), 'replace', {vote_json("v")},
           {_batch_json("w")}, $at
    FROM _bulk_keys k JOIN votes v ON v.id = k.old_id JOIN _bulk_votes w ON w.i = k.win
    WHERE {_differ("v", "w")} ORDER BY k.id""",
    f"""INSERT INTO label_audit (kind, row_id, comparison_id, annotator, actor, action, old, new, "at")
    SELECT 'vote', k.id, l.comparison_id, l.annotator, coalesce($actor, l.annotator), 'replace', {_batch_json("l")},
           {_batch_json("w")}, $at
    FROM _bulk_votes l JOIN _bulk_keys k ON k.comparison_id = l.comparison_id AND k.annotator = l.annotator
    JOIN _bulk_votes w ON w.i = k.win
    WHERE l.rn > 1 AND ({_differ("l", "w")}) ORDER BY l.i""",
    f"""UPDATE votes SET kind = w.kind, choice = w.choice, ranks = w.ranks, comment = w.comment,
                      created_at = w.created_at
    FROM _bulk_keys k JOIN _bulk_votes w ON w.i = k.win
    WHERE votes.id = k.old_id AND ({_differ("votes", "w")})""",
    """INSERT INTO votes (id, comparison_id, kind, choice, ranks, annotator, comment, created_at)
    SELECT k.id, w.comparison_id, w.kind, w.choice, w.ranks, w.annotator, w.comment, w.created_at
    FROM _bulk_keys k JOIN _bulk_votes w ON w.i = k.win WHERE k.old_id IS NULL ORDER BY k.id""",
)


def _check_status(status: str) -> None:
    if status not in TRAINING_STATUSES:
        raise StoreError(f"training status is one of {', '.join(TRAINING_STATUSES)}, not {status!r}")


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key in _JSON_COLUMNS & row.keys():
        if isinstance(row[key], str):
            row[key] = json.loads(row[key])
    return row
