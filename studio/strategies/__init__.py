"""Reasoning strategies: System 1, Chain-of-Thought, CoVe, S2A and BSM, each a generator of model-call steps.

The built-in strategies are registered in ``STRATEGIES`` through the ``studio.strategies`` entry points
(pyproject.toml), like a plugin's; they load on the first lookup (studio/registry.py).
"""

from studio.strategies.base import (
    STEP_NAMES,
    STRATEGIES,
    RunContext,
    RunResult,
    Step,
    StepRequest,
    Strategy,
    StrategyGen,
    StrategyParams,
    Totals,
    Trace,
    TraceEvent,
    make_strategy,
    render,
    render_messages,
    resolve_params,
)
from studio.strategies.driver import DriveJob, drive, run_jobs

__all__ = [
    "STEP_NAMES",
    "STRATEGIES",
    "DriveJob",
    "RunContext",
    "RunResult",
    "Step",
    "StepRequest",
    "Strategy",
    "StrategyGen",
    "StrategyParams",
    "Totals",
    "Trace",
    "TraceEvent",
    "drive",
    "make_strategy",
    "render",
    "render_messages",
    "resolve_params",
    "run_jobs",
]
