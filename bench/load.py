"""Annotators under load: votes through the REST API and through the UI's gradio endpoint, against a real
`studio serve` on 127.0.0.1, while a generation runs (bounded, loopback only).

    python bench/load.py                  # real numbers, both paths (about 3 minutes)
    python bench/load.py --small          # a few seconds: what tests/test_load.py runs
    python bench/load.py --paths rest     # one path; --no-generation: votes alone
    python bench/load.py --compare        # once per server variant (generation priority, torch threads)

One server, one fresh data dir seeded with two-answer comparisons. A generation loops for the whole bench (one
arena column, streamed through the UI's /run_arena). Phases, one after another:

- idle: the generation alone (its baseline tokens/s);
- for each path (rest: POST /api/v1/comparisons/{id}/votes; ui: gradio_client on /vote):
  - saturation: N closed-loop clients vote as fast as they can for a fixed time (votes/s);
  - open loop: N annotators each vote every N/rate seconds (default 50 every 2 s = 25 votes/s); a vote's
    latency runs from its scheduled time, so a server that falls behind cannot hide it: p50, p95, p99;
- idle again (the baseline, once more).

Each vote carries a unique comment on a comparison its annotator has not labelled, so after the server stops
the DuckDB file must hold every acknowledged vote exactly once: lost and duplicated are counted there. Per
phase it also prints the 1-minute load average, the CPU the server and this load generator used, and the
generation's tokens/s: the text its column streamed during the phase, at the tokens per character of its
stored runs. The bench fails (exit 1, or AssertionError from ``main``) when a vote is lost, duplicated or refused,
when the generation raised, or when it produced no tokens during a phase with votes.
"""

from __future__ import annotations

import argparse
import html
import http.client
import json
import os
import re
import resource
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from storage import Store  # noqa: E402
from tests.servers import studio_server  # noqa: E402

SEED_MODEL = "load-seed"  # the seeded comparisons' runs; the generation's runs are the default model's
TARGETS = {"rest_votes_per_s": 300, "rest_p95_ms": 100, "ui_p95_ms": 200}
SIZES = {  # clients, saturation seconds, open-loop seconds, open-loop votes/s, idle seconds, max_new_tokens
    "default": {
        "clients": 50,
        "saturate_s": 15.0,
        "open_s": 20.0,
        "rate": 25.0,
        "idle_s": 10.0,
        "tokens": 128,
    },
    "small": {"clients": 5, "saturate_s": 2.0, "open_s": 3.0, "rate": 10.0, "idle_s": 2.0, "tokens": 48},
}


# -- setup ------------------------------------------------------------------------------------------------------
def seed(data_dir: Path, n: int) -> list[int]:
    """``n`` two-answer comparisons to vote on (bulk verbs: a few seconds even for thousands). The default
    model converted by the tests (``.test-cache``), when there, is linked in rather than converted again."""
    import pyarrow as pa

    cached = ROOT / ".test-cache" / "models" / "smollm2-135m"
    target = data_dir / "models" / "smollm2-135m"
    if cached.is_dir() and not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(cached, target_is_directory=True)

    with Store(data_dir / "studio.duckdb", data_dir=data_dir) as store:
        pids = store.add_prompts([f"load prompt {i}" for i in range(n)], "load")
        runs = pa.table(
            {
                "prompt_id": [p for p in pids for _ in range(2)],
                "model": [SEED_MODEL] * (2 * n),
                "strategy": ["system1", "cot"] * n,
                "answer": [f"answer {s} {i}" for i in range(n) for s in "ab"],
            }
        )
        rids = store.add_runs_bulk(runs)
        return store.add_comparisons_bulk([rids[i : i + 2] for i in range(0, 2 * n, 2)])


def api_kwargs(client: Any, api_name: str, wanted: dict[str, Any]) -> dict[str, Any]:
    """``wanted`` restricted to the endpoint's parameters; a clear stop if it now needs one we do not send."""
    params = client.view_api(return_format="dict", print_info=False)["named_endpoints"][api_name][
        "parameters"
    ]
    names = {p["parameter_name"] for p in params}
    missing = [p["parameter_name"] for p in params if not p.get("parameter_has_default") and p["parameter_name"] not in wanted]  # fmt: skip
    if missing:
        raise SystemExit(f"{api_name} needs {missing}, which bench/load.py does not send: update it")
    return {k: v for k, v in wanted.items() if k in names}


# -- measuring ----------------------------------------------------------------------------------------------------
class Sampler:
    """The 1-minute load average and the server's CPU seconds, every half second, with timestamps."""

    def __init__(self, server_pid: int) -> None:
        self.pid = server_pid
        self.samples: list[tuple[float, float, float]] = []  # (time, load average, server cpu seconds)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _cpu(self) -> float:
        try:
            fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return float("nan")

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), os.getloadavg()[0], self._cpu()))
            self._stop.wait(0.5)

    def window(self, t0: float, t1: float) -> tuple[float, float]:
        """(mean load average, server CPU cores used) over [t0, t1]."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1] or self.samples[-1:]
        load = statistics.mean(s[1] for s in inside)
        cpu = (
            (inside[-1][2] - inside[0][2]) / max(inside[-1][0] - inside[0][0], 1e-9)
            if len(inside) > 1
            else 0.0
        )
        return load, cpu

    def stop(self) -> None:
        self._stop.set()
        self._thread.join()


@dataclass
class Phase:
    name: str
    path: str = ""  # "rest" | "ui" | "" (idle)
    mode: str = ""  # "saturation" | "open" | ""
    t0: float = 0.0
    t1: float = 0.0
    latencies: list[float] = field(default_factory=list)
    acked: list[str] = field(default_factory=list)  # comments of acknowledged votes
    errors: list[str] = field(default_factory=list)
    client_cpu_s: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, comment: str, latency: float, error: str | None) -> None:
        with self.lock:
            if error is None:
                self.acked.append(comment)
                self.latencies.append(latency)
            else:
                self.errors.append(error)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


# -- the generation -------------------------------------------------------------------------------------------------
class Generation:
    """Runs one-column arena generations back to back until stopped; never swallows an error."""

    def __init__(self, url: str, max_new_tokens: int, column: str = "system1 @ smollm2-135m") -> None:
        from gradio_client import Client

        self.client = Client(url, verbose=False)
        run = {"prompt": "", "columns": [column], "blind": False, "max_new_tokens": max_new_tokens,
               "temperature": 0.7, "top_p": 0.95, "seed": 1, "max_questions": 5, "max_branches": 5,
               "token_budget": None}  # fmt: skip
        self.kwargs = api_kwargs(self.client, "/run_arena", run)
        self.runs = 0
        self.error: BaseException | None = None
        self.progress: list[tuple[float, int]] = [(time.time(), 0)]  # (time, characters streamed so far)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True, name="generation")

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        done = 0  # characters of finished runs
        try:
            while not self._stop.is_set():
                prompt = f"Write a long story about a lighthouse keeper (part {self.runs + 1})."
                job = self.client.submit(**(self.kwargs | {"prompt": prompt}), api_name="/run_arena")
                shown = 0
                for update in job:  # the column's text as it streams, about 7 screen updates a second
                    n = live_chars(update)
                    if n > shown:
                        shown = n
                        self.progress.append((time.time(), done + shown))
                job.result()  # raises what the run raised
                done += shown
                self.runs += 1
        except BaseException as e:  # reported by stop(): a bench whose generation died is not a load bench
            self.error = e

    def chars_between(self, t0: float, t1: float) -> int:
        """Characters streamed inside [t0, t1]."""

        def at(t: float) -> int:
            return max((c for when, c in self.progress if when <= t), default=0)

        return at(t1) - at(t0)

    def stop(self) -> None:
        """Let the current run finish (so it is stored), then re-raise anything the loop hit."""
        self._stop.set()
        self._thread.join()
        if self.error is not None:
            raise AssertionError(f"the generation failed during the bench: {self.error!r}") from self.error


def live_chars(update: Any) -> int:
    """The length of the streaming column's text in one /run_arena update (its answer box), 0 if none."""
    for value in update if isinstance(update, list | tuple) else ():
        if isinstance(value, str) and ('class="arena-live"' in value or 'class="arena-answer"' in value):
            return len(html.unescape(re.sub(r"<[^>]+>", "", value)))
    return 0


def tokens_in_window(runs: list[dict[str, Any]], t0: float, t1: float) -> float:
    """Tokens the stored runs produced inside [t0, t1], each run's tokens spread evenly over its duration."""
    total = 0.0
    for r in runs:
        end = r["created_at"].replace(tzinfo=timezone.utc).timestamp()
        start = end - float(r["latency_s"] or 0)
        overlap = max(0.0, min(end, t1) - max(start, t0))
        if end > start:
            total += (r["tokens_out"] or 0) * overlap / (end - start)
    return total


# -- the two paths ------------------------------------------------------------------------------------------------
class RestVoter:
    """One annotator on one keep-alive HTTP connection."""

    def __init__(self, url: str, name: str) -> None:
        u = urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        self.prefix = u.path.rstrip("/") + "/api/v1"
        self.name, self.index = name, 0

    def vote(self, cid: int, choice: str, comment: str) -> str | None:
        body = json.dumps({"choice": choice, "comment": comment, "annotator": self.name})
        try:
            self.conn.request("POST", f"{self.prefix}/comparisons/{cid}/votes", body,
                              {"Content-Type": "application/json"})  # fmt: skip
            r = self.conn.getresponse()
            text = r.read()
        except (OSError, http.client.HTTPException) as e:
            self.conn.close()
            return f"{type(e).__name__}: {e}"
        return None if r.status == 201 else f"{r.status}: {text[:200]!r}"


class UiVoter:
    """One annotator through gradio_client, as a script driving the UI's /vote endpoint would."""

    def __init__(self, client: Any, kwargs: dict[str, Any], name: str) -> None:
        self.client, self.kwargs, self.name, self.index = client, kwargs, name, 0

    def vote(self, cid: int, choice: str, comment: str) -> str | None:
        try:
            self.client.predict(**(self.kwargs | {"comparison_id": cid, "choice": choice, "comment": comment,
                                                  "annotator": self.name}), api_name="/vote")  # fmt: skip
        except Exception as e:
            return f"{type(e).__name__}: {e}"
        return None


VOTE_ARGS = {"comparison_id": 0, "choice": "A", "comment": "", "annotator": ""} | {
    f"rank_{c}": None for c in "abcdef"
}


class GradioHttpVoter:
    """The UI's /vote endpoint over plain HTTP (gradio's documented /call API: POST the inputs, then read the
    result stream), without gradio_client's per-call threads and 50 ms polling: what the endpoint itself costs."""

    def __init__(self, url: str, name: str) -> None:
        u = urlparse(url)
        self.conn = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
        self.prefix = u.path.rstrip("/") + "/gradio_api/call/vote"
        self.name, self.index = name, 0

    def vote(self, cid: int, choice: str, comment: str) -> str | None:
        args = VOTE_ARGS | {
            "comparison_id": cid,
            "choice": choice,
            "comment": comment,
            "annotator": self.name,
        }
        try:
            self.conn.request("POST", self.prefix, json.dumps({"data": list(args.values())}),
                              {"Content-Type": "application/json"})  # fmt: skip
            r = self.conn.getresponse()
            body = r.read()
            if r.status != 200:
                return f"{r.status}: {body[:200]!r}"
            self.conn.request("GET", f"{self.prefix}/{json.loads(body)['event_id']}")
            r = self.conn.getresponse()
            stream = r.read().decode(errors="replace")
        except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
            self.conn.close()
            return f"{type(e).__name__}: {e}"
        return None if "event: complete" in stream else f"no result: {stream[-200:]!r}"


def run_phase(
    phase: Phase, voters: list[Any], cids: list[int], *, seconds: float, period: float | None
) -> None:
    """Closed loop (``period`` None: each voter votes again as soon as it is answered) or open loop (each voter
    votes every ``period`` seconds, staggered evenly), for ``seconds``. Voter ``w``'s ``k``-th vote goes to a
    comparison it has not labelled yet."""
    start = time.perf_counter() + 0.2
    deadline = start + seconds

    def voter(w: int, v: Any) -> None:
        for k in range(len(cids)):
            due = start + (w * (period or 0) / len(voters)) + k * (period or 0)
            if period is not None:
                if due >= deadline:
                    return
                time.sleep(max(0.0, due - time.perf_counter()))
            elif time.perf_counter() >= deadline:
                return
            sent = due if period is not None else time.perf_counter()
            comment = f"{phase.name}/{v.name}/{k}"
            error = v.vote(cids[(w + k) % len(cids)], "AB"[k % 2], comment)
            phase.record(comment, time.perf_counter() - sent, error)

    cpu0 = _self_cpu()
    phase.t0 = time.time() + 0.2
    with ThreadPoolExecutor(len(voters)) as pool:
        for f in [pool.submit(voter, w, v) for w, v in enumerate(voters)]:
            f.result()
    phase.t1 = time.time()
    phase.client_cpu_s = _self_cpu() - cpu0


def _self_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


# -- the bench ---------------------------------------------------------------------------------------------------
PATHS = ("rest", "ui", "ui-http")
# Server variants for --compare: the environment each server gets (the default variant is the shipped setup).
VARIANTS = {
    "shipped": {},
    "generation at normal priority": {"STUDIO_GENERATION_NICE": "0"},
    "one torch thread": {"STUDIO_THREADS": "1"},  # leaves a core to request handling
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="a few seconds per phase (the test's size)")
    ap.add_argument(
        "--paths", default="rest,ui", help=f"comma-separated, of {', '.join(PATHS)} (default rest,ui)"
    )
    ap.add_argument("--clients", type=int, help="annotators per phase (default 50; small 5)")
    ap.add_argument("--rate", type=float, help="open-loop votes/s over all annotators (default 25)")
    ap.add_argument("--saturate-s", type=float, help="seconds of closed-loop voting per path")
    ap.add_argument("--open-s", type=float, help="seconds of open-loop voting per path")
    ap.add_argument("--no-generation", action="store_true", help="no generation during the votes")
    ap.add_argument("--compare", action="store_true",
                    help=f"run everything once per server variant: {', '.join(VARIANTS)}")  # fmt: skip
    ap.add_argument("--data-dir", help="use this (empty) data dir instead of a temporary one")
    ap.add_argument(
        "--generation-column", default="system1 @ smollm2-135m", help="the arena column generated"
    )
    args = ap.parse_args(argv)
    size = SIZES["small" if args.small else "default"] | {
        k: v
        for k, v in {"clients": args.clients, "rate": args.rate, "saturate_s": args.saturate_s,
                     "open_s": args.open_s}.items()
        if v is not None
    }  # fmt: skip
    paths = [p.strip() for p in args.paths.split(",") if p.strip()]
    if not set(paths) <= set(PATHS):
        raise SystemExit(f"--paths takes {', '.join(PATHS)}, not {args.paths!r}")
    generate = not args.no_generation
    variants = VARIANTS if args.compare else {"shipped": {}}
    results = {}
    for name, env in variants.items():
        data = Path(args.data_dir or tempfile.mkdtemp(prefix="studio-load-"))
        if len(variants) > 1:
            data = data / name.replace(" ", "-")
            data.mkdir(parents=True, exist_ok=True)
            print(f"== variant: {name} {env or ''}", flush=True)
        results[name] = run(data, size, paths, generate, env, args.generation_column)
    if len(results) > 1:
        print_comparison(results)
    return results["shipped"]


def run(
    data: Path,
    size: dict[str, Any],
    paths: list[str],
    generate: bool,
    env: dict[str, str],
    column: str = "system1 @ smollm2-135m",
) -> dict[str, Any]:
    """One server: the phases (idle, then saturation and open loop per path, then idle), then the report."""
    # enough comparisons that no annotator labels one twice, even at 1000 votes/s
    n_cids = max(200, int(1000 * size["saturate_s"] / size["clients"]) + 10)
    cids = seed(data, n_cids)
    clients, period = size["clients"], size["clients"] / size["rate"]
    phases: list[Phase] = []
    server_args = [] if generate else ["--no-preload"]
    with studio_server(data, data / "serve.log", *server_args, env=env) as (url, proc):
        sampler = Sampler(proc.pid)
        gen = Generation(url, size["tokens"], column) if generate else None
        if gen:
            gen.start()
            time.sleep(1.0)  # let the first run get going

        def idle(name: str) -> None:
            p = Phase(name)
            p.t0 = time.time()
            time.sleep(size["idle_s"])
            p.t1 = time.time()
            phases.append(p)

        try:
            idle("idle")
            for path in paths:
                voters = _voters(path, url, clients, warmup=cids[-1])
                for mode, seconds, per in (
                    ("saturation", size["saturate_s"], None),
                    ("open", size["open_s"], period),
                ):
                    phase = Phase(f"{path}-{mode}", path, mode)
                    for v in voters:
                        v.name = f"{path}-{mode}-{v.index}"
                    run_phase(phase, voters, cids, seconds=seconds, period=per)
                    phases.append(phase)
            idle("idle-after")
        finally:
            if gen:
                gen.stop()  # raises if the generation failed at any point
            sampler.stop()
    return report(data, phases, sampler, size, gen)


def _voters(path: str, url: str, n: int, warmup: int) -> list[Any]:
    if path == "rest":
        voters: list[Any] = [RestVoter(url, "") for _ in range(n)]
    elif path == "ui-http":
        voters = [GradioHttpVoter(url, "") for _ in range(n)]
    else:
        from gradio_client import Client

        with ThreadPoolExecutor(min(n, 16)) as pool:
            made = list(pool.map(lambda _: Client(url, verbose=False), range(n)))
        kwargs = api_kwargs(made[0], "/vote", VOTE_ARGS)
        voters = [UiVoter(c, kwargs, "") for c in made]
    for i, v in enumerate(voters):
        v.index, v.name = i, f"warmup-{i}"
    if path == "ui":  # a browser's session exists from its page load on; gradio makes it on the first event
        with ThreadPoolExecutor(min(n, 16)) as pool:
            list(pool.map(lambda v: v.vote(warmup, "A", f"warmup/{v.index}"), voters))
    return voters


def report(
    data: Path, phases: list[Phase], sampler: Sampler, size: dict[str, Any], gen: Generation | None
) -> dict[str, Any]:
    generate = gen is not None
    with Store(data / "studio.duckdb") as store:
        stored = Counter(v["comment"] for v in store.list_votes(limit=None))
        runs = [r for r in store.list_runs(limit=None) if r["model"] != SEED_MODEL] if generate else []
    # tokens per streamed character, from the stored runs (all finished: stop() waited for the last one)
    chars = gen.progress[-1][1] if gen else 0
    per_char = sum(r["tokens_out"] or 0 for r in runs) / chars if chars else None
    result: dict[str, Any] = {"size": size, "phases": {}}
    idle_rates = []
    for p in phases:
        load, server_cpu = sampler.window(p.t0, p.t1)
        seconds = max(p.t1 - p.t0, 1e-9)
        if gen is None:
            tok_s = None
        elif per_char is not None:  # what streamed inside the phase
            tok_s = gen.chars_between(p.t0, p.t1) * per_char / seconds
        else:  # the column's markup was not recognised: spread each stored run's tokens over its duration
            tok_s = tokens_in_window(runs, p.t0, p.t1) / seconds
        row: dict[str, Any] = {
            "seconds": seconds,
            "load_avg": load,
            "server_cpu": server_cpu,
            "tokens_per_s": tok_s,
        }
        if p.path:
            row["path"] = p.path
            mine = {c for c in stored if c.startswith(p.name + "/")}
            acked = set(p.acked)
            row |= {
                "votes": len(p.acked),
                "votes_per_s": len(p.acked) / seconds,
                "p50_ms": 1000 * percentile(p.latencies, 50),
                "p95_ms": 1000 * percentile(p.latencies, 95),
                "p99_ms": 1000 * percentile(p.latencies, 99),
                "errors": len(p.errors),
                "first_error": p.errors[0] if p.errors else None,
                "lost": len(acked - mine),
                "duplicated": sum(stored[c] - 1 for c in mine) + (len(p.acked) - len(acked)),
                "stored_unacknowledged": len(mine - acked),
                "client_cpu": p.client_cpu_s / seconds,
            }
        elif tok_s is not None:
            idle_rates.append(tok_s)
        result["phases"][p.name] = row
    base = statistics.mean(idle_rates) if idle_rates else None
    result["idle_tokens_per_s"] = base
    for row in result["phases"].values():
        if base and row["tokens_per_s"] is not None and "votes" in row:
            row["generation_slowdown"] = base / row["tokens_per_s"] if row["tokens_per_s"] else float("inf")
    print_report(result, generate)
    check(result, generate)
    return result


def print_report(result: dict[str, Any], generate: bool) -> None:
    s = result["size"]
    print(f"load bench: {s['clients']} annotators; saturation {s['saturate_s']:.0f} s closed loop, open loop "
          f"{s['rate']:g} votes/s for {s['open_s']:.0f} s; {os.cpu_count()} CPUs; "
          f"{'a generation running throughout' if generate else 'no generation'}")  # fmt: skip
    head = (
        f"{'phase':<16}{'votes':>6}{'votes/s':>9}{'p50 ms':>8}{'p95 ms':>8}{'p99 ms':>8}{'err':>5}{'lost':>5}"
    )
    head += f"{'dup':>5}{'load':>6}{'srv cpu':>8}{'cli cpu':>8}{'gen tok/s':>10}{'slowdown':>9}"
    print(head)
    for name, r in result["phases"].items():
        votes = (f"{r['votes']:>6}{r['votes_per_s']:>9.1f}{r['p50_ms']:>8.0f}{r['p95_ms']:>8.0f}{r['p99_ms']:>8.0f}"
                 f"{r['errors']:>5}{r['lost']:>5}{r['duplicated']:>5}") if "votes" in r else " " * 54  # fmt: skip
        gen = f"{r['tokens_per_s']:>10.1f}" if r["tokens_per_s"] is not None else f"{'-':>10}"
        slow = f"{r['generation_slowdown']:>8.2f}x" if r.get("generation_slowdown") else f"{'-':>9}"
        cli = f"{r['client_cpu']:>8.2f}" if "client_cpu" in r else f"{'':>8}"
        print(f"{name:<16}{votes}{r['load_avg']:>6.1f}{r['server_cpu']:>8.2f}{cli}{gen}{slow}")
    ph = result["phases"]
    lines = []
    if "rest-saturation" in ph:
        lines.append(
            (
                "REST saturation",
                ph["rest-saturation"]["votes_per_s"],
                ">=",
                TARGETS["rest_votes_per_s"],
                "votes/s",
            )
        )
    if "rest-open" in ph:
        lines.append(
            ("REST p95 at the open-loop rate", ph["rest-open"]["p95_ms"], "<=", TARGETS["rest_p95_ms"], "ms")
        )
    if "ui-http-open" in ph:
        lines.append(("UI endpoint over plain HTTP, p95 (reference)", ph["ui-http-open"]["p95_ms"], "<=",
                      TARGETS["ui_p95_ms"], "ms"))  # fmt: skip
    if "ui-open" in ph:
        lines.append(
            ("UI p95 at the open-loop rate", ph["ui-open"]["p95_ms"], "<=", TARGETS["ui_p95_ms"], "ms")
        )
    for what, got, op, target, unit in lines:
        met = got >= target if op == ">=" else got <= target
        print(f"target {what}: {got:.0f} {unit} ({op} {target}): {'met' if met else 'MISSED'}")
    print(
        "(load: mean 1-minute load average; srv/cli cpu: cores used by the server / by this load generator)"
    )


def print_comparison(results: dict[str, dict[str, Any]]) -> None:
    """The open-loop latencies and the generation's speed, side by side, per server variant."""
    print("== variants side by side (open loop: p50 / p95 ms; generation tok/s idle -> under the open loop)")
    for name, result in results.items():
        cells = []
        for phase, r in result["phases"].items():
            if phase.endswith("-open"):
                cells.append(
                    f"{phase[:-5]} {r['p50_ms']:.0f}/{r['p95_ms']:.0f} ms, gen {r['tokens_per_s'] or 0:.1f} tok/s"
                )
        print(f"{name:<32} idle gen {result['idle_tokens_per_s'] or 0:.1f} tok/s; " + "; ".join(cells))


def check(result: dict[str, Any], generate: bool) -> None:
    """Integrity, not speed: every acknowledged vote stored once, none refused, and the generation kept going."""
    for name, r in result["phases"].items():
        if "votes" not in r:
            continue
        assert r["votes"] > 0, f"{name}: no vote was acknowledged"
        assert r["errors"] == 0, f"{name}: {r['errors']} votes failed, first: {r['first_error']}"
        assert r["lost"] == 0 and r["duplicated"] == 0, (
            f"{name}: lost {r['lost']}, duplicated {r['duplicated']}"
        )
    if generate:  # per path: a few-second phase may fall between two runs, a whole path's votes may not
        for path in {r["path"] for r in result["phases"].values() if "votes" in r}:
            mine = [r for r in result["phases"].values() if r.get("path") == path]
            made = sum(r["tokens_per_s"] * r["seconds"] for r in mine)
            assert made > 0, f"the generation produced no tokens while the {path} votes ran"


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e}", file=sys.stderr)
        sys.exit(1)
