"""``studio compare``: a trained model against its parent on a prompt set, judged (see :mod:`studio.compare`)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    from studio.judges import JUDGES

    p = sub.add_parser(
        "compare",
        help="a trained model vs its parent on a prompt set: runs, blind comparisons, verdicts, raw and "
        "length-controlled win rates",
        description="Answer every prompt of a prompt set with MODEL and its parent, store both runs and a blind "
        "comparison per prompt, judge each comparison and print the win rate of MODEL, raw and length-controlled "
        "(AlpacaEval 2's GLM, predicted at equal length). The comparisons stay "
        "unlabelled for people: `studio judge --unlabelled` and the Judge and Data tabs see them.",
    )
    p.add_argument("model", help="a registered model with a parent (a model trained by `studio train`)")
    p.add_argument("--prompt-set", required=True, help="the prompt set to answer")
    p.add_argument("--judge", choices=JUDGES.names(), default="logprob", help="the judge (default logprob)")
    p.add_argument("--judge-model", help="the model that judges (default: the default model)")
    p.add_argument(
        "--set", dest="judge_settings", action="append", default=[], metavar="KEY=VALUE",
        help="a judge setting, e.g. --set n=1 --set max_new_tokens=128 (see `studio judge --list`)",
    )  # fmt: skip
    p.add_argument("--parent", help="compare with this model instead of the recorded parent")
    p.add_argument(
        "--strategy", default="system1", help="strategy[:variant] both models use (default system1)"
    )
    p.add_argument("--limit", type=int, default=50, help="at most this many prompts (default 50)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="tokens per step (default 256)")
    p.add_argument("--batch-size", type=int, default=8, help="prompts per model batch (default 8)")
    p.add_argument("--seed", type=int, help="seed for the shuffled screen positions")
    p.add_argument("--json", action="store_true", help="print the result (figures, ids, items) as JSON")
    p.set_defaults(func=cmd_compare)


def _progress(done: int, total: int, msg: str) -> None:
    print(f"[{done}/{total}] {msg}" if total else msg, file=sys.stderr, flush=True)


def cmd_compare(args: argparse.Namespace, ctx: Any) -> int:
    from studio.cli.store import open_store
    from studio.compare import compare_with_parent
    from studio.training.config import parse_sets

    with open_store(ctx) as store:
        result = compare_with_parent(
            store, ctx.registry, args.model, prompt_set=args.prompt_set, judge=args.judge,
            judge_config=parse_sets(args.judge_settings), judge_model=args.judge_model, parent=args.parent,
            strategy=args.strategy, limit=args.limit,
            params={"max_new_tokens": args.max_new_tokens}, batch_size=args.batch_size, seed=args.seed,
            progress=_progress,
        )  # fmt: skip
    if args.json:
        print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
        return 0
    print(result.line())
    lc = result.length_control()
    if not lc.note:
        print(
            f"length term {lc.length_coef:+.2f} (log-odds per tanh of the standardised length difference; "
            "> 0: the judge preferred the longer answer); the length-controlled win rate is the GLM's "
            "prediction at equal length (AlpacaEval 2)"
        )
    ids = result.comparison_ids
    if ids:
        print(
            f"comparisons {ids[0]}..{ids[-1]} ({len(ids)}) wait for human labels: "
            f"`studio judge --unlabelled --prompt-set {args.prompt_set}` or the Judge tab"
        )
    return 0
