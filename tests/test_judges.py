"""Judges: parsing on hand-written outputs, the swap logic, batching, failed verdicts (scripted fake backend);
then every judge on the real default model, which must give verdicts, valid or failed, without crashing."""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Sequence

import pytest

from studio.backends.base import Backend, Completion, Conversation, GenParams
from studio.errors import InputError
from studio.judges import JUDGES, Candidate, JudgeItem, Verdict, combine_orders, make_judge, to_caller_label
from studio.judges.additive import parse_score
from studio.judges.base import load_prompt
from studio.judges.bsm_eval import FALLBACK_CRITERION, merge, parse_criteria, parse_criterion_scores
from studio.judges.logprob import p_a_better, p_a_better_pointwise, winner_from_prob
from studio.judges.pairwise import parse_pairwise
from studio.judges.single import explanation_cap

# -- parsing ------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("The response is relevant.\nScore: 4", 4.0),
        ("Score: 2 at first... on reflection\nScore: 5", 5.0),
        ("**Score:** 3", 3.0),
        ("Score: 4/5", 4.0),
        ("score = 1 point", 1.0),
        ("Score: 3.5", 3.5),
        ("Score: 0", 0.0),
        ("Score: 7", None),  # out of the 0..5 scale
        ("Score: 45", None),
        ('Conclude with the score using the format: "Score: <total points>"', None),
        ("I would give it four points.", None),
        ("", None),
    ],
)
def test_parse_score(text, want):
    assert parse_score(text) == want


ECHO = 'follow this format: "[[A]]" if assistant A is better, "[[B]]" if assistant B is better, and "[[C]]" for a tie.'


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("Assistant A is more accurate. [[A]]", "A"),
        ("Both fine.\n\nFinal verdict: [[C]]", "tie"),
        ("[[A]] seemed good at first, but B is better: [[B]]", "B"),
        ("[[ b ]]", "B"),
        (ECHO, None),  # the instruction echoed back is not a verdict
        (ECHO + "\nMy verdict: [[A]]", "A"),
        ("Assistant B is better.", None),
        ("[A]", None),
        ("", None),
    ],
)
def test_parse_pairwise(text, want):
    assert parse_pairwise(text) == want


def test_parse_criteria():
    text = "Evaluation plan:\n1. Accuracy: the facts are right.\n2. **Clarity**: easy to read.\n3. Accuracy: again"
    assert parse_criteria(text) == [
        "Accuracy: the facts are right.",
        "Clarity: easy to read.",
        "Accuracy: again",
    ]
    assert parse_criteria("- Relevance\n- Depth\n- Style", cap=2) == ["Relevance", "Depth"]
    assert parse_criteria("Relevance: on topic\nDepth: detailed\nDepth: detailed") == [
        "Relevance: on topic",
        "Depth: detailed",
    ]
    assert parse_criteria("") == [] and parse_criteria("Criteria:") == []


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("A is precise, B vague.\nAssistant A: 4\nAssistant B: 2", (4, 2)),
        ("**Assistant A:** 5/5\n**Assistant B:** 1/5", (5, 1)),
        ("Scores - A: 3, B: 5", (3, 5)),
        ("Assistant A's score: 2\nAssistant B's score: 2", (2, 2)),
        ("Assistant A: 4\nAssistant A: 3\nAssistant B: 1", (3, 1)),  # the last score of each wins
        ("Assistant A: 4", None),
        ("Assistant A: 9\nAssistant B: 2", None),
        ("no scores here", None),
    ],
)
def test_parse_criterion_scores(text, want):
    assert parse_criterion_scores(text) == want


def test_merge_sums_parsed_criteria():
    assert merge([(4, 2), None, (1, 5)]) == (5, 7, "B")
    assert merge([(3, 3)]) == (3, 3, "tie")
    assert merge([None, None]) is None


# -- swap logic ---------------------------------------------------------------------------------------------------


def test_to_caller_label():
    assert [to_caller_label(p, "AB") for p in ("A", "B", "tie", None)] == ["A", "B", "tie", None]
    assert [to_caller_label(p, "BA") for p in ("A", "B", "tie", None)] == ["B", "A", "tie", None]


@pytest.mark.parametrize(
    ("picks", "want"),
    [
        (["A", "A"], "A"),
        (["B", "B"], "B"),
        (["tie", "tie"], "tie"),
        (["A", "B"], "inconsistent"),
        (["A", "tie"], "inconsistent"),
        (["A", None], None),
        ([], None),
    ],
)
def test_combine_orders(picks, want):
    assert combine_orders(picks) == want


def test_inconsistent_counts_as_a_tie():
    v = Verdict("pairwise", "m", {}, "h", "pairwise", ok=True, winner="inconsistent")
    assert v.outcome == "tie" and v.winner == "inconsistent"


# -- a scripted backend, for swap logic and batching only --------------------------------------------------------


class Scripted(Backend):
    """Answers each conversation with ``script(last user message)``; records every batch it was sent."""

    supports_choice_probs = True

    def __init__(self, script: Callable[[str], str], probs: Callable[[str], dict] | None = None) -> None:
        self.model_name = "judge-model"
        self.script, self.probs = script, probs
        self.batches: list[int] = []

    def chat(self, conversations: Sequence[Conversation], params: GenParams) -> list[Completion]:
        self.batches.append(len(conversations))
        if any("TOO LONG" in c[-1]["content"] for c in conversations):
            raise InputError("the prompt is too long")
        return [Completion(self.script(c[-1]["content"]), 1, 1, 0.0) for c in conversations]

    def stream(self, conversation, params):  # pragma: no cover - not used by judges
        yield from ()

    def choice_probs(self, conversations, choices):
        self.batches.append(len(conversations))
        return [self.probs(c[-1]["content"]) for c in conversations]


def first_shown(text: str) -> str:
    """The text of the answer shown as Assistant A."""
    return text.split("[The Start of Assistant A's Answer]\n")[1].split("\n")[0]


def items(n: int = 3) -> list[JudgeItem]:
    good = Candidate("GOOD answer", model="policy", strategy="cot")
    return [
        JudgeItem(f"Question {i}?", (good, Candidate("BAD answer", model="other")), key=i) for i in range(n)
    ]


def test_pairwise_both_orders_in_one_batch_and_swap_mapping():
    # a judge that always prefers the GOOD answer, wherever it is shown: consistent in both orders
    backend = Scripted(lambda t: "[[A]]" if first_shown(t).startswith("GOOD") else "[[B]]")
    verdicts = make_judge("pairwise").judge(items(3), backend)
    assert backend.batches == [6]  # 3 items x 2 orders, one call
    for i, v in enumerate(verdicts):
        assert (v.ok, v.winner, v.orders, v.order_winners, v.key) == (True, "A", ["AB", "BA"], ["A", "A"], i)
        assert v.scores["picks"] == {"AB": "A", "BA": "B"}
        assert v.self_judge is False and len(v.raw) == 2


def test_pairwise_position_bias_is_inconsistent():
    backend = Scripted(lambda t: "Whoever is first. [[A]]")
    (v,) = make_judge("pairwise").judge(items(1), backend)
    assert (v.ok, v.winner, v.outcome, v.order_winners) == (True, "inconsistent", "tie", ["A", "B"])


def test_pairwise_unparsable_is_a_failed_verdict_with_raw_text():
    backend = Scripted(lambda t: "[[B]]" if first_shown(t).startswith("BAD") else "I cannot decide.")
    (v,) = make_judge("pairwise").judge(items(1), backend)
    assert not v.ok and v.winner is None and v.outcome is None
    assert v.raw == ["I cannot decide.", "[[B]]"] and v.order_winners == [None, "A"]
    assert "AB" in v.error and "[[A]]" in v.error


def test_one_overlong_item_fails_alone():
    backend = Scripted(lambda t: "[[A]]")
    its = items(2) + [JudgeItem.pair("TOO LONG", "x", "y")]
    verdicts = make_judge("pairwise").judge(its, backend)
    assert [v.ok for v in verdicts] == [True, True, False]
    assert "too long" in verdicts[2].error


def test_self_judge_flag():
    backend = Scripted(lambda t: "[[A]]")
    backend.model_name = "policy"
    v1, v2 = make_judge("pairwise").judge([items(1)[0], JudgeItem.pair("q", "a", "b")], backend)
    assert v1.self_judge and not v2.self_judge
    assert v1.judge_model == "policy"


def test_bsm_eval_branch_solve_merge():
    def script(text: str) -> str:
        if "evaluation plan" in text:
            return "1. Accuracy: correct facts.\n2. Clarity: easy to follow."
        good_first = first_shown(text).startswith("GOOD")
        if "Criterion: Clarity" in text:
            return "Unreadable."  # this criterion never parses: the sum uses Accuracy only
        return "Assistant A: 5\nAssistant B: 2" if good_first else "Assistant A: 1\nAssistant B: 4"

    backend = Scripted(script)
    its = items(2) + [JudgeItem.pair("Question 0?", "GOOD too", "BAD too")]  # shares a question: one branch
    verdicts = make_judge("bsm_eval").judge(its, backend)
    assert backend.batches == [
        2,
        3 * 2 * 2,
    ]  # branch per distinct question; solve per item x order x criterion
    v = verdicts[0]
    assert v.ok and v.winner == "A" and v.order_winners == ["A", "A"]
    assert v.scores["criteria"] == ["Accuracy: correct facts.", "Clarity: easy to follow."]
    assert v.scores["AB"]["sum_a"] == 5 and v.scores["AB"]["sum_b"] == 2
    assert v.scores["BA"]["sum_a"] == 1 and v.scores["BA"]["sum_b"] == 4  # as shown: GOOD was Assistant B
    assert len(v.raw) == 1 + 2 * 2


def test_bsm_eval_disagreeing_orders_and_fallback_criterion():
    def script(text: str) -> str:
        if "evaluation plan" in text:
            return "Criteria:"  # a header and nothing else: no criterion
        return "Assistant A: 4\nAssistant B: 3"  # always prefers the first shown

    (v,) = make_judge("bsm_eval").judge(items(1), Scripted(script))
    assert v.ok and v.winner == "inconsistent" and v.outcome == "tie"
    assert v.scores["criteria"] == [FALLBACK_CRITERION] and "generic criterion" in v.notes[0]
    (v,) = make_judge("bsm_eval").judge(
        items(1), Scripted(lambda t: "1. Depth" if "evaluation plan" in t else "?")
    )
    assert not v.ok and v.winner is None and v.order_winners == [None, None] and "order AB" in v.error


def test_logprob_averages_both_orders_in_one_batch():
    def probs(text: str) -> dict:
        return {"A": 0.9, "B": 0.1} if first_shown(text).startswith("GOOD") else {"A": 0.7, "B": 0.3}

    backend = Scripted(lambda t: "", probs)
    verdicts = make_judge("logprob", {"variant": "pair"}).judge(items(4), backend)
    assert backend.batches == [8]
    v = verdicts[0]
    # P(A better) = (P("A") with A first + P("B") with A second) / 2 = (0.9 + 0.3) / 2
    assert v.prob_a == pytest.approx(0.6) and v.winner == "A" and v.ok
    assert v.order_winners == ["A", "B"]  # each order alone picked the first-shown answer
    assert p_a_better({"A": 0.5, "B": 0.5}, {"A": 0.5, "B": 0.5}) == 0.5
    assert winner_from_prob(0.52, 0.05) == "tie" and winner_from_prob(0.2, 0.05) == "B"


def test_logprob_needs_choice_probs():
    backend = Scripted(lambda t: "")
    backend.supports_choice_probs = False
    with pytest.raises(InputError, match="next-token probabilities"):
        make_judge("logprob", {"variant": "pair"}).judge(items(1), backend)


def test_logprob_pointwise_shows_each_answer_alone():
    def probs(text: str) -> dict:
        answer = text.split("[The Start of Assistant's Answer]\n")[1].split("\n")[0]
        return {"Yes": 0.8, "No": 0.2} if answer.startswith("GOOD") else {"Yes": 0.4, "No": 0.6}

    backend = Scripted(lambda t: "", probs)
    judge = make_judge("logprob", {"variant": "pointwise", "tie_margin": 0.1})
    verdicts = judge.judge(items(3), backend)
    assert backend.batches == [6]  # 3 items x 2 answers, one call
    v = verdicts[0]
    # P(A better) = pA (1 - pB) / (pA (1 - pB) + pB (1 - pA)) = 0.48 / (0.48 + 0.08)
    assert v.ok and v.winner == "A" and v.prob_a == pytest.approx(0.48 / 0.56)
    assert v.orders == [] and v.order_winners == [] and v.scores["p_yes"] == {"A": 0.8, "B": 0.4}
    assert p_a_better_pointwise(0.3, 0.3) == 0.5 and p_a_better_pointwise(0.0, 0.0) == 0.5
    assert p_a_better_pointwise(1.0, 0.0) == 1.0
    # the variant is in the config (and its template in the hash) only when it is not "pair"
    pair = make_judge("logprob", {"variant": "pair"})
    assert "variant" not in pair.config_dict() and judge.config_dict()["variant"] == "pointwise"
    assert pair.config_hash("m") != make_judge("logprob", {"variant": "pointwise"}).config_hash("m")
    with pytest.raises(InputError, match="variant"):
        make_judge("logprob", {"variant": "sideways"})


def test_logprob_pmi_scores_each_answer_after_the_question_and_after_n_a():
    class Scores(Scripted):
        supports_sequence_logprob = True

        def __init__(self) -> None:
            super().__init__(lambda t: "")
            self.sent: list[tuple[str, str]] = []

        def sequence_logprob(self, conversations, completions):
            self.batches.append(len(conversations))
            self.sent += [(c[-1]["content"], a) for c, a in zip(conversations, completions, strict=True)]
            # the question raises GOOD by 10 nats and BAD by 1
            return [(-5.0 if q != "N/A" else -15.0) if a.startswith("GOOD") else (-9.0 if q != "N/A" else -10.0)
                    for q, a in zip([c[-1]["content"] for c in conversations], completions, strict=True)]  # fmt: skip

    backend = Scores()
    (v,) = make_judge("logprob", {"variant": "pmi"}).judge(items(1), backend)
    assert backend.batches == [4]  # 2 answers x (question, "N/A"), one call
    assert backend.sent == [("Question 0?", "GOOD answer"), ("N/A", "GOOD answer"), ("Question 0?", "BAD answer"),
                            ("N/A", "BAD answer")]  # fmt: skip
    pmi_a, pmi_b = 10 / len("GOOD answer+"), 1 / len("BAD answer+")
    assert v.scores["pmi_per_char"] == pytest.approx({"A": pmi_a, "B": pmi_b})
    assert v.ok and v.winner == "A" and v.prob_a == pytest.approx(1 / (1 + math.exp(-(pmi_a - pmi_b))))
    assert v.orders == [] and v.order_winners == []
    no_scores = Scripted(lambda t: "", lambda t: {"A": 0.5, "B": 0.5})
    with pytest.raises(InputError, match="log-probability"):
        make_judge("logprob", {"variant": "pmi"}).judge(items(1), no_scores)


def test_additive_averages_samples_and_counts_failures():
    outputs = iter(["Score: 4", "no idea", "Score: 2", "nothing", "nope", "still nothing"])
    backend = Scripted(lambda t: next(outputs))
    its = [
        JudgeItem.single("Q?", Candidate("answer", model="judge-model")),
        JudgeItem.single("Q2?", "answer 2"),
    ]
    v1, v2 = make_judge("additive", {"n": 3}).judge(its, backend)
    assert backend.batches == [6]
    assert v1.ok and v1.rating == pytest.approx(3.0) and v1.self_judge and v1.mode == "single"
    assert v1.scores == {"samples": [4.0, None, 2.0], "failed_samples": 1} and v1.notes
    assert not v2.ok and v2.rating is None and v2.raw == ["nothing", "nope", "still nothing"]
    assert v2.scores["failed_samples"] == 3 and "Score" in v2.error


def test_additive_prompt_is_the_published_one():
    seen = []
    make_judge("additive", {"n": 1, "temperature": 0}).judge(
        [JudgeItem.single("What is 2+2?", "4")], Scripted(lambda t: seen.append(t) or "Score: 5")
    )
    assert seen[0].startswith("Review the user's question and the corresponding response using the additive")
    assert "User: What is 2+2?\n<response>4</response>" in seen[0]
    assert seen[0].endswith("we'll systematically attribute points based on the outlined criteria.")


def test_additive_logprob_mode_prefills_score_and_takes_the_expectation():
    seen: list[list[dict]] = []

    class Probs(Scripted):
        def choice_probs(self, conversations, choices):
            self.batches.append(len(conversations))
            seen.extend(conversations)
            assert list(choices) == ["0", "1", "2", "3", "4", "5"]
            return [{"0": 0.0, "1": 0.0, "2": 0.0, "3": 0.5, "4": 0.25, "5": 0.25} for _ in conversations]

    backend = Probs(lambda t: pytest.fail("log-prob mode must not generate"))
    its = [JudgeItem.single("What is 2+2?", "4"), JudgeItem.single("Q2?", "answer 2")]
    verdicts = make_judge("additive", {"score_mode": "logprob"}).judge(its, backend)
    assert backend.batches == [2]  # every item in one choice_probs call, no n samples
    user_msg, prefill = seen[0]
    assert user_msg["role"] == "user" and prefill == {"role": "assistant", "content": "Score: "}
    assert user_msg["content"].startswith("Review the user's question and the corresponding response")
    assert "User: What is 2+2?\n<response>4</response>" in user_msg["content"]
    for v in verdicts:
        assert v.ok and v.rating == pytest.approx(3 * 0.5 + 4 * 0.25 + 5 * 0.25)
        assert v.scores["reading"] == "logprob" and v.scores["argmax"] == 3
        assert json.loads(v.raw[0])["3"] == 0.5 and "log-prob" in v.notes[0]
    backend.supports_choice_probs = False
    with pytest.raises(InputError, match="next-token probabilities"):
        make_judge("additive", {"score_mode": "logprob"}).judge(its, backend)
    with pytest.raises(InputError, match="score_mode"):
        make_judge("additive", {"score_mode": "vibes"})


def test_additive_score_mode_is_in_the_hash_and_text_hashes_are_unchanged():
    text, lp = make_judge("additive"), make_judge("additive", {"score_mode": "logprob"})
    assert text.config_hash("m") != lp.config_hash("m")
    assert lp.config_dict()["score_mode"] == "logprob" and "score_mode" not in text.config_dict()
    old = {"judge": "additive", "judge_model": "m", "prompts": {"self_rewarding_additive": load_prompt(
        "self_rewarding_additive")}, "config": {"max_new_tokens": 256, "temperature": 0.7, "top_p": 0.9,
        "seed": 0, "n": 3}}  # fmt: skip
    assert text.config_hash("m") == hashlib.sha256(json.dumps(old, sort_keys=True).encode()).hexdigest()[:16]


def test_configs_registry_and_hash():
    assert {"additive", "bsm_eval", "logprob", "pairwise", "single"} <= set(JUDGES.names())
    j = make_judge("pairwise", {"max_new_tokens": 64})
    assert j.config_dict()["max_new_tokens"] == 64
    h = j.config_hash("m")
    assert h == make_judge("pairwise", {"max_new_tokens": 64}).config_hash("m")
    assert h != make_judge("pairwise", {"max_new_tokens": 65}).config_hash("m")
    assert h != j.config_hash("other-model")
    with pytest.raises(InputError, match="unknown judge"):
        make_judge("nope")
    with pytest.raises(InputError, match="no setting"):
        make_judge("pairwise", {"colour": "red"})
    with pytest.raises(InputError, match="identical"):
        make_judge("additive", {"n": 3, "temperature": 0})
    with pytest.raises(InputError):
        make_judge("pairwise", {"max_new_tokens": 0})
    with pytest.raises(InputError, match="2 answer"):
        make_judge("pairwise").judge([JudgeItem.single("q", "a")], Scripted(lambda t: ""))


def test_verdict_round_trips_through_json():
    (v,) = make_judge("pairwise").judge(items(1), Scripted(lambda t: "[[C]]"))
    again = Verdict.from_dict(json.loads(json.dumps(v.to_dict())))
    assert again == v and again.winner == "tie"


# -- the real default model --------------------------------------------------------------------------------------

QUESTION = "What is the capital of France?"
REAL_ITEMS = [
    JudgeItem.pair(
        QUESTION,
        Candidate("The capital of France is Paris.", model="smollm2-135m", strategy="system1"),
        Candidate("I like turtles.", model="other", strategy="cot"),
        key="c1",
    ),
    JudgeItem.pair(
        "Name a primary colour.", "Red.", "Blue, like red and yellow, is a primary colour.", key="c2"
    ),
]


def check_verdicts(verdicts: list[Verdict], n: int, judge: str) -> None:
    assert len(verdicts) == n
    for v in verdicts:
        assert v.judge == judge and v.judge_model == "smollm2-135m" and v.raw
        assert v.ok == (v.winner is not None or v.rating is not None)
        assert v.ok or v.error  # a failed verdict says why and keeps its raw text
        json.dumps(v.to_dict())
    assert verdicts[0].self_judge and not verdicts[-1].self_judge


SWAP = {"A": "B", "B": "A", "tie": "tie", "inconsistent": "inconsistent", None: None}


@pytest.mark.slow
def test_real_pairwise(backend):
    """Whatever the model writes, the verdict is what its two outputs say, read in the caller's labels; and the
    same pair with its answers swapped (greedy: the same two prompts) gives the mirrored verdict."""
    first, second = REAL_ITEMS[0].answers
    swapped = JudgeItem.pair(QUESTION, second, first, key="c1-swapped")
    verdicts = make_judge("pairwise", {"max_new_tokens": 48}).judge([*REAL_ITEMS, swapped], backend)
    check_verdicts(verdicts[:2], 2, "pairwise")
    for v in verdicts:
        picks = [parse_pairwise(text) for text in v.raw]
        assert len(v.raw) == 2 and v.scores["picks"] == dict(zip(("AB", "BA"), picks, strict=True))
        assert v.order_winners == [to_caller_label(p, o) for p, o in zip(picks, ("AB", "BA"), strict=True)]
        assert v.winner == combine_orders(v.order_winners) and v.ok == (v.winner is not None)
    c1, again = verdicts[0], verdicts[2]
    assert (
        again.raw == c1.raw[::-1]
    )  # order AB of one is order BA of the other: the same prompt, the same text
    assert again.winner == SWAP[c1.winner]


@pytest.mark.slow
def test_real_bsm_eval(backend):
    cfg = {"max_criteria": 2, "branch_max_new_tokens": 48, "max_new_tokens": 32}
    verdicts = make_judge("bsm_eval", cfg).judge(REAL_ITEMS, backend)
    check_verdicts(verdicts, 2, "bsm_eval")
    for v in verdicts:
        assert 1 <= len(v.scores["criteria"]) <= 2
        assert len(v.raw) == 1 + 2 * len(v.scores["criteria"])


@pytest.mark.slow
def test_real_additive(backend):
    its = [JudgeItem.single(it.question, it.answers[0], key=it.key) for it in REAL_ITEMS]
    verdicts = make_judge("additive", {"n": 2, "max_new_tokens": 48}).judge(its, backend)
    check_verdicts(verdicts, 2, "additive")
    for v in verdicts:
        assert len(v.raw) == 2 and v.scores["failed_samples"] in (0, 1, 2)
        assert v.rating is None or 0 <= v.rating <= 5


@pytest.mark.slow
@pytest.mark.parametrize("tokens", [64, 112])
def test_real_additive_structured_scores_every_sample_within_its_budget(backend, tokens):
    """Free text, the default model never writes 'Score: N'; under the schema, whose justification is bounded by
    the token budget (a fixed 200 characters was cut before the score at 64 tokens), every sample has one."""
    its = [JudgeItem.single(q, a) for q, a in (("What is 63 + 8?", "63 + 8 = 71."),
                                                ("What is 9 + 7?", "9 + 7 is 6, which is 9 points."))]  # fmt: skip
    cfg = {"n": 2, "max_new_tokens": tokens, "structured": True}
    verdicts = make_judge("additive", cfg).judge(its, backend)
    for v in verdicts:
        assert v.ok and v.scores["failed_samples"] == 0 and None not in v.scores["samples"]
        assert all(json.loads(raw)["score"] in range(6) for raw in v.raw)  # the JSON closed
        assert all(len(json.loads(raw)["justification"]) <= explanation_cap(tokens) for raw in v.raw)


@pytest.mark.slow
def test_real_logprob_judge_prefers_the_right_answer_in_both_orders(backend):
    """The default log-prob judge (the pmi variant since #15) prefers the right answer whichever is shown first."""
    paris, turtles = "The capital of France is Paris.", "I like turtles."
    first, second = make_judge("logprob").judge(
        [JudgeItem.pair(QUESTION, paris, turtles), JudgeItem.pair(QUESTION, turtles, paris)], backend
    )
    assert (first.winner, second.winner) == ("A", "B"), (first.prob_a, second.prob_a, first.scores)


@pytest.mark.slow
def test_real_logprob_pair_variant_answers_whatever_is_shown_first(backend):
    """Why pair is not the default: SmolLM2-135M says 'A' whoever is shown first (P('A') 0.90 in both orders on
    the preference set, all 241 pairs flipping under the swap), so both orders' picks disagree: a swap flip."""
    paris, turtles = "The capital of France is Paris.", "I like turtles."
    (v,) = make_judge("logprob", {"variant": "pair"}).judge(
        [JudgeItem.pair(QUESTION, paris, turtles)], backend
    )
    assert v.scores["picks"] == {"AB": "A", "BA": "A"}, v.scores
    assert v.order_winners == ["A", "B"] and abs(v.prob_a - 0.5) < 0.1


@pytest.mark.slow
def test_real_logprob_pmi_prefers_the_right_answer_in_both_orders(backend):
    """The pmi variant (how much the question raises each answer's log-probability) has no position at all."""
    paris, turtles = "The capital of France is Paris.", "I like turtles."
    first, second = make_judge("logprob", {"variant": "pmi"}).judge(
        [JudgeItem.pair(QUESTION, paris, turtles), JudgeItem.pair(QUESTION, turtles, paris)], backend
    )
    assert (first.winner, second.winner) == ("A", "B"), (first.prob_a, second.prob_a, first.scores)
    assert first.prob_a == pytest.approx(1 - second.prob_a, abs=1e-3)  # the same scores, mirrored
    assert first.scores["pmi_per_char"]["A"] > first.scores["pmi_per_char"]["B"]
    assert (
        first.orders == []
        and len(first.raw) == 4
        and [s["name"] for s in first.trace["steps"]] == ["score"] * 4
    )


@pytest.mark.slow
def test_real_logprob_always_valid_and_batched_matches_one_at_a_time(backend):
    judge = make_judge("logprob", {"variant": "pair"})
    batched = judge.judge(REAL_ITEMS, backend)
    check_verdicts(batched, 2, "logprob")
    for v in batched:
        assert v.ok and 0 <= v.prob_a <= 1 and v.winner in ("A", "B", "tie")
        assert set(v.scores["probs"]) == {"AB", "BA"}
    alone = [judge.judge([it], backend)[0] for it in REAL_ITEMS]
    for b, a in zip(batched, alone, strict=True):
        assert b.prob_a == pytest.approx(a.prob_a, abs=0.05)  # bf16 padding noise only


@pytest.mark.slow
def test_real_additive_logprob_scores_every_item_in_one_call(backend):
    """SmolLM2-135M rarely writes a parsable 'Score: N'; read P(0..5) after 'Score: ' instead: always a score."""

    class Counting:  # a thin proxy around the real backend that counts choice_probs calls
        def __init__(self, inner):
            self.inner, self.calls = inner, []

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def choice_probs(self, conversations, choices):
            self.calls.append(len(conversations))
            return self.inner.choice_probs(conversations, choices)

    its = [
        JudgeItem.single("What is the capital of France?", Candidate("Paris.", model="smollm2-135m")),
        JudgeItem.single("What is the capital of France?", "I like turtles."),
        JudgeItem.single("What is 2+2?", "2+2 equals 4."),
        JudgeItem.single("Name a primary colour.", "Red is a primary colour."),
    ]
    proxy = Counting(backend)
    verdicts = make_judge("additive", {"score_mode": "logprob"}).judge(its, proxy)
    assert proxy.calls == [4]
    check_verdicts(verdicts, 4, "additive")
    for v in verdicts:
        assert v.ok and 0 <= v.rating <= 5 and not v.error
        assert sum(v.scores["probs"].values()) == pytest.approx(1.0, abs=1e-4)
    assert len({round(v.rating, 4) for v in verdicts}) > 1  # a reading of the answer, not a constant
