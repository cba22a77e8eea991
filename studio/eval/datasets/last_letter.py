"""Last-letter concatenation (Wei et al. 2022, arXiv 2201.11903; one of Yu et al. 2024's System-2 distillation
tasks, arXiv 2407.06023): a seeded generator with a fixed train/test split.

A question names 2, 3 or 4 words drawn (without repeats) from :data:`WORDS`, a hand-written list of common first
names and words, and asks for their last letters joined: "Elon Musk Bill" -> "kkl". The answer is lower case.
No answer is one of the articles "a", "an", "the", which the harness's normalisation drops (an empty answer
would then match). Word counts cycle 2, 3, 4 through each split; no word sequence is in both splits.

``python -m studio.eval.datasets.last_letter`` rewrites ``last_letter.jsonl`` byte for byte from the defaults.
"""

from __future__ import annotations

import argparse
import json
import random
from pathlib import Path

SEED = 2201_11903  # the chain-of-thought paper's arXiv id (Wei et al. 2022), where the task was introduced
N_TRAIN = 600
N_TEST = 240
WORD_COUNTS = (2, 3, 4)
OUT = Path(__file__).parent / "last_letter.jsonl"
#: the question, as Wei et al. pose it, plus the answer format exact match needs
TEMPLATE = (
    'Take the last letters of the words in "{words}" and concatenate them. Answer with the letters only.'
)
_ARTICLES = {"a", "an", "the"}

WORDS = [
    "Elon", "Musk", "Bill", "Gates", "Larry", "Page", "Steve", "Jobs", "Mary", "John", "James", "Linda",
    "Robert", "Susan", "David", "Karen", "Maria", "Thomas", "Nancy", "Daniel", "Lisa", "Paul", "Sandra",
    "Mark", "Emily", "George", "Laura", "Kevin", "Anna", "Brian", "Helen", "Frank", "Alice", "Peter",
    "Grace", "Oscar", "Julia", "Henry", "Chloe", "Victor", "Diana", "Simon", "Rosa", "Hugo", "Ivan", "Olga",
    "Pablo", "Sofia", "Kenji", "Amir", "Fatima", "Liam", "Noah", "Emma", "Lucas", "Mia", "Ethan", "Zoe",
    "apple", "river", "table", "garden", "window", "music", "orange", "pencil", "cloud", "bread", "stone",
    "candle", "forest", "planet", "silver", "winter", "yellow", "happy", "quick", "light", "paper", "horse",
    "mountain", "ocean", "garlic", "basket", "rocket", "mirror", "pillow", "tiger",
]  # fmt: skip


def answer(words: list[str]) -> str:
    return "".join(w[-1] for w in words).lower()


def generate(seed: int = SEED, n_train: int = N_TRAIN, n_test: int = N_TEST) -> list[dict[str, object]]:
    """``n_train`` then ``n_test`` distinct questions; word counts cycle 2, 3, 4 within each split."""
    rng = random.Random(seed)
    seen: set[tuple[str, ...]] = set()
    rows: list[dict[str, object]] = []
    for split, n in (("train", n_train), ("test", n_test)):
        k = 0
        while k < n:
            count = WORD_COUNTS[k % len(WORD_COUNTS)]
            words = rng.sample(WORDS, count)
            if tuple(words) in seen or answer(words) in _ARTICLES:
                continue
            seen.add(tuple(words))
            k += 1
            rows.append({"id": f"ll-{count}w-{split}-{k:03d}", "question": TEMPLATE.format(words=" ".join(words)),
                         "answer": answer(words), "task": "qa", "words": words, "n_words": count,
                         "split": split})  # fmt: skip
    return rows


def write(rows: list[dict[str, object]], path: Path) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Rewrite the last-letter concatenation set.")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--train", type=int, default=N_TRAIN)
    parser.add_argument("--test", type=int, default=N_TEST)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = generate(args.seed, args.train, args.test)
    write(rows, args.out)
    print(f"wrote {len(rows)} questions to {args.out}")


if __name__ == "__main__":
    main()
