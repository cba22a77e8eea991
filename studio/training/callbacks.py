"""The metrics callback: every ``on_log`` goes to ``metrics.jsonl`` in the run dir (and to a store, if given).

The job process does not open the store (the UI server holds it; DuckDB allows one writer process), so in a job
the sink is the file, and the runner copies new lines into the store when it syncs. A caller that owns the store
and trains in-process (a notebook, a script) can pass ``store`` to write both at once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from typing import Any, Protocol

from transformers import TrainerCallback

from studio.training.rundir import RunDir


class MetricsSink(Protocol):
    def append_metrics(self, training_run_id: int, step: int, values: Mapping[str, float]) -> None: ...


def numeric(logs: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of a log record (TRL also logs strings, lists and tables)."""
    out = {}
    for name, value in logs.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            continue
        if math.isfinite(float(value)):
            out[name] = float(value)
    return out


class MetricsCallback(TrainerCallback):
    """Writes metrics and progress. ``aliases`` adds canonical names the UI plots for every method
    (``{"loss": "loss/policy_avg"}`` gives PPO a ``loss`` curve); ``step_offset`` continues the step count
    across the DPO rounds of a Self-Rewarding loop."""

    def __init__(
        self,
        run: RunDir,
        *,
        aliases: Mapping[str, str] | None = None,
        step_offset: int = 0,
        store: MetricsSink | None = None,
        run_id: int | None = None,
        enabled: bool = True,
    ) -> None:
        self.run = run
        self.aliases = dict(aliases or {})
        self.step_offset = step_offset
        self.store = store
        self.run_id = run_id
        self.enabled = enabled
        self._last_progress = 0.0

    def on_log(
        self, args: Any, state: Any, control: Any, logs: Mapping[str, Any] | None = None, **_: Any
    ) -> None:
        if not self.enabled or not logs:
            return
        values = numeric(logs)
        for alias, source in self.aliases.items():
            if source in values and alias not in values:
                values[alias] = values[source]
        if not values:
            return
        step = self.step_offset + int(state.global_step)
        self.run.append_metrics(step, values)
        if self.store is not None and self.run_id is not None:
            self.store.append_metrics(self.run_id, step, values)

    def on_step_end(self, args: Any, state: Any, control: Any, **_: Any) -> None:
        if not self.enabled or time.monotonic() - self._last_progress < 1.0:
            return
        self._last_progress = time.monotonic()
        self.run.update_status(
            only_if=("running",), step=self.step_offset + int(state.global_step),
            max_steps=self.step_offset + int(state.max_steps or 0),
        )  # fmt: skip
