"""``studio train`` and ``studio jobs``: fine-tuning jobs from the terminal (see ``studio.training``).

``studio train METHOD`` checks the data, queues a background job and returns (``--wait`` follows it to the
end). ``studio jobs`` lists, shows, cancels and resumes jobs, and tails their logs. Jobs are separate processes:
a finished or interrupted CLI does not stop them. When the web app holds the store, ``studio jobs`` still works
from the run dirs (the store catches up when the app next syncs), and ``studio train`` asks you to use the app.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.cli.store import add_filter_flags, filters_from_args
from studio.errors import StudioError

if TYPE_CHECKING:
    from studio.context import AppContext
    from studio.training import Runner, TrainingJob


def register(sub: argparse._SubParsersAction) -> None:
    from studio.training import TRAINERS

    p = sub.add_parser(
        "train", help="fine-tune on the store's preferences: DPO, reward, PPO, RLOO, KTO, Self-Rewarding"
    )
    p.add_argument("method", nargs="?", choices=TRAINERS.names(), help="training method")
    p.add_argument(
        "--set", dest="values", action="append", default=[], metavar="KEY=VALUE",
        help="a setting (see --settings), or any TRL config field, e.g. --set max_steps=50 --set beta=0.2",
    )  # fmt: skip
    p.add_argument("--settings", action="store_true", help="list METHOD's settings with defaults, then exit")
    p.add_argument("--list", action="store_true", help="list the methods, then exit")
    p.add_argument("--preview", action="store_true", help="show the data the job would use, then exit")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends (exit 1 if it fails)")
    p.add_argument("--json", action="store_true", help="print the job (or preview) as JSON")
    add_filter_flags(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("jobs", help="list, show, cancel or resume training jobs, and read their logs")
    jsub = p.add_subparsers(dest="jobs_cmd", metavar="ACTION")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=cmd_jobs_list)
    q = jsub.add_parser("list", help="every job, newest first (default)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_jobs_list)
    q = jsub.add_parser("show", help="one job: state, progress, latest metrics, end of the log")
    q.add_argument("id", type=int)
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_jobs_show)
    q = jsub.add_parser("logs", help="the end of a job's log")
    q.add_argument("id", type=int)
    q.add_argument("-n", "--lines", type=int, default=50, help="lines to show (default 50)")
    q.add_argument("-f", "--follow", action="store_true", help="keep printing until the job ends")
    q.set_defaults(func=cmd_jobs_logs)
    q = jsub.add_parser("cancel", help="cancel a queued job or kill a running one (its whole process group)")
    q.add_argument("id", type=int)
    q.set_defaults(func=cmd_jobs_cancel)
    q = jsub.add_parser("resume", help="queue a failed or cancelled job again, from its last checkpoint")
    q.add_argument("id", type=int)
    q.add_argument("--wait", action="store_true", help="follow the job until it ends")
    q.set_defaults(func=cmd_jobs_resume)
    q = jsub.add_parser("command", help="print a job's command line (multinode: the one for --rank R)")
    q.add_argument("id", type=int)
    q.add_argument("--rank", type=int, help="machine rank (multinode)")
    q.set_defaults(func=cmd_jobs_command)
    from studio.cli import add_settings_flags

    for q in list(jsub.choices.values()):
        add_settings_flags(q)


# -- the runner, with or without the store ---------------------------------------------------------------------
@contextmanager
def runner(ctx: AppContext, *, need_store: bool) -> Iterator[Runner]:
    """The context's runner, on the data dir's store; if another process holds the store and ``need_store``
    is False, a runner on the run dirs alone (with a note on stderr). The command's context closes the store."""
    from storage import StoreError, StoreLocked

    try:
        r = ctx.runner
    except StoreLocked as e:
        if need_store:
            raise StudioError(f"{e}. Start training from the web app's Train tab while it runs.") from None
        print(f"note: {e}; showing the run dirs (the store syncs when that process polls)", file=sys.stderr)
        r = ctx.runner_without_store()
    except StoreError as e:
        raise StudioError(str(e)) from None
    yield r


# -- studio train ----------------------------------------------------------------------------------------------
def cmd_train(args: argparse.Namespace, ctx: AppContext) -> int:
    from studio.training import methods, parse_sets

    if args.list or not args.method:
        for m in methods():
            print(f"{m.name:<15} {m.description}\n{'':<15} {m.paper}")
        return 0
    if args.settings:
        return print_settings(args.method)
    values = parse_sets(args.values)
    with runner(ctx, need_store=True) as r:
        if args.preview:
            return print_preview(r.preview(args.method, values, filters=filters_from_args(args)), args.json)
        job = r.start(args.method, values, filters=filters_from_args(args))
        if not args.wait:
            print_job_started(job, args.json)
            return 0
        print(f"job {job.id} ({job.method}) {job.state}; run dir {job.run_dir}", file=sys.stderr)
        return follow(r, job.id, args.json)


def print_settings(method: str) -> int:
    from studio.training import describe

    info = describe(method)
    print(f"{info.name}: {info.description}\n  {info.paper}\n")
    for group in ("method", "shared"):
        print(f"{method} settings:" if group == "method" else "shared settings:")
        for f in (f for f in info.fields if f.group == group):
            choices = f" [{' | '.join(f.choices)}]" if f.choices else ""
            print(f"  {f.name} = {json.dumps(f.default)}{choices}\n      {f.help}")
    print("\nAny other field of the TRL config can be set too (--set warmup_steps=2).")
    return 0


def print_preview(preview: Any, as_json: bool) -> int:
    if as_json:
        print(json.dumps(preview.to_dict(), indent=2, ensure_ascii=False, default=str))
        return 0 if preview.ok else 2
    counts = ", ".join(f"{k} {v}" for k, v in preview.counts.items() if k != preview.kind)
    print(f"{preview.method}: {preview.count} {preview.kind}" + (f" ({counts})" if counts else ""))
    for row in preview.rows:
        print("  " + " | ".join(f"{k}: {_short(v)}" for k, v in row.items()))
    for note in preview.notes:
        print(f"note: {note}")
    for problem in preview.problems:
        print(f"problem: {problem}")
    return 0 if preview.ok else 2


def print_job_started(job: TrainingJob, as_json: bool) -> None:
    if as_json:
        print(json.dumps(job.to_dict(), indent=2))
        return
    print(f"job {job.id} ({job.method}) {job.state}; run dir {job.run_dir}")
    print(f"follow it with `studio jobs logs {job.id} -f`; it will be registered as {job.output_name!r}")


def follow(r: Runner, job_id: int, as_json: bool, poll: float = 2.0) -> int:
    """Print progress until the job ends; Ctrl-C stops following, not the job."""
    offset = 0
    try:
        while True:
            job = r.wait(job_id, timeout=poll, poll=poll)
            rows, offset = r.rundir(job_id).read_metrics(offset)
            for row in rows:
                print(_metrics_line(row), file=sys.stderr)
            if job.done:
                break
    except KeyboardInterrupt:
        print(
            f"\nstopped following; job {job_id} keeps running (`studio jobs cancel {job_id}` stops it)",
            file=sys.stderr,
        )
        return 130
    print(json.dumps(job.to_dict(), indent=2) if as_json else _summary(job))
    return 0 if job.state == "succeeded" else 1


def _metrics_line(row: dict[str, Any]) -> str:
    keys = [
        k
        for k in (
            "loss",
            "rewards/margins",
            "rewards/accuracies",
            "reward",
            "kl",
            "accuracy",
            "eval_accuracy",
        )
        if k in row
    ]
    keys = keys or [k for k in row if k not in ("step", "time")][:4]
    return f"step {row['step']}: " + ", ".join(f"{k} {row[k]:.4g}" for k in keys)


def _summary(job: TrainingJob) -> str:
    text = f"job {job.id} ({job.method}) {job.state}"
    if job.error:
        text += f": {job.error}"
    if job.models:
        text += f"\nregistered: {', '.join(job.models)}"
    return text


def _short(value: Any, width: int = 60) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


# -- studio jobs -----------------------------------------------------------------------------------------------
def cmd_jobs_list(args: argparse.Namespace, ctx: AppContext) -> int:
    with runner(ctx, need_store=False) as r:
        jobs = r.refresh() if r.store is not None else r.list()
    if getattr(args, "json", False):
        print(json.dumps([j.to_dict() for j in jobs], indent=2))
        return 0
    if not jobs:
        print("no training jobs yet; start one with `studio train METHOD`")
        return 0
    print(f"{'ID':>4}  {'METHOD':<15} {'STATE':<10} {'STEP':>9}  {'MODEL':<24} STARTED")
    for j in jobs:
        step = f"{j.step}/{j.max_steps}" if j.max_steps else str(j.step or "")
        print(f"{j.id:>4}  {j.method:<15} {j.state:<10} {step:>9}  {j.output_name:<24} {j.started_at or ''}")
        if j.error:
            print(f"{'':>6}error: {_short(j.error, 100)}")
    return 0


def cmd_jobs_show(args: argparse.Namespace, ctx: AppContext) -> int:
    with runner(ctx, need_store=False) as r:
        job = r.sync(args.id)
        series = r.metrics(args.id)
        log = r.logs(args.id, 8)
    latest = {name: points[-1][1] for name, points in series.items()}
    if args.json:
        print(json.dumps({**job.to_dict(), "latest_metrics": latest}, indent=2))
        return 0
    print(_summary(job))
    print(
        f"run dir: {job.run_dir}\nbase: {job.base_model}  device: {job.device}  step: {job.step}/{job.max_steps}"
    )
    for name in sorted(latest):
        print(f"  {name}: {latest[name]:.5g}")
    print("log:\n" + log)
    return 0


def cmd_jobs_logs(args: argparse.Namespace, ctx: AppContext) -> int:
    with runner(ctx, need_store=False) as r:
        print(r.logs(args.id, args.lines))
        if not args.follow:
            return 0
        log = r.rundir(args.id).log
        shown = log.stat().st_size if log.exists() else 0
        while True:
            job = r.wait(args.id, timeout=1.0, poll=0.5)
            shown = _print_new(log, shown)
            if job.done:
                print(_summary(job), file=sys.stderr)
                return 0


def _print_new(path: Path, offset: int) -> int:
    if not path.exists():
        return offset
    with open(path, "rb") as fh:
        fh.seek(offset)
        data = fh.read()
    sys.stdout.write(data.decode("utf-8", errors="replace"))
    sys.stdout.flush()
    return offset + len(data)


def cmd_jobs_cancel(args: argparse.Namespace, ctx: AppContext) -> int:
    with runner(ctx, need_store=False) as r:
        print(_summary(r.cancel(args.id)))
    return 0


def cmd_jobs_resume(args: argparse.Namespace, ctx: AppContext) -> int:
    with runner(ctx, need_store=False) as r:
        job = r.resume(args.id)
        print(f"job {job.id} ({job.method}) {job.state}: {job.resume_note}", file=sys.stderr)
        return follow(r, job.id, False) if args.wait else 0


def cmd_jobs_command(args: argparse.Namespace, ctx: AppContext) -> int:
    with runner(ctx, need_store=False) as r:
        print(shlex.join(r.command(args.id, machine_rank=args.rank)))
    return 0
