"""The transformers backend on the real default model (SmolLM2-135M-Instruct), greedy."""

from __future__ import annotations

import math

import pytest

from studio.backends import GenParams
from studio.errors import BackendError, InputError

pytestmark = pytest.mark.slow

QUESTIONS = [
    "What is the capital of France?",
    "Name three primary colors.",
    "What is 2+2?",
    "Who wrote Hamlet?",
]


def conv(q: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": q}]


def test_capital_of_france(backend) -> None:
    [c] = backend.chat([conv(QUESTIONS[0])], GenParams(max_new_tokens=32))
    assert "Paris" in c.text
    assert c.prompt_tokens > 10 and 0 < c.completion_tokens <= 32
    assert c.latency_s > 0 and c.model == "smollm2-135m"


def test_batch_equals_one_by_one(backend) -> None:
    """Left padding with a correct attention mask gives the same greedy text as running alone.

    In bf16 a padded batch can in principle round differently from a single row; on this model and these
    prompts the texts match exactly (see README, "Batching")."""
    p = GenParams(max_new_tokens=24)
    batched = backend.chat([conv(q) for q in QUESTIONS], p)
    single = [backend.chat([conv(q)], p)[0] for q in QUESTIONS]
    assert [c.text for c in batched] == [c.text for c in single]
    assert [c.prompt_tokens for c in batched] == [c.prompt_tokens for c in single]


def test_stream_equals_chat(backend) -> None:
    p = GenParams(max_new_tokens=32)
    chunks = list(backend.stream(conv(QUESTIONS[0]), p))
    assert len(chunks) > 1
    assert "".join(chunks).strip() == backend.chat([conv(QUESTIONS[0])], p)[0].text


def test_stop_strings(backend) -> None:
    p = GenParams(max_new_tokens=32, stop=("Paris",))
    [c] = backend.chat([conv(QUESTIONS[0])], p)
    assert "Paris" not in c.text and c.finish_reason == "stop"
    assert "Paris" not in "".join(backend.stream(conv(QUESTIONS[0]), p))


def test_choice_probs_sum_to_one(backend) -> None:
    convs = [conv("Which is larger, A: 5 or B: 3? Reply with A or B only."), conv("Pick A or B.")]
    probs = backend.choice_probs(convs, ["A", "B"])
    assert len(probs) == 2
    for p in probs:
        assert set(p) == {"A", "B"}
        assert math.isclose(sum(p.values()), 1.0, abs_tol=1e-5)
        assert all(0 <= v <= 1 for v in p.values())


def test_choice_must_be_single_token(backend) -> None:
    with pytest.raises(InputError, match="single tokens"):
        backend.choice_probs([conv("x")], ["Absolutely", "B"])


def test_prefilled_assistant_message_is_continued(backend) -> None:
    """A conversation ending with an assistant message is continued, not answered in a new turn."""
    prefill = [*conv(QUESTIONS[0]), {"role": "assistant", "content": "The capital of France is"}]
    [c] = backend.chat([prefill], GenParams(max_new_tokens=8))
    assert "Paris" in c.text and not c.text.startswith("The capital")
    ids = backend._prompt_ids(prefill, 1)
    assert backend.tokenizer.decode(ids).endswith("<|im_start|>assistant\nThe capital of France is")
    plain = backend.tokenizer.decode(backend._prompt_ids(conv(QUESTIONS[0]), 1))
    assert plain.endswith("<|im_start|>assistant\n")  # no prefill: the generation prompt as before


def test_choice_probs_after_a_score_prefill(backend) -> None:
    digits = [str(k) for k in range(6)]
    score = [*conv("Rate this answer from 0 to 5: 'Paris is the capital of France.'"),
             {"role": "assistant", "content": "Score: "}]  # fmt: skip
    [p] = backend.choice_probs([score], digits)
    assert set(p) == set(digits) and math.isclose(sum(p.values()), 1.0, abs_tol=1e-5)


def test_sequence_logprob_prefers_the_right_answer(backend) -> None:
    q = conv(QUESTIONS[0])
    good, bad = backend.sequence_logprob(
        [q, q], ["The capital of France is Paris.", "The capital of France is Berlin."]
    )
    assert good < 0 and bad < 0 and good > bad


def test_sampling_is_seeded(backend) -> None:
    p = GenParams(max_new_tokens=16, temperature=0.9, top_p=0.9, seed=7)
    a = backend.chat([conv("Tell me a word.")], p)[0].text
    b = backend.chat([conv("Tell me a word.")], p)[0].text
    assert a == b


@pytest.mark.parametrize("prompt", ["", "   \n\t ", "nul\x00byte"])
def test_bad_prompts_are_clear_errors(backend, prompt: str) -> None:
    with pytest.raises(InputError):
        backend.chat([conv(prompt)], GenParams())
    with pytest.raises(InputError):
        list(backend.stream(conv(prompt), GenParams()))


def test_prompt_beyond_context_is_rejected_with_a_message(backend) -> None:
    long = "word " * 9000  # SmolLM2's context is 8192 tokens
    with pytest.raises(InputError, match="accepts at most"):
        backend.chat([conv(long)], GenParams(max_new_tokens=16))


def test_unicode_round_trip(backend) -> None:
    """The prompt reaches the model byte for byte, and multi-byte characters the model writes (the emoji takes
    several byte-level tokens) come out whole: streamed piece by piece, the text equals the batch text."""
    text = "Répète: مرحبا 👋 'quoted' \"DROP TABLE runs;--\""
    ids = backend.tokenizer.apply_chat_template(conv(text), add_generation_prompt=True, tokenize=True)
    ids = list(ids["input_ids"] if hasattr(ids, "keys") else ids)
    assert text in backend.tokenizer.decode(ids)
    p = GenParams(max_new_tokens=16)
    [c] = backend.chat([conv(text)], p)
    pieces = list(backend.stream(conv(text), p))
    assert c.prompt_tokens == len(ids) and 0 < c.completion_tokens <= 16
    assert "".join(pieces).strip() == c.text and c.text
    assert not any("\ufffd" in piece for piece in pieces)  # no half character was ever shown


def test_missing_model_dir_is_clear(tmp_path) -> None:
    from studio.backends.transformers_backend import TransformersBackend

    with pytest.raises(BackendError, match="does not exist"):
        TransformersBackend(str(tmp_path / "nope"))


# -- rows as they finish, per-row params --------------------------------------------------------------------------
def test_a_short_row_is_delivered_before_the_batch_ends(backend) -> None:
    """Four rows in one generate; the short answer is handed over the moment it ends, with its own latency,
    while the other rows still decode; chat then returns the same completions."""
    import time

    prompts = ["What is 2+2? Answer with the number only.", *QUESTIONS[1:]]
    got: list[tuple[int, float]] = []
    t0 = time.perf_counter()
    out = backend.chat(
        [conv(q) for q in prompts],
        GenParams(max_new_tokens=48),
        on_row_done=lambda i, c: got.append((i, time.perf_counter() - t0, c)),
    )
    total = time.perf_counter() - t0
    assert sorted(i for i, _, _ in got) == [0, 1, 2, 3]
    first, when, c0 = got[0]
    assert first == 0 and c0 is out[0] and "4" in c0.text and c0.completion_tokens < 12
    assert when < total * 0.6 and c0.latency_s < total * 0.6  # delivered long before the batch ended
    assert [c.latency_s for _, _, c in got] == sorted(c.latency_s for c in out)  # each row's own time
    assert max(c.latency_s for c in out) <= total


def test_rows_with_their_own_caps_share_one_batch(backend) -> None:
    """Per-row max_new_tokens in one batch: each row stops at its own cap ("length" for that row only), with the
    same greedy text as alone with that cap."""
    caps = [6, 40, 24]
    rows = [GenParams(max_new_tokens=c) for c in caps]
    convs = [conv(QUESTIONS[1]), conv("Write a long essay about the history of Rome."), conv(QUESTIONS[0])]
    batched = backend.chat(convs, rows)
    alone = [backend.chat([c], p)[0] for c, p in zip(convs, rows, strict=True)]
    assert [c.text for c in batched] == [c.text for c in alone]
    assert batched[0].finish_reason == "length" and batched[0].completion_tokens == 6
    assert batched[1].finish_reason == "length" and batched[1].completion_tokens == 40
    assert batched[2].finish_reason == "stop" and batched[2].completion_tokens < 24
    with pytest.raises(ValueError, match="max_new_tokens and schema only"):
        backend.chat(convs[:2], [GenParams(), GenParams(temperature=0.5)])


ESSAY = conv("Write a long essay about the history of Rome.")


def test_repetition_penalty_and_no_repeat_ngrams_change_greedy_output(backend) -> None:
    p = GenParams(max_new_tokens=60)
    [plain] = backend.chat([ESSAY], p)
    [penalised] = backend.chat([ESSAY], p.replace(repetition_penalty=1.3))
    assert penalised.text != plain.text and penalised.text
    streamed = "".join(backend.stream(ESSAY, p.replace(repetition_penalty=1.3))).strip()
    assert streamed == penalised.text  # stream decodes with the same processors
    ids = backend.tokenizer.encode(plain.text, add_special_tokens=False)
    trigrams = [tuple(ids[k : k + 3]) for k in range(len(ids) - 2)]
    assert len(set(trigrams)) < len(trigrams)  # the plain answer repeats itself ...
    [no_repeat] = backend.chat([ESSAY], p.replace(no_repeat_ngram_size=3))
    ids = backend.tokenizer.encode(no_repeat.text, add_special_tokens=False)
    trigrams = [tuple(ids[k : k + 3]) for k in range(len(ids) - 2)]
    assert len(set(trigrams)) == len(trigrams) and no_repeat.text != plain.text  # ... this one never does


def test_a_constrained_row_and_a_free_row_share_a_batch(backend) -> None:
    """Rows with and without a schema in one generate: the constrained row is JSON and says so; the free row's
    no_repeat_ngram_size is applied, the constrained row's is dropped with a warning."""
    import json

    pytest.importorskip("xgrammar")
    from studio.backends.base import schema_text

    schema = schema_text({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]})
    p = GenParams(max_new_tokens=40, no_repeat_ngram_size=3)
    js, free = backend.chat([conv(QUESTIONS[0]), ESSAY], [p.replace(schema=schema), p])
    assert js.constrained and isinstance(json.loads(js.text)["city"], str)
    assert js.warnings == [
        "no_repeat_ngram_size=3 not applied: JSON output repeats n-grams such as '\", \"' by design"
    ]
    assert not free.constrained and free.warnings == [] and not free.text.startswith("{")
