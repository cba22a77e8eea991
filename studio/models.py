"""The model registry: named models in ``<data dir>/models.toml`` plus the built-in ``smollm2-135m``.

Each name maps to a backend, a model id or path, an optional adapter and default params. Loaded backends are
cached: one instance per model per process, never two copies by accident.
"""

from __future__ import annotations

import dataclasses
import os
import re
import sys
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import tomli_w

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from studio import default_model
from studio.access import User, require_admin
from studio.backends import BACKENDS, Backend
from studio.errors import KEY_ENV_PREFIX, BackendError, InputError, ModelNotFound
from studio.settings import Settings

if TYPE_CHECKING:
    from storage import Store

NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/@")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
LOCAL_ADMIN = "local"  # who registered a model through the CLI or the Python API (both are local admin tools)


@dataclass
class ModelSpec:
    name: str
    backend: str = "transformers"  # a name in BACKENDS
    path: str = ""  # transformers: dir or hub id; openai: the model name the server knows
    gguf_file: str = ""
    adapter: str = ""  # a PEFT LoRA adapter dir on top of ``path``
    base_url: str = ""  # openai: e.g. http://127.0.0.1:8000/v1
    api_key_env: str = ""  # openai: the env var holding the key (the key itself is never stored)
    params: dict[str, Any] = field(default_factory=dict)  # default GenParams overrides
    parent: str = ""  # lineage: the model this one was trained from
    training_run: str = ""
    description: str = ""
    registered_by: str = ""  # the admin who registered it; only such models get the OPENAI_API_KEY fallback
    builtin: bool = False

    def to_toml(self) -> dict[str, Any]:
        d = {
            k: v for k, v in asdict(self).items() if v not in ("", {}, False) and k not in ("name", "builtin")
        }
        d.setdefault("backend", self.backend)
        return d

    def summary(self) -> str:
        where = self.base_url or self.path
        extra = f" + adapter {self.adapter}" if self.adapter else ""
        return f"{self.backend}: {where}{extra}"


def check_key_env(name: str, settings: Settings) -> None:
    """A model may name only an allowed env var as its key: ``STUDIO_KEY_*`` or one an admin listed in the
    ``allowed_key_envs`` setting. Otherwise whoever registers a model could send any secret of the server's
    environment (cloud credentials, tokens) to a URL of their choice."""
    if not name:
        return
    if ENV_NAME.match(name) and (name.startswith(KEY_ENV_PREFIX) or name in settings.key_env_names):
        return
    raise InputError(
        f"the key env var {name!r} is not allowed: name one starting with {KEY_ENV_PREFIX} "
        f"(e.g. {KEY_ENV_PREFIX}MYSERVER), or have an admin list it in STUDIO_ALLOWED_KEY_ENVS"
    )


def api_key_for(spec: ModelSpec, settings: Settings) -> str:
    """The key sent with ``spec``'s requests: its own (allowed) env var, else the OPENAI_API_KEY setting for
    models an admin registered, else none."""
    check_key_env(spec.api_key_env, settings)
    if spec.api_key_env:
        return os.environ.get(spec.api_key_env, "")
    return settings.openai_api_key if spec.registered_by else ""


def builtin_specs(settings: Settings) -> dict[str, ModelSpec]:
    return {
        default_model.NAME: ModelSpec(
            name=default_model.NAME,
            backend="transformers",
            path=str(settings.models_dir / default_model.NAME),
            description="SmolLM2-135M-Instruct, embedded (offline, CPU)",
            builtin=True,
        )
    }


class ModelRegistry:
    """Reads and writes ``models.toml``; hands out cached, loaded backends."""

    _cache: dict[tuple[str, str], Backend] = {}
    _cache_lock = threading.Lock()

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    # -- specs ----------------------------------------------------------------------------------------------
    def _read_file(self) -> dict[str, ModelSpec]:
        f = self.settings.models_file
        if not f.exists():
            return {}
        try:
            raw = tomllib.loads(f.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{f} is not valid TOML: {e}") from None
        specs = {}
        for name, body in raw.get("models", {}).items():
            try:
                specs[name] = ModelSpec(name=name, **body)
            except TypeError as e:
                raise InputError(f"{f}: model {name!r}: {e}") from None
        return specs

    def specs(self) -> dict[str, ModelSpec]:
        return {**builtin_specs(self.settings), **self._read_file()}

    def names(self) -> list[str]:
        return list(self.specs())

    def get(self, name: str) -> ModelSpec:
        specs = self.specs()
        if name not in specs:
            raise ModelNotFound(f"unknown model {name!r}; known models: {', '.join(specs)}")
        return specs[name]

    def add(self, spec: ModelSpec, *, replace: bool = False, user: User | None = None) -> ModelSpec:
        """Register ``spec``. ``user`` is who asks (None: the local admin, e.g. the CLI); only admins may."""
        if user is not None:
            require_admin(user, "add or change models")
        spec = dataclasses.replace(spec, registered_by=user.name if user is not None else LOCAL_ADMIN)
        check_key_env(spec.api_key_env, self.settings)
        if not spec.name or not set(spec.name) <= NAME_OK:
            raise InputError(f"model name {spec.name!r} may use only letters, digits and -_.:/@")
        if spec.backend not in BACKENDS:
            raise InputError(f"unknown backend {spec.backend!r}; known: {', '.join(BACKENDS.names())}")
        if spec.name in builtin_specs(self.settings):
            raise InputError(f"{spec.name!r} is a built-in model name; choose another")
        current = self._read_file()
        if spec.name in current and not replace:
            raise InputError(f"a model named {spec.name!r} already exists")
        current[spec.name] = spec
        self._write(current)
        return spec

    def remove(self, name: str, *, user: User | None = None, store: Store | None = None) -> None:
        """Remove a registered model: its ``models.toml`` entry and, given the ``store``, its lineage row (runs
        that used it keep its name). Refused for a built-in model, the default model, and a model that other
        models were trained from."""
        if user is not None:
            require_admin(user, "remove models")
        if name in builtin_specs(self.settings):
            raise InputError(f"{name!r} is built in; it cannot be removed")
        if name == self.settings.default_model:
            raise InputError(f"{name!r} is the default model (STUDIO_DEFAULT_MODEL): make another one the "
                             "default first")  # fmt: skip
        current = self._read_file()
        lineage = store.list_models() if store is not None else []
        children = {n for n, s in current.items() if s.parent == name}
        children |= {m["name"] for m in lineage if m.get("parent") == name}
        if children:
            raise InputError(f"{name!r} has models trained from it ({', '.join(sorted(children))}): remove "
                             "those first")  # fmt: skip
        if name not in current and all(m["name"] != name for m in lineage):
            raise ModelNotFound(f"no user-registered model {name!r}")
        if name in current:
            del current[name]
            self._write(current)
        if store is not None:
            store.remove_model(name)
        self.unload(name)

    def _write(self, specs: dict[str, ModelSpec]) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        body = {"models": {n: s.to_toml() for n, s in specs.items()}}
        tmp = self.settings.models_file.with_suffix(".toml.tmp")
        tmp.write_text(
            "# Reasoning Studio model registry (API keys live in env vars, never here)\n"
            + tomli_w.dumps(body)
        )
        tmp.replace(self.settings.models_file)

    # -- loaded backends -------------------------------------------------------------------------------------
    def backend(
        self, name: str | None = None, progress: Callable[[float, str], None] | None = None
    ) -> Backend:
        """The loaded backend for ``name`` (default: the settings' default model); loads it at most once."""
        spec = self.get(name or self.settings.default_model)
        key = (str(self.settings.data_dir.resolve()), spec.name)
        with self._cache_lock:  # held while loading: a second caller waits instead of loading a second copy
            if key not in self._cache:
                self._cache[key] = self._load(spec, progress)
            return self._cache[key]

    def unload(self, name: str) -> None:
        with self._cache_lock:
            b = self._cache.pop((str(self.settings.data_dir.resolve()), name), None)
        if b is not None:
            b.close()

    def _load(self, spec: ModelSpec, progress: Callable[[float, str], None] | None) -> Backend:
        if spec.builtin:
            default_model.ensure_converted(self.settings.models_dir / spec.name, progress)
        cls = BACKENDS.get(spec.backend)
        kw: dict[str, Any] = {
            "model_name": spec.name,
            "gguf_file": spec.gguf_file or None,
            "adapter": spec.adapter or None,
            "dtype": self.settings.dtype,
            "base_url": spec.base_url or self.settings.openai_base_url,
            "api_key": api_key_for(spec, self.settings),
            "timeout": self.settings.request_timeout,
        }
        try:
            return cls(spec.path, **kw)
        except (BackendError, InputError):
            raise
        except Exception as e:  # a backend's own failure, with the model named
            raise BackendError(f"cannot load model {spec.name!r} ({spec.summary()}): {e}") from None


def load_backend(settings: Settings, name: str | None = None) -> Backend:
    """Shortcut: the cached, loaded backend for a registered model name."""
    return ModelRegistry(settings).backend(name)
