"""Self-improvement on the default model: held-out accuracy of M0, M1, M2 per method. Prints figures measured in
this one run.

    python bench/improve.py [--task arithmetic] [--methods s2_distill irpo grpo] [--iterations 2]
                            [--eval-limit 128] [--threads 2] [--home DIR] [--json OUT] [--set METHOD.KEY=VALUE ...]

Each method runs ``studio improve`` (studio/improve.py) in a fresh studio home: M0 is scored on the task's test
split (which no training reads), then each iteration trains one job from M_t on the train split and scores
M_{t+1} the same way, stopping early when an iteration does not improve. Printed per method and model: accuracy
with its 95% bootstrap CI, tokens per answer, and the wall time of the iteration (training + scoring), with the
load average, because times drift with machine load.

The issue's goal (#16): a gain of at least +10 points over M0 with non-overlapping CIs, at most 20 minutes per
iteration on the 2-core CPU. The per-method settings below (``SETTINGS``) are the ones measured; change them
with ``--set irpo.max_items=64``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

#: per-method settings sized for about 20 minutes per iteration on a 2-core CPU (see the module docstring)
SETTINGS: dict[str, dict[str, Any]] = {
    "s2_distill": {"max_items": 192, "samples": 4, "agreement": 0.75, "max_steps": 32},
    "irpo": {"max_items": 48, "samples": 4, "max_new_tokens": 128, "max_steps": 12},
    "grpo": {"max_items": 64, "levels": [1, 2], "max_steps": 24},
}


def parse_sets(items: list[str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for item in items:
        key, _, value = item.partition("=")
        method, _, field = key.partition(".")
        if not field or not value:
            raise SystemExit(f"--set takes METHOD.KEY=VALUE, not {item!r}")
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError:
            parsed = value
        out.setdefault(method, {})[field] = parsed
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--task", default="arithmetic")
    ap.add_argument("--methods", nargs="+", default=["s2_distill", "irpo", "grpo"])
    ap.add_argument("--iterations", type=int, default=2)
    ap.add_argument("--eval-limit", type=int, default=128, help="test items scored per model (0 = all)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--home", help="studio home (default: a fresh temporary one)")
    ap.add_argument("--json", help="also write the results here")
    ap.add_argument("--set", dest="sets", action="append", default=[], metavar="METHOD.KEY=VALUE")
    args = ap.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="bench-improve-"))
    os.environ["STUDIO_HOME"] = str(home)
    os.environ["STUDIO_THREADS"] = str(args.threads)

    from studio.context import AppContext
    from studio.improve import improve
    from studio.settings import Settings

    settings = Settings.load()
    settings.apply_threads()
    extra = parse_sets(args.sets)
    print(f"studio home {home}; task {args.task}; threads {args.threads}; load average {os.getloadavg()}")
    results = []
    with AppContext(settings) as ctx:
        for method in args.methods:
            values = {**SETTINGS.get(method, {}), **extra.get(method, {})}
            t0 = time.perf_counter()

            def progress(done: int, total: int, msg: str, method: str = method, t0: float = t0) -> None:
                print(f"[{time.perf_counter() - t0:6.0f} s] {method}: {msg}", file=sys.stderr, flush=True)

            r = improve(
                ctx, args.task, method, args.iterations, values=values,
                eval_limit=args.eval_limit or None, progress=progress,
            )  # fmt: skip
            print(f"\n{method} ({json.dumps(values)}): {r.status}{' - ' + r.error if r.error else ''}")
            print(f"{'iter':>4} {'model':40} {'accuracy [95% CI]':>24} {'n':>4} {'tokens':>7} {'wall s':>7}")
            for row in r.rows():
                acc = f"{row['accuracy']:.3f} [{row['lo']:.2f}, {row['hi']:.2f}]"
                print(f"{row['iteration']:>4} {row['model']:40} {acc:>24} {row['n']:>4} {row['tokens']:>7.1f} "
                      f"{row['wall_s']:>7.0f}")  # fmt: skip
            rows = r.rows()
            if len(rows) > 1:
                best = max(rows[1:], key=lambda x: x["accuracy"])
                gain = best["accuracy"] - rows[0]["accuracy"]
                separate = best["lo"] > rows[0]["hi"]
                print(f"best gain {gain * 100:+.1f} points ({best['model']}); CIs "
                      f"{'do not overlap' if separate else 'overlap'}")  # fmt: skip
            results.append({"method": method, "values": values, "status": r.status, "rows": r.rows()})
            print(f"load average {os.getloadavg()}", flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=str))


if __name__ == "__main__":
    main()
