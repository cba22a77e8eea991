"""Grammar-constrained step outputs (studio/backends/structured.py) on the real default model.

The processor is driven through ``backend.model.generate`` directly, batched and left-padded, the way the
transformers backend calls it; wiring it into ``chat`` is tested with the backend."""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import pytest

from studio.backends.base import schema_text
from studio.backends.structured import build_processor, check_schema
from studio.errors import BackendError, InputError

QUESTIONS = {
    "type": "object",
    "properties": {
        "questions": {
            "type": "array",
            "items": {"type": "string", "pattern": "^[^?\\n]{1,100}\\?$"},
            "minItems": 1,
            "maxItems": 5,
        }
    },
    "required": ["questions"],
}
VERDICTS = ["CONSISTENT", "INCONSISTENT", "PARTIALLY CONSISTENT"]
VERDICT = {"type": "object", "properties": {"verdict": {"enum": VERDICTS}}, "required": ["verdict"]}
ANSWER = {
    "type": "object",
    "properties": {
        "answer": {"type": "string", "maxLength": 24},
        "confidence": {"type": "integer", "minimum": 0, "maximum": 10},
    },
    "required": ["answer", "confidence"],
}

PLAN = (
    "List as many questions as you can (at least ten) to verify: 'Paris is the capital of France.' Use JSON."
)
LONG_FREE = "Tell me a long story about a dragon who learns to cook, with many details."


def _user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _vocab(backend: Any) -> int:
    return int(backend.model.get_output_embeddings().weight.shape[0])


def generate(
    backend: Any,
    prompts: list[str],
    schemas: list[dict | None],
    *,
    max_new_tokens: int = 64,
    sample: bool = False,
    extra: list[Any] | None = None,
    with_processor: bool = True,
) -> tuple[list[str], list[list[int]], Any, Any]:
    """One left-padded batch through ``generate``: (texts, new token ids per row, the processor, the batch)."""
    import torch

    ids = [backend._prompt_ids(_user(p), max_new_tokens) for p in prompts]
    batch = backend._batch(ids)
    proc = build_processor(
        backend.tokenizer,
        _vocab(backend),
        [None if s is None else schema_text(s) for s in schemas],
        stop_token_ids=sorted(backend._eos_ids()),
    )
    procs = list(extra or []) + ([proc] if with_processor and proc is not None else [])
    kw: dict[str, Any] = (
        {"do_sample": True, "temperature": 0.8, "top_p": 0.95, "top_k": None}
        if sample
        else {"do_sample": False, "temperature": None, "top_p": None, "top_k": None}
    )
    torch.manual_seed(7)
    with torch.no_grad():
        out = backend.model.generate(
            **batch,
            max_new_tokens=max_new_tokens,
            pad_token_id=backend.tokenizer.pad_token_id,
            logits_processor=procs,
            **kw,
        )
    eos = backend._eos_ids()
    rows, texts = [], []
    for row in out[:, batch["input_ids"].shape[1] :].tolist():
        n = next((k for k, t in enumerate(row) if t in eos), len(row))
        rows.append(row)
        texts.append(backend.tokenizer.decode(row[:n], skip_special_tokens=True))
    return texts, rows, proc, batch


def test_mixed_batch_constrains_one_row_and_leaves_the_free_row_untouched(backend) -> None:
    prompts = [PLAN, LONG_FREE]
    texts, _, proc, batch = generate(backend, prompts, [QUESTIONS, None], max_new_tokens=96)
    assert (batch["attention_mask"][:, 0] == 0).any(), "the prompts differ in length: one row is left-padded"
    plan = json.loads(texts[0])
    assert isinstance(plan["questions"], list) and 1 <= len(plan["questions"]) <= 5
    assert all(q.endswith("?") and "\n" not in q for q in plan["questions"])
    assert proc.constrained(0) and not proc.constrained(1) and proc.broken_rows == {}
    # the free row decodes exactly as it does with no processor in the same batch
    free_texts, *_ = generate(backend, prompts, [QUESTIONS, None], max_new_tokens=96, with_processor=False)
    assert texts[1] == free_texts[1]
    assert texts[1] and not texts[1].lstrip().startswith("{")


def test_max_items_caps_a_list_the_prompt_wants_longer(backend) -> None:
    """The prompt asks for ten questions; the schema allows two, each at most 60 characters, ending in '?'."""
    two = json.loads(json.dumps(QUESTIONS))
    two["properties"]["questions"]["maxItems"] = 2
    two["properties"]["questions"]["items"]["pattern"] = "^[^?\\n]{1,60}\\?$"
    texts, rows, proc, _ = generate(
        backend, [PLAN, PLAN.replace("Paris", "Rome")], [two, two], max_new_tokens=128
    )
    for t in texts:
        qs = json.loads(t)["questions"]
        assert 1 <= len(qs) <= 2 and all(q.endswith("?") and len(q) <= 61 for q in qs)


def test_enum_verdicts_and_bounded_fields(backend) -> None:
    prompts = [
        "Is 'The sky is green' consistent with 'The sky is blue'? Give a verdict in JSON.",
        "Is 'Water boils at 100 C at sea level' consistent with 'Water boils at 100 C'? Give a verdict in JSON.",
        "What is the capital of Australia? Explain at length, then rate your confidence.",
    ]
    texts, _, proc, _ = generate(backend, prompts, [VERDICT, VERDICT, ANSWER], max_new_tokens=48)
    for t in texts[:2]:
        assert json.loads(t)["verdict"] in VERDICTS
    answer = json.loads(texts[2])
    assert set(answer) == {"answer", "confidence"}
    assert isinstance(answer["answer"], str) and len(answer["answer"]) <= 24
    assert isinstance(answer["confidence"], int) and 0 <= answer["confidence"] <= 10
    assert all(proc.constrained(i) for i in range(3))


def test_sampled_decoding_stays_valid(backend) -> None:
    texts, _, proc, _ = generate(
        backend, [PLAN, PLAN, "Is 2+2=4 consistent with 2+2=5? JSON verdict."], [QUESTIONS, QUESTIONS, VERDICT],
        max_new_tokens=160, sample=True,
    )  # fmt: skip
    for t in texts[:2]:
        qs = json.loads(t)["questions"]
        assert 1 <= len(qs) <= 5 and all(re.fullmatch(r"[^?\n]{1,100}\?", q) for q in qs)
    assert json.loads(texts[2])["verdict"] in VERDICTS
    assert proc.broken_rows == {}


def test_a_finished_grammar_forces_the_end_of_turn(backend) -> None:
    """The row stops right after its JSON (then only pads) while a free row in the batch decodes on."""
    eos, pad = backend._eos_ids(), backend.tokenizer.pad_token_id
    texts, rows, proc, _ = generate(backend, ["Is the sky green? JSON verdict.", LONG_FREE], [VERDICT, None])
    end = next(k for k, t in enumerate(rows[0]) if t in eos)
    assert json.loads(backend.tokenizer.decode(rows[0][:end]))["verdict"] in VERDICTS
    assert texts[0].endswith("}") and all(t == pad for t in rows[0][end + 1 :])
    assert len(rows[1]) == 64 > end + 1 and not any(t in eos for t in rows[1]), "the free row went on"
    assert proc.state[0] == "done" and proc.constrained(0)


def test_the_processor_masks_all_but_end_after_the_json_and_keeps_forcing_it(backend) -> None:
    """Driven by hand: after the closing brace only end tokens are allowed; after the end, only end again."""
    import torch

    stops = sorted(backend._eos_ids())
    proc = build_processor(backend.tokenizer, _vocab(backend), [schema_text(VERDICT)], stop_token_ids=stops)
    ids = torch.tensor([backend._prompt_ids(_user("verdict?"), 8)])
    scores = proc(ids, torch.zeros(1, _vocab(backend)))
    allowed = torch.nonzero(scores[0] > float("-inf")).flatten().tolist()
    assert allowed and all(backend.tokenizer.decode([t]).startswith("{") for t in allowed)
    for tok in backend.tokenizer.encode('{"verdict": "INCONSISTENT"}', add_special_tokens=False):
        ids = torch.cat([ids, torch.tensor([[tok]])], dim=1)
        scores = proc(ids, torch.zeros(1, _vocab(backend)))
    assert torch.nonzero(scores[0] > float("-inf")).flatten().tolist() == stops
    ids = torch.cat([ids, torch.tensor([[stops[0]]])], dim=1)
    scores = proc(ids, torch.zeros(1, _vocab(backend)))
    assert proc.state[0] == "done"
    assert torch.nonzero(scores[0] > float("-inf")).flatten().tolist() == stops


class _BanAllBut:
    """A hostile processor for one row: every logit -inf except ``keep`` (which the schema does not allow)."""

    def __init__(self, row: int, keep: int) -> None:
        self.row, self.keep = row, keep

    def __call__(self, input_ids: Any, scores: Any) -> Any:
        kept = scores[self.row, self.keep].clone()
        scores[self.row] = float("-inf")
        scores[self.row, self.keep] = kept
        return scores


def test_a_row_left_without_tokens_is_released_not_crashed(backend) -> None:
    word = backend.tokenizer.encode("Hello", add_special_tokens=False)[0]
    texts, _, proc, _ = generate(
        backend, [PLAN, "Is the sky green? JSON verdict."], [QUESTIONS, VERDICT], max_new_tokens=24,
        extra=[_BanAllBut(0, word)], sample=True,
    )  # fmt: skip
    assert texts[0].startswith("Hello"), "the released row decoded on freely"
    assert not proc.constrained(0) and "no token allowed by the schema" in proc.broken_rows[0]
    assert proc.constrained(1) and json.loads(texts[1])["verdict"] in VERDICTS


def test_a_row_forced_to_end_is_ended_not_broken(backend) -> None:
    """Another processor ending a row early (e.g. its own token cap) is not a schema failure."""
    eos = min(backend._eos_ids())
    texts, rows, proc, _ = generate(
        backend, [PLAN, "Is the sky green? JSON verdict."], [QUESTIONS, VERDICT], extra=[_BanAllBut(0, eos)]
    )
    assert rows[0][0] == eos and texts[0] == ""
    assert proc.broken_rows == {} and proc.state[0] == "ended"
    assert json.loads(texts[1])["verdict"] in VERDICTS


def test_no_schema_no_processor_and_compiles_are_cached(backend) -> None:
    assert build_processor(backend.tokenizer, _vocab(backend), [None, None]) is None
    from studio.backends import structured

    a, _ = structured.compile_schemas(backend.tokenizer, _vocab(backend), [schema_text(VERDICT)])
    b, _ = structured.compile_schemas(backend.tokenizer, _vocab(backend), [schema_text(VERDICT), None])
    assert a[0] is b[0] and b[1] is None


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ('{"type": "foo"}', "Unsupported type"),
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ('{"type": "string", "pattern": "(("}', "cannot be used for structured output"),
        ('{"type": "string", "pattern": ".*\\\\?", "maxLength": 9}', "put it in the pattern"),
        ('{"type": "array", "uniqueItems": true}', "uniqueItems"),
        ('{"type": "integer", "minimum": 5, "maximum": 3}', "minimum greater than maximum"),
    ],
)
def test_bad_schemas_are_input_errors(backend, schema: str, message: str) -> None:
    with pytest.raises(InputError, match=re.escape(message)) as err:
        build_processor(backend.tokenizer, _vocab(backend), [None, schema])
    assert ".cc:" not in str(err.value), "no C++ source locations in the message"


def test_check_schema_accepts_the_shipped_shapes() -> None:
    for s in (QUESTIONS, VERDICT, ANSWER):
        assert check_schema(schema_text(s)) == s


def test_missing_xgrammar_is_a_backend_error_naming_the_fix(backend, monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "xgrammar", None)  # import xgrammar -> ImportError
    with pytest.raises(BackendError, match="pip install xgrammar"):
        # a vocab size not built before, so a fresh compiler (and xgrammar) is needed
        build_processor(backend.tokenizer, _vocab(backend) + 64, [schema_text(VERDICT)])


def test_repetition_bounds_and_the_slow_ones_are_refused() -> None:
    """xgrammar masks ``{1,129}`` and up ~5000x slower than ``{1,127}``: such a pattern is an InputError."""
    from studio.backends.structured import repetition_bounds

    assert repetition_bounds(r"^[^?\n]{3,300}\?$") == [300]
    assert repetition_bounds(r"x{1,50}y{2}(ab){1,130}") == [50, 2, 130]
    assert repetition_bounds(r"\\d{1,200}[{]{1,2}") == [200, 2], "an escaped backslash, a brace in a class"
    assert repetition_bounds(r"a{3,}.*\?$") == []
    with pytest.raises(InputError, match=r"repeats up to 300 times.*\^\[\^\?\\n\]\+\\\?\$"):
        check_schema(schema_text({"type": "string", "pattern": "^[^?\\n]{3,300}\\?$"}))
    assert check_schema(schema_text({"type": "string", "pattern": "^[^?\\n]{3,128}\\?$"}))
