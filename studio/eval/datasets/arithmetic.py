"""Multi-step arithmetic word problems at four difficulty levels: a seeded generator with a fixed train/test split.

Levels (each question's ``level`` field and its id say which):

1. one operation on 1-digit numbers (``+``, ``-``, ``*``): "What is 3 + 5?", "Mia has 7 apples. She gives away 2..."
2. two operations on 1-digit numbers: "What is 4 + 3 - 2?", "... gets 3 more and then gives away 2 ..."
3. a 2-digit and a 1-digit number, one operation (``+`` or ``-``): "What is 34 + 7?"
4. two-step word problems with 2-digit numbers: "Leo has 45 stickers. He gets 23 more and then gives away 18 ..."

Levels 1-3 are half bare questions ("What is ...?", ``form: "bare"``) and half one-sentence word problems
(``form: "word"``); level 4 is all word problems. Every answer is a whole number >= 0. The questions of each
level are distinct, and no question is in both splits. The file lists the levels in turn (1, 2, 3, 4, 1, ...),
so the first N items of either split (``--limit N``) hold every level equally.

``python -m studio.eval.datasets.arithmetic`` rewrites ``arithmetic.jsonl`` byte for byte from the defaults.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Callable
from pathlib import Path

SEED = 2404_19733  # IRPO's arXiv id (Pang et al. 2024), the first method trained on this set
LEVELS = (1, 2, 3, 4)
N_TRAIN = 200  # per level: 800 train items
N_TEST = 64  # per level: 256 test items
OUT = Path(__file__).parent / "arithmetic.jsonl"

NAMES = [
    ("Mia", "She"), ("Leo", "He"), ("Ava", "She"), ("Sam", "He"), ("Emma", "She"), ("Noah", "He"),
    ("Lily", "She"), ("Omar", "He"), ("Zoe", "She"), ("Ben", "He"), ("Nina", "She"), ("Tom", "He"),
    ("Sara", "She"), ("Max", "He"), ("Ella", "She"), ("Jack", "He"), ("Ruby", "She"), ("Liam", "He"),
]  # fmt: skip
OBJECTS = [
    "apples", "marbles", "stickers", "books", "pencils", "cookies", "stamps", "shells", "cards", "coins",
    "flowers", "balloons", "crayons", "oranges", "toy cars", "beads",
]  # fmt: skip

Row = dict[str, object]


def _who(rng: random.Random) -> tuple[str, str, str]:
    name, pron = rng.choice(NAMES)
    return name, pron, rng.choice(OBJECTS)


def _one_op(rng: random.Random, a: int, b: int, op: str) -> tuple[str, int]:
    """One operation as a word problem."""
    name, pron, obj = _who(rng)
    if op == "+":
        return f"{name} has {a} {obj}. {pron} gets {b} more. How many {obj} does {name} have now?", a + b
    if op == "-":
        return f"{name} has {a} {obj}. {pron} gives away {b}. How many {obj} does {name} have left?", a - b
    text = f"{name} has {a} bags with {b} {obj} in each bag. How many {obj} does {name} have in total?"
    return text, a * b


def _two_ops(rng: random.Random, a: int, b: int, c: int, kind: str) -> tuple[str, int]:
    """Two operations as a word problem: ``+-`` (a + b - c), ``-+`` (a - b + c) or ``*+`` (a * b + c)."""
    name, pron, obj = _who(rng)
    if kind == "+-":
        text = f"{name} has {a} {obj}. {pron} gets {b} more and then gives away {c}."
        return f"{text} How many {obj} does {name} have now?", a + b - c
    if kind == "-+":
        text = f"{name} has {a} {obj}. {pron} gives away {b} and then gets {c} more."
        return f"{text} How many {obj} does {name} have now?", a - b + c
    text = f"{name} has {a} bags with {b} {obj} in each bag, and {c} more {obj}."
    return f"{text} How many {obj} does {name} have in total?", a * b + c


def _bare(expr: str, value: int) -> tuple[str, int]:
    return f"What is {expr}?", value


def level1(rng: random.Random, word: bool) -> tuple[str, int]:
    op = rng.choice("+-*")
    a, b = rng.randint(1, 9), rng.randint(1, 9)
    if op == "-" and b > a:
        a, b = b, a
    return _one_op(rng, a, b, op) if word else _bare(f"{a} {op} {b}", eval_op(a, op, b))


def level2(rng: random.Random, word: bool) -> tuple[str, int]:
    kind = rng.choice(("+-", "-+", "*+"))
    a, b, c = rng.randint(1, 9), rng.randint(1, 9), rng.randint(1, 9)
    if kind == "+-" and c > a + b:
        c = rng.randint(1, min(9, a + b))
    if kind == "-+" and b > a:
        a, b = b, a
    if word:
        return _two_ops(rng, a, b, c, kind)
    value = {"+-": a + b - c, "-+": a - b + c, "*+": a * b + c}[kind]
    return _bare(f"{a} {kind[0]} {b} {kind[1]} {c}", value)


def level3(rng: random.Random, word: bool) -> tuple[str, int]:
    op = rng.choice("+-")
    a, b = rng.randint(10, 99), rng.randint(1, 9)
    return _one_op(rng, a, b, op) if word else _bare(f"{a} {op} {b}", eval_op(a, op, b))


def level4(rng: random.Random, word: bool) -> tuple[str, int]:
    kind = rng.choice(("+-", "-+"))
    a, b, c = rng.randint(10, 99), rng.randint(10, 99), rng.randint(10, 99)
    if kind == "+-" and c > a + b:
        c = rng.randint(10, min(99, a + b))
    if kind == "-+" and b > a:
        a, b = b, a
    return _two_ops(rng, a, b, c, kind)


def eval_op(a: int, op: str, b: int) -> int:
    return {"+": a + b, "-": a - b, "*": a * b}[op]


MAKERS: dict[int, Callable[[random.Random, bool], tuple[str, int]]] = {
    1: level1,
    2: level2,
    3: level3,
    4: level4,
}


def _questions(rng: random.Random, level: int, n: int) -> list[tuple[str, int, str]]:
    """``n`` distinct questions of ``level``: (question, answer, form); levels 1-3 alternate bare and word."""
    out: list[tuple[str, int, str]] = []
    seen: set[str] = set()
    tries = 0
    while len(out) < n:
        tries += 1
        if tries > 200 * n:
            raise RuntimeError(f"level {level}: cannot find {n} distinct questions")
        word = level == 4 or len(out) % 2 == 1
        question, answer = MAKERS[level](rng, word)
        if question in seen or answer < 0:
            continue
        seen.add(question)
        out.append((question, answer, "word" if word else "bare"))
    return out


def generate(seed: int = SEED, n_train: int = N_TRAIN, n_test: int = N_TEST) -> list[Row]:
    """The rows of both splits: per level, ``n_train`` train then ``n_test`` test questions, all distinct;
    in the file, each split lists its levels in turn."""
    rng = random.Random(seed)
    by_split: dict[str, list[list[Row]]] = {"train": [], "test": []}
    for level in LEVELS:
        drawn = _questions(rng, level, n_train + n_test)
        for split, chunk in (("train", drawn[:n_train]), ("test", drawn[n_train:])):
            rows = [
                {"id": f"arith-L{level}-{split}-{k:03d}", "question": q, "answer": str(ans), "task": "math",
                 "level": level, "form": form, "split": split}
                for k, (q, ans, form) in enumerate(chunk, 1)
            ]  # fmt: skip
            by_split[split].append(rows)
    out: list[Row] = []
    for split in ("train", "test"):
        levels = by_split[split]
        out += [rows[k] for k in range(max(len(r) for r in levels)) for rows in levels if k < len(rows)]
    return out


def write(rows: list[Row], path: Path) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--train", type=int, default=N_TRAIN, help="train questions per level")
    parser.add_argument("--test", type=int, default=N_TEST, help="test questions per level")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = generate(args.seed, args.train, args.test)
    write(rows, args.out)
    print(f"wrote {len(rows)} questions to {args.out}")


if __name__ == "__main__":
    main()
