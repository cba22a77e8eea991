"""The Arena: the service on the real default model, then the served app through gradio_client, with the
rows checked in the DuckDB file afterwards."""

import json
import re
from pathlib import Path
from typing import Any

import pytest

from storage import Store
from studio import arena as svc
from studio.errors import InputError
from studio.models import ModelRegistry, ModelSpec
from studio.settings import Settings
from studio.strategies import STEP_NAMES, STRATEGIES, StrategyParams
from tests.servers import broken_server, stop, studio_server

pytestmark = pytest.mark.slow
PARAMS = {"max_new_tokens": 24}
S1, COT = "system1 @ smollm2-135m", "cot @ smollm2-135m"
RUN = {
    "temperature": 0,
    "top_p": 1,
    "seed": None,
    "max_questions": 2,
    "max_branches": 2,
    "token_budget": None,
}


@pytest.fixture()
def store(settings):
    s = Store(settings.db_path, data_dir=settings.data_dir)
    yield s
    s.close()


def comparison(store: Store, n: int, prompt: str = "q") -> int:
    pid = store.add_prompt(prompt)
    return store.add_comparison([store.add_run(pid, "m", "system1", f"answer {k}") for k in range(n)])


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
    assert state.included == [0, 1, 2] and state.hidden
    cmp = store.get_comparison(state.comparison_id)
    assert cmp["run_ids"] == state.run_ids and cmp["blind"] is True
    for pos, rid in enumerate(state.run_ids):
        run = store.get_run(rid)
        assert svc.ArenaColumn(run["strategy"], run["variant"], run["model"]).label == state.columns[pos]
        assert run["trace"]["steps"] and run["answer"] == state.answers[pos] and run["error"] is None
    assert svc.reveal(store, state.comparison_id) == state.columns

    step_id = state.step_ids[0][0][0]
    with pytest.raises(InputError, match="after your vote"):  # a blind trace opens with the vote
        svc.label_step(store, state, 0, step_id, "wrong", "alice", "made up")
    vid = svc.record_vote(
        store, svc.Label(state.comparison_id, "alice", ranks=["2", "1", "2"], comment="b is best")
    )
    [vote] = store.list_votes(comparison_id=state.comparison_id)
    assert vote["id"] == vid and vote["ranks"] == [2, 1, 2] and vote["annotator"] == "alice"
    state.voted = True
    lid = svc.label_step(store, state, 0, step_id, "wrong", "alice", "made up")
    assert store.list_step_labels(state.run_ids[0])[0]["id"] == lid


@pytest.mark.parametrize(
    ("size", "kwargs", "message"),
    [
        (3, {"annotator": " "}, "enter your name"),
        (3, {"ranks": ["1", None, "2"]}, "incomplete label"),
        (3, {"ranks": ["x", "1", "2"]}, "whole numbers"),
        (3, {"ranks": ["1", "2", "4"]}, "ranks go from 1"),
        (3, {"ranks": ["1", "2", "3", "1"]}, "3 columns, but 4 ranks"),  # was stored as [1, 2, 3]
        (2, {"ranks": ["1", "2", "1"]}, "2 columns, but 3 ranks"),  # was stored as a ranking
        (3, {"ranks": ["1", "2", "3", None, None, "2"]}, "3 columns, but 4 ranks"),
        (3, {"comparison_id": 10**9}, "does not exist"),
        (3, {"comparison_id": None}, "nothing to label"),
    ],
)
def test_bad_labels_are_clear(store, size: int, kwargs: dict, message: str) -> None:
    cid = comparison(store, size)
    args = {"comparison_id": cid, "annotator": "bob", "ranks": [str(k) for k in range(1, size + 1)]} | kwargs
    with pytest.raises(InputError, match=message):
        svc.record_vote(store, svc.Label(**args))
    assert store.list_votes(comparison_id=cid) == []


def test_trailing_blank_ranks_are_fine_and_a_second_label_replaces_the_first(store) -> None:
    cid = comparison(store, 3)
    first = svc.record_vote(store, svc.Label(cid, "bob", ranks=["1", "2", "3", None, "", None]))
    assert svc.own_label(store, cid, "bob")["ranks"] == [1, 2, 3]
    assert (
        svc.record_vote(store, svc.Label(cid, "bob", ranks=["3", "2", "1"], comment="changed my mind"))
        == first
    )
    [vote] = store.list_votes(comparison_id=cid)
    assert vote["ranks"] == [3, 2, 1] and vote["comment"] == "changed my mind"
    assert [a["action"] for a in store.label_audit(comparison_id=cid)] == ["replace"]


def test_long_or_nul_prompts_are_refused_before_anything_runs_or_is_stored(settings, store) -> None:
    small = Settings.load(env={}, data_dir=settings.data_dir, max_prompt_chars=40)
    registry = ModelRegistry(small)
    for prompt, message in [("x" * 41, "41 characters; the limit is 40"), ("2+2\x00?", "NUL bytes")]:
        with pytest.raises(InputError, match=message):
            list(svc.stream_arena(store, registry, prompt, [S1, COT], PARAMS))
    assert store.list_prompts(limit=None) == [] and store.list_runs(limit=None) == []
    assert Settings.load(env={"STUDIO_MAX_PROMPT_CHARS": "123"}).max_prompt_chars == 123
    assert Settings.load(env={}).max_prompt_chars == 20000


def test_failed_columns_are_stored_with_their_error_and_left_out(settings, store) -> None:
    registry = ModelRegistry(settings)
    with broken_server("garbage") as url:
        registry.add(ModelSpec("broken", backend="openai", path="m", base_url=url))
        cols = [S1, "system1 @ broken", COT]
        state = list(svc.stream_arena(store, registry, "Name a colour.", cols, PARAMS, blind=False))[-1].state
        alone = list(svc.stream_arena(store, registry, "Name a fruit.", [S1, "cot @ broken"], PARAMS))[
            -1
        ].state
    assert state.errors[1] and state.included == [0, 2]
    assert store.get_comparison(state.comparison_id)["run_ids"] == [state.run_ids[0], state.run_ids[2]]
    assert store.get_run(state.run_ids[1])["error"] == state.errors[1]
    assert alone.comparison_id is None and not alone.hidden, "one answer: nothing to compare"
    assert [store.get_run(r)["error"] is None for r in alone.run_ids] == [
        e is None for e in alone.errors
    ] and sum(e is not None for e in alone.errors) == 1
    assert len(store.list_comparisons(limit=None)) == 1

    # ranks given by screen position: the failed column has none, the others map onto the comparison
    assert svc.comparison_ranks(state, state.comparison_id, ["2", None, "1", None, None, None]) == ["2", "1"]
    with pytest.raises(InputError, match="column B failed"):
        svc.comparison_ranks(state, state.comparison_id, ["2", "1", "1"])


def test_next_prompt_is_per_annotator(store) -> None:
    ids = [store.add_prompt(t, "qs") for t in ("What is 2+2?", "Name a colour.", "Name a fruit.")]
    store.add_prompt("Another set's prompt", "other")
    nxt = svc.next_prompt
    assert nxt(store, "qs", "alice")["id"] == ids[0]
    assert nxt(store, "qs", "alice", exclude=[ids[0]])["id"] == ids[1], "never the same prompt twice in a row"
    runs = [store.add_run(ids[0], "m", s, "4") for s in ("system1", "cot")]
    svc.record_vote(store, svc.Label(store.add_comparison(runs), "alice", choice="A"))
    assert nxt(store, "qs", "alice")["id"] == ids[1], "alice labelled the first"
    assert nxt(store, "qs", "bob")["id"] == ids[1], (
        "one label per prompt is enough: bob gets an unlabelled one"
    )
    store.set_prompt_set("qs", min_labels=2)
    assert nxt(store, "qs", "bob")["id"] == ids[0], "two wanted: bob gets the one alice labelled"
    svc.skip_prompt(store, ids[1], "alice")
    assert nxt(store, "qs", "alice")["id"] == ids[2]
    assert nxt(store, "qs", "alice", exclude=[ids[2]]) is None
    assert svc.progress(store, "qs", "alice") == {"total": 3, "labelled": 1, "skipped": 1, "remaining": 1}
    # no prompt set chosen: every prompt, still never one alice labelled or skipped
    seen = {nxt(store, None, "alice")["id"], nxt(store, "", "alice", exclude=[ids[2]])["id"]}
    assert ids[0] not in seen and ids[1] not in seen
    with pytest.raises(InputError, match="enter your name"):
        nxt(store, "qs", " ")
    with pytest.raises(InputError, match="empty"):
        nxt(store, "no-such-set", "alice")


def test_import_prompt_file(store, tmp_path: Path) -> None:
    (tmp_path / "qs.txt").write_text("What is 2+2?\n\nName a colour.\n")
    assert svc.import_prompt_file(store, str(tmp_path / "qs.txt"), "") == 2
    assert svc.next_prompt(store, "qs", "alice")["text"] in ("What is 2+2?", "Name a colour.")
    (tmp_path / "bad.jsonl").write_text('{"prompt": "ok"}\n{"nope": 1}\n')
    with pytest.raises(InputError, match="line 2"):
        svc.import_prompt_file(store, str(tmp_path / "bad.jsonl"), "bad")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match="not valid UTF-8"):
        svc.import_prompt_file(store, str(tmp_path / "latin1.txt"), "x")


# -- the served app ----------------------------------------------------------------------------------------------
VOTE_ANSWERS = slice(-12, -6)  # the vote's outputs end with the columns' answers, then their summaries


#: step names that are also the page's own words ("Traces open after your vote"): a blind page is checked for them
#: where a step name would show (a "[name]" prefix, the flag picker, a tree), not as words
PAGE_WORDS = {"vote", "value"}


def identifying_names() -> list[str]:
    names = {*STEP_NAMES, "smollm2-135m"}
    for name in STRATEGIES.names():
        names |= {name, *STRATEGIES.get(name).variants}
    return sorted(names - PAGE_WORDS)


def texts(value: Any) -> list[str]:
    """Every string in an output, not the keys of its updates ({"value": ..., "__type__": "update"})."""
    if isinstance(value, dict):
        return [t for v in value.values() for t in texts(v)]
    if isinstance(value, list | tuple):
        return [t for v in value for t in texts(v)]
    return [value] if isinstance(value, str) else []


def blank(output: Any) -> bool:
    """An output that shows nothing: empty, or left as it was (no new value)."""
    return output in ("", None) or (isinstance(output, dict) and "value" not in output.get("props", output))


def named(value: Any, names: list[str]) -> list[str]:
    text = "\n".join(texts(value))
    return [n for n in names if re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", text, re.IGNORECASE)]


def test_app_labels_through_gradio_client(settings, tmp_path: Path) -> None:
    """Blind run, vote, re-vote, the cleared form, failed columns, refused input, next prompt and skip."""
    from gradio_client import Client

    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        three, six = comparison(store, 3, "seeded"), comparison(store, 6, "seeded six")
        for text in ("What is 2+2?", "Name a colour."):
            store.add_prompt(text, "qs")
    with broken_server("garbage") as broken:
        ModelRegistry(settings).add(ModelSpec("broken", backend="openai", path="m", base_url=broken))
        env = {"STUDIO_MAX_NEW_TOKENS": "16", "STUDIO_MAX_PROMPT_CHARS": "200"}
        with studio_server(settings.data_dir, tmp_path / "serve.log", env=env) as (url, proc):
            client = Client(url, verbose=False)
            ranks = [
                c
                for c in client.config["components"]
                if c["props"].get("elem_id", "").startswith("arena-rank")
            ]
            assert len(ranks) == 6 and all(c["props"].get("value") is None for c in ranks), (
                "no rank before a run"
            )

            msg = client.predict(six, None, "", "alice", "1", "2", "3", "4", "5", "6", api_name="/vote")[0]
            assert "Saved vote" in msg, "a fresh session can rank a six-column comparison"

            # blind: no output names a column's method, variant, steps or model until the vote
            job = client.submit(prompt="What is the capital of France?", columns=[S1, COT], blind=True,
                                max_new_tokens=16, **RUN, api_name="/run_arena")  # fmt: skip
            updates = list(job)
            cid, status = job.result()[:2]
            assert cid and "Comparison" in status and len(updates) > 2
            for out in [*updates, job.result()]:
                cmp_id, status, steps, _pairwise, _msg, *cols = out
                headers, answers, traces, summaries = cols[0:6], cols[6:12], cols[12:18], cols[24:30]
                assert not named([status, steps, headers, traces, summaries], identifying_names()), out
                assert steps.get("choices", []) == [] and all(map(blank, summaries)), summaries
                assert not any(re.search(r">\s*\[\w+\]", str(a)) for a in answers), answers
            with pytest.raises(Exception, match="after your vote|not in the list of choices"):
                client.predict("0|s1", "wrong", "", "alice", api_name="/flag_step")

            out = client.predict(cid, "A", "a wins", "alice", *[None] * 6, api_name="/vote")
            status, msg, pairwise, comment, note, steps, *cols = out
            assert "alice" in status and S1 in status and COT in status, "revealed by the vote"
            assert "submitting again replaces your label" in msg
            assert (pairwise["value"], comment, note) == (None, "", ""), "the form is cleared after a vote"
            assert [c["value"] for c in cols[12:18]] == [None] * 6 and steps["choices"]
            assert any("trace-step" in t for t in cols[6:8]), "the traces open with the vote"
            again = client.predict(cid, "B", "", "alice", *[None] * 6, api_name="/vote")
            assert "Replaced your label" in again[1]
            flagged, note = client.predict("0|s1", "wrong", "not sure", "alice", api_name="/flag_step")
            assert "wrong" in flagged and note == "", "the note is cleared once the step label is saved"

            # refused: extra ranks, too long a prompt, a NUL, no name; nothing changes
            with pytest.raises(Exception, match="3 columns, but 4 ranks"):
                client.predict(three, None, "", "alice", "1", "2", "2", "1", None, None, api_name="/vote")
            with pytest.raises(Exception, match="2 columns, but 3 ranks"):
                client.predict(cid, None, "", "alice", "1", "2", "1", None, None, None, api_name="/vote")
            for prompt, message in [("x" * 201, "the limit is 200"), ("a\x00b", "NUL"), ("  ", "empty")]:
                with pytest.raises(Exception, match=message):
                    client.predict(prompt=prompt, columns=[S1, COT], blind=True, max_new_tokens=16, **RUN,
                                   api_name="/run_arena")  # fmt: skip
            with pytest.raises(Exception, match="enter your name"):
                client.predict(cid, "A", "", "", *[None] * 6, api_name="/vote")
            with pytest.raises(Exception, match=r"per-step token caps are written 'step=tokens, …'"):
                client.predict(prompt="2+2?", columns=[S1], max_new_tokens=16, **RUN | {"blind": False},
                               step_max_tokens="answer 4", api_name="/run_arena")  # fmt: skip

            # the decoding options: what was changed is sent and stored with the run
            out = client.predict(prompt="Name a fruit.", columns=[S1], max_new_tokens=16, **RUN | {"blind": False},
                                 step_max_tokens="answer=4", repetition_penalty=1.3, api_name="/run_arena")  # fmt: skip
            assert "All 1 columns finished" in out[1] and "· done" in out[5]["value"]

            # a failed column is shown as failed and left out, its error (which names the model) after the vote
            out = client.predict(prompt="Name a colour.", columns=[S1, COT, "system1 @ broken"], blind=True,
                                 max_new_tokens=16, **RUN, api_name="/run_arena")  # fmt: skip
            two_of_three, status = out[:2]
            assert (
                "1 failed (" in status and "pick the better one" in status and "broken" not in json.dumps(out)
            )
            letters = [c[0] for c in out[3]["choices"][:2]]  # the pairwise buttons carry the screen letters
            out = client.predict(two_of_three, "A", "", "alice", *[None] * 6, api_name="/vote")
            answers = out[VOTE_ANSWERS]
            assert "system1 @ broken" in out[0] and sum("left out" in str(a) for a in answers) == 1
            failed = next(i for i, a in enumerate(answers) if "left out" in str(a))
            assert "ABC"[failed] not in letters and len(letters) == 2

            # one answer is nothing to compare, and nothing is kept blind
            out = client.predict(prompt="Name a colour.", columns=[S1, "system1 @ broken"], blind=True,
                                 max_new_tokens=16, **RUN, api_name="/run_arena")  # fmt: skip
            failed_cid, status = out[:2]
            assert failed_cid is None and "1 failed (" in status and "nothing to compare" in status
            assert "rank the columns" not in status and "broken" in json.dumps(out), (
                "revealed: nothing is blind"
            )

            # next prompt: this annotator's, never the same twice in a row; skip records a skip
            first, bar = client.predict("qs", "carol", "", False, api_name="/next_prompt")
            second, bar = client.predict("qs", "carol", first, False, api_name="/next_prompt")
            assert {first, second} == {"What is 2+2?", "Name a colour."} and "<b>0</b> skipped" in bar
            _, bar = client.predict("qs", "carol", second, False, api_name="/skip_prompt")
            assert "<b>1</b> skipped" in bar
            stop(proc)
    with Store(settings.db_path) as store:
        [vote] = store.list_votes(comparison_id=int(cid))
        assert (vote["choice"], vote["annotator"], vote["comment"]) == ("B", "alice", None)
        [audit] = store.label_audit(comparison_id=int(cid))
        assert audit["action"] == "replace" and "a wins" in json.dumps(audit["old"])
        assert store.list_votes(comparison_id=three) == []
        assert store.get_label(six, "alice")["ranks"] == [1, 2, 3, 4, 5, 6]
        runs = store.list_runs(limit=None)
        assert sum(r["error"] is not None for r in runs) == 2 and len(store.list_comparisons(limit=None)) == 4
        assert len(store.get_comparison(int(two_of_three))["run_ids"]) == 2
        assert not [p for p in store.list_prompts(limit=None) if len(p["text"]) > 200 or "\x00" in p["text"]]
        [label] = store.list_step_labels(store.get_comparison(int(cid))["run_ids"][0])
        assert (label["step_id"], label["label"], label["annotator"]) == ("s1", "wrong", "alice")
        assert store.annotator_progress("qs", "carol")["skipped"] == 1
        [fruit] = [r for r in runs if store.get_prompt(r["prompt_id"])["text"] == "Name a fruit."]
        run = store.get_run(fruit["id"])
        assert (
            run["params"]["step_max_tokens"] == {"answer": 4} and run["params"]["repetition_penalty"] == 1.3
        )
        assert run["params"]["breadth"] == StrategyParams().breadth, "an unchanged option keeps the default"
        [answer] = run["trace"]["steps"]
        assert answer["params"]["max_new_tokens"] == 4 and answer["completion_tokens"] <= 4


def test_tree_and_vote_stay_hidden_while_blind_and_open_from_the_stored_runs(launch, settings) -> None:
    """A blind ToT column and a self-consistency column: no tree, tally or node in any output until the vote;
    then the tree and the vote share show (from the stored traces), and a node is flagged through the API."""
    client = launch()
    # structured: the proposals parse whatever the model writes, so the tree has nodes to flag
    small = {"max_new_tokens": 64, "breadth": 1, "depth": 1, "k": 2, "n_evaluate": 1, "samples": 3,
             "structured": True}  # fmt: skip
    job = client.submit(prompt="Use the numbers 4 6 8 2 and + - * / to make 24.", blind=True,
                        columns=["tot:bfs @ smollm2-135m", "sc:system1 @ smollm2-135m"], **RUN | small,
                        api_name="/run_arena")  # fmt: skip
    updates = list(job)
    final = job.result()
    for out in [*updates, final]:
        everything = "\n".join(texts(out))
        assert "tot-tree" not in everything and "sc-vote" not in everything and "data-node" not in everything
        _cid, status, steps, _pairwise, _msg, *cols = out  # the answers (cols[6:12]) may say anything
        assert not named([status, steps, cols[0:6], cols[12:18], cols[24:30]], identifying_names())
    cid = final[0]
    assert cid, final[1]
    out = client.predict(cid, "A", "", "alice", *[None] * 6, api_name="/vote")
    summaries, steps = out[-6:], out[5]["choices"]
    tree = next(s for s in summaries if "tot-tree" in s)
    vote = next(s for s in summaries if "sc-vote" in s)
    assert 'data-node="n0"' in tree and "chosen path: n0" in tree, "the stored tree, search finished"
    assert re.search(r"vote share <b class=\"sc-share\">\d+%</b>", vote) and "3 samples" in vote
    node = next(v for _, v in steps if v.count("|") == 2)
    position, step_id, node_id = node.split("|")
    msg, _ = client.predict(node, "good", "a fine step", "alice", api_name="/flag_step")
    assert f"{step_id} (node {node_id}) is **good**" in msg
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        run_id = store.get_comparison(int(cid))["run_ids"][int(position)]
        [label] = store.list_step_labels(run_id)
        assert (label["step_id"], label["label"], label["note"]) == (
            step_id,
            "good",
            f"node {node_id}: a fine step",
        )
