"""The light CI variant of bench/load.py: 10 concurrent gradio_client annotators x 20 votes while a
generation runs, against a real server on 127.0.0.1. Exactly 200 votes must be stored: none lost, none
duplicated. (Latency targets live in the bench, not here.)"""

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow


def test_concurrent_annotators_lose_and_duplicate_nothing(settings, monkeypatch: pytest.MonkeyPatch) -> None:
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    import load

    monkeypatch.setenv("STUDIO_MAX_NEW_TOKENS", "64")
    result = load.main(["--clients", "10", "--votes", "20", "--data-dir", str(settings.data_dir)])
    assert result["acknowledged"] == result["stored"] == result["distinct"] == 200
    assert result["missing"] == 0
