"""Training benchmark: a studio DPO job against a plain TRL script with the same config. Prints figures measured
in this one run.

    python bench/training.py [--steps 20] [--pairs 64] [--threads 1] [--rounds 2]

Both train DPO with LoRA on the default model (SmolLM2-135M, fp32, CPU), on the same pairs (the studio job's
store snapshot, ``train.parquet``) with the same TRL and LoRA settings, each in a fresh process. The two alternate
(studio, plain, studio, plain...) and the best round of each counts, because the machine is shared.

- **steps/s**: steady state, 1 / the median time per step from the log timestamps (start-up and the first
  step's warm-up excluded, robust to a busy spell), and TRL's own ``train_steps_per_second`` (which includes
  the first step). The target is a
  studio / plain ratio >= 0.95: the studio adds only a metrics callback and a status write per second.
- **peak RSS** of each training process (``ru_maxrss``).

Reference figures: see ``studio/training/README.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio import default_model  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
LORA = {
    "r": 16,
    "lora_alpha": 32,
    "lora_dropout": 0.05,
    "target_modules": ["q_proj", "k_proj", "v_proj", "o_proj"],
}

# The plain TRL baseline: no studio import, only what a user would write from TRL's docs.
PLAIN = r"""
import json, resource, sys, time
import pyarrow.parquet as pq, torch
from datasets import Dataset
from peft import LoraConfig
from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
from trl import DPOConfig, DPOTrainer

spec = json.loads(sys.argv[1])
torch.set_num_threads(spec["threads"])
stamps = []
class Stamp(TrainerCallback):
    def on_log(self, args, state, control, logs=None, **kw):
        if logs and "loss" in logs:
            stamps.append((state.global_step, time.time()))
tok = AutoTokenizer.from_pretrained(spec["model"])
model = AutoModelForCausalLM.from_pretrained(spec["model"], dtype=torch.float32)
trainer = DPOTrainer(
    model=model, args=DPOConfig(**spec["args"]), train_dataset=Dataset(pq.read_table(spec["data"])),
    processing_class=tok, peft_config=LoraConfig(task_type="CAUSAL_LM", **spec["lora"]), callbacks=[Stamp()],
)
out = trainer.train()
trainer.save_model(spec["args"]["output_dir"] + "/adapter")
print("RESULT " + json.dumps({"stamps": stamps, "trl_steps_per_second": out.metrics["train_steps_per_second"],
                              "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def seed(store, n_pairs: int) -> None:
    """``n_pairs`` human pairs of varied length over n_pairs / 4 prompts."""
    for i in range(max(1, n_pairs // 4)):
        pid = store.add_prompt(f"Question {i}: explain topic number {i} in a few words.", "bench")
        answers = [
            f"Answer {j} to question {i}: " + "details " * (3 + (i * 7 + j * 5) % 17) for j in range(5)
        ]
        runs = [store.add_run(pid, "smollm2-135m", f"s{j}", a) for j, a in enumerate(answers)]
        store.add_ranking(store.add_comparison(runs[:3]), [1, 2, 3], "bench")  # 3 pairs
        store.add_vote(store.add_comparison([runs[3], runs[4]]), "A", "bench")  # 1 pair


def steady_rate(stamps: list[tuple[int, float]]) -> float:
    """Steps per second from the median step time after the first step (robust to a busy spell)."""
    times = sorted((t1 - t0) / (s1 - s0) for (s0, t0), (s1, t1) in zip(stamps[1:], stamps[2:], strict=False))
    return 1 / statistics.median(times)


def studio_run(settings, values: dict) -> dict:
    from studio.context import AppContext
    from studio.training import RunDir

    with AppContext(settings) as ctx:  # the script's one context: store, registry and job runner
        runner = ctx.runner
        job = runner.wait(runner.start("dpo", values).id, timeout=3600, poll=2.0)  # as `studio train --wait`
    if job.state != "succeeded":
        raise SystemExit(f"studio job failed: {job.error}")
    run = RunDir(job.run_dir)
    stamps = [(r["step"], r["time"]) for r in run.read_metrics()[0] if "loss" in r and "train_loss" not in r]
    result = run.result()
    return {
        "steps_per_second": steady_rate(stamps),
        "trl_steps_per_second": result["metrics"]["train_steps_per_second"],
        "peak_rss_mb": result["peak_rss_mb"],
        "data": str(run.path / "train.parquet"),
    }


def plain_args(out: Path, values: dict) -> dict:
    """The DPOConfig a TRL user would write for the studio job's settings."""
    return {
        "output_dir": str(out), "learning_rate": 5e-5, "max_steps": values["max_steps"],
        "per_device_train_batch_size": 2, "gradient_accumulation_steps": 1, "logging_steps": 1,
        "save_strategy": "steps", "save_steps": 10, "save_total_limit": 2, "gradient_checkpointing": False,
        "seed": 0, "bf16": False, "use_cpu": True, "report_to": [], "disable_tqdm": True,
        "dataloader_num_workers": 0, "beta": 0.1, "loss_type": ["sigmoid"], "max_length": 256,
    }  # fmt: skip


def plain_run(model: Path, data: str, out: Path, values: dict, threads: int) -> dict:
    spec = {
        "model": str(model),
        "data": data,
        "threads": threads,
        "lora": LORA,
        "args": plain_args(out, values),
    }
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run(
        [sys.executable, "-c", PLAIN, json.dumps(spec)], capture_output=True, text=True, env=env, check=False
    )
    line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
    if line is None:
        raise SystemExit(f"plain TRL run failed:\n{proc.stderr[-3000:]}")
    res = json.loads(line[len("RESULT ") :])
    return {"steps_per_second": steady_rate(res["stamps"]), **res}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--pairs", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()

    from storage import Store
    from studio.settings import Settings

    work = Path(tempfile.mkdtemp(prefix="bench-training-"))
    try:
        settings = Settings.load(env={}, data_dir=work / "data", threads=args.threads)
        model = settings.models_dir / default_model.NAME
        cached = ROOT / ".test-cache" / "models" / default_model.NAME
        model.parent.mkdir(parents=True)
        if default_model.is_converted(cached):
            model.symlink_to(cached.resolve(), target_is_directory=True)
        default_model.ensure_converted(model)
        with Store(settings.db_path, data_dir=settings.data_dir) as store:
            seed(store, args.pairs)
        values = {"max_steps": args.steps}
        plain, studio = [], []
        for i in range(args.rounds):  # alternate, so that a busy spell of the machine hits both
            t = time.perf_counter()
            studio.append(studio_run(settings, values))
            print(
                f"round {i + 1} studio: {studio[-1]['steps_per_second']:.3f} steps/s ({time.perf_counter() - t:.0f} s)"
            )
            t = time.perf_counter()
            plain.append(plain_run(model, studio[0]["data"], work / f"plain{i}", values, args.threads))
            print(
                f"round {i + 1} plain:  {plain[-1]['steps_per_second']:.3f} steps/s ({time.perf_counter() - t:.0f} s)"
            )
        report(plain, studio, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def report(plain: list[dict], studio: list[dict], args: argparse.Namespace) -> None:
    best_p = max(plain, key=lambda r: r["steps_per_second"])
    best_s = max(studio, key=lambda r: r["steps_per_second"])
    ratio = best_s["steps_per_second"] / best_p["steps_per_second"]
    trl_ratio = best_s["trl_steps_per_second"] / best_p["trl_steps_per_second"]
    print(
        f"\nDPO + LoRA r=16, SmolLM2-135M fp32, {args.steps} steps, batch 2, max_length 256, {args.threads} thread(s)"
    )
    print(f"{'':<8}{'steps/s (steady)':>18}{'steps/s (TRL)':>15}{'peak RSS MB':>13}")
    for name, r in (("plain", best_p), ("studio", best_s)):
        print(
            f"{name:<8}{r['steps_per_second']:>18.3f}{r['trl_steps_per_second']:>15.3f}{r['peak_rss_mb']:>13.0f}"
        )
    verdict = "meets" if ratio >= 0.95 else "misses"
    print(
        f"ratio studio/plain: {ratio:.3f} steady, {trl_ratio:.3f} by TRL's figure ({verdict} the 0.95 target)"
    )


if __name__ == "__main__":
    main()
