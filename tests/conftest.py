"""Shared fixtures. Tests use the real default model (SmolLM2-135M-Instruct), converted once into a cache
that survives between runs (``.test-cache/``, or ``$STUDIO_TEST_CACHE``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
CACHE = Path(os.environ.get("STUDIO_TEST_CACHE", ROOT / ".test-cache"))


@pytest.fixture(scope="session", autouse=True)
def _torch_threads() -> None:
    """Honour STUDIO_THREADS in tests too: on 2 busy cores, oversubscription can slow torch 20x."""
    n = int(os.environ.get("STUDIO_THREADS", "0") or 0)
    if n:
        import torch

        torch.set_num_threads(n)


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The converted default model dir (safetensors + tokenizer + chat template)."""
    from studio.default_model import ensure_converted

    return ensure_converted(CACHE / "models" / "smollm2-135m")


@pytest.fixture(scope="session")
def backend(default_model_dir: Path):
    """One loaded transformers backend on the default model, shared by the whole session."""
    from studio.backends.transformers_backend import TransformersBackend

    return TransformersBackend(str(default_model_dir), model_name="smollm2-135m")


def with_default_model(data: Path, default_model_dir: Path, **settings: Any):
    """Settings on the fresh data dir ``data`` whose model cache already holds the converted default model."""
    from studio.settings import Settings

    (data / "models").mkdir(parents=True)
    (data / "models" / "smollm2-135m").symlink_to(default_model_dir, target_is_directory=True)
    return Settings.load(env={}, data_dir=data, **settings)


@pytest.fixture()
def settings(tmp_path: Path, default_model_dir: Path):
    """Settings on a fresh data dir whose model cache already holds the converted default model."""
    return with_default_model(tmp_path / "data", default_model_dir)


@pytest.fixture()
def launch(settings) -> Iterator:
    """``launch()`` starts the app in-process on the settings' data dir and returns a gradio_client Client
    (the UI tests); every app started is closed after the test."""
    from gradio_client import Client

    from studio.app import create_app
    from tests.servers import free_port

    demos = []

    def start() -> Client:
        demo = create_app(settings)
        port = free_port()
        demo.launch(prevent_thread_lock=True, server_port=port, server_name="127.0.0.1", quiet=True)
        demos.append(demo)
        return Client(f"http://127.0.0.1:{port}/", verbose=False)

    yield start
    for demo in demos:
        demo.close()
