"""Security: roles, keys, logins, uploads, secrets, error texts, no shell, parameterized SQL.

Served studios (``--auth`` with an admin, alice, and an annotator, bob; a 1 MB upload limit; fake keys and a
fake server secret in their environment; endpoint models on a local fake OpenAI server that records the
``Authorization`` header of every request) answer the server-side tests: one shared by most tests, one for
the login-flood tests (they lock names and addresses out), and one that the keys test stops to read its store.
The source-tree checks read the code itself.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from components.common import ADMIN_ONLY
from storage import Filters, Store
from studio.auth import LoginLimiter
from studio.cli import build_parser, main
from studio.settings import Settings
from tests.servers import stop, studio_server

ROOT = Path(__file__).resolve().parents[1]
PASSWORDS = {"alice": "correct horse battery staple", "bob": "tr0ub4dor&3 is bob's", "carol": "carol's own"}
PROMPT_SET = "heavy-things-set"
KEY_ENV = "STUDIO_KEY_TEST_ENDPOINT"
KEY = f"sk-studio-test-{uuid.uuid4().hex}"  # named by --api-key-env
FALLBACK_KEY = f"sk-openai-fallback-{uuid.uuid4().hex}"  # OPENAI_API_KEY, for admin-registered models only
ECHO_ENV = "STUDIO_KEY_ECHO"
ECHO_KEY = f"sk-echo-{uuid.uuid4().hex}"  # sent to a server that answers 401 quoting the key it got
SECRET_ENV = "SOME_ENV_VAR"
SECRET = f"cloud-secret-{uuid.uuid4().hex}"  # a secret of the server's environment no model may send
EVIL = "'); DROP TABLE votes; -- \" OR 1=1 /* $1 ? %s {x} \\' \n\t😈 שלום"


# -- a fake endpoint that records the keys it is sent ---------------------------------------------------------
class _Endpoint(BaseHTTPRequestHandler):
    TEXT = "An answer without a verdict."

    def log_message(self, *_: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        authorization = self.headers.get("authorization", "")
        self.server.calls.append((body.get("model", ""), authorization))  # type: ignore[attr-defined]
        head = {"id": "x", "created": 0, "model": "m"}
        status = 200
        if body.get("model") == "echo":  # what OpenAI does with a wrong key: quote it back
            error = {"message": f"Incorrect API key provided: {authorization}.", "code": "invalid_api_key"}
            payload, kind, status = json.dumps({"error": error}).encode(), "application/json", 401
        elif body.get("stream"):
            delta = {**head, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": {"content": self.TEXT}, "finish_reason": "stop"}]}  # fmt: skip
            payload, kind = f"data: {json.dumps(delta)}\n\ndata: [DONE]\n\n".encode(), "text/event-stream"
        else:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": self.TEXT},
                "finish_reason": "stop",
            }
            payload = json.dumps({**head, "object": "chat.completion", "choices": [choice]}).encode()
            kind = "application/json"
        self.send_response(status)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@contextlib.contextmanager
def fake_endpoint() -> Iterator[tuple[str, list[tuple[str, str]]]]:
    """(base URL, the (model, Authorization header) of every request it got)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    server.calls = []  # type: ignore[attr-defined]
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/v1", server.calls  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Served:
    url: str
    proc: Any
    data: Path
    log: Path
    comparison: int
    endpoint: str
    calls: list[tuple[str, str]]
    votes: dict[str, int] = field(default_factory=dict)  # annotator -> vote id, on another comparison
    step_labels: dict[str, int] = field(default_factory=dict)  # annotator -> step label id

    def client(self, user: str = "alice") -> Any:
        from gradio_client import Client

        return Client(self.url, auth=(user, PASSWORDS[user]), verbose=False)


def cli(*args: str, stdin: str = "") -> str:
    out = io.StringIO()
    old, sys.stdin = sys.stdin, io.StringIO(stdin)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()) as err:
            code = main(list(args))
    finally:
        sys.stdin = old
    assert code == 0, err.getvalue()
    return out.getvalue()


def register_endpoint_models(data: Path, url: str) -> None:
    """Through the CLI (a local admin tool): the model's path is its name, so the endpoint's log tells them
    apart."""
    base = ["--backend", "openai", "--base-url", url, "--data-dir", str(data)]
    cli("models", "add", "keyed-endpoint", "--path", "keyed-endpoint", *base, "--api-key-env", KEY_ENV)
    cli("models", "add", "fallback-endpoint", "--path", "fallback-endpoint", *base)
    cli("models", "add", "echo-endpoint", "--path", "echo", *base, "--api-key-env", ECHO_ENV)


@contextlib.contextmanager
def secure_studio(root: Path, endpoint: str, calls: list[tuple[str, str]]) -> Iterator[Served]:
    data, log, users = root / "data", root / "serve.log", root / "users.toml"
    for name, role in (("alice", "admin"), ("bob", "annotator"), ("carol", "annotator")):
        cli(
            "users",
            "add",
            name,
            "--role",
            role,
            "--password-stdin",
            "--file",
            str(users),
            stdin=PASSWORDS[name],
        )
    assert not any(p in users.read_text() for p in PASSWORDS.values())
    register_endpoint_models(data, endpoint)
    with (data / "models.toml").open("a") as f:
        for name, env in (("legacy-fallback", ""), ("legacy-env", SECRET_ENV)):
            f.write(f'\n[models.{name}]\nbackend = "openai"\npath = "{name}"\nbase_url = "{endpoint}"\n')
            f.write(f'api_key_env = "{env}"\n' if env else "")
    with Store(data / "studio.duckdb", data_dir=data) as store:
        pid = store.add_prompt("Which is heavier?", PROMPT_SET)
        runs = [
            store.add_run(pid, "m", s, a)
            for s, a in (("system1", "a"), ("cot", "b"), ("system1", "c"), ("cot", "d"))
        ]
        cid, labelled = store.add_comparison(runs[:2]), store.add_comparison(runs[2:])
        votes = {"alice": store.add_vote(labelled, "A", "alice"), "bob": store.add_vote(labelled, "B", "bob")}
        steps = {who: store.add_step_label(runs[2], f"s{i}", "wrong", who) for i, who in enumerate(votes)}
    env = {"STUDIO_MAX_UPLOAD_MB": "1", KEY_ENV: KEY, ECHO_ENV: ECHO_KEY, "OPENAI_API_KEY": FALLBACK_KEY,
           "STUDIO_OPENAI_API_KEY": "", SECRET_ENV: SECRET}  # fmt: skip
    with studio_server(data, log, "--no-preload", "--auth", str(users), env=env) as (url, proc):
        yield Served(url, proc, data, log, cid, endpoint, calls, votes, steps)


@contextlib.contextmanager
def studio_with_endpoint(root: Path) -> Iterator[Served]:
    """A fake OpenAI-compatible endpoint and a secured studio in ``root`` that calls it."""
    with fake_endpoint() as (endpoint, calls), secure_studio(root, endpoint, calls) as s:
        yield s


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with studio_with_endpoint(tmp_path_factory.mktemp("secure")) as s:
        yield s


def call_raw(url: str, api: str, data: list[Any], cookies: Any = None) -> tuple[int, str]:
    """POST an API call the way any HTTP client could (no gradio_client processing); (status, event text)."""
    import httpx

    r = httpx.post(f"{url}gradio_api/call/{api}", json={"data": data}, cookies=cookies, timeout=30)
    if r.status_code != 200:
        return r.status_code, r.text
    result = httpx.get(f"{url}gradio_api/call/{api}/{r.json()['event_id']}", cookies=cookies, timeout=60)
    return result.status_code, result.text


def app_error(client: Any, *args: Any, api_name: str) -> str:
    """The one message of a refused call (a gr.Error reaches gradio_client as an AppError)."""
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError) as info:
        client.predict(*args, api_name=api_name)
    message = str(info.value)
    assert "Traceback" not in message and message.strip(), message
    return message


def table_rows(value: dict[str, Any]) -> list[dict[str, Any]]:
    return [dict(zip(value["headers"], r, strict=True)) for r in value["data"]]


def file_arg(path: Path) -> Any:
    from gradio_client import handle_file

    return handle_file(str(path))


# -- binding ------------------------------------------------------------------------------------------------
def listening_addresses(port: int) -> set[str]:
    """Local addresses of the sockets listening on ``port`` (hex, as /proc/net/tcp* writes them)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                local, _, state = line.split()[1:4]
                addr, hex_port = local.split(":")
                if state == "0A" and int(hex_port, 16) == port:
                    found.add(addr)
    return found


def test_the_server_listens_on_loopback_only(served: Served) -> None:
    port = int(served.url.rstrip("/").rsplit(":", 1)[1])
    assert listening_addresses(port) == {"0100007F"}  # 127.0.0.1, and nothing on 0.0.0.0 or ::


def test_serve_defaults_loopback_no_share_and_an_upload_limit(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import gradio as gr

    from studio import app

    args = build_parser().parse_args(["serve"])
    assert args.share is False and args.host is None and Settings.load(env={}).host == "127.0.0.1"
    seen: list[dict[str, Any]] = []
    monkeypatch.setattr(gr.Blocks, "launch", lambda self, **kw: seen.append(kw))
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "uploads"))
    app.serve(Settings.load(env={}, data_dir=tmp_path / "a"), preload=False)
    env = {"STUDIO_HOST": "0.0.0.0", "STUDIO_MAX_UPLOAD_MB": "5", "STUDIO_ROOT_PATH": "/studio"}
    app.serve(Settings.load(env=env, data_dir=tmp_path / "b"), preload=False)
    assert (seen[0]["server_name"], seen[0]["share"], seen[0]["max_file_size"]) == (
        "127.0.0.1",
        False,
        "100mb",
    )
    assert seen[0]["root_path"] is None
    assert (seen[1]["server_name"], seen[1]["max_file_size"], seen[1]["root_path"]) == (
        "0.0.0.0",
        "5mb",
        "/studio",
    )
    assert build_parser().parse_args(["serve", "--root-path", "/studio"]).root_path == "/studio"


# -- logins -------------------------------------------------------------------------------------------------
def test_nothing_is_written_without_a_login_and_labels_carry_the_login(served: Served) -> None:
    import httpx
    from gradio_client import Client

    vote = [served.comparison, "A", "sneaky", "mallory", *[None] * 6]
    with pytest.raises(Exception, match="credentials were not provided"):
        Client(served.url, verbose=False).predict(*vote, api_name="/vote")
    with pytest.raises(Exception, match="Could not login"):
        Client(served.url, auth=("alice", "wrong password"), verbose=False)
    assert call_raw(served.url, "vote", vote)[0] == 401
    assert (
        httpx.post(f"{served.url}gradio_api/queue/join", json={"data": vote, "fn_index": 0}).status_code
        == 401
    )
    assert httpx.post(f"{served.url}gradio_api/upload", files={"files": ("x.txt", b"hi")}).status_code == 401

    client = served.client()
    msg = client.predict(
        served.comparison, "A", "typed another name", "mallory", *[None] * 6, api_name="/vote"
    )[0]
    assert "alice" in msg and "mallory" not in msg
    rows = table_rows(client.predict("", "", "", "", "", 0, api_name="/data_votes"))
    mine = [(r["annotator"], r["comment"]) for r in rows if r["comparison_id"] == served.comparison]
    assert mine == [("alice", "typed another name")]


# -- uploads ------------------------------------------------------------------------------------------------
def test_uploads_are_size_limited_kept_in_the_data_dir_and_only_uploads_are_read(
    served: Served, tmp_path: Path
) -> None:
    import httpx
    from gradio_client import handle_file

    client = served.client()
    before = client.predict(api_name="/data_stats")[0]
    big = tmp_path / "big.txt"
    big.write_bytes(b"a prompt\n" * 200_000)  # 1.8 MB > STUDIO_MAX_UPLOAD_MB=1
    with pytest.raises(Exception, match="exceeds the maximum file size"):  # gradio_client checks first...
        client.predict(handle_file(str(big)), "big", api_name="/import_prompts")
    r = httpx.post(f"{served.url}gradio_api/upload", files={"files": ("big.txt", big.read_bytes())},
                   cookies=client.cookies)  # fmt: skip
    assert r.status_code == 413  # ...and the server refuses it too

    # a path on the server that was not uploaded is refused (only files in the upload folder are read)
    secret = tmp_path / "not-uploaded.txt"
    secret.write_text("a line nobody uploaded\n")
    status, events = call_raw(served.url, "import_prompts", [{"path": str(secret), "meta": {"_type": "gradio.FileData"}}, "x"],
                              cookies=client.cookies)  # fmt: skip
    assert status == 200 and "event: error" in events
    assert client.predict(api_name="/data_stats")[0] == before  # nothing imported

    name = f"prompts-{uuid.uuid4().hex}.txt"
    (tmp_path / name).write_text("What is 2+2?\n")
    assert (
        "Imported 1 prompts"
        in client.predict(handle_file(str(tmp_path / name)), "ok", api_name="/import_prompts")[0]
    )
    [kept] = list((served.data / "uploads").rglob(name))  # confined to <data dir>/uploads
    assert kept.read_text() == "What is 2+2?\n"


# -- source-tree checks -------------------------------------------------------------------------------------
def python_files() -> list[Path]:
    skip = {".venv", ".git", ".test-cache", "studio-data", "node_modules", "build", "dist"}
    return [p for p in ROOT.rglob("*.py") if not skip & set(p.relative_to(ROOT).parts[:-1])]


def test_no_shell_anywhere() -> None:
    found = []
    for path in python_files():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.Call):
                continue
            name = ast.unparse(node.func)
            shell = [k for k in node.keywords if k.arg == "shell"]
            if any(not (isinstance(k.value, ast.Constant) and k.value.value is False) for k in shell):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}(shell=...)")
            if name in ("os.system", "os.popen", "subprocess.getoutput", "subprocess.getstatusoutput"):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno} {name}()")
    assert len(python_files()) > 50 and not found, found


SQL_WORDS = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE|COPY|CREATE|DROP|ALTER|WHERE|FROM|VALUES|SET)\b")
# What storage/ interpolates into SQL text, reviewed: table names and temp-source names made in code, column
# lists from code, SQL fragments built from constants, and `by` (checked against model/strategy first).
# Every value a user typed goes in as a bound parameter ($name or ?). A new interpolation fails this test
# until someone has checked it is not a value.
REVIEWED = {
    "' UNION ALL '.join(parts)", "', '.join(['comparison_id', 'annotator', choice, ranks, *extra])",
    "', '.join(cols)", "'parquet' if fmt == 'parquet' else 'json'", "ORDER", "PAIR_EVENTS", "VOTE_RANKS",
    "_NOW", "_answer_expr(conversational, 'completion_text')", "_pair_texts(f, params, margin=margin)",
    "_pair_texts(f, params, provenance=True)", "_prompt_expr(conversational, 'prompt_text', 'prompt_messages')",
    "_selected_pairs(_without_runs(f), params)", "_selected_pairs(f, params)", "agree", "alias", "by",
    "event_where('e', f, params)", "event_where('x', f, params)", "events", "extra", "grouped_events",
    "listed", "margin_col", "marks", "ok", "prompts", "ratings", "ratings_join", "rel", "rows",
    "run_where(('c', 'r'), 'p', f, params)", "run_where(('r',), 'p', f, params)", "sets", "sizes", "sql", "src",
    "table", "what",
    # the label audit (#10): SQL expressions built from constant aliases and column names, and `col`, which
    # picks between two constant texts by whether a bulk table has that (constant-named) column
    "vote_json('v')", "vote_json('k')", "_batch_json('w')", "_batch_json('l')", "_differ('v', 'w')",
    "_differ('l', 'w')", "_differ('votes', 'w')", "_PROMPT_LABELS", "STEP_LABEL_JSON", "_BULK_VOTE_CHECK",
    "source", "a", "b", "c", "col('choice', 'VARCHAR')", "col('ranks', 'INTEGER[]')",
    "col('comment', 'VARCHAR')", "col('created_at', 'TIMESTAMP')", "_NORMALISED",
    # the one run-filter implementation (#11): constant SQL (VOTE_PAIRS, the *_ITEMS selects) and conditions that
    # match_where builds from the constant RUN_MATCHES templates; every filter value goes into `params`
    "VOTE_PAIRS", "item_runs", "where", "items_where('id', RUN_ITEMS, filters, params)",
    "items_where('comparison_id', COMPARISON_ITEMS, filters, params)",
    "items_where('id', VERDICT_ITEMS, filters, params)", "items_where('run_id', RUN_ITEMS, filters, params)",
}  # fmt: skip


def test_sql_text_interpolates_only_reviewed_code_never_values() -> None:
    unreviewed = []
    for path in sorted((ROOT / "storage").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.JoinedStr):
                text = "".join(v.value for v in node.values if isinstance(v, ast.Constant))
                if SQL_WORDS.search(text):
                    unreviewed += [
                        f"{path.name}:{node.lineno} {{{ast.unparse(v.value)}}}"
                        for v in node.values
                        if isinstance(v, ast.FormattedValue) and ast.unparse(v.value) not in REVIEWED
                    ]
    assert not unreviewed, unreviewed


def test_only_storage_talks_to_duckdb() -> None:
    for path in python_files():
        rel = path.relative_to(ROOT)
        if rel.parts[0] in ("studio", "components"):
            text = path.read_text()
            assert "import duckdb" not in text and ".execute(" not in text, rel


def test_hostile_text_round_trips_through_every_store_verb(tmp_path: Path) -> None:
    with Store(tmp_path / "s.duckdb", data_dir=tmp_path) as store:
        pid = store.add_prompt(EVIL, EVIL, category=EVIL, tags=[EVIL])
        assert store.add_prompts([EVIL, EVIL + "2"], EVIL)[0] == pid
        runs = [store.add_run(pid, EVIL, EVIL, EVIL + s, variant=EVIL, params={EVIL: EVIL}, trace={"q": EVIL})
                for s in "ABC"]  # fmt: skip
        pair, trio = store.add_comparison(runs[:2]), store.add_comparison(runs)
        store.add_vote(pair, "A", EVIL, comment=EVIL)
        store.add_ranking(trio, [1, 2, 2], EVIL, comment=EVIL)
        store.add_verdict(EVIL, "pairwise", comparison_id=pair, judge_model=EVIL, judge_config={EVIL: EVIL},
                          winner="A", raw_output=EVIL, orders=[EVIL])  # fmt: skip
        label = store.add_step_label(runs[0], EVIL, "wrong", EVIL, note=EVIL)  # labels are a fixed set
        store.update_step_label(label, label="good", note=EVIL + "!")
        store.add_model(EVIL, EVIL, base=EVIL, adapter_path=EVIL, parent=EVIL, config={EVIL: EVIL})
        tr = store.add_training_run(EVIL, {EVIL: EVIL}, base_model=EVIL, output_path=EVIL, log_path=EVIL)
        store.update_training_run(tr, status="failed", error=EVIL)
        store.append_metrics(tr, 1, {EVIL: 1.0})
        every = Filters(annotator=[EVIL], model=[EVIL], strategy=[EVIL], prompt_set=[EVIL])
        out = store.export("dpo", "jsonl", "exports/evil.jsonl", every)
        src = tmp_path / "evil.jsonl"
        src.write_text(json.dumps({"prompt": EVIL + "?", "chosen": EVIL, "rejected": EVIL + "x"}) + "\n")
        store.import_preferences(src, prompt_set=EVIL, annotator=EVIL)

        assert store.get_prompt(pid)["text"] == EVIL and store.list_prompts(EVIL)[0]["tags"] == [EVIL]
        assert store.get_run(runs[0])["answer"] == EVIL + "A" and store.get_run(runs[0])["params"] == {
            EVIL: EVIL
        }
        assert len(store.list_runs(model=EVIL, strategy=EVIL)) == 3
        assert {v["comment"] for v in store.list_votes(annotator=EVIL)} == {EVIL, None}
        assert store.list_verdicts(judge=EVIL)[0]["raw_output"] == EVIL
        assert store.list_step_labels(runs[0])[0]["note"] == EVIL + "!"
        assert store.get_model(EVIL)["config"] == {EVIL: EVIL} and store.lineage(EVIL)[0]["name"] == EVIL
        assert store.get_training_run(tr)["error"] == EVIL and store.metrics(tr) == {EVIL: [(1, 1.0)]}
        rows = [json.loads(line) for line in Path(out.path).read_text().splitlines()]
        assert sorted((r["prompt"], r["chosen"], r["rejected"]) for r in rows) == [
            (EVIL, EVIL + "A", EVIL + "B"),
            (EVIL, EVIL + "A", EVIL + "C"),
        ]  # the vote's pair and the ranking's two (deduplicated)
        assert (
            len(store.preference_pairs(Filters(annotator=[EVIL], prompt_set=[EVIL]))) == 3
        )  # and the import
        stats = store.stats()
        assert (stats["votes"], stats["rankings"], stats["verdicts"]) == (2, 1, 1)  # the votes table is there


# -- roles: what an annotator may not do ----------------------------------------------------------------------
def test_an_annotator_cannot_add_a_model_nor_do_anything_only_admins_may(served: Served) -> None:
    bob = served.client("bob")
    models_toml = served.data / "models.toml"
    before, sent = models_toml.read_text(), len(served.calls)
    for env in (SECRET_ENV, ""):  # the exfiltration: a model at a URL of bob's choice with a server secret
        msg = app_error(bob, "exfil", "openai", "gpt", served.endpoint, env, "", api_name="/add_model")
        assert msg == "only an admin may add or change models; bob is an annotator"
    assert models_toml.read_text() == before
    # every admin-only event refuses bob before gradio even reads what he sent
    endpoints = bob.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for api, action in ADMIN_ONLY.items():
        assert f"/{api}" in endpoints, f"ADMIN_ONLY names {api}, which the app no longer has"
        inputs = [None] * len(endpoints[f"/{api}"]["parameters"])
        status, events = call_raw(served.url, api, inputs, cookies=bob.cookies)
        assert status == 200 and f"only an admin may {action}; bob is an annotator" in events, (api, events)
    assert models_toml.read_text() == before and len(served.calls) == sent  # nothing was sent anywhere
    # what annotators do is not refused: try a model, vote
    assert _Endpoint.TEXT in bob.predict("keyed-endpoint", "hi", api_name="/try_model")


def test_an_admin_can_name_only_allowed_key_variables(served: Served) -> None:
    alice = served.client("alice")
    for env in (SECRET_ENV, "HOME", "AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY"):
        msg = app_error(
            alice, "named-" + env.lower(), "openai", "m", served.endpoint, env, "", api_name="/add_model"
        )
        assert f"the key env var {env!r} is not allowed" in msg and "STUDIO_KEY_" in msg
    alice.predict("allowed-key", "openai", "m", served.endpoint, "STUDIO_KEY_NEW", "", api_name="/add_model")
    models = (served.data / "models.toml").read_text()
    assert "[models.allowed-key]" in models and 'registered_by = "alice"' in models
    assert "named-" not in models


def test_a_model_never_receives_a_key_it_was_not_given(served: Served) -> None:
    # legacy-*: models.toml entries without registered_by, as an older studio let anyone write (secure_studio)
    bob = served.client("bob")
    assert _Endpoint.TEXT in bob.predict("legacy-fallback", "hi", api_name="/try_model")  # answered, keyless
    assert f"the key env var {SECRET_ENV!r} is not allowed" in app_error(
        bob, "legacy-env", "hi", api_name="/try_model"
    )
    assert _Endpoint.TEXT in bob.predict("fallback-endpoint", "hi", api_name="/try_model")
    assert _Endpoint.TEXT in bob.predict("keyed-endpoint", "hi", api_name="/try_model")
    sent = {(model, auth) for model, auth in served.calls}
    assert ("fallback-endpoint", f"Bearer {FALLBACK_KEY}") in sent  # an admin registered it: the fallback key
    assert ("keyed-endpoint", f"Bearer {KEY}") in sent  # its own allowed variable
    assert {auth for model, auth in sent if model == "legacy-fallback"} == {"Bearer not-needed"}
    assert "legacy-env" not in {model for model, _ in sent}  # refused before any request
    assert not [auth for _, auth in sent if SECRET in auth]


# -- labels: bound to their author ------------------------------------------------------------------------------
def test_annotators_change_only_their_own_labels_and_the_audit_names_who_did(served: Served) -> None:
    bob, alice = served.client("bob"), served.client("alice")
    votes, steps = served.votes, served.step_labels
    for api, args in [("/data_delete_vote", (votes["alice"],)),
                      ("/data_update_step_label", (steps["alice"], "good", "rewritten by bob")),
                      ("/data_delete_step_label", (steps["alice"],))]:  # fmt: skip
        assert "you can only change your own labels" in app_error(bob, *args, api_name=api)
    rows = table_rows(alice.predict("", "", "", "", "", 0, api_name="/data_votes"))
    assert {(r["id"], r["annotator"], r["choice"]) for r in rows} >= {(votes["alice"], "alice", "A")}
    labels = table_rows(alice.predict("", "", "", "", "", 0, api_name="/data_step_labels"))
    assert {(r["id"], r["label"], r["annotator"]) for r in labels} >= {(steps["alice"], "wrong", "alice")}

    bob.predict(steps["bob"], "good", "my own, changed", api_name="/data_update_step_label")  # his own: fine
    alice.predict(votes["bob"], api_name="/data_delete_vote")  # an admin: anyone's
    audit = table_rows(alice.predict("", "", "", "", "", 0, api_name="/data_label_audit"))
    done = {(a["kind"], a["row_id"], a["annotator"], a["actor"], a["action"]) for a in audit}
    assert ("vote", votes["bob"], "bob", "alice", "delete") in done
    assert ("step_label", steps["bob"], "bob", "bob", "replace") in done


def test_imported_labels_carry_the_importer_never_another_name(served: Served, tmp_path: Path) -> None:
    src = tmp_path / f"prefs-{uuid.uuid4().hex[:8]}.jsonl"
    src.write_text(
        json.dumps({"prompt": "Which is lighter?", "chosen": "a feather", "rejected": "a brick"}) + "\n"
    )
    alice, bob = served.client("alice"), served.client("bob")
    assert "only an admin may import data" in app_error(
        bob, file_arg(src), "imp", "", api_name="/data_import"
    )
    msg = app_error(alice, file_arg(src), "imp", "bob", api_name="/data_import")  # spoofing bob
    assert "not 'bob'" in msg and "/uploads/" not in msg and str(served.data) not in msg
    assert f"import:{src.name}" in alice.predict(file_arg(src), "imp", "", api_name="/data_import")
    alice.predict(file_arg(src), "imp-own", "alice", api_name="/data_import")  # her own name: fine
    rows = table_rows(alice.predict("", "", "", "", "lighter", 0, api_name="/data_votes"))
    assert sorted(r["annotator"] for r in rows) == sorted(["alice", f"import:{src.name}"])


# -- logins ---------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def login_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """A studio of its own: these tests lock user names and client addresses out."""
    with studio_with_endpoint(tmp_path_factory.mktemp("login")) as s:
        yield s


def login(url: str, user: str, password: str, client: str | None = None) -> tuple[int, float]:
    """(HTTP status, seconds) of one login; ``client`` plays a remote address behind a local reverse proxy."""
    import httpx

    headers = {"X-Forwarded-For": client} if client else {}
    start = time.perf_counter()
    r = httpx.post(f"{url}login", data={"username": user, "password": password}, headers=headers, timeout=60)
    return r.status_code, time.perf_counter() - start


def test_an_unknown_user_costs_what_a_known_one_costs(login_server: Served) -> None:
    known, unknown = [], []
    for i in range(4):  # interleaved, from different addresses, so neither lockouts nor drift decide it
        known.append(login(login_server.url, "alice", f"wrong {i}", f"192.0.2.{i}")[1])  # 4 < the limit
        unknown.append(login(login_server.url, f"nobody-{i}", "wrong", f"192.0.2.{10 + i}")[1])
    ratio = statistics.median(unknown) / statistics.median(known)
    assert 0.4 < ratio < 2.5, (known, unknown)  # before: ~3 ms against ~220 ms
    assert login(login_server.url, "alice", PASSWORDS["alice"])[0] == 200


def test_after_repeated_failures_even_the_right_password_is_refused_for_a_while(login_server: Served) -> None:
    url = login_server.url
    for i in range(5):  # one user name, from five addresses
        assert login(url, "bob", "guess", f"198.51.100.{i}")[0] == 400
    assert login(url, "bob", PASSWORDS["bob"])[0] == 400  # locked out
    for i in range(20):  # one address, twenty user names
        assert login(url, f"guess-{i}", "guess", "203.0.113.9")[0] == 400
    assert login(url, "alice", PASSWORDS["alice"], "203.0.113.9")[0] == 400  # that address is locked out
    assert login(url, "alice", PASSWORDS["alice"], "203.0.113.10")[0] == 200  # others are not
    assert "login refused for 'bob'" in login_server.log.read_text()


def test_the_lockout_doubles_and_ends() -> None:
    now = [0.0]
    limiter = LoginLimiter(3, 10.0, clock=lambda: now[0])
    for _ in range(3):
        assert limiter.wait_s("bob", "10.0.0.1") == 0
        limiter.failed("bob", "10.0.0.1")
    assert limiter.wait_s("bob", "10.0.0.2") == 10.0  # the name is locked, from any address
    now[0] = 10.5
    assert limiter.wait_s("bob", "10.0.0.2") == 0  # for a while
    limiter.failed("bob", "10.0.0.2")
    assert limiter.wait_s("bob") == 20.0  # then twice as long
    limiter.succeeded("bob")
    assert limiter.wait_s("bob") == 0 and limiter.wait_s("carol", "10.0.0.1") == 0  # 12 for an address


def test_a_login_flood_does_not_slow_other_users(login_server: Served) -> None:
    import httpx

    url = login_server.url
    alice = httpx.Client(timeout=60)
    assert (
        alice.post(f"{url}login", data={"username": "alice", "password": PASSWORDS["alice"]}).status_code
        == 200
    )

    def request_s() -> float:
        start = time.perf_counter()
        assert alice.get(f"{url}gradio_api/login_check").status_code == 200
        return time.perf_counter() - start

    quiet = statistics.median(request_s() for _ in range(10))
    stop_at = time.monotonic() + 4
    flooded: list[float] = []

    def flood(n: int) -> int:  # wrong passwords for carol, and unknown names, from many addresses
        tries = 0
        while time.monotonic() < stop_at:
            user = "carol" if n % 3 else f"flood-{n}-{tries}"  # the unknown names are hashed too
            login(url, user, "wrong", f"10.{n}.{tries // 250}.{tries % 250}")
            tries += 1
        return tries

    with ThreadPoolExecutor(6) as pool:
        floods = [pool.submit(flood, n) for n in range(6)]
        time.sleep(0.5)
        while time.monotonic() < stop_at - 0.2:
            flooded.append(request_s())
            time.sleep(0.05)
        assert sum(f.result() for f in floods) >= 8  # the flood ran
    assert statistics.median(flooded) < max(0.15, 10 * quiet), (quiet, flooded)  # before: ~1 s


# -- nothing readable before login ------------------------------------------------------------------------------
def test_nothing_about_the_data_is_readable_before_login(served: Served) -> None:
    names = (PROMPT_SET, "keyed-endpoint", "fallback-endpoint", "run_arena", "data_votes")
    for path in ("", "config", "gradio_api/info", "info", "gradio_api/openapi.json", "openapi.json"):
        try:
            with urllib.request.urlopen(served.url + path, timeout=30) as r:
                body = r.read().decode("utf-8", "replace")
        except urllib.error.HTTPError as e:
            body = e.read().decode("utf-8", "replace")
        leaked = [n for n in names if n in body]
        assert not leaked, f"GET /{path} before login shows {leaked}"
    alice = served.client("alice")  # and after login the page does describe the app
    request = urllib.request.Request(
        served.url, headers={"Cookie": "; ".join(f"{k}={v}" for k, v in alice.cookies.items())}
    )
    with urllib.request.urlopen(request, timeout=30) as r:
        page = r.read().decode()
    assert "run_arena" in page and "keyed-endpoint" in page


# -- errors that say what is wrong, and nothing else ------------------------------------------------------------
def test_wrong_missing_and_refused_inputs_get_one_clear_message(served: Served) -> None:
    alice = served.client("alice")
    cases = [
        ("data_delete_vote", ["abc"], "data_delete_vote: 'Vote id' (a number) must be a number, not 'abc'"),
        ("data_delete_vote", [], "data_delete_vote takes 1 input values; 0 were sent"),
        ("import_prompts", [{"path": "/etc/passwd", "meta": {"_type": "gradio.FileData"}}, "x"],
         "only files uploaded to this server can be read; /etc/passwd was not uploaded"),
    ]  # fmt: skip
    for api, data, expected in cases:
        status, events = call_raw(served.url, api, data, cookies=alice.cookies)
        assert status == 200 and "event: error" in events and '"error": null' not in events, events
        assert expected in json.loads(events.split("data:", 1)[1])["error"], events
    log = served.log.read_text()
    assert "user error: data_delete_vote takes 1 input values" in log
    assert "Traceback" not in log, log[-3000:]  # user errors are one log line each


# -- secrets ----------------------------------------------------------------------------------------------------
def every_file(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not any(p.is_symlink() for p in [path, *path.parents] if root in p.parents):
            yield path


def test_api_keys_are_never_shown_written_or_logged(tmp_path: Path) -> None:
    """On a studio of its own, which the test stops to read its store: a key reaches only the endpoint it is
    for, and an endpoint that quotes it back (401 "Incorrect API key provided: Bearer sk-...") gets it redacted
    from the message shown, the stored run and the log."""
    import pyarrow.parquet as pq

    with fake_endpoint() as (endpoint, calls), secure_studio(tmp_path / "keys", endpoint, calls) as served:
        client = served.client()
        for model in ("keyed-endpoint", "fallback-endpoint"):
            assert _Endpoint.TEXT in client.predict(model, "Say hi", api_name="/try_model")
        shown = app_error(client, "echo-endpoint", "Say hi", api_name="/try_model")
        assert "HTTP 401" in shown and "Incorrect API key provided: Bearer [redacted]" in shown, shown
        run = {"blind": True, "max_new_tokens": 16, "temperature": 0, "top_p": 1, "seed": None,
               "max_questions": 5, "max_branches": 5, "token_budget": None}  # fmt: skip
        columns = ["system1 @ keyed-endpoint", "cot @ fallback-endpoint", "system1 @ echo-endpoint"]
        out = client.predict(prompt="Say hi", columns=columns, **run, api_name="/run_arena")
        assert "failed" in out[1] and ECHO_KEY not in json.dumps(out)
        client.predict(out[0], "B", "", "", *[None] * 6, api_name="/vote")
        client.predict(
            ["pairwise"], "keyed-endpoint", "comparisons", "all", "", 0, 8, "", api_name="/judge_run"
        )
        for fmt in ("jsonl", "parquet"):
            client.predict("dpo", fmt, "any", False, False, "", "", "", "", api_name="/data_export")
        sent = {auth for _, auth in calls}
        assert {f"Bearer {KEY}", f"Bearer {FALLBACK_KEY}", f"Bearer {ECHO_KEY}"} <= sent
        stop(served.proc)

    other = tmp_path / "cli-data"  # and from the CLI, with the keys in its environment
    with pytest.MonkeyPatch.context() as mp, fake_endpoint() as (endpoint, _):
        for name, value in ((KEY_ENV, KEY), (ECHO_ENV, ECHO_KEY), ("OPENAI_API_KEY", FALLBACK_KEY)):
            mp.setenv(name, value)
        register_endpoint_models(other, endpoint)
        assert _Endpoint.TEXT in cli("generate", "--model", "keyed-endpoint", "hi", "--data-dir", str(other))
        assert _Endpoint.TEXT in cli(
            "generate", "--model", "fallback-endpoint", "hi", "--data-dir", str(other)
        )
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            assert main(["generate", "--model", "echo-endpoint", "hi", "--data-dir", str(other)]) == 2
        assert "Bearer [redacted]" in err.getvalue() and ECHO_KEY not in err.getvalue()
        cli("export", "--format", "dpo", "--to", "jsonl", str(other / "dpo.jsonl"), "--data-dir", str(other))
        cli("stats", "--data-dir", str(other))

    secrets = (KEY.encode(), FALLBACK_KEY.encode(), ECHO_KEY.encode(), SECRET.encode())
    files = [*every_file(served.data), *every_file(other), served.log]
    assert any(p.name == "models.toml" for p in files) and any(p.suffix == ".parquet" for p in files)
    for path in files:
        body = path.read_bytes()
        if path.suffix == ".parquet":
            body = json.dumps(pq.read_table(path).to_pylist(), default=str).encode()
        assert not any(s in body for s in secrets), f"an API key was written to {path}"
    with Store(
        served.data / "studio.duckdb"
    ) as store:  # column data may be compressed on disk: ask the store
        tables = [
            r["table_name"]
            for r in store.arrow("SELECT table_name FROM information_schema.tables").to_pylist()
        ]
        assert "runs" in tables and "verdicts" in tables
        everything = ""
        for table in tables:
            text = json.dumps(store.arrow(f'SELECT * FROM "{table}"').to_pylist(), default=str)
            assert not any(s.decode() in text for s in secrets), table
            everything += text
        assert "Bearer [redacted]" in everything  # the echoed 401 was stored, redacted


def test_user_errors_are_one_log_line_and_faults_keep_their_traceback(
    caplog: pytest.LogCaptureFixture,
) -> None:
    import gradio as gr

    from components.common import user_errors
    from studio.errors import InputError

    with caplog.at_level("WARNING", logger="studio.ui"), pytest.raises(gr.Error) as shown:
        with user_errors():
            raise InputError(
                f"cannot use {tempfile.gettempdir()}/data/uploads/3f2a/x.jsonl with Bearer {KEY}"
            )
    assert (
        shown.value.message == "cannot use x.jsonl with Bearer [redacted]" and not shown.value.print_exception
    )
    [record] = caplog.records
    assert record.getMessage() == f"user error: {shown.value.message}" and record.exc_info is None
    caplog.clear()
    with caplog.at_level("WARNING", logger="studio.ui"), pytest.raises(gr.Error) as fault:
        with user_errors():
            {}["missing"]  # noqa: B018 - a bug, not the user's mistake
    assert fault.value.message == "internal error (KeyError); the server log has the details"
    [record] = caplog.records
    assert record.levelname == "ERROR" and record.exc_info is not None  # the traceback is logged
