"""Any OpenAI-compatible ``/v1`` server: vLLM, Ollama, llama.cpp server, ``transformers serve``, OpenAI."""

from __future__ import annotations

import json
import math
import os
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from studio.backends.base import (
    Backend,
    Completion,
    Conversation,
    GenParams,
    OnDelta,
    OnRowDone,
    Stopwatch,
    apply_stop,
    row_params,
    until_stop,
    validate_conversation,
)
from studio.errors import BackendError, InputError, redact

#: what a server says when it will not take ``response_format`` (besides HTTP 501)
_SCHEMA_WORDS = ("response_format", "json_schema", "response format", "guided", "grammar")
#: what a server says when it refuses a field it does not know
_UNKNOWN_FIELD_WORDS = (
    "unexpected field",
    "unrecognized request argument",
    "extra",
    "not permitted",
    "unknown",
)


class _Refused(Exception):
    """The server refused the request's ``response_format`` (the message is the server's)."""


class OpenAIBackend(Backend):
    """Requests go out concurrently (``concurrency`` at a time); each row is reported as soon as it returns.

    Decoding extras, sent only when they are not the default:

    - ``repetition_penalty`` != 1 is sent (in the request body) both as ``repetition_penalty`` (vLLM, TGI, SGLang)
      and ``repeat_penalty`` (the llama.cpp server); each server reads its own and ignores the other. A server
      that refuses unknown fields (OpenAI, ``transformers serve``) gets a clear error naming it.
    - ``no_repeat_ngram_size`` is not sent: no common server takes it. The completion says so (a warning).
    - ``schema`` is sent as ``response_format`` (``json_schema``, strict). A server that refuses it (HTTP 400, 422
      or 501, or an error naming response_format) is asked again without it, and the step says it ran as free
      text; so is a server that accepts it but answers text that is not JSON (``transformers serve`` ignores
      it). Either way the server is remembered, and later requests go out as free text at once.
    """

    supports_choice_probs = True  # when the server returns logprobs; otherwise a clear error
    supports_rows = True

    def __init__(
        self,
        path: str,
        *,
        base_url: str = "",
        api_key: str = "",
        api_key_env: str = "",
        timeout: float = 60.0,
        max_retries: int = 2,
        concurrency: int = 8,
        model_name: str = "",
        **_: Any,
    ) -> None:
        import openai

        base_url = base_url or os.environ.get("OPENAI_BASE_URL", "")
        if not base_url:
            raise InputError("an openai model needs a base_url, e.g. http://127.0.0.1:8000/v1")
        if not base_url.startswith(("http://", "https://")):
            raise InputError(f"base_url must start with http:// or https://, not {base_url!r}")
        key = (os.environ.get(api_key_env, "") if api_key_env else "") or api_key or "not-needed"
        self._key = key
        self.model = path
        self.model_name = model_name or path
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self.context_length = 0  # unknown: the server enforces its own limit
        self.client = openai.OpenAI(
            base_url=self.base_url, api_key=key, timeout=timeout, max_retries=max_retries
        )
        self._pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="openai")
        #: why this server runs schemas as free text (it refused or ignored ``response_format``); "" = not known to
        self._no_schema = ""
        self._no_schema_lock = threading.Lock()

    # -- helpers ---------------------------------------------------------------------------------------------
    def _error(self, message: str) -> BackendError:
        """A BackendError whose text holds neither this model's key (even one given directly, not by env var)
        nor anything else that looks like a key: servers quote keys back in their error bodies."""
        return BackendError(redact(message, (self._key,) if self._key != "not-needed" else ()))

    def _request(self, params: GenParams) -> dict[str, Any]:
        kw: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_new_tokens,
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        if params.seed is not None:
            kw["seed"] = params.seed
        if params.stop:
            kw["stop"] = list(params.stop)[:4]  # the OpenAI API accepts at most 4
        if params.repetition_penalty != 1.0:
            rp = params.repetition_penalty
            kw["extra_body"] = {"repetition_penalty": rp, "repeat_penalty": rp}
        if params.schema is not None:
            schema = json.loads(params.schema)
            kw["response_format"] = {
                "type": "json_schema",
                "json_schema": {"name": "step", "schema": schema, "strict": True},
            }
        return kw

    def _call(self, fn: Any, **kw: Any) -> Any:
        """Run one API call; translate every client failure into a BackendError naming the URL. A refused
        ``response_format`` raises :class:`_Refused`; refused decoding extras, a BackendError that names them."""
        import openai

        try:
            return fn(**kw)
        except openai.APIStatusError as e:
            body = (e.response.text or "")[:300].strip() if e.response is not None else ""
            msg = body or e.message
            low = msg.lower()
            if "response_format" in kw and (
                e.status_code == 501 or (e.status_code in (400, 422) and any(w in low for w in _SCHEMA_WORDS))
            ):
                raise _Refused(f"HTTP {e.status_code}: {msg}") from None
            if (
                "extra_body" in kw
                and e.status_code in (400, 422)
                and ("penalty" in low or any(w in low for w in _UNKNOWN_FIELD_WORDS))
            ):
                rp = kw["extra_body"]["repetition_penalty"]
                raise self._error(
                    f"{self.base_url} refused repetition_penalty={rp:g} (sent as repetition_penalty and "
                    f"repeat_penalty; HTTP {e.status_code}: {msg[:200]}): this server takes no repetition "
                    "penalty, so set repetition_penalty to 1.0 for this model"
                ) from None
            if "response_format" in kw and e.status_code in (400, 422):
                raise _Refused(f"HTTP {e.status_code}: {msg}") from None
            raise self._error(f"{self.base_url} answered HTTP {e.status_code}: {msg[:200]}") from None
        except openai.APITimeoutError:
            raise self._error(f"{self.base_url} did not answer within {self.timeout:g} s (timeout)") from None
        except openai.APIConnectionError as e:
            if _dropped(e):
                raise self._error(
                    f"{self.base_url} closed the connection without answering (did the server stop or "
                    f"crash?): {_cause(e)}"
                ) from None
            raise self._error(f"cannot reach endpoint {self.base_url}: {_cause(e)}") from None
        except openai.APIResponseValidationError as e:
            raise self._error(
                f"{self.base_url} sent a response that is not valid OpenAI JSON: {e.message}"
            ) from None
        except (ValueError, KeyError, TypeError) as e:  # garbage bodies surface as JSON decode errors
            raise self._error(f"{self.base_url} sent a response that could not be read: {e}") from None

    def _one(self, conversation: Conversation, params: GenParams) -> Completion:
        validate_conversation(conversation)
        watch = Stopwatch()
        resp = self._call(self.client.chat.completions.create, messages=conversation, **self._request(params))
        choices = getattr(resp, "choices", None)
        if not choices or choices[0].message is None:
            raise self._error(f"{self.base_url} answered without any choices: {str(resp)[:200]}")
        text, stopped = apply_stop(choices[0].message.content or "", params.stop)
        usage = getattr(resp, "usage", None)
        return Completion(
            text=text.strip(),
            prompt_tokens=getattr(usage, "prompt_tokens", 0) or _estimate(conversation),
            completion_tokens=getattr(usage, "completion_tokens", 0) or self.count_tokens(text),
            latency_s=watch.elapsed,
            finish_reason="stop" if stopped else (choices[0].finish_reason or "stop"),
            model=self.model_name,
        )

    def _row(
        self, conversation: Conversation, params: GenParams, index: int, on_delta: OnDelta | None
    ) -> Completion:
        """One row: its request, with ``response_format`` while this server is not known to refuse it, and the
        fallbacks and warnings of the class docstring."""
        watch = Stopwatch()
        warnings = []
        if params.no_repeat_ngram_size:
            warnings.append(
                f"no_repeat_ngram_size={params.no_repeat_ngram_size} not applied: OpenAI-compatible servers "
                "do not take it"
            )
        free = params.replace(schema=None)
        constrained = False
        if params.schema is None:
            c = self._send(conversation, params, index, on_delta)
        elif self._no_schema:
            warnings.append(self._no_schema)
            c = self._send(conversation, free, index, on_delta)
        else:
            try:
                c = self._send(conversation, params, index, on_delta)
                constrained = True
            except _Refused as e:
                c = self._send(conversation, free, index, on_delta)
                warnings.append(self._remember(f"refused response_format (json_schema): {e}"))
            if constrained and c.finish_reason != "length" and not _is_json(c.text):
                constrained = False
                warnings.append(
                    self._remember(
                        "accepted response_format (json_schema) but answered text that is not JSON, so it "
                        "ignored the schema"
                    )
                )
        c.constrained, c.warnings, c.latency_s = constrained, warnings + c.warnings, watch.elapsed
        return c

    def _remember(self, what: str) -> str:
        """Remember that this server runs schemas as free text; the step note that says so."""
        note = f"{self.base_url} {what}; ran as free text"
        with self._no_schema_lock:
            self._no_schema = self._no_schema or note
        return note

    def _send(
        self, conversation: Conversation, params: GenParams, index: int, on_delta: OnDelta | None
    ) -> Completion:
        if on_delta is None:
            return self._one(conversation, params)
        return self._one_streamed(conversation, params, index, on_delta)

    # -- Backend API -------------------------------------------------------------------------------------------
    def chat(
        self,
        conversations: Sequence[Conversation],
        params: GenParams | Sequence[GenParams],
        on_delta: OnDelta | None = None,
        on_row_done: OnRowDone | None = None,
    ) -> list[Completion]:
        """A batch is a set of bounded concurrent requests (``concurrency`` at a time), each row with its own
        params; ``on_row_done`` hears of each as it returns. With ``on_delta``, each request streams and reports
        its text so far."""
        rows = row_params(params, len(conversations))
        for c in conversations:
            validate_conversation(c)

        def one(i: int) -> Completion:
            c = self._row(conversations[i], rows[i], i, on_delta)
            if on_row_done is not None:
                on_row_done(i, c)
            return c

        return list(self._pool.map(one, range(len(conversations))))

    def _one_streamed(
        self, conversation: Conversation, params: GenParams, index: int, on_delta: OnDelta
    ) -> Completion:
        watch = Stopwatch()
        text = ""
        for chunk in self._stream(conversation, params):
            text += chunk
            on_delta(index, text)
        return Completion(
            text=text.strip(),
            prompt_tokens=_estimate(conversation),
            completion_tokens=self.count_tokens(text),
            latency_s=watch.elapsed,
            model=self.model_name,
        )

    def stream(self, conversation: Conversation, params: GenParams) -> Iterator[str]:
        """One answer's text as it comes. A schema goes as ``response_format`` unless the server refuses it."""
        if params.schema is not None and not self._no_schema:
            try:
                yield from self._stream(conversation, params)
                return
            except _Refused as e:
                self._remember(f"refused response_format (json_schema): {e}")
        yield from self._stream(conversation, params.replace(schema=None))

    def _stream(self, conversation: Conversation, params: GenParams) -> Iterator[str]:
        validate_conversation(conversation)
        events = self._call(
            self.client.chat.completions.create, messages=conversation, stream=True, **self._request(params)
        )
        received = False

        def texts() -> Iterator[str]:
            nonlocal received
            for ev in _guarded(events, self):
                received = True
                if getattr(ev, "choices", None):
                    yield ev.choices[0].delta.content or ""

        try:
            yield from until_stop(texts(), params.stop)
            if not received:  # a JSON or HTML body instead of an event stream parses as no events at all
                raise self._error(
                    f"{self.base_url} sent no stream events: its answer is not an OpenAI event stream"
                )
        finally:
            close = getattr(events, "close", None)
            if close:
                close()

    def choice_probs(
        self, conversations: Sequence[Conversation], choices: Sequence[str]
    ) -> list[dict[str, float]]:
        """Read top logprobs of the first generated token, where the server returns them."""

        def one(conv: Conversation) -> dict[str, float]:
            validate_conversation(conv)
            resp = self._call(
                self.client.chat.completions.create,
                messages=conv,
                model=self.model,
                max_tokens=1,
                temperature=0,
                logprobs=True,
                top_logprobs=20,
            )
            lp = getattr(resp.choices[0], "logprobs", None) if resp.choices else None
            if not lp or not lp.content:
                raise self._error(
                    f"{self.base_url} does not return logprobs; use a text-verdict judge instead"
                )
            top = [(t.token, t.logprob) for t in lp.content[0].top_logprobs or []]
            return choice_distribution(top, choices)

        return list(self._pool.map(one, conversations))

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
        self.client.close()


def _guarded(events: Any, backend: OpenAIBackend) -> Iterator[Any]:
    """Iterate a stream, turning mid-stream failures (server killed, garbage) into BackendError."""
    it = iter(events)
    while True:
        try:
            ev = next(it)
        except StopIteration:
            return
        except Exception as e:  # openai/httpx errors (RemoteProtocolError...) when the server dies mid-stream
            raise backend._error(f"the stream from {backend.base_url} broke off: {_cause(e)}") from None
        yield ev


def _dropped(e: BaseException) -> bool:
    """Whether a connection error is a server that took the request, then closed the connection without an answer
    (it stopped or crashed), not one that could not be reached: httpx's or httpx2's RemoteProtocolError (the
    openai client raises either, by version)."""
    return type(e.__cause__).__name__ == "RemoteProtocolError"


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def _cause(e: BaseException) -> str:
    inner = e.__cause__ or e.__context__
    return f"{type(inner).__name__}: {inner}" if inner else str(e)


def _estimate(conversation: Conversation) -> int:
    return max(1, sum(len(m["content"]) for m in conversation) // 4)


def choice_distribution(top: Sequence[tuple[str, float]], choices: Sequence[str]) -> dict[str, float]:
    """P(choice) from a server's top logprobs of the first token, renormalised over ``choices``.

    Tokens that differ only by spacing ("A", " A") are the same choice, so their probabilities add up. A choice
    outside the top list is not impossible: it gets an upper bound, the smaller of the least listed probability
    and the mass left outside the list, so one listed letter does not come out as certain."""
    probs = [(tok.strip(), math.exp(lp)) for tok, lp in top]
    raw = {c: sum(p for tok, p in probs if tok == c) for c in choices}
    if probs:
        unseen = min(min(p for _, p in probs), max(0.0, 1.0 - sum(p for _, p in probs)))
        raw = {c: v if any(tok == c for tok, _ in probs) else unseen for c, v in raw.items()}
    total = sum(raw.values())
    if total <= 0:
        return {c: 1 / len(choices) for c in choices}
    return {c: v / total for c, v in raw.items()}
