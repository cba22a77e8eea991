"""The run directory: everything a job reads and writes, so that the job never opens the store.

``<data dir>/runs/<id>/``:

| file | written by | what |
|---|---|---|
| ``config.yaml`` | runner | method, studio config, settings the job needs |
| ``train.parquet`` / ``prompts.parquet`` / ``seed_prompts.jsonl`` / ``human_pairs.jsonl`` | runner | data snapshot |
| ``status.json`` | scheduler, job, runner | state, pid, times, step, error (atomic replace, under a lock) |
| ``train.log`` | job (stdout + stderr) | the log |
| ``metrics.jsonl`` | job | one line per log event: ``{"step": N, "time": t, name: value...}`` |
| ``checkpoints/`` | job | TRL checkpoints, for resume |
| ``adapter/`` or ``model/`` | job | the trained LoRA adapter, or full weights |
| ``result.json`` | job | final figures and the models made |
| ``models.jsonl`` | job | each finished model, as soon as it is saved; the runner registers it |
| ``iter_<t>/`` | job (Self-Rewarding) | generated prompts, answers, verdicts, pairs, M_{t+1}'s adapter |
| ``sync.json`` | runner | what has been copied into the store already |
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

#: A progress-bar line in a log: tqdm's ``| 3/10 [00:01<00:02`` or a rate such as ``2.5it/s`` / ``1.3s/it``.
PROGRESS_BAR = re.compile(r"\|\s*\d+/\d+\s*\[[\d:]+<|\d(?:\.\d+)?\s*(?:it/s|s/it)\b|^\s*\d+it \[")

#: Job states, as the run dir records them.
STATES = ("queued", "running", "succeeded", "failed", "cancelled")
TERMINAL = ("succeeded", "failed", "cancelled")
#: The one place where job states meet the store's training statuses.
STORE_STATUS = {
    "queued": "pending",
    "running": "running",
    "succeeded": "done",
    "failed": "failed",
    "cancelled": "cancelled",
}


def now_iso() -> str:
    return datetime.now(timezone.utc).replace(tzinfo=None).isoformat(timespec="seconds")


def write_atomic(path: Path, text: str) -> None:
    """Write then rename: a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def write_json(path: Path, value: Any) -> None:
    write_atomic(path, json.dumps(value, ensure_ascii=False, indent=1, default=str))


def read_json(path: Path, default: Any = None) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, json.JSONDecodeError):
        return default


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_atomic(path, "".join(json.dumps(r, ensure_ascii=False, default=str) + "\n" for r in rows))


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def _last_redraw(line: str) -> str:
    """What a terminal shows of a line that redraws itself with carriage returns: its last non-empty part."""
    parts = [part for part in line.split("\r") if part]
    return parts[-1] if parts else ""


class RunDir:
    """Paths and file verbs of one run directory."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    @property
    def id(self) -> int:
        return int(self.path.name)

    config = property(lambda self: self.path / "config.yaml")
    status_file = property(lambda self: self.path / "status.json")
    log = property(lambda self: self.path / "train.log")
    metrics_file = property(lambda self: self.path / "metrics.jsonl")
    checkpoints = property(lambda self: self.path / "checkpoints")
    adapter = property(lambda self: self.path / "adapter")
    model = property(lambda self: self.path / "model")
    result_file = property(lambda self: self.path / "result.json")
    sync_file = property(lambda self: self.path / "sync.json")

    def iteration(self, t: int) -> Path:
        return self.path / f"iter_{t}"

    # -- config ------------------------------------------------------------------------------------------------
    def write_config(self, doc: dict[str, Any]) -> None:
        write_atomic(self.config, yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))

    def read_config(self) -> dict[str, Any]:
        return yaml.safe_load(self.config.read_text(encoding="utf-8"))

    # -- status ------------------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        with open(self.path / ".status.lock", "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            yield

    def status(self) -> dict[str, Any]:
        return read_json(self.status_file, {}) or {}

    def update_status(
        self, *, force: bool = False, only_if: tuple[str, ...] | None = None, **changes: Any
    ) -> dict[str, Any]:
        """Merge ``changes`` into status.json, unless ``only_if`` names states and the current one is not among
        them (compare-and-set). A cancelled run stays cancelled unless ``force``: a job that was killed while
        it wrote cannot undo its cancellation."""
        with self._locked():
            current = self.status()
            state = current.get("state", "queued")
            if only_if is not None and state not in only_if:
                return current
            if state == "cancelled" and not force and "state" in changes:
                return current
            current.update(changes)
            write_json(self.status_file, current)
            return current

    @property
    def state(self) -> str:
        return str(self.status().get("state", "queued"))

    # -- metrics -----------------------------------------------------------------------------------------------
    def append_metrics(self, step: int, values: dict[str, float]) -> None:
        line = json.dumps({"step": int(step), "time": round(time.time(), 3), **values}, allow_nan=True)
        with open(self.metrics_file, "a", encoding="utf-8") as fh:
            fh.write(line + "\n")

    def read_metrics(self, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
        """Complete lines from byte ``offset`` on, and the offset after them (a line being written is left)."""
        if not self.metrics_file.exists():
            return [], offset
        with open(self.metrics_file, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
        end = data.rfind(b"\n") + 1
        rows = [json.loads(line) for line in data[:end].splitlines() if line.strip()]
        return rows, offset + end

    def metric_series(self) -> dict[str, list[tuple[int, float]]]:
        """name -> [(step, value)], one value per step (a resumed run's replayed steps: the latest wins)."""
        series: dict[str, dict[int, float]] = {}
        for row in self.read_metrics()[0]:
            for name, value in row.items():
                if name not in ("step", "time") and isinstance(value, int | float):
                    series.setdefault(name, {})[int(row["step"])] = float(value)
        return {name: sorted(points.items()) for name, points in series.items()}

    # -- log ---------------------------------------------------------------------------------------------------
    def tail(self, lines: int = 200, *, bars: bool = False) -> str:
        """The last ``lines`` lines of the log, carriage-return redraws collapsed; progress bars (tqdm's
        ``50%|█████| 1/2 [00:01<00:01, 1.2s/it]`` and ``it/s`` lines) are left out unless ``bars``."""
        if not self.log.exists():
            return ""
        with open(self.log, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 256 * 1024))
            text = fh.read().decode("utf-8", errors="replace")
        # a line is what ends in "\n"; within it, a "\r" redraw replaces what came before (str.splitlines would
        # also split at every "\r", showing each redraw as a line of its own)
        rows = [_last_redraw(row) for row in text.replace("\r\n", "\n").split("\n")]
        if text.endswith("\n"):
            rows.pop()
        if not bars:
            rows = [row for row in rows if not PROGRESS_BAR.search(row)]
        return "\n".join(rows[-lines:])

    # -- result ------------------------------------------------------------------------------------------------
    def result(self) -> dict[str, Any]:
        return read_json(self.result_file, {}) or {}

    def write_result(self, result: dict[str, Any]) -> None:
        write_json(self.result_file, result)

    def announce_model(self, entry: dict[str, Any]) -> None:
        """A finished model for the runner to register (``models.jsonl``); a name is announced once."""
        path = self.path / "models.jsonl"
        if any(m["name"] == entry["name"] for m in read_jsonl(path)):
            return
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(entry, ensure_ascii=False, default=str) + "\n")

    def newest_checkpoint(self) -> tuple[Path, int] | None:
        """The checkpoint a resume continues from, with its step: the newest (:meth:`last_checkpoint`) under
        ``checkpoints/``, or under the latest unfinished Self-Rewarding iteration that has one; None when none
        is saved."""
        iterations = sorted(
            (int(p.name.split("_")[1]), p / "checkpoints")
            for p in self.path.glob("iter_*")
            if p.name.split("_")[1].isdigit() and not (p / "done.json").exists()
        )
        for where in [*(w for _, w in reversed(iterations)), self.checkpoints]:
            found = self.last_checkpoint(where)
            if found:
                return Path(found), int(found.rsplit("-", 1)[-1])
        return None

    def finished_iterations(self) -> int:
        """How many Self-Rewarding iterations are complete (a resume keeps them)."""
        return sum(1 for p in self.path.glob("iter_*") if (p / "done.json").exists())

    def last_checkpoint(self, where: Path | None = None) -> str | None:
        """The newest ``checkpoint-N`` dir under ``where`` (default ``checkpoints/``) that has trainer state."""
        base = where or self.checkpoints
        found = [
            (int(p.name.split("-")[-1]), p)
            for p in base.glob("checkpoint-*")
            if p.name.split("-")[-1].isdigit() and (p / "trainer_state.json").exists()
        ]
        return str(max(found)[1]) if found else None
