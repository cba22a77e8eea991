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

Migration = Callable[[duckdb.DuckDBPyConnection], None]

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


def m001_initial(con: duckdb.DuckDBPyConnection) -> None:
    """Prompts, runs, comparisons, votes, verdicts, step labels, models, training runs and their metrics."""
    con.execute(_INITIAL).fetchall()


def m002_prompt_messages(con: duckdb.DuckDBPyConnection) -> None:
    """Multi-turn prompts (from imported conversational sets) keep their full message list as JSON."""
    con.execute("ALTER TABLE prompts ADD COLUMN messages JSON").fetchall()


MIGRATIONS: list[Migration] = [m001_initial, m002_prompt_messages]


def applied(con: duckdb.DuckDBPyConnection) -> list[str]:
    """Names of the migrations applied to this database, in order."""
    con.execute(
        "CREATE TABLE IF NOT EXISTS _migrations "
        f"(version INTEGER NOT NULL, name VARCHAR NOT NULL, applied_at TIMESTAMP NOT NULL DEFAULT {_NOW})"
    ).fetchall()
    return [r[0] for r in con.execute("SELECT name FROM _migrations ORDER BY version").fetchall()]


def migrate(con: duckdb.DuckDBPyConnection, migrations: Sequence[Migration] = MIGRATIONS) -> int:
    """Apply the pending migrations, each in its own transaction; return the schema version (count applied)."""
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
            migration(con)
            con.execute(
                "INSERT INTO _migrations (version, name) VALUES (?, ?)", [version, migration.__name__]
            ).fetchall()
            con.commit()
        except BaseException:
            con.rollback()
            raise
    return len(migrations)
