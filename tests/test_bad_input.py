"""The bad-input matrix: each case through the UI (gradio_client against one served studio) and the CLI.

UI: the message text arrives (a ``gr.Error`` with the message, or the column's error), never a traceback, the
server keeps running, and a refused input leaves the store as it was (``/data_stats`` before = after).
CLI: ``studio.cli.main`` (what ``python -m studio`` runs) returns 2 and prints exactly one ``error: ...`` line
and no traceback. It runs in this process so the model loads once; the cases that need two processes (the
second studio on one data dir) run ``python -m studio`` itself. Emoji, RTL and SQL-looking text must *work*.

Cases with no CLI verb (votes, step labels) say so; the Train tab does not exist yet, so training is CLI only.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from storage import Store, StoreError
from studio.cli import main
from studio.models import ModelRegistry, ModelSpec
from studio.settings import Settings
from tests.servers import broken_server, free_port, studio_server

pytestmark = pytest.mark.slow

RUN = {"blind": False, "max_new_tokens": 16, "temperature": 0, "top_p": 1, "seed": None,
       "max_questions": 5, "max_branches": 5, "token_budget": None}  # fmt: skip
S1 = ["system1 @ smollm2-135m"]
BIG = "x" * 1_000_000  # 1 MB
LONG = "word " * 12_000  # ~12k tokens: beyond SmolLM2's 8192-token context
NUL = "What is\x00 2+2?"
WORLD = "What does 👋🏽 mean? ما معنى هذا؟ מה זה אומר?"
SQL = "Robert'); DROP TABLE votes; -- \" OR 1=1; SELECT * FROM prompts WHERE text = '%';"
NO_CMP = 987_654


class _Chatty(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint whose every answer is well-formed but holds no verdict."""

    TEXT = "Both answers have their merits; I would rather not pick one."

    def log_message(self, *_: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        body = json.loads(self.rfile.read(int(self.headers.get("content-length", 0))))
        head = {"id": "x", "created": 0, "model": "m"}
        if body.get("stream"):
            delta = {**head, "object": "chat.completion.chunk",
                     "choices": [{"index": 0, "delta": {"content": self.TEXT}, "finish_reason": "stop"}]}  # fmt: skip
            payload, kind = f"data: {json.dumps(delta)}\n\ndata: [DONE]\n\n".encode(), "text/event-stream"
        else:
            message = {"role": "assistant", "content": self.TEXT}
            payload = json.dumps({**head, "object": "chat.completion", "choices": [
                {"index": 0, "message": message, "finish_reason": "stop"}]}).encode()  # fmt: skip
            kind = "application/json"
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@contextlib.contextmanager
def chatty_server() -> Iterator[str]:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Chatty)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    finally:
        srv.shutdown()
        srv.server_close()


# -- fixtures and helpers -------------------------------------------------------------------------------------
def make_data_dir(root: Path, model_dir: Path) -> Path:
    (root / "models").mkdir(parents=True)
    (root / "models" / "smollm2-135m").symlink_to(model_dir, target_is_directory=True)
    return root


@pytest.fixture(scope="module", autouse=True)
def _short_timeouts() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("STUDIO_REQUEST_TIMEOUT", "1")  # the "slow" endpoint answers after 5 s
        yield


@pytest.fixture(scope="module")
def chatty() -> Iterator[str]:
    with chatty_server() as url:
        yield url


@pytest.fixture(scope="module")
def app(
    tmp_path_factory: pytest.TempPathFactory, default_model_dir: Path, chatty: str
) -> Iterator[tuple[Any, Any, Path]]:
    """One served studio for the whole module: (client, process, data dir); ``client.src`` is its URL.
    The model pickers list the models registered at start-up, so the chatty judge is registered first."""
    from gradio_client import Client

    root = tmp_path_factory.mktemp("ui")
    data = make_data_dir(root / "data", default_model_dir)
    registry = ModelRegistry(Settings.load(env={}, data_dir=data))
    registry.add(ModelSpec("chatty", backend="openai", path="m", base_url=chatty))
    env = {"STUDIO_REQUEST_TIMEOUT": "1", "STUDIO_THREADS": os.environ.get("STUDIO_THREADS", "1") or "1"}
    with studio_server(data, root / "serve.log", "--no-preload", env=env) as (url, proc):
        yield Client(url, verbose=False), proc, data
        assert proc.poll() is None, "the server died during the bad-input matrix"


@pytest.fixture(scope="module")
def cli_dir(tmp_path_factory: pytest.TempPathFactory, default_model_dir: Path) -> Path:
    """A data dir for CLI prompt cases (shared, so the model loads once)."""
    return make_data_dir(tmp_path_factory.mktemp("cli") / "data", default_model_dir)


@pytest.fixture()
def fresh(settings) -> Path:
    """A fresh CLI data dir (the default model linked in)."""
    return settings.data_dir


def cli(data: Path, *args: str, stdin: str | None = None) -> tuple[int, str, str]:
    """``studio ARGS --data-dir DATA`` in this process: (exit code, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    old_stdin = sys.stdin
    sys.stdin = io.StringIO(stdin or "")
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*args, "--data-dir", str(data)])
    finally:
        sys.stdin = old_stdin
    return code, out.getvalue(), err.getvalue()


def cli_error(data: Path, *args: str, stdin: str | None = None) -> str:
    """Run a CLI command that must fail: exit 2, one ``error:`` line, no traceback; returns that line."""
    code, _, err = cli(data, *args, stdin=stdin)
    lines = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(lines) == 1, (code, err[-2000:])
    assert "Traceback" not in err
    return lines[0]


def cli_ok(data: Path, *args: str, stdin: str | None = None) -> str:
    code, out, err = cli(data, *args, stdin=stdin)
    assert code == 0 and "error:" not in err, (code, err[-2000:])
    return out


def stats(client: Any) -> str:
    return client.predict(api_name="/data_stats")[0]


def ui_error(client: Any, *args: Any, api_name: str, **kwargs: Any) -> str:
    """Call an endpoint that must refuse: the message arrives (no traceback) and the store is unchanged."""
    before = stats(client)
    with pytest.raises(Exception) as info:  # gradio_client's AppError carries the gr.Error message
        client.predict(*args, api_name=api_name, **kwargs)
    message = str(info.value)
    assert "Traceback" not in message and "has not enabled verbose error reporting" not in message, message
    assert message.strip() and "/uploads/" not in message and "/pytest-of-" not in message, (
        message
    )  # no paths
    assert stats(client) == before, "a refused input changed the store"
    return message


def file_arg(path: Path) -> Any:
    from gradio_client import handle_file

    return handle_file(str(path))


def run_arena(client: Any, prompt: str, columns: list[str] = S1) -> tuple[Any, str, str]:
    """(comparison id, status, every output as JSON text) of one arena run."""
    out = client.predict(prompt=prompt, columns=columns, **RUN, api_name="/run_arena")
    return out[0], out[1], json.dumps(out, ensure_ascii=False)  # (the session state is not an output)


# -- prompts ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("prompt", "message"),
    [("", "empty or whitespace"), (" \n\t  ", "empty or whitespace"), (NUL, "NUL bytes")],
    ids=["empty", "whitespace", "nul"],
)
def test_refused_prompts(app, cli_dir: Path, prompt: str, message: str) -> None:
    client, _, _ = app
    assert message in ui_error(client, prompt=prompt, columns=S1, **RUN, api_name="/run_arena")
    assert message in ui_error(client, "smollm2-135m", prompt, api_name="/try_model")
    assert message in cli_error(cli_dir, "generate", "-", stdin=prompt)  # argv cannot carry a NUL byte


@pytest.mark.parametrize("prompt", [BIG, LONG], ids=["1MB", "beyond-context"])
def test_prompts_beyond_the_context_give_the_token_count_and_the_limit(
    app, cli_dir: Path, prompt: str
) -> None:
    client, _, _ = app
    limit = re.compile(r"the prompt is \d+ tokens, but smollm2-135m accepts at most \d+")
    # the arena refuses prompts over max_prompt_chars (20,000) before anything runs or is stored
    assert "the limit is 20,000" in ui_error(client, prompt=prompt, columns=S1, **RUN, api_name="/run_arena")
    assert limit.search(ui_error(client, "smollm2-135m", prompt, api_name="/try_model"))
    assert limit.search(cli_error(cli_dir, "generate", "--max-new-tokens", "8", "-", stdin=prompt))


@pytest.mark.parametrize(("text", "search"), [(WORLD, "👋🏽"), (SQL, "DROP TABLE")], ids=["emoji-rtl", "sql"])
def test_odd_text_works_and_round_trips_exactly(app, cli_dir: Path, text: str, search: str) -> None:
    """Emoji with a skin tone, right-to-left scripts, and SQL-looking text: through the arena, the Data tab's
    search and the CLI."""
    client, _, _ = app
    _, status, everything = run_arena(client, text)
    assert "All 1 columns finished" in status and "arena-error" not in everything
    rows = client.predict("", "", "", "", search, 0, api_name="/data_prompts")["data"]
    assert [r[3] for r in rows] == [text]
    assert cli_ok(cli_dir, "generate", "--max-new-tokens", "8", text).strip()


def test_sql_looking_text_round_trips_through_import_and_export(fresh: Path) -> None:
    """SQL-looking text through the CLI's store verbs: import a pair made of it, export it again."""
    src, out = fresh / "sql.jsonl", fresh / "out.jsonl"
    src.write_text(json.dumps({"prompt": SQL, "chosen": SQL + " yes", "rejected": SQL + " no"}) + "\n")
    cli_ok(fresh, "import", str(src), "--prompt-set", SQL, "--annotator", SQL)
    cli_ok(
        fresh, "export", "--format", "dpo", "--to", "jsonl", str(out), "--annotator", SQL, "--prompt-set", SQL
    )
    [row] = [json.loads(line) for line in out.read_text().splitlines()]
    assert (row["prompt"], row["chosen"], row["rejected"]) == (SQL, SQL + " yes", SQL + " no")


# -- imports ----------------------------------------------------------------------------------------------------
@pytest.fixture()
def bad_files(tmp_path: Path) -> dict[str, Path]:
    latin = "café ".encode("latin-1")
    files = {
        "latin1.txt": b"What is 2+2?\n" + latin + b"\n",
        "latin1.jsonl": b'{"prompt": "q", "chosen": "a", "rejected": "' + latin + b'"}\n',
        "broken.jsonl": b'{"prompt": "ok"}\n{"prompt": "half\n',
        "missing.jsonl": b'{"prompt": "q", "chosen": "a"}\n',
        "garbage.parquet": b"this is not a parquet file at all",
    }
    for name, body in files.items():
        (tmp_path / name).write_bytes(body)
    return {name: tmp_path / name for name in files}


def test_invalid_utf8_imports(app, fresh: Path, bad_files: dict[str, Path]) -> None:
    client, _, _ = app
    msg = ui_error(client, file_arg(bad_files["latin1.txt"]), "latin", api_name="/import_prompts")
    assert "not valid UTF-8" in msg
    msg = ui_error(client, file_arg(bad_files["latin1.jsonl"]), "", "", api_name="/data_import")
    assert "invalid UTF-8" in msg and "row 1" in msg
    assert "invalid UTF-8" in cli_error(fresh, "import", str(bad_files["latin1.jsonl"]))
    assert '"prompts": 0' in cli_ok(fresh, "stats", "--json")


def test_malformed_imports(app, fresh: Path, bad_files: dict[str, Path]) -> None:
    client, _, _ = app
    msg = ui_error(client, file_arg(bad_files["broken.jsonl"]), "broken", api_name="/import_prompts")
    assert "line 2" in msg and "not valid JSON" in msg
    for name, expected in [("broken.jsonl", "not valid JSON"), ("missing.jsonl", "'rejected' is missing"),
                           ("garbage.parquet", "cannot read as Parquet")]:  # fmt: skip
        assert expected in ui_error(client, file_arg(bad_files[name]), "", "", api_name="/data_import")
        assert expected in cli_error(fresh, "import", str(bad_files[name]))
    assert '"prompts": 0' in cli_ok(fresh, "stats", "--json")


# -- models and endpoints ---------------------------------------------------------------------------------------
def add_model_ui(client: Any, name: str, backend: str, path: str, url: str = "") -> None:
    client.predict(name, backend, path, url, "", "", api_name="/add_model")


def test_a_model_dir_that_does_not_exist(app, fresh: Path) -> None:
    client, _, _ = app
    add_model_ui(client, "nodir", "transformers", "/nope/model")
    assert "'/nope/model' does not exist" in ui_error(client, "nodir", "hi", api_name="/try_model")
    cli_ok(fresh, "models", "add", "nodir", "--path", "/nope/model")
    assert "'/nope/model' does not exist" in cli_error(fresh, "generate", "--model", "nodir", "hi")


def _endpoint_case(app, fresh: Path, name: str, url: str, expected: str) -> None:
    client, _, _ = app
    add_model_ui(client, name, "openai", "m", url)
    assert expected in ui_error(client, name, "hi", api_name="/try_model")
    cli_ok(fresh, "models", "add", name, "--backend", "openai", "--path", "m", "--base-url", url)
    for flags in ((), ("--json",)):  # streamed, and one chat call
        msg = cli_error(fresh, "generate", *flags, "--model", name, "hi")
        assert url in msg and (expected in msg or "no stream events" in msg), msg


def test_an_unreachable_endpoint(app, fresh: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    _endpoint_case(app, fresh, "gone", url, f"cannot reach endpoint {url}")


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("500", "answered HTTP 500"), ("garbage", "could not be read"), ("empty", "without any choices"),
     ("slow", "did not answer within 1 s")],
)  # fmt: skip
def test_a_broken_endpoint(app, fresh: Path, mode: str, expected: str) -> None:
    with broken_server(mode) as url:
        _endpoint_case(app, fresh, f"broken-{mode}", url, expected)


# -- judges -----------------------------------------------------------------------------------------------------
def failed_count(text: str) -> int:
    return int(re.search(r"(\d+) failed", text)[1])


def test_unparseable_judge_output_is_a_stored_failed_verdict(app, fresh: Path, chatty: str) -> None:
    client, _, _ = app
    cid, _, _ = run_arena(
        client, "Which is bigger, 3 or 5?", ["system1 @ smollm2-135m", "cot @ smollm2-135m"]
    )
    assert cid
    before = failed_count(stats(client))
    summary = client.predict(
        ["pairwise"], "chatty", "comparisons", "all", "", 0, 8, "", api_name="/judge_run"
    )
    assert failed_count(summary) >= 1 and "0 ok" in summary, summary
    assert failed_count(stats(client)) == before + failed_count(summary)  # stored and counted

    with Store(fresh / "studio.duckdb", data_dir=fresh) as store:
        pid = store.add_prompt("Which is bigger, 3 or 5?")
        store.add_comparison([store.add_run(pid, "m", "system1", "5"), store.add_run(pid, "m", "cot", "3")])
    cli_ok(fresh, "models", "add", "chatty", "--backend", "openai", "--path", "m", "--base-url", chatty)
    assert "0 ok, 1 failed" in cli_ok(fresh, "judge", "--judge", "pairwise", "--model", "chatty")
    assert json.loads(cli_ok(fresh, "stats", "--json"))["failed_verdicts"] == 1
    with Store(fresh / "studio.duckdb") as store:
        [verdict] = store.list_verdicts()
        assert verdict["ok"] is False and _Chatty.TEXT in verdict["raw_output"]


# -- training ---------------------------------------------------------------------------------------------------
def test_training_with_zero_or_one_pair_is_refused_before_launch(app, fresh: Path, tmp_path: Path) -> None:
    client, _, data = app
    one = tmp_path / "one.jsonl"
    one.write_text(json.dumps({"prompt": "2+2?", "chosen": "4", "rejected": "5"}) + "\n")
    client.predict(file_arg(one), "one-pair", "", api_name="/data_import")
    form = ("dpo", "smollm2-135m", "")  # method, base model, settings; then prompt set, source, annotator
    msg = ui_error(client, *form, "no-such-set", "both", "", api_name="/train_start")
    assert "no preference pairs match" in msg
    msg = ui_error(client, *form, "one-pair", "both", "", api_name="/train_start")
    assert "only 1 preference pairs" in msg and "min_examples" in msg
    assert not [p for p in (data / "runs").iterdir() if p.is_dir()]  # nothing launched

    assert "no preference pairs match" in cli_error(fresh, "train", "dpo")
    with Store(fresh / "studio.duckdb", data_dir=fresh) as store:
        pid = store.add_prompt("2+2?")
        a, b = store.add_run(pid, "smollm2-135m", "cot", "4"), store.add_run(pid, "smollm2-135m", "s2a", "5")
        store.add_vote(store.add_comparison([a, b]), "A", "alice")
    msg = cli_error(fresh, "train", "dpo")
    assert "only 1 preference pairs" in msg and "min_examples" in msg
    with Store(fresh / "studio.duckdb") as store:
        assert store.list_training_runs() == []  # nothing recorded
    assert not [p for p in (fresh / "runs").iterdir() if p.is_dir()]  # nothing launched


# -- the store --------------------------------------------------------------------------------------------------
def test_exports_stay_in_the_data_dir_from_the_ui_and_go_where_the_cli_says(
    app, fresh: Path, tmp_path: Path
) -> None:
    client, _, data = app
    _, message = client.predict("dpo", "jsonl", "any", False, False, "", "", "", "", api_name="/data_export")
    written = Path(re.search(r"to `([^`]+)`", message)[1])
    assert written.parent == data / "exports" and written.exists()  # the UI takes no path at all
    with Store(fresh / "studio.duckdb", data_dir=fresh) as store, pytest.raises(StoreError, match="outside"):
        store.export("dpo", "jsonl", tmp_path / "elsewhere.jsonl")  # the store refuses unless told
    outside = tmp_path / "outside" / "dpo.jsonl"
    assert "wrote 0 dpo rows" in cli_ok(fresh, "export", "--format", "dpo", "--to", "jsonl", str(outside))
    assert outside.exists()  # README: "explicit paths may be anywhere"


def test_labels_on_things_that_do_not_exist(app, fresh: Path) -> None:
    from gradio_client import Client

    client, _, _ = app
    assert "does not exist" in ui_error(client, NO_CMP, "A", "", "ann", *[None] * 6, api_name="/vote")
    assert f"no vote with id {NO_CMP}" in ui_error(client, NO_CMP, api_name="/data_delete_vote")
    assert f"no step label with id {NO_CMP}" in ui_error(
        client, NO_CMP, "good", "", api_name="/data_update_step_label"
    )
    fresh_session = Client(client.src, verbose=False)  # this client's session state holds earlier runs
    msg = ui_error(fresh_session, "0|s1", "wrong", "", "ann", api_name="/flag_step")
    assert "no stored run" in msg or "0|s1 is not in the list of choices: []" in msg
    with Store(fresh / "studio.duckdb", data_dir=fresh) as store:  # no CLI verb writes votes or step labels
        with pytest.raises(StoreError, match=f"no comparison with id {NO_CMP}"):
            store.add_vote(NO_CMP, "A", "ann")
        with pytest.raises(StoreError, match=f"no run with id {NO_CMP}"):
            store.add_step_label(NO_CMP, "s1", "wrong", "ann")
        assert store.stats()["votes"] == store.stats()["step_labels"] == 0


def python_m_studio(data: Path, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    env = {**os.environ, "STUDIO_HOME": str(data)}
    cmd = [sys.executable, "-m", "studio", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)


def test_a_second_studio_on_the_same_data_dir_names_the_holder(app) -> None:
    _, proc, data = app
    for args in (["stats"], ["serve", "--no-preload", "--port", str(free_port())]):
        try:
            r = python_m_studio(data, *args)
        except subprocess.TimeoutExpired:
            pytest.fail(f"`studio {args[0]}` kept running beside the server instead of refusing")
        errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
        assert r.returncode == 2 and len(errors) == 1 and "Traceback" not in r.stderr, r.stderr[-2000:]
        assert f"in use by another process (PID {proc.pid}" in errors[0] and "studio serve" in errors[0]
    assert proc.poll() is None


# -- wrong types, missing values, refused paths -------------------------------------------------------------------
def test_strings_where_numbers_belong_and_missing_values_say_which_and_why(app) -> None:
    import httpx

    client, _, data = app
    assert "'Vote id' (a number) must be a number, not 'abc'" in ui_error(
        client, "abc", api_name="/data_delete_vote"
    )
    msg = ui_error(
        client, prompt="2+2?", columns=S1, **{**RUN, "max_new_tokens": "lots"}, api_name="/run_arena"
    )
    assert "must be a number, not 'lots'" in msg
    msg = ui_error(
        client, "dpo", "smollm2-135m", '{"max_steps": "abc"}', "", "both", "", api_name="/train_start"
    )
    assert "max_steps" in msg
    for api, body, expected in [
        ("data_delete_vote", [], "data_delete_vote takes 1 input values; 0 were sent"),
        ("import_prompts", [{"path": str(data / "studio.duckdb"), "meta": {"_type": "gradio.FileData"}}, "x"],
         "only files uploaded to this server can be read; studio.duckdb was not uploaded"),
    ]:  # fmt: skip
        r = httpx.post(f"{client.src}gradio_api/call/{api}", json={"data": body}, timeout=30)
        events = httpx.get(f"{client.src}gradio_api/call/{api}/{r.json()['event_id']}", timeout=60).text
        error = json.loads(events.split("data:", 1)[1])["error"]  # before: {"error": null}
        assert error is not None and expected in error and str(data) not in error, events


def test_cli_export_to_a_path_that_cannot_be_made_is_one_error_line(fresh: Path) -> None:
    assert "/dev/null is not a directory" in cli_error(
        fresh, "export", "--format", "dpo", "--to", "jsonl", "/dev/null/x"
    )
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        main(["export", "--help"])
    assert "relative path resolves against the current directory" in " ".join(out.getvalue().split())
