"""The per-eval results file, ``<data dir>/evals/<name>/results.jsonl``: one JSON line per finished run and per
judge score, appended as they come, so an interrupted eval loses at most the runs in flight.

Why a file: the store has no eval table, and a run row cannot be updated once written (judge scores come
later). The file is what resume and the report read. The store still holds everything needed to rebuild it:
each run row carries ``params.eval = {name, dataset, item, condition, key, scores}`` and its full trace, and
single-answer judge scores are ordinary verdicts.

A ``run`` line: ``key`` (see :func:`run_key`), ``item``, ``condition``, ``base``, ``strategy``, ``variant``,
``method``, ``model``, ``params``, ``params_hash``, ``run_id``, ``prompt_id``, ``answer``, ``scores``, ``error``,
``tokens_in``, ``tokens_out``, ``latency_s``, ``parse`` (see :func:`parse_counts`), ``at``. A ``judge`` line: ``key`` (the run's), ``judge``,
``judge_model``, ``config_hash``, ``score``, ``ok``, ``verdict_id``, ``error``, ``at``. A later line for the same
run (or the same run and judge config) replaces an earlier one.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from studio.errors import InputError

_LOCKS: dict[Path, threading.Lock] = {}
_LOCKS_GUARD = threading.Lock()
_NAME = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(name: str) -> str:
    """An eval name usable as a directory name."""
    cleaned = _NAME.sub("-", name.strip()).strip(".-")
    if not cleaned:
        raise InputError(f"an eval name needs letters or digits, not {name!r}")
    return cleaned[:100]


def params_hash(params: Mapping[str, Any]) -> str:
    return hashlib.sha1(json.dumps(dict(params), sort_keys=True).encode()).hexdigest()[:12]


def run_key(item_id: str, question: str, strategy: str, variant: str | None, model: str, phash: str) -> str:
    """What makes a run the same run: the item (and its text), the strategy and variant, the model, the params."""
    body = json.dumps([item_id, question, strategy, variant, model, phash], ensure_ascii=False)
    return hashlib.sha1(body.encode()).hexdigest()[:20]


def parse_counts(steps: Any) -> dict[str, list[int]]:
    """Per step name, [parsed steps, parse failures] of one run: the steps that recorded ``parse_ok`` (the
    parsed steps: CoVe plans and cross-checks, S2A rewrites, BSM branches, CoT answers, verdicts...), and those
    among them whose parser had to fall back (``parse_ok`` False). ``steps``: ``Step`` objects or their dicts."""
    out: dict[str, list[int]] = {}
    for s in steps or ():
        d = s if isinstance(s, Mapping) else s.to_dict()
        ok = (d.get("parsed") or {}).get("parse_ok")
        if ok is None:
            continue
        counts = out.setdefault(d.get("name", "?"), [0, 0])
        counts[0] += 1
        counts[1] += not ok
    return out


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass
class Contents:
    runs: dict[str, dict[str, Any]] = field(default_factory=dict)  # run key -> run line
    judged: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)  # (key, config hash) -> line
    skipped_lines: int = 0  # lines that did not parse (a write cut off by a crash)

    def with_judge(self, config_hash: str | None) -> list[dict[str, Any]]:
        """The run lines, with ``scores.judge`` from the judge config ``config_hash`` where it scored them."""
        out = []
        for key, run in self.runs.items():
            row = {**run, "scores": dict(run.get("scores") or {})}
            j = self.judged.get((key, config_hash or ""))
            if j is not None:
                row["scores"]["judge"] = j.get("score")
                row["judge_ok"] = j.get("ok")
            out.append(row)
        return out


class ResultsFile:
    def __init__(self, directory: Path) -> None:
        self.dir = Path(directory)
        self.path = self.dir / "results.jsonl"
        with _LOCKS_GUARD:
            self._lock = _LOCKS.setdefault(self.path.resolve(), threading.Lock())

    def append(self, record: Mapping[str, Any]) -> None:
        line = json.dumps(dict(record), ensure_ascii=False, default=str) + "\n"
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            with open(self.path, "a+b") as f:
                f.seek(0, 2)
                if f.tell():  # a crash can leave a line without its newline: never glue onto it
                    f.seek(-1, 2)
                    if f.read(1) != b"\n":
                        f.write(b"\n")
                f.write(line.encode("utf-8"))

    def read(self) -> Contents:
        out = Contents()
        if not self.path.exists():
            return out
        with self._lock:
            text = self.path.read_text(encoding="utf-8", errors="replace")
        for line in text.splitlines():
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:
                out.skipped_lines += 1
                continue
            if rec.get("kind") == "run":
                out.runs[rec["key"]] = rec
            elif rec.get("kind") == "judge":
                out.judged[(rec["key"], rec.get("config_hash", ""))] = rec
        return out
