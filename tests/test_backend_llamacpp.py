"""The llamacpp backend on the default model's own GGUF (the wheel's Q4_1 file, no de-quantization): a real
llama.cpp server on 127.0.0.1, started and stopped by the backend. One thread, so it stays fast on a busy
machine."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from studio.backends import BACKENDS, GenParams
from studio.backends.base import schema_text
from studio.backends.llamacpp_backend import LlamaCppBackend
from studio.backends.llamacpp_server import LlamaServer
from studio.default_model import default_gguf
from studio.errors import BackendError, InputError
from studio.judges import make_judge
from studio.judges.base import JudgeItem
from studio.models import ModelRegistry, ModelSpec
from studio.settings import Settings

pytestmark = pytest.mark.slow

# llama.cpp's Q4_1 kernels round differently from the de-quantized float weights transformers runs, so greedy
# answers can differ on close calls: "What is the capital of France?" starts "L'Étoile..." here (first token
# logprob -1.85 against -2.01 for "The"). Arithmetic is not a close call.
Q = [{"role": "user", "content": "What is 2+2?"}]


@pytest.fixture(scope="module")
def llama():
    b = BACKENDS.get("llamacpp")("", gguf_file=str(default_gguf()), threads=1, model_name="smollm2-gguf")
    yield b
    b.close()


def test_chat_a_batch_of_four_on_parallel_slots_and_streaming(llama: LlamaCppBackend) -> None:
    done: list[int] = []
    lock = threading.Lock()

    def row_done(i: int, _c) -> None:
        with lock:
            done.append(i)

    questions = [Q, *[[{"role": "user", "content": f"Name a {w}."}] for w in ("colour", "fruit", "city")]]
    batch = llama.chat(questions, GenParams(max_new_tokens=24), on_row_done=row_done)
    assert "4" in batch[0].text and sorted(done) == [0, 1, 2, 3]
    assert all(c.text and c.prompt_tokens > 5 and 0 < c.completion_tokens <= 24 for c in batch)
    assert {c.model for c in batch} == {"smollm2-gguf"}
    chunks = list(llama.stream(Q, GenParams(max_new_tokens=24)))
    assert len(chunks) > 3 and "4" in "".join(chunks)
    # greedy decoding: the streamed answer is the batch's answer
    assert "".join(chunks).strip() == batch[0].text


def test_choice_probs_drive_the_logprob_judge(llama: LlamaCppBackend) -> None:
    item = JudgeItem.pair(
        "What is the capital of France?", "The capital of France is Paris.", "I like turtles."
    )
    [probs] = llama.choice_probs(
        [[{"role": "user", "content": "Answer A or B. Is Paris in France?"}]], ["A", "B"]
    )
    assert set(probs) == {"A", "B"} and sum(probs.values()) == pytest.approx(1.0)
    assert all(0 < p < 1 for p in probs.values())
    verdict = make_judge("logprob", {"variant": "pair"}).judge([item], llama)[0]
    assert verdict.ok and 0 < verdict.prob_a < 1


def test_a_json_schema_step_returns_valid_json(llama: LlamaCppBackend) -> None:
    schema = schema_text({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    [c] = llama.chat([Q], GenParams(max_new_tokens=40, schema=schema))
    assert c.constrained and not c.warnings
    assert isinstance(json.loads(c.text)["city"], str)


def test_count_tokens_is_the_models_own_tokenizer(llama: LlamaCppBackend, default_model_dir: Path) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(default_model_dir)
    assert llama.count_tokens("hello world") == 2
    for text in ("hello world " * 10, "Ünïcödé façade, 12345 + 678 = ?", json.dumps({"a": [1, 2]})):
        assert llama.count_tokens(text) == len(tok(text, add_special_tokens=False)["input_ids"])
    with pytest.raises(NotImplementedError, match="cannot score a given answer"):
        llama.sequence_logprob([Q], ["Paris"])


def test_the_server_stops_on_close_and_frees_its_port() -> None:
    b = LlamaCppBackend(str(default_gguf()), threads=1, parallel=1, ctx_size=512)
    health = b.server.address + "/health"
    with urllib.request.urlopen(health, timeout=5) as r:
        assert r.status == 200
    b.close()
    assert not b.server.alive()
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(health, timeout=5)
    with LlamaServer(default_gguf(), threads=1, parallel=1, ctx_size=256) as s:  # the context manager too
        assert s.alive() and s.base_url.startswith("http://127.0.0.1:") and s.base_url.endswith("/v1")
    assert not s.alive()


def test_bad_gguf_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="GGUF file not found"):
        LlamaCppBackend(str(tmp_path / "missing.gguf"))
    text = tmp_path / "notes.gguf"
    text.write_text("not a model")
    with pytest.raises(InputError, match="is not a GGUF model file"):
        LlamaCppBackend("", gguf_file=str(text))
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF" + bytes(64))  # the magic, then nothing llama.cpp can read
    with pytest.raises(BackendError, match="llama.cpp could not load .*broken.gguf.*GGUF"):
        LlamaServer(broken, threads=1).start()
    with pytest.raises(InputError, match="LoRA adapters run on the transformers backend"):
        LlamaCppBackend(str(default_gguf()), adapter=str(tmp_path))
    registry = ModelRegistry(Settings.load(env={}, data_dir=tmp_path / "data"))
    with pytest.raises(InputError, match="LoRA adapters run on the transformers backend"):
        registry.add(ModelSpec(name="x", backend="llamacpp", gguf_file=str(default_gguf()), adapter="a"))
    with pytest.raises(InputError, match="needs a GGUF file"):
        registry.add(ModelSpec(name="x", backend="llamacpp"))


def _studio(data: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "STUDIO_HOME": str(data), "STUDIO_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "studio", *args], capture_output=True, text=True, env=env, timeout=300
    )


def test_a_gguf_registered_with_models_add_serves_on_llamacpp(tmp_path: Path) -> None:
    data = tmp_path / "data"
    r = _studio(
        data, "models", "add", "smol-gguf", "--backend", "llamacpp", "--gguf-file", str(default_gguf())
    )
    assert r.returncode == 0, r.stderr
    assert f"llamacpp: {default_gguf()}" in r.stdout
    r = _studio(data, "generate", "--model", "smol-gguf", "--json", "--max-new-tokens", "24", Q[0]["content"])
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "4" in out["text"] and out["model"] == "smol-gguf" and out["completion_tokens"] > 0
    bad = tmp_path / "bad.gguf"
    bad.write_text("hello")
    r = _studio(data, "models", "add", "bad", "--backend", "llamacpp", "--gguf-file", str(bad))
    assert r.returncode == 2 and "is not a GGUF model file" in r.stderr and "Traceback" not in r.stderr


def test_stop_with_requests_in_flight_is_instant_and_frees_the_port() -> None:
    """The server runs in a child process: stopping it while it answers a plain and a streamed request returns
    at once (an in-process server held the GIL until the answer ended: minutes), each client gets a clear
    BackendError, and the port is free."""
    b = LlamaCppBackend(str(default_gguf()), threads=1, parallel=2, ctx_size=1024)
    long = [{"role": "user", "content": "Count from 1 to 300, separated by commas."}]
    errors: list[BaseException] = []

    def plain() -> None:
        try:
            b.chat([long], GenParams(max_new_tokens=400))
        except BaseException as e:  # noqa: BLE001 - handed to the test thread
            errors.append(e)

    worker = threading.Thread(target=plain, daemon=True)
    worker.start()
    stream = b.stream(long, GenParams(max_new_tokens=400))
    assert next(stream)  # the streamed answer has begun
    time.sleep(0.5)
    port = int(b.server.address.rsplit(":", 1)[1])
    start = time.monotonic()
    b.close()
    assert time.monotonic() - start < 3
    with pytest.raises(BackendError, match="broke off"):
        for _ in stream:
            pass
    worker.join(10)
    assert not worker.is_alive() and [type(e) for e in errors] == [BackendError]
    assert "closed the connection" in str(errors[0]) or "cannot reach" in str(errors[0])
    assert time.monotonic() - start < 10
    # the port is free again: a new server listens on it (the killed one's connections linger in TIME_WAIT,
    # which llama.cpp's SO_REUSEADDR listener does not mind)
    with LlamaServer(default_gguf(), threads=1, parallel=1, ctx_size=256, port=port) as again:
        assert again.alive() and again.address.endswith(f":{port}")
