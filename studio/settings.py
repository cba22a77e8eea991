"""One settings dataclass. Precedence: CLI flags > ``STUDIO_*`` environment variables > defaults."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from studio import default_model as builtin
from studio.errors import InputError

DTYPES = ("auto", "bfloat16", "float32", "float16")
ENGINES = ("transformers", "llamacpp")  # what ``default_engine`` may name
#: the built-in entry serving the default model's GGUF on llama.cpp (studio.models.builtin_specs)
BUILTIN_GGUF = builtin.NAME + "-gguf"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = field(default_factory=lambda: Path("./studio-data"), metadata={"env": "STUDIO_HOME"})
    host: str = "127.0.0.1"
    port: int = 7860
    threads: int = 0  # torch intra-op threads; 0 means "number of cores"
    default_model: str = builtin.NAME
    # the engine of the built-in default model: "llamacpp" makes the default model name (when it is the built-in
    # one) resolve to BUILTIN_GGUF, the same GGUF served by llama.cpp; see docs/engines.md
    default_engine: str = "transformers"
    dtype: str = "auto"
    concurrency: int = 1  # generations at once in the UI queue (votes and browsing never wait for them)
    generation_nice: int = 10  # arena generation threads run at this nice value (0-19), so votes stay fast
    max_new_tokens: int = 256  # the Arena's default per-step budget
    request_timeout: float = 60.0  # seconds, for OpenAI-compatible endpoints
    openai_base_url: str = ""  # used for models registered without one
    openai_api_key: str = ""  # never written to the store or logs; sent only to models an admin registered
    # env vars a model may name as its key, besides every STUDIO_KEY_* (comma-separated), e.g. "TOGETHER_API_KEY"
    allowed_key_envs: str = ""
    auth_file: str = ""  # users.toml for annotator logins; empty = no login, a name field per session
    max_upload_mb: int = 100  # uploads (prompt sets, preference files) larger than this are refused
    root_path: str = ""  # the URL prefix when served behind a reverse proxy at a sub-path, e.g. /studio
    max_prompt_chars: int = 20000  # longer prompts are refused before anything runs or is stored
    # failed logins before a user name (or, x4, a client address) is locked out for login_lockout_s seconds,
    # doubling with each further failure up to an hour
    login_max_failures: int = 5
    login_lockout_s: float = 30.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        if self.dtype not in DTYPES:
            raise InputError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.default_engine not in ENGINES:
            raise InputError(
                f"default_engine must be one of {', '.join(ENGINES)}, not {self.default_engine!r}"
            )
        if self.default_engine == "llamacpp" and self.default_model == builtin.NAME:
            object.__setattr__(self, "default_model", BUILTIN_GGUF)
        if not 0 < int(self.port) < 65536:
            raise InputError(f"port must be between 1 and 65535, not {self.port}")
        if not 0 <= self.generation_nice <= 19:
            raise InputError(f"generation_nice must be between 0 and 19, not {self.generation_nice}")
        if self.threads < 0:
            raise InputError(f"threads must be >= 0, not {self.threads}")
        if self.max_prompt_chars < 1:
            raise InputError(f"max_prompt_chars must be >= 1, not {self.max_prompt_chars}")
        if self.max_upload_mb < 1:
            raise InputError(f"max_upload_mb must be >= 1, not {self.max_upload_mb}")
        if self.login_max_failures < 1 or self.login_lockout_s < 0:
            raise InputError("login_max_failures must be >= 1 and login_lockout_s >= 0")

    @classmethod
    def load(cls, env: dict[str, str] | None = None, **overrides: Any) -> Settings:
        """Defaults, then ``STUDIO_*`` from ``env`` (default ``os.environ``), then non-None ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            var = f.metadata.get("env", "STUDIO_" + f.name.upper())
            raw = env.get(var)
            if not raw and f.name == "openai_api_key":  # an empty STUDIO_OPENAI_API_KEY is unset too
                raw = env.get("OPENAI_API_KEY")
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, f.type, raw, var)
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)

    @property
    def key_env_names(self) -> tuple[str, ...]:
        """The env var names an admin allowed as model keys in ``allowed_key_envs`` (besides STUDIO_KEY_*)."""
        return tuple(n.strip() for n in self.allowed_key_envs.split(",") if n.strip())

    @property
    def db_path(self) -> Path:
        return self.data_dir / "studio.duckdb"

    @property
    def models_dir(self) -> Path:
        return self.data_dir / "models"

    @property
    def models_file(self) -> Path:
        return self.data_dir / "models.toml"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    def ensure_dirs(self) -> None:
        for d in (self.data_dir, self.models_dir, self.runs_dir):
            d.mkdir(parents=True, exist_ok=True)

    def apply_threads(self) -> None:
        """Set torch's thread count; oversubscribed cores can slow torch 20x, so this is a setting."""
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)

    def public_dict(self) -> dict[str, Any]:
        """Settings without secrets, for logs and the UI."""
        d = dataclasses.asdict(self)
        d["data_dir"] = str(self.data_dir)
        d["openai_api_key"] = "***" if self.openai_api_key else ""
        return d


def _coerce(name: str, typ: Any, raw: str, var: str) -> Any:
    typ = str(typ)
    try:
        if typ == "int":
            return int(raw)
        if typ == "float":
            return float(raw)
    except ValueError:
        raise InputError(f"{var}={raw!r} is not a valid {typ} for setting {name!r}") from None
    return raw
