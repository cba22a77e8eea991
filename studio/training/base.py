"""The ``Trainer`` base class and the ``TRAINERS`` registry: one file per method, one ``studio.trainers`` entry point.

A trainer has two sides:

- **parent side** (the UI server or CLI, which own the store): :meth:`Trainer.preview` counts the data and
  names problems; :meth:`Trainer.snapshot` writes the data into the run dir; :meth:`Trainer.resolve` fills in
  paths (the base model's weights, a reward model); :meth:`Trainer.import_results` copies what a job made
  (e.g. Self-Rewarding's judged pairs) into the store when the runner syncs. No torch is imported here.
- **job side** (``python -m studio.training``): :meth:`Trainer.train` trains from the run dir and returns the
  result (the models to register). It never opens the store.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from studio.errors import InputError
from studio.registry import Registry
from studio.training.config import TrainConfig
from studio.training.data import DataPreview
from studio.training.rundir import RunDir, read_json, write_json

if TYPE_CHECKING:
    from storage import Store
    from studio.models import ModelRegistry


class Trainer:
    """Base class. Subclasses set the class attributes and implement the data hooks and :meth:`train`."""

    registered_name: ClassVar[str] = ""
    Config: ClassVar[type[TrainConfig]] = TrainConfig
    description: ClassVar[str] = ""
    paper: ClassVar[str] = ""
    #: what the job produces: a chat "policy" (registered for the Arena) or a "reward" model (lineage only)
    produces: ClassVar[str] = "policy"
    #: the curves the Train tab plots, by the names in metrics.jsonl
    curves: ClassVar[tuple[str, ...]] = ("loss",)
    #: canonical names added to the logged metrics, e.g. {"loss": "loss/policy_avg"}
    aliases: ClassVar[dict[str, str]] = {}
    #: whether Trainer.train can continue from a checkpoint
    resumable: ClassVar[bool] = True

    def __init__(self, config: TrainConfig, run: RunDir, settings: dict[str, Any] | None = None) -> None:
        self.config = config
        self.run = run
        self.settings = settings or {}

    @classmethod
    def make_config(cls, values: dict[str, Any] | None = None) -> TrainConfig:
        return cls.Config.from_dict(values or {})

    # -- parent side --------------------------------------------------------------------------------------------
    @classmethod
    def preview(cls, store: Store, config: TrainConfig, limit: int = 5) -> DataPreview:
        return cls._data(store, config, limit)[0]

    @classmethod
    def _data(cls, store: Store, config: TrainConfig, limit: int) -> tuple[DataPreview, Any]:
        """(preview, the snapshot to write); subclasses implement."""
        raise NotImplementedError

    @classmethod
    def snapshot(cls, store: Store, config: TrainConfig, run: RunDir) -> DataPreview:
        """Write the training data into the run dir; refuse (``InputError``) if the job could not train on it."""
        preview, data = cls._data(store, config, 3)
        if preview.problems:
            raise InputError(f"{cls.registered_name}: " + "; ".join(preview.problems))
        cls._write(data, run)
        return preview

    @classmethod
    def _write(cls, data: Any, run: RunDir) -> None:
        from studio.training.data import write_parquet

        write_parquet(data, run.path / "train.parquet")

    @classmethod
    def resolve(cls, store: Store, config: TrainConfig, registry: ModelRegistry) -> TrainConfig:
        """Fill in what the job needs that only the parent knows (paths of other runs' models). ``registry``:
        the runner's (its context's) model registry; its ``settings`` are the process's."""
        return config

    @classmethod
    def import_results(cls, store: Store, run: RunDir, state: dict[str, Any]) -> None:
        """Copy a job's generated data into the store (called on every sync; ``state`` persists between)."""

    # -- job side -----------------------------------------------------------------------------------------------
    def train(self) -> dict[str, Any]:
        """Train; return ``{"models": [...], "metrics": {...}, "notes": [...]}``."""
        raise NotImplementedError

    def _log(self, step: int, values: dict[str, float]) -> None:
        """Append a metrics row from the job's own loop (generation, pair building), on the main process only."""
        from studio.training.launch import is_main_process

        if is_main_process():
            self.run.append_metrics(step, values)

    def callback(self, step_offset: int = 0) -> Any:
        from studio.training.callbacks import MetricsCallback
        from studio.training.launch import is_main_process

        return MetricsCallback(
            self.run, aliases=self.aliases, step_offset=step_offset, enabled=is_main_process()
        )

    # -- iterated DPO (IRPO, Self-Rewarding): iteration t trains M_{t+1} from M_t in ``run.iteration(t)`` --------
    def finished_iteration(self, t: int, current: Any) -> tuple[dict[str, Any], Any, int] | None:
        """Iteration ``t`` as a resume keeps it, when it is complete: (M_{t+1}'s entry, its config, the step)."""
        done = read_json(self.run.iteration(t) / "done.json")
        return (done["model"], current.replace(**done["paths"]), done["step"]) if done else None

    def dpo_iteration(self, t: int, current: Any, step: int, dataset: Any) -> dict[str, Any]:
        """DPO from M_t (``current``, also the reference) on ``dataset``; checkpoints and the adapter (or model)
        go into iteration ``t``'s dir. Returns :func:`studio.training.dpo.run_dpo`'s paths and steps."""
        import torch

        from studio.training.dpo import run_dpo

        torch.set_grad_enabled(True)  # the generation backend turned gradients off process-wide
        it = self.run.iteration(t)
        target = it / ("adapter" if current.use_lora else "model")
        return run_dpo(current, self.run, dataset, callback=self.callback(step), checkpoints=it / "checkpoints",
                       target=target)  # fmt: skip

    def finish_iteration(
        self, t: int, current: Any, step: int, out: dict[str, Any], entry: dict[str, Any]
    ) -> tuple[dict[str, Any], Any, int]:
        """Announce M_{t+1} (``entry``, trained into ``out``) and mark iteration ``t`` complete: (entry, M_{t+1}'s
        config, the step after it), as :meth:`finished_iteration` gives it back on a resume."""
        self.run.announce_model(entry)
        paths = {"model_path": out["path"], "adapter_path": out["adapter"]}
        step += out["steps"]
        write_json(self.run.iteration(t) / "done.json", {"model": entry, "paths": paths, "step": step})
        return entry, current.replace(**paths), step

    def model_entry(self, paths: dict[str, str], *, name: str = "", parent: str = "", **extra: Any) -> dict:
        """One model for the runner to register: name, kind, weights path, adapter, parent, training run."""
        cfg = self.config
        return {
            "name": name or cfg.output_name,
            "kind": self.produces,
            "path": paths["path"],
            "adapter": paths["adapter"],
            "parent": parent or cfg.base_model,
            "training_run": cfg.run_id,
            "method": self.registered_name,
            "filters": cfg.filters,
            **extra,
        }


TRAINERS: Registry[Trainer] = Registry("trainer", Trainer, "studio.trainers")
