"""Game of 24 (the Tree-of-Thoughts task, Yao et al. 2023, arXiv 2305.10601): an exact solver, a seeded puzzle
generator with a fixed train/test split, and the verifier behind the ``game24`` metric.

- :func:`solve` searches every order and operation with exact rational arithmetic (:class:`~fractions.Fraction`)
  and returns one solution, or None.
- :func:`generate` draws 4-number puzzles (numbers 1-13, with repeats) from a seeded RNG, keeps the distinct
  solvable ones, and splits them into train and test. ``python -m studio.eval.game24`` rewrites the shipped
  ``datasets/game24.jsonl`` from the defaults (:data:`SEED`, :data:`N_TRAIN`, :data:`N_TEST`).
- :func:`verify` reads an answer: it extracts the expression (:func:`extract_expressions`), checks that it uses
  each given number exactly once, and evaluates it exactly. Parsing is by :mod:`ast` with a whitelist (numbers,
  ``+ - * /``, parentheses): the text is never executed.
"""

from __future__ import annotations

import argparse
import ast
import json
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

TARGET = 24
#: the task instruction, verbatim from the ToT repo's prompts (princeton-nlp/tree-of-thought-llm)
INSTRUCTION = "Use numbers and basic arithmetic operations (+ - * /) to obtain 24."
SEED = 2305_10601  # the paper's arXiv id
N_TRAIN = 500
N_TEST = 200
LOW, HIGH = 1, 13  # the numbers of a puzzle, as on a deck of cards
DATASET = Path(__file__).parent / "datasets" / "game24.jsonl"
MAX_EXPRESSION_CHARS = 200  # a longer "expression" is not an answer (and bounds the parser's work)

_OPS = ("+", "-", "*", "/")


# -- solver -------------------------------------------------------------------------------------------------------
def solve(numbers: Sequence[int], target: int = TARGET) -> str | None:
    """One expression that uses every number exactly once and equals ``target``, or None if there is none."""
    if not numbers:
        return None
    start = tuple((Fraction(n), str(n)) for n in numbers)
    return _search(start, Fraction(target), set())


def _search(items: tuple[tuple[Fraction, str], ...], target: Fraction, dead: set) -> str | None:
    if len(items) == 1:
        return items[0][1] if items[0][0] == target else None
    key = tuple(sorted(v for v, _ in items))
    if key in dead:  # the same multiset of values failed before, whatever the expressions
        return None
    for i in range(len(items)):
        for j in range(len(items)):
            if i == j:
                continue
            (a, ea), (b, eb) = items[i], items[j]
            rest = tuple(x for k, x in enumerate(items) if k not in (i, j))
            for op in _OPS:
                if op in "+*" and i > j:  # commutative: one order is enough
                    continue
                if op == "/" and b == 0:
                    continue
                value = _apply(op, a, b)
                found = _search((*rest, (value, f"({ea} {op} {eb})")), target, dead)
                if found is not None:
                    return _strip_outer(found)
    dead.add(key)
    return None


def _apply(op: str, a: Fraction, b: Fraction) -> Fraction:
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    return a / b


def _strip_outer(expr: str) -> str:
    """ "((1 + 2) * 8)" -> "(1 + 2) * 8": drop one pair of parentheses around the whole expression."""
    if expr.startswith("(") and expr.endswith(")"):
        depth = 0
        for i, c in enumerate(expr):
            depth += c == "("
            depth -= c == ")"
            if depth == 0 and i < len(expr) - 1:
                return expr
        return expr[1:-1]
    return expr


def solvable(numbers: Sequence[int]) -> bool:
    return solve(numbers) is not None


# -- puzzles ------------------------------------------------------------------------------------------------------
def question(numbers: Sequence[int]) -> str:
    """The puzzle as the ToT paper's prompts pose it: the instruction, then ``Input: a b c d``."""
    return f"{INSTRUCTION}\nInput: {' '.join(str(n) for n in numbers)}"


@dataclass(frozen=True)
class Puzzle:
    numbers: tuple[int, ...]
    solution: str
    split: str

    def row(self, index: int) -> dict:
        return {
            "id": f"g24-{self.split}-{index:03d}",
            "question": question(self.numbers),
            "task": "game24",
            "numbers": list(self.numbers),
            "solution": f"{self.solution} = 24",
            "split": self.split,
        }


def generate(
    n_train: int = N_TRAIN, n_test: int = N_TEST, seed: int = SEED, low: int = LOW, high: int = HIGH
) -> list[Puzzle]:
    """``n_train + n_test`` distinct solvable puzzles (sorted numbers), drawn in order from ``random.Random(seed)``;
    the first ``n_train`` are train, the rest test. Unsolvable draws and repeats are skipped."""
    rng = random.Random(seed)
    total = n_train + n_test
    seen: set[tuple[int, ...]] = set()
    out: list[Puzzle] = []
    attempts = 0
    while len(out) < total:
        attempts += 1
        if attempts > 100 * total:
            raise ValueError(f"could not draw {total} distinct solvable puzzles from {low}..{high}")
        nums = tuple(sorted(rng.randint(low, high) for _ in range(4)))
        if nums in seen:
            continue
        seen.add(nums)
        found = solve(nums)
        if found is not None:
            out.append(Puzzle(nums, found, "train" if len(out) < n_train else "test"))
    return out


def write_dataset(path: Path = DATASET, **kwargs: int) -> list[Puzzle]:
    puzzles = generate(**kwargs)
    index: Counter[str] = Counter()
    lines = []
    for p in puzzles:
        index[p.split] += 1
        lines.append(json.dumps(p.row(index[p.split])))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return puzzles


# -- verifier -----------------------------------------------------------------------------------------------------
_MARKER = re.compile(r"(?:final\s+answer|answer)\s*[:：]", re.IGNORECASE)
_SYMBOLS = {"×": "*", "✕": "*", "·": "*", "÷": "/", "−": "-", "–": "-", "—": "-", "\\times": "*", "\\div": "/",
            "\\cdot": "*", "[": "(", "]": ")", "{": "(", "}": ")"}  # fmt: skip
# a run of expression characters: digits, operators, parentheses, spaces (and "." to reject decimals explicitly)
_RUN = re.compile(r"[\d\s+\-*/().]+")


def _normalise(line: str) -> str:
    for k, v in _SYMBOLS.items():
        line = line.replace(k, v)
    line = re.sub(r"(?<=[\d)])\s*[xX]\s*(?=[\d(])", " * ", line)  # "3 x 8", "(8 - 6) x 3"
    return line.replace("**", "").replace("`", "").replace("$", "")


def _candidates(line: str) -> list[str]:
    """The expression-like runs of one line, each side of an "=" separately ("(4 + 8) * 2 = 24" -> "(4 + 8) * 2")."""
    out = []
    for part in _normalise(line).split("="):
        for run in _RUN.findall(part):
            run = run.strip(" .")
            if re.search(r"\d", run) and re.search(r"[+\-*/]", run):
                out.append(run)
    return out


def extract_expressions(answer: str) -> list[str]:
    """The expressions an answer offers, most likely first: the line after the last "Answer:" marker, else the
    last line that holds an expression (the ToT repo reads the last line too). Empty when there is none."""
    text = answer or ""
    markers = list(_MARKER.finditer(text))
    if markers:
        after = text[markers[-1].end() :].strip().splitlines()
        found = _candidates(after[0]) if after else []
        if found:
            return found
    for line in reversed(text.splitlines()):
        found = _candidates(line)
        if found:
            return found
    return []


class _Invalid(ValueError):
    pass


def _numbers_in(node: ast.AST) -> list[int]:
    """The integer literals of a whitelisted expression tree; anything else is :class:`_Invalid`."""
    if isinstance(node, ast.Expression):
        return _numbers_in(node.body)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add | ast.Sub | ast.Mult | ast.Div):
        return _numbers_in(node.left) + _numbers_in(node.right)
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return [node.value]
    raise _Invalid(type(node).__name__)


def _value(node: ast.AST) -> Fraction:
    if isinstance(node, ast.Expression):
        return _value(node.body)
    if isinstance(node, ast.Constant):
        return Fraction(node.value)
    assert isinstance(node, ast.BinOp)  # _numbers_in has checked the tree
    a, b = _value(node.left), _value(node.right)
    if isinstance(node.op, ast.Div) and b == 0:
        raise _Invalid("division by zero")
    op = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}[type(node.op)]
    return _apply(op, a, b)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    expression: str  # the expression that was checked ("" if none was found)
    reason: str  # why it failed, or "" when ok


def check_expression(expression: str, numbers: Sequence[int], target: int = TARGET) -> Verdict:
    """Does ``expression`` use each of ``numbers`` exactly once (and no other number) and equal ``target``?"""
    expr = expression.strip()
    if not expr or len(expr) > MAX_EXPRESSION_CHARS:
        return Verdict(False, expr[:MAX_EXPRESSION_CHARS], "no expression" if not expr else "too long")
    try:
        tree = ast.parse(expr, mode="eval")
        used = _numbers_in(tree)
    except (SyntaxError, ValueError, RecursionError, MemoryError):
        return Verdict(False, expr, "not an arithmetic expression of whole numbers and + - * /")
    if Counter(used) != Counter(int(n) for n in numbers):
        got, want = " ".join(map(str, sorted(used))), " ".join(map(str, sorted(numbers)))
        return Verdict(False, expr, f"uses {got}, not each of {want} exactly once")
    try:
        value = _value(tree)
    except _Invalid as e:
        return Verdict(False, expr, str(e))
    if value != target:
        return Verdict(False, expr, f"equals {value}, not {target}")
    return Verdict(True, expr, "")


def verify(answer: str, numbers: Sequence[int], target: int = TARGET) -> Verdict:
    """The answer's verdict: ok if one of its extracted expressions (:func:`extract_expressions`) is a solution."""
    found = extract_expressions(answer)
    if not found:
        return Verdict(False, "", "no arithmetic expression found")
    verdicts = [check_expression(e, numbers, target) for e in found]
    return next((v for v in verdicts if v.ok), verdicts[0])


def game24_score(answer: str, numbers: Sequence[int]) -> float:
    """1.0 if the answer's expression solves the puzzle, else 0.0."""
    return float(verify(answer, numbers).ok)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description="Write the Game-of-24 eval set (studio/eval/datasets/game24.jsonl)."
    )
    p.add_argument("--seed", type=int, default=SEED)
    p.add_argument("--train", type=int, default=N_TRAIN)
    p.add_argument("--test", type=int, default=N_TEST)
    p.add_argument("--out", type=Path, default=DATASET)
    a = p.parse_args(argv)
    puzzles = write_dataset(a.out, n_train=a.train, n_test=a.test, seed=a.seed)
    print(f"wrote {len(puzzles)} puzzles ({a.train} train, {a.test} test, seed {a.seed}) to {a.out}")


if __name__ == "__main__":
    main()
