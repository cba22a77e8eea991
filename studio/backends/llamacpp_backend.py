"""GGUF models on llama.cpp: a managed server on 127.0.0.1 (:class:`LlamaServer`), spoken to as an OpenAI server.

The backend starts its own llama.cpp server (a child process) when it loads and stops it on :meth:`close`, at
once also mid-request (the clients get a BackendError); every request goes through
:class:`~studio.backends.openai_backend.OpenAIBackend` (HTTP, streaming, retries, schema fallbacks, logprob
parsing live there, once). What llama.cpp adds:

- a batch's rows go out concurrently and share the server's ``parallel`` slots (continuous batching);
- ``choice_probs`` reads the first token's ``top_logprobs`` (llama.cpp returns them on ``/v1/chat/completions``);
- structured steps send ``response_format`` (json_schema), which llama.cpp turns into a grammar;
- ``count_tokens`` asks the server's ``/tokenize``.

``sequence_logprob`` is not offered: llama.cpp's OpenAI API scores generated tokens only, not a given answer.
A LoRA adapter trained here runs on the transformers backend: a model with an adapter never loads on llama.cpp.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from studio.backends.llamacpp_server import CTX_SIZE, LlamaServer, check_gguf
from studio.backends.openai_backend import OpenAIBackend
from studio.errors import InputError

ADAPTER_NOTE = "LoRA adapters run on the transformers backend, not on llama.cpp"


def resolve_gguf(path: str = "", gguf_file: str | None = "") -> Path:
    """The GGUF a llamacpp model serves: ``gguf_file`` inside the dir ``path``, or ``gguf_file`` itself, or a
    ``path`` that is the file; checked to be a readable GGUF file (InputError otherwise)."""
    if gguf_file:
        where = Path(path).expanduser() / gguf_file if path else Path(gguf_file)
    elif path:
        where = Path(path)
    else:
        raise InputError("a llamacpp model needs a GGUF file: give --gguf-file FILE (or --path FILE)")
    return check_gguf(where)


class LlamaCppBackend(OpenAIBackend):
    """A GGUF file served by llama.cpp in a child process it owns (see the module docstring)."""

    supports_choice_probs = True
    supports_sequence_logprob = False
    supports_rows = True

    def __init__(
        self,
        path: str = "",
        *,
        gguf_file: str | None = None,
        adapter: str | None = None,
        model_name: str = "",
        threads: int | None = None,
        parallel: int = 4,
        ctx_size: int = CTX_SIZE,
        timeout: float = 120.0,
        **_: Any,
    ) -> None:
        if adapter:
            raise InputError(f"{ADAPTER_NOTE}: register this model with --backend transformers")
        gguf = resolve_gguf(path, gguf_file)
        self.server = LlamaServer(gguf, threads=threads, parallel=parallel, ctx_size=ctx_size).start()
        try:
            # twice the slots in flight: the server queues the rest, so a slot never waits for a request
            super().__init__(
                gguf.name,
                base_url=self.server.base_url,
                model_name=model_name or gguf.stem,
                timeout=timeout,
                max_retries=0,  # a local server that fails will fail again; say so at once
                concurrency=2 * parallel,
            )
        except Exception:
            self.server.stop()
            raise
        self.gguf_path = gguf
        self.context_length = ctx_size
        import httpx

        self._http = httpx.Client(base_url=self.server.address, timeout=timeout)

    def count_tokens(self, text: str) -> int:
        """The model's own token count, from the server's ``/tokenize``."""
        try:
            r = self._http.post("/tokenize", json={"content": text})
            r.raise_for_status()
            return len(r.json()["tokens"])
        except Exception as e:  # httpx errors, a body without tokens
            raise self._error(f"{self.server.address}/tokenize failed: {e}") from None

    def sequence_logprob(self, conversations: Any, completions: Any) -> list[float]:
        raise NotImplementedError(
            "the llamacpp backend cannot score a given answer (llama.cpp's API returns logprobs of generated "
            "tokens only); use a choice-probability or text-verdict judge, or the transformers backend"
        )

    def close(self) -> None:
        try:
            super().close()
            self._http.close()
        finally:
            self.server.stop()
