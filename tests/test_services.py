"""The services a process shares and the one owner of each fact (issue 13):

- one :class:`AppContext` per process hands out the store, the model registry (with its loaded backends) and the
  training runner; the CLI builds one per command; nothing keeps a service in a module global;
- ``models.toml`` owns models (reward models included), the store's ``models`` table is a derived lineage index,
  and a data dir from before (lineage in the store only) is adopted once;
- a job's run dir owns its state; the store's row is a view the runner's sync brings up to date;
- built-ins and plugins register through the same entry points (a plugin dist on ``sys.path``).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import metadata
from pathlib import Path

import pytest

from storage import Store
from studio import registry as registry_module
from studio.backends import BACKENDS
from studio.cli import main
from studio.context import AppContext
from studio.judges import JUDGES
from studio.models import ModelRegistry, ModelSpec
from studio.registry import Registry
from studio.settings import Settings
from studio.strategies import STRATEGIES, make_strategy
from studio.training import TRAINERS
from studio.training.rundir import RunDir

ENDPOINT = {"backend": "openai", "path": "m", "base_url": "http://127.0.0.1:9/v1"}  # never called


def endpoint(name: str, **extra: str) -> ModelSpec:
    return ModelSpec(name=name, **{**ENDPOINT, **extra})


# -- the context and its services ---------------------------------------------------------------------------------
def test_a_context_makes_each_service_once_and_holds_its_backends(tmp_path: Path) -> None:
    settings = Settings.load(env={}, data_dir=tmp_path / "data")
    with AppContext(settings) as ctx, AppContext(settings) as other:
        ctx.registry.add(endpoint("ep"))
        assert ctx.store is ctx.store and ctx.runner is ctx.runner
        assert ctx.runner.registry is ctx.registry and ctx.runner.store is ctx.store
        assert ctx.registry.store is ctx.store  # the registry keeps the store's lineage index
        loaded = ctx.registry.backend("ep")
        assert ctx.registry.backend("ep") is loaded  # loaded once per context...
        assert other.registry.backend("ep") is not loaded  # ...and held by it, not by a class-level cache
        assert other.registry is not ctx.registry
    assert ctx.registry.backend("ep") is not loaded  # closing the context unloaded its models


def test_each_cli_command_builds_one_context_and_one_registry(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    made: list[ModelRegistry] = []
    init = ModelRegistry.__init__

    def counting(self: ModelRegistry, *args: object, **kw: object) -> None:
        made.append(self)
        init(self, *args, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(ModelRegistry, "__init__", counting)
    data = ["--data-dir", str(settings.data_dir)]
    for argv in (["models", "add", "ep", "--backend", "openai", "--path", "m"], ["models"], ["jobs", "list"]):
        made.clear()
        assert main([*argv, *data]) == 0, capsys.readouterr().err
        assert len(made) == 1, argv  # the command's context's registry, handed to the runner too
    assert "ep" in capsys.readouterr().out


# -- models: models.toml owns them; the store's table is derived --------------------------------------------------
def announced(name: str, kind: str, run: int) -> dict:
    """A model entry as a training job announces it in models.jsonl."""
    return {"name": name, "kind": kind, "path": "/w/base", "adapter": f"/w/runs/{run}/adapter",
            "parent": "smollm2-135m", "training_run": run, "method": "dpo" if kind == "policy" else "reward",
            "filters": {"source": "human"}}  # fmt: skip


def test_trained_models_live_in_models_toml_and_the_store_mirrors_them(settings: Settings) -> None:
    with AppContext(settings) as ctx:
        runs = [ctx.store.add_training_run(m) for m in ("dpo", "reward")]
        assert ctx.registry.register_trained(announced("dpo-1", "policy", runs[0])) == "dpo-1"
        assert ctx.registry.register_trained(announced("reward-2", "reward", runs[1])) == "reward-2"
        assert "dpo-1" in ctx.model_names() and "reward-2" not in ctx.model_names()  # not a chat model
        every = ctx.registry.specs(kind=None)
        assert every["reward-2"].kind == "reward" and every["reward-2"].training_config["method"] == "reward"
        rows = {m["name"]: m for m in ctx.store.list_models()}
        assert rows["dpo-1"]["backend"] == "transformers" and rows["dpo-1"]["training_run_id"] == runs[0]
        assert rows["reward-2"]["backend"] == "reward-model" and rows["reward-2"]["parent"] == "smollm2-135m"
        assert rows["reward-2"]["config"] == {
            "method": "reward",
            "filters": {"source": "human"},
            "kind": "reward",
        }
        # a name taken since the job started: the model gets the next free one
        ctx.registry.remove("dpo-1")
        ctx.registry.add(endpoint("dpo-1"))
        assert ctx.registry.register_trained(announced("dpo-1", "policy", runs[0])) == "dpo-1-2"
        ctx.registry.remove("reward-2")
        assert ctx.store.get_model("reward-2") is None and ctx.store.get_model("dpo-1") is None
    text = settings.models_file.read_text()
    assert text.count("format = 2") == 1 and 'kind = "reward"' not in text


def test_an_older_data_dir_is_adopted_once(settings: Settings) -> None:
    """Format 1: models.toml without lineage for some models, reward models only in the store, and a chat model
    removed from models.toml whose store row stayed (the CLI never touched the store)."""
    settings.models_file.write_text(
        '[models.dpo-1]\nbackend = "transformers"\npath = "/w/base"\nadapter = "/w/a"\n'
    )
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        run = store.add_training_run("dpo", status="done")
        store.add_model(
            "dpo-1", "transformers", parent="smollm2-135m", training_run_id=run, config={"method": "dpo"}
        )
        store.add_model("reward-2", "reward-model", base="/w/base", adapter_path="/w/r", parent="smollm2-135m",
                        training_run_id=run, config={"method": "reward"})  # fmt: skip
        store.add_model("gone", "transformers", parent="smollm2-135m")
    with AppContext(settings) as ctx:
        _ = ctx.store
        dpo, reward = ctx.registry.specs(kind=None)["dpo-1"], ctx.registry.specs(kind=None)["reward-2"]
        assert (dpo.parent, dpo.training_run, dpo.adapter) == ("smollm2-135m", str(run), "/w/a")
        assert (reward.kind, reward.path, reward.adapter, reward.training_run) == (
            "reward",
            "/w/base",
            "/w/r",
            str(run),
        )
        assert "gone" not in ctx.registry.specs(kind=None)  # removed from the registry: not brought back
        assert {m["name"] for m in ctx.store.list_models()} == {"dpo-1", "reward-2"}
    assert "format = 2" in settings.models_file.read_text()
    ModelRegistry(settings).remove("reward-2")  # e.g. the CLI while the server holds the store
    with AppContext(settings) as ctx:
        assert ctx.store.get_model("reward-2") is None  # the view follows; the migration does not run again
        assert "reward-2" not in ctx.registry.specs(kind=None)


# -- jobs: the run dir owns the state; the store's row is a view --------------------------------------------------
def test_the_store_row_of_a_job_follows_its_run_dir(settings: Settings) -> None:
    """A server that stopped before syncing left the store saying 'running'; the run dir says the job ended."""
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        job = store.add_training_run("dpo", {"max_steps": 1}, status="running")
    run = RunDir(settings.runs_dir / str(job))
    run.path.mkdir(parents=True)
    run.update_status(state="succeeded", method="dpo", started_at="2025-01-02T03:04:05",
                      finished_at="2025-01-02T03:05:06", step=1, max_steps=1)  # fmt: skip
    with AppContext(settings) as ctx:
        assert ctx.store.get_training_run(job)["status"] == "running"  # the stale view
        [listed] = ctx.runner.refresh()
        row = ctx.store.get_training_run(job)
        assert listed.state == "succeeded" and row["status"] == "done"
        assert row["finished_at"].isoformat() == "2025-01-02T03:05:06" and row["output_path"] == str(run.path)


# -- registries: one door, entry points ---------------------------------------------------------------------------
PLUGIN = """
from studio.strategies.base import RunContext, Strategy, StrategyGen


class Echo(Strategy):
    description = "Echo: says the question back (a test plugin)"
    source = "tests/test_services.py"
    variants = ("loud", "quiet")

    def run(self, question: str, ctx: RunContext) -> StrategyGen:
        (out,) = yield [ctx.request("answer", [{"role": "user", "content": question}])]
        return out.text
"""


def install_plugin(where: Path, dist: str, module: str, entry_points: str, code: str = PLUGIN) -> Path:
    """A tiny installed distribution: its module and its ``.dist-info`` (METADATA, entry_points.txt)."""
    (where / module).mkdir(parents=True)
    (where / module / "__init__.py").write_text(code)
    info = where / f"{dist.replace('-', '_')}-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(entry_points)
    return where


@pytest.fixture()
def plugin_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A dir on sys.path for plugin dists; the strategy registry reads its entry points again before and after."""
    monkeypatch.syspath_prepend(str(tmp_path))
    yield tmp_path
    monkeypatch.undo()
    STRATEGIES.reload()


def test_a_plugin_strategy_registers_through_its_entry_point(
    plugin_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    install_plugin(
        plugin_path, "studio-echo", "studio_echo", "[studio.strategies]\necho = studio_echo:Echo\n"
    )
    STRATEGIES.reload()
    assert main(["strategies", "--json"]) == 0
    listed = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert {"system1", "cot", "cove", "s2a", "bsm", "echo"} <= set(
        listed
    )  # the built-ins, through the same door
    assert listed["echo"]["variants"] == ["loud", "quiet"] and listed["echo"]["description"].startswith(
        "Echo"
    )
    echo = make_strategy("echo", "quiet")
    assert (echo.name, echo.variant) == ("echo", "quiet")
    assert main(["strategies"]) == 0 and "Echo: says the question back" in capsys.readouterr().out


def test_a_plugin_of_the_wrong_kind_is_refused_by_name(plugin_path: Path) -> None:
    install_plugin(plugin_path, "studio-bad", "studio_bad", "[studio.strategies]\nbad = studio_bad:NotAStrategy\n",
                   code="class NotAStrategy:\n    pass\n")  # fmt: skip
    with pytest.raises(TypeError, match="strategy 'bad'.*not a subclass of Strategy"):
        STRATEGIES.reload()


@pytest.mark.parametrize(
    ("group", "registry"),
    [("studio.strategies", STRATEGIES), ("studio.judges", JUDGES), ("studio.backends", BACKENDS),
     ("studio.trainers", TRAINERS)],
)  # fmt: skip
def test_the_built_ins_are_declared_as_entry_points(group: str, registry: Registry, monkeypatch) -> None:
    declared = registry_module.source_tree_entry_points(group)
    assert sorted(ep.name for ep in declared) == registry.names()  # every built-in is in pyproject.toml
    assert all(registry.get(ep.name).__name__ == ep.value.rsplit(":")[-1] for ep in declared)
    # installed metadata without the group (not installed, or installed before it existed): pyproject's
    monkeypatch.setattr(metadata, "entry_points", lambda group: [])
    assert [ep.name for ep in registry_module.entry_points(group)] == [ep.name for ep in declared]


def test_an_installed_studio_is_read_from_its_metadata(plugin_path: Path) -> None:
    """An installed reasoning-studio that declares the group is read as installed (pyproject is not added)."""
    install_plugin(plugin_path, "reasoning-studio", "unused_module",
                   "[studio.strategies]\nsystem1 = studio.strategies.system1:System1\n")  # fmt: skip
    assert [ep.name for ep in registry_module.entry_points("studio.strategies")] == ["system1"]
