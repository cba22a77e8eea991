"""Real servers on 127.0.0.1 for tests: `transformers serve`, the studio itself, a log-prob server on the real
model, a proxy that fails the first requests, and a deliberately broken HTTP server.

Ports: a server in this process binds port 0 and keeps its socket (no race). A server in a child process
(`transformers serve`, `studio serve`) must bind a port itself, so it gets a port that was free a moment ago;
if another process takes it first, the child fails to bind and is started again on another port
(:func:`launch`), and a port that answers is checked to belong to our child, not to someone else.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

#: what a server's log says when its port was taken (uvicorn, gradio)
CLASH = ("address already in use", "errno 98", "cannot find empty port")


def free_port() -> int:
    """A port that was free just now. Another process may take it before it is used: servers in a child
    process go through :func:`launch`, which retries; to get a port nothing answers on, use :func:`closed_port`."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def closed_port() -> Iterator[int]:
    """A loopback port held, bound but never listening, for as long as the context is open: a connection to it
    is refused at once, and no other process can start listening on it meanwhile."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


def wait_http(url: str, timeout: float = 90.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before answering {url}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def stop(proc: subprocess.Popen, grace: float = 15.0) -> None:
    """SIGTERM, wait (transformers serve needs a few seconds), then SIGKILL."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _listening_inodes(port: int) -> set[str] | None:
    """Socket inodes listening on ``port`` (Linux ``/proc/net/tcp*``); None where that cannot be read."""
    found, readable = set(), False
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        readable = True
        for line in lines:
            cols = line.split()
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                found.add(cols[9])
    return found if readable else None


def _family(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for children in Path(f"/proc/{p}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in children.read_text().split()]
    return out


def serves(proc: subprocess.Popen, port: int) -> bool:
    """Whether ``proc`` (or a child of it) is the one listening on ``port``; True where /proc cannot tell."""
    inodes = _listening_inodes(port)
    if inodes is None:
        return True
    for pid in _family(proc.pid):
        with contextlib.suppress(OSError):
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with contextlib.suppress(OSError):
                    link = os.readlink(fd)
                    if link.startswith("socket:[") and link[8:-1] in inodes:
                        return True
    return False


def launch(
    command: Callable[[int], list[str]],
    log: Path,
    *,
    env: dict[str, str],
    path: str = "/",
    timeout: float = 90.0,
    attempts: int = 3,
) -> tuple[int, subprocess.Popen]:
    """Start ``command(port)`` on a free port and wait until it answers ``path``; (port, process).

    A child that could not bind (its log says the address is in use), or a port that answers from another
    process, is retried on a new port, ``attempts`` times in all. The log keeps every attempt."""
    log.write_bytes(b"")
    why = ""
    for attempt in range(1, attempts + 1):
        port = free_port()
        with open(log, "ab") as out:
            out.write(f"--- attempt {attempt}: port {port}\n".encode())
            out.flush()
            proc = subprocess.Popen(command(port), stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            wait_http(f"http://127.0.0.1:{port}{path}", timeout=timeout, proc=proc)
        except RuntimeError as e:  # exited before answering: retried only when the port was taken
            tail = log.read_text(errors="replace").rsplit("--- attempt", 1)[-1].lower()
            if not any(sign in tail for sign in CLASH):
                raise
            why = str(e)
            continue
        except BaseException:
            stop(proc)
            raise
        if proc.poll() is None and serves(proc, port):
            return port, proc
        why = f"port {port} answered, but not from the server we started"
        stop(proc)
    raise RuntimeError(f"could not start {command(0)[:3]} on a free port in {attempts} attempts: {why}")


@contextlib.contextmanager
def transformers_serve(model_dir: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """``transformers serve DIR --host 127.0.0.1 --port N --device cpu``; yields (base_url, process)."""
    exe = Path(sys.executable).with_name("transformers")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": os.environ.get("STUDIO_THREADS", "1") or "1",
    }

    def command(port: int) -> list[str]:
        return [
            str(exe),
            "serve",
            str(model_dir),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--device",
            "cpu",
        ]

    port, proc = launch(command, log, env=env, path="/health")
    try:
        yield f"http://127.0.0.1:{port}/v1", proc
    finally:
        stop(proc)


@contextlib.contextmanager
def studio_server(
    data_dir: Path, log: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 180.0
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``python -m studio serve`` on a free loopback port over ``data_dir``; yields (url, process).

    The server holds the DuckDB lock while it runs: stop it (``stop(proc)``) before opening the store."""
    full_env = {**os.environ, "STUDIO_HOME": str(data_dir), **(env or {})}

    def command(port: int) -> list[str]:
        return [sys.executable, "-m", "studio", "serve", "--port", str(port), *args]

    port, proc = launch(command, log, env=full_env, timeout=timeout)
    try:
        yield f"http://127.0.0.1:{port}/", proc
    finally:
        stop(proc)


# -- servers in this process -------------------------------------------------------------------------------------
@contextlib.contextmanager
def _serving(handler: type[BaseHTTPRequestHandler], **attrs: Any) -> Iterator[ThreadingHTTPServer]:
    """``handler`` on 127.0.0.1, port 0 bound and held by this process; ``attrs`` set on the server."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    for name, value in attrs.items():
        setattr(srv, name, value)
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield srv
    finally:
        srv.shutdown()
        srv.server_close()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *_: object) -> None:
        pass

    def _body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("content-length", 0)))

    def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)


class _Broken(_Handler):
    def do_POST(self) -> None:  # noqa: N802 - http.server API
        self._body()
        mode = self.server.mode  # type: ignore[attr-defined]
        if mode == "slow":
            time.sleep(5)
        status, body = (500, b'{"error": {"message": "boom"}}') if mode == "500" else (200, b"<html>not json")
        if mode == "empty":
            body = json.dumps(
                {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
            ).encode()
        self._send(status, body)


@contextlib.contextmanager
def broken_server(mode: str) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers 500, garbage, an empty choice list, or too slowly."""
    with _serving(_Broken, mode=mode) as srv:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1"


@dataclass
class Flaky:
    """A proxy's record: its base URL, and the HTTP status it answered to each POST, in order."""

    url: str
    statuses: list[int] = field(default_factory=list)

    @property
    def attempts(self) -> int:
        return len(self.statuses)


class _FlakyProxy(_Handler):
    def do_POST(self) -> None:  # noqa: N802 - http.server API
        srv: Any = self.server
        body = self._body()
        with srv.lock:
            failing = srv.failures_left > 0
            srv.failures_left -= failing
        if failing:  # a busy server: an error and a short Retry-After (the client's backoff would be 0.5 s+)
            status, out, headers = (
                srv.status,
                b'{"error": {"message": "overloaded, try again"}}',
                {"retry-after-ms": "20"},
            )
        else:
            status, out = _forward(srv.upstream + self.path, body)
            headers = {}
        srv.record.statuses.append(status)
        self._send(status, out, headers)


@contextlib.contextmanager
def flaky_proxy(upstream: str, fail_first: int, status: int = 503) -> Iterator[Flaky]:
    """A proxy on 127.0.0.1 in front of the ``/v1`` server at ``upstream``: it answers the first ``fail_first``
    POSTs itself with ``status``, then forwards every request upstream and relays the answer. Yields a
    :class:`Flaky` whose ``url`` is the proxy's ``/v1`` and whose ``statuses`` list every answer it gave."""
    origin = upstream.rstrip("/").removesuffix("/v1")
    record = Flaky("")
    with _serving(
        _FlakyProxy,
        upstream=origin,
        failures_left=fail_first,
        status=status,
        record=record,
        lock=threading.Lock(),
    ) as srv:
        record.url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
        yield record


class _LogprobServer(_Handler):
    def do_POST(self) -> None:  # noqa: N802 - http.server API
        srv: Any = self.server
        req = json.loads(self._body() or b"{}")
        srv.requests.append(req)
        if self.path.rstrip("/") != "/v1/chat/completions":
            return self._send(404, b'{"error": {"message": "not found"}}')
        self._send(200, json.dumps(srv.model.complete(req)).encode())


class _GreedyLogprobs:
    """Greedy chat completion with OpenAI-style ``logprobs``, straight from transformers (no studio code)."""

    def __init__(self, model_dir: Path) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.torch = torch
        self.tok = AutoTokenizer.from_pretrained(model_dir)
        self.model = AutoModelForCausalLM.from_pretrained(
            model_dir, dtype=torch.float32
        ).eval()  # fp32: exact
        self.lock = threading.Lock()

    def _entry(self, token_id: int, logprob: float) -> dict[str, Any]:
        text = self.tok.decode([token_id])
        return {"token": text, "logprob": logprob, "bytes": list(text.encode())}

    def complete(self, req: dict[str, Any]) -> dict[str, Any]:
        torch = self.torch
        messages = req["messages"]
        prefill = messages[-1]["role"] == "assistant"
        ids = self.tok.apply_chat_template(
            messages, add_generation_prompt=not prefill, continue_final_message=prefill, tokenize=True
        )
        ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
        n_top = int(req.get("top_logprobs") or 0)
        content, tokens = [], []
        with self.lock, torch.no_grad():
            for _ in range(int(req.get("max_tokens") or 16)):
                logits = self.model(input_ids=torch.tensor([ids + tokens])).logits[0, -1].float()
                logp = torch.log_softmax(logits, dim=-1)
                best = int(logp.argmax())
                top = torch.topk(logp, n_top) if n_top else None
                entry = self._entry(best, float(logp[best]))
                entry["top_logprobs"] = (
                    [self._entry(int(i), float(v)) for v, i in zip(top.values, top.indices, strict=True)]
                    if top is not None
                    else []
                )
                content.append(entry)
                tokens.append(best)
                if best == self.tok.eos_token_id:
                    break
        choice: dict[str, Any] = {
            "index": 0,
            "finish_reason": "length",
            "message": {"role": "assistant", "content": self.tok.decode(tokens, skip_special_tokens=True)},
            "logprobs": {"content": content} if req.get("logprobs") else None,
        }
        usage = {
            "prompt_tokens": len(ids),
            "completion_tokens": len(tokens),
            "total_tokens": len(ids) + len(tokens),
        }
        return {"id": "lp", "object": "chat.completion", "created": 0, "model": req.get("model", ""),
                "choices": [choice], "usage": usage}  # fmt: skip


@dataclass
class LogprobServer:
    url: str
    requests: list[dict[str, Any]]


@contextlib.contextmanager
def logprob_server(model_dir: Path) -> Iterator[LogprobServer]:
    """A minimal OpenAI-compatible ``/v1/chat/completions`` on 127.0.0.1 that returns ``logprobs`` and
    ``top_logprobs`` (which `transformers serve` ignores), computed by plain transformers on the real model
    in ``model_dir``: greedy, non-streaming. The protocol side is ours; the numbers are the model's."""
    requests: list[dict[str, Any]] = []
    with _serving(_LogprobServer, model=_GreedyLogprobs(model_dir), requests=requests) as srv:
        yield LogprobServer(f"http://127.0.0.1:{srv.server_address[1]}/v1", requests)


def _forward(url: str, body: bytes) -> tuple[int, bytes]:
    """POST ``body`` to the real upstream server: its status and body, an HTTP error's included."""
    req = urllib.request.Request(url, data=body, headers={"content-type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=300) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


class _RefusingProxy(_Handler):
    def do_POST(self) -> None:  # noqa: N802 - http.server API
        srv: Any = self.server
        body = self._body()
        sent = json.loads(body or b"{}")
        srv.record.bodies.append(sent)
        if srv.field in sent:  # what a server without structured outputs says
            status, out = 400, json.dumps({"error": {"message": f"{srv.field} is not supported"}}).encode()
        else:
            status, out = _forward(srv.upstream + self.path, body)
        srv.record.statuses.append(status)
        self._send(status, out)


@dataclass
class Refusing(Flaky):
    """A refusing proxy's record: the statuses it answered and the request bodies it received, in order."""

    bodies: list[dict[str, Any]] = field(default_factory=list)


@contextlib.contextmanager
def refusing_proxy(upstream: str, refuse: str = "response_format") -> Iterator[Refusing]:
    """A proxy on 127.0.0.1 in front of the ``/v1`` server at ``upstream`` that answers HTTP 400 ("<field> is not
    supported") to every request whose body holds the field ``refuse``, and forwards the others."""
    origin = upstream.rstrip("/").removesuffix("/v1")
    record = Refusing("")
    with _serving(_RefusingProxy, upstream=origin, field=refuse, record=record) as srv:
        record.url = f"http://127.0.0.1:{srv.server_address[1]}/v1"
        yield record
