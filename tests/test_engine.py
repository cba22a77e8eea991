"""One engine for every model call: judges run on the strategy driver, with its one fallback policy and its trace.

A scripted backend (hand-written outputs, failures on a marked prompt) checks the policy and the trace; the
stored verdict's trace is read back through the store and the Data tab's view.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from components.data import verdict_html
from storage import Store
from studio.backends.base import Completion, Conversation, GenParams, OnDelta
from studio.errors import BackendError, InputError
from studio.judges import JudgeItem, make_judge
from studio.judges import base as judges_base
from studio.judging import judge_scope, verdict_from_row
from studio.strategies import DriveJob, StrategyParams, drive, make_strategy, run_jobs
from studio.strategies import base as strategies_base
from tests.test_strategies_edge import ScriptedBackend

POISON = "POISON"  # a prompt holding it fails, alone or in a batch


class Refusing(ScriptedBackend):
    """Refuses a prompt holding ``POISON`` as too long (an ``InputError``: the request's own fault)."""

    def chat(
        self, conversations: Sequence[Conversation], params: GenParams, on_delta: OnDelta | None = None
    ) -> list[Completion]:
        self.sizes.append(len(conversations))
        if any(POISON in c[-1]["content"] for c in conversations):
            raise InputError("the prompt is too long")
        return [Completion("[[A]]", 1, 1, 0.0) for _ in conversations]


def strategy_batch(backend: ScriptedBackend) -> list:
    jobs = [DriveJob(make_strategy("system1"), q, backend) for q in ("Fine 1?", f"{POISON} 2?", "Fine 3?")]
    return run_jobs(jobs)


def judge_batch(backend: ScriptedBackend) -> list:
    items = [JudgeItem.pair(q, "one", "two", key=q) for q in ("Fine 1?", f"{POISON} 2?", "Fine 3?")]
    return make_judge("pairwise").judge(items, backend)


# -- one fallback policy ----------------------------------------------------------------------------------------------
def test_a_failing_batch_is_retried_one_by_one_for_strategies_and_judges_alike() -> None:
    """A backend error in a batch: both engines retry each request alone, so only the marked one fails. The
    strategy's marked run ends with the error; the judge raises it (it says nothing about the item)."""
    strategies = ScriptedBackend([], default="[[A]]", fail_on=POISON)
    results = strategy_batch(strategies)
    assert strategies.sizes == [3, 1, 1, 1]  # the batch, then each request alone
    assert [r.error for r in results] == [None, "scripted failure", None]

    judges = ScriptedBackend([], default="[[A]]", fail_on=POISON)
    with pytest.raises(BackendError, match="scripted failure"):
        judge_batch(judges)
    assert judges.sizes == [6] + [1] * 6  # 3 items x 2 orders, then each call alone


def test_a_refused_request_fails_only_its_run_or_its_verdict() -> None:
    strategies = Refusing([])
    results = strategy_batch(strategies)
    assert strategies.sizes == [3, 1, 1, 1]
    assert [r.error for r in results] == [None, "the prompt is too long", None]

    judges = Refusing([])
    verdicts = judge_batch(judges)
    assert judges.sizes == [6] + [1] * 6
    assert [v.ok for v in verdicts] == [True, False, True] and "too long" in verdicts[1].error
    refused = verdicts[1].trace["steps"]
    assert [s["status"] for s in refused] == ["error", "error"] and "too long" in refused[0]["notes"][0]


# -- one trace ----------------------------------------------------------------------------------------------------------
def test_a_judge_step_is_a_trace_step_like_a_strategy_step() -> None:
    b = ScriptedBackend([], default="[[A]]")
    (v,) = make_judge("pairwise").judge([JudgeItem.pair("Which is 2+2?", "four", "five")], b)
    t = v.trace
    assert (t["strategy"], t["model"], t["question"]) == ("pairwise", "scripted", "Which is 2+2?")
    assert t["final_answer"] == v.summary == "winner inconsistent"  # always [[A]]: position bias
    assert t["params"] == make_judge("pairwise").config_dict()
    ab, ba = t["steps"]
    assert (ab["name"], ab["label"], ba["label"]) == ("judge", "order AB", "order BA")
    assert ab["messages"][0]["role"] == "system" and "four" in ab["messages"][1]["content"]
    assert [ab["output"], ba["output"]] == v.raw and ab["parsed"]["pick"] == "A"
    assert ab["batch_size"] == 2 and ab["round"] == 1 and t["totals"]["calls"] == 2


def test_bsm_eval_sends_one_branch_per_question_and_each_trace_keeps_it() -> None:
    b = ScriptedBackend([("evaluation plan", "1. Accuracy")], default="Assistant A: 4\nAssistant B: 2")
    items = [JudgeItem.pair("Q?", "x", "y"), JudgeItem.pair("Q?", "y", "x"), JudgeItem.pair("R?", "x", "y")]
    verdicts = make_judge("bsm_eval").judge(items, b)
    assert b.sizes == [2, 3 * 2]  # one branch per distinct question; one solve per item x order
    for v in verdicts:
        branch, *solves = v.trace["steps"]
        assert branch["name"] == "branch" and branch["parsed"]["criteria"] == ["Accuracy"]
        assert [s["parent"] for s in solves] == [branch["id"]] * 2 and branch["batch_size"] == 2


def test_log_prob_steps_record_the_probabilities_they_read() -> None:
    class Probs(ScriptedBackend):
        supports_choice_probs = True

        def choice_probs(self, conversations, choices):
            self.sizes.append(len(conversations))
            return [{"A": 0.75, "B": 0.25} for _ in conversations]

    b = Probs([])
    (v,) = make_judge("logprob", {"variant": "pair"}).judge([JudgeItem.pair("Q?", "x", "y")], b)
    assert b.sizes == [2] and v.prob_a == pytest.approx(0.5)
    steps = v.trace["steps"]
    assert [s["name"] for s in steps] == ["choice_probs"] * 2 and steps[0]["params"] == {
        "choices": ["A", "B"]
    }
    assert [s["output"] for s in steps] == v.raw


# -- stored, read back, shown ---------------------------------------------------------------------------------------------
def test_a_stored_verdict_keeps_its_trace_and_the_data_tab_opens_it(tmp_path: Path) -> None:
    with Store(tmp_path / "studio.duckdb") as store:
        pid = store.add_prompt("What is 2+2?")
        a, b = (store.add_run(pid, "m", "system1", text) for text in ("4", "22"))
        store.add_comparison([a, b])
        job = judge_scope(store, ScriptedBackend([], default="It is A. [[A]]"), make_judge("pairwise"))
        [vid] = job.verdict_ids
        row = store.get_verdict(vid)
        assert "trace" not in store.list_verdicts()[0]  # listings leave traces out, as for runs
        hand = store.add_verdict("pairwise", "pairwise", [a, b], winner="B")
        html, bare = verdict_html(store, vid), verdict_html(store, hand)
    trace = row["trace"]
    assert [s["output"] for s in trace["steps"]] == ["It is A. [[A]]"] * 2
    user = trace["steps"][0]["messages"][-1]["content"]
    assert "What is 2+2?" in user and "[The Start of Assistant A's Answer]\n4\n" in user
    assert verdict_from_row(row).trace == trace
    assert f"Verdict {vid}" in html and html.count('class="trace-step"') == 2 and "It is A. [[A]]" in html
    assert "no trace stored for this verdict" in bare


# -- one prompt loader ----------------------------------------------------------------------------------------------------
def test_one_loader_tidies_strategy_prompts_and_sends_judge_prompts_byte_for_byte() -> None:
    answer = "line one\n\n\n\nline two  "
    judge_text = judges_base.render("self_rewarding_additive", prompt="Q?", response=answer)
    assert f"<response>{answer}</response>" in judge_text  # the answer under judgement, exactly
    assert strategies_base.render("cove_baseline", question=f"  {answer}") == "line one\n\nline two"
    for prompts in (strategies_base.PROMPTS, judges_base.PROMPTS):
        assert prompts.names() and all(prompts.load(n).strip() for n in prompts.names())
        assert not any(prompts.load(n).startswith("#") for n in prompts.names())  # citations are not sent


# -- rows as they finish ---------------------------------------------------------------------------------------------
class RowsThenFail(ScriptedBackend):
    """A backend that ``supports_rows``: reports each row as it is answered, and fails the batch at ``POISON``
    (after the rows before it were reported); alone, only the poisoned row fails."""

    supports_rows = True

    def chat(self, conversations, params, on_delta=None, on_row_done=None):
        self.sizes.append(len(conversations))
        self.params = list(params)
        out = []
        for i, c in enumerate(conversations):
            comp = self._answer(c)  # raises at POISON
            if on_row_done is not None:
                on_row_done(i, comp)
            out.append(comp)
        return out


def test_rows_reported_before_a_batch_fails_are_kept_and_only_the_rest_retried() -> None:
    b = RowsThenFail([], default="fine", fail_on=POISON)
    results = strategy_batch(b)  # "Fine 1?", "POISON 2?", "Fine 3?"
    assert b.sizes == [3, 1, 1]  # the batch; row 0 was already reported, so rows 1 and 2 are retried alone
    assert [r.error for r in results] == [None, "scripted failure", None]
    assert [r.final_answer for r in results] == ["fine", "", "fine"]


def test_steps_with_their_own_caps_share_a_batch_on_a_backend_that_supports_rows() -> None:
    b = RowsThenFail([], default="fine")
    jobs = [
        DriveJob(make_strategy("system1"), "Q1?", b, StrategyParams(step_max_tokens={"answer": 16})),
        DriveJob(make_strategy("system1"), "Q2?", b, StrategyParams(max_new_tokens=64)),
    ]
    results = run_jobs(jobs)
    assert b.sizes == [2] and [p.max_new_tokens for p in b.params] == [16, 64]
    assert [r.trace.steps[0].batch_size for r in results] == [2, 2]
    plain = ScriptedBackend([], default="fine")  # without supports_rows, different caps are different batches
    run_jobs([DriveJob(j.strategy, j.question, plain, j.params) for j in jobs])
    assert plain.sizes == [1, 1]


class _Structured:
    """A one-step program asking for a schema (a structured run)."""

    name, variant = "probe", None

    def run(self, question, ctx):
        (c,) = yield [ctx.request("answer", question, schema={"type": "object"})]
        return c.text


class Unconstrained(ScriptedBackend):
    supports_rows = True

    def chat(self, conversations, params, on_delta=None, on_row_done=None):
        warn = ["http://x/v1 refused response_format (json_schema): HTTP 400: no; ran as free text"]
        return [Completion("{}", 1, 1, 0.5, warnings=list(warn)) for _ in conversations]


def test_a_step_says_whether_it_was_constrained_and_why_not() -> None:
    structured = StrategyParams(structured=True)
    [refused] = run_jobs([DriveJob(_Structured(), "Q?", Unconstrained([]), structured)])
    step = refused.trace.steps[0]
    assert step.params["schema"] == '{"type":"object"}' and not step.constrained
    assert step.notes == ["http://x/v1 refused response_format (json_schema): HTTP 400: no; ran as free text"]
    assert step.latency_s == 0.5  # the backend's own figure for the row

    class Constrained(ScriptedBackend):
        def chat(self, conversations, params, on_delta=None):
            return [Completion("{}", 1, 1, 0.1, constrained=True) for _ in conversations]

    [ok] = run_jobs([DriveJob(_Structured(), "Q?", Constrained([]), structured)])
    assert ok.trace.steps[0].constrained and ok.trace.steps[0].notes == []
    [silent] = run_jobs([DriveJob(_Structured(), "Q?", ScriptedBackend([], default="{}"), structured)])
    assert not silent.trace.steps[0].constrained
    assert silent.trace.steps[0].notes == ["scripted cannot constrain output to a schema; ran as free text"]


@pytest.mark.slow
def test_system1_finishes_while_a_long_column_of_its_batch_still_decodes(backend) -> None:
    """System 1 and CoT share round 1's batch; System 1's short answer ends first, and its run_finished comes
    before CoT's step finishes, with System 1's own latency, not the batch's."""
    import time

    jobs = [
        DriveJob(make_strategy("system1"), "What is 2+2? Answer with the number only.", backend),
        DriveJob(make_strategy("cot"), "Write a long essay about the history of Rome.", backend),
    ]
    for j in jobs:
        j.params = StrategyParams(max_new_tokens=64)
    t0 = time.perf_counter()
    log = [(ev.kind, ev.run, time.perf_counter() - t0, ev) for ev in drive(jobs)]
    kinds = [(k, r) for k, r, _, _ in log]
    assert kinds.index(("run_finished", 0)) < kinds.index(("step_finished", 1))
    [(_, _, done0, ev0)] = [e for e in log if e[:2] == ("run_finished", 0)]
    [(_, _, done1, ev1)] = [e for e in log if e[:2] == ("run_finished", 1)]
    s0, s1 = ev0.result.trace.steps[0], ev1.result.trace.steps[0]
    assert s0.batch_size == s1.batch_size == 2 and s0.round == s1.round == 1
    assert s0.completion_tokens < 12 and s1.completion_tokens > 4 * s0.completion_tokens
    assert s0.latency_s < s1.latency_s / 2 and done0 < done1 / 2
