"""``studio eval``: strategies x models scored on a dataset, printed as a paper-shaped table with bootstrap CIs.

Runs are batched, stored (prompt set ``eval:<dataset>``) and resumable: rerunning the same command skips the
runs already done. The table, a plot and the exports go to ``--out`` (default ``<data dir>/evals/<name>/``).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from studio.cli.run import add_params_flags, run_params
from studio.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval",
        help="score strategies x models on a dataset; a table with bootstrap CIs, a plot, CSV and Markdown",
        description="Run strategies over a dataset (batched, resumable, stored) and report task metrics.",
    )
    p.add_argument("--dataset", "-d", help="a shipped set (see --list), a JSONL file, an HF dataset dir "
                   "(DIR or DIR:SPLIT) or store:PROMPT_SET")  # fmt: skip
    p.add_argument("--list", action="store_true", help="list the shipped datasets, then exit")
    p.add_argument("--strategies", "-s", help="comma-separated strategy[:variant] list, e.g. "
                   "system1,cove:factored,s2a (default: the shipped set's comparison, else system1)")  # fmt: skip
    p.add_argument("--model", "-m", action="append", help="registered model name(s), comma-separated or "
                   "repeated (default: the default model)")  # fmt: skip
    p.add_argument("--limit", type=int, help="only the first N base questions (each with all its conditions)")
    p.add_argument("--name", help="eval name: its results dir and resume key (default: the dataset's name)")
    add_params_flags(p)
    g = p.add_argument_group("scoring")
    g.add_argument("--metrics", help="comma-separated metrics instead of the dataset's (see the docs)")
    g.add_argument("--judge", help="also score every answer with this judge (additive; or a pairwise judge "
                   "against the reference answer)")  # fmt: skip
    g.add_argument("--judge-model", help="the judge's model (default: the default model)")
    g.add_argument("--set", dest="judge_settings", action="append", default=[], metavar="KEY=VALUE",
                   help="a judge setting, e.g. --set n=1 (repeatable)")  # fmt: skip
    g.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the CIs (default 1000)")
    p.add_argument("--batch-size", type=int, default=8, help="items per model batch (default 8)")
    p.add_argument("--out", help="write table.csv, table.md, plot.png and report.json here")
    p.add_argument("--json", action="store_true", help="print the counts and the report as JSON")
    p.set_defaults(func=cmd_eval)


def _progress(done: int, total: int, msg: str) -> None:
    print(f"[{done}/{total}] {msg}" if total else msg, file=sys.stderr, flush=True)


def _models(values: list[str] | None) -> tuple[str | None, ...]:
    names = [n.strip() for v in values or [] for n in v.split(",") if n.strip()]
    return tuple(dict.fromkeys(names)) or (None,)


def _strategies(args: argparse.Namespace) -> str:
    from studio.eval import SHIPPED

    if args.strategies:
        return args.strategies
    shipped = SHIPPED.get(args.dataset)
    return ",".join(shipped.strategies) if shipped else "system1"


def _list_shipped(as_json: bool) -> int:
    from studio.eval import SHIPPED

    rows = [{"name": s.name, "description": s.description, "strategies": list(s.strategies),
             "readme": str(s.readme)} for s in SHIPPED.values()]  # fmt: skip
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['name']}: {r['description']}\n    default strategies: {','.join(r['strategies'])}")
    return 0


def cmd_eval(args: argparse.Namespace, ctx: Any) -> int:
    if args.list:
        return _list_shipped(args.json)
    if not args.dataset:
        raise InputError(
            "name a dataset with --dataset (a shipped set, a JSONL file, a dataset dir or store:SET)"
        )
    from studio.cli.store import open_store
    from studio.eval import STATS, EvalSpec, load_dataset, parse_methods, run_eval
    from studio.eval.data import STORE_PREFIX
    from studio.training.config import parse_sets

    methods = parse_methods(_strategies(args))  # unknown strategies fail before the store opens
    metrics = [m.strip() for m in args.metrics.split(",") if m.strip()] if args.metrics else None
    unknown = sorted(set(metrics or ()) - set(STATS))
    if unknown:
        raise InputError(f"unknown metric {', '.join(unknown)}; metrics: {', '.join(STATS)}")
    spec = EvalSpec(
        methods, _models(args.model), run_params(args), judge=args.judge,
        judge_config=parse_sets(args.judge_settings), judge_model=args.judge_model, batch_size=args.batch_size,
    )  # fmt: skip
    on_disk = not args.dataset.startswith(STORE_PREFIX)  # a bad path fails before the store opens
    dataset = load_dataset(args.dataset, limit=args.limit) if on_disk else None
    with open_store(ctx) as store:
        dataset = dataset or load_dataset(args.dataset, store=store, limit=args.limit)
        outcome = run_eval(dataset, spec, store, ctx.registry, name=args.name, progress=_progress)
    report = outcome.report(metrics=metrics, n_boot=args.n_boot)
    files = report.save(Path(args.out).expanduser() if args.out else outcome.dir)
    for error in outcome.errors:
        print(f"warning: {error}", file=sys.stderr)
    if args.json:
        body = {"name": outcome.name, "dir": str(outcome.dir), "total": outcome.total, "skipped": outcome.skipped,
                "ran": outcome.ran, "failed": outcome.failed, "errors": outcome.errors, "judged": outcome.judged,
                "judge_failed": outcome.judge_failed, "elapsed_s": round(outcome.elapsed_s, 2),
                "results": str(outcome.dir / "results.jsonl"), "files": {k: str(v) for k, v in files.items()},
                "report": report.to_dict()}  # fmt: skip
        print(json.dumps(body, indent=2, ensure_ascii=False))
    else:
        print(outcome.summary())
        print(report.to_markdown())
        print("wrote " + ", ".join(str(p) for p in files.values()))
    return 1 if outcome.failed else 0
