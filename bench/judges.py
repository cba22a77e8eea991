"""Every judge on the default model, scored on the shipped preference set's test split. Prints figures measured
in this one run.

    python bench/judges.py [--threads 1] [--gen-items 24] [--max-new-tokens 96] [--only NAME ...]
                           [--home DIR] [--json OUT] [--speed]

The set is ``studio/eval/datasets/prefs`` (written for the studio, with known preferred answers; 145 train /
96 test pairs; the chosen answer shown first in half of the pairs, seeded). The trained judges are trained on
the train split through the studio's own jobs (import -> Train -> registered model), in a fresh studio home, and
scored only on the test split, which training never saw.

For each judge: agreement with the known preference on the test split with ties counted as disagreement (S1)
and without ties (S2: pairs the judge called a tie are left out), with a 95% bootstrap CI over items; Cohen's
kappa (S2 pairs); the swap-flip rate (verdicts whose two orders picked differently; a one-order judge has none);
the failure rate (verdicts that could not be read); and the number of items. Judges:

- ``logprob``, each variant (``pmi``, the default; ``pair``; ``pointwise``) at tie bands 0, 0.05 and 0.1 (one
  run per variant: the band only thresholds P(A better));
- ``pairwise``, ``additive`` (its 0-5 scores compared) and ``single`` (MT-Bench 1-10 ratings compared), each
  free and structured (``--gen-items`` items, as many from each category: generating judges are slow on a CPU);
- ``reward_model``: a reward model trained on the train split (``reward`` job);
- ``dpo_implicit``: a DPO model trained on the train split, against its parent;
- ``self_taught``: the MT-Bench pairwise judge run by a judge model the Self-Taught Evaluator job trained from the
  default model on the train split's prompts (no labels used), beside the same judge on its parent (v0 -> v1).

``--speed`` adds the old batching figures (the log-prob judge batched vs one item at a time).
Reference figures: docs/judges.md (with the load average of the run that produced them).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studio.judges import JudgeItem, Verdict, make_judge  # noqa: E402
from studio.judging import prefset  # noqa: E402
from studio.metrics.agreement import cohen_kappa  # noqa: E402
from studio.metrics.bias import swap_flip_rate  # noqa: E402
from studio.metrics.bootstrap import bootstrap_ci  # noqa: E402
from studio.metrics.report import winner_from_ratings  # noqa: E402

TIE_BANDS = (0.0, 0.05, 0.1)
#: trained judges' job settings: small enough for a CPU, the same for every run of the bench
RM_JOB = {"max_steps": -1, "num_train_epochs": 3, "per_device_train_batch_size": 8, "eval_fraction": 0.0,
          "learning_rate": 3e-4, "max_length": 256, "save_steps": 1000}  # fmt: skip
DPO_JOB = {"max_steps": -1, "num_train_epochs": 2, "per_device_train_batch_size": 4, "learning_rate": 2e-4,
           "beta": 0.1, "max_length": 256, "save_steps": 1000}  # fmt: skip
#: balance_orders off: on the default model every kept judgement is in order AB (see docs/judges.md)
SELF_TAUGHT_JOB = {"max_prompts": 24, "samples": 2, "balance_orders": False, "max_new_tokens": 96, "judge_max_new_tokens": 128,
                   "max_steps": -1, "num_train_epochs": 2, "save_steps": 1000}  # fmt: skip


#: each test pair's category, by id
CATEGORY = {row["id"]: row["category"] for row in prefset.load("test")}


def truth(item: JudgeItem) -> str:
    """The known preferred answer's label: the key is (id, chosen position)."""
    return "A" if item.key[1] == 0 else "B"


def pair_winners(verdicts: Sequence[Verdict]) -> list[str | None]:
    """Each verdict's pairwise outcome ('inconsistent' counts as a tie); None for a failed verdict."""
    return [v.outcome if v.ok else None for v in verdicts]


def score(name: str, items: Sequence[JudgeItem], winners: Sequence[str | None], verdicts: Sequence[Verdict],
          seconds: float, n_boot: int = 2000) -> dict[str, Any]:  # fmt: skip
    rows = [{"x": truth(it), "y": w} for it, w in zip(items, winners, strict=True)]
    read = [r for r in rows if r["y"] is not None]
    decisive = [r for r in read if r["y"] != "tie"]

    def s1(rs: Sequence[dict]) -> float:
        return sum(r["x"] == r["y"] for r in rs) / len(rs) if rs else math.nan

    flips = swap_flip_rate([v.order_winners for v in verdicts if v.ok and len(v.orders) >= 2])
    by_cat: dict[str, float] = {}
    for cat in prefset.CATEGORIES:
        mine = [r for it, r in zip(items, rows, strict=True) if CATEGORY.get(it.key[0]) == cat]
        mine = [r for r in mine if r["y"] not in (None, "tie")]
        by_cat[cat] = s1(mine)
    return {
        "judge": name,
        "items": len(items),
        "s1": s1(read),
        "s1_ci": bootstrap_ci(read, s1, n_boot=n_boot),
        "s2": s1(decisive),
        "s2_ci": bootstrap_ci(decisive, s1, n_boot=n_boot),
        "s2_n": len(decisive),
        "kappa": cohen_kappa([r["x"] for r in read], [r["y"] for r in read], ties=False),
        "ties": sum(r["y"] == "tie" for r in read),
        "swap_flip": flips.value if flips.n else None,
        "failed": len(rows) - len(read),
        "seconds": seconds,
        "s2_by_category": by_cat,
    }


def run_judge(
    judge: Any, items: Sequence[JudgeItem], backend: Any, batch: int = 8
) -> tuple[list[Verdict], float]:
    t0 = time.perf_counter()
    out: list[Verdict] = []
    for i in range(0, len(items), batch):
        out.extend(judge.judge(items[i : i + batch], backend))
    return out, time.perf_counter() - t0


def single_winners(judge_name: str, items: Sequence[JudgeItem], backend: Any, cfg: dict[str, Any]) -> tuple:
    """A single-answer judge on both answers of each pair; the higher rating wins (equal: a tie)."""
    judge = make_judge(judge_name, cfg)
    singles = [JudgeItem.single(it.question, a, key=(it.key, k), reference=it.reference)
               for it in items for k, a in enumerate(it.answers)]  # fmt: skip
    verdicts, dt = run_judge(judge, singles, backend)
    winners = []
    for i in range(len(items)):
        a, b = verdicts[2 * i], verdicts[2 * i + 1]
        ok = a.ok and b.ok
        winners.append(winner_from_ratings(a.rating, b.rating) if ok else None)
    # a pair's verdicts for the failure rate: failed when either rating failed
    pair_v = [Verdict(judge_name, "", {}, "", "pairwise", ok=w is not None) for w in winners]
    return winners, pair_v, dt


def speed(backend: Any, items: Sequence[JudgeItem]) -> None:
    """The log-prob judge batched (every item, both orders, one call) vs one item at a time."""
    judge = make_judge("logprob")
    judge.judge(items[:2], backend)  # warm-up
    batched = run_judge(judge, items, backend, batch=len(items))[1]
    alone = run_judge(judge, items, backend, batch=1)[1]
    print(
        f"log-prob judge, {len(items)} items x 2 orders: batched {batched:.2f} s, one at a time {alone:.2f} s: "
        f"speed-up {alone / batched:.2f}x"
    )


def train(ctx: Any, method: str, values: dict[str, Any], log: Any) -> str:
    """A job on the train split through the studio's runner; the registered model's name."""
    from storage import Filters

    values = {**values, "output_name": f"bench-{method}"}
    filters = None
    if method in ("reward", "dpo"):
        filters = Filters(prompt_set=prefset.prompt_set("train"))
    else:
        values["prompt_set"] = prefset.prompt_set("train")
    t0 = time.perf_counter()
    job = ctx.runner.start(method, values, filters=filters)
    log(f"{method} job {job.id} started")
    job = ctx.runner.wait(job.id)
    if job.state != "succeeded":
        raise SystemExit(f"{method} job {job.id} ended {job.state}: {job.error}")
    log(f"{method} job {job.id} ({job.step} steps) done in {time.perf_counter() - t0:.0f} s: {job.models}")
    if not job.models:
        raise SystemExit(f"{method} job {job.id} registered no model")
    return job.models[0]


def table(results: Sequence[dict[str, Any]]) -> str:
    head = (f"{'judge':40} {'n':>3} {'S1 (ties = miss)':>22} {'S2 (no ties)':>22} {'S2 n':>4} "
            f"{'kappa':>6} {'ties':>4} {'flip':>5} {'fail':>5} {'s':>6}  S2 correct/helpful/concise")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in results:

        def ci(v: float, lo_hi: tuple[float, float]) -> str:
            return f"{v:.3f} [{lo_hi[0]:.2f}, {lo_hi[1]:.2f}]" if not math.isnan(v) else "n/a"

        flip = f"{r['swap_flip']:.2f}" if r["swap_flip"] is not None else "-"
        kappa = f"{r['kappa']:.2f}" if not math.isnan(r["kappa"]) else "n/a"
        lines.append(
            f"{r['judge']:40} {r['items']:>3} {ci(r['s1'], r['s1_ci']):>22} {ci(r['s2'], r['s2_ci']):>22} "
            f"{r['s2_n']:>4} {kappa:>6} {r['ties']:>4} {flip:>5} {r['failed'] / r['items']:>5.2f} "
            f"{r['seconds']:>6.0f}  "
            + "/".join("n/a" if math.isnan(v) else f"{v:.2f}" for v in r["s2_by_category"].values())
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--gen-items",
        type=int,
        default=24,
        help="test items for the generating judges (as many from each category)",
    )
    ap.add_argument("--max-new-tokens", type=int, default=96, help="generating judges' token cap")
    ap.add_argument("--only", nargs="*", help="only these judges (logprob pairwise additive single "
                    "reward_model dpo_implicit self_taught)")  # fmt: skip
    ap.add_argument("--home", help="studio home to use (default: a fresh temporary one)")
    ap.add_argument("--json", help="also write the results here as JSON")
    ap.add_argument("--speed", action="store_true", help="also time the log-prob judge batched vs alone")
    args = ap.parse_args()
    home = Path(args.home or tempfile.mkdtemp(prefix="bench-judges-"))
    os.environ["STUDIO_HOME"] = str(home)
    os.environ["STUDIO_THREADS"] = str(args.threads)

    from studio.context import AppContext
    from studio.settings import Settings

    settings = Settings.load()
    settings.apply_threads()
    want = set(args.only or ["logprob", "pairwise", "additive", "single", "reward_model", "dpo_implicit",
                             "self_taught"])  # fmt: skip
    t_start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t_start:6.0f} s] {msg}", file=sys.stderr, flush=True)

    results: list[dict[str, Any]] = []
    test = prefset.items("test")
    per_cat = max(1, args.gen_items // len(prefset.CATEGORIES))  # the same number from each category
    gen = [
        it for cat in prefset.CATEGORIES for it in [i for i in test if CATEGORY[i.key[0]] == cat][:per_cat]
    ]
    print(f"studio home {home}; threads {args.threads}; load average at start {os.getloadavg()}")
    print(f"preference set: {len(prefset.load('train'))} train / {len(test)} test pairs; generating judges on "
          f"{len(gen)} test pairs ({per_cat} per category), max_new_tokens={args.max_new_tokens}")  # fmt: skip
    with AppContext(settings) as ctx:
        base = ctx.registry.backend(None)
        model = base.model_name
        if "logprob" in want:
            from studio.judges.logprob import VARIANTS, winner_from_prob

            for variant in VARIANTS:
                judge = make_judge("logprob", {"tie_margin": 0.0, "variant": variant})
                verdicts, dt = run_judge(judge, test, base)
                for band in TIE_BANDS:
                    winners = [winner_from_prob(v.prob_a, band) if v.ok else None for v in verdicts]
                    results.append(score(f"logprob {variant} tie={band}", test, winners, verdicts, dt))
                log(f"logprob {variant} done")
        for name in ("pairwise", "additive", "single"):
            if name not in want:
                continue
            for structured in (False, True):
                cfg = {"max_new_tokens": args.max_new_tokens, "structured": structured}
                if name == "additive":
                    cfg["n"] = 1  # one sample per answer (the judge's default averages 3): CPU time
                label = f"{name} {'structured' if structured else 'free'}"
                if name == "pairwise":
                    verdicts, dt = run_judge(make_judge(name, cfg), gen, base)
                    results.append(score(label, gen, pair_winners(verdicts), verdicts, dt))
                else:
                    winners, verdicts, dt = single_winners(name, gen, base, cfg)
                    results.append(score(label, gen, winners, verdicts, dt))
                log(f"{label} done")
        trained = want & {"reward_model", "dpo_implicit", "self_taught"}
        if trained:
            r = prefset.import_split(ctx.store, "train")
            log(f"imported the train split: {r.rows} pairs into {r.prompt_set}")
        if "reward_model" in want:
            rm = train(ctx, "reward", RM_JOB, log)
            judge = make_judge("reward_model")
            judge.bind(ctx.registry, rm)
            verdicts, dt = run_judge(judge, test, ctx.registry.backend(rm))
            results.append(score(f"reward_model ({rm})", test, pair_winners(verdicts), verdicts, dt))
        if "dpo_implicit" in want:
            dpo = train(ctx, "dpo", DPO_JOB, log)
            judge = make_judge("dpo_implicit")
            judge.bind(ctx.registry, dpo)
            verdicts, dt = run_judge(judge, test, ctx.registry.backend(dpo))
            results.append(score(f"dpo_implicit ({dpo})", test, pair_winners(verdicts), verdicts, dt))
        if "self_taught" in want:
            st = train(ctx, "self_taught", SELF_TAUGHT_JOB, log)
            cfg = {"max_new_tokens": args.max_new_tokens, "structured": True}  # the job trains JSON verdicts
            for who in (model, st):
                verdicts, dt = run_judge(make_judge("pairwise", cfg), gen, ctx.registry.backend(who))
                tag = "v0" if who == model else "v1"
                results.append(score(f"pairwise by {who} ({tag})", gen, pair_winners(verdicts), verdicts, dt))
            log("self-taught judge done")
        if args.speed:
            speed(base, test[:16])
    print()
    print(table(results))
    # the best by its CI's lower bound (an S2 of 1.0 on one decisive pair is no evidence), among the judges that
    # decide at least half of the pairs (a wide tie band buys S2 by abstaining)
    fair = [r for r in results if not math.isnan(r["s2_ci"][0]) and r["s2_n"] >= r["items"] / 2]
    best = max(fair, key=lambda r: r["s2_ci"][0], default=None)
    if best is not None:
        lo, hi = best["s2_ci"]
        goal = best["s2"] >= 0.75 and lo > 0.5
        print(f"\nbest without ties: {best['judge']} S2 {best['s2']:.3f} [{lo:.2f}, {hi:.2f}] on {best['s2_n']} "
              f"pairs: goal (>= 0.75, CI excluding 0.5) {'MET' if goal else 'NOT met'}")  # fmt: skip
    print(f"load average at end {os.getloadavg()}; total {time.perf_counter() - t_start:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1, default=float))


if __name__ == "__main__":
    main()
