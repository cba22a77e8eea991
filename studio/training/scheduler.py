"""One job at a time per device: a small scheduler over the run dirs, with no daemon.

A queued job's run dir is complete (config and data snapshot) before it is queued, so starting it needs no
store. :func:`schedule` runs under a file lock (``runs/.scheduler.lock``) and

1. marks ``running`` jobs whose process is gone (kill -9, OOM killer, reboot) as ``failed``. A process is
   identified by pid *and* its start time and the boot id, so a recycled pid is not mistaken for the job;
2. starts the oldest queued job of each device that has a free slot.

It is called by the runner on every start, poll, cancel and resume, and by every job process as it exits, so a
queued job starts when the previous one on its device finishes even when no UI or CLI is open.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from studio.training.rundir import RunDir, now_iso, read_json, write_json

SETTINGS_FILE = "scheduler.json"  # {"jobs_per_device": N}, written by the runner
_children: dict[int, subprocess.Popen] = {}  # our own job processes, polled so that none stays a zombie


# -- processes ------------------------------------------------------------------------------------------------
def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _stat(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], start time is [19])."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return raw[raw.rfind(")") + 2 :].split()


def start_time(pid: int) -> str:
    fields = _stat(pid)
    return fields[19] if fields else ""


def _reap(pid: int, *, exiting: bool = False) -> None:
    """Collect our own child if it has exited; ``exiting`` (a zombie main thread whose other threads are still
    finishing) waits for it briefly."""
    proc = _children.get(pid)
    if proc is None:
        return
    try:
        proc.wait(timeout=5) if exiting else proc.poll()
    except subprocess.TimeoutExpired:
        return
    if proc.returncode is not None:
        del _children[pid]


def alive(status: dict[str, Any]) -> bool:
    """Whether the process recorded in ``status`` is still running (not a zombie, not a recycled pid)."""
    pid = status.get("pid")
    if not pid:
        return False
    _reap(int(pid))
    if status.get("boot_id") and status["boot_id"] != boot_id():
        return False
    fields = _stat(int(pid))
    if fields is None:
        return _pid_exists(int(pid)) if not Path("/proc").exists() else False
    if fields[0] in ("Z", "X"):  # exited; if it is our child, collect it so no zombie is left
        _reap(int(pid), exiting=True)
        return False
    return not status.get("pid_start") or fields[19] == status["pid_start"]


def _pid_exists(pid: int) -> bool:  # pragma: no cover - systems without /proc
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def job_env(threads: int, device: str = "") -> dict[str, str]:
    """The job's environment: ours, the studio importable, unbuffered output, a thread cap when set, and only
    the chosen GPU visible when the device names one (``cuda:1``)."""
    root = str(Path(__file__).resolve().parents[2])
    env = dict(os.environ)
    if device.startswith("cuda:"):
        env["CUDA_VISIBLE_DEVICES"] = device.split(":", 1)[1]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env["PYTHONUNBUFFERED"] = "1"
    env["TOKENIZERS_PARALLELISM"] = "false"
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


def spawn(run: RunDir) -> dict[str, Any]:
    """Start a queued job: its recorded command, in its own session (so cancel can kill the whole group)."""
    status = run.status()
    cmd = [str(c) for c in status["command"]]
    with open(run.log, "ab") as log:
        proc = subprocess.Popen(  # never a shell: the command is an argument list
            cmd,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            cwd=run.path,
            env=job_env(int(status.get("threads") or 0), str(status.get("device", ""))),
        )
    _children[proc.pid] = proc
    run.update_status(
        pid=proc.pid, pid_start=start_time(proc.pid), boot_id=boot_id(), attempt_started_at=now_iso(),
        started_at=status.get("started_at") or now_iso(),  # a resumed job keeps its first start time
        attempt=int(status.get("attempt", 0)) + 1, exit_code=None, error=None, finished_at=None,
    )  # fmt: skip
    # Only a still-queued job becomes running: a very quick job may already have reported its end.
    return run.update_status(state="running", only_if=("queued",))


# -- the queue ------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _lock(runs_dir: Path) -> Iterator[None]:
    runs_dir.mkdir(parents=True, exist_ok=True)
    with open(runs_dir / ".scheduler.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        yield


def run_dirs(runs_dir: Path) -> list[RunDir]:
    """Run dirs, oldest id first."""
    if not runs_dir.exists():
        return []
    found = [RunDir(p) for p in runs_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return sorted(found, key=lambda r: r.id)


def jobs_per_device(runs_dir: Path) -> int:
    return int((read_json(runs_dir / SETTINGS_FILE, {}) or {}).get("jobs_per_device", 1))


def set_jobs_per_device(runs_dir: Path, n: int) -> None:
    runs_dir.mkdir(parents=True, exist_ok=True)
    if jobs_per_device(runs_dir) != n or not (runs_dir / SETTINGS_FILE).exists():
        write_json(runs_dir / SETTINGS_FILE, {"jobs_per_device": n})


def mark_lost(run: RunDir) -> None:
    """A running job whose process is gone: failed, with the end of its log as the likely cause."""
    last = [line for line in run.tail(40).splitlines() if line.strip()]
    hint = f" Last log line: {last[-1][:300]}" if last else ""
    run.update_status(
        only_if=("running",),  # it may have reported its end since we looked
        state="failed",
        finished_at=now_iso(),
        error="the job process ended without reporting a result (killed, out of memory, or the machine "
        f"restarted).{hint}",
    )


def schedule(runs_dir: Path) -> list[int]:
    """Mark lost jobs failed, then start queued jobs where their device has a free slot; the ids started."""
    with _lock(runs_dir):
        limit = jobs_per_device(runs_dir)
        busy: Counter[str] = Counter()
        queued = []
        for run in run_dirs(runs_dir):
            status = run.status()
            if status.get("state") == "running":
                if alive(status):
                    busy[status.get("device", "cpu")] += 1
                else:
                    mark_lost(run)
            elif status.get("state") == "queued" and status.get("command"):
                queued.append((status.get("queued_at", ""), run.id, run, status.get("device", "cpu")))
        started = []
        for _, _, run, device in sorted(queued, key=lambda q: (q[0], q[1])):
            if busy[device] < limit:
                spawn(run)
                busy[device] += 1
                started.append(run.id)
        return started
