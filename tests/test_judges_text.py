"""The text judges made informative: MT-Bench single-answer grading (``single``), reference-guided pairwise
grading, bounded verdict schemas, and the swap-flip rate beside a batch's verdicts. Parsing and prompt choice on a
scripted fake backend; then ``single`` on the real default model."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path
from types import SimpleNamespace

import pytest

from storage import Store
from studio.backends.base import Backend, Completion, Conversation, GenParams
from studio.judges import JUDGES, JudgeItem, make_judge
from studio.judges.additive import paper_text, parse_score
from studio.judges.base import load_prompt, load_schema
from studio.judges.single import explanation_cap, json_rating, parse_rating
from studio.judging import judge_scope, snapshot
from studio.judging.batch import JobResult, Target, judge_item, swap_flip_dict
from studio.judging.figures import outcomes, rater_of

# -- parsing ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("The answer is right and clear.\nRating: [[7]]", 7.0),
        ("Rating: [[10]]", 10.0),
        ("Rating: [[1]]", 1.0),
        ("Rating: [[8.5]]", 8.5),
        ("Rating: [[6]] ... on reflection Rating: [[9]]", 6.0),  # MT-Bench reads the first [[N]]
        ("Rating: [7]", 7.0),  # MT-Bench's fallback: one bracket
        ("[3] is cited, but Rating: [[8]]", 8.0),  # [[N]] wins over an earlier [N]
        ("Rating: [[0]]", None),  # off the 1..10 scale
        ("Rating: [[11]]", None),
        ("Rating: [[42]]", None),
        ('you must rate ... for example: "Rating: [[5]]".', None),  # the prompt's example echoed back
        ('for example: "Rating: [[5]]".\nMy rating: [[4]]', 4.0),
        ("I would rate it seven out of ten.", None),
        ("Rating: [[seven]]", None),
        ("", None),
    ],
)
def test_parse_rating(text, want):
    assert parse_rating(text) == want


def test_json_rating():
    assert json_rating({"explanation": "ok", "rating": 7}) == 7.0
    assert json_rating({"Rating": 10}) == 10.0
    assert json_rating({"rating": 0}) is None and json_rating({"rating": 11}) is None
    assert json_rating({"rating": True}) is None and json_rating({"rating": "7"}) is None
    assert json_rating(None) is None and json_rating([7]) is None


def test_verdict_schemas_bound_every_string_to_fit_the_cap():
    for cap in (64, 512):
        for name in ("mtbench_single", "mtbench_pair"):
            explanation = load_schema(name, max_explanation=explanation_cap(cap))["properties"]["explanation"]
            assert explanation["maxLength"] == explanation_cap(cap) and explanation_cap(cap) + 40 <= cap
        additive = load_schema("self_rewarding_additive", max_justification=explanation_cap(cap))
        assert additive["properties"]["justification"]["maxLength"] == explanation_cap(cap)
        assert list(additive["properties"]) == ["justification", "score"]  # the paper's order
    assert explanation_cap(10) == 16  # never empty
    assert isinstance(load_schema("bsm_solve")["properties"]["explanation"]["maxLength"], int)


def test_additive_structured_sample_in_the_published_form():
    assert paper_text('{"justification": "Correct sum. ", "score": 4}') == "Correct sum.\nScore: 4"
    assert parse_score(paper_text('{"justification": "ok", "score": 0}')) == 0
    for other in ('{"justification": "cut off', '{"justification": "x", "score": 9}', "Fine.\nScore: 3"):
        assert paper_text(other) == other  # not a complete structured verdict: unchanged


# -- a scripted backend -------------------------------------------------------------------------------------------


class Scripted(Backend):
    """Answers each conversation with ``script(conversation)``; keeps every conversation it was sent."""

    def __init__(self, script) -> None:
        self.model_name = "judge-model"
        self.script = script
        self.seen: list[Conversation] = []

    def chat(self, conversations: Sequence[Conversation], params: GenParams) -> list[Completion]:
        self.seen.extend(conversations)
        return [Completion(self.script(c), 1, 1, 0.0) for c in conversations]

    def stream(self, conversation, params):  # pragma: no cover - not used by judges
        yield from ()


FASTCHAT_SINGLE_SYSTEM = "You are a helpful assistant."
REF_MARK = "[The Start of Reference Answer]\n"


def test_single_is_registered_and_grades_with_the_published_prompts():
    assert {"additive", "bsm_eval", "logprob", "pairwise", "single"} <= set(JUDGES.names())
    assert JUDGES.get("single").mode == "single"
    backend = Scripted(
        lambda c: "Correct and clear.\nRating: [[8]]" if "Paris" in c[-1]["content"] else "[[2]]"
    )
    its = [
        JudgeItem.single("What is the capital of France?", "Paris.", key="plain"),
        JudgeItem.single("What is 6*7?", "41", key="math", reference="42"),
        JudgeItem.single("Say hi.", "Bye.", key="none"),
    ]
    plain, math, other = make_judge("single").judge(its, backend)
    assert (plain.ok, plain.rating, plain.mode, plain.orders, plain.key) == (
        True,
        8.0,
        "single",
        ["A"],
        "plain",
    )
    assert plain.scores["prompt"] == "single-v1" and math.scores["prompt"] == "single-math-v1"
    assert (math.rating, other.rating) == (2.0, 2.0)
    sys_plain, user_plain = backend.seen[0]
    sys_math, user_math = backend.seen[1]
    assert sys_plain == sys_math == {"role": "system", "content": FASTCHAT_SINGLE_SYSTEM}
    assert REF_MARK not in user_plain["content"] and user_plain["content"].startswith("[Instruction]")
    assert f"{REF_MARK}42\n[The End of Reference Answer]" in user_math["content"]
    assert "Your evaluation should consider correctness and helpfulness." in user_math["content"]
    assert user_math["content"].endswith(
        "[The Start of Assistant's Answer]\n41\n[The End of Assistant's Answer]"
    )
    # turned off, the reference is not shown
    off = Scripted(lambda c: "Rating: [[5]]")
    (v,) = make_judge("single", {"reference_guided": False}).judge([its[1]], off)
    assert v.scores["prompt"] == "single-v1" and REF_MARK not in off.seen[0][-1]["content"]
    assert make_judge("single").config_hash("m") != make_judge(
        "single", {"reference_guided": False}
    ).config_hash("m")


def test_single_unparsable_or_off_scale_is_a_failed_verdict_with_raw_text():
    texts = iter(["I like it.", "Rating: [[12]]"])
    its = [JudgeItem.single("q?", "a"), JudgeItem.single("q?", "b")]
    verdicts = make_judge("single").judge(its, Scripted(lambda c: next(texts)))
    for v, raw in zip(verdicts, ["I like it.", "Rating: [[12]]"], strict=True):
        assert not v.ok and v.rating is None and v.raw == [raw] and "Rating: [[N]]" in v.error
        assert v.summary.startswith("failed")


def test_single_templates_are_mt_bench_verbatim():
    single = load_prompt("mtbench_single_user")
    assert single.startswith(
        "[Instruction]\nPlease act as an impartial judge and evaluate the quality of the response"
    )
    assert 'strictly following this format: "[[rating]]", for example: "Rating: [[5]]".' in single
    assert "{reference}" in load_prompt("mtbench_single_math_user")
    assert load_prompt("mtbench_single_system") == FASTCHAT_SINGLE_SYSTEM


def _shown_first(content: str) -> str:
    return content.split("[The Start of Assistant A's Answer]\n")[1].split("\n")[0]


def test_pairwise_uses_the_reference_guided_prompt_when_there_is_a_reference():
    backend = Scripted(lambda c: "[[A]]" if _shown_first(c[-1]["content"]) == "42" else "[[B]]")
    its = [
        JudgeItem.pair("What is 6*7?", "42", "41", key="math", reference="42"),
        JudgeItem.pair("Name a colour.", "Red.", "Table.", key="plain"),
    ]
    math, plain = make_judge("pairwise").judge(its, backend)
    assert (math.ok, math.winner, math.order_winners) == (True, "A", ["A", "A"])
    assert math.scores["prompt"] == "pair-math-v1" and plain.scores["prompt"] == "pair-v2"
    (m_sys, m_user), (m_sys2, m_user2) = backend.seen[0], backend.seen[1]
    assert m_sys == m_sys2 == {"role": "system", "content": load_prompt("mtbench_pair_math_system")}
    assert "comparing both assistants' answers with the reference answer" in m_sys["content"]
    assert _shown_first(m_user["content"]) == "42" and _shown_first(m_user2["content"]) == "41"  # both orders
    assert m_user["content"].startswith(f"[User Question]\nWhat is 6*7?\n\n{REF_MARK}42\n")
    p_sys, p_user = backend.seen[2]
    assert p_sys["content"] == load_prompt("mtbench_pair_system") and REF_MARK not in p_user["content"]
    # turned off: pair-v2 even with a reference, and a different config hash; the default keeps the old hash
    off = Scripted(lambda c: "[[C]]")
    (v,) = make_judge("pairwise", {"reference_guided": False}).judge(its[:1], off)
    assert v.scores["prompt"] == "pair-v2" and all(REF_MARK not in c[-1]["content"] for c in off.seen)
    assert "reference_guided" not in make_judge("pairwise").config_dict()
    assert make_judge("pairwise", {"reference_guided": False}).config_dict()["reference_guided"] is False


def test_judge_item_carries_the_prompts_reference():
    """Before and after the prompts' reference column: a prompt row without it gives no reference."""
    runs = {
        1: {"id": 1, "prompt_id": 10, "answer": "42", "model": "m", "strategy": "system1", "variant": None},
        2: {"id": 2, "prompt_id": 10, "answer": "41", "model": "m", "strategy": "cot", "variant": None},
    }
    with_ref = SimpleNamespace(runs=runs, prompts={10: {"id": 10, "text": "6*7?", "reference": "42"}})
    without = SimpleNamespace(runs=runs, prompts={10: {"id": 10, "text": "6*7?"}})
    null_ref = SimpleNamespace(runs=runs, prompts={10: {"id": 10, "text": "6*7?", "reference": None}})
    assert judge_item(with_ref, Target((1, 2))).reference == "42"
    assert judge_item(without, Target((1, 2))).reference == ""
    assert judge_item(null_ref, Target((1,))).reference == ""
    assert judge_item(with_ref, Target((1, 2))).question == "6*7?"


# -- swap flips beside a batch ------------------------------------------------------------------------------------

_SHOWN = re.compile(r"\[The Start of Assistant ([AB])'s Answer\]\n(.*?)\n\[The End", re.DOTALL)


@pytest.fixture()
def store(tmp_path: Path):
    with Store(tmp_path / "data" / "studio.duckdb") as s:
        yield s


def _populate(store: Store) -> None:
    """Three prompts with two runs each, each pair shown to a person once."""
    pairs = [
        ("What is 2+2?", "4", "2+2 equals 4."),
        ("Name a colour.", "Blue.", "Red is a colour."),
        ("Capital of France?", "Paris.", "The capital is Paris."),
    ]
    for q, a, b in pairs:
        p = store.add_prompt(q, "set")
        store.add_comparison([store.add_run(p, "m1", "system1", a), store.add_run(p, "m2", "cot", b)])


def test_job_result_reports_the_swap_flip_rate(store):
    _populate(store)

    def first_unless_paris(c: Conversation) -> str:  # picks the first shown, except on the Paris pair
        shown = dict(_SHOWN.findall(c[-1]["content"]))
        if "Paris" in shown["A"]:
            return "[[A]]" if len(shown["A"]) > len(shown["B"]) else "[[B]]"
        return "[[A]]"

    res = judge_scope(store, Scripted(first_unless_paris), make_judge("pairwise"), batch_size=2)
    assert (res.judged, res.ok) == (3, 3)
    assert res.swap_flip == {"flips": 2, "n": 3, "rate": pytest.approx(2 / 3)}
    d = res.to_dict()
    assert d["swap_flip"]["flips"] == 2 and json.dumps(d)
    assert "swap flips 2/3 (67%)" in res.summary

    # a single-answer judge has no orders to flip; its ratings still give the figures pairwise outcomes
    def rate(c: Conversation) -> str:  # 9 for the bare "Paris.", 4 for every other answer
        return "Rating: [[9]]" if "Answer]\nParis.\n[The End" in c[-1]["content"] else "Rating: [[4]]"

    single = judge_scope(store, Scripted(rate), make_judge("single"))
    assert single.swap_flip == {"flips": 0, "n": 0, "rate": None} and "swap flips" not in single.summary
    rows = [v for v in snapshot(store).verdicts if v["judge"] == "single"]
    assert len(rows) == 6 and all(v["ok"] for v in rows)
    votes = outcomes(snapshot(store)).votes[rater_of(rows[0])]
    # "Paris." (rated 9) beats its pair, the others tie at 4
    assert sorted(o for labels in votes.values() for o in labels) == ["A", "tie", "tie"]
    assert swap_flip_dict([]) == {"flips": 0, "n": 0, "rate": None}
    assert JobResult("j", "m", "h", 0, 0, 0, 0, 0, 0).swap_flip["n"] == 0


# -- the real default model ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_real_single_plain_and_reference_guided(backend):
    its = [
        JudgeItem.single("What is the capital of France?", "The capital of France is Paris.", key="plain"),
        JudgeItem.single("What is 6 times 7?", "6 times 7 is 42.", key="math", reference="42"),
    ]
    for structured in (False, True):
        verdicts = make_judge("single", {"max_new_tokens": 40, "structured": structured}).judge(its, backend)
        assert [v.key for v in verdicts] == ["plain", "math"]
        assert [v.scores["prompt"] for v in verdicts] == ["single-v1", "single-math-v1"]
        for v in verdicts:
            assert v.judge == "single" and v.judge_model == "smollm2-135m" and len(v.raw) == 1
            assert v.ok == (v.rating is not None) and (v.ok or v.error)
            assert v.rating is None or 1 <= v.rating <= 10
            if not structured:
                assert v.rating == parse_rating(v.raw[0])  # the verdict is what the text says
            json.dumps(v.to_dict())
        (step,) = verdicts[1].trace["steps"]
        assert "[The Start of Reference Answer]\n42\n" in step["messages"][-1]["content"]
        assert step["constrained"] == structured
