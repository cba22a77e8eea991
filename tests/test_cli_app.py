"""The `studio` CLI and the served app, end to end, on the real default model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.servers import studio_server

pytestmark = pytest.mark.slow


def studio(settings, *args: str, input: str | None = None) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "STUDIO_HOME": str(settings.data_dir),
        "STUDIO_THREADS": os.environ.get("STUDIO_THREADS", "1"),
    }
    return subprocess.run(
        [sys.executable, "-m", "studio", *args],
        capture_output=True,
        text=True,
        env=env,
        input=input,
        timeout=300,
    )


def test_generate_json(settings) -> None:
    r = studio(settings, "generate", "--json", "--max-new-tokens", "24", "What is the capital of France?")
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert "Paris" in out["text"] and out["completion_tokens"] > 0 and out["latency_s"] > 0


def test_generate_streams_text(settings) -> None:
    r = studio(settings, "generate", "--max-new-tokens", "24", "-", input="What is the capital of France?")
    assert r.returncode == 0 and "Paris" in r.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["generate", "   "], "empty or whitespace"),
        (["generate", "--model", "nope", "hi"], "known models: smollm2-135m"),
        (["generate", "--temperature", "-1", "hi"], "temperature"),
        (["run", "--step-max-tokens", "nope=3", "hi"], "unknown step 'nope'"),
        (["run", "--samples", "0", "-s", "sc", "hi"], "samples must be >= 1"),
        (["run", "-s", "sc", "-v", "tot", "hi"], "has no variant 'tot'"),
    ],
)
def test_cli_errors_are_one_clear_line(settings, args: list[str], message: str) -> None:
    r = studio(settings, *args)
    assert r.returncode == 2
    assert message in r.stderr and "Traceback" not in r.stderr


def test_models_add_list_remove(settings) -> None:
    r = studio(
        settings,
        "models",
        "add",
        "ep",
        "--backend",
        "openai",
        "--path",
        "m",
        "--base-url",
        "http://127.0.0.1:9/v1",
    )
    assert r.returncode == 0, r.stderr
    r = studio(settings, "models", "list", "--json")
    names = [m["name"] for m in json.loads(r.stdout)]
    assert names == ["smollm2-135m", "smollm2-135m-gguf", "ep"]
    r = studio(settings, "generate", "--model", "ep", "hi")
    assert r.returncode == 2 and "cannot reach endpoint http://127.0.0.1:9/v1" in r.stderr
    assert studio(settings, "models", "remove", "ep").returncode == 0


def test_serve_and_gradio_client(settings, tmp_path: Path) -> None:
    from gradio_client import Client

    with studio_server(settings.data_dir, tmp_path / "serve.log") as (url, _):
        client = Client(url, verbose=False)
        run = {"blind": False, "max_new_tokens": 24, "temperature": 0, "top_p": 1, "seed": None}
        run |= {"max_questions": 5, "max_branches": 5, "token_budget": None}
        job = client.submit(
            prompt="What is the capital of France?",
            columns=["system1 @ smollm2-135m"],
            **run,
            api_name="/run_arena",
        )
        partials = list(job)
        assert len(partials) > 2, "the answer should arrive in several streamed updates"
        answers = [p for p in job.result() if isinstance(p, str) and "arena-answer" in p]
        assert answers and "Paris" in answers[0]
        with pytest.raises(Exception, match="empty or whitespace"):
            client.predict(prompt="  ", columns=["system1 @ smollm2-135m"], **run, api_name="/run_arena")
    assert "127.0.0.1" in (tmp_path / "serve.log").read_text()
