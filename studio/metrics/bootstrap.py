"""Bootstrap confidence intervals and per-group breakdowns (by model, strategy, prompt set).

A statistic is any function of a list of rows; the CI is the percentile bootstrap over the rows. A row of a
pairwise item belongs to the groups of both its answers: with ``by="model"`` a row with ``model_a="x"`` and
``model_b="y"`` counts towards x and towards y (once if they are the same).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

Row = Mapping[str, Any]
Stat = Callable[[Sequence[Row]], float]


@dataclass(frozen=True)
class Estimate:
    group: str
    value: float
    lo: float
    hi: float
    n: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def bootstrap_ci(
    rows: Sequence[Row], stat: Stat, *, n_boot: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``stat`` over ``rows``; NaNs when fewer than 2 rows.

    Not scipy.stats.bootstrap: a resample on which the statistic is undefined (S2 of a resample of ties only)
    gives NaN, and scipy's percentile then returns NaN for the whole CI; here such resamples are skipped.
    """
    if len(rows) < 2:
        return math.nan, math.nan
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(rows), size=(n_boot, len(rows)))
    values = np.array([stat([rows[i] for i in sample]) for sample in idx], dtype=float)
    if np.isnan(values).all():
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    lo, hi = np.nanpercentile(values, [tail, 100 - tail])
    return float(lo), float(hi)


def estimate(
    rows: Sequence[Row],
    stat: Stat,
    group: str = "all",
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    value = stat(rows) if rows else math.nan
    lo, hi = bootstrap_ci(rows, stat, n_boot=n_boot, level=level, seed=seed)
    return Estimate(group, float(value), lo, hi, len(rows))


def groups_of(row: Row, by: str | Callable[[Row], Sequence[Hashable]]) -> list[str]:
    """The groups a row belongs to: ``row[by]``, or both ``row[by_a]`` and ``row[by_b]``, or ``by(row)``."""
    if callable(by):
        keys = list(by(row))
    elif by in row:
        keys = [row[by]]
    elif f"{by}_a" in row or f"{by}_b" in row:
        keys = [row.get(f"{by}_a"), row.get(f"{by}_b")]
    else:
        keys = []
    out = []
    for k in keys:
        label = "(none)" if k is None or k == "" else str(k)
        if label not in out:
            out.append(label)
    return out or ["(none)"]


def breakdown(
    rows: Sequence[Row],
    stat: Stat,
    by: str | Callable[[Row], Sequence[Hashable]] | None = None,
    *,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> list[Estimate]:
    """``stat`` with a bootstrap CI over all rows (group "all"), then per group of ``by`` (sorted by name)."""
    out = [estimate(rows, stat, "all", n_boot=n_boot, level=level, seed=seed)]
    if by is None:
        return out
    groups: dict[str, list[Row]] = {}
    for r in rows:
        for g in groups_of(r, by):
            groups.setdefault(g, []).append(r)
    for g in sorted(groups):
        out.append(estimate(groups[g], stat, g, n_boot=n_boot, level=level, seed=seed))
    return out
