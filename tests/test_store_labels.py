"""Labels you can trust (#12, #18) on real DuckDB files: one label per (comparison, annotator) with its audit, the
m003 migration that resolves stored duplicates, ownership of labels, validated values and free text, the
labelling workflow (skips, prompt sets, next prompt, progress, status) and failed runs kept out of everything."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from storage import MIGRATIONS, Filters, Store, StoreError
from storage.migrations import migrate
from storage.store import MAX_COMMENT_CHARS, STEP_LABELS

T0 = datetime(2025, 3, 1, 12, 0, 0)


@pytest.fixture()
def store(tmp_path: Path):
    with Store(tmp_path / "studio.duckdb") as s:
        yield s


def runs(store: Store, n: int, text: str = "What is 2+2?", prompt_set: str = "default") -> list[int]:
    pid = store.add_prompt(text, prompt_set)
    return [store.add_run(pid, f"m{i}", "cot", f"{text} answer {i}") for i in range(n)]


# -- one label per (comparison, annotator) ----------------------------------------------------------------------


def test_submitting_again_replaces_the_label_and_audits_it(store: Store) -> None:
    cid = store.add_comparison(runs(store, 2))
    first = store.add_vote(cid, "A", "alice", comment="left is right", at=T0)
    again = store.add_vote(cid, "B", "alice", at=T0 + timedelta(minutes=1))
    assert again == first  # edited in place: same vote id
    votes = store.list_votes(comparison_id=cid)
    assert [(v["id"], v["choice"], v["comment"]) for v in votes] == [(first, "B", None)]
    assert store.get_label(cid, "alice")["choice"] == "B" and store.get_label(cid, "bob") is None
    (audit,) = store.label_audit(comparison_id=cid)
    assert (audit["kind"], audit["row_id"], audit["annotator"], audit["actor"], audit["action"]) == (
        "vote", first, "alice", "alice", "replace",
    )  # fmt: skip
    assert audit["old"] == {"id": first, "kind": "pairwise", "choice": "A", "ranks": None,
                            "comment": "left is right", "created_at": "2025-03-01 12:00:00"}  # fmt: skip
    assert audit["new"]["choice"] == "B" and audit["new"]["created_at"] == "2025-03-01 12:01:00"
    assert isinstance(audit["at"], datetime)
    # another annotator is another label
    assert store.add_vote(cid, "A", "bob") != first and len(store.list_votes()) == 2
    assert [a["annotator"] for a in store.label_audit(annotator="bob")] == []


def test_a_double_submit_of_the_same_label_changes_nothing(store: Store) -> None:
    cid = store.add_comparison(runs(store, 2))
    vid = store.add_vote(cid, "tie", "alice", comment="same")
    assert store.add_vote(cid, "tie", "alice", comment="same") == vid
    assert len(store.list_votes()) == 1 and store.label_audit() == []


def test_rankings_replace_too_and_record_the_actor(store: Store) -> None:
    cid = store.add_comparison(runs(store, 3))
    vid = store.add_ranking(cid, [1, 2, 3], "alice")
    assert store.add_ranking(cid, [3, 1, 2], "alice", actor="admin") == vid
    assert store.get_label(cid, "alice")["ranks"] == [3, 1, 2]
    (audit,) = store.label_audit()
    assert (audit["actor"], audit["old"]["ranks"], audit["new"]["ranks"]) == ("admin", [1, 2, 3], [3, 1, 2])


def test_a_two_run_comparison_always_stores_a_pairwise_vote(store: Store) -> None:
    """Documented rule: a 2-rank ranking on a two-run comparison is stored as the choice it equals, so the
    single and bulk paths, agreement and exports see one form; and it replaces a pairwise label (one label)."""
    cid = store.add_comparison(runs(store, 2))
    vid = store.add_ranking(cid, [2, 1], "alice")
    label = store.get_label(cid, "alice")
    assert (label["kind"], label["choice"], label["ranks"]) == ("pairwise", "B", [2, 1])
    assert store.add_vote(cid, "A", "alice") == vid
    assert store.add_ranking(cid, [2, 2], "alice") == vid and store.get_label(cid, "alice")["choice"] == "tie"
    ids = store.add_votes_bulk(pa.table({"comparison_id": [cid], "ranks": [[1, 2]], "annotator": ["bob"]}))
    bob = store.get_label(cid, "bob")
    assert ids == [bob["id"]] and (bob["kind"], bob["choice"]) == ("pairwise", "A")


@pytest.mark.parametrize(
    ("size", "ranks", "message"),
    [
        (3, [1, 2, 3, 4], "shows 3 runs but 4 ranks"),  # #18: was stored as [1, 2, 3]
        (2, [1, 2, 3], "shows 2 runs but 3 ranks"),  # #18: was stored as a ranking
        (3, [1, 2], "shows 3 runs but 2 ranks"),
        (3, [1, 2, 4], "ranks go from 1 \\(best\\) to 3"),
        (3, [0, 1, 2], "whole numbers >= 1"),
    ],
)
def test_wrong_rankings_are_refused_on_every_path(store: Store, size: int, ranks: list, message: str) -> None:
    cid = store.add_comparison(runs(store, size))
    with pytest.raises(StoreError, match=message):
        store.add_ranking(cid, ranks, "alice")
    bulk = message.replace("whole numbers >= 1", "ranks go from 1")
    with pytest.raises(StoreError, match=f"vote row 1: .*{bulk}"):
        store.add_votes_bulk(pa.table({"comparison_id": [cid], "ranks": [ranks], "annotator": ["alice"]}))
    assert store.list_votes() == []


def test_bulk_votes_follow_the_one_label_rule(store: Store) -> None:
    pair, trio = store.add_comparison(runs(store, 2)), store.add_comparison(runs(store, 3, "Other?"))
    stored = store.add_vote(pair, "A", "alice", at=T0)
    ids = store.add_votes_bulk(
        pa.table({
            "comparison_id": [pair, pair, pair, trio, trio, pair],
            "choice": ["B", "tie", "A", None, None, "both_bad"],
            "ranks": [None, None, None, [1, 2, 3], [3, 2, 1], None],
            "annotator": ["alice", "alice", "bob", "carol", "carol", "bob"],
            # the latest by time wins, not the last row: alice's 'B' is newer than her 'tie'
            "created_at": [T0 + timedelta(hours=2), T0 + timedelta(hours=1), T0, T0, T0, T0],
        })
    )  # fmt: skip
    labels = {v["annotator"]: v for v in store.list_votes()}
    assert len(labels) == 3 and len(store.list_votes()) == 3
    assert labels["alice"]["id"] == stored and labels["alice"]["choice"] == "B"
    assert labels["bob"]["choice"] == "both_bad"  # same time: the later row wins
    assert labels["carol"]["ranks"] == [3, 2, 1]
    # every row gets its label's id; new labels get fresh ids in first-seen order
    assert ids == [stored, stored, labels["bob"]["id"], labels["carol"]["id"], labels["carol"]["id"],
                   labels["bob"]["id"]]  # fmt: skip
    assert labels["bob"]["id"] < labels["carol"]["id"]
    audit = store.label_audit(limit=None)
    old = sorted((a["annotator"], a["old"]["choice"] or str(a["old"]["ranks"])) for a in audit)
    # alice's stored 'A' and her batch 'tie' were replaced; bob's 'A' and carol's first ranking lost to later rows
    assert old == [("alice", "A"), ("alice", "tie"), ("bob", "A"), ("carol", "[1, 2, 3]")]
    assert {a["new"]["id"] for a in audit if a["annotator"] == "alice"} == {stored}
    assert {a["action"] for a in audit} == {"replace"}


def test_bulk_votes_refuse_bad_rows_and_write_nothing(store: Store) -> None:
    pair = store.add_comparison(runs(store, 2))

    def bulk(**cols) -> None:
        n = len(next(iter(cols.values())))
        store.add_votes_bulk(pa.table({"comparison_id": [pair] * n, "annotator": ["a"] * n, **cols}))

    with pytest.raises(StoreError, match="vote row 2: comment must not contain NUL"):
        bulk(choice=["A", "B"], comment=["ok", "bad\x00"])
    with pytest.raises(StoreError, match=f"vote row 1: comment is {MAX_COMMENT_CHARS + 1} characters"):
        bulk(choice=["A"], comment=["x" * (MAX_COMMENT_CHARS + 1)])
    with pytest.raises(StoreError, match="vote row 1: a vote is one of A, B, tie, both_bad, not C"):
        bulk(choice=["C"])
    with pytest.raises(StoreError, match="vote row 1: annotator must not be empty"):
        store.add_votes_bulk(pa.table({"comparison_id": [pair], "choice": ["A"], "annotator": ["  "]}))
    with pytest.raises(StoreError, match="vote row 1: no comparison with id 999"):
        store.add_votes_bulk(pa.table({"comparison_id": [999], "choice": ["A"], "annotator": ["a"]}))
    assert store.list_votes() == [] and store.label_audit() == []


def test_a_repeated_vote_is_one_pair_in_every_export(store: Store) -> None:
    """#18: one annotator voting three times counted the pair three times. Now the votes edit one label."""
    a, b = runs(store, 2)
    cid = store.add_comparison([a, b])
    for choice in ("A", "B", "A"):
        store.add_vote(cid, choice, "alice")
    store.add_votes_bulk(
        pa.table({"comparison_id": [cid] * 3, "choice": ["A"] * 3, "annotator": ["bob"] * 3})
    )
    assert len(store.list_votes()) == 2
    (pair,) = store.preference_pairs()
    assert (pair["chosen_run_id"], pair["n_events"], pair["annotators"]) == (a, 2, ["alice", "bob"])
    assert store.win_counts() == [{"winner": "m0", "loser": "m1", "wins": 2}]  # one per annotator, not 3 + 3
    assert len(store.to_dataset("dpo")) == 1 and store.stats()["dpo_rows"] == 1


# -- the m003 migration ---------------------------------------------------------------------------------------------


def old_store_with_duplicates(path: Path) -> None:
    """A store at schema version 2 (before one-label-per-annotator) in which alice voted three times."""
    con = duckdb.connect(str(path))
    assert migrate(con, MIGRATIONS[:2]) == 2
    con.execute(
        """INSERT INTO prompts (id, text) VALUES (nextval('prompts_id_seq'), 'q');
        INSERT INTO runs (id, prompt_id, model, strategy, answer)
            VALUES (nextval('runs_id_seq'), 1, 'm1', 's', 'a'), (nextval('runs_id_seq'), 1, 'm2', 's', 'b');
        INSERT INTO comparisons (id, prompt_id) VALUES (nextval('comparisons_id_seq'), 1);
        INSERT INTO comparison_runs VALUES (1, 0, 1), (1, 1, 2)"""
    ).fetchall()
    votes = [("A", "alice", "2025-01-01"), ("B", "alice", "2025-01-03"), ("tie", "bob", "2025-01-02"),
             ("A", "alice", "2025-01-03"), ("A", "alice", "2025-01-02")]  # fmt: skip
    for choice, who, at in votes:
        con.execute(
            """INSERT INTO votes (id, comparison_id, kind, choice, annotator, created_at)
            VALUES (nextval('votes_id_seq'), 1, 'pairwise', ?, ?, ?)""",
            [choice, who, at],
        ).fetchall()
    con.close()


def test_migration_moves_duplicate_labels_to_the_audit(tmp_path: Path) -> None:
    path = tmp_path / "studio.duckdb"
    old_store_with_duplicates(path)
    with Store(path) as s:
        assert s.schema_version == len(MIGRATIONS)
        assert s.migration_report == ["m003_one_label_per_annotator: moved 3 duplicate labels to label_audit"]
        # alice's latest: two votes share the latest time, so the higher id (4, 'A') is kept
        kept = {v["annotator"]: (v["id"], v["choice"]) for v in s.list_votes()}
        assert kept == {"alice": (4, "A"), "bob": (3, "tie")}
        audit = s.label_audit(limit=None)
        assert sorted(a["old"]["id"] for a in audit) == [1, 2, 5]
        assert {(a["action"], a["row_id"], a["actor"], a["annotator"], a["new"]["id"]) for a in audit} == {
            ("dedupe", 4, "migration", "alice", 4)
        }
        assert len(s.preference_pairs()) == 1 and s.preference_pairs()[0]["n_events"] == 1
        # the rest of m003 is there: runs.error, skips, prompt sets
        pid = s.list_prompts()[0]["id"]
        assert s.add_run(pid, "m3", "s", "", error="boom") and s.list_runs(failed=True)[0]["error"] == "boom"
        s.skip_prompt(pid, "carol")
        assert s.set_prompt_set("default", min_labels=2)["min_labels"] == 2
        s.add_vote(1, "B", "alice")  # and the rule holds from now on
        assert len(s.list_votes()) == 2
    with Store(path) as s:  # nothing left to migrate, nothing to report
        assert s.migration_report == [] and len(s.label_audit(limit=None)) == 4


def test_migration_without_duplicates_reports_nothing(tmp_path: Path) -> None:
    path = tmp_path / "studio.duckdb"
    con = duckdb.connect(str(path))
    migrate(con, MIGRATIONS[:2])
    con.close()
    with Store(path) as s:
        assert s.schema_version == len(MIGRATIONS) and s.migration_report == []


# -- ownership, values and free text ------------------------------------------------------------------------------


def test_annotators_change_only_their_own_labels(store: Store) -> None:
    """#18: bob could delete alice's vote and rewrite her step label, and it stayed attributed to alice."""
    a, _ = pair = runs(store, 2)
    cid = store.add_comparison(pair)
    vote = store.add_vote(cid, "A", "alice")
    label = store.add_step_label(a, "solve", "wrong", "alice", note="off by one")
    for call in (
        lambda: store.delete_vote(vote, actor="bob", admin=False),
        lambda: store.update_step_label(label, label="good", actor="bob", admin=False),
        lambda: store.delete_step_label(label, actor="bob", admin=False),
        lambda: store.delete_vote(vote, admin=False),  # no actor is nobody's
    ):
        with pytest.raises(StoreError, match="^you can only change your own labels$"):
            call()
    assert store.get_label(cid, "alice")["choice"] == "A"
    assert store.list_step_labels()[0]["label"] == "wrong" and store.label_audit() == []

    store.update_step_label(label, note="off by two", actor="alice", admin=False)
    store.update_step_label(label, label="good", actor="root")  # an admin may
    store.delete_vote(vote, actor="alice", admin=False)
    store.delete_step_label(label, actor="root")
    assert store.list_votes() == [] and store.list_step_labels() == []
    audit = [(x["kind"], x["action"], x["actor"], x["annotator"]) for x in store.label_audit()]
    assert audit == [
        ("step_label", "delete", "root", "alice"),
        ("vote", "delete", "alice", "alice"),
        ("step_label", "replace", "root", "alice"),
        ("step_label", "replace", "alice", "alice"),
    ]
    deleted = store.label_audit(comparison_id=cid)[0]
    assert deleted["old"]["choice"] == "A" and deleted["new"] is None
    first_edit = store.label_audit()[-1]
    assert (first_edit["old"]["note"], first_edit["new"]["note"]) == ("off by one", "off by two")


def test_step_label_values_are_validated_in_the_store(store: Store) -> None:
    """#18: data_update_step_label(1, "evil", ...) saved 'evil'."""
    assert STEP_LABELS == ("wrong", "good")  # what the arena's "Flag step" offers
    run = runs(store, 1)[0]
    with pytest.raises(StoreError, match="a step label is one of wrong, good, not 'evil'"):
        store.add_step_label(run, "solve", "evil", "alice")
    lid = store.add_step_label(run, "solve", "good", "alice")
    with pytest.raises(StoreError, match="not 'evil'"):
        store.update_step_label(lid, label="evil")
    assert store.list_step_labels()[0]["label"] == "good"


@pytest.mark.parametrize("bad", ["nul \x00 inside", "x" * (MAX_COMMENT_CHARS + 1)])
def test_comments_and_notes_refuse_nul_and_oversize_text(store: Store, bad: str) -> None:
    a, b = runs(store, 2)
    cid, trio = store.add_comparison([a, b]), store.add_comparison(runs(store, 3, "Three?"))
    message = "must not contain NUL bytes" if "\x00" in bad else f"limit is {MAX_COMMENT_CHARS}"
    lid = store.add_step_label(a, "solve", "good", "alice")
    for call in (
        lambda: store.add_vote(cid, "A", "alice", comment=bad),
        lambda: store.add_ranking(trio, [1, 2, 3], "alice", comment=bad),
        lambda: store.add_step_label(a, "solve", "wrong", "alice", note=bad),
        lambda: store.update_step_label(lid, note=bad),
    ):
        with pytest.raises(StoreError, match=message):
            call()
    assert store.list_votes() == []
    longest = "y" * MAX_COMMENT_CHARS
    assert store.get_label(cid, "x") is None
    store.add_vote(cid, "A", "alice", comment=longest)
    assert store.get_label(cid, "alice")["comment"] == longest


# -- the labelling workflow ---------------------------------------------------------------------------------------


def labelled(store: Store, pid: int, *annotators: str) -> None:
    a, b = (store.add_run(pid, f"m{i}", "s", f"{pid}/{i}") for i in range(2))
    cid = store.add_comparison([a, b])
    for who in annotators:
        store.add_vote(cid, "A", who)


def test_prompt_set_settings(store: Store) -> None:
    assert store.get_prompt_set("math") == {"name": "math", "guidelines": "", "min_labels": 1}
    assert store.set_prompt_set("math", guidelines="# Math\nPrefer **correct** answers.") == {
        "name": "math", "guidelines": "# Math\nPrefer **correct** answers.", "min_labels": 1,
    }  # fmt: skip
    store.set_prompt_set("math", min_labels=3)  # None keeps the guidelines
    assert store.get_prompt_set("math")["guidelines"].startswith("# Math")
    assert store.get_prompt_set("math")["min_labels"] == 3
    for bad, message in (
        (0, "min_labels must be a whole number >= 1"),
        ("2", "min_labels"),
        (True, "min_labels"),
    ):
        with pytest.raises(StoreError, match=message):
            store.set_prompt_set("math", min_labels=bad)
    with pytest.raises(StoreError, match="guidelines must not contain NUL"):
        store.set_prompt_set("math", guidelines="\x00")
    with pytest.raises(StoreError, match="prompt set name must not be empty"):
        store.set_prompt_set(" ", min_labels=1)


def test_next_prompt_is_per_annotator_and_overlap_aware(store: Store) -> None:
    """#12: next prompt gave the same prompt twice, and an already-labelled one with no prompt set chosen."""
    p1, p2, p3, p4 = store.add_prompts(["one", "two", "three", "four"], "set")
    other = store.add_prompt("elsewhere", "other")
    store.set_prompt_set("set", min_labels=2)
    labelled(store, p1, "alice", "bob")  # complete
    labelled(store, p2, "carol", "erin")  # complete
    labelled(store, p3, "carol")  # needs one more label
    assert store.next_prompt("set", "dave")["id"] == p3  # needs labels: before the complete p1 and p2
    assert store.next_prompt("set", "dave", exclude=[p3])["id"] == p4
    assert store.next_prompt("set", "dave", exclude=[p3, p4])["id"] == p1  # then extra overlap, in id order
    assert store.next_prompt("set", "carol")["id"] == p4  # carol labelled p3 already
    assert store.next_prompt("set", "alice")["id"] == p3
    store.skip_prompt(p3, "alice")
    store.skip_prompt(p3, "alice")  # idempotent
    assert store.next_prompt("set", "alice")["id"] == p4
    assert store.next_prompt("set", "alice", exclude=[p2, p4]) is None  # p1 labelled, p3 skipped
    assert store.next_prompt(None, "alice", exclude=[p2, p4])["id"] == other  # every set
    labelled(store, other, "alice")
    assert store.next_prompt(None, "alice", exclude=[p2, p4]) is None
    with pytest.raises(StoreError, match="no prompt with id 999"):
        store.skip_prompt(999, "alice")


def test_progress_and_prompt_status(store: Store) -> None:
    p1, p2, p3, p4 = store.add_prompts(["one", "two", "three", "four"], "set")
    store.set_prompt_set("set", min_labels=2)
    labelled(store, p1, "alice", "bob")
    labelled(store, p2, "alice")
    store.skip_prompt(p3, "alice")
    store.skip_prompt(p2, "alice")  # skipped after labelling: it counts as labelled
    store.skip_prompt(p3, "bob")
    assert store.annotator_progress("set", "alice") == {
        "total": 4,
        "labelled": 2,
        "skipped": 1,
        "remaining": 1,
    }
    assert store.annotator_progress("set", "zed") == {"total": 4, "labelled": 0, "skipped": 0, "remaining": 4}
    assert store.annotator_progress("nope", "alice") == {
        "total": 0,
        "labelled": 0,
        "skipped": 0,
        "remaining": 0,
    }
    status = [(r["prompt_id"], r["text"], r["labels"], r["min_labels"], r["skips"], r["status"])
              for r in store.prompt_status("set")]  # fmt: skip
    assert status == [
        (p1, "one", 2, 2, 0, "complete"),
        (p2, "two", 1, 2, 1, "in progress"),
        (p3, "three", 0, 2, 2, "unlabelled"),
        (p4, "four", 0, 2, 0, "unlabelled"),
    ]
    assert [r["status"] for r in store.prompt_status(None)] == [s[-1] for s in status]


# -- failed runs --------------------------------------------------------------------------------------------------


def test_failed_runs_are_stored_but_never_compared_or_judged(store: Store) -> None:
    pid = store.add_prompt("Too long?")
    ok1, ok2 = (store.add_run(pid, f"m{i}", "s", f"fine {i}") for i in range(2))
    bad = store.add_run(pid, "m9", "s", "", error="prompt is too long for the model")
    assert (
        store.get_run(bad)["error"] == "prompt is too long for the model"
        and store.get_run(ok1)["error"] is None
    )
    assert [r["id"] for r in store.list_runs(failed=True)] == [bad]
    assert sorted(r["id"] for r in store.list_runs(failed=False)) == [ok1, ok2]
    with pytest.raises(StoreError, match=f"run {bad} failed; a comparison holds only runs that succeeded"):
        store.add_comparison([ok1, bad])
    with pytest.raises(StoreError, match="comparison row 2: .*that succeeded"):
        store.add_comparisons_bulk([[ok1, ok2], [ok2, bad]])
    with pytest.raises(StoreError, match=f"run {bad} failed; judges never see failed runs"):
        store.add_verdict("j", "pairwise", [ok1, bad], winner="A")
    with pytest.raises(StoreError, match="judges never see failed runs"):
        store.add_verdict("j", "single", [bad], rating=1)
    assert store.list_comparisons() == [] and store.list_verdicts() == []
    ids = store.add_runs_bulk(
        pa.table({"prompt_id": [pid] * 2, "model": ["a", "b"], "strategy": ["s"] * 2, "answer": ["x", ""],
                  "error": [None, "timeout"]})
    )  # fmt: skip
    assert [store.get_run(i)["error"] for i in ids] == [None, "timeout"]


def store_with_a_failed_run_in_a_comparison(store: Store) -> dict[str, int]:
    """A comparison that holds a failed run, as a store written before the refusal (or by hand) may: written
    with SQL, since every verb refuses it now. Votes and verdicts on it must still never reach any output."""
    pid = store.add_prompt("Which is best?", "set")
    good, other = (store.add_run(pid, f"m{i}", "s", f"good answer {i}") for i in range(2))
    failed = store.add_run(pid, "failed-model", "broken", "partial text", error="CUDA out of memory")
    con = store._cur()
    trio = int(con.execute("SELECT nextval('comparisons_id_seq')").fetchall()[0][0])
    con.execute("INSERT INTO comparisons (id, prompt_id) VALUES (?, ?)", [trio, pid]).fetchall()
    con.execute(
        "INSERT INTO comparison_runs VALUES (?, 0, ?), (?, 1, ?), (?, 2, ?)",
        [trio, failed, trio, good, trio, other],
    ).fetchall()
    pair = int(con.execute("SELECT nextval('comparisons_id_seq')").fetchall()[0][0])
    con.execute("INSERT INTO comparisons (id, prompt_id) VALUES (?, ?)", [pair, pid]).fetchall()
    con.execute(
        "INSERT INTO comparison_runs VALUES (?, 0, ?), (?, 1, ?)", [pair, failed, pair, good]
    ).fetchall()
    store.add_ranking(trio, [1, 2, 3], "alice")  # the failed run ranked best
    store.add_vote(pair, "A", "bob")  # the failed run wins
    store.add_vote(pair, "both_bad", "carol")  # a KTO label for the failed run
    con.execute(
        """INSERT INTO verdicts (id, judge, mode, run_ids, winner, rating, ok)
        VALUES (nextval('verdicts_id_seq'), 'j', 'pairwise', [?, ?], 'A', NULL, TRUE),
               (nextval('verdicts_id_seq'), 'j', 'single', [?], NULL, 9.0, TRUE)""",
        [failed, other, failed],
    ).fetchall()
    return {"good": good, "other": other, "failed": failed, "trio": trio, "pair": pair}


def test_failed_runs_never_reach_pairs_kto_rm_win_counts_or_exports(store: Store, tmp_path: Path) -> None:
    ids = store_with_a_failed_run_in_a_comparison(store)
    pairs = store.preference_pairs()
    assert [(p["chosen_run_id"], p["rejected_run_id"]) for p in pairs] == [(ids["good"], ids["other"])]
    assert all(r["chosen"] != "partial text" and r["rejected"] != "partial text" for r in store.rm_pairs())
    assert len(store.rm_pairs()) == 1
    # alice's ranking labels 'good answer 0' good and 'good answer 1' bad; carol's both_bad also labels
    # 'good answer 0' bad, an exact split that drops it. The failed run's rating and wins label nothing.
    kto = store.kto_rows(good_rating=5)
    assert [(r["completion"], r["label"]) for r in kto] == [("good answer 1", False)]
    assert {(w["winner"], w["loser"]) for w in store.win_counts()} == {("m0", "m1")}
    assert "broken" not in {w["winner"] for w in store.win_counts(by="strategy")}
    assert store.win_counts(Filters(model="failed-model")) == []
    for kind in ("dpo", "kto", "rm"):
        ds = store.to_dataset(kind, good_rating=5)
        assert "partial text" not in json.dumps(ds.to_list()), kind
        out = store.export(kind, "jsonl", tmp_path / f"{kind}.jsonl", allow_outside=True, good_rating=5)
        text = Path(out.path).read_text()
        assert out.rows == len(ds) > 0 and "partial text" not in text, kind
    assert store.stats()["dpo_rows"] == 1


def test_judges_never_see_failed_runs(store: Store) -> None:
    from studio import judging

    ids = store_with_a_failed_run_in_a_comparison(store)
    snap = judging.snapshot(store)
    assert ids["failed"] not in snap.runs
    assert ids["trio"] not in snap.comparisons and ids["pair"] not in snap.comparisons
    assert all(ids["failed"] not in v["run_ids"] for v in snap.verdicts)
    for source in ("comparisons", "runs"):
        for mode in ("pairwise", "single"):
            targets = judging.targets(snap, judging.Scope(source=source), mode)
            assert all(ids["failed"] not in t.run_ids for t in targets), (source, mode)
    assert [t.run_ids for t in judging.targets(snap, judging.Scope(source="runs"), "pairwise")] == [
        (ids["good"], ids["other"])
    ]
