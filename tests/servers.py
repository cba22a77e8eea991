"""Real servers on 127.0.0.1 for tests: `transformers serve` and a deliberately broken HTTP server."""

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
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


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


@contextlib.contextmanager
def transformers_serve(model_dir: Path, log: Path) -> Iterator[tuple[str, subprocess.Popen]]:
    """``transformers serve DIR --host 127.0.0.1 --port N --device cpu``; yields (base_url, process)."""
    port = free_port()
    exe = Path(sys.executable).with_name("transformers")
    env = {
        **os.environ,
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": os.environ.get("STUDIO_THREADS", "1") or "1",
    }
    cmd = [str(exe), "serve", str(model_dir), "--host", "127.0.0.1", "--port", str(port), "--device", "cpu"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc=proc)
        yield f"http://127.0.0.1:{port}/v1", proc
    finally:
        stop(proc)


class _Broken(BaseHTTPRequestHandler):
    mode = "500"

    def log_message(self, *_: object) -> None:
        pass

    def do_POST(self) -> None:  # noqa: N802 - http.server API
        length = int(self.headers.get("content-length", 0))
        self.rfile.read(length)
        mode = self.server.mode  # type: ignore[attr-defined]
        if mode == "slow":
            time.sleep(5)
        status, body = (500, b'{"error": {"message": "boom"}}') if mode == "500" else (200, b"<html>not json")
        if mode == "empty":
            body = json.dumps(
                {"id": "x", "object": "chat.completion", "created": 0, "model": "m", "choices": []}
            ).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            self.wfile.write(body)


@contextlib.contextmanager
def broken_server(mode: str) -> Iterator[str]:
    """An HTTP server on 127.0.0.1 that answers 500, garbage, an empty choice list, or too slowly."""
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _Broken)
    srv.mode = mode  # type: ignore[attr-defined]
    srv.daemon_threads = True
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}/v1"
    finally:
        srv.shutdown()
        srv.server_close()


@contextlib.contextmanager
def studio_server(
    data_dir: Path, log: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 180.0
) -> Iterator[tuple[str, subprocess.Popen]]:
    """``python -m studio serve`` on a free loopback port over ``data_dir``; yields (url, process).

    The server holds the DuckDB lock while it runs: stop it (``stop(proc)``) before opening the store."""
    port = free_port()
    full_env = {**os.environ, "STUDIO_HOME": str(data_dir), **(env or {})}
    cmd = [sys.executable, "-m", "studio", "serve", "--port", str(port), *args]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=full_env)
    url = f"http://127.0.0.1:{port}/"
    try:
        wait_http(url, timeout=timeout, proc=proc)
        yield url, proc
    finally:
        stop(proc)
