"""The job runner: start, list, cancel and resume training jobs; sync their files into the store.

It lives in the process that owns the store (the UI server, or a CLI command). A job is a separate process
(``python -m studio.training <run dir>/config.yaml``, or ``accelerate launch``), started without a shell in its
own session, so a closed browser or a restarted server does not touch it: its state is in its run dir.

- :meth:`Runner.start` validates the config and the data *before* anything is launched, records the run in the
  store (``pending``), writes the run dir (config, data snapshot), queues it and lets the scheduler start it.
- :meth:`Runner.sync` / :meth:`Runner.refresh` copy status, new metric lines, generated data and the trained
  models (registered with their lineage) from the run dir into the store. Call them when polling.
- Without a store (``store=None``: another process holds it) the runner still lists, reads, cancels and
  resumes jobs from their files; the store catches up at the next sync by its owner.

One owner per fact: a job's state lives in its run dir (``status.json``: the job process, which never opens the
store, writes it; so do the scheduler and cancel/resume). The store's ``training_runs`` status, error and times
are a derived view, written only by :meth:`Runner.sync` (:meth:`Runner._mirror_status`). Trained models go to
the model registry (``models.toml``), which keeps the store's lineage index.

An app or CLI process gets its runner from its :class:`~studio.context.AppContext` (``ctx.runner``).
"""

from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.errors import InputError
from studio.training.base import TRAINERS, Trainer
from studio.training.config import FieldInfo, TrainConfig
from studio.training.data import DataPreview, filters_to_dict
from studio.training.launch import launch_command
from studio.training.rundir import (
    STORE_STATUS,
    TERMINAL,
    RunDir,
    now_iso,
    read_json,
    read_jsonl,
    write_json,
)
from studio.training.scheduler import alive, mark_lost, run_dirs, schedule, set_jobs_per_device

if TYPE_CHECKING:
    from storage import Filters, Store
    from studio.models import ModelRegistry
    from studio.settings import Settings


@dataclass
class TrainingJob:
    """A training job as its run dir describes it. ``state``: queued, running, succeeded, failed, cancelled."""

    id: int
    method: str
    state: str
    run_dir: str
    base_model: str = ""
    output_name: str = ""
    device: str = ""
    step: int = 0
    max_steps: int = 0
    pid: int | None = None
    error: str | None = None
    queued_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    resumed: bool = False
    resume_note: str = ""  # what the last resume said it would do (continue from a checkpoint, or restart)
    models: list[str] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.state in TERMINAL

    @property
    def store_status(self) -> str:
        return STORE_STATUS[self.state]

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "done": self.done, "store_status": self.store_status}


@dataclass(frozen=True)
class MethodInfo:
    """A training method for the Train tab's picker: what it does, its settings and the curves to plot."""

    name: str
    description: str
    paper: str
    produces: str
    curves: tuple[str, ...]
    resumable: bool
    fields: list[FieldInfo]


def methods() -> list[MethodInfo]:
    return [describe(name) for name in TRAINERS.names()]


def describe(method: str) -> MethodInfo:
    cls = trainer_class(method)
    return MethodInfo(
        method, cls.description, cls.paper, cls.produces, cls.curves, cls.resumable, cls.Config.fields_info()
    )


def trainer_class(method: str) -> type[Trainer]:
    if method not in TRAINERS:
        raise InputError(f"unknown training method {method!r}; methods: {', '.join(TRAINERS.names())}")
    return TRAINERS.get(method)


class Runner:
    """Training jobs under ``<data dir>/runs/``; ``store`` is the process's open store, or None."""

    def __init__(
        self,
        settings: Settings,
        store: Store | None = None,
        *,
        registry: ModelRegistry | None = None,
        jobs_per_device: int = 1,
        autostart: bool = True,
    ) -> None:
        """``registry``: the context's model registry (None: one of its own, for a runner built alone, as in
        tests). ``autostart=False`` queues jobs without starting them (tests, or preparing runs to launch
        elsewhere: ``python -m studio.training <run dir>/config.yaml`` runs one in the foreground)."""
        from studio.models import ModelRegistry

        self.settings = settings
        self.store = store
        self.registry = registry or ModelRegistry(settings)
        if store is not None and self.registry.store is not store:
            self.registry.attach(store)  # trained models registered here reach this store's lineage index
        self.autostart = autostart
        self._lock = threading.RLock()  # the UI polls from several threads: one sync at a time
        self.runs_dir = settings.runs_dir
        set_jobs_per_device(self.runs_dir, jobs_per_device)
        if autostart:  # jobs whose process died (kill -9, reboot) are failed now; the queue moves on
            schedule(self.runs_dir)

    # -- configs and data ---------------------------------------------------------------------------------------
    def config(
        self, method: str, values: dict[str, Any] | None = None, *, filters: Filters | None = None
    ) -> TrainConfig:
        """The method's config from form / ``--set`` values (unknown names: TRL fields or an error)."""
        values = dict(values or {})
        # filters are merged over any "filters" in values (the CLI's flags over --set filters=...)
        if filters is not None:
            values["filters"] = {**values.get("filters", {}), **filters_to_dict(filters)}
        return trainer_class(method).make_config(values)

    def preview(
        self,
        method: str,
        values: dict[str, Any] | None = None,
        *,
        filters: Filters | None = None,
        limit: int = 5,
    ) -> DataPreview:
        """Counts and a few rows of what ``method`` would train on, and what would stop it."""
        cfg = self.config(method, values, filters=filters)
        return trainer_class(method).preview(self._need_store(), cfg, limit)

    # -- start ------------------------------------------------------------------------------------------------
    def start(
        self, method: str, values: dict[str, Any] | None = None, *, filters: Filters | None = None
    ) -> TrainingJob:
        """Validate, snapshot the data, queue the job; it starts now if its device is free. Bad input raises
        ``InputError`` before anything is recorded or launched."""
        store, cls = self._need_store(), trainer_class(method)
        self.sync_all()  # the store's view of the jobs is current before a trainer reads it (PPO's reward run)
        cfg = cls.resolve(
            store, self._resolve_model(self.config(method, values, filters=filters)), self.registry
        )
        preview = cls.preview(store, cfg, 1)
        if preview.problems:
            raise InputError(f"{method}: " + "; ".join(preview.problems))
        with self._lock:
            run_id = store.add_training_run(
                method, cfg.to_dict(), base_model=cfg.base_model, status="pending"
            )
            run = self._new_run_dir(run_id)
            try:
                name = cfg.output_name or self._unique_name(f"{method}-{run_id}")
                cfg = cfg.replace(run_id=run_id, output_name=name)
                cls.snapshot(store, cfg, run)
                self._queue(run, method, cfg)
            except Exception as e:
                run.update_status(state="failed", error=str(e), finished_at=now_iso())
                self.sync(run_id)
                raise
        if self.autostart:
            schedule(self.runs_dir)
        return self.sync(run_id)

    def _queue(self, run: RunDir, method: str, cfg: TrainConfig) -> None:
        settings = {
            "data_dir": str(self.settings.data_dir), "threads": self.settings.threads,
            "dtype": self.settings.dtype, "default_model": self.settings.default_model,
        }  # fmt: skip
        run.write_config(
            {"method": method, "created_at": now_iso(), "config": cfg.to_dict(), "settings": settings}
        )
        run.update_status(
            state="queued", method=method, queued_at=now_iso(), device=self._device(cfg),
            command=launch_command(run.config, cfg), threads=cfg.threads or self.settings.threads,
            base_model=cfg.base_model, output_name=cfg.output_name,
        )  # fmt: skip

    def _new_run_dir(self, run_id: int) -> RunDir:
        path = self.runs_dir / str(run_id)
        if path.exists():  # left by an older store in this data dir: keep it, out of the way
            path.rename(path.with_name(f"{run_id}.orphan-{int(time.time())}"))
        path.mkdir(parents=True)
        return RunDir(path)

    def _resolve_model(self, cfg: TrainConfig) -> TrainConfig:
        """The base model's weights dir (and adapter) from the model registry."""
        from studio import default_model

        # the built-in GGUF entry (llama.cpp) trains from its transformers twin, the same weights de-quantized
        spec = self.registry.get(
            self.registry.transformers_twin(cfg.base_model or self.settings.default_model)
        )
        if spec.backend != "transformers" or spec.gguf_file:
            raise InputError(
                f"model {spec.name!r} is served by {spec.backend}{' from a GGUF' if spec.gguf_file else ''}; "
                "training needs a local transformers model (a dir or hub id)"
            )
        if spec.builtin:
            default_model.ensure_converted(Path(spec.path))
        return cfg.replace(base_model=spec.name, model_path=spec.path, adapter_path=spec.adapter)

    def _unique_name(self, name: str) -> str:
        return self.registry.unique_name(name)

    def _device(self, cfg: TrainConfig) -> str:
        if cfg.device != "auto":
            return cfg.device
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    def _need_store(self) -> Store:
        if self.store is None:
            raise InputError(
                "starting a job needs the store, which another studio process holds; "
                "start it from that process (the Train tab), or stop it first"
            )
        return self.store

    # -- read -------------------------------------------------------------------------------------------------
    def get(self, job_id: int) -> TrainingJob:
        run = self.rundir(job_id)
        st = run.status()
        synced = read_json(run.sync_file, {}) or {}
        return TrainingJob(
            id=run.id, method=st.get("method", ""), state=st.get("state", "queued"), run_dir=str(run.path),
            base_model=st.get("base_model", ""), output_name=st.get("output_name", ""),
            device=st.get("device", ""), step=int(st.get("step") or 0), max_steps=int(st.get("max_steps") or 0),
            pid=st.get("pid"), error=st.get("error"), queued_at=st.get("queued_at"),
            started_at=st.get("started_at"), finished_at=st.get("finished_at"), resumed=bool(st.get("resume")),
            resume_note=st.get("resume_note", ""), models=list(synced.get("registered", [])),
        )  # fmt: skip

    def list(self) -> list[TrainingJob]:
        """Every job, newest first."""
        return [self.get(run.id) for run in reversed(run_dirs(self.runs_dir)) if run.status_file.exists()]

    def metrics(self, job_id: int) -> dict[str, list[tuple[int, float]]]:
        """Metric series ``name -> [(step, value)]`` from the run dir (live, whoever holds the store)."""
        return self.rundir(job_id).metric_series()

    def curves(self, job_id: int) -> dict[str, list[tuple[int, float]]]:
        """The series the Train tab plots for this job's method (loss, rewards/..., reward, kl, accuracy)."""
        job = self.get(job_id)
        wanted = trainer_class(job.method).curves if job.method in TRAINERS else ("loss",)
        series = self.metrics(job_id)
        return {name: series[name] for name in wanted if name in series}

    def logs(self, job_id: int, lines: int = 200) -> str:
        return self.rundir(job_id).tail(lines)

    def command(self, job_id: int, *, machine_rank: int | None = None) -> list[str]:
        """The job's command line; for multinode, the one to run on machine ``machine_rank``."""
        run = self.rundir(job_id)
        doc = run.read_config()
        cfg = trainer_class(doc["method"]).Config.from_dict(doc["config"])
        return launch_command(run.config, cfg, machine_rank=machine_rank)

    def rundir(self, job_id: int) -> RunDir:
        """The job's run dir (files: config, status, log, metrics, checkpoints, adapter)."""
        run = RunDir(self.runs_dir / str(int(job_id)))
        if not run.status_file.exists():
            raise InputError(f"no training job {job_id} in {self.runs_dir}")
        return run

    # -- control ----------------------------------------------------------------------------------------------
    def cancel(self, job_id: int, *, grace: float = 10.0) -> TrainingJob:
        """Cancel a queued job, or kill a running one's whole process group (SIGTERM, then SIGKILL)."""
        run = self.rundir(job_id)
        st = run.status()
        if st.get("state") not in ("queued", "running"):
            raise InputError(
                f"job {job_id} is {st.get('state')}; only queued or running jobs can be cancelled"
            )
        if st.get("state") == "running":
            kill_group(st, grace)
        run.update_status(state="cancelled", finished_at=now_iso(), error=None, force=True)
        schedule(self.runs_dir)
        return self.sync(job_id)

    def resume(self, job_id: int) -> TrainingJob:
        """Queue a failed or cancelled job again: it continues from its newest checkpoint, or, with none yet,
        restarts from step 0 (``TrainingJob.resume_note`` says which). Its first start time is kept."""
        run = self.rundir(job_id)
        st = run.status()
        if st.get("state") not in ("failed", "cancelled"):
            raise InputError(
                f"job {job_id} is {st.get('state')}; only failed or cancelled jobs can be resumed"
            )
        run.update_status(
            state="queued", force=True, resume=True, queued_at=now_iso(), error=None, finished_at=None,
            resume_note=self.resume_plan(job_id),
        )  # fmt: skip
        schedule(self.runs_dir)
        return self.sync(job_id)

    def resume_plan(self, job_id: int) -> str:
        """What a resume of this job does now: continue from a checkpoint, or restart from step 0."""
        run = self.rundir(job_id)
        doc = run.read_config() if run.config.exists() else {}
        method = doc.get("method") or run.status().get("method", "")
        if method in TRAINERS and not TRAINERS.get(method).resumable:
            return f"{method} cannot continue from a checkpoint (TRL's trainer cannot): restarts from step 0"
        found, done = run.newest_checkpoint(), run.finished_iterations()
        kept = f" (its {done} finished iteration{'s are' if done != 1 else ' is'} kept)" if done else ""
        if found is not None:
            path, step = found
            return f"continues from its checkpoint at step {step} ({path.relative_to(run.path)}){kept}"
        every = (doc.get("config") or {}).get("save_steps")
        plan = "no checkpoint yet: restarts from step 0" + kept
        return f"{plan}; checkpoints every {every} steps" if every else plan

    def wait(self, job_id: int, *, timeout: float | None = None, poll: float = 1.0) -> TrainingJob:
        """Poll (and sync) until the job ends or ``timeout`` seconds pass; returns the job as it is then."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            schedule(self.runs_dir)
            job = self.sync(job_id)
            if job.done or (deadline is not None and time.monotonic() >= deadline):
                return job
            time.sleep(poll)

    # -- sync into the store ---------------------------------------------------------------------------------
    def refresh(self) -> list[TrainingJob]:
        """Start what can start, notice dead jobs, sync every job not yet fully in the store; all jobs."""
        schedule(self.runs_dir)
        self.sync_all()
        return self.list()

    def sync_all(self) -> None:
        """Sync every job whose run dir says more than the store has (live, or changed since its last sync)."""
        if self.store is None:
            return
        for run in run_dirs(self.runs_dir):
            status = run.status()
            synced = (read_json(run.sync_file, {}) or {}).get("status")
            if status and (status.get("state") not in TERMINAL or synced != _signature(status)):
                self.sync(run.id)

    def sync(self, job_id: int) -> TrainingJob:
        """Bring the store up to date with one job's files: status, metrics, generated data, models."""
        with self._lock:
            return self._sync(job_id)

    def _sync(self, job_id: int) -> TrainingJob:
        run = self.rundir(job_id)
        status = run.status()
        if status.get("state") == "running" and not alive(status):
            mark_lost(run)
            status = run.status()
        if self.store is None or self.store.get_training_run(run.id) is None:
            return self.get(job_id)
        state = read_json(run.sync_file, {}) or {}
        self._mirror_status(run, status, state)
        self._sync_metrics(run, state)
        method = status.get("method", "")
        if method in TRAINERS:
            TRAINERS.get(method).import_results(self.store, run, state)
        self._register_models(run, state)
        write_json(run.sync_file, state)
        return self.get(job_id)

    def _mirror_status(self, run: RunDir, status: dict[str, Any], state: dict[str, Any]) -> None:
        """The one writer of the store's job status: a copy of the run dir's (the owner)."""
        signature = _signature(status)
        if state.get("status") == signature:
            return
        # error "" clears an earlier attempt's error (the store leaves fields given as None unchanged)
        self.store.update_training_run(
            run.id, status=STORE_STATUS[status.get("state", "queued")], error=status.get("error") or "",
            started_at=_time(status.get("started_at")), finished_at=_time(status.get("finished_at")),
            output_path=str(run.path), log_path=str(run.log),
        )  # fmt: skip
        state["status"] = signature

    def _sync_metrics(self, run: RunDir, state: dict[str, Any]) -> None:
        rows, offset = run.read_metrics(int(state.get("metrics_offset", 0)))
        for row in rows:
            values = {
                k: v for k, v in row.items() if k not in ("step", "time") and isinstance(v, int | float)
            }
            if values:
                self.store.append_metrics(run.id, int(row["step"]), values)
        state["metrics_offset"] = offset

    def _register_models(self, run: RunDir, state: dict[str, Any]) -> None:
        """Register each model the job announced (``models.jsonl``) once, in the model registry: policies for
        the Arena's picker, reward models for their lineage (the registry keeps the store's lineage index)."""
        done = set(state.get("announced", []))
        registered = list(state.get("registered", []))
        for entry in read_jsonl(run.path / "models.jsonl"):
            if entry["name"] not in done:
                registered.append(self.registry.register_trained(entry))
                done.add(entry["name"])
        state["announced"], state["registered"] = sorted(done), registered


def kill_group(status: dict[str, Any], grace: float = 10.0) -> None:
    """SIGTERM the job's process group, then SIGKILL it if it is still there after ``grace`` seconds."""
    pid = int(status.get("pid") or 0)
    if not pid or not alive(status):
        return
    try:
        pgid = os.getpgid(pid)
    except ProcessLookupError:
        return
    for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not alive(status):
                return
            time.sleep(0.1)


def _time(text: str | None) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _signature(status: dict[str, Any]) -> list[Any]:
    """What the store's training_runs row mirrors; a change means the row needs an update."""
    return [status.get(k) for k in ("state", "error", "started_at", "finished_at")]
