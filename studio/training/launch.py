"""The job's command line: ``python -m studio.training CONFIG``, or ``accelerate launch`` with a profile.

Profiles (``launcher`` in the config) and their files in ``accelerate/``:

- ``local``: one process, no accelerate (CPU, or one GPU);
- ``ddp``: data parallel over the GPUs of one machine, or over gloo on a CPU-only one (``ddp.yaml``);
- ``zero3``: DeepSpeed ZeRO-3 sharding (``zero3.yaml``; needs ``deepspeed``; ``zero2.yaml`` is ZeRO-2);
- ``fsdp``: PyTorch FSDP2 (``fsdp.yaml``);
- ``multinode``: DDP over several machines (``multinode.yaml``); each machine runs the command with its rank.

The profiles leave precision to the job's TRL config and pick a free port on one machine. What each path needs
and which are tested: ``docs/scaleout.md``.

Commands are argument lists, never shell strings. accelerate runs as ``python -m accelerate.commands.launch``
with the same interpreter, so no ``accelerate`` script needs to be on PATH.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from studio.errors import InputError
from studio.training.config import LAUNCHERS, TrainConfig

CONFIG_DIR = Path(__file__).parent / "accelerate"
PROFILES = {name: CONFIG_DIR / f"{name}.yaml" for name in LAUNCHERS if name != "local"}


def accelerate_config(launcher: str) -> Path:
    """The config file of an accelerate profile."""
    if launcher not in PROFILES:
        raise InputError(f"launcher is one of {', '.join(LAUNCHERS)}, not {launcher!r}")
    return PROFILES[launcher]


def launch_command(
    config_file: str | Path, cfg: TrainConfig, *, machine_rank: int | None = None, python: str | None = None
) -> list[str]:
    """The argv that runs the job whose config is ``config_file`` (``machine_rank`` overrides the config's)."""
    python = python or sys.executable
    job = ["-m", "studio.training", str(config_file)]
    if cfg.launcher == "local":
        return [python, *job]
    cmd = [python, "-m", "accelerate.commands.launch", "--config_file", str(accelerate_config(cfg.launcher))]
    total = cfg.num_processes * (cfg.num_machines if cfg.launcher == "multinode" else 1)
    cmd += ["--num_processes", str(total)]
    if cfg.launcher == "multinode":
        cmd += multinode_flags(cfg, cfg.machine_rank if machine_rank is None else machine_rank)
    return cmd + job


def multinode_flags(cfg: TrainConfig, rank: int) -> list[str]:
    if cfg.num_machines < 2:
        raise InputError("launcher multinode needs num_machines >= 2")
    if not cfg.main_process_ip:
        raise InputError("launcher multinode needs main_process_ip (the rank-0 machine's address)")
    if not 0 <= rank < cfg.num_machines:
        raise InputError(f"machine_rank must be in 0..{cfg.num_machines - 1}, not {rank}")
    return [
        "--num_machines", str(cfg.num_machines), "--machine_rank", str(rank),
        "--main_process_ip", cfg.main_process_ip, "--main_process_port", str(cfg.main_process_port),
    ]  # fmt: skip


def is_main_process() -> bool:
    """Rank 0 of an accelerate launch (or a plain process): the one that writes status, metrics and results."""
    return os.environ.get("RANK", "0") == "0" and os.environ.get("LOCAL_RANK", "0") == "0"
