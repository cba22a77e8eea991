"""The store on real DuckDB files: migrations, round trips, validation, lineage, concurrency, the file lock."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import duckdb
import pytest

from storage import MIGRATIONS, Store, StoreError
from storage.migrations import migrate

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture()
def store(tmp_path: Path):
    with Store(tmp_path / "studio.duckdb") as s:
        yield s


def _prompt_and_runs(store: Store, n: int = 2, text: str = "Q?") -> tuple[int, list[int]]:
    pid = store.add_prompt(text)
    return pid, [store.add_run(pid, f"m{i}", "system1", f"answer {i}") for i in range(n)]


# -- migrations -------------------------------------------------------------------------------------------------


def test_migrations_from_empty(tmp_path: Path) -> None:
    path = tmp_path / "studio.duckdb"
    with Store(path) as s:
        assert s.schema_version == len(MIGRATIONS) == 5
    with Store(path) as s:  # reopening applies nothing and keeps the version
        assert s.schema_version == len(MIGRATIONS)
    con = duckdb.connect(str(path))
    rows = con.execute("SELECT version, name FROM _migrations ORDER BY version").fetchall()
    con.close()
    assert rows == [
        (1, "m001_initial"),
        (2, "m002_prompt_messages"),
        (3, "m003_one_label_per_annotator"),
        (4, "m004_verdict_traces"),
        (5, "m005_prompt_reference"),
    ]


def test_migration_from_older_version_keeps_data(tmp_path: Path) -> None:
    path = tmp_path / "studio.duckdb"
    con = duckdb.connect(str(path))
    assert migrate(con, MIGRATIONS[:1]) == 1
    con.execute("INSERT INTO prompts (id, text) VALUES (nextval('prompts_id_seq'), 'old prompt')").fetchall()
    con.close()
    with Store(path) as s:
        assert s.schema_version == len(MIGRATIONS)
        assert s.list_prompts()[0]["text"] == "old prompt"
        assert s.list_prompts()[0]["messages"] is None  # m002's column exists now
        multi = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
        pid = s.add_prompt("hi", messages=multi)
        assert s.get_prompt(pid)["messages"] == multi


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "studio.duckdb"
    with Store(path):
        pass
    con = duckdb.connect(str(path))
    con.execute("INSERT INTO _migrations (version, name) VALUES (99, 'm099_from_the_future')").fetchall()
    con.close()
    with pytest.raises(StoreError, match="m099_from_the_future.*newer studio"):
        Store(path)


def test_failed_migration_rolls_back(tmp_path: Path) -> None:
    def m002_broken(con: duckdb.DuckDBPyConnection) -> None:
        con.execute("CREATE TABLE half_done (x INTEGER)").fetchall()
        raise RuntimeError("boom")

    path = tmp_path / "studio.duckdb"
    with pytest.raises(RuntimeError):
        Store(path, migrations=[MIGRATIONS[0], m002_broken])
    with Store(path, migrations=MIGRATIONS[:1]) as s:
        assert s.schema_version == 1
        assert not s._rows("SELECT * FROM duckdb_tables() WHERE table_name = 'half_done'")


# -- round trips ------------------------------------------------------------------------------------------------

NASTY = [
    'it\'s "quoted"; DROP TABLE runs; --',
    "nul\x00inside\x00",
    "emoji 😀👩‍👩‍👧 and CJK 漢字",
    "RTL \u202eשלום עולם مرحبا\u202c",
    "line\nbreaks\r\n\u2028separator\ttab\\backslash",
    "",
    "x" * 1_000_000 + "é",
]


@pytest.mark.parametrize("text", NASTY, ids=["quotes", "nul", "emoji", "rtl", "breaks", "empty", "1mb"])
def test_text_round_trips_exactly(store: Store, text: str) -> None:
    pid = store.add_prompt(text or "non-empty prompt")
    rid = store.add_run(pid, "m", "cot", text, trace={"steps": [{"output": text}]}, params={"stop": text})
    run = store.get_run(rid)
    assert run["answer"] == text
    assert run["trace"]["steps"][0]["output"] == text
    assert run["params"] == {"stop": text}
    if text:
        assert store.get_prompt(store.add_prompt(text))["text"] == text


def test_run_round_trip(store: Store) -> None:
    pid = store.add_prompt("What is 2+2?", "math", category="arith", tags=["easy", "demo"])
    trace = {
        "strategy": "cove",
        "steps": [{"name": "baseline", "tokens": 12, "latency": 0.5}],
        "nested": [[1, None]],
    }
    rid = store.add_run(
        pid, "smollm2-135m", "cove", "4", variant="factored", params={"temperature": 0.7},
        trace=trace, tokens_in=20, tokens_out=5, latency_s=1.25,
    )  # fmt: skip
    run = store.get_run(rid)
    assert run | {"created_at": None} == {
        "id": rid, "prompt_id": pid, "model": "smollm2-135m", "strategy": "cove", "variant": "factored",
        "params": {"temperature": 0.7}, "answer": "4", "trace": trace, "tokens_in": 20, "tokens_out": 5,
        "latency_s": 1.25, "created_at": None, "error": None,
    }  # fmt: skip
    assert abs(run["created_at"] - datetime.now(timezone.utc).replace(tzinfo=None)) < timedelta(minutes=1)
    prompt = store.get_prompt(pid)
    assert (prompt["prompt_set"], prompt["category"], prompt["tags"]) == ("math", "arith", ["easy", "demo"])
    assert store.prompt_sets() == ["math"]
    assert [r["id"] for r in store.list_runs(model="smollm2-135m")] == [rid]
    assert "trace" not in store.list_runs()[0]
    for i in range(3):
        store.add_run(pid, "m", "s", str(i))
    assert len(store.list_runs(limit=None)) == 4 and len(store.list_runs(limit=2)) == 2


def test_prompts_are_get_or_create(store: Store) -> None:
    a = store.add_prompt("same")
    assert store.add_prompt("same") == a
    assert store.add_prompt("same", "other set") != a
    ids = store.add_prompts(["new 1", "same", "new 2", "new 1"])
    assert ids[1] == a and ids[0] == ids[3] and len(set(ids)) == 3


def test_bulk_prompts_get_ids_in_file_order(store: Store) -> None:
    """'Next prompt' walks a set in id order, so an imported file's prompts must be numbered as the file
    lists them (a DISTINCT insert numbered them in hash order)."""
    texts = [f"prompt number {i}" for i in range(2000)]
    ids = store.add_prompts([*texts, texts[3]], "ordered")
    assert ids[:-1] == sorted(ids[:-1]) and ids[-1] == ids[3]
    rows = sorted(store.list_prompts("ordered", limit=None), key=lambda r: r["id"])
    assert [r["text"] for r in rows] == texts


def test_comparison_vote_ranking_round_trip(store: Store) -> None:
    _, runs = _prompt_and_runs(store, 3)
    cid = store.add_comparison(runs[::-1], blind=False)
    c = store.get_comparison(cid)
    assert c["run_ids"] == runs[::-1] and c["blind"] is False
    vid = store.add_ranking(cid, [2, 1, 2], "alice", comment="middle one is best")
    pair = store.add_comparison(runs[:2])
    at = datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=2)))
    v2 = store.add_vote(pair, "both_bad", "bob", at=at)
    votes = {v["id"]: v for v in store.list_votes()}
    assert (
        votes[vid]["ranks"] == [2, 1, 2] and votes[vid]["kind"] == "ranking" and votes[vid]["choice"] is None
    )
    assert votes[v2]["ranks"] == [1, 1] and votes[v2]["choice"] == "both_bad"
    assert votes[v2]["created_at"] == datetime(2025, 1, 2, 1, 4, 5)  # stored as UTC
    store.delete_vote(v2)
    assert [v["id"] for v in store.list_votes()] == [vid]


def test_verdict_round_trip(store: Store) -> None:
    _, (a, b) = _prompt_and_runs(store)
    cid = store.add_comparison([a, b])
    vid = store.add_verdict(
        "mt-bench", "pairwise", comparison_id=cid, judge_model="smollm2-135m", judge_config={"swap": True},
        orders=["AB", "BA"], winner="inconsistent", scores={"AB": "A", "BA": "A"}, raw_output="[[A]]",
    )  # fmt: skip
    failed = store.add_verdict("self-reward", "single", [a], raw_output="no score here", ok=False)
    verdicts = {v["id"]: v for v in store.list_verdicts(run_id=a)}
    assert verdicts[vid]["run_ids"] == [a, b] and verdicts[vid]["orders"] == ["AB", "BA"]
    assert verdicts[vid]["judge_config"] == {"swap": True} and verdicts[vid]["scores"] == {
        "AB": "A",
        "BA": "A",
    }
    assert verdicts[failed]["ok"] is False and verdicts[failed]["raw_output"] == "no score here"
    assert store.stats()["failed_verdicts"] == 1


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s, c, r: s.add_vote(c, "C", "ann"), "one of A, B, tie, both_bad"),
        (lambda s, c, r: s.add_vote(999, "A", "ann"), "no comparison with id 999"),
        (lambda s, c, r: s.add_vote(c, "A", " "), "annotator must not be empty"),
        (lambda s, c, r: s.add_ranking(c, [1, 2, 3], "ann"), "shows 2 runs but 3 ranks"),
        (lambda s, c, r: s.add_ranking(c, [0, 1], "ann"), "ranks must be whole numbers >= 1"),
        (lambda s, c, r: s.add_comparison([r[0], r[0]]), "two or more distinct runs"),
        (lambda s, c, r: s.add_comparison([r[0], 12345]), "no run with id 12345"),
        (lambda s, c, r: s.add_run(777, "m", "s", "a"), "no prompt with id 777"),
        (
            lambda s, c, r: s.add_run(1, "m", "s", "a", trace={"x": object()}),
            "trace is not JSON-serialisable",
        ),
        (lambda s, c, r: s.add_verdict("j", "single", r), "single verdict concerns 1 run"),
        (lambda s, c, r: s.add_verdict("j", "pairwise", r), "needs a winner"),
        (lambda s, c, r: s.add_verdict("j", "triple", r), "'single' or 'pairwise'"),
        (lambda s, c, r: s.add_training_run("dpo", status="weird"), "training status is one of"),
        (lambda s, c, r: s.delete_vote(31337), "no vote with id 31337"),
    ],
)
def test_verbs_reject_bad_input_clearly(store: Store, call, message: str) -> None:
    _, runs = _prompt_and_runs(store)
    cid = store.add_comparison(runs)
    with pytest.raises(StoreError, match=message):
        call(store, cid, runs)


def test_runs_of_different_prompts_cannot_be_compared(store: Store) -> None:
    _, (a, _) = _prompt_and_runs(store, text="one")
    _, (b, _) = _prompt_and_runs(store, text="two")
    with pytest.raises(StoreError, match="same prompt"):
        store.add_comparison([a, b])


def test_step_labels(store: Store) -> None:
    _, (run, _) = _prompt_and_runs(store)
    lid = store.add_step_label(run, "execute_verifications.2", "wrong", "alice", note="date is off")
    store.add_step_label(run, "baseline", "good", "bob")
    store.update_step_label(lid, label="good")
    labels = store.list_step_labels(run)
    assert [(x["step_id"], x["label"], x["note"]) for x in labels] == [
        ("execute_verifications.2", "good", "date is off"),
        ("baseline", "good", None),
    ]
    assert labels[0]["updated_at"] is not None and labels[1]["updated_at"] is None
    store.delete_step_label(lid)
    assert [x["label"] for x in store.list_step_labels()] == ["good"]
    assert [(a["action"], a["old"]["label"]) for a in store.label_audit()] == [
        ("delete", "good"),
        ("replace", "wrong"),
    ]
    with pytest.raises(StoreError, match="no step label"):
        store.update_step_label(lid, note="gone")


def test_models_training_runs_and_metrics(store: Store) -> None:
    tid = store.add_training_run("dpo", {"beta": 0.1, "lora_r": 8}, base_model="smollm2-135m")
    assert store.get_training_run(tid)["status"] == "pending"
    store.update_training_run(tid, status="running", log_path="/data/runs/1/log.txt")
    for step, loss in enumerate([0.69, 0.61, 0.55], start=1):
        store.append_metrics(tid, step, {"loss": loss, "rewards/margins": step / 10})
    store.update_training_run(tid, status="done", output_path="/data/runs/1/adapter")
    run = store.get_training_run(tid)
    assert run["config"] == {"beta": 0.1, "lora_r": 8} and run["status"] == "done"
    assert run["started_at"] <= run["finished_at"] and run["log_path"].endswith("log.txt")
    assert store.metrics(tid) == {
        "loss": [(1, 0.69), (2, 0.61), (3, 0.55)],
        "rewards/margins": [(1, 0.1), (2, 0.2), (3, 0.3)],
    }
    store.add_model("smollm2-135m", "transformers")
    store.add_model("smollm2-dpo-1", "transformers", base="smollm2-135m", adapter_path="/a/1",
                    parent="smollm2-135m", training_run_id=tid)  # fmt: skip
    store.add_model("smollm2-dpo-2", "transformers", base="smollm2-135m", parent="smollm2-dpo-1")
    assert [m["name"] for m in store.lineage("smollm2-dpo-2")] == [
        "smollm2-dpo-2",
        "smollm2-dpo-1",
        "smollm2-135m",
    ]
    assert store.get_model("smollm2-dpo-1")["training_run_id"] == tid
    assert [r["id"] for r in store.list_training_runs(status="done")] == [tid]
    with pytest.raises(StoreError, match="already recorded"):
        store.add_model("smollm2-135m", "gguf")


def test_bulk_runs_and_votes(store: Store) -> None:
    import pyarrow as pa

    pid = store.add_prompt("bulk")
    ids = store.add_runs_bulk(
        pa.table({"prompt_id": [pid] * 3, "model": ["a", "b", "c"], "strategy": ["s"] * 3,
                  "answer": ["x", "y", "z"], "tokens_out": [1, 2, 3]})
    )  # fmt: skip
    assert [store.get_run(i)["answer"] for i in ids] == ["x", "y", "z"]
    cmp_ids = store.add_comparisons_bulk([[ids[0], ids[1]], [ids[2], ids[0], ids[1]]])
    assert store.get_comparison(cmp_ids[1])["run_ids"] == [ids[2], ids[0], ids[1]]
    vote_ids = store.add_votes_bulk(pa.table({"comparison_id": [cmp_ids[0]] * 2, "choice": ["B", "tie"],
                                              "annotator": ["u1", "u2"]}))  # fmt: skip
    assert [store.list_votes(annotator=a)[0]["ranks"] for a in ("u1", "u2")] == [[2, 1], [1, 1]]
    assert len(vote_ids) == 2
    store.add_votes_bulk(pa.table({"comparison_id": [cmp_ids[1]], "ranks": [[3, 1, 2]], "annotator": ["u3"]}))
    assert store.list_votes(annotator="u3")[0]["kind"] == "ranking"
    with pytest.raises(StoreError, match="vote row 2"):
        store.add_votes_bulk(pa.table({"comparison_id": [cmp_ids[0]] * 2, "choice": ["A", "Z"],
                                       "annotator": ["u1", "u1"]}))  # fmt: skip
    with pytest.raises(StoreError, match="vote row 1"):
        store.add_votes_bulk(pa.table({"comparison_id": [cmp_ids[1]], "choice": ["A"], "annotator": ["u"]}))
    with pytest.raises(StoreError, match="comparison row 1"):
        store.add_comparisons_bulk([[ids[0], 999]])
    assert store.stats()["votes"] == 2  # the failed bulk writes left nothing behind


# -- concurrency and the file lock ------------------------------------------------------------------------------


def test_threads_write_concurrently(store: Store) -> None:
    pid, (a, b) = _prompt_and_runs(store)
    cid = store.add_comparison([a, b])
    n_threads, per_thread = 8, 25
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for i in range(per_thread):
                store.add_vote(cid, "AB"[i % 2], f"thread-{t}")
                store.add_run(pid, f"m{t}", "s", f"{t}/{i}")
                store.stats() if i % 10 == 0 else store.list_votes(limit=5)
        except BaseException as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    stats = store.stats()
    # one label per (comparison, annotator): each thread's 25 submissions edit one vote, and 24 go to the audit
    assert stats["votes"] == n_threads
    assert {v["annotator"]: v["choice"] for v in store.list_votes()} == {
        f"thread-{t}": "A" for t in range(8)
    }  # i = 24 is even
    assert len(store.label_audit(limit=None)) == n_threads * (per_thread - 1)
    assert stats["runs"] == n_threads * per_thread + 2
    ids = store._rows("SELECT count(DISTINCT id) AS n, count(*) AS m FROM votes")[0]
    assert ids["n"] == ids["m"] == n_threads


def test_second_process_gets_a_clear_lock_message(tmp_path: Path) -> None:
    path = tmp_path / "studio.duckdb"
    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(ROOT)!r})
        from storage import Store, StoreLocked
        try:
            Store({str(path)!r})
        except StoreLocked as e:
            print("LOCKED", e.pid, "|", e)
        """
    )
    with Store(path) as store:
        store.add_prompt("held")
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith(f"LOCKED {os.getpid()} |"), out.stdout
    assert f"PID {os.getpid()}" in out.stdout and "in use by another process" in out.stdout
    assert "IOException" not in out.stdout and "IO Error" not in out.stdout
    with Store(path) as again:  # released on close
        assert again.stats()["prompts"] == 1


def test_storage_is_the_leaf_layer() -> None:
    """Opening a store pulls in no studio, UI or ML module (datasets loads only inside exports)."""
    script = (
        "import sys, storage; s = storage.Store(sys.argv[1]); s.close(); "
        "print(sorted({m.split('.')[0] for m in sys.modules} & "
        "{'studio', 'components', 'gradio', 'torch', 'transformers', 'datasets', 'trl'}))"
    )
    with tempfile.TemporaryDirectory() as d:
        out = subprocess.run(
            [sys.executable, "-c", script, f"{d}/s.duckdb"],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
