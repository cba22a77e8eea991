"""Crash durability: ``kill -9`` the served studio while annotators vote, and ``kill -9`` a training job.

- Every vote a client saw acknowledged is in the DuckDB file after the crash, none twice, and the file opens
  cleanly, both in a restarted server (which takes new votes) and in a plain ``storage.Store``.
- A training job killed with SIGKILL (as the OOM killer would) is marked failed by the next ``Runner`` (a
  restarted server or CLI), in its run dir and in the store, and leaves no process of its group behind.
- The backups docs/operations.md gives (DuckDB ``EXPORT DATABASE`` / ``IMPORT DATABASE``, or a copy of the
  stopped studio's file) restore a store that opens, holds the same rows and hands out fresh ids.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from storage import Store
from storage.migrations import MIGRATIONS
from studio.settings import Settings
from studio.training import RunDir, Runner
from studio.training.scheduler import alive
from tests.servers import studio_server
from tests.test_training_jobs import TINY, seed

pytestmark = [pytest.mark.slow, pytest.mark.filterwarnings("ignore::FutureWarning")]

CLIENTS = 4
KILL_AFTER = 40  # acknowledged votes before the kill


def wait_for(predicate: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def seed_comparisons(data: Path, n: int) -> list[int]:
    with Store(data / "studio.duckdb", data_dir=data) as store:
        ids = []
        for i in range(n):
            pid = store.add_prompt(f"crash prompt {i}", "crash")
            a, b = store.add_run(pid, "m", "system1", f"a{i}"), store.add_run(pid, "m", "cot", f"b{i}")
            ids.append(store.add_comparison([a, b]))
        return ids


def vote_until_it_fails(url: str, who: int, cids: list[int], acked: list[str], lock: threading.Lock) -> None:
    """Cast votes with unique comments; record each one the server acknowledged, stop at the first failure."""
    from gradio_client import Client

    client = Client(url, verbose=False)
    for k in range(10_000):
        comment = f"c{who}-{k}"
        try:
            client.predict(
                cids[k % len(cids)], "AB"[k % 2], comment, f"ann-{who}", *[None] * 6, api_name="/vote"
            )
        except Exception:  # the server was killed under us
            return
        with lock:
            acked.append(comment)


def stored_comments(data: Path) -> list[str]:
    with Store(data / "studio.duckdb", data_dir=data) as store:  # opens cleanly, or this raises
        assert store.schema_version == len(MIGRATIONS)
        store.stats()  # every table reads
        return [v["comment"] for v in store.list_votes(limit=None)]


def test_acknowledged_votes_survive_kill_9_of_the_server(tmp_path: Path) -> None:
    from gradio_client import Client

    data = tmp_path / "data"
    cids = seed_comparisons(data, 20)
    acked: list[str] = []
    lock = threading.Lock()
    with studio_server(data, tmp_path / "serve.log", "--no-preload") as (url, proc):
        threads = [
            threading.Thread(target=vote_until_it_fails, args=(url, w, cids, acked, lock), daemon=True)
            for w in range(CLIENTS)
        ]
        for t in threads:
            t.start()
        wait_for(lambda: len(acked) >= KILL_AFTER, 120, f"{KILL_AFTER} acknowledged votes")
        os.kill(proc.pid, signal.SIGKILL)  # mid-stream: the clients are still voting
        proc.wait(10)
        for t in threads:
            t.join(30)
    seen = list(acked)

    # restart on the same data dir: the server opens the file (replaying its WAL) and takes votes again
    with studio_server(data, tmp_path / "serve2.log", "--no-preload") as (url, _):
        msg = Client(url, verbose=False).predict(cids[0], "A", "after restart", "zoe", *[None] * 6,
                                                 api_name="/vote")[0]  # fmt: skip
        assert "Saved vote" in msg
    comments = stored_comments(data)
    assert set(seen) <= set(comments), f"lost {len(set(seen) - set(comments))} acknowledged votes"
    assert len(comments) == len(set(comments)), "a vote was stored twice"
    # besides the acknowledged ones, at most the votes in flight at the kill (one per client) made it in
    assert len(comments) - len(seen) - 1 <= CLIENTS and "after restart" in comments


# -- a training job killed with SIGKILL ----------------------------------------------------------------------


def group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes whose process group is ``pgid``."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        fields = raw[raw.rfind(")") + 2 :].split()  # state, ppid, pgrp, ...
        if int(fields[2]) == pgid and fields[0] not in "ZX":
            found.append(int(entry.name))
    return found


def test_a_training_job_killed_with_sigkill_is_failed_after_a_restart(settings: Settings) -> None:
    settings = Settings.load(env={}, data_dir=settings.data_dir, threads=settings.threads or 1)
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        seed(store)
        job = Runner(settings, store).start("dpo", {**TINY, "max_steps": 500, "save_steps": 1000})
        run = RunDir(job.run_dir)
        assert job.state == "running" and job.pid
        pgid = os.getpgid(job.pid)
        assert pgid == job.pid, "a job runs in its own process group"
        wait_for(lambda: run.metrics_file.exists() or run.state != "running", 300, "the first training step")
        assert run.state == "running", run.tail()

        os.kill(job.pid, signal.SIGKILL)
        wait_for(lambda: not alive(run.status()), 30, "the job process to die")

        after = Runner(settings, store)  # a restarted server or CLI constructs a new runner
        job = after.sync(job.id)
        assert job.state == "failed" and "without reporting a result" in (job.error or "")
        assert store.get_training_run(job.id)["status"] == "failed"
        assert [j.state for j in after.refresh()] == ["failed"]
    wait_for(lambda: not group_members(pgid), 15, "the job's process group to be empty")
    assert not Path(f"/proc/{pgid}").exists(), "the killed job was left as a zombie"


# -- backup and restore, as docs/operations.md gives them ------------------------------------------------------
EXPORT = "import duckdb, sys; duckdb.connect(sys.argv[1], read_only=True).execute(f\"EXPORT DATABASE '{sys.argv[2]}' (FORMAT parquet)\")"
IMPORT = "import duckdb, sys; duckdb.connect(sys.argv[1]).execute(f\"IMPORT DATABASE '{sys.argv[2]}'\")"


def python_c(code: str, *args: str) -> None:
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_the_documented_backup_commands_are_the_tested_ones() -> None:
    doc = (Path(__file__).resolve().parents[1] / "docs" / "operations.md").read_text()
    for code in (EXPORT, IMPORT):
        quoted = code.replace('"', '\\"')  # as it reads inside bash double quotes
        assert f'python -c "{quoted}"' in doc


def test_backup_by_export_database_or_by_copy_restores_a_working_store(tmp_path: Path) -> None:
    data = tmp_path / "data"
    cids = seed_comparisons(data, 3)
    with Store(data / "studio.duckdb", data_dir=data) as store:
        store.add_vote(cids[0], "A", "alice", comment="keep me")
        store.add_verdict("pairwise", "pairwise", comparison_id=cids[1], winner="B", judge_model="m")
        before, pairs = store.stats(), store.preference_pairs()

    python_c(EXPORT, str(data / "studio.duckdb"), str(tmp_path / "backup"))
    python_c(IMPORT, str(tmp_path / "restored.duckdb"), str(tmp_path / "backup"))
    shutil.copyfile(data / "studio.duckdb", tmp_path / "copied.duckdb")  # the studio is stopped
    for restored in (tmp_path / "restored.duckdb", tmp_path / "copied.duckdb"):
        with Store(restored) as store:
            assert store.schema_version == len(MIGRATIONS)
            assert store.stats() == before and store.preference_pairs() == pairs
            # the id sequences came back too: a new vote does not reuse an id
            new = store.add_vote(cids[2], "B", "bob")
            assert new > max(v["id"] for v in store.list_votes(limit=None) if v["annotator"] == "alice")
