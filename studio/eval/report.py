"""The eval report: one row per strategy x model, one column per metric, each a value with a percentile
bootstrap CI (:func:`studio.metrics.bootstrap.bootstrap_ci`), shaped like the papers' tables.

- List questions (CoVe, Table 1): precision (micro), recall (micro), positive and negative entities per question.
- Conditions (S2A): the headline metric under each condition (no opinion, suggest correct, suggest incorrect,
  refute correct; or without and with a distractor), their mean, and the gap to the baseline condition.
- Other tasks: contains-answer and exact match, numeric accuracy, multiple-choice accuracy, a judge's score.

Parse failures: per row and parsed step name (a CoVe plan, an S2A rewrite, a BSM branch, a CoT answer...), the
share of those steps whose parser had to fall back (``parse_ok`` False in the trace; counted per run in the results
file's ``parse``): in the JSON, the CSV's ``parse_fail@<step>`` metrics, and a second Markdown table.

The bootstrap resamples *base questions*: the conditions of one question stay together, so a gap is a paired
difference. Exports: a long CSV (every statistic, including the per-condition gaps), a Markdown table (the
paper-shaped columns), a PNG plot and a JSON dump.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure

from studio.eval.data import BASELINE_CONDITIONS, EvalDataset
from studio.eval.datasets import CONDITION_LABELS
from studio.eval.metrics import STATS, TASK_STATS, Row, Stat, condition_stat, gap_stat
from studio.metrics.bootstrap import bootstrap_ci

Rows = Sequence[Row]
TASK_NAMES = {"list": "list questions", "qa": "questions", "math": "word problems", "mc": "multiple choice",
              "open": "open questions", "mixed": "mixed items", "game24": "Game-of-24 puzzles"}  # fmt: skip
MEAN_LABELS = {"none": "with opinion (mean)", "clean": "with distractor (mean)"}


@dataclass(frozen=True)
class ReportColumn:
    key: str
    label: str
    fn: Callable[[Rows], float]
    count: Callable[[Rows], int]
    rate: bool = True
    wide: bool = True  # in the Markdown table and the plot (False: CSV and JSON only)
    signed: bool = False  # a difference: printed with its sign


@dataclass(frozen=True)
class Cell:
    value: float
    lo: float
    hi: float
    n: int


@dataclass(frozen=True)
class ParseStat:
    """How often one parsed step of one report row fell back: ``failed`` of ``parsed`` steps."""

    step: str
    parsed: int
    failed: int

    @property
    def rate(self) -> float:
        return self.failed / self.parsed if self.parsed else math.nan


@dataclass
class ReportRow:
    method: str
    strategy: str
    variant: str | None
    model: str
    params_hash: str
    items: int
    errors: int
    cells: dict[str, Cell] = field(default_factory=dict)
    parse: list[ParseStat] = field(default_factory=list)  # per parsed step name, in first-seen order

    @property
    def label(self) -> str:
        return f"{self.method} @ {self.model}"


def _label(condition: str) -> str:
    return CONDITION_LABELS.get(condition, condition.replace("_", " "))


def _counter(key: str, condition: str | None = None) -> Callable[[Rows], int]:
    def count(rows: Rows) -> int:
        return sum(1 for r in rows if r["scores"].get(key) is not None
                   and (condition is None or r.get("condition") == condition))  # fmt: skip

    return count


def _plain(name: str, stat: Stat, wide: bool = True) -> ReportColumn:
    return ReportColumn(name, stat.label, stat.fn, _counter(stat.key), stat.rate, wide)


def _condition_columns(head: str, conditions: Sequence[str]) -> list[ReportColumn]:
    """The headline per condition, the mean over the non-baseline ones, and the gaps to the baseline."""
    stat = STATS[head]
    baseline = conditions[0]
    others = list(conditions[1:])
    cols = [ReportColumn(f"{head}@{c}", _label(c), condition_stat(stat, c), _counter(stat.key, c), stat.rate)
            for c in conditions]  # fmt: skip
    if len(others) > 1:
        mean = ReportColumn(f"{head}@mean", MEAN_LABELS.get(baseline, f"not {baseline} (mean)"),
                      lambda rows: _mean(condition_stat(stat, c)(rows) for c in others),
                      lambda rows: sum(_counter(stat.key, c)(rows) for c in others), stat.rate)  # fmt: skip
        cols.append(mean)
        cols += [ReportColumn(f"gap@{c}", f"gap: {_label(c)} − {_label(baseline)}", gap_stat(stat, [c], baseline),
                        _counter(stat.key, c), stat.rate, wide=False, signed=True) for c in others]  # fmt: skip
    what = (
        MEAN_LABELS.get(baseline, "others").replace(" (mean)", "") if len(others) > 1 else _label(others[0])
    )
    cols.append(ReportColumn("gap", f"gap ({what} − {_label(baseline).replace(' (oracle)', '')})",
                       gap_stat(stat, others, baseline), _counter(stat.key), stat.rate, signed=True))  # fmt: skip
    return cols


def _mean(values: Any) -> float:
    vals = list(values)
    return sum(vals) / len(vals) if vals else math.nan


def columns_for(dataset: EvalDataset, rows: Rows, metrics: Sequence[str] | None = None) -> list[ReportColumn]:
    """The report's columns: the dataset's task statistics (or ``metrics``), split by condition where the
    dataset has a baseline condition, plus the judge score when a judge scored the rows."""
    names = list(metrics) if metrics else [n for t in dataset.tasks for n in TASK_STATS.get(t, ())]
    if any("judge" in r["scores"] for r in rows) and "judge" not in names:  # a judge ran (maybe failing)
        names.append("judge")
    names = list(dict.fromkeys(names))
    unknown = [n for n in names if n not in STATS]
    if unknown:
        from studio.errors import InputError

        raise InputError(f"unknown metric {', '.join(unknown)}; metrics: {', '.join(STATS)}")
    conditions = dataset.conditions
    if not names or len(conditions) < 2 or conditions[0] not in BASELINE_CONDITIONS:
        return [_plain(n, STATS[n]) for n in names]
    head = names[0]
    return _condition_columns(head, conditions) + [_plain(n, STATS[n], wide=False) for n in names]


def _clusters(rows: Rows) -> list[list[Row]]:
    by: dict[str, list[Row]] = {}
    for r in rows:
        by.setdefault(r.get("base") or r["item"], []).append(r)
    return list(by.values())


def _cell(col: ReportColumn, rows: Rows, n_boot: int, level: float, seed: int) -> Cell:
    clusters = _clusters(rows)

    def stat(sample: Sequence[list[Row]]) -> float:
        return col.fn([r for c in sample for r in c])

    value = col.fn(rows) if rows else math.nan
    lo, hi = bootstrap_ci(clusters, stat, n_boot=n_boot, level=level, seed=seed)  # type: ignore[arg-type]
    return Cell(float(value), lo, hi, col.count(rows))


@dataclass
class Report:
    dataset: str
    task: str
    items: int
    columns: list[ReportColumn]
    rows: list[ReportRow]
    n_boot: int = 1000
    level: float = 0.95
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def title(self) -> str:
        return f"{self.dataset} ({TASK_NAMES.get(self.task, self.task)}, {self.items} items)"

    def caption(self) -> str:
        p = self.params
        decoding = (
            "greedy"
            if not p.get("temperature")
            else f"temperature {p['temperature']}, top-p {p.get('top_p')}"
        )
        tokens = f", max_new_tokens={p['max_new_tokens']} per step" if p.get("max_new_tokens") else ""
        if p.get("step_max_tokens"):
            tokens += " (lower caps for some steps)"
        if p.get("repetition_penalty", 1.0) != 1.0:
            tokens += f", repetition penalty {p['repetition_penalty']}"
        if p.get("no_repeat_ngram_size"):
            tokens += f", no repeated {p['no_repeat_ngram_size']}-grams"
        if p.get("structured"):
            tokens += ", structured steps"
        return (f"{self.title}: {decoding}{tokens}; {self.level:.0%} bootstrap CIs over base questions "
                f"({self.n_boot} resamples)")  # fmt: skip

    # -- shapes -------------------------------------------------------------------------------------------------
    def long_rows(self) -> list[dict[str, Any]]:
        """One dict per (row, statistic): the CSV and JSON form. Parse-failure rates are statistics
        ``parse_fail@<step>`` (n = the parsed steps, no CI)."""
        out = [
            {"dataset": self.dataset, "method": r.method, "strategy": r.strategy, "variant": r.variant or "",
             "model": r.model, "params_hash": r.params_hash, "metric": c.key, "label": c.label,
             **asdict(r.cells[c.key])}
            for r in self.rows
            for c in self.columns
        ]  # fmt: skip
        out += [
            {"dataset": self.dataset, "method": r.method, "strategy": r.strategy, "variant": r.variant or "",
             "model": r.model, "params_hash": r.params_hash, "metric": f"parse_fail@{p.step}",
             "label": f"parse failures: {p.step}", "value": p.rate, "lo": math.nan, "hi": math.nan, "n": p.parsed}
            for r in self.rows
            for p in r.parse
        ]  # fmt: skip
        return out

    def parse_table(self) -> list[list[str]]:
        """Parse failures: a line per (row, parsed step): method, model, step, failed / parsed, rate."""
        return [[r.method, r.model, p.step, f"{p.failed}/{p.parsed}", f"{p.rate:.0%}"]
                for r in self.rows for p in r.parse]  # fmt: skip

    def parse_markdown(self) -> str:
        """The parse-failure table in Markdown ('' when no run recorded a parsed step)."""
        rows = self.parse_table()
        if not rows:
            return ""
        lines = ["**Parse failures** (parsed steps whose parser had to fall back)", "",
                 "| method | model | step | failed / parsed | rate |", "|---|---|---|---:|---:|"]  # fmt: skip
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows]) + "\n"

    def wide_columns(self) -> list[ReportColumn]:
        return [c for c in self.columns if c.wide]

    def header(self) -> list[str]:
        extra = ["errors"] if any(r.errors for r in self.rows) else []
        return ["method", "model", "n", *extra, *(c.label for c in self.wide_columns())]

    def table(self) -> list[list[str]]:
        """The paper-shaped table: a row per method x model, "value [lo, hi]" per wide column."""
        show_errors = any(r.errors for r in self.rows)
        return [
            [r.method, r.model, str(r.items), *([str(r.errors)] if show_errors else []),
             *(fmt_cell(r.cells[c.key], c.signed) for c in self.wide_columns())]
            for r in self.rows
        ]  # fmt: skip

    def to_markdown(self) -> str:
        head = self.header()
        lines = [f"**{self.caption()}**", "", "| " + " | ".join(head) + " |",
                 "|" + "|".join("---:" if h in ("n", "errors") else "---" for h in head) + "|"]  # fmt: skip
        lines += ["| " + " | ".join(row) + " |" for row in self.table()]
        parse = self.parse_markdown()
        return "\n".join(lines) + "\n" + (f"\n{parse}" if parse else "")

    def to_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "task": self.task, "items": self.items, "caption": self.caption(),
                "n_boot": self.n_boot, "level": self.level, "params": self.params,
                "columns": [{"key": c.key, "label": c.label, "wide": c.wide} for c in self.columns],
                "rows": [{"method": r.method, "model": r.model, "items": r.items, "errors": r.errors,
                          "cells": {k: _json_cell(v) for k, v in r.cells.items()},
                          "parse_failures": {p.step: {"parsed": p.parsed, "failed": p.failed,
                                                      "rate": None if math.isnan(p.rate) else p.rate}
                                             for p in r.parse}} for r in self.rows]}  # fmt: skip

    # -- files --------------------------------------------------------------------------------------------------
    def write_csv(self, path: Path) -> Path:
        rows = self.long_rows()
        fields = ["dataset", "method", "strategy", "variant", "model", "params_hash", "metric", "label",
                  "value", "lo", "hi", "n"]  # fmt: skip
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields)
            writer.writeheader()
            writer.writerows({k: _csv_value(v) for k, v in r.items()} for r in rows)
        return path

    def save(self, directory: Path) -> dict[str, Path]:
        """table.csv, table.md, plot.png and report.json in ``directory``."""
        directory.mkdir(parents=True, exist_ok=True)
        out = {"csv": self.write_csv(directory / "table.csv"), "markdown": directory / "table.md",
               "plot": directory / "plot.png", "json": directory / "report.json"}  # fmt: skip
        out["markdown"].write_text(self.to_markdown(), encoding="utf-8")
        out["json"].write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8")
        self.figure().savefig(out["plot"], dpi=120)
        return out

    def figure(self) -> Figure:
        from studio.eval.plot import report_figure

        return report_figure(self)


def fmt_cell(cell: Cell, signed: bool = False) -> str:
    if math.isnan(cell.value):
        return "–"
    sign = "+" if signed else ""
    ci = "" if math.isnan(cell.lo) else f" [{cell.lo:{sign}.2f}, {cell.hi:{sign}.2f}]"
    return f"{cell.value:{sign}.2f}{ci}"


def _json_cell(c: Cell) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in asdict(c).items()}


def _csv_value(v: Any) -> Any:
    return "" if isinstance(v, float) and math.isnan(v) else v


def build_report(
    dataset: EvalDataset,
    rows: Rows,
    *,
    metrics: Sequence[str] | None = None,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    params: Mapping[str, Any] | None = None,
) -> Report:
    """The report over results rows (``run`` lines of the results file, judge scores merged), one row per
    (method, model, params), in the order they first appear."""
    columns = columns_for(dataset, rows, metrics)
    groups: dict[tuple[str, str, str], list[Row]] = {}
    for r in rows:
        groups.setdefault((r["method"], r["model"], r["params_hash"]), []).append(r)
    several = len({k[2] for k in groups}) > 1  # rows that differ by params only: say which params
    out = []
    for (method, model, phash), group in groups.items():
        first = group[0]
        label = f"{method} [params {phash[:6]}]" if several else method
        row = ReportRow(label, first["strategy"], first.get("variant"), model, phash,
                        len(group), sum(1 for r in group if r.get("error")))  # fmt: skip
        row.cells = {c.key: _cell(c, group, n_boot, level, seed) for c in columns}
        row.parse = parse_stats(group)
        out.append(row)
    return Report(
        dataset.name, dataset.task, len(dataset.items), columns, out, n_boot, level, dict(params or {})
    )


def parse_stats(rows: Rows) -> list[ParseStat]:
    """The parse counts of ``rows`` (results lines' ``parse``: step name -> [parsed, failed]) summed per step."""
    total: dict[str, list[int]] = {}
    for r in rows:
        for step, counts in (r.get("parse") or {}).items():
            t = total.setdefault(step, [0, 0])
            t[0] += int(counts[0])
            t[1] += int(counts[1])
    return [ParseStat(step, n, failed) for step, (n, failed) in total.items()]
