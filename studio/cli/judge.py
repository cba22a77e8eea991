"""``studio judge``, ``studio agreement`` and ``studio leaderboard``: judges over the store, from the terminal."""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import Any

from studio.errors import InputError

SPLITS = ("held-out", "both", "all")  # studio.judging.SPLITS, without importing the judging stack for --help


def register(sub: argparse._SubParsersAction) -> None:
    from studio.judges import JUDGES

    p = sub.add_parser("judge", help="judge stored comparisons or runs with a model (resumable, batched)")
    p.add_argument("--judge", choices=JUDGES.names(), help="which judge (see --list)")
    p.add_argument("--list", action="store_true", help="list the judges and their settings, then exit")
    p.add_argument("--model", help="the judge model: any registered model, a reward model for reward_model, a "
                   "DPO-trained model for dpo_implicit (default: the default model)")  # fmt: skip
    p.add_argument(
        "--set", dest="settings_kv", action="append", default=[], metavar="KEY=VALUE",
        help="a judge setting, e.g. --set n=3 --set max_new_tokens=256 (repeatable)",
    )  # fmt: skip
    g = p.add_argument_group("scope")
    g.add_argument("--scope", choices=["comparisons", "runs"], default="comparisons",
                   help="run pairs shown to people, or every pair of runs per prompt (default comparisons)")  # fmt: skip
    lab = g.add_mutually_exclusive_group()
    lab.add_argument(
        "--labelled", dest="labelled", action="store_const", const=True, help="only human-voted items"
    )
    lab.add_argument(
        "--unlabelled", dest="labelled", action="store_const", const=False, help="only unvoted items"
    )
    g.add_argument("--prompt-set", help="only this prompt set")
    g.add_argument("--for-model", help="only items with a run by this model")
    g.add_argument("--strategy", help="only items with a run by this strategy")
    g.add_argument("--limit", type=int, help="at most this many items")
    p.add_argument("--batch-size", type=int, default=8, help="items per model batch (default 8)")
    p.add_argument("--json", action="store_true", help="print the job summary as JSON")
    p.set_defaults(func=cmd_judge)

    p = sub.add_parser("agreement", help="human-judge, human-human and judge-judge agreement, and biases")
    p.add_argument("--by", choices=["model", "strategy", "prompt_set"], help="also break down by this")
    p.add_argument("--n-boot", type=int, default=1000, help="bootstrap resamples for the CIs (default 1000)")
    p.add_argument("--no-judge-vs-judge", action="store_true", help="skip judge-vs-judge pairs")
    p.add_argument("--self-judge", choices=["include", "exclude", "only"], default="include",
                   help="verdicts where the judge model judged its own answers (default include)")  # fmt: skip
    split = p.add_mutually_exclusive_group()
    split.add_argument("--held-out", dest="split", action="store_const", const="held-out",
                       help="a judge trained in the studio is scored on the votes outside its training data, "
                       "with the count left out (the default)")  # fmt: skip
    split.add_argument("--split", dest="split", choices=SPLITS,
                       help="held-out (default); both: a trained judge's train and held-out figures side by "
                       "side; all: pooled, including its training votes (not its agreement)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print agreement and biases as JSON")
    p.set_defaults(func=cmd_agreement, split="held-out")

    p = sub.add_parser(
        "leaderboard", help="Bradley-Terry leaderboard of (model, strategy), humans and judges"
    )
    p.add_argument("--combined", action="store_true", help="also pool human votes and judge verdicts")
    p.add_argument("--judge", action="append", help="only this judge (name or judge@model#hash; repeatable)")
    p.add_argument("--n-boot", type=int, default=200, help="bootstrap resamples for the CIs (default 200)")
    p.add_argument("--matrix", action="store_true", help="also print the win-rate matrices")
    p.add_argument("--style", action="store_true",
                   help="raw and style-controlled boards side by side (length, headers, lists, bold as covariates)")  # fmt: skip
    p.add_argument("--json", action="store_true", help="print boards, win rates and Kendall tau as JSON")
    p.set_defaults(func=cmd_leaderboard)


def _progress(done: int, total: int, msg: str) -> None:
    print(f"[{done}/{total}] {msg}", file=sys.stderr, flush=True)


def cmd_judge(args: argparse.Namespace, ctx: Any) -> int:
    from studio.judges import JUDGES, make_judge
    from studio.training.config import parse_sets

    if args.list:
        return _list_judges(JUDGES, args.json)
    if not args.judge:
        raise InputError("name a judge with --judge (see `studio judge --list`)")
    from studio.cli.store import open_store
    from studio.judging import Scope, check_judge_model, judge_scope

    judge = make_judge(args.judge, parse_sets(args.settings_kv))  # fail fast, before loading a model
    check_judge_model(ctx.registry, judge.name, args.model)
    scope = Scope(args.scope, args.labelled, args.prompt_set, args.for_model, args.strategy, args.limit)
    with open_store(ctx) as store:
        backend = ctx.registry.backend(args.model, progress=lambda f, m: _progress(0, 0, m))
        judge.bind(
            ctx.registry, backend.model_name
        )  # a judge that needs another model (a reference) loads it
        judge.check_backend(backend)
        result = judge_scope(store, backend, judge, scope, batch_size=args.batch_size, progress=_progress)
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    print(
        f"{result.judge} on {result.judge_model} (config {result.config_hash}): {result.total} items in scope, "
        f"{result.skipped} already judged, {result.judged} judged: {result.ok} ok, {result.failed} failed"
        f" ({result.self_judged} self-judged) in {result.elapsed_s:.1f} s"
    )
    flips = getattr(result, "swap_flip", None)
    if flips:
        print(f"swap-flip rate: {_rate(flips)} (verdicts whose two orders picked differently)")
    return 0


def _rate(flips: dict[str, Any]) -> str:
    """A swap-flip rate as ``0.25 (3/12)``; ``-`` when no verdict was read in both orders."""
    rate = flips.get("rate")
    if not flips.get("n") or rate is None or (isinstance(rate, float) and math.isnan(rate)):
        return "- (no verdict read in both orders)"
    return f"{rate:.2f} ({flips['flips']}/{flips['n']})"


def _list_judges(registry: Any, as_json: bool) -> int:
    from studio.judges import make_judge

    rows = []
    for name in registry.names():
        judge = make_judge(name)
        rows.append({"name": name, "mode": judge.mode, "description": judge.description,
                     "source": judge.source, "settings": judge.config_dict()})  # fmt: skip
    if as_json:
        print(json.dumps(rows, indent=2))
        return 0
    for r in rows:
        print(f"{r['name']} ({r['mode']}): {r['description']}\n    {r['source']}")
        print("    settings: " + ", ".join(f"{k}={v}" for k, v in r["settings"].items()))
    return 0


def _fmt(e: dict[str, Any]) -> str:
    if e["value"] is None or math.isnan(e["value"]):
        return "   -"
    ci = "" if e.get("lo") is None or math.isnan(e["lo"]) else f" [{e['lo']:.2f}, {e['hi']:.2f}]"
    return f"{e['value']:.2f}{ci}"


def cmd_agreement(args: argparse.Namespace, ctx: Any) -> int:
    from studio.cli.store import open_store
    from studio.judging import agreement, annotator_alpha, biases, judge_models, snapshot

    self_judge = {"include": None, "exclude": False, "only": True}[args.self_judge]
    with open_store(ctx) as store:
        snap = snapshot(store)
    models = judge_models(snap, ctx.registry, ctx.settings.runs_dir)
    agree = agreement(
        snap, by=args.by, n_boot=args.n_boot, judge_vs_judge=not args.no_judge_vs_judge, self_judge=self_judge,
        models=models, split=args.split,
    )  # fmt: skip
    bias = biases(snap, by=args.by, n_boot=args.n_boot)
    alpha = annotator_alpha(snap, n_boot=args.n_boot)
    if args.json:
        print(_dumps({"agreement": agree, "alpha": alpha, "biases": bias, "split": args.split}))
        return 0
    print("agreement (vote pairs; S1 with ties, S2 without; 95% bootstrap CIs)")
    if models.trained:
        print(
            f"  judges trained in the studio ({', '.join(sorted(models.trained))}): {SPLIT_NOTE[args.split]}"
        )
    for a in agree:
        failed = f"  failed verdicts {a['failed_verdicts']}/{a['verdicts']}" if "verdicts" in a else ""
        rt = a.get("ranking_tau") or {}
        tau = f"  ranking tau {rt['tau']:.2f} over {rt['n']} rankings" if rt.get("n") else ""
        flips = f"  swap-flip {_rate(a['swap_flip'])}" if "swap_flip" in a else ""
        print(f"  {a['x']} vs {a['y']}{_split_label(a)}: {a['pairs']} pairs{failed}{tau}{flips}")
        for i, overall in enumerate(a["s1"]):
            label = "all" if i == 0 else overall["group"]
            print(
                f"    {label:<24} n={overall['n']:<5} S1 {_fmt(overall)}  S2 {_fmt(a['s2'][i])}  "
                f"kappa {_fmt(a['kappa'][i])}"
            )
        for row in a.get("lineage") or []:
            print(f"    lineage {row['version']} {row['model']:<28} {_lineage_figure(row)}")
    print("inter-annotator agreement among people: Krippendorff's alpha (95% bootstrap CI over items)")
    for a in alpha:
        shown = _fmt({"value": a["alpha"], "lo": a["lo"], "hi": a["hi"]})
        print(f"  {a['labels']:<16} {a['level']:<8} alpha {shown}  items {a['n_items']}  annotators "
              f"{a['n_annotators']}")  # fmt: skip
    print("biases (position: first/left answer wins; length: longer answer wins; swap flip: orders disagree)")
    for b in bias:
        print(
            f"  {b['rater']:<32} n={b['n']:<5} position {_fmt(b['position_bias'][0])}  "
            f"length {_fmt(b['length_bias'][0])}  swap-flip {_fmt(b['swap_flip'][0])}"
        )
    return 0


SPLIT_NOTE = {
    "held-out": "scored on the votes outside their training data",
    "both": "scored on held-out and on training votes, side by side (the held-out figure is the agreement)",
    "all": "POOLED, including the votes they were trained on: not their agreement (see --held-out)",
}


def _split_label(a: dict[str, Any]) -> str:
    """How a trained judge's entry was scored, said beside it; nothing for a judge not trained in the studio."""
    if not a.get("trained"):
        return ""
    if a["split"] == "held-out":
        return f" [held-out: {a.get('train_pairs_excluded', 0)} vote pairs on its training data left out]"
    if a["split"] == "train":
        return " [TRAIN: its own training votes, not its agreement]"
    return f" [all votes, including {a.get('includes_train_pairs', 0)} on its training data]"


def _lineage_figure(row: dict[str, Any]) -> str:
    if not row.get("pairs"):
        why = "no verdicts of this judge with it" if not row.get("rater") else "no vote pairs in common"
        return f"-  ({why})"
    return f"n={row['pairs']:<5} S1 {_fmt(row['s1'])}  S2 {_fmt(row['s2'])}  kappa {_fmt(row['kappa'])}"


def cmd_leaderboard(args: argparse.Namespace, ctx: Any) -> int:
    from studio.cli.store import open_store
    from studio.judging import leaderboards, snapshot

    with open_store(ctx) as store:
        snap = snapshot(store)
    out = leaderboards(snap, combined=args.combined, judges=args.judge, n_boot=args.n_boot)
    if args.style:
        from studio.judging.boards import style_boards

        out["style"] = style_boards(snap, judges=args.judge, n_boot=args.n_boot)
    if args.json:
        print(_dumps(out))
        return 0
    if not out["boards"]:
        print("no votes or verdicts yet: vote in the Arena, or run `studio judge`")
        return 0
    for name, rows in out["boards"].items():
        print(f"{name} board (Bradley-Terry, Elo-like scale, 95% bootstrap CI)")
        for r in rows:
            ci = "" if math.isnan(r["elo_lo"]) else f" [{r['elo_lo']:.0f}, {r['elo_hi']:.0f}]"
            print(
                f"  {r['rank']:>2}. {r['contestant']:<40} {r['elo']:7.0f}{ci:<14}  "
                f"matches {r['matches']:<4} win rate {r['win_rate']:.2f}"
            )
        if args.matrix:
            _print_matrix(out["win_rates"][name])
    tau = out["kendall_tau"]
    if tau["tau"] is not None:
        print(
            f"Kendall tau, human vs judge board: {tau['tau']:.2f} over {tau['n']} contestants (p={tau['p']:.3f})"
        )
    if args.style:
        _print_style(out["style"])
    return 0


def _rating(r: dict[str, Any]) -> str:
    ci = "" if r.get("lo") is None or math.isnan(r["lo"]) else f" [{r['lo']:.0f}, {r['hi']:.0f}]"
    return f"{r['rating']:6.0f}{ci}"


def _print_style(style: dict[str, Any]) -> None:
    """Per rater, the raw and the style-controlled board side by side, then the style coefficients."""
    for rater, b in (style.get("raters") or {}).items():
        print(f"{rater}: raw vs style-controlled Bradley-Terry ({b['matches']} matches; 95% bootstrap CI)")
        print(f"  {'raw':<56} | style-controlled (length, headers, lists, bold held equal)")
        raw, styled = b.get("raw") or [], b.get("style") or []
        for i in range(max(len(raw), len(styled))):
            left = f"{i + 1:>2}. {raw[i]['contestant']:<30} {_rating(raw[i])}" if i < len(raw) else ""
            right = (
                f"{i + 1:>2}. {styled[i]['contestant']:<30} {_rating(styled[i])}" if i < len(styled) else ""
            )
            print(f"  {left:<56} | {right}")
        coefs = b.get("coefficients") or {}
        if coefs:
            print("  style coefficients (log-odds per standardised difference): " + ", ".join(
                f"{k} {_fmt(v)}" for k, v in coefs.items()))  # fmt: skip


def _print_matrix(m: dict[str, Any]) -> None:
    labels = m["labels"]
    print("  win rate of row vs column:")
    for i, label in enumerate(labels):
        cells = " ".join("  -  " if v is None else f"{v:5.2f}" for v in m["values"][i])
        print(f"    {label:<40} {cells}")


def _dumps(value: Any) -> str:
    """JSON with NaN (an undefined figure) written as null, which every JSON reader accepts."""
    return json.dumps(_clean(value), indent=2, default=str)


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value
