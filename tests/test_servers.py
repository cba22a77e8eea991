"""The test servers' port handling: a child server whose port was taken is started again on another port, and
a port that answers from another process is not mistaken for ours."""

from __future__ import annotations

import os
import sys
from http.server import HTTPServer, SimpleHTTPRequestHandler

import pytest

from tests import servers


def test_a_taken_port_is_retried_on_another(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    squatter = HTTPServer(("127.0.0.1", 0), SimpleHTTPRequestHandler)  # listening, never serving
    taken = squatter.server_address[1]
    ports = iter([taken])
    real_free_port = servers.free_port
    monkeypatch.setattr(servers, "free_port", lambda: next(ports, None) or real_free_port())
    log = tmp_path / "http.log"
    try:

        def command(port: int) -> list[str]:
            return [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)]

        port, proc = servers.launch(command, log, env=dict(os.environ), timeout=30)
        try:
            assert port != taken and servers.serves(proc, port) and not servers.serves(proc, taken)
        finally:
            servers.stop(proc)
    finally:
        squatter.server_close()
    text = log.read_text()
    assert f"attempt 1: port {taken}" in text and "Address already in use" in text
    assert f"attempt 2: port {port}" in text


def test_closed_port_refuses_at_once() -> None:
    import socket

    with servers.closed_port() as port, pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5)
