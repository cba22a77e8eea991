"""Schema migrations: an ordered list of small named functions, each applied once and recorded in
``_migrations``. Append new ones at the end; never edit or reorder an applied one.

Ids are BIGINTs from one sequence per table. There are no PRIMARY KEY, UNIQUE or FOREIGN KEY constraints:
DuckDB keeps an ART index for each, which slows bulk appends and blocks ``ALTER TABLE``; ids only ever come from
the sequences, and the ``Store`` verbs check references before they write. Times are UTC ``TIMESTAMP``s.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import duckdb

from storage.errors import StoreError

# A migration may return one line for ``Store.migration_report`` (what it changed in existing data).
Migration = Callable[[duckdb.DuckDBPyConnection], str | None]

_NOW = "(now() AT TIME ZONE 'UTC')"

_INITIAL = f"""
CREATE SEQUENCE prompts_id_seq;
CREATE SEQUENCE runs_id_seq;
CREATE SEQUENCE comparisons_id_seq;
CREATE SEQUENCE votes_id_seq;
CREATE SEQUENCE verdicts_id_seq;
CREATE SEQUENCE step_labels_id_seq;
CREATE SEQUENCE models_id_seq;
CREATE SEQUENCE training_runs_id_seq;

CREATE TABLE prompts (
    id BIGINT NOT NULL DEFAULT nextval('prompts_id_seq'),
    text VARCHAR NOT NULL,
    prompt_set VARCHAR NOT NULL DEFAULT 'default',
    category VARCHAR,
    tags VARCHAR[] NOT NULL DEFAULT [],
    created_at TIMESTAMP NOT NULL DEFAULT {_NOW}
);

-- One model answer to one prompt by one strategy; ``trace`` is the strategy's opaque JSON trace.
CREATE TABLE runs (
    id BIGINT NOT NULL DEFAULT nextval('runs_id_seq'),
    prompt_id BIGINT NOT NULL,
    model VARCHAR NOT NULL,
    strategy VARCHAR NOT NULL,
    variant VARCHAR,
    params JSON,
    answer VARCHAR NOT NULL,
    trace JSON,
    tokens_in INTEGER,
    tokens_out INTEGER,
    latency_s DOUBLE,
    created_at TIMESTAMP NOT NULL DEFAULT {_NOW}
);

-- What a person was shown: runs of one prompt in screen positions (0 = left or first).
CREATE TABLE comparisons (
    id BIGINT NOT NULL DEFAULT nextval('comparisons_id_seq'),
    prompt_id BIGINT NOT NULL,
    blind BOOLEAN NOT NULL DEFAULT TRUE,
    created_at TIMESTAMP NOT NULL DEFAULT {_NOW}
);
CREATE TABLE comparison_runs (
    comparison_id BIGINT NOT NULL,
    position INTEGER NOT NULL,
    run_id BIGINT NOT NULL
);

-- A pairwise vote keeps its ``choice`` ('A' = position 0 wins; 'both_bad' is a tie whose runs are both
-- undesirable). A k-way ranking keeps ``ranks``: ranks[position + 1] is the rank of the run at that position
-- (1 = best, equal ranks = tie).
CREATE TABLE votes (
    id BIGINT NOT NULL DEFAULT nextval('votes_id_seq'),
    comparison_id BIGINT NOT NULL,
    kind VARCHAR NOT NULL,
    choice VARCHAR,
    ranks INTEGER[],
    annotator VARCHAR NOT NULL,
    comment VARCHAR,
    created_at TIMESTAMP NOT NULL DEFAULT {_NOW},
    CHECK ((kind = 'pairwise' AND choice IN ('A', 'B', 'tie', 'both_bad') AND ranks IS NULL)
           OR (kind = 'ranking' AND choice IS NULL AND ranks IS NOT NULL))
);

-- A judge's verdict on one run (single) or two runs (pairwise; run_ids[1] is A, run_ids[2] is B).
CREATE TABLE verdicts (
    id BIGINT NOT NULL DEFAULT nextval('verdicts_id_seq'),
    judge VARCHAR NOT NULL,
    judge_model VARCHAR,
    judge_config JSON,
    mode VARCHAR NOT NULL CHECK (mode IN ('single', 'pairwise')),
    run_ids BIGINT[] NOT NULL,
    comparison_id BIGINT,
    orders VARCHAR[] NOT NULL DEFAULT [],
    winner VARCHAR CHECK (winner IN ('A', 'B', 'tie', 'inconsistent')),
    rating DOUBLE,
    prob_a DOUBLE,
    scores JSON,
    raw_output VARCHAR,
    ok BOOLEAN NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT {_NOW}
);

CREATE TABLE step_labels (
    id BIGINT NOT NULL DEFAULT nextval('step_labels_id_seq'),
    run_id BIGINT NOT NULL,
    step_id VARCHAR NOT NULL,
    label VARCHAR NOT NULL,
    note VARCHAR,
    annotator VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT {_NOW},
    updated_at TIMESTAMP
);

-- Lineage: a model is a base, or an adapter trained from a parent model by a training run.
CREATE TABLE models (
    id BIGINT NOT NULL DEFAULT nextval('models_id_seq'),
    name VARCHAR NOT NULL,
    backend VARCHAR NOT NULL,
    base VARCHAR,
    adapter_path VARCHAR,
    parent VARCHAR,
    training_run_id BIGINT,
    config JSON,
    created_at TIMESTAMP NOT NULL DEFAULT {_NOW}
);

CREATE TABLE training_runs (
    id BIGINT NOT NULL DEFAULT nextval('training_runs_id_seq'),
    method VARCHAR NOT NULL,
    base_model VARCHAR,
    config JSON,
    status VARCHAR NOT NULL,
    output_path VARCHAR,
    log_path VARCHAR,
    error VARCHAR,
    created_at TIMESTAMP NOT NULL DEFAULT {_NOW},
    started_at TIMESTAMP,
    finished_at TIMESTAMP
);
CREATE TABLE metrics (
    training_run_id BIGINT NOT NULL,
    step INTEGER NOT NULL,
    name VARCHAR NOT NULL,
    value DOUBLE,
    created_at TIMESTAMP NOT NULL DEFAULT {_NOW}
);
"""


def vote_json(v: str = "v") -> str:
    """A vote's value in ``label_audit`` (old/new), as a SQL expression over the votes row aliased ``v``."""
    return (
        f"to_json({{'id': {v}.id, 'kind': {v}.kind, 'choice': {v}.choice, 'ranks': {v}.ranks, "
        f"'comment': {v}.comment, 'created_at': {v}.created_at}})"
    )


_M003 = f"""
-- Every replaced or deleted label (a vote or a step label) and who did it; ``old``/``new`` are the values as JSON.
CREATE SEQUENCE label_audit_id_seq;
CREATE TABLE label_audit (
    id BIGINT NOT NULL DEFAULT nextval('label_audit_id_seq'),
    kind VARCHAR NOT NULL CHECK (kind IN ('vote', 'step_label')),
    row_id BIGINT NOT NULL,
    comparison_id BIGINT,
    annotator VARCHAR,
    actor VARCHAR,
    action VARCHAR NOT NULL CHECK (action IN ('replace', 'delete', 'dedupe')),
    old JSON,
    new JSON,
    "at" TIMESTAMP NOT NULL DEFAULT {_NOW}
);

-- A prompt an annotator chose not to label: it is not offered to them again.
CREATE TABLE skips (
    prompt_id BIGINT NOT NULL,
    annotator VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT {_NOW}
);

-- Settings of a prompt set (``prompts.prompt_set`` names it): Markdown guidelines, labels wanted per prompt.
CREATE TABLE prompt_sets (
    name VARCHAR NOT NULL,
    guidelines VARCHAR,
    min_labels INTEGER CHECK (min_labels >= 1),
    updated_at TIMESTAMP NOT NULL DEFAULT {_NOW}
);

-- A run that failed keeps its error (NULL = it succeeded); failed runs are never compared, judged or exported.
ALTER TABLE runs ADD COLUMN error VARCHAR;
"""


def m001_initial(con: duckdb.DuckDBPyConnection) -> None:
    """Prompts, runs, comparisons, votes, verdicts, step labels, models, training runs and their metrics."""
    con.execute(_INITIAL).fetchall()


def m002_prompt_messages(con: duckdb.DuckDBPyConnection) -> None:
    """Multi-turn prompts (from imported conversational sets) keep their full message list as JSON."""
    con.execute("ALTER TABLE prompts ADD COLUMN messages JSON").fetchall()


def m003_one_label_per_annotator(con: duckdb.DuckDBPyConnection) -> str | None:
    """The label audit table, skips, prompt-set settings and ``runs.error``; then one label per (comparison,
    annotator): the latest (by created_at, then id) stays, the others move to ``label_audit`` ('dedupe')."""
    con.execute(_M003).fetchall()
    con.execute(
        """CREATE TEMP TABLE _dupes AS
        SELECT id AS dup_id, keep_id FROM (
            SELECT id, first_value(id) OVER (PARTITION BY comparison_id, annotator
                                             ORDER BY created_at DESC, id DESC) AS keep_id
            FROM votes)
        WHERE id <> keep_id"""
    ).fetchall()
    moved = con.execute("SELECT count(*) FROM _dupes").fetchall()[0][0]
    con.execute(
        f"""INSERT INTO label_audit (kind, row_id, comparison_id, annotator, actor, action, old, new)
        SELECT 'vote', x.keep_id, v.comparison_id, v.annotator, 'migration', 'dedupe', {vote_json("v")},
               {vote_json("k")}
        FROM _dupes x JOIN votes v ON v.id = x.dup_id JOIN votes k ON k.id = x.keep_id
        ORDER BY v.id;
        DELETE FROM votes WHERE id IN (SELECT dup_id FROM _dupes);
        DROP TABLE _dupes"""
    ).fetchall()
    return f"moved {moved} duplicate label{'s' if moved != 1 else ''} to label_audit" if moved else None


def m004_verdict_traces(con: duckdb.DuckDBPyConnection) -> None:
    """A verdict keeps the trace of the model calls behind it (the judge's steps), as a run keeps its own."""
    con.execute("ALTER TABLE verdicts ADD COLUMN trace JSON").fetchall()


def m005_prompt_reference(con: duckdb.DuckDBPyConnection) -> None:
    """A prompt may carry a known reference answer (e.g. a math item's result), for reference-guided judges;
    imported sets fill it from their ``reference`` column."""
    con.execute("ALTER TABLE prompts ADD COLUMN reference VARCHAR").fetchall()


MIGRATIONS: list[Migration] = [
    m001_initial,
    m002_prompt_messages,
    m003_one_label_per_annotator,
    m004_verdict_traces,
    m005_prompt_reference,
]


def applied(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Names of the migrations applied to this database, in order."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS _migrations "
        f"(version INTEGER NOT NULL, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL DEFAULT {_NOW})"
    ).fetchall()
    return [r[0] for r in con.execute("SELECT name FROM _migrations ORDER BY version").fetchall()]


def migrate(
    con: duckdb.DuckDBPyConnection,
    migrations: Sequence[Migration] = MIGRATIONS,
    report: list[str] | None = None,
) -> int:
    """Apply the pending migrations, each in its own transaction; return the schema version (count applied).
    A migration's report line is appended to ``report`` as ``"<name>: <line>"``."""
    done = applied(con)
    names = [m.__name__ for m in migrations]
    if done != names[: len(done)]:
        unknown = next(d for i, d in enumerate(done) if i >= len(names) or d != names[i])
        raise StoreError(
            f"the store's schema has migration {unknown!r}, which this version does not know; "
            "it was written by a newer studio, so upgrade studio (or use another data dir)"
        )
    for version, migration in enumerate(migrations[len(done) :], start=len(done) + 1):
        con.begin()
        try:
            line = migration(con)
            con.execute(
                "INSERT INTO _migrations (version, name) VALUES (?, ?)", [version, migration.__name__]
            ).fetchall()
            con.commit()
        except BaseException:
            con.rollback()
            raise
        if line and report is not None:
            report.append(f"{migration.__name__}: {line}")
    return len(migrations)
