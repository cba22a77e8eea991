"""Game of 24: the exact solver, the seeded generator and its shipped split, and the verifier metric."""

from __future__ import annotations

import itertools
import json
from collections import Counter

import pytest

from studio.errors import InputError
from studio.eval import load_dataset
from studio.eval.data import item_from_row
from studio.eval.game24 import (
    DATASET,
    INSTRUCTION,
    check_expression,
    extract_expressions,
    generate,
    solvable,
    solve,
    verify,
)
from studio.eval.metrics import STATS, TASK_STATS, score_item


# -- solver -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "numbers", [(4, 4, 6, 8), (1, 4, 8, 8), (5, 5, 5, 9), (4, 9, 10, 13), (3, 3, 8, 8), (1, 5, 5, 5)]
)
def test_solver_finds_a_solution_that_the_verifier_accepts(numbers) -> None:
    found = solve(numbers)
    assert found is not None
    assert check_expression(found, numbers).ok, found


def test_solver_needs_fractions() -> None:
    # 8 / (3 - 8 / 3) = 24 and 5 * (5 - 1 / 5) = 24 only work with exact fractions
    assert solvable((3, 3, 8, 8)) and solvable((1, 5, 5, 5))


@pytest.mark.parametrize("numbers", [(1, 1, 1, 1), (1, 1, 1, 2), (13, 13, 13, 13), (1, 1, 2, 2)])
def test_solver_rejects_unsolvable_puzzles(numbers) -> None:
    assert solve(numbers) is None


def test_solvable_count_over_every_puzzle_is_the_known_1362() -> None:
    puzzles = list(itertools.combinations_with_replacement(range(1, 14), 4))
    assert len(puzzles) == 1820
    assert sum(solvable(p) for p in puzzles) == 1362


# -- generator and the shipped set --------------------------------------------------------------------------------
def test_generator_is_seeded_distinct_solvable_and_split() -> None:
    a, b = generate(20, 10, seed=7), generate(20, 10, seed=7)
    assert a == b and generate(20, 10, seed=8) != a
    assert len({p.numbers for p in a}) == 30
    assert [p.split for p in a] == ["train"] * 20 + ["test"] * 10
    assert all(1 <= n <= 13 for p in a for n in p.numbers) and all(solvable(p.numbers) for p in a)


def test_shipped_file_is_the_generator_output() -> None:
    rows = [json.loads(line) for line in DATASET.read_text().splitlines()]
    expected = generate()
    assert [tuple(r["numbers"]) for r in rows] == [p.numbers for p in expected]
    assert Counter(r["split"] for r in rows) == {"train": 500, "test": 200}
    assert rows[0]["question"] == f"{INSTRUCTION}\nInput: {' '.join(map(str, rows[0]['numbers']))}"


def test_shipped_sets_load_by_name_with_disjoint_splits() -> None:
    test, train = load_dataset("game24"), load_dataset("game24_train")
    assert len(test.items) == 200 and len(train.items) == 500
    assert test.task == train.task == "game24"
    assert not {tuple(i.meta["numbers"]) for i in test.items} & {
        tuple(i.meta["numbers"]) for i in train.items
    }
    assert len(load_dataset("game24", limit=10).items) == 10
    assert TASK_STATS["game24"] == ("game24",) and STATS["game24"].rate


def test_a_game24_item_needs_its_numbers() -> None:
    with pytest.raises(InputError, match="numbers"):
        item_from_row({"question": "Use 1 2 3 4 to obtain 24.", "task": "game24"}, "line 1")
    with pytest.raises(InputError, match="numbers"):
        item_from_row({"question": "q", "task": "game24", "numbers": ["1", "2"]}, "line 1")


# -- verifier -----------------------------------------------------------------------------------------------------
NUMS = [3, 4, 6, 8]


@pytest.mark.parametrize(
    "answer",
    [
        "(4 + 8) * (6 / 3)",
        "Answer: (4 + 8) * (6 / 3) = 24",
        "(4 + 8) * (6 / 3) = 24",
        "Steps:\n4 + 8 = 12 (left: 3 6 12)\n6 / 3 = 2 (left: 2 12)\nAnswer: (6 / 3) * (4 + 8) = 24",
        "The answer is (8 + 4) × (6 ÷ 3) = 24.",
        "**Answer:** `(4+8)*(6/3)`",
        "24 = (4 + 8) * (6 / 3)",
        "I tried a few things.\n(4 + 8) * (6 / 3) = 24",
        "Answer: 6 / 3 * (4 + 8)",
        "(8 - 6) x 3 x 4",
    ],
)
def test_verifier_accepts_a_right_expression(answer: str) -> None:
    assert verify(answer, NUMS).ok, verify(answer, NUMS)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        ("(4 + 8) * (6 / 3) = 24", "uses"),  # right for 3 4 6 8, checked against other numbers below
        ("(4 + 4) * 3 = 24", "uses"),  # reuses a number, skips others
        ("8 * 3 = 24", "uses"),  # not every number
        ("(4 + 8) * (6 / 3) * 1 = 24", "uses"),  # an extra number
        ("(4 + 8) * (6 - 3) = 24", "equals 36"),  # not 24 (the "= 24" is a claim, not checked)
        ("8 / (4 - 4) + 3 * 6", "uses"),
        ("no idea", "no arithmetic"),
        ("", "no arithmetic"),
    ],
)
def test_verifier_rejects_wrong_answers(answer: str, reason: str) -> None:
    numbers = [1, 2, 3, 4] if answer.startswith("(4 + 8) * (6 / 3) =") else NUMS
    v = verify(answer, numbers)
    assert not v.ok and reason in v.reason, v


def test_verifier_handles_division_by_zero() -> None:
    v = check_expression("8 / (4 - 4) * 6", [4, 4, 6, 8])
    assert not v.ok and "division by zero" in v.reason
    assert check_expression("(8 - 4) * 6 / (4 / 4)", [4, 4, 4, 6, 8]).ok  # any count of numbers


@pytest.mark.parametrize(
    "attack",
    [
        "__import__('os').system('touch /tmp/pwned') + 3 + 4 + 6 + 8",
        "Answer: (lambda: 24)()",
        "3 ** 4 - 6 * 8",
        "-3 + 4 + 6 * 8 / 2",  # unary minus is not one of the four operations
        "[3, 4, 6, 8]",
        "3.0 * 8.0 * (6 - 4) / 2",
        "(" * 500 + "3" + ")" * 500,
        "9" * 5000 + " * 3 + 4 + 6 + 8",
        "True * 24 + 3 - 3 + 4 - 4",
    ],
)
def test_verifier_never_executes_or_accepts_non_arithmetic(attack: str, tmp_path) -> None:
    assert not verify(attack, NUMS).ok
    assert not check_expression(attack, NUMS).ok


def test_extract_expressions_reads_the_answer_line_first() -> None:
    assert extract_expressions("4 + 8 = 12 (left: 3 6 12)\nAnswer: (4 + 8) * (6 / 3) = 24") == [
        "(4 + 8) * (6 / 3)"
    ]
    assert extract_expressions("Answer:\n(4 + 8) * 2\nthanks") == ["(4 + 8) * 2"]
    assert extract_expressions("nothing here") == []


def test_score_item_scores_game24_items_only_by_the_verifier() -> None:
    item = item_from_row({"question": "q", "task": "game24", "numbers": NUMS, "solution": "x"}, "row")
    assert score_item(item, "Answer: (4 + 8) * (6 / 3) = 24") == {"game24": 1.0}
    assert score_item(item, "Answer: 24") == {"game24": 0.0}
    other = item_from_row({"question": "q", "answers": ["24"]}, "row")
    assert "game24" not in score_item(other, "(4 + 8) * (6 / 3)")
