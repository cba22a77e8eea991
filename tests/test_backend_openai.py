"""The openai backend against real servers on 127.0.0.1: `transformers serve` for chat, streaming and retries
(through a proxy that fails the first requests), and a log-prob server on the real model for ``choice_probs``
(`transformers serve` accepts ``logprobs`` but returns none). Broken servers give clear errors."""

from __future__ import annotations

import json

import pytest

from studio.backends import GenParams
from studio.backends.base import schema_text
from studio.backends.openai_backend import OpenAIBackend
from studio.errors import BackendError, InputError
from studio.judges import make_judge
from studio.judges.base import JudgeItem
from studio.judges.logprob import logprob_conversation
from tests.servers import (
    broken_server,
    closed_port,
    flaky_proxy,
    logprob_server,
    refusing_proxy,
    stop,
    transformers_serve,
)

Q = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def served(default_model_dir, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    with transformers_serve(default_model_dir, log) as (url, proc):
        yield url, proc, str(default_model_dir)


@pytest.mark.slow
def test_chat_and_stream(served) -> None:
    url, _, model = served
    b = OpenAIBackend(model, base_url=url, model_name="served")
    batch = b.chat([Q, Q], GenParams(max_new_tokens=24))
    assert [("Paris" in c.text) for c in batch] == [True, True]
    assert all(c.prompt_tokens > 0 and c.completion_tokens > 0 and c.latency_s > 0 for c in batch)
    chunks = list(b.stream(Q, GenParams(max_new_tokens=24)))
    assert len(chunks) > 1 and "Paris" in "".join(chunks)


@pytest.mark.slow
def test_server_killed_mid_test_gives_clear_error(default_model_dir, tmp_path) -> None:
    with transformers_serve(default_model_dir, tmp_path / "serve.log") as (url, proc):
        b = OpenAIBackend(str(default_model_dir), base_url=url, timeout=10, max_retries=0)
        assert b.chat([Q], GenParams(max_new_tokens=4))[0].text
        stop(proc)
        with pytest.raises(BackendError, match=r"cannot reach endpoint http://127\.0\.0\.1"):
            b.chat([Q], GenParams(max_new_tokens=4))


# -- structured outputs and decoding extras --------------------------------------------------------------------
SCHEMA = schema_text({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})


@pytest.mark.slow
def test_a_server_that_ignores_response_format_runs_free_text_and_says_so(served) -> None:
    """`transformers serve` takes ``response_format`` but ignores it (it logs "Ignoring unsupported fields"): the
    answer is prose, so the row is not constrained, the warning names the server, and the server is remembered."""
    url, _, model = served
    with flaky_proxy(url, fail_first=0) as proxy:  # a plain relay, to count the requests
        b = OpenAIBackend(model, base_url=proxy.url, max_retries=0)
        first, second = (
            b.chat([Q], GenParams(max_new_tokens=24, schema=SCHEMA)),
            b.chat([Q], GenParams(max_new_tokens=24, schema=SCHEMA)),
        )
    [c1], [c2] = first, second
    assert "Paris" in c1.text and not c1.constrained and not c2.constrained
    assert c1.warnings == [
        f"{proxy.url} accepted response_format (json_schema) but answered text that is not JSON, so it ignored "
        "the schema; ran as free text"
    ]
    assert c2.warnings == c1.warnings and proxy.statuses == [200, 200]


@pytest.mark.slow
def test_a_server_that_refuses_response_format_is_asked_again_as_free_text(served) -> None:
    url, _, model = served
    with refusing_proxy(url) as proxy:
        b = OpenAIBackend(model, base_url=proxy.url, max_retries=0)
        seen: list[int] = []
        [c] = b.chat(
            [Q], [GenParams(max_new_tokens=24, schema=SCHEMA)], on_row_done=lambda i, _: seen.append(i)
        )
        [again] = b.chat([Q], GenParams(max_new_tokens=24, schema=SCHEMA))
        streamed = "".join(b.stream(Q, GenParams(max_new_tokens=24, schema=SCHEMA)))
    assert "Paris" in c.text and not c.constrained and seen == [0]
    assert c.warnings == [
        f"{proxy.url} refused response_format (json_schema): HTTP 400: "
        '{"error": {"message": "response_format is not supported"}}; ran as free text'
    ]
    sent = proxy.bodies[0]["response_format"]
    assert sent["type"] == "json_schema" and sent["json_schema"]["strict"] is True
    assert sent["json_schema"]["schema"] == json.loads(SCHEMA)
    # refused once: the retry and every later request (chat or stream) go out as free text at once
    assert proxy.statuses == [400, 200, 200, 200] and not again.constrained and "Paris" in streamed
    assert again.warnings == c.warnings


@pytest.mark.slow
def test_repetition_penalty_on_a_server_that_refuses_it_is_a_clear_error(served) -> None:
    """Sent (only when not 1.0) as repetition_penalty and repeat_penalty; `transformers serve` refuses unknown
    fields with HTTP 422, and the error names the server and what to change."""
    url, _, model = served
    b = OpenAIBackend(model, base_url=url, max_retries=0)
    with pytest.raises(
        BackendError,
        match=rf"{url} refused repetition_penalty=1\.3 .*HTTP 422.*set repetition_penalty to 1\.0",
    ):
        b.chat([Q], GenParams(max_new_tokens=8, repetition_penalty=1.3))
    [c] = b.chat([Q], GenParams(max_new_tokens=8, no_repeat_ngram_size=3))  # not sent: said, not refused
    assert c.text and c.warnings == [
        "no_repeat_ngram_size=3 not applied: OpenAI-compatible servers do not take it"
    ]


def test_decoding_extras_are_sent_only_when_not_default() -> None:
    b = OpenAIBackend("m", base_url="http://127.0.0.1:9/v1")
    plain = b._request(GenParams())
    assert "extra_body" not in plain and "response_format" not in plain
    extra = b._request(GenParams(repetition_penalty=1.2, no_repeat_ngram_size=3))["extra_body"]
    assert extra == {"repetition_penalty": 1.2, "repeat_penalty": 1.2}


# -- retries: the OpenAI client's, through a proxy that fails the first requests -------------------------------
@pytest.mark.slow
@pytest.mark.parametrize("status", [500, 503])
def test_retries_get_through_to_the_real_server(served, status: int) -> None:
    url, _, model = served
    with flaky_proxy(url, fail_first=2, status=status) as proxy:
        b = OpenAIBackend(model, base_url=proxy.url, max_retries=2)
        [answer] = b.chat([Q], GenParams(max_new_tokens=16))
    assert proxy.statuses == [status, status, 200]  # two failures, retried, then transformers serve answered
    assert "Paris" in answer.text and answer.completion_tokens > 0


@pytest.mark.slow
def test_retries_are_bounded_and_the_last_error_is_shown(served) -> None:
    url, _, model = served
    with flaky_proxy(url, fail_first=3, status=503) as proxy:
        b = OpenAIBackend(model, base_url=proxy.url, max_retries=1)
        with pytest.raises(BackendError, match="answered HTTP 503: .*overloaded"):
            b.chat([Q], GenParams(max_new_tokens=4))
    assert proxy.statuses == [503, 503]  # the first try and one retry; the third failure is never asked for
    with flaky_proxy(url, fail_first=1, status=503) as proxy:
        b = OpenAIBackend(model, base_url=proxy.url, max_retries=0)
        with pytest.raises(BackendError, match="HTTP 503"):
            b.chat([Q], GenParams(max_new_tokens=4))
    assert proxy.statuses == [503]


# -- choice_probs ----------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_choice_probs_from_a_server_without_logprobs_is_a_clear_error(served) -> None:
    url, _, model = served
    b = OpenAIBackend(model, base_url=url, max_retries=0)
    with pytest.raises(BackendError, match="does not return logprobs; use a text-verdict judge"):
        b.choice_probs([Q], ["A", "B"])


@pytest.mark.slow
def test_choice_probs_over_http_are_the_models_next_token_probabilities(default_model_dir) -> None:
    """The top_logprobs of the first token, read and renormalised over the choices, equal the same model's
    next-token probabilities computed in this process (float32 on both sides, one conversation at a time)."""
    from studio.backends.transformers_backend import TransformersBackend

    item = JudgeItem.pair(
        "What is the capital of France?", "The capital of France is Paris.", "I like turtles."
    )
    convs = [logprob_conversation(item, order) for order in ("AB", "BA")]
    local = TransformersBackend(str(default_model_dir), dtype="float32")
    with logprob_server(default_model_dir) as server:
        b = OpenAIBackend(str(default_model_dir), base_url=server.url, max_retries=0)
        remote = b.choice_probs(convs, ["A", "B"])
        verdict = make_judge("logprob", {"variant": "pair"}).judge([item], b)[0]
    assert {(r["logprobs"], r["top_logprobs"], r["max_tokens"]) for r in server.requests} == {(True, 20, 1)}
    for conv, probs in zip(convs, remote, strict=True):
        [expected] = local.choice_probs([conv], ["A", "B"])
        assert probs == pytest.approx(expected, abs=1e-4)
        assert sum(probs.values()) == pytest.approx(1.0)
    assert verdict.ok and verdict.prob_a == pytest.approx((remote[0]["A"] + remote[1]["B"]) / 2)


# -- failures without a model ------------------------------------------------------------------------------------
def test_unreachable_endpoint_names_the_url() -> None:
    """A refused connection fails at once with the URL and the refusal (not a timeout, not a retry loop)."""
    with closed_port() as port:
        url = f"http://127.0.0.1:{port}/v1"
        b = OpenAIBackend("m", base_url=url, timeout=30, max_retries=0)
        pattern = "cannot reach endpoint " + url.replace(".", r"\.") + ".*(refused|Errno 111)"
        with pytest.raises(BackendError, match=pattern):
            b.chat([Q], GenParams(max_new_tokens=4))
        with pytest.raises(BackendError, match="cannot reach.*(refused|Errno 111)"):
            list(b.stream(Q, GenParams(max_new_tokens=4)))


@pytest.mark.parametrize(
    ("mode", "pattern"),
    [
        ("500", "answered HTTP 500"),
        ("garbage", "could not be read|not valid"),
        ("empty", "without any choices"),
    ],
)
def test_broken_servers_give_clear_errors(mode: str, pattern: str) -> None:
    with broken_server(mode) as url:
        b = OpenAIBackend("m", base_url=url, timeout=5, max_retries=0)
        with pytest.raises(BackendError, match=pattern):
            b.chat([Q], GenParams(max_new_tokens=4))


def test_timeout_is_clear() -> None:
    with broken_server("slow") as url:
        b = OpenAIBackend("m", base_url=url, timeout=1, max_retries=0)
        with pytest.raises(BackendError, match="timeout"):
            b.chat([Q], GenParams(max_new_tokens=4))


def test_bad_base_url() -> None:
    with pytest.raises(InputError, match="http"):
        OpenAIBackend("m", base_url="localhost:8000")


def test_choice_distribution_merges_spacing_and_bounds_unlisted_choices() -> None:
    """Parsing of a server's top logprobs (scripted numbers): " A" and "A" are one choice, and a choice missing
    from the top list is bounded by what is left, not taken as impossible (which made one letter certain)."""
    import math

    from studio.backends.openai_backend import choice_distribution

    ln = math.log
    merged = choice_distribution(
        [("A", ln(0.3)), (" A", ln(0.3)), ("B", ln(0.2)), ("x", ln(0.2))], ["A", "B"]
    )
    assert merged["A"] == pytest.approx(0.75) and merged["B"] == pytest.approx(0.25)
    lone = choice_distribution([("A", ln(0.6)), ("the", ln(0.3))], ["A", "B"])
    assert lone["B"] == pytest.approx(0.1 / 0.7) and lone["A"] == pytest.approx(0.6 / 0.7)
    assert choice_distribution([], ["A", "B"]) == {"A": 0.5, "B": 0.5}
