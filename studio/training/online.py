"""What PPO and RLOO share: prompts from the store, and a trained reward model found by its training run."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from studio.errors import InputError
from studio.training import data
from studio.training.base import Trainer
from studio.training.config import OnlineRLConfig
from studio.training.rundir import RunDir

if TYPE_CHECKING:
    from storage import Store
    from studio.models import ModelRegistry


def reward_run(store: Store, run_id: int) -> dict[str, Any]:
    """The store row of a finished reward-model run: ``run_id``, or the newest one when 0."""
    if run_id:
        row = store.get_training_run(run_id)
        if row is None or row["method"] != "reward":
            raise InputError(f"training run {run_id} is not a reward-model run")
        if row["status"] != "done":
            raise InputError(f"reward-model run {run_id} is {row['status']}, not done")
        return row
    done = [r for r in store.list_training_runs(status="done", limit=None) if r["method"] == "reward"]
    if not done:
        raise InputError(
            "this method optimises against a reward model, and none has been trained: "
            "run `studio train reward` (or the Train tab's reward model) first, or set reward_run"
        )
    return done[0]


class OnlineRLTrainer(Trainer):
    """Base of PPO and RLOO: the data are prompts; ``resolve`` finds the reward model's files."""

    curves = ("loss", "reward", "kl")

    @classmethod
    def _data(cls, store: Any, config: Any, limit: int) -> tuple[data.DataPreview, Any]:
        return data.prompts_preview(store, cls.registered_name, config, limit)

    @classmethod
    def _write(cls, table: Any, run: RunDir) -> None:
        data.write_parquet(table, run.path / "prompts.parquet")

    @classmethod
    def resolve(cls, store: Store, config: OnlineRLConfig, registry: ModelRegistry) -> OnlineRLConfig:
        row = reward_run(store, config.reward_run)
        result = RunDir(row["output_path"] or registry.settings.runs_dir / str(row["id"])).result()
        reward = result.get("reward_model")
        if not reward:
            raise InputError(f"reward-model run {row['id']} left no model (its result.json is missing)")
        return config.replace(
            reward_run=row["id"], reward_base_path=reward["base"],
            reward_base_adapter_path=reward.get("base_adapter", ""), reward_adapter_path=reward["adapter"],
        )  # fmt: skip

    def reward_model(self, tok: Any) -> Any:
        """The trained reward model, merged into a plain frozen classifier (job side)."""
        from studio.training.common import weights_dtype
        from studio.training.reward import load_reward_model

        cfg = self.config
        model = load_reward_model(
            cfg.reward_base_path, base_adapter=cfg.reward_base_adapter_path, adapter=cfg.reward_adapter_path,
            dtype=weights_dtype(cfg),
        )  # fmt: skip
        model.config.pad_token_id = tok.pad_token_id
        model.requires_grad_(False)
        return model.eval()

    def prompts(self) -> Any:
        from studio.training.common import load_table

        return load_table(self.run.path / "prompts.parquet")
