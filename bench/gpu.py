"""The default model on a CUDA GPU, through the studio's own code paths. Prints figures measured in this one run.

    python bench/gpu.py [--home DIR] [--dpo-steps 30] [--grpo-steps 3] [--judge-items 32] [--json OUT]

Run by ``bench/gpu.sh`` (which installs what is missing first). Each figure goes through the same code the studio
runs, on whatever device torch picks (CUDA when there is one; the figures say which):

- **first load**: de-quantizing the wheel's GGUF into the studio's model cache, then loading it;
- **arena**: the default 4-column arena run (``studio.arena.DEFAULT_COLUMNS``: System 1, CoVe, S2A, BSM) on one
  question, after a warm-up run; wall time per run;
- **log-prob judge**: the default judge on the preference set's test pairs, batched (all pairs in one call) vs one
  pair at a time, and the speed-up;
- **DPO job**: a studio DPO job (LoRA) on the preference set's train split, through the job runner (a separate
  process, as the Train tab starts it): wall time, steps and steps/s;
- **GRPO**: a studio GRPO job on the arithmetic task's train split (G = 8 answers per question): wall time, steps
  and seconds per step.
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

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent))
sys.path.insert(0, str(BENCH))

import judges as bench_judges  # noqa: E402  (bench/judges.py: its train() and run_judge())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--home", help="studio home (default: a fresh temporary one)")
    ap.add_argument("--dpo-steps", type=int, default=30)
    ap.add_argument("--grpo-steps", type=int, default=3)
    ap.add_argument("--judge-items", type=int, default=32)
    ap.add_argument("--arena-runs", type=int, default=2)
    ap.add_argument("--json", help="also write the figures here as JSON")
    args = ap.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="bench-gpu-"))
    os.environ["STUDIO_HOME"] = str(home)

    import torch

    from studio.arena import default_columns, stream_arena
    from studio.context import AppContext
    from studio.judges import make_judge
    from studio.judging import prefset
    from studio.settings import Settings

    figures: dict[str, Any] = {"load_average": os.getloadavg()}
    cuda = torch.cuda.is_available()
    figures["device"] = torch.cuda.get_device_name(0) if cuda else "cpu (no CUDA device)"
    figures["torch"] = torch.__version__
    print(f"studio home {home}; device {figures['device']}; torch {torch.__version__}; "
          f"load average {figures['load_average']}", flush=True)  # fmt: skip
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.0f} s] {msg}", file=sys.stderr, flush=True)

    def sync() -> None:
        if cuda:
            torch.cuda.synchronize()

    settings = Settings.load()
    with AppContext(settings) as ctx:
        t0 = time.perf_counter()
        backend = ctx.registry.backend(None)
        sync()
        figures["first_load_s"] = time.perf_counter() - t0
        figures["backend_device"] = str(getattr(backend, "device", "?"))
        log(f"default model loaded in {figures['first_load_s']:.1f} s on {figures['backend_device']}")

        question = "A farmer has 17 sheep. All but 9 run away. How many sheep does the farmer have left?"
        columns = default_columns(backend.model_name)
        times = []
        for i in range(args.arena_runs + 1):  # the first is a warm-up (CUDA kernels, grammar compilation)
            t0 = time.perf_counter()
            errors = [u for u in stream_arena(ctx.store, ctx.registry, question, columns) if u.kind == "done"]
            sync()
            dt = time.perf_counter() - t0
            state = errors[-1].state
            bad = [e for e in state.errors if e]
            if bad:
                raise SystemExit(f"arena run failed: {bad}")
            times.append(dt)
            log(f"arena run {i} ({'warm-up' if i == 0 else 'timed'}): {dt:.2f} s")
        figures["arena_4col_s"] = min(times[1:])
        figures["arena_warmup_s"] = times[0]

        items = prefset.items("test")[: args.judge_items]
        judge = make_judge("logprob")
        bench_judges.run_judge(judge, items[:2], backend)  # warm-up
        batched = bench_judges.run_judge(judge, items, backend, batch=len(items))[1]
        alone = bench_judges.run_judge(judge, items, backend, batch=1)[1]
        figures["judge"] = {"pairs": len(items), "batched_s": batched, "one_at_a_time_s": alone,
                            "speedup": alone / batched}  # fmt: skip
        log(f"log-prob judge, {len(items)} pairs: batched {batched:.2f} s, one at a time {alone:.2f} s")

        r = prefset.import_split(ctx.store, "train")
        log(f"imported {r.rows} train pairs")
        t0 = time.perf_counter()
        dpo_values = {"max_steps": args.dpo_steps, "per_device_train_batch_size": 8, "learning_rate": 2e-4}
        dpo = bench_judges.train(ctx, "dpo", dpo_values, log)
        figures["dpo"] = {"model": dpo, "steps": args.dpo_steps, "wall_s": time.perf_counter() - t0}
        figures["dpo"]["steps_per_s_incl_startup"] = args.dpo_steps / figures["dpo"]["wall_s"]

        t0 = time.perf_counter()
        grpo_values = {
            "task": "arithmetic", "levels": [1], "max_items": 64, "num_generations": 8,
            "per_device_train_batch_size": 8, "max_completion_length": 64, "max_steps": args.grpo_steps,
            "output_name": "bench-grpo",
        }  # fmt: skip
        job = ctx.runner.wait(ctx.runner.start("grpo", grpo_values).id)
        if job.state != "succeeded":
            raise SystemExit(f"grpo job {job.id} ended {job.state}: {job.error}")
        wall = time.perf_counter() - t0
        figures["grpo"] = {"model": job.models[0] if job.models else "", "steps": args.grpo_steps,
                           "wall_s": wall, "s_per_step_incl_startup": wall / args.grpo_steps}  # fmt: skip
        log(f"grpo job {job.id}: {args.grpo_steps} steps in {wall:.0f} s")

    print()
    print(f"| figure ({figures['device']}) | value |")
    print("|---|---|")
    print(f"| first load (de-quantize the GGUF + load) | {figures['first_load_s']:.1f} s |")
    print(
        f"| arena, default 4 columns, one question (best of {args.arena_runs}) | {figures['arena_4col_s']:.2f} s |"
    )
    j = figures["judge"]
    print(f"| log-prob judge, {j['pairs']} pairs: batched / one at a time | {j['batched_s']:.2f} s / "
          f"{j['one_at_a_time_s']:.2f} s ({j['speedup']:.1f}x) |")  # fmt: skip
    d = figures["dpo"]
    print(f"| DPO job, {d['steps']} steps of 8 pairs (process start included) | {d['wall_s']:.0f} s "
          f"({d['steps_per_s_incl_startup']:.2f} steps/s) |")  # fmt: skip
    g = figures["grpo"]
    print(f"| GRPO job, {g['steps']} steps, G=8 (process start included) | {g['wall_s']:.0f} s "
          f"({g['s_per_step_incl_startup']:.1f} s/step) |")  # fmt: skip
    print(f"load average at the end: {os.getloadavg()}")
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=2, default=str))


if __name__ == "__main__":
    main()
