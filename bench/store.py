"""Store benchmark: the DuckDB ``Store`` against the same three operations written plainly on SQLite.

1. ingest N votes (DuckDB: ``add_votes_bulk`` from Arrow; SQLite: ``executemany`` in one transaction);
2. aggregate the votes into pairwise win counts per model and fit Bradley-Terry (the same numpy fit for both);
3. export the DPO pairs to a ``datasets.Dataset`` (DuckDB: Arrow; SQLite: a Python loop over the rows).

    python bench/store.py               # 1M votes, 100k DPO pairs
    python bench/store.py --n 20000     # a quick run

The setup (prompts, runs, comparisons) is identical on both sides and not timed. Every comparison has one latent
outcome drawn from Bradley-Terry strengths; its votes follow it or are ties / both-bad, so the number of distinct
DPO pairs is the number of comparisons (``--pairs``, default n / 10).
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from storage import Store  # noqa: E402

N_MODELS = 16
PAIRS_PER_PROMPT = 10
ANNOTATORS = [f"annotator-{i}" for i in range(50)]


@dataclass
class Data:
    prompts: list[str]
    run_prompt: np.ndarray  # prompt index of each run
    run_model: np.ndarray
    answers: list[str]
    comparisons: np.ndarray  # (C, 2) run indices, position 0 first
    vote_cmp: np.ndarray  # comparison index of each vote
    vote_choice: np.ndarray  # 'A', 'B', 'tie', 'both_bad'
    vote_annotator: np.ndarray
    strengths: np.ndarray


def make_data(n_votes: int, n_pairs: int, seed: int = 0) -> Data:
    rng = np.random.default_rng(seed)
    n_prompts = max(1, n_pairs // PAIRS_PER_PROMPT)
    n_pairs = n_prompts * PAIRS_PER_PROMPT
    prompts = [
        f"Question {i}: explain topic {rng.integers(1_000_000)} step by step." for i in range(n_prompts)
    ]
    run_prompt = np.repeat(np.arange(n_prompts), N_MODELS)
    run_model = np.tile(np.arange(N_MODELS), n_prompts)
    words = np.array("the a model answer reason step verify fact because so then therefore 42 is not".split())
    filler = [" ".join(rng.choice(words, 40)) for _ in range(997)]
    answers = [f"Run {i}: {filler[i % 997]}" for i in range(len(run_prompt))]
    # PAIRS_PER_PROMPT distinct model pairs per prompt, so no two comparisons share a pair of runs
    iu = np.array(np.triu_indices(N_MODELS, 1)).T
    picks = np.argsort(rng.random((n_prompts, len(iu))), axis=1)[:, :PAIRS_PER_PROMPT]
    model_pairs = iu[picks].reshape(-1, 2)
    base = np.repeat(np.arange(n_prompts) * N_MODELS, PAIRS_PER_PROMPT)[:, None]
    swap = rng.random(n_pairs) < 0.5  # random screen positions
    comparisons = base + np.where(swap[:, None], model_pairs[:, ::-1], model_pairs)
    strengths = rng.normal(0, 1, N_MODELS)
    a, b = run_model[comparisons[:, 0]], run_model[comparisons[:, 1]]
    a_wins = rng.random(n_pairs) < 1 / (1 + np.exp(strengths[b] - strengths[a]))
    vote_cmp = np.arange(n_votes) % n_pairs
    kind = rng.choice(4, n_votes, p=[0.9, 0.0, 0.05, 0.05])  # decisive, -, tie, both_bad
    decisive = np.where(a_wins[vote_cmp], "A", "B")
    vote_choice = np.where(kind == 0, decisive, np.where(kind == 2, "tie", "both_bad"))
    # one label per (comparison, annotator), as the store keeps: the k-th vote on a comparison is by a distinct
    # annotator (the SQLite side counts every row, so the two agree while votes per comparison <= 50)
    offset = rng.integers(len(ANNOTATORS), size=n_pairs)[vote_cmp]
    vote_annotator = np.array(ANNOTATORS)[(np.arange(n_votes) // n_pairs + offset) % len(ANNOTATORS)]
    return Data(prompts, run_prompt, run_model, answers, comparisons, vote_cmp, vote_choice, vote_annotator,
                strengths)  # fmt: skip


def bradley_terry(models: list[str], wins: list[tuple[str, str, int]], iters: int = 1000) -> dict[str, float]:
    """Bradley-Terry strengths by the MM algorithm (Hunter 2004), as log-strengths centred on 0."""
    index = {m: i for i, m in enumerate(models)}
    w = np.zeros((len(models), len(models)))
    for winner, loser, count in wins:
        w[index[winner], index[loser]] += count
    games = w + w.T
    p = np.ones(len(models))
    for _ in range(iters):
        denom = (games / (p[:, None] + p[None, :])).sum(axis=1)
        new = w.sum(axis=1) / np.maximum(denom, 1e-300)
        new /= np.exp(np.log(np.maximum(new, 1e-300)).mean())
        if np.max(np.abs(new - p)) < 1e-10:
            p = new
            break
        p = new
    scores = np.log(np.maximum(p, 1e-300))
    return {m: float(scores[i] - scores.mean()) for i, m in enumerate(models)}


# -- DuckDB (the Store) -----------------------------------------------------------------------------------------


class DuckSide:
    name = "duckdb"

    def __init__(self, path: Path, d: Data) -> None:
        import pyarrow as pa

        self.pa = pa
        self.store = Store(path)
        prompt_ids = np.array(self.store.add_prompts(d.prompts, "bench"))
        run_rows = pa.table({
            "prompt_id": prompt_ids[d.run_prompt], "model": [f"model-{m:02d}" for m in d.run_model],
            "strategy": ["system1"] * len(d.answers), "answer": d.answers,
        })  # fmt: skip
        run_ids = np.array(self.store.add_runs_bulk(run_rows))
        self.cmp_ids = np.array(self.store.add_comparisons_bulk(run_ids[d.comparisons].tolist()))
        self.votes = pa.table({
            "comparison_id": self.cmp_ids[d.vote_cmp], "choice": d.vote_choice.astype(str),
            "annotator": d.vote_annotator.astype(str),
        })  # fmt: skip

    def ingest(self) -> int:
        return len(self.store.add_votes_bulk(self.votes))

    def win_counts(self) -> list[tuple[str, str, int]]:
        return [(r["winner"], r["loser"], r["wins"]) for r in self.store.win_counts()]

    def export(self) -> Any:
        return self.store.to_dataset("dpo")

    def close(self) -> None:
        self.store.close()


# -- SQLite, written plainly ------------------------------------------------------------------------------------

SQLITE_SCHEMA = """
CREATE TABLE prompts (id INTEGER PRIMARY KEY, text TEXT NOT NULL, prompt_set TEXT NOT NULL);
CREATE TABLE runs (id INTEGER PRIMARY KEY, prompt_id INTEGER NOT NULL, model TEXT NOT NULL, strategy TEXT NOT NULL,
                   answer TEXT NOT NULL);
CREATE TABLE comparisons (id INTEGER PRIMARY KEY, prompt_id INTEGER NOT NULL, blind INTEGER NOT NULL);
CREATE TABLE comparison_runs (comparison_id INTEGER NOT NULL, position INTEGER NOT NULL, run_id INTEGER NOT NULL,
                              PRIMARY KEY (comparison_id, position));
CREATE TABLE votes (id INTEGER PRIMARY KEY, comparison_id INTEGER NOT NULL, choice TEXT NOT NULL,
                    annotator TEXT NOT NULL, comment TEXT, created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP);
"""

# Winner and loser runs of each decisive vote.
SQLITE_DECISIVE = """
FROM votes v
JOIN comparison_runs cw ON cw.comparison_id = v.comparison_id AND cw.position = (v.choice = 'B')
JOIN comparison_runs cl ON cl.comparison_id = v.comparison_id AND cl.position = (v.choice = 'A')
JOIN runs rw ON rw.id = cw.run_id
JOIN runs rl ON rl.id = cl.run_id
WHERE v.choice IN ('A', 'B')
"""


class SqliteSide:
    name = "sqlite"

    def __init__(self, path: Path, d: Data) -> None:
        self.con = sqlite3.connect(path)
        self.con.executescript(SQLITE_SCHEMA)
        with self.con:
            self.con.executemany("INSERT INTO prompts VALUES (?, ?, 'bench')", enumerate(d.prompts, start=1))
            self.con.executemany(
                "INSERT INTO runs VALUES (?, ?, ?, 'system1', ?)",
                ((i + 1, int(p) + 1, f"model-{m:02d}", a)
                 for i, (p, m, a) in enumerate(zip(d.run_prompt, d.run_model, d.answers, strict=True))),
            )  # fmt: skip
            self.con.executemany(
                "INSERT INTO comparisons VALUES (?, ?, 1)",
                ((i + 1, int(d.run_prompt[c[0]]) + 1) for i, c in enumerate(d.comparisons)),
            )
            self.con.executemany(
                "INSERT INTO comparison_runs VALUES (?, ?, ?)",
                ((i + 1, pos, int(c[pos]) + 1) for i, c in enumerate(d.comparisons) for pos in (0, 1)),
            )
        cmp = (d.vote_cmp + 1).tolist()
        self.votes = list(zip(cmp, d.vote_choice.tolist(), d.vote_annotator.tolist(), strict=True))

    def ingest(self) -> int:
        with self.con:
            self.con.executemany(
                "INSERT INTO votes (comparison_id, choice, annotator) VALUES (?, ?, ?)", self.votes
            )
        return len(self.votes)

    def win_counts(self) -> list[tuple[str, str, int]]:
        sql = f"SELECT rw.model, rl.model, count(*) {SQLITE_DECISIVE} GROUP BY 1, 2 ORDER BY 1, 2"
        return [(w, lo, n) for w, lo, n in self.con.execute(sql)]

    def export(self) -> Any:
        from datasets import Dataset

        decisive = SQLITE_DECISIVE.replace("WHERE", "JOIN prompts p ON p.id = rw.prompt_id\nWHERE")
        sql = f"""SELECT p.text, rw.answer, rl.answer {decisive}
                  AND rw.answer <> rl.answer AND rw.prompt_id = rl.prompt_id
                  GROUP BY p.text, rw.answer, rl.answer ORDER BY min(v.id)"""
        columns: dict[str, list[str]] = {"prompt": [], "chosen": [], "rejected": []}
        for prompt, chosen, rejected in self.con.execute(sql):
            columns["prompt"].append(prompt)
            columns["chosen"].append(chosen)
            columns["rejected"].append(rejected)
        return Dataset.from_dict(columns)

    def close(self) -> None:
        self.con.close()


# -- the run ----------------------------------------------------------------------------------------------------


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def run(n: int, pairs: int, workdir: Path, repeat: int) -> dict[str, tuple[float, float]]:
    """Best of ``repeat`` rounds per operation (the machine may be shared); each round starts from fresh files."""
    import datasets  # noqa: F401  (imported before the clocks start, for both sides)

    t, d = timed(lambda: make_data(n, pairs))
    print(f"data: {n:,} votes, {len(d.comparisons):,} comparisons, {len(d.answers):,} runs ({t:.1f}s)")
    models = [f"model-{m:02d}" for m in range(N_MODELS)]
    best: dict[str, dict[str, float]] = {"duckdb": {}, "sqlite": {}}
    for round_ in range(1, repeat + 1):
        outputs = {}
        for side_cls, file in ((DuckSide, f"bench-{round_}.duckdb"), (SqliteSide, f"bench-{round_}.sqlite")):
            t, side = timed(lambda side_cls=side_cls, file=file: side_cls(workdir / file, d))
            times, outputs[side.name] = one_round(side, models)
            side.close()
            if round_ < repeat:  # keep only the last round's files
                for leftover in workdir.glob(f"{file}*"):
                    leftover.unlink()
            for op, seconds in times.items():
                best[side.name][op] = min(seconds, best[side.name].get(op, seconds))
            shown = ", ".join(f"{op} {s:.2f}s" for op, s in times.items())
            print(f"round {round_} {side.name}: setup {t:.1f}s (not timed); {shown}")
        check(outputs, d, models)
    return {op: (best["duckdb"][op], best["sqlite"][op]) for op in best["duckdb"]}


def one_round(side: DuckSide | SqliteSide, models: list[str]) -> tuple[dict[str, float], dict[str, Any]]:
    times: dict[str, float] = {}
    out: dict[str, Any] = {}
    times["ingest"], out["ingest"] = timed(side.ingest)
    times["aggregate+BT"], out["aggregate+BT"] = timed(lambda: bradley_terry(models, side.win_counts()))
    times["export"], out["export"] = timed(side.export)
    return times, out


def check(outputs: dict[str, dict[str, Any]], d: Data, models: list[str]) -> None:
    """Both sides did the same work: same vote count, same ratings, same DPO pairs."""
    duck, lite = outputs["duckdb"], outputs["sqlite"]
    assert duck["ingest"] == lite["ingest"] == len(d.vote_cmp)
    diff = max(abs(duck["aggregate+BT"][m] - lite["aggregate+BT"][m]) for m in models)
    assert diff < 1e-6, f"Bradley-Terry fits differ by {diff}"
    assert len(duck["export"]) == len(lite["export"]), (len(duck["export"]), len(lite["export"]))
    assert sorted(duck["export"]["chosen"]) == sorted(lite["export"]["chosen"])
    truth = d.strengths - d.strengths.mean()
    fitted = np.array([duck["aggregate+BT"][m] for m in models])
    corr = float(np.corrcoef(truth, fitted)[0, 1])
    print(f"checks: same votes, ratings (max diff {diff:.1e}) and {len(duck['export']):,} DPO pairs on both sides; "
          f"BT vs true strengths r = {corr:.3f}")  # fmt: skip


def report(timings: dict[str, tuple[float, float]], n: int) -> None:
    print(f"\nbest of the rounds\n{'operation':<16}{'duckdb':>10}{'sqlite':>10}{'speed-up':>10}")
    for op, (duck, lite) in timings.items():
        print(f"{op:<16}{duck:>9.2f}s{lite:>9.2f}s{lite / duck:>9.1f}x")
    duck, lite = timings["ingest"]
    print(f"\ningest rate: duckdb {n / duck:,.0f} votes/s, sqlite {n / lite:,.0f} votes/s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="votes to ingest and aggregate")
    parser.add_argument("--pairs", type=int, help="comparisons, i.e. DPO pairs to export (default n / 10)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="rounds; the best time of each operation counts"
    )
    parser.add_argument("--dir", type=Path, help="work dir (default: a temporary dir, removed afterwards)")
    args = parser.parse_args(argv)
    workdir = args.dir or Path(tempfile.mkdtemp(prefix="studio-bench-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        pairs = args.pairs or max(args.n // 10, PAIRS_PER_PROMPT)
        report(run(args.n, pairs, workdir, max(1, args.repeat)), args.n)
    finally:
        if args.dir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
