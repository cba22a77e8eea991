"""The preference store: one DuckDB file, one ``Store`` class, a narrow set of verbs. Nothing else writes SQL.

- **Ids** are BIGINTs from one sequence per table; every ``add_*`` verb returns the new id, bulk verbs return the
  ids in input order. Readers return plain dicts (JSON columns decoded).
- **Threads:** each thread gets its own cursor (``con.cursor()``); writes also take one lock, so that many
  threads of a server process can write at once without transaction conflicts. One ``Store`` per file per
  process: DuckDB lets only one process open a file for writing, and a second gets ``StoreLocked`` naming the
  holder's PID.
- **Text** is always bound as a parameter, so any string round-trips exactly (quotes, NUL, emoji, RTL, megabytes).
- **Times** are naive UTC datetimes; an ``at=`` argument may be naive UTC or timezone-aware.
- **Readers** (``list_*``) return the newest rows first (prompts: oldest first); ``limit=None`` returns all.
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
from typing import Any

import duckdb

from storage import exchange
from storage.errors import StoreError, StoreLocked
from storage.migrations import MIGRATIONS, Migration, migrate
from storage.pairs import Filters, kto_sql, pair_details_sql, pairs_sql, win_counts_sql

CHOICES = ("A", "B", "tie", "both_bad")
# Readers show a pairwise vote's ranks too, derived from its choice.
VOTE_RANKS = "coalesce(ranks, CASE choice WHEN 'A' THEN [1, 2] WHEN 'B' THEN [2, 1] ELSE [1, 1] END)"
WINNERS = ("A", "B", "tie", "inconsistent")
TRAINING_STATUSES = ("pending", "running", "done", "failed", "cancelled")
KINDS = ("dpo", "kto", "rm")

_LOCK_RE = re.compile(r"Conflicting lock is held in (?P<holder>.*?) \(PID (?P<pid>\d+)\)")
_JSON_COLUMNS = {"params", "trace", "judge_config", "scores", "config", "messages"}


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
        with self._lock:
            self._version = migrate(self._con, migrations)

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

    def _rows(self, sql: str, params: Any = None) -> list[dict[str, Any]]:
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
                SELECT DISTINCT t, $set, $category FROM unnest($texts) u(t)
                WHERE NOT EXISTS (SELECT 1 FROM prompts p
                                  WHERE p.prompt_set = $set AND p.text = t AND p.messages IS NULL)""",
                params,
            ).fetchall()
            rows = cur.execute(
                """SELECT min(p.id) FROM (SELECT unnest($texts) AS t, generate_subscripts($texts, 1) AS i) u
                JOIN prompts p ON p.prompt_set = $set AND p.text = u.t AND p.messages IS NULL
                GROUP BY u.i ORDER BY u.i""",
                {"texts": texts, "set": prompt_set},
            ).fetchall()
        return [int(r[0]) for r in rows]

    def get_prompt(self, prompt_id: int) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM prompts WHERE id = ?", [prompt_id])
        return rows[0] if rows else None

    def list_prompts(
        self, prompt_set: str | None = None, *, limit: int | None = 100, offset: int = 0
    ) -> list[dict]:
        return self._rows(
            "SELECT * FROM prompts WHERE ? IS NULL OR prompt_set = ? ORDER BY id LIMIT ? OFFSET ?",
            [prompt_set, prompt_set, limit, offset],
        )

    def prompt_sets(self) -> list[str]:
        return [r["prompt_set"] for r in self._rows("SELECT DISTINCT prompt_set FROM prompts ORDER BY 1")]

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
    ) -> int:
        """Record one answer; ``trace`` is the strategy's JSON-serialisable trace, stored as JSON text."""
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
        }
        with self._write() as cur:
            self._require("prompts", prompt_id, "prompt", cur)
            return self._insert(cur, "runs", values)

    def add_runs_bulk(self, rows: Any) -> list[int]:
        """Insert many runs from an Arrow table or pandas frame; ids in row order.

        Columns: ``prompt_id, model, strategy, answer`` and optionally ``variant, params, trace`` (JSON text),
        ``tokens_in, tokens_out, latency_s, created_at``."""
        optional = ("variant", "params", "trace", "tokens_in", "tokens_out", "latency_s", "created_at")
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

    def get_run(self, run_id: int) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM runs WHERE id = ?", [run_id])
        return rows[0] if rows else None

    def list_runs(
        self,
        *,
        prompt_id: int | None = None,
        model: str | None = None,
        strategy: str | None = None,
        limit: int | None = 100,
        offset: int = 0,
    ) -> list[dict[str, Any]]:
        """Runs without their traces (use ``get_run`` for one run's trace), newest first."""
        return self._rows(
            """SELECT * EXCLUDE (trace) FROM runs
            WHERE ($p IS NULL OR prompt_id = $p) AND ($m IS NULL OR model = $m) AND ($s IS NULL OR strategy = $s)
            ORDER BY id DESC LIMIT $limit OFFSET $offset""",
            {"p": prompt_id, "m": model, "s": strategy, "limit": limit, "offset": offset},
        )

    # -- comparisons, votes, rankings -------------------------------------------------------------------------

    def add_comparison(
        self, run_ids: Sequence[int], *, blind: bool = True, at: datetime | None = None
    ) -> int:
        """Runs of one prompt as shown on screen: ``run_ids[0]`` at position 0 (left or first)."""
        ids = list(run_ids)
        if len(ids) < 2 or len(set(ids)) != len(ids):
            raise StoreError(f"a comparison needs two or more distinct runs, not {ids}")
        with self._write() as cur:
            prompts = cur.execute(
                "SELECT id, prompt_id FROM runs WHERE list_contains(?, id)", [ids]
            ).fetchall()
            if len(prompts) != len(ids):
                missing = sorted(set(ids) - {r[0] for r in prompts})
                raise StoreError(f"no run with id {missing[0]}")
            if len({r[1] for r in prompts}) != 1:
                raise StoreError("the runs of a comparison must answer the same prompt")
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
                OR count(r.id) <> len(t.run_ids) OR count(DISTINCT r.prompt_id) <> 1
            ORDER BY t.i LIMIT 1"""
        ).fetchall()
        if bad:
            raise StoreError(
                f"comparison row {bad[0][0]}: needs two or more distinct, existing runs of one prompt"
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

    def get_comparison(self, comparison_id: int) -> dict[str, Any] | None:
        rows = self._rows(
            """SELECT c.*, (SELECT list(run_id ORDER BY position) FROM comparison_runs
                            WHERE comparison_id = c.id) AS run_ids
            FROM comparisons c WHERE c.id = ?""",
            [comparison_id],
        )
        return rows[0] if rows else None

    def list_comparisons(
        self, *, prompt_id: int | None = None, limit: int | None = 100
    ) -> list[dict[str, Any]]:
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
    ) -> int:
        """A pairwise vote on a two-run comparison: 'A' (position 0), 'B' (position 1), 'tie' or 'both_bad'."""
        if choice not in CHOICES:
            raise StoreError(f"a vote is one of {', '.join(CHOICES)}, not {choice!r}")
        _text(annotator, "annotator", empty=False)
        with self._write() as cur:
            if (k := self._size(cur, comparison_id)) != 2:
                raise StoreError(f"comparison {comparison_id} shows {k} runs; rank them with add_ranking")
            return self._insert(
                cur,
                "votes",
                self._vote(comparison_id, "pairwise", choice, None, annotator, comment, at),
            )

    def add_ranking(
        self,
        comparison_id: int,
        ranks: Sequence[int],
        annotator: str,
        *,
        comment: str | None = None,
        at: datetime | None = None,
    ) -> int:
        """A k-way ranking: ``ranks[i]`` is the rank of the run at position ``i`` (1 = best; equal = tie)."""
        ranks = list(ranks)
        if not ranks or any(not isinstance(r, int) or isinstance(r, bool) or r < 1 for r in ranks):
            raise StoreError(f"ranks must be whole numbers >= 1 (1 = best), not {ranks}")
        _text(annotator, "annotator", empty=False)
        with self._write() as cur:
            if (k := self._size(cur, comparison_id)) != len(ranks):
                raise StoreError(
                    f"comparison {comparison_id} shows {k} runs but {len(ranks)} ranks were given"
                )
            return self._insert(
                cur, "votes", self._vote(comparison_id, "ranking", None, ranks, annotator, comment, at)
            )

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

    def add_votes_bulk(self, rows: Any) -> list[int]:
        """Many votes from an Arrow table or pandas frame; ids in row order.

        Columns: ``comparison_id, annotator`` and ``choice`` (pairwise) or ``ranks`` (ranking), optionally
        ``comment, created_at``. Every row is checked against its comparison's size."""
        with self._write() as cur, self._source(cur, rows) as src:
            cols = self._columns(
                cur, src, ("comparison_id", "annotator"), ("choice", "ranks", "comment", "created_at")
            )
            if "choice" not in cols and "ranks" not in cols:
                raise StoreError("bulk votes need a 'choice' or a 'ranks' column")
            return self._insert_votes(cur, src, cols)

    def _insert_votes(self, cur: duckdb.DuckDBPyConnection, src: str, cols: list[str]) -> list[int]:
        """Check every row against its comparison's size, then append with consecutive ids."""
        choice = "choice" if "choice" in cols else "NULL::VARCHAR AS choice"
        ranks = "ranks" if "ranks" in cols else "NULL::INTEGER[] AS ranks"
        extra = [c for c in ("comment", "created_at") if c in cols]
        rows = f"SELECT {', '.join(['comparison_id', 'annotator', choice, ranks, *extra])} FROM {src}"
        ok = """coalesce(c.k IS NOT NULL AND s.annotator <> '' AND (
                   (s.choice IN ('A', 'B', 'tie', 'both_bad') AND s.ranks IS NULL AND c.k = 2)
                OR (s.choice IS NULL AND len(s.ranks) = c.k AND list_min(s.ranks) >= 1)), FALSE)"""
        sizes = "(SELECT comparison_id, count(*) AS k FROM comparison_runs GROUP BY 1) c"

        def bad(rel: str, what: str) -> Any:
            sql = f"SELECT {what} FROM ({rel}) s LEFT JOIN {sizes} ON c.comparison_id = s.comparison_id WHERE NOT {ok}"
            return self._scalar(sql, cur=cur)

        if bad(rows, "count(*)"):  # only then number the rows, to name the first bad one
            first_bad = bad(f"SELECT row_number() OVER () AS i, * FROM ({rows})", "min(s.i)")
            raise StoreError(
                f"vote row {first_bad}: unknown comparison, bad choice or ranks, or no annotator"
            )
        n = int(self._scalar(f"SELECT count(*) FROM {src}", cur=cur))
        first = self._reserve(cur, "votes", n)
        listed = ", ".join(["comparison_id", "annotator", "choice", "ranks", *extra])
        cur.execute(
            f"""INSERT INTO votes (id, kind, {listed})
            SELECT ids.id, CASE WHEN s.choice IS NULL THEN 'ranking' ELSE 'pairwise' END, {listed}
            FROM ({rows}) s POSITIONAL JOIN (SELECT $first + range AS id FROM range($n)) ids""",
            {"first": first, "n": n},
        ).fetchall()
        return list(range(first, first + n))

    def delete_vote(self, vote_id: int) -> None:
        with self._write() as cur:
            self._require("votes", vote_id, "vote", cur)
            cur.execute("DELETE FROM votes WHERE id = ?", [vote_id]).fetchall()

    def list_votes(
        self, *, comparison_id: int | None = None, annotator: str | None = None, limit: int | None = 100
    ) -> list[dict[str, Any]]:
        return self._rows(
            f"""SELECT * REPLACE ({VOTE_RANKS} AS ranks) FROM votes
            WHERE ($c IS NULL OR comparison_id = $c) AND ($a IS NULL OR annotator = $a)
            ORDER BY id DESC LIMIT $limit""",
            {"c": comparison_id, "a": annotator, "limit": limit},
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
    ) -> int:
        """A judge's verdict. ``single``: one run and its ``rating``. ``pairwise``: runs (A, B) -- or those of
        ``comparison_id`` -- and ``winner`` in A/B/tie/inconsistent, ``prob_a`` = P(A better) if the judge
        gives one. ``orders`` lists the presentation orders used (e.g. ["AB", "BA"]). A failed parse is
        ``ok=False`` with its ``raw_output``; it is stored and counted, never dropped."""
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
            }  # fmt: skip
            return self._insert(cur, "verdicts", values)

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
        return ids

    def list_verdicts(
        self,
        *,
        run_id: int | None = None,
        comparison_id: int | None = None,
        judge: str | None = None,
        limit: int | None = 100,
    ) -> list[dict[str, Any]]:
        return self._rows(
            """SELECT * FROM verdicts
            WHERE ($r IS NULL OR list_contains(run_ids, $r)) AND ($c IS NULL OR comparison_id = $c)
              AND ($j IS NULL OR judge = $j)
            ORDER BY id DESC LIMIT $limit""",
            {"r": run_id, "c": comparison_id, "j": judge, "limit": limit},
        )

    # -- step labels ------------------------------------------------------------------------------------------

    def add_step_label(
        self, run_id: int, step_id: str, label: str, annotator: str, *, note: str | None = None
    ) -> int:
        """A person's label on one step of a run's trace (for example 'wrong' or 'good')."""
        values = {
            "run_id": run_id,
            "step_id": _text(step_id, "step id", empty=False),
            "label": _text(label, "label", empty=False),
            "note": note,
            "annotator": _text(annotator, "annotator", empty=False),
            "created_at": _now(),
        }
        with self._write() as cur:
            self._require("runs", run_id, "run", cur)
            return self._insert(cur, "step_labels", values)

    def update_step_label(self, label_id: int, *, label: str | None = None, note: str | None = None) -> None:
        with self._write() as cur:
            self._require("step_labels", label_id, "step label", cur)
            cur.execute(
                """UPDATE step_labels SET label = coalesce(?, label), note = coalesce(?, note), updated_at = ?
                WHERE id = ?""",
                [label, note, _now(), label_id],
            ).fetchall()

    def delete_step_label(self, label_id: int) -> None:
        with self._write() as cur:
            self._require("step_labels", label_id, "step label", cur)
            cur.execute("DELETE FROM step_labels WHERE id = ?", [label_id]).fetchall()

    def list_step_labels(self, run_id: int | None = None) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM step_labels WHERE ? IS NULL OR run_id = ? ORDER BY id", [run_id, run_id]
        )

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

    def get_model(self, name: str) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM models WHERE name = ?", [name])
        return rows[0] if rows else None

    def list_models(self) -> list[dict[str, Any]]:
        return self._rows("SELECT * FROM models ORDER BY id")

    def lineage(self, name: str) -> list[dict[str, Any]]:
        """The model, then its parent, grandparent... as far as the store knows them."""
        chain: list[dict[str, Any]] = []
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

    def get_training_run(self, training_run_id: int) -> dict[str, Any] | None:
        rows = self._rows("SELECT * FROM training_runs WHERE id = ?", [training_run_id])
        return rows[0] if rows else None

    def list_training_runs(
        self, *, status: str | None = None, limit: int | None = 100
    ) -> list[dict[str, Any]]:
        return self._rows(
            "SELECT * FROM training_runs WHERE ? IS NULL OR status = ? ORDER BY id DESC LIMIT ?",
            [status, status, limit],
        )

    # -- preference items -------------------------------------------------------------------------------------

    def preference_pairs(self, filters: Filters | None = None) -> list[dict[str, Any]]:
        """Deduplicated (prompt, chosen, rejected) pairs with their provenance; see ``storage.pairs``."""
        return self._rows(*pair_details_sql(filters or Filters()))

    def kto_rows(self, filters: Filters | None = None, *, good_rating: float | None = None) -> list[dict]:
        """KTO rows (prompt, completion, label); ties, both-bad and ratings as documented in ``storage.pairs``."""
        return self._rows(*kto_sql(filters or Filters(), good_rating=good_rating))

    def rm_pairs(self, filters: Filters | None = None) -> list[dict[str, Any]]:
        """Reward-model pairs: prompt, chosen, rejected, margin (mean single-verdict rating difference, or None)."""
        return self._rows(*pairs_sql(filters or Filters(), margin=True))

    def win_counts(self, filters: Filters | None = None, *, by: str = "model") -> list[dict[str, Any]]:
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
        if kind == "rm":
            return pairs_sql(f, conversational=conversational, margin=True)
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
        self, path: str | Path, *, prompt_set: str | None = None, annotator: str | None = None
    ) -> exchange.ImportResult:
        """Load a TRL preference set (JSONL, Parquet or a ``save_to_disk`` dir; standard or conversational).
        Each row becomes a prompt, two runs (strategy 'imported'), a comparison and an 'A' vote by
        ``import:<file name>``, so imported pairs come back out of every export."""
        return exchange.import_preferences(self, Path(path), prompt_set=prompt_set, annotator=annotator)

    # -- summary ----------------------------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
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
        return out


def _check_status(status: str) -> None:
    if status not in TRAINING_STATUSES:
        raise StoreError(f"training status is one of {', '.join(TRAINING_STATUSES)}, not {status!r}")


def _decode(row: dict[str, Any]) -> dict[str, Any]:
    for key in _JSON_COLUMNS & row.keys():
        if isinstance(row[key], str):
            row[key] = json.loads(row[key])
    return row
