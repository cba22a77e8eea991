"""The job process: ``python -m studio.training <run dir>/config.yaml``.

It reads the config and the data snapshot from the run dir, trains, and reports through files only: state and
progress in ``status.json``, metrics in ``metrics.jsonl``, the models it made in ``result.json``. An error is
reported as ``failed`` with a one-line message (out of memory and a full disk are named); the traceback goes to
the log. As it exits, it starts the next queued job on its device.
"""

from __future__ import annotations

import os
import sys
import traceback
from pathlib import Path
from typing import Any

from studio.training.launch import is_main_process
from studio.training.rundir import RunDir, now_iso


def load_job(config_path: Path) -> tuple[Any, Any, dict[str, Any]]:
    """(trainer class, config, settings) from a run dir's config.yaml."""
    from studio.training import TRAINERS

    doc = RunDir(config_path.parent).read_config()
    cls = TRAINERS.get(doc["method"])
    return cls, cls.Config.from_dict(doc["config"]), doc.get("settings", {})


def run(config_path: Path) -> int:
    """Train the job in ``config_path``'s run dir; 0 on success, 1 on failure."""
    run_dir = RunDir(config_path.parent)
    main = is_main_process()
    if main:
        run_dir.update_status(only_if=("queued", "running"), state="running", job_pid=os.getpid())
    try:
        cls, cfg, settings = load_job(config_path)
        from studio.training.common import prepare_torch

        prepare_torch(cfg.threads or int(settings.get("threads") or 0))
        result = cls(cfg, run_dir, settings).train()
        print(f"[studio] {process_group()} finished training", flush=True)
        if main:
            for entry in result.get("models", []):
                run_dir.announce_model(entry)
            run_dir.write_result({**result, "peak_rss_mb": peak_rss_mb()})
            run_dir.update_status(state="succeeded", finished_at=now_iso(), error=None)
        return 0
    except BaseException as e:  # every failure must reach status.json
        traceback.print_exc()
        if main:
            _report_failure(run_dir, e)
        return 130 if isinstance(e, KeyboardInterrupt) else 1
    finally:
        if main:
            _start_next(run_dir)


def process_group() -> str:
    """This process's place in an ``accelerate launch`` ("rank 1 of 2 (gloo)"), as torch.distributed sees it;
    every rank logs it, so the log shows that all of them trained in one group."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return "rank 0 of 1 (one process)"
    return f"rank {dist.get_rank()} of {dist.get_world_size()} ({dist.get_backend()})"


def peak_rss_mb() -> float:
    """This process's peak resident memory (Linux reports KiB)."""
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def _report_failure(run_dir: RunDir, e: BaseException) -> None:
    from studio.training.common import describe_error

    try:
        run_dir.update_status(state="failed", finished_at=now_iso(), error=describe_error(e))
    except OSError as write_error:  # a full disk: the runner will see the process gone and say so
        print(f"[studio] could not record the failure: {write_error}", file=sys.stderr)


def _start_next(run_dir: RunDir) -> None:
    from studio.training.scheduler import schedule

    try:
        schedule(run_dir.path.parent)
    except Exception as e:  # the runner's next poll starts it instead
        print(f"[studio] could not start the next queued job: {e}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not Path(args[0]).is_file():
        print("usage: python -m studio.training <run dir>/config.yaml", file=sys.stderr)
        return 2
    return run(Path(args[0]).resolve())
