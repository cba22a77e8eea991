"""The openai backend against a real, independent server: `transformers serve` on 127.0.0.1."""

from __future__ import annotations

import time

import pytest

from studio.backends import GenParams
from studio.backends.openai_backend import OpenAIBackend
from studio.errors import BackendError, InputError
from tests.servers import broken_server, free_port, stop, transformers_serve

Q = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def served(default_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with transformers_serve(default_model_dir, log) as (url, proc):
        yield url, proc, str(default_model_dir)


@pytest.mark.slow
def test_chat_and_stream(served) -> None:
    url, _, model = served
    b = OpenAIBackend(model, base_url=url, model_name="served")
    batch = b.chat([Q, Q], GenParams(max_new_tokens=24))
    assert [("Paris" in c.text) for c in batch] == [True, True]
    assert all(c.prompt_tokens > 0 and c.completion_tokens > 0 and c.latency_s > 0 for c in batch)
    chunks = list(b.stream(Q, GenParams(max_new_tokens=24)))
    assert len(chunks) > 1 and "Paris" in "".join(chunks)


@pytest.mark.slow
def test_server_killed_mid_test_gives_clear_error(default_model_dir, tmp_path) -> None:
    with transformers_serve(default_model_dir, tmp_path / "serve.log") as (url, proc):
        b = OpenAIBackend(str(default_model_dir), base_url=url, timeout=10, max_retries=0)
        assert b.chat([Q], GenParams(max_new_tokens=4))[0].text
        stop(proc)
        with pytest.raises(BackendError, match=r"cannot reach endpoint http://127\.0\.0\.1"):
            b.chat([Q], GenParams(max_new_tokens=4))


def test_unreachable_endpoint_names_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    b = OpenAIBackend("m", base_url=url, timeout=3, max_retries=0)
    t0 = time.monotonic()
    with pytest.raises(BackendError, match="cannot reach endpoint " + url.replace(".", r"\.")):
        b.chat([Q], GenParams(max_new_tokens=4))
    with pytest.raises(BackendError, match="cannot reach"):
        list(b.stream(Q, GenParams(max_new_tokens=4)))
    assert time.monotonic() - t0 < 10


@pytest.mark.parametrize(
    ("mode", "pattern"),
    [
        ("500", "answered HTTP 500"),
        ("garbage", "could not be read|not valid"),
        ("empty", "without any choices"),
    ],
)
def test_broken_servers_give_clear_errors(mode: str, pattern: str) -> None:
    with broken_server(mode) as url:
        b = OpenAIBackend("m", base_url=url, timeout=5, max_retries=0)
        with pytest.raises(BackendError, match=pattern):
            b.chat([Q], GenParams(max_new_tokens=4))


def test_timeout_is_clear() -> None:
    with broken_server("slow") as url:
        b = OpenAIBackend("m", base_url=url, timeout=1, max_retries=0)
        with pytest.raises(BackendError, match="timeout"):
            b.chat([Q], GenParams(max_new_tokens=4))


def test_bad_base_url() -> None:
    with pytest.raises(InputError, match="http"):
        OpenAIBackend("m", base_url="localhost:8000")
