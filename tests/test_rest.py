"""The labelling REST API (/api/v1) against a real `studio serve` on 127.0.0.1: logins by token, a body that
tries to speak for someone else, bad input, blind reveal, re-votes, deletes, concurrent writers (checked in the
DuckDB file), and the OpenAPI description. No model is loaded: labelling needs none."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from storage import Store
from studio.auth import add_user, issue_token
from tests.servers import studio_server

SECRET_MODEL = "secret-model-7b"  # must not appear in any answer before the caller labels


@dataclass
class Served:
    url: str
    pairs: list[int]  # two-answer comparisons in prompt set "maths"
    three: int  # a three-answer comparison
    other: int  # a comparison in prompt set "other"
    tokens: dict[str, str]

    def client(self, who: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[who]}"} if who else {}
        return httpx.Client(base_url=self.url + "api/v1", headers=headers, timeout=30)


def seed(data: Path, n_pairs: int = 6) -> tuple[list[int], int, int]:
    with Store(data / "studio.duckdb", data_dir=data) as store:
        pairs = []
        for i in range(n_pairs):
            pid = store.add_prompt(f"What is {i} + {i}?", "maths")
            a = store.add_run(pid, SECRET_MODEL, "system1", f"{2 * i}")
            b = store.add_run(pid, SECRET_MODEL, "cot", f"Let me think. {i} + {i} = {2 * i}.")
            pairs.append(store.add_comparison([a, b]))
        pid = store.add_prompt("Name a prime.", "maths")
        three = store.add_comparison(
            [store.add_run(pid, SECRET_MODEL, s, "7") for s in ("system1", "cot", "s2a")]
        )
        pid = store.add_prompt("Capital of France?", "other")
        other = store.add_comparison(
            [store.add_run(pid, SECRET_MODEL, s, "Paris") for s in ("system1", "cot")]
        )
    return pairs, three, other


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    data = tmp_path_factory.mktemp("rest") / "data"
    data.mkdir()
    pairs, three, other = seed(data)
    users = data / "users.toml"
    for name, role in (("alice", "annotator"), ("bob", "annotator"), ("root", "admin")):
        add_user(users, name, f"{name}-password", role=role)
    tokens = {name: issue_token(users, name) for name in ("alice", "bob", "root")}
    with studio_server(data, data / "serve.log", "--no-preload", "--auth", str(users)) as (url, _):
        yield Served(url, pairs, three, other, tokens)


def error_of(r: httpx.Response) -> str:
    body = r.json()
    assert set(body) == {"error"} and body["error"], body  # one message, nothing else
    return body["error"]


# -- logins ---------------------------------------------------------------------------------------------------
def test_without_a_valid_token_every_endpoint_is_401_and_shows_no_data(served: Served) -> None:
    cid = served.pairs[0]
    calls = [
        ("GET", "/comparisons", None),
        ("GET", f"/comparisons/{cid}", None),
        ("POST", f"/comparisons/{cid}/votes", {"choice": "A", "annotator": "alice"}),
        ("GET", f"/comparisons/{cid}/votes", None),
        ("DELETE", "/votes/1", None),
    ]
    for headers in ({}, {"Authorization": "Bearer studio_not-a-real-token"}, {"Authorization": "Basic YTpi"}):
        with httpx.Client(base_url=served.url + "api/v1", headers=headers, timeout=30) as c:
            for method, path, body in calls:
                r = c.request(method, path, json=body)
                assert r.status_code == 401, (method, path, headers, r.text)
                assert "What is" not in r.text and SECRET_MODEL not in r.text
                error_of(r)
    with served.client("root") as c:  # the refused vote left nothing behind
        assert c.get(f"/comparisons/{cid}/votes").json() == []


def test_the_token_user_is_the_annotator_and_a_body_cannot_speak_for_another(served: Served) -> None:
    cid = served.pairs[1]
    with served.client("alice") as alice, served.client("root") as root:
        r = alice.post(f"/comparisons/{cid}/votes", json={"choice": "A", "annotator": "bob"})
        assert r.status_code == 403 and "alice" in error_of(r)
        assert root.get(f"/comparisons/{cid}/votes").json() == []
        r = alice.post(f"/comparisons/{cid}/votes", json={"choice": "B", "comment": "B shows its work"})
        assert r.status_code == 201, r.text
        saved = r.json()
        assert (saved["annotator"], saved["choice"], saved["replaced"]) == ("alice", "B", False)
        votes = root.get(f"/comparisons/{cid}/votes").json()
        assert [(v["id"], v["annotator"], v["choice"], v["comment"]) for v in votes] == [
            (saved["id"], "alice", "B", "B shows its work")
        ]
        # naming yourself is allowed (and changes nothing)
        r = alice.post(f"/comparisons/{cid}/votes", json={"choice": "A", "annotator": "alice"})
        assert r.status_code == 201 and r.json()["annotator"] == "alice"


# -- reading ----------------------------------------------------------------------------------------------------
def test_blind_names_appear_only_after_the_caller_labels(served: Served) -> None:
    cid = served.pairs[2]
    with served.client("bob") as bob, served.client("alice") as alice:
        before = bob.get(f"/comparisons/{cid}")
        assert before.status_code == 200
        body = before.json()
        assert body["prompt"] == "What is 2 + 2?" and body["blind"] is True
        assert [a["position"] for a in body["answers"]] == ["A", "B"]
        assert [a["text"] for a in body["answers"]] == ["4", "Let me think. 2 + 2 = 4."]
        assert body["columns"] is None and body["your_label"] is None
        assert (
            SECRET_MODEL not in before.text and "system1" not in before.text and "run_ids" not in before.text
        )
        assert bob.post(f"/comparisons/{cid}/votes", json={"choice": "tie"}).status_code == 201
        after = bob.get(f"/comparisons/{cid}").json()
        assert [c["label"] for c in after["columns"]] == [
            f"system1 @ {SECRET_MODEL}",
            f"cot @ {SECRET_MODEL}",
        ]
        assert after["your_label"]["choice"] == "tie"
        # alice has not labelled it: still blind for her, and bob's vote is not shown to her
        assert alice.get(f"/comparisons/{cid}").json()["columns"] is None
        assert alice.get(f"/comparisons/{cid}/votes").json() == []
        assert [v["annotator"] for v in bob.get(f"/comparisons/{cid}/votes").json()] == ["bob"]


def test_list_filters_by_prompt_set_and_unlabelled(served: Served) -> None:
    cid = served.pairs[3]
    with served.client("alice") as alice, served.client("root") as root:
        ids = [c["id"] for c in alice.get("/comparisons", params={"prompt_set": "maths"}).json()]
        assert ids == [*served.pairs, served.three]
        other = alice.get("/comparisons", params={"prompt_set": "other"}).json()
        assert [(c["id"], c["prompt"], c["answers"]) for c in other] == [
            (served.other, "Capital of France?", 2)
        ]
        assert alice.post(f"/comparisons/{cid}/votes", json={"choice": "A"}).status_code == 201
        todo = [c["id"] for c in alice.get("/comparisons", params={"unlabelled_by": "alice"}).json()]
        assert cid not in todo and served.pairs[0] in todo and served.other in todo
        listed = {c["id"]: c["labelled"] for c in alice.get("/comparisons").json()}
        assert listed[cid] is True and listed[served.pairs[0]] is False
        assert len(alice.get("/comparisons", params={"limit": 2}).json()) == 2
        # an annotator may not map out what someone else has labelled; an admin may
        r = alice.get("/comparisons", params={"unlabelled_by": "bob"})
        assert r.status_code == 403 and error_of(r)
        assert root.get("/comparisons", params={"unlabelled_by": "alice"}).status_code == 200
        r = alice.get("/comparisons", params={"limit": 0})
        assert r.status_code == 400 and "limit" in error_of(r)


# -- bad input ---------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("target", "body", "status", "says"),
    [
        ("missing", {"choice": "A"}, 404, "no comparison with id 999999"),
        ("pair", {"choice": "C"}, 400, "choice"),
        ("pair", {"choice": "Tie"}, 400, "choice"),
        ("pair", {"ranks": [1, 2, 3]}, 400, "3 ranks"),
        ("three", {"ranks": [1, 2]}, 400, "2 ranks"),
        ("three", {"choice": "A"}, 400, "3 runs"),
        ("pair", {"ranks": ["1", "2"]}, 400, "ranks"),
        ("pair", {}, 400, "either"),
        ("pair", {"choice": "A", "ranks": [1, 2]}, 400, "either"),
        ("pair", {"choice": "A", "votes": 5}, 400, "unknown field"),
        ("pair", {"choice": "A", "comment": "nul\x00byte"}, 400, "NUL"),
        ("pair", {"choice": "A", "comment": "x" * 4001}, 400, "comment"),
    ],
)
def test_bad_votes_are_refused_with_one_message_and_store_nothing(
    served: Served, target: str, body: dict, status: int, says: str
) -> None:
    cid = {"missing": 999999, "pair": served.pairs[4], "three": served.three}[target]
    with served.client("bob") as bob, served.client("root") as root:
        r = bob.post(f"/comparisons/{cid}/votes", json=body)
        assert r.status_code == status, r.text
        assert says.lower() in error_of(r).lower()
        if target != "missing":
            assert root.get(f"/comparisons/{cid}/votes").json() == []


def test_malformed_requests_are_400_or_404_json(served: Served) -> None:
    with served.client("bob") as bob:
        r = bob.post(
            f"/comparisons/{served.pairs[4]}/votes",
            content=b"{not json",
            headers={"content-type": "application/json"},
        )
        assert r.status_code == 400 and "JSON" in error_of(r)
        r = bob.get("/comparisons/abc")
        assert r.status_code == 400 and "comparison_id" in error_of(r)
        r = bob.get("/comparisons/999999")
        assert r.status_code == 404 and error_of(r) == "no comparison with id 999999"
        r = bob.get("/comparisons/999999/votes")
        assert r.status_code == 404


# -- changing labels ---------------------------------------------------------------------------------------------
def test_a_second_vote_replaces_the_first_and_deletes_need_ownership(served: Served) -> None:
    cid = served.pairs[5]
    with served.client("alice") as alice, served.client("bob") as bob, served.client("root") as root:
        first = alice.post(f"/comparisons/{cid}/votes", json={"choice": "A"}).json()
        second = alice.post(
            f"/comparisons/{cid}/votes", json={"choice": "both_bad", "comment": "on reflection"}
        ).json()
        assert (first["replaced"], second["replaced"]) == (False, True)
        assert second["id"] == first["id"]
        votes = root.get(f"/comparisons/{cid}/votes").json()
        assert [(v["annotator"], v["choice"], v["comment"]) for v in votes] == [
            ("alice", "both_bad", "on reflection")
        ]
        ranked = bob.post(f"/comparisons/{served.three}/votes", json={"ranks": [2, 1, 2]})
        assert ranked.status_code == 201 and ranked.json()["ranks"] == [2, 1, 2]

        r = bob.delete(f"/votes/{first['id']}")  # alice's
        assert r.status_code == 403 and "own" in error_of(r)
        assert len(root.get(f"/comparisons/{cid}/votes").json()) == 1
        assert alice.delete(f"/votes/{first['id']}").status_code == 204
        assert root.get(f"/comparisons/{cid}/votes").json() == []
        r = alice.delete(f"/votes/{first['id']}")
        assert r.status_code == 404 and error_of(r)
        assert root.delete(f"/votes/{ranked.json()['id']}").status_code == 204  # an admin may delete anyone's
        assert root.get(f"/comparisons/{served.three}/votes").json() == []


# -- OpenAPI ---------------------------------------------------------------------------------------------------
def test_openapi_describes_the_endpoints_without_any_data(served: Served) -> None:
    r = httpx.get(served.url + "api/v1/openapi.json", timeout=30)
    assert r.status_code == 200
    spec = r.json()
    paths = spec["paths"]
    assert set(paths["/api/v1/comparisons/{comparison_id}/votes"]) == {"get", "post"}
    assert set(paths) == {
        "/api/v1/comparisons",
        "/api/v1/comparisons/{comparison_id}",
        "/api/v1/comparisons/{comparison_id}/votes",
        "/api/v1/votes/{vote_id}",
    }
    assert spec["components"]["securitySchemes"]["bearer"]["scheme"] == "bearer"
    assert spec["paths"]["/api/v1/comparisons"]["get"]["security"] == [{"bearer": []}]
    assert "What is" not in r.text and SECRET_MODEL not in r.text
    docs = httpx.get(served.url + "api/v1/docs", timeout=30)
    assert docs.status_code == 200 and "/api/v1/openapi.json" in docs.text


# -- without --auth ------------------------------------------------------------------------------------------------
def test_without_auth_the_annotator_is_named_by_field_or_header_and_concurrent_writers_land_once(
    tmp_path: Path,
) -> None:
    """8 annotators x 20 votes from 8 threads at once, then each re-votes on 5 of them: every vote is stored
    exactly once (checked in the DuckDB file after the server stops) and each re-vote replaced its first."""
    data = tmp_path / "data"
    data.mkdir()
    pairs, _, _ = seed(data, n_pairs=20)
    workers, acked, errors = 8, [], []
    lock = threading.Lock()

    with studio_server(data, data / "serve.log", "--no-preload") as (url, _):
        with httpx.Client(base_url=url + "api/v1", timeout=30) as c:
            r = c.post(f"/comparisons/{pairs[0]}/votes", json={"choice": "A"})
            assert r.status_code == 400 and "enter your name" in error_of(r)
            r = c.post(f"/comparisons/{pairs[0]}/votes", json={"choice": "A"}, headers={"X-Annotator": "hdr"})
            assert r.status_code == 201 and r.json()["annotator"] == "hdr"
            r = c.post(f"/comparisons/{pairs[0]}/votes", json={"choice": "B", "annotator": "field"})
            assert r.status_code == 201 and r.json()["annotator"] == "field"

        def annotate(w: int) -> None:
            with httpx.Client(base_url=url + "api/v1", timeout=60, headers={"X-Annotator": f"w{w}"}) as c:
                for k, cid in enumerate(pairs):
                    r = c.post(f"/comparisons/{cid}/votes", json={"choice": "A", "comment": f"w{w}-{k}"})
                    with lock:
                        (acked if r.status_code == 201 and not r.json()["replaced"] else errors).append(
                            r.text
                        )
                for k, cid in enumerate(pairs[:5]):
                    r = c.post(
                        f"/comparisons/{cid}/votes", json={"choice": "B", "comment": f"w{w}-again-{k}"}
                    )
                    with lock:
                        (acked if r.status_code == 201 and r.json()["replaced"] else errors).append(r.text)

        threads = [threading.Thread(target=annotate, args=(w,)) for w in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == [] and len(acked) == workers * 25

    with Store(data / "studio.duckdb") as store:
        votes = [v for v in store.list_votes(limit=None) if v["annotator"].startswith("w")]
    assert len(votes) == workers * len(pairs)  # one label per (annotator, comparison), none lost or doubled
    assert len({(v["annotator"], v["comparison_id"]) for v in votes}) == len(votes)
    for v in votes:
        w, k = v["annotator"], pairs.index(v["comparison_id"])
        want = ("B", f"{w}-again-{k}") if k < 5 else ("A", f"{w}-{k}")
        assert (v["choice"], v["comment"]) == want, v


# -- the group-commit writer behind POST .../votes ------------------------------------------------------------
def test_the_label_writer_batches_reports_replacements_and_isolates_a_bad_vote(tmp_path: Path) -> None:
    from storage import StoreError
    from studio.labels import LabelWriter

    pairs, _, _ = seed(tmp_path, n_pairs=40)
    with Store(tmp_path / "studio.duckdb") as store:
        writer = LabelWriter(store)
        try:
            first = [writer.submit(cid, "ann", choice="A", comment=f"first {cid}") for cid in pairs]
            bad = writer.submit(pairs[0], "ann", ranks=[1, 2, 3])  # three ranks on two answers
            again = [writer.submit(cid, "ann", choice="B") for cid in pairs[:10]]
            other = [writer.submit(cid, "other", choice="tie") for cid in pairs[:10]]
            saved_first = [f.result(30) for f in first]
            saved_again = [f.result(30) for f in again]
            with pytest.raises(StoreError, match="3 ranks"):
                bad.result(30)
            assert [s.replaced for s in saved_first] == [False] * len(pairs)
            assert [s.replaced for s in saved_again] == [True] * 10
            assert [s.vote_id for s in saved_again] == [s.vote_id for s in saved_first[:10]]
            assert [f.result(30).replaced for f in other] == [False] * 10
            assert writer.batches < writer.votes  # votes that queued up together shared a transaction
        finally:
            writer.close()
        votes = {(v["comparison_id"], v["annotator"]): v["choice"] for v in store.list_votes(limit=None)}
    assert len(votes) == len(pairs) + 10
    assert all(votes[(cid, "ann")] == ("B" if i < 10 else "A") for i, cid in enumerate(pairs))
