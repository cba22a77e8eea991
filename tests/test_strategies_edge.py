"""Edge cases of the pipelines and the driver, with a scripted backend that returns hand-written model output.

Real generation is tested in test_strategies.py; here the point is output a model *might* write (no plan,
missing labels, empty text) and failures (a backend error, a bug), which must never crash a pipeline.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence

import pytest

from studio.api import run_many, run_strategy, stream_many
from studio.backends.base import Backend, Completion, Conversation, GenParams, OnDelta
from studio.errors import BackendError, InputError
from studio.strategies import (
    DriveJob,
    RunContext,
    Strategy,
    StrategyGen,
    StrategyParams,
    drive,
    render,
    render_messages,
    run_jobs,
)
from studio.strategies.parsing import looks_like_question

Rule = tuple[str, str]  # (substring of the last user message, the output to return)


class ScriptedBackend(Backend):
    """Answers by the first rule whose key occurs in the prompt; records batch sizes. Raises on ``fail_on``."""

    def __init__(self, rules: Sequence[Rule], default: str = "ok", fail_on: str | None = None) -> None:
        self.rules, self.default, self.fail_on = list(rules), default, fail_on
        self.model_name = "scripted"
        self.sizes: list[int] = []

    def _answer(self, conv: Conversation) -> Completion:
        prompt = conv[-1]["content"]
        if self.fail_on and self.fail_on in prompt:
            raise BackendError("scripted failure")
        text = next((out for key, out in self.rules if key in prompt), self.default)
        return Completion(text, max(1, len(prompt) // 4), max(1, len(text) // 4), 0.01, model=self.model_name)

    def chat(
        self, conversations: Sequence[Conversation], params: GenParams, on_delta: OnDelta | None = None
    ) -> list[Completion]:
        self.sizes.append(len(conversations))
        outs = [self._answer(c) for c in conversations]
        for i, out in enumerate(outs if on_delta else []):
            on_delta(i, out.text[: len(out.text) // 2])  # a partial text, then the whole
            on_delta(i, out.text)
        return outs

    def stream(self, conversation: Conversation, params: GenParams) -> Iterator[str]:
        yield self._answer(conversation).text


def names(result) -> list[str]:
    return [s.name for s in result.trace.steps]


Q = "What is the capital of Australia?"
PLAN = "Response: "  # occurs in the plan prompt only


# -- CoVe ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("variant", ["two_step", "factored", "factor_revise"])
@pytest.mark.parametrize("plan", ["", "   ", "I am not sure.", "Sydney is the capital."])
def test_cove_empty_plan_returns_the_baseline_with_a_note(variant: str, plan: str) -> None:
    b = ScriptedBackend([(PLAN, plan), (Q, "Canberra.")])
    r = run_strategy(Q, "cove", variant, b)
    assert names(r) == ["baseline", "plan_verifications"]
    assert r.final_answer == "Canberra."
    assert any("no verification question" in n for n in r.trace.notes)


def test_cove_joint_without_pairs_returns_the_baseline() -> None:
    b = ScriptedBackend([(PLAN, "Nothing to check here."), (Q, "Canberra.")])
    r = run_strategy(Q, "cove", "joint", b)
    assert names(r) == ["baseline", "plan_verifications"] and r.final_answer == "Canberra."
    assert r.trace.notes


def test_cove_caps_questions_and_drops_statements() -> None:
    plan = "Verification questions:\n" + "\n".join(f"{i}. Which city is number {i}?" for i in range(1, 9))
    plan += "\n9. Canberra is the capital."
    b = ScriptedBackend([(PLAN, plan), ("Verifications:", "Canberra, verified."), (Q, "Canberra.")])
    r = run_strategy(Q, "cove", "factored", b, params={"max_questions": 3})
    assert names(r) == ["baseline", "plan_verifications", *["execute_verification"] * 3, "final_verified"]
    assert b.sizes == [1, 1, 3, 1]
    assert r.final_answer == "Canberra, verified."
    assert any("not questions" in n for n in r.trace.steps[1].notes)


def test_cove_two_step_pads_missing_answers_with_a_note() -> None:
    plan = "1. Which city is the capital?\n2. When was it founded?"
    b = ScriptedBackend(
        [(PLAN, plan), ("Answers:", "1. Canberra."), ("Verifications:", "Canberra."), (Q, "x")]
    )
    r = run_strategy(Q, "cove", "two_step", b)
    step = r.trace.by_name("execute_verifications")[0]
    assert step.parsed["answers"] == ["Canberra.", ""] and step.notes
    assert "(no answer)" in r.trace.by_name("final_verified")[0].messages[-1]["content"]


def test_cove_factor_revise_unreadable_verdict_is_kept_and_noted() -> None:
    plan = "1. Which city is the capital?\n2. When was it founded?"
    rules = [
        (PLAN, plan),
        ("Verification answer: 1913", "INCONSISTENT: the response gives no year"),
        ("Verification question:", "Hmm, hard to say."),
        ("Verifications:", "Canberra."),
        ("When was it founded?", "1913"),
        ("Which city", "Canberra"),
        (Q, "Canberra."),
    ]
    r = run_strategy(Q, "cove", "factor_revise", ScriptedBackend(rules))
    verdicts = [c.parsed["verdict"] for c in r.trace.by_name("cross_check")]
    assert verdicts == [None, "INCONSISTENT"]
    assert [bool(c.notes) for c in r.trace.by_name("cross_check")] == [True, False]  # only the unreadable one
    final = r.trace.by_name("final_verified")[0].messages[-1]["content"]
    assert (
        "Cross-check: NO VERDICT" in final
        and "Cross-check: INCONSISTENT (the response gives no year)" in final
    )


def test_cove_empty_final_falls_back_to_the_baseline() -> None:
    b = ScriptedBackend([(PLAN, "1. Which city?"), ("Verifications:", ""), (Q, "Canberra.")])
    r = run_strategy(Q, "cove", "factored", b)
    assert r.final_answer == "Canberra." and r.trace.by_name("final_verified")[0].notes


def test_few_shot_examples_are_chat_turns_ending_with_the_query() -> None:
    msgs = render_messages("cove_plan_verifications", question="Q?", baseline="B.")
    assert [m["role"] for m in msgs] == ["user", "assistant"] * 3 + ["user"]
    assert msgs[-1]["content"] == "Query: Q?\nResponse: B."


# -- CoT ---------------------------------------------------------------------------------------------------------------
def test_cot_answer_marker_splits_the_output_without_a_note() -> None:
    b = ScriptedBackend([], default="Sydney is bigger, but the capital is Canberra.\nAnswer: Canberra")
    r = run_strategy(Q, "cot", None, b)
    step = r.trace.steps[0]
    assert step.parsed == {
        "reasoning": "Sydney is bigger, but the capital is Canberra.", "final": "Canberra", "marker_found": True,
        "parse_ok": True,
    }  # fmt: skip
    assert r.final_answer == "Canberra" and not step.notes


def test_cot_without_a_marker_answers_with_the_last_line_and_says_so() -> None:
    b = ScriptedBackend([], default="Sydney is bigger.\nThe capital is Canberra.")
    r = run_strategy(Q, "cot", None, b)
    step = r.trace.steps[0]
    assert step.parsed == {
        "reasoning": "Sydney is bigger.",
        "final": "The capital is Canberra.",
        "marker_found": False,
        "parse_ok": False,
    }
    assert r.final_answer == "The capital is Canberra."
    assert len(step.notes) == 1 and "last line" in step.notes[0]


# -- S2A ---------------------------------------------------------------------------------------------------------------
REWRITE = "Text by User:"


def test_s2a_parses_the_labelled_sections() -> None:
    rewrite = "Unbiased text context (includes all content except user's bias): none\nQuestion/Query (does not include user bias/preference): What is the capital of Australia?"
    b = ScriptedBackend([(REWRITE, rewrite)], default="Canberra.")
    r = run_strategy("I love Sydney. " + Q, "s2a", "default", b)
    assert r.trace.steps[1].messages[-1]["content"] == f"none\n\n{Q}\n\nAnswer in an unbiased way."
    assert r.final_answer == "Canberra." and not r.trace.steps[0].notes


def test_s2a_missing_labels_fall_back_to_the_whole_rewrite() -> None:
    b = ScriptedBackend([(REWRITE, "The user asks for the capital of Australia.")], default="Canberra.")
    r = run_strategy("I love Sydney. " + Q, "s2a", "default", b)
    answer = r.trace.steps[1].messages[-1]["content"]
    assert answer == "The user asks for the capital of Australia.\n\nAnswer in an unbiased way."
    assert any("whole rewrite" in n for n in r.trace.steps[0].notes)


def test_s2a_labels_with_empty_sections_fall_back_to_the_whole_rewrite() -> None:
    rewrite = "Unbiased text context (includes all content except user's bias):\nQuestion/Query:"
    b = ScriptedBackend([(REWRITE, rewrite)], default="Canberra.")
    r = run_strategy("I love Sydney. " + Q, "s2a", "default", b)
    assert r.trace.steps[1].messages[-1]["content"] == f"{rewrite}\n\nAnswer in an unbiased way."
    assert any("both sections of the rewrite are empty" in n for n in r.trace.steps[0].notes)
    assert "I love Sydney" not in r.trace.steps[1].messages[-1]["content"]


def test_s2a_empty_rewrite_falls_back_to_the_original_with_a_note() -> None:
    b = ScriptedBackend([(REWRITE, "")], default="Canberra.")
    r = run_strategy(Q, "s2a", "relevance", b)
    assert Q in r.trace.steps[1].messages[-1]["content"]
    assert any("empty" in n for n in r.trace.steps[0].notes)


def test_s2a_keep_original_shows_the_original_beside_the_sections() -> None:
    rewrite = "Unbiased text context: none\nQuestion/Query: What is the capital?"
    b = ScriptedBackend([(REWRITE, rewrite)], default="Canberra.")
    r = run_strategy("I love Sydney. " + Q, "s2a", "keep_original", b)
    answer = r.trace.steps[1].messages[-1]["content"]
    assert "I love Sydney. " + Q in answer and "What is the capital?" in answer


# -- BSM ------------------------------------------------------------------------------------------------------------------
BRANCH = "Sub-questions:"


def test_bsm_without_branches_solves_the_question_once() -> None:
    b = ScriptedBackend([(BRANCH, "")], default="Canberra.")
    r = run_strategy(Q, "bsm", None, b)
    assert names(r) == ["branch", "solve"] and r.final_answer == "Canberra."
    assert any("no sub-question" in n for n in r.trace.notes)


def test_bsm_caps_branches_and_batches_solves() -> None:
    b = ScriptedBackend(
        [(BRANCH, "history, geography, politics, economy"), ("Merge these", "merged")], default="part"
    )
    r = run_strategy(Q, "bsm", "generation", b, params={"max_branches": 3})
    assert names(r) == ["branch", "solve", "solve", "solve", "merge"] and b.sizes == [1, 3, 1]
    assert r.final_answer == "merged"


def test_bsm_empty_merge_returns_the_unmerged_solves() -> None:
    b = ScriptedBackend([(BRANCH, "1. a\n2. b"), ("Merge these", ""), ("only this part", "solved")])
    r = run_strategy(Q, "bsm", None, b)
    assert r.final_answer == "a\nsolved\n\nb\nsolved"


# -- budget ----------------------------------------------------------------------------------------------------------------
def test_budget_before_any_answer_gives_an_empty_answer_and_says_so() -> None:
    r = run_strategy(Q, "s2a", None, ScriptedBackend([]), params={"token_budget": 1})
    assert names(r) == ["rewrite"] and r.final_answer == ""
    assert any("token budget of 1 reached" in n and "no answer was produced yet" in n for n in r.trace.notes)


def test_budget_note_is_streamed_as_an_event() -> None:
    events = list(
        stream_many(
            Q, [("bsm", None, ScriptedBackend([(BRANCH, "1. a\n2. b")], default="x"))], {"token_budget": 1}
        )
    )
    notes = [e for e in events if e.kind == "note"]
    assert len(notes) == 1 and "skipped solve" in notes[0].text and events[-1].kind == "run_finished"


def test_budget_mid_run_returns_the_best_so_far() -> None:
    b = ScriptedBackend([(BRANCH, "1. a\n2. b")], default="x" * 400)
    r = run_strategy(Q, "bsm", None, b, params={"token_budget": 150})
    assert names(r)[-1] == "solve" and r.final_answer.startswith("a\nx")
    assert "solve (unmerged)" in r.trace.notes[-1]


# -- failures never crash the other runs -----------------------------------------------------------------------------------
def test_backend_failure_fails_one_column_only() -> None:
    good, bad = ScriptedBackend([], default="fine"), ScriptedBackend([], fail_on=Q)
    events = list(stream_many(Q, [("system1", None, good), ("cot", None, bad), ("cove", "factored", good)]))
    errors = [e for e in events if e.kind == "error"]
    assert [e.run for e in errors] == [1] and "scripted failure" in errors[0].text
    finished = {e.run: e.result for e in events if e.kind == "run_finished"}
    assert finished[0].final_answer == "fine" and finished[2].error is None
    assert finished[1].error == "scripted failure" and finished[1].trace.steps[0].status == "error"


def test_a_failing_request_in_a_batch_is_retried_alone() -> None:
    b = ScriptedBackend([], default="fine", fail_on="think step by step")  # only CoT's prompt fails
    results = run_many(Q, [("system1", None, b), ("cot", None, b), ("s2a", None, b)])
    assert [r.error for r in results] == [None, "scripted failure", None]
    assert results[0].final_answer == "fine" and results[2].final_answer == "fine"
    assert b.sizes == [3, 1, 1, 1, 1]  # the batch, each request on its own, then S2A's answer step


def test_run_strategy_raises_the_backend_error() -> None:
    with pytest.raises(BackendError, match="scripted failure"):
        run_strategy(Q, "system1", None, ScriptedBackend([], fail_on=Q))
    r = run_strategy(Q, "system1", None, ScriptedBackend([], fail_on=Q), raise_errors=False)
    assert r.error == "scripted failure" and r.final_answer == ""


class Buggy(Strategy):
    def run(self, question: str, ctx: RunContext) -> StrategyGen:
        yield [ctx.request("answer", question)]
        raise RuntimeError("a bug")


class Idle(Strategy):
    def run(self, question: str, ctx: RunContext) -> StrategyGen:
        nothing = yield []
        (out,) = yield [ctx.request("answer", question)]
        return f"{len(nothing)} {out.text}"


def test_an_empty_round_is_answered_at_once() -> None:
    (result,) = run_jobs([DriveJob(Idle(), Q, ScriptedBackend([]))])
    assert result.final_answer == "0 ok"


def test_a_strategy_bug_ends_its_run_with_an_error_event() -> None:
    events = list(drive([DriveJob(Buggy(), Q, ScriptedBackend([]))]))
    assert [e.kind for e in events] == ["step_started", "step_finished", "error", "run_finished"]
    result = events[-1].result
    assert result.error == "RuntimeError: a bug" and isinstance(result.exception, RuntimeError)
    assert result.trace.steps[0].output == "ok"  # the trace so far is kept


class OldBackend(ScriptedBackend):
    """A backend written before ``chat`` had ``on_delta``."""

    def chat(self, conversations: Sequence[Conversation], params: GenParams) -> list[Completion]:  # type: ignore[override]
        return super().chat(conversations, params)


def test_live_deltas_reach_the_right_column_and_step() -> None:
    b = ScriptedBackend([(BRANCH, "1. a\n2. b")], default="xyz")
    seen: list[tuple[int, str, str]] = []
    events = list(
        stream_many(Q, [("system1", None, b), ("bsm", None, b)], on_delta=lambda *a: seen.append(a))
    )
    solves = [
        e.step.id for e in events if e.kind == "step_finished" and e.step.name == "solve" and e.run == 1
    ]
    assert (0, "s1", "xyz") in seen and (1, "s1", "1. a\n2. b") in seen
    assert all((1, sid, "xyz") in seen for sid in solves) and len(solves) == 2


def test_backends_without_on_delta_still_work() -> None:
    r = run_many(Q, [("system1", None, OldBackend([], default="fine"))])[0]
    assert r.error is None and r.final_answer == "fine"


def test_sequential_mode_sends_one_request_per_call() -> None:
    b = ScriptedBackend([(BRANCH, "1. a\n2. b\n3. c")], default="x")
    drive_results = list(drive([DriveJob(make("bsm"), Q, b, StrategyParams())], batching=False))
    assert drive_results[-1].kind == "run_finished" and b.sizes == [1, 1, 1, 1, 1]


def make(name: str, variant: str | None = None) -> Strategy:
    from studio.strategies import make_strategy

    return make_strategy(name, variant)


# -- arguments ------------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda b: run_strategy(Q, "nope", None, b), "unknown strategy 'nope'"),
        (lambda b: run_strategy(Q, "cove", "nope", b), "no variant 'nope'"),
        (lambda b: run_strategy(Q, "system1", "x", b), "no variant 'x'"),
        (lambda b: run_strategy("   ", "system1", None, b), "empty"),
        (lambda b: run_strategy("a\x00b", "system1", None, b), "NUL"),
        (lambda b: run_strategy(Q, "cove", None, b, params={"max_questions": 0}), "max_questions"),
        (lambda b: run_strategy(Q, "cove", None, b, params={"max_new_tokens": 0}), "max_new_tokens"),
        (lambda b: run_strategy(Q, "cove", None, b, params={"token_budget": 0}), "token_budget"),
        (lambda b: run_strategy(Q, "cove", None, b, params={"bogus": 1}), "unknown strategy params"),
        (lambda b: run_many(Q, [], None), "at least one"),
    ],
)
def test_bad_arguments_are_input_errors_before_any_call(call: Callable, message: str) -> None:
    b = ScriptedBackend([])
    with pytest.raises(InputError, match=message):
        call(b)
    assert b.sizes == []


def test_braces_in_a_question_are_harmless() -> None:
    q = "What does {question} or {} mean in Python?"
    assert render("cove_baseline", question=q) == q
    r = run_strategy(q, "cove", "factored", ScriptedBackend([(PLAN, "1. What is {x}?")], default="ok"))
    assert r.error is None and r.trace.by_name("execute_verification")[0].label == "What is {x}?"


def test_default_variants() -> None:
    assert make("cove").variant == "factored" and make("s2a").variant == "default"
    assert make("bsm").variant == "generation" and make("system1").variant is None


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("Who wrote Hamlet?", True),
        ("In which year was it written", True),
        ("Hamlet is a play.", False),
        ("", False),
    ],
)
def test_looks_like_question(text: str, ok: bool) -> None:
    assert looks_like_question(text) is ok


# -- structured step outputs ------------------------------------------------------------------------------------------
class StructuredScripted(ScriptedBackend):
    """A scripted backend that says it constrained every request that carried a schema (and records the schemas).
    Its outputs are hand-written, so they can be what a half-honouring server returns: fenced, cut off, partial."""

    def __init__(self, rules: Sequence[Rule], default: str = "ok") -> None:
        super().__init__(rules, default)
        self.schemas: list[str | None] = []

    def chat(
        self, conversations: Sequence[Conversation], params: GenParams, on_delta: OnDelta | None = None
    ) -> list[Completion]:
        outs = super().chat(conversations, params, on_delta)
        self.schemas += [params.schema] * len(outs)
        for out in outs:
            out.constrained = params.schema is not None
        return outs


STRUCTURED = {"structured": True}
PLAN_KEY = "Response:"  # the last turn of the few-shot plan prompts


def _step(r, name: str):
    return r.trace.by_name(name)[0]


def test_structured_plan_is_read_from_json_and_batches_the_verifications() -> None:
    b = StructuredScripted([(PLAN_KEY, '{"questions": ["Who is X?", "Where was X born?"]}')])
    r = run_strategy(Q, "cove", "factored", b, STRUCTURED)
    plan = _step(r, "plan_verifications")
    assert plan.constrained and json.loads(plan.params["schema"])["properties"]["questions"]["maxItems"] == 5
    assert plan.parsed == {"questions": ["Who is X?", "Where was X born?"], "parse_ok": True}
    assert [s.label for s in r.trace.by_name("execute_verification")] == ["Who is X?", "Where was X born?"]
    assert not plan.notes


def test_free_runs_send_no_schema_and_parse_free_text() -> None:
    b = StructuredScripted([(PLAN_KEY, "1. Who is X?\n2. X was born in Y.")])
    r = run_strategy(Q, "cove", "factored", b)
    plan = _step(r, "plan_verifications")
    assert set(b.schemas) == {None} and "schema" not in plan.params or plan.params["schema"] is None
    assert plan.parsed == {"questions": ["Who is X?"], "parse_ok": False}  # a statement was dropped
    assert any("not questions" in n for n in plan.notes)


def test_constrained_but_cut_off_json_is_salvaged_and_counted_as_a_parse_failure() -> None:
    b = StructuredScripted([(PLAN_KEY, '{"questions": ["Who is X?", "Where was X bo')])
    r = run_strategy(Q, "cove", "two_step", b, STRUCTURED)
    plan = _step(r, "plan_verifications")
    assert plan.parsed == {"questions": ["Who is X?"], "parse_ok": False}
    assert any("not the expected JSON" in n for n in plan.notes)


def test_json_in_a_code_fence_is_read() -> None:
    fenced = '```json\n{"verdict": "PARTIALLY CONSISTENT", "verdict_detail": "born in Y"}\n```'
    b = StructuredScripted([(PLAN_KEY, '{"questions": ["Who is X?"]}'), ("Verification question:", fenced)])
    r = run_strategy(Q, "cove", "factor_revise", b, STRUCTURED)
    check = _step(r, "cross_check")
    assert check.parsed == {"verdict": "PARTIALLY CONSISTENT", "detail": "born in Y", "parse_ok": True}


def test_json_without_the_verdict_falls_back_to_the_free_text_reading() -> None:
    b = StructuredScripted([(PLAN_KEY, '{"questions": ["Who is X?"]}'),
                            ("Verification question:", '{"verdict_detail": "it is INCONSISTENT"}')])  # fmt: skip
    r = run_strategy(Q, "cove", "factor_revise", b, STRUCTURED)
    check = _step(r, "cross_check")
    assert check.parsed["verdict"] == "INCONSISTENT" and check.parsed["parse_ok"] is False
    assert any("not the expected JSON" in n for n in check.notes)


def test_a_cross_check_cut_off_in_its_detail_keeps_its_verdict() -> None:
    cut = '{"verdict": "INCONSISTENT", "verdict_detail": "X was born in 19'
    b = StructuredScripted([(PLAN_KEY, '{"questions": ["Who is X?"]}'), ("Verification question:", cut)])
    check = _step(run_strategy(Q, "cove", "factor_revise", b, STRUCTURED), "cross_check")
    assert check.parsed == {"verdict": "INCONSISTENT", "detail": "X was born in 19", "parse_ok": True}
    assert any("cut off in its detail" in n for n in check.notes)
    b = StructuredScripted(
        [(PLAN_KEY, '{"questions": ["Who is X?"]}'), ("Verification question:", '{"verdi')]
    )
    check = _step(run_strategy(Q, "cove", "factor_revise", b, STRUCTURED), "cross_check")
    assert check.parsed["verdict"] is None and check.parsed["parse_ok"] is False


def test_plan_questions_must_open_like_questions_in_the_schema() -> None:
    import re

    schema = json.loads(
        run_strategy(Q, "cove", "two_step", StructuredScripted([(PLAN_KEY, "{}")]), STRUCTURED)
        .trace.by_name("plan_verifications")[0]
        .params["schema"]
    )
    pattern = re.compile(schema["properties"]["questions"]["items"]["pattern"])
    assert pattern.match("In which year was X born?") and pattern.match("Who is X?")
    assert not pattern.match("1. John Kerry (D-MA)?") and not pattern.match("Who is X")


def test_two_step_answers_from_json_and_a_short_list_is_a_failure() -> None:
    plan = '{"questions": ["Who is X?", "Where is Y?"]}'
    good = StructuredScripted([(PLAN_KEY, plan), ("Answer each question", '{"answers": ["A.", "B."]}')])
    step = _step(run_strategy(Q, "cove", "two_step", good, STRUCTURED), "execute_verifications")
    assert step.parsed == {"answers": ["A.", "B."], "parse_ok": True}
    short = StructuredScripted([(PLAN_KEY, plan), ("Answer each question", '{"answers": ["A."]}')])
    step = _step(run_strategy(Q, "cove", "two_step", short, STRUCTURED), "execute_verifications")
    assert step.parsed == {"answers": ["A.", ""], "parse_ok": False}


def test_joint_plan_from_json() -> None:
    joint = '{"verifications": [{"question": "Who is X?", "question_answer": "Z."}]}'
    b = StructuredScripted([(PLAN_KEY, joint)])
    step = _step(run_strategy(Q, "cove", "joint", b, STRUCTURED), "plan_verifications")
    assert step.parsed == {"questions": ["Who is X?"], "answers": ["Z."], "parse_ok": True}


def test_s2a_rewrite_from_json_fields_and_a_missing_field() -> None:
    both = '{"context_unbiased_text": "Facts.", "question_query": "What is the capital?"}'
    b = StructuredScripted([(REWRITE, both)])
    r = run_strategy(Q, "s2a", None, b, STRUCTURED)
    assert _step(r, "rewrite").parsed["parse_ok"] is True
    assert _step(r, "answer").messages[0]["content"].startswith("Facts.\n\nWhat is the capital?")
    b = StructuredScripted([(REWRITE, '{"context_unbiased_text": "Facts."}')])
    rewrite = _step(run_strategy(Q, "s2a", None, b, STRUCTURED), "rewrite")
    assert rewrite.parsed["found_query"] is False and rewrite.parsed["parse_ok"] is False
    assert any("no question label" in n for n in rewrite.notes)


def test_bsm_branches_from_json_capped() -> None:
    b = StructuredScripted([("Break the question", '{"sub_questions": ["a", "b", "c"]}')])
    r = run_strategy(Q, "bsm", None, b, {**STRUCTURED, "max_branches": 2})
    assert _step(r, "branch").parsed == {"branches": ["a", "b"], "parse_ok": True}
    assert len(r.trace.by_name("solve")) == 2


def test_judges_read_structured_verdicts() -> None:
    from studio.judges import JudgeItem, make_judge

    item = JudgeItem.pair("Q?", "one", "two")
    b = StructuredScripted([], default='{"explanation": "A is right.", "verdict": "[[A]]"}')
    v = make_judge("pairwise", {"structured": True}).judge([item], b)[0]
    assert v.ok and v.winner == "inconsistent"  # both orders picked the first shown answer
    steps = v.trace["steps"]
    assert [s["parsed"]["parse_ok"] for s in steps] == [True, True] and all(s["constrained"] for s in steps)
    b = StructuredScripted([], default='{"justification": "fine", "score": 4}')
    v = make_judge("additive", {"structured": True, "n": 2}).judge([JudgeItem.single("Q?", "a")], b)[0]
    assert v.rating == 4.0 and all(s["parsed"]["parse_ok"] for s in v.trace["steps"])
    b = StructuredScripted([], default='{"justification": "no score here. Score: 3"}')
    v = make_judge("additive", {"structured": True, "n": 1}).judge([JudgeItem.single("Q?", "a")], b)[0]
    assert v.rating == 3.0 and v.trace["steps"][0]["parsed"]["parse_ok"] is False


def test_structured_judge_config_keeps_earlier_hashes() -> None:
    from studio.judges import make_judge

    assert "structured" not in make_judge("pairwise").config_dict()
    assert make_judge("pairwise").config_hash("m") != make_judge(
        "pairwise", {"structured": True}
    ).config_hash("m")


def test_bsm_eval_judge_reads_structured_criteria_and_scores() -> None:
    from studio.judges import JudgeItem, make_judge

    b = StructuredScripted([("propose an evaluation plan", '{"criteria": ["Accuracy: right facts"]}')],
                           default='{"explanation": "x", "score_assistant_a": 5, "score_assistant_b": 2}')  # fmt: skip
    v = make_judge("bsm_eval", {"structured": True}).judge([JudgeItem.pair("Q?", "one", "two")], b)[0]
    assert v.scores["criteria"] == ["Accuracy: right facts"] and v.winner == "inconsistent"
    assert all(s["parsed"].get("parse_ok") for s in v.trace["steps"])


# -- self-consistency and Rephrase-and-Respond (scripted: exact votes) ------------------------------------------------
class CyclingBackend(ScriptedBackend):
    """Answers the i-th row of every call with ``outputs[i % len(outputs)]``; records each call's params."""

    def __init__(self, outputs: Sequence[str]) -> None:
        super().__init__([])
        self.outputs = list(outputs)
        self.params: list[GenParams] = []

    def chat(
        self, conversations: Sequence[Conversation], params: GenParams, on_delta: OnDelta | None = None
    ) -> list[Completion]:
        self.sizes.append(len(conversations))
        self.params.append(params)
        return [
            Completion(self.outputs[i % len(self.outputs)], 5, 5, 0.01) for i in range(len(conversations))
        ]


def test_sc_votes_over_one_batch_of_paths() -> None:
    b = CyclingBackend(
        ["So.\nAnswer: 12", "Hmm.\nAnswer: 7", "Thus the answer is 12.0", "Answer: 7", "Answer: 12"]
    )
    r = run_strategy(Q, "sc", None, b, {"samples": 5, "sc_temperature": 0.6, "seed": 3})
    assert b.sizes == [5] and b.params[0].temperature == 0.6 and b.params[0].seed == 3  # one batch, one seed
    assert [s.label for s in r.trace.steps] == [f"path {i}" for i in range(1, 6)]
    assert r.final_answer == "12"  # path 1's own text
    vote = r.trace.summary["vote"]
    assert vote["tally"] == {"12": 3, "7": 2} and vote["share"] == 0.6 and vote["samples"] == 5
    assert [p["normalized"] for p in vote["paths"]] == ["12", "7", "12", "7", "12"]
    assert vote["paths"][2] == {
        "path": 3,
        "final": "Thus the answer is 12.0",
        "normalized": "12",
        "steps": ["s3"],
    }
    assert "majority 3/5 (60%)" in r.trace.notes


def test_sc_tie_goes_to_the_earliest_path_and_empty_answers_do_not_vote() -> None:
    r = run_strategy(Q, "sc", "system1", CyclingBackend(["Paris.", "", "Lyon", "the paris"]), {"samples": 4})
    assert r.final_answer == "Paris." and r.trace.summary["vote"]["tally"] == {"paris": 2, "lyon": 1}
    r = run_strategy(Q, "sc", "system1", CyclingBackend(["Lyon", "Paris"]), {"samples": 2})
    assert r.final_answer == "Lyon" and "majority 1/2 (50%)" in r.trace.notes
    r = run_strategy(Q, "sc", "system1", CyclingBackend([""]), {"samples": 2})
    assert r.final_answer == "" and any("no path gave an answer" in n for n in r.trace.notes)


def test_sc_over_a_multi_step_strategy_multiplexes_every_round() -> None:
    b = CyclingBackend(["Rephrased question?"])
    r = run_strategy(Q, "sc", "rar", b, {"samples": 3})
    assert b.sizes == [3, 3]  # the three rephrase steps, then the three answer steps
    assert [(s.name, s.label) for s in r.trace.steps[:3]] == [("rephrase", f"path {i}") for i in (1, 2, 3)]
    assert r.trace.summary["vote"]["paths"][0]["steps"] == ["s1", "s4"]


def test_sc_budget_stops_with_the_majority_so_far() -> None:
    r = run_strategy(
        Q, "sc", "rar", CyclingBackend(["Rephrased question?"]), {"samples": 2, "token_budget": 5}
    )
    assert r.final_answer == "" and any("token budget" in n for n in r.trace.notes)


def test_sc_bad_variant_names_the_inner_strategies() -> None:
    with pytest.raises(InputError, match="variants: cot, system1, rar"):
        run_strategy(Q, "sc", "magic", CyclingBackend(["x"]))


def test_rar_prompts_are_the_authors_and_the_rephrasing_is_unquoted() -> None:
    b = ScriptedBackend(
        [("rephrase and expand it", '"What is the capital city of Australia?"')], default="Canberra"
    )
    r = run_strategy(Q, "rar", None, b)
    rephrase, answer = r.trace.steps
    assert rephrase.messages[0]["content"] == (
        f'"{Q}"\nGiven the above question, rephrase and expand it to help you do better answering. '
        "Maintain all information in the original question."
    )
    assert answer.messages[0]["content"] == (
        f"(original) {Q}\n(rephrased) What is the capital city of Australia?\n"
        "Use your answer for the rephrased question to answer the original question."
    )
    assert answer.parent == rephrase.id and r.final_answer == "Canberra"
    one = run_strategy(Q, "rar", "one_step", b).trace.steps
    assert [s.name for s in one] == ["answer"]
    assert one[0].messages[0]["content"] == f'"{Q}"\nRephrase and expand the question, and respond.'
