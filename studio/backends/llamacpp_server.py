"""A llama.cpp server for one GGUF file on 127.0.0.1, run by ``xllamacpp`` in a child process the studio owns.

``xllamacpp.Server`` embeds llama.cpp's own C++ HTTP server (OpenAI-compatible ``/v1``, continuous batching over
``parallel`` slots, ``/tokenize``, ``/health``). It runs in a child Python process (``python -m`` this module),
not in the studio's: deleting an in-process ``xllamacpp.Server`` while it answers a request holds the GIL until
the request ends (over 200 s for a long answer, the whole app frozen). Stopping the child is a SIGKILL, instant
whatever it is doing; the clients of an interrupted request get a BackendError. The child also exits when the
studio does (its stdin pipe closes), so no server outlives the app.

Threads: llama.cpp's workers spin (``poll``) between work items by default; we set ``poll=0`` (they sleep) so
they do not take cores from other processes on a small machine. Measured under load in docs/engines.md.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import subprocess
import sys
import tempfile
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
#: seconds a model may take to load before the start is given up (a large GGUF on a slow disk)
START_TIMEOUT = 600.0


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
    """llama.cpp's server for one GGUF file on ``host:port`` (``port=0``: a free one), in a child process.

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
        self._proc: subprocess.Popen | None = None
        self._address = ""

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> LlamaServer:
        """Load the model in a child process and listen; returns once ``/health`` answers. A file llama.cpp
        cannot load raises a BackendError quoting llama.cpp's own error lines. Starting a started server does
        nothing."""
        if self._proc is not None:
            return self
        path = check_gguf(self.gguf_path)
        config = {
            "path": str(path), "host": self.host, "port": self.port, "parallel": self.parallel,
            "ctx_size": self.ctx_size, "threads": self.threads, "poll": self.poll,
        }  # fmt: skip
        root = str(Path(__file__).resolve().parents[2])  # the child imports this very studio package
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p),
        }
        self._proc = subprocess.Popen(
            [sys.executable, "-m", __name__, json.dumps(config)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=env, text=True, start_new_session=True,
        )  # fmt: skip
        reply = self._first_line()
        if "address" not in reply:
            self.stop()
            why = reply.get("error") or "its process ended before it listened"
            raise BackendError(f"llama.cpp could not load {path}: {why}")
        self._address = str(reply["address"]).rstrip("/")
        if not self.alive():
            self.stop()
            raise BackendError(
                f"llama.cpp's server for {path} started but {self._address}/health does not answer"
            )
        return self

    def _first_line(self) -> dict[str, Any]:
        """The child's one JSON line (its address, or why it could not load), waiting at most START_TIMEOUT."""
        assert self._proc is not None and self._proc.stdout is not None
        ready, _, _ = select.select([self._proc.stdout], [], [], START_TIMEOUT)
        if not ready:
            return {"error": f"the model did not load within {START_TIMEOUT:.0f} s"}
        line = self._proc.stdout.readline()
        try:
            return json.loads(line) if line else {}
        except json.JSONDecodeError:
            return {"error": f"unexpected output from the server process: {line.strip()[:200]!r}"}

    def stop(self) -> None:
        """Stop serving at once and free the port (the model's memory goes with the child process), also while
        requests are being answered: their clients get a BackendError. Idempotent."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.kill()  # SIGKILL: nothing to save, and an in-flight request cannot delay it
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- state -------------------------------------------------------------------------------------------------
    @property
    def address(self) -> str:
        """``http://host:port`` of the running server."""
        if self._proc is None:
            raise BackendError(f"the llama.cpp server for {self.gguf_path} is not running")
        return self._address

    @property
    def base_url(self) -> str:
        """The OpenAI-compatible base URL, ``http://host:port/v1``."""
        return self.address + "/v1"

    def alive(self, timeout: float = 2.0) -> bool:
        """Whether the server's process is running and ``/health`` answers ok."""
        if self._proc is None or self._proc.poll() is not None:
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


# -- the child process ---------------------------------------------------------------------------------------------
def _serve(config: dict[str, Any]) -> int:
    """Run llama.cpp's server in this process (the child) until stdin closes: the parent stopped it or ended.
    Prints one JSON line: ``{"address": ...}`` once it listens, or ``{"error": ...}`` quoting llama.cpp."""
    import xllamacpp

    p = xllamacpp.CommonParams()
    p.model.path = config["path"]
    p.hostnames = [config["host"]]
    p.port = config["port"]
    p.n_parallel = config["parallel"]
    p.n_ctx = config["ctx_size"] * config["parallel"]  # llama.cpp splits n_ctx evenly among the slots
    p.cont_batching = True
    for cpu in (p.cpuparams, p.cpuparams_batch):
        cpu.n_threads = config["threads"]
        cpu.poll = config["poll"]
    p.verbosity = _LOG_ERRORS
    with _stderr_captured() as log:
        try:
            server = xllamacpp.Server(p)
        except RuntimeError as e:
            lines = [ln.strip() for ln in log.read().splitlines() if " E " in ln or "error" in ln.lower()]
            why = "; ".join(list(dict.fromkeys(_strip_stamp(ln) for ln in lines))[:3]) or str(e)
            print(json.dumps({"error": why}), flush=True)
            return 1
    print(json.dumps({"address": str(server.listening_address)}), flush=True)
    os.dup2(2, 1)  # anything llama.cpp prints later goes to stderr, never into a pipe nobody reads
    sys.stdin.read()  # blocks until the parent closes the pipe (stop() kills us first; this is for its death)
    os._exit(0)  # no destructor: exiting frees the model and the port at once


if __name__ == "__main__":
    sys.exit(_serve(json.loads(sys.argv[1])))
