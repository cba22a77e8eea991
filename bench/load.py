"""Concurrent annotators against a real `studio serve` on 127.0.0.1 (bounded, loopback only).

    python bench/load.py [--clients 50] [--votes 100] [--no-generation]

Seeds a fresh data dir with comparisons, starts the studio, starts one long generation, and has N
gradio_client annotators each cast M votes on stored comparisons while it runs. Then it stops the server and
counts the votes in the DuckDB file: exactly N*M must be there, none lost, none duplicated. Prints p50/p95
vote latency (target p95 <= 200 ms). CI runs a light variant (10 x 20) in tests/test_load.py.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage import Store  # noqa: E402
from tests.servers import studio_server  # noqa: E402


def seed(data_dir: Path, n: int) -> list[int]:
    """``n`` two-run comparisons to vote on."""
    with Store(data_dir / "studio.duckdb", data_dir=data_dir) as store:
        ids = []
        for i in range(n):
            pid = store.add_prompt(f"load prompt {i}", "load")
            a = store.add_run(pid, "m", "system1", f"answer a {i}")
            b = store.add_run(pid, "m", "cot", f"answer b {i}")
            ids.append(store.add_comparison([a, b]))
        return ids


def annotator(url: str, who: int, votes: int, cids: list[int], latencies: list[float]) -> list[str]:
    from gradio_client import Client

    client = Client(url, verbose=False)
    acked = []
    for k in range(votes):
        comment = f"c{who}-v{k}"  # unique per vote: duplicates and losses are countable
        t0 = time.perf_counter()
        client.predict(cids[(who * votes + k) % len(cids)], "AB"[k % 2], comment, f"annotator-{who}",
                       *[None] * 6, api_name="/vote")  # fmt: skip
        latencies.append(time.perf_counter() - t0)
        acked.append(comment)
    return acked


def generate_while(url: str, stop_flag: threading.Event) -> None:
    from gradio_client import Client

    client = Client(url, verbose=False)
    run = {"blind": False, "max_new_tokens": 512, "temperature": 0.7, "top_p": 0.9, "seed": 1}
    run |= {"max_questions": 5, "max_branches": 5, "token_budget": None}
    while not stop_flag.is_set():
        try:
            client.predict(prompt="Write a long story about a lighthouse keeper.",
                           columns=["system1 @ smollm2-135m"], **run, api_name="/run_arena")  # fmt: skip
        except Exception:  # the server stops under it at the end of the bench
            return


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--clients", type=int, default=50)
    ap.add_argument("--votes", type=int, default=100)
    ap.add_argument("--no-generation", action="store_true", help="do not run a generation during the votes")
    ap.add_argument("--data-dir", help="reuse this (empty) data dir instead of a temporary one")
    args = ap.parse_args(argv)

    data = Path(args.data_dir or tempfile.mkdtemp(prefix="studio-load-"))
    cids = seed(data, 200)
    latencies: list[float] = []
    stop_gen = threading.Event()
    preload = ["--no-preload"] if args.no_generation else []
    with studio_server(data, data / "serve.log", *preload) as (url, _):
        if not args.no_generation:
            threading.Thread(target=generate_while, args=(url, stop_gen), daemon=True).start()
            time.sleep(2)  # let the generation get going
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            futures = [
                pool.submit(annotator, url, w, args.votes, cids, latencies) for w in range(args.clients)
            ]
            acked = [c for f in futures for c in f.result()]
        wall = time.perf_counter() - t0
        stop_gen.set()
    with Store(data / "studio.duckdb") as store:
        comments = [v["comment"] for v in store.list_votes(limit=None)]
    expected = args.clients * args.votes
    result = {
        "expected": expected,
        "acknowledged": len(acked),
        "stored": len(comments),
        "distinct": len(set(comments)),
        "missing": len(set(acked) - set(comments)),
        "p50_ms": 1000 * statistics.median(latencies),
        "p95_ms": 1000 * statistics.quantiles(latencies, n=20)[18],
        "votes_per_s": expected / wall,
    }
    print(f"{args.clients} clients x {args.votes} votes"
          f"{'' if args.no_generation else ' while a generation runs'}: "
          f"stored {result['stored']}/{expected} (distinct {result['distinct']}, missing {result['missing']}); "
          f"p50 {result['p50_ms']:.0f} ms, p95 {result['p95_ms']:.0f} ms (target p95 <= 200 ms); "
          f"{result['votes_per_s']:.0f} votes/s")  # fmt: skip
    return result


if __name__ == "__main__":
    r = main()
    sys.exit(0 if r["stored"] == r["distinct"] == r["expected"] and not r["missing"] else 1)
