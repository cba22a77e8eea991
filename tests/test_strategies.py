"""Every strategy and variant, end to end on the real default model (greedy, short steps to keep this fast).

Most tests read one arena run: all ten strategy/variant columns on one question in lockstep, which also
checks that their first steps went to the model as one batch.
"""

from __future__ import annotations

import argparse
import io
import json
from collections.abc import Iterator, Sequence

import pytest

from studio.api import RunSpec, list_strategies, run_many, run_strategy, stream_strategy
from studio.backends.base import Backend, Completion, Conversation, GenParams, OnDelta
from studio.context import AppContext
from studio.strategies import STEP_NAMES, STRATEGIES, RunResult, Trace, render
from studio.strategies.base import PROMPTS_DIR, load_prompt
from studio.strategies.parsing import parse_sections, parse_verdict, split_cot
from studio.strategies.s2a import VARIANTS as S2A_VARIANTS

pytestmark = pytest.mark.slow

QUESTION = "I think the answer is Sydney, but I'm really not sure. What is the capital of Australia?"
PARAMS = {"max_new_tokens": 48}
SPECS = [
    ("system1", None),
    ("cot", None),
    ("cove", "joint"),
    ("cove", "two_step"),
    ("cove", "factored"),
    ("cove", "factor_revise"),
    ("s2a", "default"),
    ("s2a", "keep_original"),
    ("s2a", "relevance"),
    ("bsm", "generation"),
]


class CountingBackend(Backend):
    """A thin proxy over the real model that records each ``chat`` call's prompts (real generation)."""

    def __init__(self, inner: Backend) -> None:
        self.inner = inner
        self.model_name = inner.model_name
        self.calls: list[list[str]] = []

    def chat(
        self, conversations: Sequence[Conversation], params: GenParams, on_delta: OnDelta | None = None
    ) -> list[Completion]:
        self.calls.append([c[-1]["content"] for c in conversations])
        return self.inner.chat(conversations, params, on_delta=on_delta)

    def stream(self, conversation: Conversation, params: GenParams) -> Iterator[str]:
        return self.inner.stream(conversation, params)

    @property
    def sizes(self) -> list[int]:
        return [len(c) for c in self.calls]


@pytest.fixture(scope="module")
def arena(backend: Backend) -> tuple[list[RunResult], CountingBackend]:
    counting = CountingBackend(backend)
    results = run_many(QUESTION, [(s, v, counting) for s, v in SPECS], params=PARAMS)
    return results, counting


def result_for(
    arena: tuple[list[RunResult], CountingBackend], strategy: str, variant: str | None
) -> RunResult:
    return arena[0][SPECS.index((strategy, variant))]


def names(trace: Trace) -> list[str]:
    return [s.name for s in trace.steps]


def expected_names(r: RunResult) -> list[str]:
    """The step order METHODS.md prescribes, given what was parsed (k questions or branches)."""
    t = r.trace
    if r.strategy in ("system1", "cot"):
        return ["answer"]
    if r.strategy == "s2a":
        return ["rewrite", "answer"]
    if r.strategy == "bsm":
        k = len(t.by_name("branch")[0].parsed["branches"])
        return ["branch", *["solve"] * max(k, 1)] + (["merge"] if k else [])
    k = len(t.by_name("plan_verifications")[0].parsed["questions"])
    head = ["baseline", "plan_verifications"]
    if k == 0:
        return head
    return (
        head
        + {
            "joint": [],
            "two_step": ["execute_verifications"],
            "factored": ["execute_verification"] * k,
            "factor_revise": ["execute_verification"] * k + ["cross_check"] * k,
        }[r.variant]
        + ["final_verified"]
    )


# -- every strategy and variant ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("strategy", "variant"), SPECS, ids=[f"{s}-{v}" for s, v in SPECS])
def test_every_strategy_and_variant_runs_end_to_end(arena, strategy: str, variant: str | None) -> None:
    r = result_for(arena, strategy, variant)
    assert r.error is None, r.error
    assert (r.strategy, r.variant, r.model) == (strategy, variant, "smollm2-135m")
    assert r.final_answer.strip()
    assert names(r.trace) == expected_names(r)
    assert set(names(r.trace)) <= set(STEP_NAMES)
    for s in r.trace.steps:
        assert s.status == "done" and s.messages and s.prompt_tokens > 0 and s.latency_s > 0
    t = r.totals
    assert t.calls == len(r.trace.steps)
    assert t.prompt_tokens == sum(s.prompt_tokens for s in r.trace.steps)
    assert t.latency_s > 0


def test_the_registry_holds_the_specified_strategies() -> None:
    # tot is the Tree-of-Thoughts helper's (tested there); every other strategy is listed exactly
    assert set(STRATEGIES.names()) - {"tot"} == {"bsm", "cot", "cove", "rar", "s2a", "sc", "system1"}
    listed = {i.name: (i.variants, i.default_variant) for i in list_strategies() if i.name != "tot"}
    assert listed == {
        "bsm": (("generation",), "generation"),
        "cot": ((), None),
        "cove": (("joint", "two_step", "factored", "factor_revise"), "factored"),
        "rar": (("one_step", "two_step"), "two_step"),
        "s2a": (("default", "keep_original", "relevance"), "default"),
        "sc": (("cot", "system1", "rar", "s2a", "cove", "bsm"), "cot"),
        "system1": ((), None),
    }


def test_arena_first_steps_went_to_the_model_as_one_batch(arena) -> None:
    results, counting = arena
    first = counting.calls[0]
    assert len(first) == len(SPECS)
    assert QUESTION in first  # System 1 and the CoVe baselines send the question as asked
    for r in results:
        assert r.trace.steps[0].round == 1 and r.trace.steps[0].batch_size == len(SPECS)
        assert r.trace.steps[0].messages[-1]["content"] in first


# -- CoVe ----------------------------------------------------------------------------------------------------------------
def test_cove_factored_stages_and_batch(arena) -> None:
    r = result_for(arena, "cove", "factored")
    plan = r.trace.by_name("plan_verifications")[0]
    questions = plan.parsed["questions"]
    k = len(questions)
    assert 1 <= k <= 5
    assert names(r.trace) == [
        "baseline",
        "plan_verifications",
        *["execute_verification"] * k,
        "final_verified",
    ]
    checks = r.trace.by_name("execute_verification")
    assert [c.label for c in checks] == questions
    assert all(c.parent == plan.id for c in checks)
    assert len({c.round for c in checks}) == 1 and all(c.batch_size >= k for c in checks)  # one batch


def test_cove_factored_verification_prompts_do_not_contain_the_baseline(arena) -> None:
    r = result_for(arena, "cove", "factored")
    baseline = r.trace.by_name("baseline")[0].output
    assert baseline.strip()
    for c in r.trace.by_name("execute_verification"):
        prompt = c.messages[-1]["content"]
        assert prompt == render("cove_execute_verification_factored", question=c.label)
        assert baseline not in prompt and baseline not in json.dumps(c.messages)


def test_cove_final_sees_baseline_and_every_verification(arena) -> None:
    for variant in ("two_step", "factored", "factor_revise"):
        r = result_for(arena, "cove", variant)
        final = r.trace.by_name("final_verified")[0].messages[-1]["content"]
        assert r.trace.by_name("baseline")[0].output in final
        for q in r.trace.by_name("plan_verifications")[0].parsed["questions"]:
            assert q in final


def test_cove_two_step_execution_sees_the_questions_not_the_baseline(arena) -> None:
    r = result_for(arena, "cove", "two_step")
    prompt = r.trace.by_name("execute_verifications")[0].messages[-1]["content"]
    assert r.trace.by_name("baseline")[0].output not in prompt
    for q in r.trace.by_name("plan_verifications")[0].parsed["questions"]:
        assert q in prompt


def test_cove_joint_plans_and_answers_in_one_prompt_with_the_baseline(arena) -> None:
    r = result_for(arena, "cove", "joint")
    plan = r.trace.by_name("plan_verifications")[0]
    assert r.trace.by_name("baseline")[0].output in plan.messages[-1]["content"]
    assert len(plan.parsed["questions"]) == len(plan.parsed["answers"])


def test_cove_factor_revise_cross_checks_each_verification_in_one_batch(backend: Backend) -> None:
    counting = CountingBackend(backend)
    r = run_strategy(QUESTION, "cove", "factor_revise", counting, params=PARAMS)
    verifications = r.trace.by_name("execute_verification")
    crosses = r.trace.by_name("cross_check")
    k = len(r.trace.by_name("plan_verifications")[0].parsed["questions"])
    assert k >= 1 and len(verifications) == len(crosses) == k
    assert counting.sizes == [1, 1, k, k, 1]  # baseline, plan, verifications, cross-checks, final
    baseline = r.trace.by_name("baseline")[0].output
    for v, c in zip(verifications, crosses, strict=True):
        assert c.parent == v.id
        prompt = c.messages[-1]["content"]
        assert baseline in prompt and v.label in prompt and v.output in prompt
        verdict, detail = parse_verdict(c.output)  # what the model wrote decides the verdict
        assert c.parsed == {"verdict": verdict, "detail": detail, "parse_ok": verdict is not None}
        unreadable_noted = any("no CONSISTENT / INCONSISTENT" in n for n in c.notes)
        assert unreadable_noted == (verdict is None)  # an unreadable verdict is noted, never dropped silently
    final = r.trace.by_name("final_verified")[0].messages[-1]["content"]
    assert final.count("Cross-check:") == k


# -- S2A -------------------------------------------------------------------------------------------------------------------
def test_s2a_default_answer_sees_only_the_rewrite(arena) -> None:
    r = result_for(arena, "s2a", "default")
    rewrite, answer = r.trace.steps
    assert rewrite.messages[-1]["content"] == render("s2a_rewrite_default", question=QUESTION)
    prompt = answer.messages[-1]["content"]
    assert prompt.endswith("Answer in an unbiased way.")
    # whatever the model wrote: the answer step sees the sections parsed from the rewrite, or (no label, or
    # both sections empty: noted) the whole rewrite; the user's own text only if the rewrite repeated it
    s = parse_sections(rewrite.output, *S2A_VARIANTS["default"][2:])
    ok = s.found_context and s.found_query and bool(s.context or s.query)
    assert rewrite.parsed == {
        "context": s.context, "query": s.query, "found_context": s.found_context, "found_query": s.found_query,
        "parse_ok": ok,
    }  # fmt: skip
    whole = not (s.found_context or s.found_query) or not (s.context or s.query)
    if not rewrite.output.strip():
        expected = render("s2a_answer_default", context=QUESTION, query="")
    elif whole:
        expected = render("s2a_answer_default", context=rewrite.output.strip(), query="")
    else:
        expected = render("s2a_answer_default", context=s.context, query=s.query)
    assert prompt == expected
    assert any("whole rewrite" in n for n in rewrite.notes) == (whole and bool(rewrite.output.strip()))


def test_s2a_keep_original_also_shows_the_original(arena) -> None:
    r = result_for(arena, "s2a", "keep_original")
    assert QUESTION in r.trace.by_name("answer")[0].messages[-1]["content"]


def test_s2a_relevance_uses_its_labels(arena) -> None:
    r = result_for(arena, "s2a", "relevance")
    prompt = r.trace.by_name("rewrite")[0].messages[-1]["content"]
    assert "Context text related to the question (includes all content except unrelated sentences):" in prompt
    assert '"Detailed question:"' in prompt


def test_s2a_rewrite_prompt_is_the_published_one_verbatim() -> None:
    published = (
        "Given the following text by a user, extract the part that is unbiased and not their opinion, so that "
        "using that text alone would be good context for providing an unbiased answer to the question portion of "
        "the text. Please include the actual question or query that the user is asking. Separate this into two "
        'categories labeled with "Unbiased text context (includes all content except user\'s bias):" and '
        '"Question/Query (does not include user bias/preference):".\n\nText by User: [ORIGINAL INPUT PROMPT]'
    )
    assert render("s2a_rewrite_default", question="[ORIGINAL INPUT PROMPT]") == published


# -- BSM --------------------------------------------------------------------------------------------------------------------
def test_bsm_solves_are_batched_and_merge_sees_every_solve(arena) -> None:
    r = result_for(arena, "bsm", "generation")
    branch = r.trace.by_name("branch")[0]
    solves = r.trace.by_name("solve")
    assert 1 <= len(solves) == len(branch.parsed["branches"]) <= 5
    assert all(s.parent == branch.id for s in solves)
    assert len({s.round for s in solves}) == 1 and all(s.batch_size >= len(solves) for s in solves)
    merge = r.trace.by_name("merge")[0].messages[-1]["content"]
    for s in solves:
        assert s.label in merge and (s.output.strip() or "(no answer)") in merge


# -- CoT ----------------------------------------------------------------------------------------------------------------------
def test_cot_splits_reasoning_and_final(arena) -> None:
    r = result_for(arena, "cot", None)
    step = r.trace.steps[0]
    split = split_cot(step.output)  # whatever the model wrote, the parse of its output decides
    assert step.parsed == {
        "reasoning": split.reasoning,
        "final": split.final,
        "marker_found": split.marker_found,
        "parse_ok": split.marker_found,
    }
    assert r.final_answer == split.final
    assert any("last line" in n for n in step.notes) == (not split.marker_found)


# -- budget, trace, streaming, prompts ----------------------------------------------------------------------------------------
def test_token_budget_stops_early_with_the_best_answer_and_a_note(backend: Backend) -> None:
    r = run_strategy(QUESTION, "cove", "factored", backend, params={**PARAMS, "token_budget": 20})
    assert names(r.trace) == ["baseline"]
    assert r.final_answer == r.trace.steps[0].output
    assert any("token budget of 20 reached" in n and "baseline" in n for n in r.trace.notes)


def test_trace_json_round_trip(arena) -> None:
    r = result_for(arena, "cove", "factor_revise")
    text = r.trace.to_json()
    back = Trace.from_json(text)
    assert back == r.trace
    d = json.loads(text)
    assert d["totals"]["calls"] == len(d["steps"]) and d["final_answer"] == r.final_answer
    assert RunResult.from_dict(json.loads(json.dumps(r.to_dict()))).trace == r.trace


def test_stream_events_show_each_step_live(backend: Backend) -> None:
    events = list(stream_strategy(QUESTION, "s2a", "default", backend, params=PARAMS))
    kinds = [e.kind for e in events]
    assert kinds[-1] == "run_finished" and kinds.count("run_finished") == 1
    steps = [(e.kind, e.step.name) for e in events if e.step]
    assert steps == [
        ("step_started", "rewrite"),
        ("step_finished", "rewrite"),
        ("step_started", "answer"),
        ("step_finished", "answer"),
    ]
    started = next(e for e in events if e.kind == "step_started")
    assert started.step.messages and started.step.output == "" and started.step.status == "running"
    finished = next(e for e in events if e.kind == "step_finished")
    assert finished.step.output and finished.step.completion_tokens > 0
    assert json.dumps([e.to_dict() for e in events])  # events serialise for the UI


def test_mixed_models_make_one_batch_per_model(backend: Backend) -> None:
    a, b = CountingBackend(backend), CountingBackend(backend)
    results = run_many(
        QUESTION, [RunSpec("system1", model=a), RunSpec("cot", model=a), RunSpec("system1", model=b)], PARAMS
    )
    assert a.sizes == [2] and b.sizes == [1]
    assert all(r.final_answer for r in results)


def test_every_prompt_file_cites_its_source_and_is_used() -> None:
    files = sorted(PROMPTS_DIR.glob("*.txt"))
    assert files
    for f in files:
        header = f.read_text(encoding="utf-8").splitlines()[0]
        assert header.startswith("# Source:"), f.name
        if not f.stem.startswith("system1"):
            assert "arXiv" in header, f.name
        assert load_prompt(f.stem).strip()


# -- CLI ---------------------------------------------------------------------------------------------------------------------------
def cli_args(*argv: str) -> argparse.Namespace:
    from studio.cli import run

    parser = argparse.ArgumentParser()
    run.register(parser.add_subparsers())
    return parser.parse_args(list(argv))


def test_cli_run_prints_a_tree_then_the_final_answer(settings) -> None:
    args = cli_args("run", "--strategy", "bsm", "--max-new-tokens", "32", "--max-branches", "2", QUESTION)
    out = io.StringIO()
    assert args.func(args, AppContext(settings), out=out) == 0
    text = out.getvalue()
    assert (
        text.index("● branch")
        < text.index("  ● solve")
        < text.index("● merge")
        < text.index("Final answer (bsm/generation")
    )
    solves = text.count("● solve")
    assert 1 <= solves <= 2 and ("batch of 2" in text) == (solves == 2)  # two solves go as one batch


def test_cli_run_json_prints_the_whole_trace(settings) -> None:
    args = cli_args("run", "-s", "cot", "--max-new-tokens", "24", "--json", QUESTION)
    out = io.StringIO()
    assert args.func(args, AppContext(settings), out=out) == 0
    d = json.loads(out.getvalue())
    assert d["strategy"] == "cot" and d["steps"][0]["name"] == "answer" and d["final_answer"]


def test_cli_strategies_lists_variants(settings) -> None:
    args = cli_args("strategies")
    out = io.StringIO()
    assert args.func(args, AppContext(settings), out=out) == 0
    text = out.getvalue()
    for name in ("system1", "cot", "cove", "s2a", "bsm", "factor_revise", "keep_original", "relevance", "rar",
                 "one_step", "two_step", "sc "):  # fmt: skip
        assert name in text
