"""bench/load.py's small size against a real `studio serve` on 127.0.0.1: annotators vote through the REST API
and through the UI's gradio endpoint while a generation runs. Every acknowledged vote must be in the DuckDB file
exactly once, and the generation must have produced tokens during the votes (the bench asserts both; so do
these tests). Latency targets live in the bench, not here: this machine is shared."""

import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
import load  # noqa: E402


def test_votes_on_both_paths_land_exactly_once_while_the_generation_produces_tokens(settings) -> None:
    result = load.main(["--small", "--data-dir", str(settings.data_dir)])
    phases = result["phases"]
    assert set(phases) == {"idle", "rest-saturation", "rest-open", "ui-saturation", "ui-open", "idle-after"}
    for name in ("rest-saturation", "rest-open", "ui-saturation", "ui-open"):
        p = phases[name]
        assert p["votes"] > 0 and p["errors"] == 0, (name, p)
        assert p["lost"] == p["duplicated"] == p["stored_unacknowledged"] == 0, (name, p)
    for path in (
        "rest",
        "ui",
    ):  # tokens streamed while each path's votes ran (a 2 s phase may fall between runs)
        made = sum(phases[f"{path}-{mode}"]["tokens_per_s"] * phases[f"{path}-{mode}"]["seconds"]
                   for mode in ("saturation", "open"))  # fmt: skip
        assert made > 0, f"no generated tokens during the {path} votes"
    # the open loop keeps to its schedule: 5 annotators at 10 votes/s for 3 s
    assert phases["rest-open"]["votes"] == 30 and phases["ui-open"]["votes"] == 30
    assert result["idle_tokens_per_s"] > 0


def test_the_bench_fails_when_the_generation_fails(settings) -> None:
    """The generation names a model that does not exist: its first run fails, and the bench must say so rather
    than report vote figures measured without the load it claims."""
    with pytest.raises(AssertionError, match="the generation failed"):
        load.main(["--small", "--paths", "rest", "--data-dir", str(settings.data_dir),
                   "--generation-column", "system1 @ no-such-model"])  # fmt: skip


def _nice(tid: int) -> int:
    return int(Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_a_generation_thread_and_the_threads_it_starts_yield_the_cpu() -> None:
    """studio.arena runs each generation in a thread at nice ``generation_nice``; Linux nice is per thread, so
    the backend's thread and torch's OpenMP workers started from it inherit it. The request threads do not."""
    import threading

    import torch

    from studio.arena import lower_priority
    from studio.settings import Settings

    seen: dict[str, int] = {}

    def child() -> None:
        a = torch.ones(64, 64)
        (a @ a).sum()  # starts this thread's OpenMP team, if torch uses more than one thread
        seen["child"] = _nice(threading.get_native_id())

    def worker() -> None:
        lower_priority(Settings.load(env={}).generation_nice)
        seen["worker"] = _nice(threading.get_native_id())
        t = threading.Thread(target=child)
        t.start()
        t.join()

    base = _nice(threading.get_native_id())  # 0, unless the tests themselves run niced
    t = threading.Thread(target=worker)
    t.start()
    t.join()
    assert seen == {"worker": max(base, 10), "child": max(base, 10)}
    assert _nice(threading.get_native_id()) == base  # this (a request's) thread is untouched
    with pytest.raises(Exception, match="generation_nice"):
        Settings.load(env={"STUDIO_GENERATION_NICE": "20"})
