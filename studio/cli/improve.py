"""``studio improve``: a model trains itself on a verifiable task, each iteration scored on the held-out split.

``studio improve --task arithmetic --method irpo --iterations 2`` scores M0 on the task's test split, runs one
training job per iteration (M_t -> M_{t+1}, registered with lineage) and scores each new model the same way,
stopping early when an iteration does not improve. It prints the per-iteration table (``--json``: the rows).
Rerunning the same command, or ``--resume ID``, continues at the next iteration; ``--list`` shows the runs.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from studio.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "improve",
        help="self-improvement: train a model on a task for N iterations, each scored on the held-out split",
        description="Score M0 on a task's test split, then per iteration train M_t -> M_{t+1} with a method "
        "(one training job each, registered with lineage) and score it the same way.",
    )
    p.add_argument("--task", help="a verifiable task: arithmetic, game24, last_letter")
    p.add_argument("--method", help="a training method whose settings take a task (irpo, grpo, s2_distill)")
    p.add_argument("--iterations", type=int, default=1, help="training iterations (default 1)")
    p.add_argument("--model", "-m", help="M0, a registered model (default: the default model)")
    p.add_argument(
        "--set", dest="values", action="append", default=[], metavar="KEY=VALUE",
        help="a per-iteration setting of the method (see `studio train --method M --settings`), repeatable",
    )  # fmt: skip
    p.add_argument("--eval-limit", type=int, help="score on the first N test items only (default: all)")
    p.add_argument(
        "--eval-strategy",
        help="score by asking the task's prompt through this strategy (default: the method's own: cot for "
        "irpo, else system1)",
    )
    p.add_argument(
        "--eval-max-new-tokens",
        type=int,
        help="new tokens per scored answer (default: the method's training answer budget, else 64)",
    )
    p.add_argument("--no-stop-early", action="store_true", help="run every iteration even without a gain")
    p.add_argument(
        "--new", action="store_true", help="start a new run even if one with these settings exists"
    )
    p.add_argument("--resume", metavar="ID", help="continue improve run ID at its next iteration")
    p.add_argument("--list", action="store_true", help="list the improve runs, then exit")
    p.add_argument(
        "--json", action="store_true",
        help='print {"iterations": [{"model", "accuracy", ...}], "references": [{"label", "accuracy", ...}]}',
    )  # fmt: skip
    p.set_defaults(func=cmd_improve)


def _progress(done: int, total: int, msg: str) -> None:
    print(f"[{done}/{total}] {msg}" if total else msg, file=sys.stderr, flush=True)


def cmd_improve(args: argparse.Namespace, ctx: Any) -> int:
    from studio import improve as imp
    from studio.training.config import parse_sets

    if args.list:
        runs = imp.list_runs(ctx)
        if args.json:
            print(json.dumps([r.to_dict() for r in runs], indent=2, ensure_ascii=False))
            return 0
        for r in runs:
            best = max((it.accuracy for it in r.iterations), default=float("nan"))
            print(f"{r.id}: {r.task} {r.method} from {r.model}: {len(r.iterations) - 1 if r.iterations else 0}"
                  f"/{r.iterations_wanted} iterations, {r.status}, best accuracy {best:.3f}"
                  f"{' (' + r.error + ')' if r.error else ''}")  # fmt: skip
        if not runs:
            print("no improve runs yet")
        return 0
    if args.resume:
        run = imp.resume(ctx, args.resume, progress=_progress)
    else:
        if not args.task or not args.method:
            raise InputError("name a task and a method: studio improve --task arithmetic --method irpo")
        eval_params = {} if args.eval_max_new_tokens is None else {"max_new_tokens": args.eval_max_new_tokens}
        run = imp.improve(
            ctx, args.task, args.method, args.iterations, model=args.model, values=parse_sets(args.values),
            eval_limit=args.eval_limit, stop_early=not args.no_stop_early, eval_strategy=args.eval_strategy,
            eval_params=eval_params or None, new=args.new, progress=_progress,
        )  # fmt: skip
    if args.json:
        body = {"id": run.id, "task": run.task, "method": run.method, "status": run.status,
                "dir": str(run.dir), "iterations": run.rows(), "references": run.references}  # fmt: skip
        print(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        asked = run.settings.get("eval_prompt") or "the task's prompt"
        scored = f", scoring {run.settings['eval_answer']}" if run.settings.get("eval_answer") else ""
        print(f"improve run {run.id}: {run.task}, {run.method} from {run.model} ({run.status}); scored on the "
              f"test split: {run.settings['eval_strategy']} on {asked}{scored}, greedy")  # fmt: skip
        print(imp.table(run))
        print(f"state: {run.dir / imp.STATE}")
    return 0
