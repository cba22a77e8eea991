"""Parsing of model output, on hand-written outputs covering each format and edge case. Never raises."""

from __future__ import annotations

import pytest

from studio.strategies.parsing import (
    json_field,
    json_salvage_strings,
    json_strings,
    normalize_answer,
    parse_answers,
    parse_json,
    parse_list,
    parse_qa_pairs,
    parse_sections,
    parse_verdict,
    split_cot,
)

S2A_DEFAULT = (
    ("Unbiased text context", "Unbiased context", "Context"),
    ("Question/Query", "Question", "Query"),
)
S2A_RELEVANCE = (
    ("Context text related to the question", "Related context", "Context"),
    ("Detailed question", "Question"),
)


# -- lists ---------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "1. Who wrote Hamlet?\n2. When was it written?\n3. Where was it first staged?",
        "1) Who wrote Hamlet?\n2) When was it written?\n3) Where was it first staged?",
        "(1) Who wrote Hamlet?\n(2) When was it written?\n(3) Where was it first staged?",
        "- Who wrote Hamlet?\n- When was it written?\n- Where was it first staged?",
        "* Who wrote Hamlet?\n* When was it written?\n* Where was it first staged?",
        "• Who wrote Hamlet?\n• When was it written?\n• Where was it first staged?",
        "Q1: Who wrote Hamlet?\nQ2: When was it written?\nQ3: Where was it first staged?",
        "Question 1: Who wrote Hamlet?\nQuestion 2: When was it written?\nQuestion 3: Where was it first staged?",
        "Who wrote Hamlet?\nWhen was it written?\nWhere was it first staged?",
        "Who wrote Hamlet? When was it written? Where was it first staged?",
        "  1.   Who wrote Hamlet?  \n\n\n  2. When was it written?\n3.\tWhere was it first staged?\n",
    ],
)
def test_list_formats(text: str) -> None:
    assert parse_list(text) == ["Who wrote Hamlet?", "When was it written?", "Where was it first staged?"]


def test_verification_questions_header_is_stripped() -> None:
    for text in (
        "Verification questions:\n1. Who wrote Hamlet?\n2. When was it written?",
        "**Verification Questions:**\n- Who wrote Hamlet?\n- When was it written?",
        "Here are the verification questions:\n\n1. Who wrote Hamlet?\n2. When was it written?",
        "Verification questions: 1. Who wrote Hamlet?\n2. When was it written?",
    ):
        assert parse_list(text) == ["Who wrote Hamlet?", "When was it written?"], text


def test_comma_separated_single_line() -> None:
    assert parse_list("history, culture; economy, and politics") == [
        "history",
        "culture",
        "economy",
        "politics",
    ]
    assert parse_list("Sub-questions: causes, effects") == ["causes", "effects"]


def test_one_question_with_commas_is_not_split() -> None:
    assert parse_list("In which city, and in which year, was the treaty signed?") == [
        "In which city, and in which year, was the treaty signed?"
    ]


def test_commas_are_kept_when_splitting_is_off() -> None:
    assert parse_list("Paris, the capital, is large.", split_commas=False) == [
        "Paris, the capital, is large."
    ]


def test_dedupe_ignores_case_and_punctuation() -> None:
    text = "1. Who wrote Hamlet?\n2. who wrote hamlet\n3. Who wrote *Hamlet*?\n4. When was it written?"
    assert parse_list(text) == ["Who wrote Hamlet?", "When was it written?"]


def test_cap() -> None:
    text = "\n".join(f"{i}. Question number {i}?" for i in range(1, 10))
    assert parse_list(text, cap=5) == [f"Question number {i}?" for i in range(1, 6)]


def test_commentary_around_a_marked_list_is_ignored() -> None:
    text = (
        "Sure! Here is what I would check.\n1. Who wrote Hamlet?\n2. When was it written?\nI hope this helps."
    )
    assert parse_list(text) == ["Who wrote Hamlet?", "When was it written?"]


def test_marked_items_ending_in_colon_are_items() -> None:
    assert parse_list("1. History:\n2. Economy:") == ["History:", "Economy:"]


def test_bold_and_quotes_are_stripped() -> None:
    assert parse_list('1. **Who wrote Hamlet?**\n2. "When was it written?"') == [
        "Who wrote Hamlet?",
        "When was it written?",
    ]


@pytest.mark.parametrize("text", ["", "   \n\n  ", "Verification questions:", "1.\n2.\n-", "...", None])
def test_empty_and_garbage_give_no_items(text: str | None) -> None:
    assert parse_list(text) == []  # type: ignore[arg-type]


def test_numbers_inside_text_are_not_markers() -> None:
    assert parse_list("1.5 million people live there.\n2023 was a good year.", split_commas=False) == [
        "1.5 million people live there.",
        "2023 was a good year.",
    ]


# -- CoVe joint: question/answer pairs --------------------------------------------------------------------------------
def test_qa_pairs_labelled() -> None:
    text = "Q: Who wrote Hamlet?\nA: Shakespeare.\nQ: When?\nA: Around 1600."
    assert parse_qa_pairs(text) == [("Who wrote Hamlet?", "Shakespeare."), ("When?", "Around 1600.")]


def test_qa_pairs_long_labels_numbering_and_header() -> None:
    text = "Verification questions and answers:\n1. Question: Who wrote Hamlet?\n   Answer: Shakespeare.\n2. Question: When?\n   Answer: 1600."
    assert parse_qa_pairs(text) == [("Who wrote Hamlet?", "Shakespeare."), ("When?", "1600.")]


def test_qa_pairs_answer_on_the_same_line() -> None:
    text = "1. Who wrote Hamlet? Shakespeare.\n2. When was it written? A: About 1600."
    assert parse_qa_pairs(text) == [
        ("Who wrote Hamlet?", "Shakespeare."),
        ("When was it written?", "About 1600."),
    ]


def test_qa_pairs_unlabelled_answer_line_missing_answer_dedupe_and_cap() -> None:
    text = "Q: Who wrote Hamlet?\nShakespeare wrote it.\nQ: Who wrote Hamlet?\nA: Marlowe.\nQ: What is the capital"
    assert parse_qa_pairs(text) == [
        ("Who wrote Hamlet?", "Shakespeare wrote it."),
        ("What is the capital", ""),
    ]
    assert parse_qa_pairs(text, cap=1) == [("Who wrote Hamlet?", "Shakespeare wrote it.")]


def test_qa_pairs_answer_starting_with_a_is_not_a_label() -> None:
    assert parse_qa_pairs("Q: Which list?\nA-list actors.") == [("Which list?", "A-list actors.")]


@pytest.mark.parametrize("text", ["", "No questions here.", "A: an answer without a question"])
def test_qa_pairs_nothing(text: str) -> None:
    assert parse_qa_pairs(text) == []


# -- CoVe two_step: numbered answers ------------------------------------------------------------------------------------
def test_answers_numbered() -> None:
    assert parse_answers("1. Shakespeare.\n2. About 1600, in London.", 2) == (
        ["Shakespeare.", "About 1600, in London."],
        True,
    )


def test_answers_fewer_than_questions_are_padded() -> None:
    assert parse_answers("1. Shakespeare.", 3) == (["Shakespeare.", "", ""], False)


def test_answers_more_than_questions_are_cut() -> None:
    assert parse_answers("1. a\n2. b\n3. c", 2) == (["a", "b"], False)


def test_answers_that_repeat_their_questions() -> None:
    text = "Q: Who wrote Hamlet?\nA: Shakespeare.\nQ: When?\nA: 1600."
    assert parse_answers(text, 2) == (["Shakespeare.", "1600."], True)


def test_answers_single_question_takes_the_whole_text() -> None:
    assert parse_answers("Answer: Shakespeare wrote it,\naround 1600.", 1) == (
        ["Shakespeare wrote it,\naround 1600."],
        True,
    )
    assert parse_answers("1. Shakespeare.", 1) == (["Shakespeare."], True)
    assert parse_answers("", 1) == ([""], False)


# -- CoVe factor_revise: verdicts ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "verdict", "rest"),
    [
        ("CONSISTENT", "CONSISTENT", ""),
        ("consistent.", "CONSISTENT", ""),
        ("INCONSISTENT: the year is 1601, not 1600.", "INCONSISTENT", "the year is 1601, not 1600"),
        (
            "PARTIALLY CONSISTENT - the author is right, the year is not.",
            "PARTIALLY CONSISTENT",
            "the author is right, the year is not",
        ),
        ("Partially-consistent", "PARTIALLY CONSISTENT", ""),
        ("**Verdict:** NOT CONSISTENT", "INCONSISTENT", ""),
        (
            "The answer is inconsistent with the response.",
            "INCONSISTENT",
            "The answer is inconsistent with the response.",
        ),
    ],
)
def test_verdicts(text: str, verdict: str, rest: str) -> None:
    assert parse_verdict(text) == (verdict, rest)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "The capital of Australia is Canberra.",
        "It is consistently right.",
        "I cannot say whether it is CONSISTENT, INCONSISTENT or PARTIALLY CONSISTENT.",  # an echo of the options
    ],
)
def test_no_or_ambiguous_verdict(text: str) -> None:
    assert parse_verdict(text)[0] is None


def test_opening_verdict_wins_over_later_mentions() -> None:
    assert parse_verdict("CONSISTENT\nIt is not INCONSISTENT.")[0] == "CONSISTENT"


# -- Chain-of-Thought -------------------------------------------------------------------------------------------------------
def test_cot_marker() -> None:
    s = split_cot("Hamlet is a play.\nIts author is Shakespeare.\nAnswer: Shakespeare")
    assert (s.reasoning, s.final, s.marker_found) == (
        "Hamlet is a play.\nIts author is Shakespeare.",
        "Shakespeare",
        True,
    )


@pytest.mark.parametrize(
    "text",
    ["x\nFinal answer: 42", "x\n**Answer:** 42", "x\nANSWER : 42", "x\nThe answer: 42", "x\nanswer:42"],
)
def test_cot_marker_forms(text: str) -> None:
    s = split_cot(text)
    assert (s.final, s.marker_found) == ("42", True)


def test_cot_last_marker_wins() -> None:
    s = split_cot("Answer: maybe 41?\nNo, recount.\nAnswer: 42")
    assert s.final == "42" and s.reasoning.endswith("No, recount.")


def test_cot_no_marker_takes_the_last_line() -> None:
    s = split_cot("Step one.\nStep two.\nSo it is 42.\n\n")
    assert (s.reasoning, s.final, s.marker_found) == ("Step one.\nStep two.", "So it is 42.", False)


def test_cot_empty_marker_falls_back_to_last_line() -> None:
    s = split_cot("Step one.\nThe result is 42.\nAnswer:")
    assert s.marker_found is False and s.final == "Answer:"


def test_cot_empty() -> None:
    assert split_cot("") == split_cot("  \n") and split_cot("").final == ""


# -- S2A sections -----------------------------------------------------------------------------------------------------------
def test_sections_published_labels() -> None:
    text = (
        "Unbiased text context (includes all content except user's bias): Canberra became the capital in 1913.\n\n"
        "Question/Query (does not include user bias/preference): What is the capital of Australia?"
    )
    s = parse_sections(text, *S2A_DEFAULT)
    assert s.context == "Canberra became the capital in 1913."
    assert s.query == "What is the capital of Australia?"
    assert s.found_context and s.found_query


def test_sections_bold_short_labels_and_own_lines() -> None:
    text = "**Unbiased text context:**\nCanberra became the capital in 1913.\n\n**Question/Query:**\nWhat is the capital?"
    s = parse_sections(text, *S2A_DEFAULT)
    assert (s.context, s.query) == ("Canberra became the capital in 1913.", "What is the capital?")


def test_sections_in_reverse_order_and_on_one_line() -> None:
    s = parse_sections("Question/Query: What is 2+2? Unbiased text context: Numbers.", *S2A_DEFAULT)
    assert (s.context, s.query) == ("Numbers.", "What is 2+2?")


def test_sections_alias_labels_must_start_a_line() -> None:
    s = parse_sections("Context: A tree.\nQuestion: How tall is it?", *S2A_DEFAULT)
    assert (s.context, s.query) == ("A tree.", "How tall is it?")
    s = parse_sections("The question: how tall is the tree, in context: unclear.", *S2A_DEFAULT)
    assert not (s.found_context or s.found_query)


def test_sections_echoed_instruction_then_real_sections() -> None:
    text = (
        'Separate this into two categories labeled with "Unbiased text context (includes all content except '
        'user\'s bias):" and "Question/Query (does not include user bias/preference):".\n'
        "Unbiased text context (includes all content except user's bias): A tree is 30 m tall.\n"
        "Question/Query (does not include user bias/preference): How tall is the tree?"
    )
    s = parse_sections(text, *S2A_DEFAULT)
    assert (s.context, s.query) == ("A tree is 30 m tall.", "How tall is the tree?")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Canberra is the capital.", ("", "", False, False)),
        (
            "Some context first.\nQuestion/Query: What is it?",
            ("Some context first.", "What is it?", False, True),
        ),
        (
            "Unbiased text context: Only context, and a question?",
            ("Only context, and a question?", "", True, False),
        ),
    ],
    ids=["no-labels", "query-only", "context-only"],
)
def test_sections_missing_labels(text: str, expected: tuple) -> None:
    s = parse_sections(text, *S2A_DEFAULT)
    assert (s.context, s.query, s.found_context, s.found_query) == expected


def test_sections_relevance_labels() -> None:
    text = (
        "Context text related to the question (includes all content except unrelated sentences): "
        "Mary has 3 apples and buys 2 more.\nDetailed question: How many apples does Mary have?"
    )
    s = parse_sections(text, *S2A_RELEVANCE)
    assert (s.context, s.query) == ("Mary has 3 apples and buys 2 more.", "How many apples does Mary have?")


@pytest.mark.parametrize(
    "text", ["", None, "::::", "Question/Query:", "Unbiased text context:\n\nQuestion/Query:"]
)
def test_sections_never_raise(text: str | None) -> None:
    s = parse_sections(text, *S2A_DEFAULT)  # type: ignore[arg-type]
    assert isinstance(s.context, str) and isinstance(s.query, str)


# -- structured outputs and votes ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "value"),
    [
        ('{"questions": ["Who?"]}', {"questions": ["Who?"]}),
        ('```json\n{"a": 1}\n```', {"a": 1}),
        ("```\n[1, 2]\n```", [1, 2]),
        ('Here it is: {"a": {"b": 2}} and more text', {"a": {"b": 2}}),
        ('{"a": 1', None),
        ("no json at all", None),
        ("", None),
    ],
)
def test_parse_json_is_tolerant(text: str, value: object) -> None:
    assert parse_json(text) == value


def test_json_fields_and_strings() -> None:
    obj = {"Sub-Questions": [" a ", {"text": "b"}, 3, "", None]}
    assert json_field(obj, "sub_questions") == obj["Sub-Questions"]  # case and separator blind
    assert json_strings(json_field(obj, "sub_questions")) == ["a", "b", "3"]
    assert json_field(["not", "an", "object"], "x") is None and json_strings("text") is None
    assert json_salvage_strings('{"questions": ["Who is X?", "Wh') == ["Who is X?"]


@pytest.mark.parametrize(
    ("answer", "vote"),
    [
        ("Answer: 1,500", "1500"),
        ("The answer is 12.0 apples", "12"),
        ("12 + 7 = 19.", "19"),
        ("It is 2.5 metres", "2.5"),
        ("The Eiffel Tower!", "eiffel tower"),
        ("  ", ""),
    ],
)
def test_answers_normalise_to_votes(answer: str, vote: str) -> None:
    assert normalize_answer(answer) == vote
