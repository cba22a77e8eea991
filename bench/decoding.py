"""Decoding defaults for the default model, chosen by measurement on the shipped eval sets.

    python bench/decoding.py [--limit 6] [--threads N] [--configs base,rp1.1,...] [--json FILE]

For each decoding config, the default arena's four columns (System 1, CoVe factored, S2A, BSM) run greedily on
the first ``--limit`` base questions of each shipped set (every condition of each), batched as the eval harness
does. Printed per config, all measured in this one run:

- the task score per set (cove_lists: list precision (micro); s2a_opinions: contains-answer;
  s2a_distractors: numeric), pooled over the four strategies and per strategy;
- the share of steps cut at their token cap (``finish_reason == "length"``: a runaway loop or a long answer);
- completion tokens per step name (mean and 90th percentile of the steps that ended on their own);
- the wall time (absolute times drift with load: the load average is printed).

The caps in the ``caps`` config are the per-step 90th percentiles measured under the ``rp1.1`` config, rounded
up to a multiple of 16 (printed), so a cap cuts loops, not answers that end on their own. ``chosen`` is the
default model's decoding defaults as shipped (``studio.default_model.DECODING``). The repetition penalty counts
the output only (studio/backends/transformers_backend.py says why, with the A/B that chose it).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio import default_model  # noqa: E402
from studio.backends.transformers_backend import TransformersBackend  # noqa: E402
from studio.eval.data import load_dataset  # noqa: E402
from studio.eval.metrics import score_item  # noqa: E402
from studio.methods import Method  # noqa: E402
from studio.settings import Settings  # noqa: E402
from studio.strategies import DriveJob, StrategyParams, run_jobs  # noqa: E402

SETS = {"cove_lists": "list_precision", "s2a_opinions": "contains", "s2a_distractors": "numeric"}
COLUMNS = ("system1", "cove:factored", "s2a:default", "bsm:generation")
CONFIGS = {
    "base": {},  # today: no penalty, 256 tokens per step
    "rp1.1": {"repetition_penalty": 1.1},
    "rp1.2": {"repetition_penalty": 1.2},
    "ng4": {"no_repeat_ngram_size": 4},
    "rp1.1+ng6": {"repetition_penalty": 1.1, "no_repeat_ngram_size": 6},
}


def run_config(backend, items_by_set, params: StrategyParams, chunk: int) -> dict:
    jobs, meta = [], []
    for set_name, items in items_by_set.items():
        for item in items:
            for col in COLUMNS:
                jobs.append(DriveJob(Method.parse(col).make(), item.question, backend, params))
                meta.append((set_name, item, col))
    t0 = time.perf_counter()
    results = []
    for i in range(0, len(jobs), chunk):
        results += run_jobs(jobs[i : i + chunk])
    wall = time.perf_counter() - t0
    score = defaultdict(lambda: [0.0, 0.0])  # (set, col) -> [num, den]
    steps, lengths = [], defaultdict(list)
    for (set_name, item, col), r in zip(meta, results, strict=True):
        s = score_item(item, r.final_answer)
        key = (set_name, col)
        if SETS[set_name] == "list_precision":
            score[key][0] += s["list_pos"]
            score[key][1] += s["list_pos"] + s["list_neg"]
        else:
            score[key][0] += s[SETS[set_name]]
            score[key][1] += 1
        for st in r.trace.steps:
            steps.append(st.finish_reason)
            if st.finish_reason == "stop":
                lengths[st.name].append(st.completion_tokens)
    pooled = {}
    for set_name in SETS:
        num = sum(score[(set_name, c)][0] for c in COLUMNS)
        den = sum(score[(set_name, c)][1] for c in COLUMNS)
        pooled[set_name] = num / den if den else float("nan")
    per_col = {
        f"{set_name}/{c}": (v[0] / v[1] if v[1] else float("nan"))
        for (set_name, c), v in sorted(score.items())
    }
    cut = sum(1 for f in steps if f == "length") / max(1, len(steps))
    tok = {
        name: {"n": len(v), "mean": statistics.mean(v), "p90": sorted(v)[int(0.9 * (len(v) - 1))]}
        for name, v in sorted(lengths.items())
    }
    return {"pooled": pooled, "per_column": per_col, "cut_share": cut, "tokens": tok, "wall_s": wall}


def caps_from(tokens: dict) -> dict[str, int]:
    return {name: max(32, 16 * math.ceil(t["p90"] / 16)) for name, t in tokens.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=6, help="base questions per set (default 6)")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--chunk", type=int, default=8, help="runs driven together (default 8)")
    ap.add_argument("--configs", default=",".join([*CONFIGS, "caps", "chosen"]))
    ap.add_argument("--json", metavar="FILE")
    args = ap.parse_args()
    settings = Settings.load(threads=args.threads or None)
    settings.apply_threads()
    model_dir = default_model.ensure_converted(settings.models_dir / default_model.NAME)
    backend = TransformersBackend(str(model_dir), model_name=default_model.NAME)
    items_by_set = {s: load_dataset(s, limit=args.limit).items for s in SETS}
    n_items = sum(len(v) for v in items_by_set.values())
    print(f"{n_items} items x {len(COLUMNS)} columns per config; load average {os.getloadavg()}")
    figures: dict = {}
    for name in args.configs.split(","):
        if name == "chosen":
            conf = dict(default_model.DECODING)
        elif name == "caps":
            if "rp1.1" not in figures:
                print("caps: needs the rp1.1 config first")
                continue
            caps = caps_from(figures["rp1.1"]["tokens"])
            print(f"caps (p90 under rp1.1, rounded up to 16): {caps}")
            conf = {"repetition_penalty": 1.1, "step_max_tokens": caps}
        else:
            conf = CONFIGS[name]
        f = run_config(backend, items_by_set, StrategyParams.from_dict(conf), args.chunk)
        f["config"] = conf
        figures[name] = f
        pooled = "  ".join(f"{k} {v:.2f}" for k, v in f["pooled"].items())
        print(
            f"\n[{name}] {conf}\n  scores: {pooled}\n  steps cut at cap: {f['cut_share']:.0%}   "
            f"wall {f['wall_s']:.0f} s   load {os.getloadavg()[0]:.2f}"
        )
        print("  tokens (ended on their own): " + ", ".join(
            f"{k} {t['mean']:.0f}/p90 {t['p90']}" for k, t in f["tokens"].items()
        ))  # fmt: skip
        print("  per column: " + ", ".join(f"{k} {v:.2f}" for k, v in f["per_column"].items()))
        sys.stdout.flush()
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
