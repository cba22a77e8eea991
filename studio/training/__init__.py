"""Fine-tuning from the store's preferences, as background jobs: DPO, reward model, PPO, RLOO, KTO, Self-Rewarding.

One config dataclass and one trainer per method, registered in ``TRAINERS``; a :class:`Runner` starts each job
as its own process and syncs its run dir into the store. See ``studio/training/README.md``.
"""

from studio.training.base import TRAINERS, Trainer
from studio.training.config import FieldInfo, TrainConfig, parse_sets
from studio.training.data import DataPreview
from studio.training.launch import PROFILES, launch_command
from studio.training.rundir import STATES, STORE_STATUS, RunDir
from studio.training.runner import MethodInfo, Runner, TrainingJob, describe, methods

__all__ = [
    "PROFILES",
    "STATES",
    "STORE_STATUS",
    "TRAINERS",
    "DataPreview",
    "FieldInfo",
    "TrainingJob",
    "MethodInfo",
    "RunDir",
    "Runner",
    "TrainConfig",
    "Trainer",
    "describe",
    "launch_command",
    "methods",
    "parse_sets",
]
