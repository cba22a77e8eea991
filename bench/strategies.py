"""Strategy benchmark on the default model. Prints figures measured in this one run.

    python bench/strategies.py [--threads N] [--max-new-tokens 96] [--repeats 2] [--json FILE]

1. Per strategy and variant: wall time, model calls, driver rounds, tokens in and out.
2. CoVe factored (k=5 verification questions) and BSM (k=5 branches), batched vs sequential (the driver's
   ``batching=False`` sends every request alone): the wall time of the k independent steps, and of the whole
   run. Target for the independent steps: ratio <= 0.45.
3. The arena: all strategies on one prompt in lockstep (first steps batched across strategies) vs one
   strategy after another.
4. The default arena run (the four default columns, the default model's decoding defaults vs none): the wall
   time and each column's time to its final answer. Goals: System 1's column done in <= 3 s while the others
   run; the whole run in <= 15 s.

Greedy decoding, so the batched and sequential runs plan the same k questions (the plan step runs alone in both).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio import default_model  # noqa: E402
from studio.api import list_strategies, run_many, run_strategy  # noqa: E402
from studio.backends.transformers_backend import TransformersBackend  # noqa: E402
from studio.settings import Settings  # noqa: E402
from studio.strategies import RunResult  # noqa: E402

QUESTION = (
    "Tell me about the Eiffel Tower: where it is, who designed it, when it was built, and how tall it is."
)
# Chosen because, with greedy decoding at 96 tokens per step, the default model plans 5 questions / 5 branches.
COVE_QUESTION = "Describe Paris: its location, population, river, famous landmarks and history."
BSM_QUESTION = "Tell me about the Eiffel Tower: where it is, who designed it, when it was built, how tall it is and what it is made of."
PARALLEL_STEP = {"cove": "execute_verification", "bsm": "solve"}


def span(r: RunResult, name: str) -> float:
    """Wall time from the first of the named steps starting to the last finishing."""
    steps = r.trace.by_name(name)
    return max(s.finished_s for s in steps) - min(s.started_s for s in steps)


def per_strategy(backend: TransformersBackend, params: dict) -> list[dict]:
    rows = []
    print(f"\n1. Per strategy ({QUESTION!r}, max_new_tokens={params['max_new_tokens']} per step)")
    print(f"{'strategy':<22}{'wall s':>8}{'calls':>7}{'rounds':>8}{'tok in':>8}{'tok out':>9}")
    for info in list_strategies():
        for variant in info.variants or (None,):
            r = run_strategy(QUESTION, info.name, variant, backend, params)
            t = r.totals
            label = f"{info.name}/{variant}" if variant else info.name
            print(
                f"{label:<22}{t.latency_s:>8.2f}{t.calls:>7}{t.rounds:>8}{t.prompt_tokens:>8}{t.completion_tokens:>9}"
            )
            rows.append({"strategy": label, **t.to_dict()})
    return rows


def batched_vs_sequential(backend: TransformersBackend, params: dict, repeats: int) -> list[dict]:
    rows = []
    print("\n2. Batched vs sequential (best of", repeats, "each)")
    for strategy, variant, question in (("cove", "factored", COVE_QUESTION), ("bsm", None, BSM_QUESTION)):
        step = PARALLEL_STEP[strategy]
        best: dict[bool, tuple[float, float, int]] = {}
        for _ in range(repeats):
            for batching in (True, False):  # interleaved, so load from other processes hits both alike
                r = run_strategy(question, strategy, variant, backend, params, batching=batching)
                k = len(r.trace.by_name(step))
                stage, whole = span(r, step), r.totals.latency_s
                old = best.get(batching)
                best[batching] = (min(stage, old[0]), min(whole, old[1]), k) if old else (stage, whole, k)
        (sb, wb, kb), (ss, ws, ks) = best[True], best[False]
        label = f"{strategy}/{variant}" if variant else strategy
        print(
            f"{label:<14} k={kb} ({step} x{kb}): batched {sb:.2f} s, sequential {ss:.2f} s, ratio {sb / ss:.2f}"
            f" (target <= 0.45) | whole run: {wb:.2f} s vs {ws:.2f} s, ratio {wb / ws:.2f}"
        )
        if kb != ks:
            print(f"  note: k differs between modes ({kb} vs {ks}); compare with care")
        rows.append(
            {
                "strategy": label,
                "k": kb,
                "stage_batched_s": sb,
                "stage_sequential_s": ss,
                "stage_ratio": sb / ss,
            }
            | {"run_batched_s": wb, "run_sequential_s": ws, "run_ratio": wb / ws}
        )
    return rows


def arena(backend: TransformersBackend, params: dict) -> dict:
    specs = [(i.name, v, backend) for i in list_strategies() for v in (i.variants or (None,))]
    t0 = time.perf_counter()
    run_many(QUESTION, specs, params)
    together = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name, variant, b in specs:
        run_strategy(QUESTION, name, variant, b, params)
    apart = time.perf_counter() - t0
    print(
        f"\n3. Arena, {len(specs)} columns: lockstep {together:.1f} s, one after another {apart:.1f} s, ratio {together / apart:.2f}"
    )
    return {"columns": len(specs), "lockstep_s": together, "one_by_one_s": apart, "ratio": together / apart}


def default_arena(backend: TransformersBackend, repeats: int) -> dict:
    """Section 4: the default arena columns, with the model's decoding defaults and with none (plain
    StrategyParams: 256 tokens per step, no repetition penalty), interleaved; the best of ``repeats`` each."""
    from studio.api import stream_many
    from studio.arena import DEFAULT_COLUMNS
    from studio.methods import Method
    from studio.strategies import StrategyParams

    specs = [(m.strategy, m.variant, backend) for m in map(Method.parse, DEFAULT_COLUMNS)]
    modes = {"model defaults": {}, "no defaults": StrategyParams()}
    best: dict[str, dict] = {}
    for _ in range(repeats):
        for mode, params in modes.items():
            t0, done = time.perf_counter(), {}
            for ev in stream_many(QUESTION, specs, params):
                if ev.kind == "run_finished":
                    done[DEFAULT_COLUMNS[ev.run]] = time.perf_counter() - t0
            wall = time.perf_counter() - t0
            if mode not in best or wall < best[mode]["wall_s"]:
                best[mode] = {"wall_s": wall, "columns_s": done}
    print(f"\n4. Default arena run ({', '.join(DEFAULT_COLUMNS)}), best of {repeats}, load {os.getloadavg()}")
    print(f"   decoding defaults: {backend.decoding_defaults}")
    for mode, f in best.items():
        cols = "  ".join(f"{c} {t:.1f} s" for c, t in f["columns_s"].items())
        print(f"   {mode:<15} whole run {f['wall_s']:5.1f} s | done at: {cols}")
    f = best["model defaults"]
    s1 = f["columns_s"]["system1"]
    print(
        f"   goals: System 1 done <= 3 s: {s1:.1f} s ({'met' if s1 <= 3 else 'MISSED'}); "
        f"whole run <= 15 s: {f['wall_s']:.1f} s ({'met' if f['wall_s'] <= 15 else 'MISSED'}); "
        f"ratio with/without defaults {f['wall_s'] / best['no defaults']['wall_s']:.2f}"
    )
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--max-new-tokens", type=int, default=96, help="per step (default 96)")
    ap.add_argument(
        "--repeats", type=int, default=2, help="batched/sequential pairs per strategy (best kept)"
    )
    ap.add_argument("--sections", default="1234", help="which sections to run, e.g. 4 (default 1234)")
    ap.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    settings = Settings.load(threads=args.threads or None)
    settings.apply_threads()
    model_dir = default_model.ensure_converted(settings.models_dir / default_model.NAME)
    backend = TransformersBackend(str(model_dir), model_name=default_model.NAME)
    backend.decoding_defaults = dict(default_model.DECODING)  # as the model registry sets it
    params = {"max_new_tokens": args.max_new_tokens}
    run_strategy("Hi", "system1", None, backend, {"max_new_tokens": 4})  # warm-up
    figures: dict = {"params": params, "threads": settings.threads}
    if "1" in args.sections:
        figures["per_strategy"] = per_strategy(backend, params)
    if "2" in args.sections:
        figures["batched_vs_sequential"] = batched_vs_sequential(backend, params, args.repeats)
    if "3" in args.sections:
        figures["arena"] = arena(backend, params)
    if "4" in args.sections:
        figures["default_arena"] = default_arena(backend, args.repeats)
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
