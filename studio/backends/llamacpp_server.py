"""A llama.cpp server for one GGUF file, run in this process by ``xllamacpp`` on 127.0.0.1.

``xllamacpp.Server`` embeds llama.cpp's own C++ HTTP server (OpenAI-compatible ``/v1``, continuous batching over
``parallel`` slots, ``/tokenize``, ``/health``). It runs in-process: building it loads the model and starts
listening (about 0.6 s for the default model); deleting it stops the main loop and frees the port (about
0.05 s, measured), so no child process is needed.

Threads: llama.cpp's workers spin (``poll``) between work items by default; we set ``poll=0`` (they sleep) so
they do not take cores from other processes on a small machine. Measured under load in docs/engines.md.
"""

from __future__ import annotations

import contextlib
import gc
import os
import tempfile
import threading
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from studio.errors import BackendError, InputError

GGUF_MAGIC = b"GGUF"
#: the slots' default context (tokens per request, prompt plus answer); the KV cache holds ``parallel`` of them
CTX_SIZE = 2048
#: llama.cpp's log level while it loads a model: 1 = errors only (they explain a file it cannot read)
_LOG_ERRORS = 1
#: one server starts at a time in a process: the start captures the process's stderr (fd 2) to read the
#: loader's error lines
_START_LOCK = threading.Lock()


def default_threads() -> int:
    """Generation threads when none are asked for: the process's cores, at most 2 (see docs/engines.md)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(2, cores))


def check_gguf(path: str | Path) -> Path:
    """The path of a readable GGUF file, or an InputError saying what is wrong with it."""
    p = Path(path).expanduser()
    if not p.exists():
        raise InputError(f"GGUF file not found: {p}")
    if not p.is_file():
        raise InputError(f"{p} is not a file: give the path of a .gguf model file")
    try:
        with open(p, "rb") as f:
            head = f.read(4)
    except OSError as e:
        raise InputError(f"cannot read GGUF file {p}: {e.strerror or e}") from None
    if head != GGUF_MAGIC:
        raise InputError(
            f"{p} is not a GGUF model file (it starts with {head!r}, a GGUF file starts with b'GGUF'); "
            "convert the model with llama.cpp's convert_hf_to_gguf.py or download a .gguf file"
        )
    return p.resolve()


class LlamaServer:
    """llama.cpp's server for one GGUF file on ``host:port`` (``port=0``: a free one), in this process.

    ``threads=None`` picks :func:`default_threads`; prompt processing (``threads_batch``) uses the same count.
    ``ctx_size`` is the context of each of the ``parallel`` slots."""

    def __init__(
        self,
        gguf_path: str | Path,
        *,
        threads: int | None = None,
        parallel: int = 4,
        ctx_size: int = CTX_SIZE,
        port: int = 0,
        host: str = "127.0.0.1",
        poll: int = 0,
    ) -> None:
        if threads is not None and threads < 1:
            raise InputError(f"threads must be >= 1, not {threads}")
        if parallel < 1:
            raise InputError(f"parallel must be >= 1, not {parallel}")
        if ctx_size < 64:
            raise InputError(f"ctx_size must be >= 64 tokens, not {ctx_size}")
        if not 0 <= port <= 65535:
            raise InputError(f"port must be in 0..65535, not {port}")
        if not 0 <= poll <= 100:
            raise InputError(f"poll must be in 0..100, not {poll}")
        self.gguf_path = Path(gguf_path)
        self.threads = threads or default_threads()
        self.parallel = parallel
        self.ctx_size = ctx_size
        self.port = port
        self.host = host
        self.poll = poll
        self._server: Any = None
        self._address = ""

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> LlamaServer:
        """Load the model and listen; returns once ``/health`` answers. A file llama.cpp cannot load raises a
        BackendError quoting llama.cpp's own error lines. Starting a started server does nothing."""
        if self._server is not None:
            return self
        import xllamacpp

        path = check_gguf(self.gguf_path)
        p = xllamacpp.CommonParams()
        p.model.path = str(path)
        p.hostnames = [self.host]
        p.port = self.port
        p.n_parallel = self.parallel
        p.n_ctx = self.ctx_size * self.parallel  # llama.cpp splits n_ctx evenly among the slots
        p.cont_batching = True
        for cpu in (p.cpuparams, p.cpuparams_batch):
            cpu.n_threads = self.threads
            cpu.poll = self.poll
        p.verbosity = _LOG_ERRORS
        with _START_LOCK, _stderr_captured() as log:
            try:
                self._server = xllamacpp.Server(p)
            except RuntimeError as e:
                lines = [ln.strip() for ln in log.read().splitlines() if " E " in ln or "error" in ln.lower()]
                why = "; ".join(list(dict.fromkeys(_strip_stamp(ln) for ln in lines))[:3]) or str(e)
                raise BackendError(f"llama.cpp could not load {path}: {why}") from None
        self._address = str(self._server.listening_address).rstrip("/")
        if not self.alive():
            self.stop()
            raise BackendError(
                f"llama.cpp's server for {path} started but {self._address}/health does not answer"
            )
        return self

    def stop(self) -> None:
        """Stop serving and free the port (the model's memory goes with the server). Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            del server
            gc.collect()

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state -------------------------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """``http://host:port`` of the running server."""
        if self._server is None:
            raise BackendError(f"the llama.cpp server for {self.gguf_path} is not running")
        return self._address

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, ``http://host:port/v1``."""
        return self.address + "/v1"

    def alive(self, timeout: float = 2.0) -> bool:
        """Whether the server is running and ``/health`` answers ok."""
        if self._server is None:
            return False
        try:
            with urllib.request.urlopen(self._address + "/health", timeout=timeout) as r:
                return r.status == 200
        except (urllib.error.URLError, OSError):
            return False


def _strip_stamp(line: str) -> str:
    """``0.00.004.355 E gguf_init_from_reader: invalid magic`` -> ``gguf_init_from_reader: invalid magic``."""
    parts = line.split(" E ", 1)
    return parts[1].strip() if len(parts) == 2 else line


@contextlib.contextmanager
def _stderr_captured() -> Any:
    """Send fd 2 (where llama.cpp logs) to a temporary file while the block runs; yields the file, rewound.
    What was captured is written to the real stderr afterwards, so nothing another thread wrote is lost."""
    with tempfile.TemporaryFile(mode="w+", encoding="utf-8", errors="replace") as tmp:
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            try:
                yield _Rewound(tmp)
            finally:
                os.dup2(saved, 2)
                text = _Rewound(tmp).read()
                if text:
                    os.write(2, text.encode("utf-8", "replace"))
        finally:
            os.close(saved)


class _Rewound:
    def __init__(self, f: Any) -> None:
        self._f = f

    def read(self) -> str:
        self._f.flush()
        self._f.seek(0)
        return self._f.read()
