"""``studio run``: one reasoning strategy on one question, its trace printed as a tree as steps finish.
``studio strategies``: the strategies, their variants and what each does."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any, TextIO

from studio.cli import add_decoding_flags, given_params
from studio.errors import InputError, StudioError
from studio.strategies import STEP_NAMES, RunResult, Step, StrategyParams, TraceEvent

if TYPE_CHECKING:
    from studio.context import AppContext


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="run a reasoning strategy (system1, cot, cove, s2a, bsm, rar, sc, ...) and print its step trace",
        description="Run one strategy on a question. Steps print as they finish, as a tree; then the final answer.",
    )
    p.add_argument("question", help="the question ('-' reads stdin)")
    p.add_argument("--strategy", "-s", default="system1", help="strategy name (see `studio strategies`)")
    p.add_argument("--variant", "-v", help="strategy variant (default: the strategy's default)")
    p.add_argument("--model", "-m", help="registered model name (default: the default model)")
    add_params_flags(p)
    p.add_argument(
        "--no-batch", action="store_true", help="send independent steps one by one (for comparison)"
    )
    p.add_argument("--json", action="store_true", help="print the whole trace as JSON instead of the tree")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("strategies", help="list the reasoning strategies and their variants")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_strategies)


def add_params_flags(p: argparse.ArgumentParser) -> None:
    """The StrategyParams flags, shared by `studio run` and `studio eval` (read back by :func:`run_params`).
    All default to None: a flag left out is filled from the model's decoding defaults, then the class's."""
    g = p.add_argument_group("params (unset: the model's defaults)")
    add_decoding_flags(g, max_new_tokens_help="new tokens per step (default 256)")
    g.add_argument(
        "--structured",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="run the parsed steps (CoVe plan and cross-check, S2A rewrite, BSM branch, ToT propose/value) "
        "under their JSON schema, so they parse on any model; --no-structured: free text",
    )
    g.add_argument(
        "--step-max-tokens",
        action="append",
        metavar="STEP=N",
        help="cap one step's new tokens, e.g. --step-max-tokens merge=160 (repeatable; step names as in the "
        "trace: answer, baseline, plan_verifications, rewrite, branch, solve, merge, propose, value, ...). "
        "Given, these are the run's caps: they replace the model's default caps (`studio models` lists them)",
    )
    g.add_argument("--max-questions", type=int, help="CoVe: verification questions kept (default 5)")
    g.add_argument("--max-branches", type=int, help="BSM: branches kept (default 5)")
    g.add_argument("--token-budget", type=int, help="prompt + completion tokens per run (default: no limit)")
    g = p.add_argument_group("self-consistency (sc) and Tree of Thoughts (tot)")
    g.add_argument("--samples", type=int, help="sc: paths sampled and voted on (default 5)")
    g.add_argument("--sc-temperature", type=float, help="sc: the paths' sampling temperature (default 0.7)")
    g.add_argument("--breadth", type=int, help="tot: states kept per depth, b (default 2)")
    g.add_argument("--depth", type=int, help="tot: depth limit (default 3)")
    g.add_argument("--k", type=int, help="tot: thoughts proposed per state (default 3)")
    g.add_argument("--n-evaluate", type=int, help="tot: value samples per state (default 2)")
    g.add_argument(
        "--value-threshold", type=float, help="tot dfs: states valued below this are pruned (default 1.0)"
    )


def step_caps(values: list[str] | None) -> dict[str, int] | None:
    """``--step-max-tokens merge=160 --step-max-tokens solve=96`` as {"merge": 160, "solve": 96}."""
    if not values:
        return None
    caps: dict[str, int] = {}
    for raw in values:
        name, sep, number = raw.partition("=")
        name = name.strip()
        if not sep or not name:
            raise InputError(f"--step-max-tokens takes STEP=N, e.g. merge=160, not {raw!r}")
        if name not in STEP_NAMES:
            raise InputError(f"--step-max-tokens: unknown step {name!r}; steps: {', '.join(STEP_NAMES)}")
        try:
            caps[name] = int(number)
        except ValueError:
            raise InputError(f"--step-max-tokens {raw!r}: N must be a whole number") from None
    return caps


def run_params(args: argparse.Namespace) -> dict[str, Any]:
    """The strategy params the user GAVE as flags, as a dict (checked: bad values are InputErrors now, before
    any model loads); ``studio.api`` fills the rest from the model's decoding defaults."""
    given = given_params(StrategyParams, argparse.Namespace(**{**vars(args), "step_max_tokens": None}))
    caps = step_caps(getattr(args, "step_max_tokens", None))
    if caps:
        given["step_max_tokens"] = caps
    StrategyParams.from_dict(given)  # validate
    return given


def cmd_run(args: argparse.Namespace, ctx: AppContext, out: TextIO | None = None) -> int:
    from studio.api import stream_strategy

    out = out or sys.stdout
    question = sys.stdin.read() if args.question == "-" else args.question
    params = run_params(args)
    backend = ctx.registry.backend(args.model)
    events = stream_strategy(
        question, args.strategy, args.variant, backend, params, batching=not args.no_batch
    )
    printer = TreePrinter(out)
    result: RunResult | None = None
    for ev in events:
        if ev.kind == "run_finished":
            result = ev.result
        elif not args.json:
            printer.event(ev)
    assert result is not None
    if args.json:
        print(result.trace.to_json(), file=out)
    else:
        printer.finish(result)
    if result.exception is not None:
        if isinstance(result.exception, StudioError):
            raise result.exception
        raise StudioError(f"the run failed: {result.error}")
    return 0


def cmd_strategies(args: argparse.Namespace, ctx: AppContext, out: TextIO | None = None) -> int:
    from studio.api import list_strategies

    out = out or sys.stdout
    infos = list_strategies()
    if args.json:
        rows = [{**i.__dict__, "variants": list(i.variants)} for i in infos]
        print(json.dumps(rows, indent=2), file=out)
        return 0
    for i in infos:
        variants = ", ".join(f"{v}*" if v == i.default_variant else v for v in i.variants) or "-"
        print(f"{i.name:<8} {i.description}", file=out)
        print(f"{'':<8} variants: {variants}   source: {i.source}", file=out)
    print("(* = default variant)", file=out)
    return 0


class TreePrinter:
    """Prints each finished step as a tree node: children (a plan's verifications) indent under their parent."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.depth: dict[str, int] = {}

    def event(self, ev: TraceEvent) -> None:
        if ev.kind == "step_finished" and ev.step:
            self._step(ev.step)
        elif ev.kind == "note":
            self._line(0, f"! {ev.text}")
        elif ev.kind == "error":
            self._line(0, f"✗ {ev.text}")
        self.out.flush()

    def _step(self, s: Step) -> None:
        d = self.depth[s.id] = self.depth.get(s.parent or "", -1) + 1
        label = f"  “{s.label}”" if s.label else ""
        batch = f" · batch of {s.batch_size}" if s.batch_size > 1 else ""
        json_tag = " · constrained" if s.constrained else ""
        cost = f"{s.prompt_tokens}→{s.completion_tokens} tok · {s.latency_s:.2f} s{batch}{json_tag}"
        self._line(d, f"● {s.name}{label}  [{s.id} · {cost}]")
        for line in (s.output or "(empty output)").splitlines():
            self._line(d + 1, line)
        for key, value in s.parsed.items():
            self._line(d + 1, f"→ {key}: {_short(value)}")
        for note in s.notes:
            self._line(d + 1, f"! {note}")

    def _vote(self, vote: dict[str, Any]) -> None:
        """Self-consistency: every path's final answer and its vote, then the tally."""
        print(f"Self-consistency vote over {vote.get('samples')} paths:", file=self.out)
        for p in vote.get("paths", []):
            final = " ".join(str(p.get("final") or "(empty)").split())
            self._line(
                1, f"path {p.get('path')}: {_short(final, 100)}  → vote {p.get('normalized') or '(none)'!r}"
            )
        tally = ", ".join(f"{k!r}: {v}" for k, v in (vote.get("tally") or {}).items()) or "no votes"
        self._line(1, f"tally: {tally}; share {float(vote.get('share') or 0):.0%}")
        print("─" * 40, file=self.out)

    def _line(self, depth: int, text: str) -> None:
        print("  " * depth + text, file=self.out)

    def finish(self, r: RunResult) -> None:
        t = r.totals
        variant = f"/{r.variant}" if r.variant else ""
        print("─" * 40, file=self.out)
        vote = r.trace.summary.get("vote")
        if isinstance(vote, dict):
            self._vote(vote)
        print(f"Final answer ({r.strategy}{variant} on {r.model}):", file=self.out)
        print(r.final_answer or "(empty)", file=self.out)
        print(
            f"({t.calls} calls in {t.rounds} rounds · {t.prompt_tokens} tokens in, {t.completion_tokens} out"
            f" · {t.latency_s:.1f} s)",
            file=self.out,
        )


def _short(value: object, limit: int = 160) -> str:
    if isinstance(value, list):
        text = f"{len(value)}: " + " | ".join(str(v) for v in value)
    else:
        text = str(value)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
