"""The default model on llama.cpp: the built-in ``smollm2-135m-gguf`` entry (the wheel's GGUF as it is, no
de-quantization), the ``default_engine`` setting that makes the default model name resolve to it, and the runs
the issue asks of it: the default 4-column arena run, the judges, the eval harness. Comparisons with trained
adapters score every row on transformers (``studio improve``'s M0 on its transformers twin). One llama.cpp
thread, short answers."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import Store
from studio import arena as svc
from studio import improve as imp
from studio.context import AppContext
from studio.errors import InputError
from studio.eval import EvalSpec, load_dataset, parse_methods, run_eval
from studio.eval.tasks import get_task
from studio.judges import make_judge
from studio.judges.base import JudgeItem
from studio.models import ModelRegistry, ModelSpec, engine
from studio.settings import BUILTIN_GGUF, Settings

pytestmark = pytest.mark.slow
TRANSFORMERS_NAME = "smollm2-135m"
FAST = {"max_new_tokens": 24}


@pytest.fixture()
def on_llamacpp(settings) -> Settings:
    """The test settings (a data dir holding the converted default model) with ``default_engine = llamacpp``."""
    return Settings.load(
        env={"STUDIO_DEFAULT_ENGINE": "llamacpp", "STUDIO_THREADS": "1"}, data_dir=settings.data_dir
    )


def test_default_engine_resolves_the_default_name_and_both_entries_are_listed(tmp_path: Path) -> None:
    assert Settings.load(env={}).default_model == TRANSFORMERS_NAME  # the default stays transformers
    assert Settings.load(env={"STUDIO_DEFAULT_ENGINE": "llamacpp"}).default_model == BUILTIN_GGUF
    assert Settings.load(env={}, default_engine="llamacpp").default_model == BUILTIN_GGUF
    # a default model the user chose is theirs: the engine setting only redirects the built-in name
    mine = Settings.load(env={"STUDIO_DEFAULT_ENGINE": "llamacpp", "STUDIO_DEFAULT_MODEL": "my-model"})
    assert mine.default_model == "my-model"
    with pytest.raises(InputError, match="default_engine must be one of transformers, llamacpp, not 'vllm'"):
        Settings.load(env={"STUDIO_DEFAULT_ENGINE": "vllm"})
    registry = ModelRegistry(Settings.load(env={}, data_dir=tmp_path))
    assert registry.names() == [TRANSFORMERS_NAME, BUILTIN_GGUF]  # every picker offers both
    gguf = registry.get(BUILTIN_GGUF)
    assert gguf.builtin and gguf.backend == "llamacpp" and engine(gguf) == "llamacpp"
    assert gguf.params == registry.get(TRANSFORMERS_NAME).params  # the same decoding defaults
    assert "llamacpp: the default model's GGUF" in gguf.summary()
    with pytest.raises(InputError, match="built-in"):
        registry.add(ModelSpec(name=BUILTIN_GGUF, backend="llamacpp", gguf_file="x.gguf"))
    with pytest.raises(InputError, match="built in"):
        registry.remove(BUILTIN_GGUF)


def test_arena_judges_and_eval_run_on_llamacpp(on_llamacpp: Settings) -> None:
    """The default 4-column arena run, a structured text judge, the log-prob judge's pair variant and an eval
    run, all on the default model through llama.cpp (one server, loaded once)."""
    registry = ModelRegistry(on_llamacpp)
    store = Store(on_llamacpp.db_path, data_dir=on_llamacpp.data_dir)
    try:
        model = on_llamacpp.default_model
        cols = svc.default_columns(model)
        updates = list(svc.stream_arena(store, registry, "Why is the sky blue?", cols, FAST, shuffle_seed=1))
        state = updates[-1].state
        assert [u.kind for u in updates].count("stored") == 4 and state.errors == [None] * 4
        assert all(a.strip() for a in state.answers) and state.included == [0, 1, 2, 3]
        assert store.get_comparison(state.comparison_id)["run_ids"] == state.run_ids
        assert {store.get_run(r)["model"] for r in state.run_ids} == {BUILTIN_GGUF}
        llama = registry.backend()  # the default model name resolved to the llama.cpp entry
        assert type(llama).__name__ == "LlamaCppBackend" and llama.server.alive()

        item = JudgeItem.pair("What is 2+2?", "2+2 is 4.", "2+2 is 5.")
        [pairwise] = make_judge("pairwise", {"structured": True, "max_new_tokens": 128}).judge([item], llama)
        assert pairwise.ok and pairwise.winner in ("A", "B", "tie", "inconsistent"), pairwise.error
        [additive] = make_judge("additive", {"structured": True, "n": 1, "max_new_tokens": 128}).judge(
            [JudgeItem.single("What is 2+2?", "2+2 is 4.")], llama
        )
        assert additive.ok and additive.rating is not None, additive.error
        [pair] = make_judge("logprob", {"variant": "pair"}).judge([item], llama)
        assert pair.ok and 0 < pair.prob_a < 1
        with pytest.raises(InputError, match="variant 'pmi' .* use a local \\(transformers\\) model, or the "
                                             "setting variant=pair"):  # fmt: skip
            make_judge("logprob").judge([item], llama)

        dataset = load_dataset("s2a_opinions", limit=4)
        out = run_eval(dataset, EvalSpec(parse_methods("system1"), (model,), FAST), store, registry)
        assert out.failed == 0 and out.ran == out.total > 0, out.errors
        assert {r["model"] for r in store.list_runs(limit=None) if r["id"] not in state.run_ids} == {
            BUILTIN_GGUF
        }
        assert all(r["scores"] for r in out.rows)
        assert out.report(n_boot=50).rows
    finally:
        registry.close()
        store.close()
    assert not llama.server.alive()


def test_improve_scores_m0_on_its_transformers_twin(on_llamacpp: Settings, tmp_path: Path) -> None:
    """Trained adapters run on transformers, so an improve run whose M0 is served by llama.cpp trains from and
    scores its transformers twin; every row records its engine; a GGUF with no twin is refused."""
    registry = ModelRegistry(on_llamacpp)
    assert registry.transformers_twin(BUILTIN_GGUF) == TRANSFORMERS_NAME
    assert registry.transformers_twin(TRANSFORMERS_NAME) == TRANSFORMERS_NAME
    other = tmp_path / "other.gguf"
    other.write_bytes(b"GGUF" + bytes(64))  # registering checks the magic; nothing loads it here
    registry.add(ModelSpec(name="other-gguf", backend="llamacpp", gguf_file=str(other)))
    with pytest.raises(InputError, match="'other-gguf' runs on llama.cpp and has no transformers twin"):
        registry.transformers_twin("other-gguf")
    method = imp.task_methods()[0]
    with AppContext(on_llamacpp) as ctx:
        run = imp.prepare(ctx, "arithmetic", method, 1, eval_limit=2, eval_params=FAST)
        assert run.model == TRANSFORMERS_NAME  # the default (llama.cpp) resolved to its twin
        with pytest.raises(InputError, match="no transformers twin"):
            imp.prepare(ctx, "arithmetic", method, 1, model="other-gguf", eval_limit=2)
        score = imp.score_model(ctx, get_task("arithmetic"), run.model, limit=2, params=FAST, name="eng-m0")
        assert score.engine == "transformers" and score.n == 2
        row = imp._row(0, run.model, "", None, score, 0.0, None)
        assert row.to_dict()["engine"] == "transformers"


def test_the_models_tab_shows_each_engine_and_the_adapter_note(on_llamacpp: Settings, tmp_path: Path) -> None:
    from components.models import COLUMNS, rows
    from studio.backends.llamacpp_backend import ADAPTER_NOTE

    with AppContext(on_llamacpp) as ctx:
        ctx.registry.add(
            ModelSpec(name="child", path=str(tmp_path), adapter=str(tmp_path / "a"), parent=BUILTIN_GGUF)
        )
        ctx.registry.add(ModelSpec(name="plain", path=str(tmp_path), parent=BUILTIN_GGUF))
        table = {r[0]: dict(zip(COLUMNS, r, strict=True)) for r in rows(ctx)}
    assert (
        table[BUILTIN_GGUF]["engine"] == "llamacpp" and table[TRANSFORMERS_NAME]["engine"] == "transformers"
    )
    assert table["child"]["engine"] == f"transformers ({ADAPTER_NOTE})"
    assert table["plain"]["engine"] == f"transformers ({ADAPTER_NOTE})"  # trained from a llama.cpp parent
