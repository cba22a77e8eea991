"""Store seeds shared by test modules: four prompts, each answered three ways (best, middling, worst) and ranked
by a person, as the training tests and the export tests train on."""

from __future__ import annotations

from collections.abc import Iterator

from storage import Store

QUESTIONS = ["What is 2+2?", "Name a primary colour.", "Capital of France?", "Opposite of hot?"]
ANSWERS = [
    ("4", "5", "22"),
    ("Red.", "Purple.", "Dog."),
    ("Paris.", "Lyon.", "Rome."),
    ("Cold.", "Warm.", "Up."),
]


def ranked_prompt(store: Store, prompt_set: str, question: str, answers: tuple[str, str, str]) -> list[int]:
    """A prompt with runs cot, system1, cove answering ``answers`` (best first), ranked 1, 2, 3 by alice: 3 DPO /
    RM pairs, 2 KTO labels. Returns the run ids."""
    pid = store.add_prompt(question, prompt_set)
    runs = [
        store.add_run(pid, "smollm2-135m", s, a)
        for s, a in zip(("cot", "system1", "cove"), answers, strict=True)
    ]
    store.add_ranking(store.add_comparison(runs), [1, 2, 3], "alice")
    return runs


def ranked_prompts(store: Store, prompt_set: str) -> Iterator[list[int]]:
    """:func:`ranked_prompt` for each of the four prompts, yielding its run ids before the next is added (so a
    caller's own labels on a prompt come before the next prompt's rows)."""
    for question, answers in zip(QUESTIONS, ANSWERS, strict=True):
        yield ranked_prompt(store, prompt_set, question, answers)
