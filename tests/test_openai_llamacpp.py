"""The openai backend against a production OpenAI-compatible server: llama.cpp's own server (``xllamacpp``, through
:class:`~studio.backends.llamacpp_server.LlamaServer`) on 127.0.0.1 with the default model's GGUF, the way users
register vLLM, Ollama or llama.cpp. Chat, a batch, streaming, logprobs (``choice_probs`` and the log-prob judge),
JSON-schema output, and the failures met in the field: the server killed mid-stream, HTTP 500, a server that
accepts and never answers (or stops mid-stream), a refused connection. Each failure is a BackendError naming the
URL, within a bounded time."""

from __future__ import annotations

import json
import math
import os
import signal
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from studio.backends import GenParams
from studio.backends.base import schema_text
from studio.backends.llamacpp_server import LlamaServer
from studio.backends.openai_backend import OpenAIBackend
from studio.default_model import default_gguf
from studio.errors import BackendError, InputError
from studio.judges import make_judge
from studio.judges.base import JudgeItem
from studio.judges.logprob import logprob_conversation
from tests.servers import _Handler, _serving, broken_server, launch

Q = [{"role": "user", "content": "What is the capital of France?"}]
GREEDY = GenParams(max_new_tokens=16, temperature=0.0)
#: a prompt the default model answers at length (greedy), so that a stream is still running when it is cut
LONG = [{"role": "user", "content": "Count from 1 to 300, separated by commas."}]


@pytest.fixture(scope="module")
def llama() -> Iterator[LlamaServer]:
    """llama.cpp's server on the default model's GGUF, 1 thread, 4 parallel slots, in this process."""
    with LlamaServer(default_gguf(), threads=1, parallel=4, ctx_size=1024) as server:
        yield server


def backend(url: str, **kw: Any) -> OpenAIBackend:
    """The studio's openai backend as a user registers it (any model name: the server serves one model)."""
    return OpenAIBackend("smollm2", base_url=url, model_name="llamacpp", **{"max_retries": 0, **kw})


def quoted(url: str) -> str:
    return url.replace(".", r"\.")


def _busy_slots(url: str) -> int:
    """How many of llama.cpp's slots are generating now (its ``/slots`` endpoint)."""
    with urllib.request.urlopen(url.removesuffix("/v1") + "/slots", timeout=5) as r:
        return sum(bool(s["is_processing"]) for s in json.load(r))


def _watch_slots(url: str, busy: list[int], done: list[int], rows: int = 4) -> None:
    """Record the busy slots every 20 ms until ``rows`` rows are done (or 30 s)."""
    deadline = time.monotonic() + 30
    while len(done) < rows and time.monotonic() < deadline:
        busy.append(_busy_slots(url))
        time.sleep(0.02)


# -- chat, batch, streaming ------------------------------------------------------------------------------------
@pytest.mark.slow
def test_chat_batch_and_stream(llama: LlamaServer) -> None:
    b = backend(llama.base_url, timeout=60)
    [one] = b.chat([Q], GREEDY)
    assert one.text and one.prompt_tokens > 5 and 0 < one.completion_tokens <= 16
    assert one.finish_reason in ("stop", "length") and one.model == "llamacpp"

    questions = ["What is 2 + 2?", "Name a color.", "What is the capital of France?", "Say hello."]
    convs = [[{"role": "user", "content": q}] for q in questions]
    done: list[int] = []
    busy: list[int] = []  # the server's busy slots, seen while the batch runs
    watching = threading.Thread(target=_watch_slots, args=(llama.base_url, busy, done), daemon=True)
    watching.start()
    batch = b.chat(
        convs,
        [GREEDY.replace(max_new_tokens=n) for n in (8, 12, 16, 4)],
        on_row_done=lambda i, _: done.append(i),
    )
    watching.join(10)
    assert sorted(done) == [0, 1, 2, 3] and all(c.text for c in batch)
    assert max(busy) >= 2  # the rows were answered at once, in parallel slots (continuous batching)
    assert [c.completion_tokens <= n for c, n in zip(batch, (8, 12, 16, 4), strict=True)] == [True] * 4
    assert batch[2].text == one.text  # greedy: the same question gives the same answer inside a batch

    chunks = list(b.stream(Q, GREEDY))
    assert len(chunks) > 2 and "".join(chunks).strip() == one.text  # token by token, the same greedy text
    deltas: list[tuple[int, str]] = []
    [streamed] = b.chat([Q], GREEDY, on_delta=lambda i, text: deltas.append((i, text)))
    assert len(deltas) > 2 and {i for i, _ in deltas} == {0}
    assert deltas[-1][1].strip() == streamed.text == one.text
    b.close()


# -- logprobs --------------------------------------------------------------------------------------------------
def _raw_top_logprobs(url: str, conv: list[dict[str, str]]) -> dict[str, float]:
    """The server's own top_logprobs for the first token, by plain HTTP (no studio code)."""
    body = {"messages": conv, "max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": 20}
    req = urllib.request.Request(
        url + "/chat/completions", json.dumps(body).encode(), {"content-type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=30) as r:
        top = json.load(r)["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
    out: dict[str, float] = {}
    for t in top:
        out[t["token"].strip()] = out.get(t["token"].strip(), 0.0) + math.exp(t["logprob"])
    return out


@pytest.mark.slow
def test_choice_probs_and_the_logprob_judge(llama: LlamaServer) -> None:
    """llama.cpp returns top_logprobs, so ``choice_probs`` and the log-prob judge's ``pair`` variant work; the
    default ``pmi`` variant needs whole-answer log-probabilities, which a server does not offer: a clear error.

    llama.cpp's numbers are not bit-for-bit repeatable between requests: the reuse of a cached prompt prefix and
    the slot a request lands in move a letter's probability by about 0.01 (measured), hence the tolerances."""
    b = backend(llama.base_url, timeout=60)
    item = JudgeItem.pair(
        "What is the capital of France?", "The capital of France is Paris.", "I like turtles."
    )
    convs = [logprob_conversation(item, order) for order in ("AB", "BA")]
    probs = b.choice_probs(convs, ["A", "B"])
    for conv, p in zip(convs, probs, strict=True):
        assert set(p) == {"A", "B"} and sum(p.values()) == pytest.approx(1.0)
        raw = _raw_top_logprobs(llama.base_url, conv)
        assert "A" in raw and "B" in raw  # both letters are in the server's top 20 here
        assert p["A"] == pytest.approx(raw["A"] / (raw["A"] + raw["B"]), abs=0.03)

    verdict = make_judge("logprob", {"variant": "pair"}).judge([item], b)[0]
    assert verdict.ok and verdict.winner in ("A", "B")
    read = verdict.scores["probs"]  # what the judge read, order by order
    assert verdict.prob_a == pytest.approx((read["AB"]["A"] + read["BA"]["B"]) / 2, abs=1e-9)
    assert [read["AB"]["A"], read["BA"]["A"]] == pytest.approx([probs[0]["A"], probs[1]["A"]], abs=0.03)
    with pytest.raises(InputError, match="variant 'pmi'.*does not offer.*variant=pair"):
        make_judge("logprob", {}).judge([item], b)
    b.close()


# -- JSON-schema output ------------------------------------------------------------------------------------------
ANSWER = schema_text(
    {
        "type": "object",
        "properties": {"answer": {"type": "integer"}, "sure": {"type": "boolean"}},
        "required": ["answer", "sure"],
        "additionalProperties": False,
    }
)


@pytest.mark.slow
def test_json_schema_output_is_constrained(llama: LlamaServer) -> None:
    """The server's grammar holds the answer to the schema (a free answer to this question is prose)."""
    b = backend(llama.base_url, timeout=60)
    q = [{"role": "user", "content": "What is 2 + 2? Explain your reasoning."}]
    [free] = b.chat([q], GenParams(max_new_tokens=24))
    with pytest.raises(ValueError):
        json.loads(free.text)
    [c] = b.chat([q], GenParams(max_new_tokens=48, schema=ANSWER))
    assert c.constrained and c.warnings == [] and c.finish_reason == "stop"
    got = json.loads(c.text)
    assert set(got) == {"answer", "sure"} and type(got["answer"]) is int and type(got["sure"]) is bool
    streamed = json.loads("".join(b.stream(q, GenParams(max_new_tokens=48, schema=ANSWER))))
    assert streamed == got and not b._no_schema  # never fell back to free text
    b.close()


# -- the server killed mid-stream ----------------------------------------------------------------------------------
CHILD = """
import sys, time
from studio.backends.llamacpp_server import LlamaServer
with LlamaServer(sys.argv[1], threads=1, parallel=2, ctx_size=1024, port=int(sys.argv[2])):
    while True:
        time.sleep(60)
"""


@pytest.mark.slow
def test_server_killed_mid_answer_is_a_clear_error(tmp_path) -> None:
    """llama.cpp's server in a child process, SIGKILLed while it streams one answer and generates another: each
    ends in a BackendError naming the URL (not a hang, not a cut answer taken as complete), and the next request
    is refused at once, with the client's retries or without."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    port, proc = launch(
        lambda port: [sys.executable, "-c", CHILD, str(default_gguf()), str(port)],
        tmp_path / "llama.log",
        env=env,
        path="/health",
        timeout=60,
    )
    url = f"http://127.0.0.1:{port}/v1"
    try:
        b = backend(url, timeout=20)
        stream = b.stream(LONG, GenParams(max_new_tokens=400))
        assert next(stream)
        plain: list[BaseException] = []

        def generate() -> None:
            try:
                b.chat([LONG], GenParams(max_new_tokens=400))
            except BaseException as e:  # noqa: BLE001 - handed to the test thread
                plain.append(e)

        waiting = threading.Thread(target=generate, daemon=True)
        waiting.start()
        deadline = time.monotonic() + 20
        while _busy_slots(url) < 2 and time.monotonic() < deadline:  # both requests are being answered
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        start = time.monotonic()
        with pytest.raises(BackendError, match=f"the stream from {quoted(url)} broke off: .*incomplete"):
            for _ in stream:
                pass
        waiting.join(10)
        assert time.monotonic() - start < 10 and not waiting.is_alive()
        assert [type(e) for e in plain] == [BackendError]
        assert str(plain[0]).startswith(f"{url} closed the connection without answering (did the server stop")
        start = time.monotonic()
        for retries in (0, 2):  # the client's retries with backoff are bounded too
            with pytest.raises(
                BackendError, match=f"cannot reach endpoint {quoted(url)}.*(refused|Errno 111)"
            ):
                backend(url, timeout=20, max_retries=retries).chat([Q], GREEDY)
        assert time.monotonic() - start < 10
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)


# -- HTTP 500, timeouts ----------------------------------------------------------------------------------------------
def test_http_500_names_the_url_in_chat_and_stream() -> None:
    with broken_server("500") as url:
        start = time.monotonic()
        with pytest.raises(BackendError, match=f"{quoted(url)} answered HTTP 500: .*boom"):
            list(backend(url, timeout=5).stream(Q, GREEDY))
        with pytest.raises(BackendError, match=f"{quoted(url)} answered HTTP 500"):
            backend(url, timeout=5, max_retries=2).chat([Q], GREEDY)  # retried twice, then said
        assert time.monotonic() - start < 15


class _Silent(_Handler):
    """Reads the request, then answers nothing ("never"), or starts an event stream and stops ("stall")."""

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        srv: Any = self.server
        self._body()
        if srv.mode == "stall":
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.end_headers()
            chunk = {"id": "s", "object": "chat.completion.chunk", "created": 0, "model": "m",
                     "choices": [{"index": 0, "delta": {"content": "Hello"}, "finish_reason": None}]}  # fmt: skip
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        srv.release.wait(60)  # until the test ends


@contextmanager
def silent_server(mode: str) -> Iterator[str]:
    """A real HTTP server on 127.0.0.1 that accepts connections and never (finishes) answering."""
    release = threading.Event()
    with _serving(_Silent, mode=mode, release=release) as srv:
        try:
            yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
        finally:
            release.set()


def test_a_server_that_never_answers_times_out_clearly() -> None:
    with silent_server("never") as url:
        start = time.monotonic()
        pattern = f"{quoted(url)} did not answer within 1 s \\(timeout\\)"
        with pytest.raises(BackendError, match=pattern):
            backend(url, timeout=1).chat([Q], GREEDY)
        with pytest.raises(BackendError, match=pattern):
            list(backend(url, timeout=1).stream(Q, GREEDY))
        assert time.monotonic() - start < 5


def test_a_stream_that_stops_mid_way_times_out_clearly() -> None:
    with silent_server("stall") as url:
        b = backend(url, timeout=1)
        stream = b.stream(Q, GREEDY)
        start = time.monotonic()
        assert next(stream) == "Hello"
        with pytest.raises(BackendError, match=f"the stream from {quoted(url)} broke off: .*Timeout"):
            next(stream)
        assert time.monotonic() - start < 5
