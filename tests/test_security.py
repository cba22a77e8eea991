"""Security: loopback by default, logins, uploads, secrets, no shell, parameterized SQL.

One served studio (``--auth``, a 1 MB upload limit, two fake API keys in its environment, two endpoint models
that use them) answers the server-side tests; the source-tree checks read the code itself.
"""

from __future__ import annotations

import ast
import contextlib
import io
import json
import re
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from storage import Filters, Store
from studio.cli import build_parser, main
from studio.settings import Settings
from tests.servers import stop, studio_server

ROOT = Path(__file__).resolve().parents[1]
PASSWORD = "correct horse battery staple"
KEY_ENV = "STUDIO_TEST_ENDPOINT_KEY"
KEY = f"sk-studio-test-{uuid.uuid4().hex}"  # named by --api-key-env
FALLBACK_KEY = f"sk-openai-fallback-{uuid.uuid4().hex}"  # OPENAI_API_KEY, for models that name no env var
EVIL = "'); DROP TABLE votes; -- \" OR 1=1 /* $1 ? %s {x} \\' \n\t😈 שלום"


# -- a fake endpoint that records the keys it is sent ---------------------------------------------------------
class _Endpoint(BaseHTTPRequestHandler):
    TEXT = "An answer without a verdict."

    def log_message(self, *_: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        self.server.authorizations.append(self.headers.get("authorization", ""))  # type: ignore[attr-defined]
        head = {"id": "x", "created": 0, "model": "m"}
        if body.get("stream"):
            delta = {**head, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": {"content": self.TEXT}, "finish_reason": "stop"}]}  # fmt: skip
            payload, kind = f"data: {json.dumps(delta)}\n\ndata: [DONE]\n\n".encode(), "text/event-stream"
        else:
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": self.TEXT},
                "finish_reason": "stop",
            }
            payload, kind = (
                json.dumps({**head, "object": "chat.completion", "choices": [choice]}).encode(),
                "application/json",
            )
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@dataclass
class Served:
    url: str
    proc: Any
    data: Path
    log: Path
    comparison: int
    endpoint: str
    authorizations: list[str] = field(default_factory=list)

    def client(self) -> Any:
        from gradio_client import Client

        return Client(self.url, auth=("alice", PASSWORD), verbose=False)


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
    base = ["--backend", "openai", "--path", "m", "--base-url", url, "--data-dir", str(data)]
    cli("models", "add", "keyed", *base, "--api-key-env", KEY_ENV)
    cli("models", "add", "fallback", *base)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root = tmp_path_factory.mktemp("secure")
    data, log, users = root / "data", root / "serve.log", root / "users.toml"
    endpoint = ThreadingHTTPServer(("127.0.0.1", 0), _Endpoint)
    endpoint.authorizations = []  # type: ignore[attr-defined]
    endpoint.daemon_threads = True
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    cli("users", "add", "alice", "--password-stdin", "--file", str(users), stdin=PASSWORD + "\n")
    assert PASSWORD not in users.read_text()
    endpoint_url = f"http://127.0.0.1:{endpoint.server_address[1]}/v1"
    register_endpoint_models(data, endpoint_url)
    with Store(data / "studio.duckdb", data_dir=data) as store:
        pid = store.add_prompt("Which is heavier?", "secure")
        cid = store.add_comparison(
            [store.add_run(pid, "m", "system1", "a"), store.add_run(pid, "m", "cot", "b")]
        )
    env = {
        "STUDIO_MAX_UPLOAD_MB": "1",
        KEY_ENV: KEY,
        "OPENAI_API_KEY": FALLBACK_KEY,
        "STUDIO_OPENAI_API_KEY": "",
    }
    try:
        with studio_server(data, log, "--no-preload", "--auth", str(users), env=env) as (url, proc):
            yield Served(url, proc, data, log, cid, endpoint_url, endpoint.authorizations)  # type: ignore[attr-defined]
    finally:
        endpoint.shutdown()
        endpoint.server_close()


def call_raw(url: str, api: str, data: list[Any], cookies: Any = None) -> tuple[int, str]:
    """POST an API call the way any HTTP client could (no gradio_client processing); (status, event text)."""
    import httpx

    r = httpx.post(f"{url}gradio_api/call/{api}", json={"data": data}, cookies=cookies, timeout=30)
    if r.status_code != 200:
        return r.status_code, r.text
    result = httpx.get(f"{url}gradio_api/call/{api}/{r.json()['event_id']}", cookies=cookies, timeout=60)
    return result.status_code, result.text


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
    votes = client.predict("", "", "", "", "", 0, api_name="/data_votes")
    rows = [dict(zip(votes["headers"], r, strict=True)) for r in votes["data"]]
    assert [(r["annotator"], r["comment"]) for r in rows] == [("alice", "typed another name")]


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
        label = store.add_step_label(runs[0], EVIL, EVIL, EVIL, note=EVIL)
        store.update_step_label(label, label=EVIL + "!", note=EVIL + "!")
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


# -- secrets (last: it stops the server to read the store) ----------------------------------------------------
def every_file(root: Path) -> Iterator[Path]:
    for path in root.rglob("*"):
        if path.is_file() and not any(p.is_symlink() for p in [path, *path.parents] if root in p.parents):
            yield path


def test_api_keys_are_never_written(served: Served, tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    client = served.client()
    for model in ("keyed", "fallback"):
        assert _Endpoint.TEXT in client.predict(model, "Say hi", api_name="/try_model")
    run = {"blind": True, "max_new_tokens": 16, "temperature": 0, "top_p": 1, "seed": None,
           "max_questions": 5, "max_branches": 5, "token_budget": None}  # fmt: skip
    cid = client.predict(prompt="Say hi", columns=["system1 @ keyed", "cot @ fallback"], **run,
                         api_name="/run_arena")[0]  # fmt: skip
    client.predict(cid, "B", "", "", *[None] * 6, api_name="/vote")
    client.predict(["pairwise"], "keyed", "comparisons", "all", "", 0, 8, "", api_name="/judge_run")
    for fmt in ("jsonl", "parquet"):
        client.predict("dpo", fmt, "any", False, False, "", "", "", "", api_name="/data_export")
    assert f"Bearer {KEY}" in served.authorizations and f"Bearer {FALLBACK_KEY}" in served.authorizations
    stop(served.proc)

    other = tmp_path / "cli-data"  # and from the CLI, with the keys in its environment
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(KEY_ENV, KEY)
        mp.setenv("OPENAI_API_KEY", FALLBACK_KEY)
        register_endpoint_models(other, served.endpoint)
        assert _Endpoint.TEXT in cli("generate", "--model", "keyed", "hi", "--data-dir", str(other))
        assert _Endpoint.TEXT in cli("generate", "--model", "fallback", "hi", "--data-dir", str(other))
        cli("export", "--format", "dpo", "--to", "jsonl", str(other / "dpo.jsonl"), "--data-dir", str(other))
        cli("stats", "--data-dir", str(other))

    secrets = (KEY.encode(), FALLBACK_KEY.encode())
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
        for table in tables:
            text = json.dumps(store.arrow(f'SELECT * FROM "{table}"').to_pylist(), default=str)
            assert KEY not in text and FALLBACK_KEY not in text, table
