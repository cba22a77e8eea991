"""Reasoning strategies: System 1, Chain-of-Thought, CoVe, S2A and BSM, each a generator of model-call steps.

Importing this package registers the built-in strategies in ``STRATEGIES``.
"""

from studio.strategies import bsm, cot, cove, s2a, system1  # noqa: F401 - registration side effects
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
)
from studio.strategies.driver import Job, drive, run_jobs

__all__ = [
    "STEP_NAMES",
    "STRATEGIES",
    "Job",
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
    "run_jobs",
]
