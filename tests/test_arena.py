"""The Arena: the service on the real default model, then the served app through gradio_client, with the
rows checked in the DuckDB file afterwards."""

from pathlib import Path

import pytest

from storage import Store
from studio import arena as svc
from studio.errors import InputError
from studio.models import ModelRegistry
from tests.servers import studio_server

pytestmark = pytest.mark.slow
PARAMS = {"max_new_tokens": 24}


@pytest.fixture()
def store(settings):
    s = Store(settings.db_path, data_dir=settings.data_dir)
    yield s
    s.close()


def test_stream_arena_stores_runs_positions_and_streams_tokens(settings, store) -> None:
    registry = ModelRegistry(settings)
    cols = ["system1 @ smollm2-135m", "cot @ smollm2-135m", "s2a:default @ smollm2-135m"]
    updates = list(
        svc.stream_arena(store, registry, "What is the capital of France?", cols, PARAMS, shuffle_seed=3)
    )
    kinds = [u.kind for u in updates]
    assert kinds[-1] == "done" and kinds.count("stored") == 3
    first_delta = kinds.index("delta")
    assert first_delta < kinds.index("stored"), "tokens must stream before the first run finishes"
    state = updates[-1].state
    assert sorted(state.columns) == sorted(cols), "blind mode shuffles positions, it keeps every column"
    cmp = store.get_comparison(state.comparison_id)
    assert cmp["run_ids"] == state.run_ids and cmp["blind"] is True
    for pos, rid in enumerate(state.run_ids):
        run = store.get_run(rid)
        assert svc.Column(run["strategy"], run["variant"], run["model"]).label == state.columns[pos]
        assert run["trace"]["steps"] and run["answer"] == state.answers[pos]
    assert svc.reveal(store, state.comparison_id) == state.columns

    vid = svc.record_vote(store, state.comparison_id, "alice", ranks=["2", "1", "2"], comment="b is best")
    [vote] = store.list_votes(comparison_id=state.comparison_id)
    assert vote["id"] == vid and vote["ranks"] == [2, 1, 2] and vote["annotator"] == "alice"
    step_id = state.step_ids[0][0][0]
    lid = svc.label_step(store, state, 0, step_id, "wrong", "alice", "made up")
    assert store.list_step_labels(state.run_ids[0])[0]["id"] == lid


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"annotator": " "}, "enter your name"),
        ({"ranks": ["1", None, "2"]}, "incomplete label"),
        ({"ranks": ["x", "1", "2"]}, "whole numbers"),
        ({"comparison_id": 10**9}, "does not exist"),
        ({"comparison_id": None}, "nothing to label"),
    ],
)
def test_bad_labels_are_clear(store, kwargs: dict, message: str) -> None:
    pid = store.add_prompt("q")
    runs = [store.add_run(pid, "m", "system1", a) for a in ("x", "y", "z")]
    cid = store.add_comparison(runs)
    args = {"comparison_id": cid, "annotator": "bob", "ranks": ["1", "2", "3"]} | kwargs
    with pytest.raises(InputError, match=message):
        svc.record_vote(store, args.pop("comparison_id"), args.pop("annotator"), **args)
    assert store.list_votes(comparison_id=cid) == []


def test_import_prompt_file(store, tmp_path: Path) -> None:
    (tmp_path / "qs.txt").write_text("What is 2+2?\n\nName a colour.\n")
    assert svc.import_prompt_file(store, str(tmp_path / "qs.txt"), "") == 2
    assert svc.next_prompt(store, "qs") in ("What is 2+2?", "Name a colour.")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "ok"}\n{"nope": 1}\n')
    with pytest.raises(InputError, match="line 2"):
        svc.import_prompt_file(store, str(tmp_path / "bad.jsonl"), "bad")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="not valid UTF-8"):
        svc.import_prompt_file(store, str(tmp_path / "latin1.txt"), "x")
    with pytest.raises(InputError, match="empty"):
        svc.next_prompt(store, "no-such-set")


def test_app_run_and_vote_through_gradio_client(settings, tmp_path: Path) -> None:
    from gradio_client import Client

    with studio_server(settings.data_dir, tmp_path / "serve.log") as (url, _):
        client = Client(url, verbose=False)
        run = {
            "temperature": 0,
            "top_p": 1,
            "seed": None,
            "max_questions": 5,
            "max_branches": 5,
            "token_budget": None,
        }
        cols = ["system1 @ smollm2-135m", "cot @ smollm2-135m"]
        job = client.submit(
            prompt="What is the capital of France?", columns=cols, blind=False, max_new_tokens=24, **run,
            api_name="/run_arena",
        )  # fmt: skip
        updates = list(job)
        cid, status = job.result()[:2]
        assert len(updates) > 2 and cid and "Comparison" in status
        msg = client.predict(cid, "B", "cot wins", "alice", *[None] * 6, api_name="/vote")[0]
        assert "alice" in msg and "cot @ smollm2-135m" in msg
        flagged = client.predict("0|s1", "wrong", "not sure", "alice", api_name="/flag_step")
        assert "wrong" in flagged
        with pytest.raises(Exception, match="enter your name"):
            client.predict(cid, "A", "", "", *[None] * 6, api_name="/vote")
    with Store(settings.db_path) as store:
        cmp = store.get_comparison(int(cid))
        runs = [store.get_run(r) for r in cmp["run_ids"]]
        assert [r["strategy"] for r in runs] == ["system1", "cot"] and cmp["blind"] is False
        [vote] = store.list_votes(comparison_id=int(cid))
        assert (vote["choice"], vote["annotator"], vote["comment"]) == ("B", "alice", "cot wins")
        [label] = store.list_step_labels(runs[0]["id"])
        assert (label["step_id"], label["label"], label["annotator"]) == ("s1", "wrong", "alice")
