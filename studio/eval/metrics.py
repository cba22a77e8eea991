"""Task metrics: per-item scores from one answer, and the dataset-level statistics the report bootstraps.

**Normalisation** (SQuAD style): Unicode accents folded, lower case, punctuation dropped, the articles
a/an/the dropped, whitespace collapsed. A match is a whole-token match: "Au" is found in "the symbol is au"
but not in "Australia".

Per item (:func:`score_item`; a metric that does not apply to an item is absent):

- ``exact_match``: the normalised answer equals an accepted answer.
- ``contains``: an accepted answer appears, as whole tokens, in the normalised answer.
- ``numeric``: the number after the last "answer is" / "Answer:", else the last number in the answer (GSM's
  convention), equals the accepted number ("1,500" is 1500).
- ``mc_accuracy``: the chosen option (a letter such as "B", "(B)", "Answer: B"; else the only choice whose text
  appears) is the correct one.
- ``game24`` (Game of 24, ToT's task): 1.0 if the answer's expression uses each of the item's ``numbers`` exactly
  once and equals 24, checked exactly and without executing anything (:func:`studio.eval.game24.verify`).
- list questions (CoVe): the answer's entities (:func:`extract_entities`) are matched to the gold list;
  ``list_pos`` entities match a gold entity, ``list_neg`` match none, ``list_hits`` gold entities were named,
  ``list_gold`` is the gold list's size. An entity that names an already-matched gold entity again counts
  neither way.

Dataset level (:data:`STATS`): means for the 0/1 metrics; **micro** precision = Σ pos / Σ (pos + neg) and micro
recall = Σ hits / Σ gold over the items, as CoVe reports precision; mean pos and neg per question.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from studio.eval.data import EvalItem
from studio.eval.game24 import game24_score
from studio.strategies.parsing import parse_list

Row = Mapping[str, Any]

_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCT = re.compile(r"[^\w\s]|_")
_NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_ANSWER_NUM = re.compile(r"\banswer\s*(?:is|:|=)?\s*[$€£]?\s*(-?\d[\d,]*(?:\.\d+)?)", re.IGNORECASE)
_SEPARATORS = re.compile(r"\s+[-–—:]\s+|\s*\(|:\s+|\s+[-–—]\s*$")
# "Some countries that border Germany are France" -> "France": the lead-in of a one-line list
_LEAD_IN = re.compile(r"^.*\b(?:are|is|include|includes|including)\s*:?\s+", re.IGNORECASE)
MAX_ENTITY_WORDS = 8  # a longer list line is prose, not a name


def normalize(text: str) -> str:
    text = unicodedata.normalize("NFKD", text or "")
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = _PUNCT.sub(" ", text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def _contains(haystack: str, needle: str) -> bool:
    """Whole-token containment of normalised texts."""
    return bool(needle) and f" {needle} " in f" {haystack} "


def exact_match(answer: str, accepted: Sequence[str]) -> float:
    norm = normalize(answer)
    return float(any(norm == normalize(a) for a in accepted))


def contains_answer(answer: str, accepted: Sequence[str]) -> float:
    norm = normalize(answer)
    return float(any(_contains(norm, normalize(a)) for a in accepted))


def last_number(text: str) -> float | None:
    """The number after the last "answer is" / "Answer:", else the last number in the text."""
    found = _ANSWER_NUM.findall(text or "") or _NUM.findall(text or "")
    if not found:
        return None
    try:
        return float(found[-1].replace(",", ""))
    except ValueError:
        return None


def numeric_match(answer: str, accepted: Sequence[str]) -> float:
    got = last_number(answer)
    wanted = [last_number(a) for a in accepted]
    return float(got is not None and any(w is not None and abs(got - w) < 1e-9 for w in wanted))


# -- multiple choice ----------------------------------------------------------------------------------------------
def extract_choice(answer: str, choices: Sequence[str]) -> int | None:
    """The option an answer picks: a letter (alone, in parentheses, after "answer", or opening the answer),
    else the only choice whose normalised text appears in it; None if neither is clear."""
    letters = "".join(chr(65 + i) for i in range(len(choices)))
    text = (answer or "").strip()
    patterns = (
        rf"^\(?([{letters}])(?:[.):]|\)?\s*$)",  # "B", "B.", "B)", "(B)"; not the article in "A good one"
        rf"\banswer(?:\s+is)?\s*[:\-]?\s*\(?([{letters}])\)?(?![\w])",
        rf"\(([{letters}])\)",
    )
    for pattern in patterns:
        m = re.search(pattern, text, flags=re.IGNORECASE if pattern.startswith(r"\banswer") else 0)
        if m:
            return letters.index(m.group(1).upper())
    norm = normalize(text)
    found = [i for i, c in enumerate(choices) if _contains(norm, normalize(c))]
    return found[0] if len(found) == 1 else None


def mc_accuracy(answer: str, choices: Sequence[str], correct: int) -> float:
    return float(extract_choice(answer, choices) == correct)


# -- list questions -----------------------------------------------------------------------------------------------
def extract_entities(answer: str) -> list[str]:
    """The names an answer lists: numbered, bulleted, one per line or comma-separated (the strategies' own
    list parser), each cut before a description (" - ", ": ", "(") and dropped if it is prose."""
    out = []
    for item in parse_list(answer or "", split_commas=True, dedupe=True):
        if item.rstrip().endswith(":"):  # a lead-in line such as "Here are some of them:"
            continue
        head = _head(item)
        if len(head.split()) >= 3:  # maybe a lead-in: "The lakes are: Lake Erie", "Some are France"
            head = _head(_LEAD_IN.sub("", item, count=1)) or head
        if head and len(head.split()) <= MAX_ENTITY_WORDS:
            out.append(head)
    return out


def _head(item: str) -> str:
    """A list item without its description: "Paris - capital of France" -> "Paris"."""
    return _SEPARATORS.split(item, maxsplit=1)[0].strip(" .;*")


@dataclass(frozen=True)
class ListScore:
    pos: int  # listed entities that match a gold entity
    neg: int  # listed entities that match none
    hits: int  # gold entities named
    gold: int  # size of the gold list
    matched: tuple[str, ...] = ()
    unmatched: tuple[str, ...] = ()

    @property
    def precision(self) -> float | None:
        return self.pos / (self.pos + self.neg) if self.pos + self.neg else None

    @property
    def recall(self) -> float:
        return self.hits / self.gold if self.gold else 0.0


def list_score(answer: str | Sequence[str], gold: Sequence[Sequence[str]]) -> ListScore:
    """Match the answer's entities (or a given list) to the gold list, alias-aware, after normalisation."""
    entities = extract_entities(answer) if isinstance(answer, str) else list(answer)
    aliases = [{normalize(a) for a in g} for g in gold]
    found: set[int] = set()
    matched, unmatched = [], []
    for entity in entities:
        norm = normalize(entity)
        hit = next((i for i, names in enumerate(aliases) if norm in names), None)
        if hit is None:
            unmatched.append(entity)
        elif hit not in found:
            found.add(hit)
            matched.append(entity)
    return ListScore(len(matched), len(unmatched), len(found), len(gold), tuple(matched), tuple(unmatched))


# -- one item -----------------------------------------------------------------------------------------------------
def score_item(item: EvalItem, answer: str) -> dict[str, Any]:
    """Every metric that applies to ``item``, for one answer (numbers; list entities for inspection)."""
    scores: dict[str, Any] = {}
    if item.answers:
        scores["exact_match"] = exact_match(answer, item.answers)
        scores["contains"] = contains_answer(answer, item.answers)
        if item.task == "math":
            scores["numeric"] = numeric_match(answer, item.answers)
    if item.choices and item.answer_index is not None:
        scores["mc_accuracy"] = mc_accuracy(answer, item.choices, item.answer_index)
    if item.task == "game24" and "numbers" in item.meta:
        scores["game24"] = game24_score(answer, item.meta["numbers"])
    if item.gold:
        s = list_score(answer, item.gold)
        scores.update(list_pos=s.pos, list_neg=s.neg, list_hits=s.hits, list_gold=s.gold)
        scores.update(list_matched=list(s.matched), list_unmatched=list(s.unmatched))
    return scores


# -- dataset level ------------------------------------------------------------------------------------------------
def _values(rows: Sequence[Row], key: str) -> list[float]:
    return [float(r["scores"][key]) for r in rows if r["scores"].get(key) is not None]


def mean_of(key: str) -> Callable[[Sequence[Row]], float]:
    def stat(rows: Sequence[Row]) -> float:
        vals = _values(rows, key)
        return sum(vals) / len(vals) if vals else float("nan")

    return stat


def ratio_of(num: str, *den: str) -> Callable[[Sequence[Row]], float]:
    """Σ num / Σ den over the rows (micro-averaging)."""

    def stat(rows: Sequence[Row]) -> float:
        top = sum(_values(rows, num))
        bottom = sum(sum(_values(rows, d)) for d in den)
        return top / bottom if bottom else float("nan")

    return stat


@dataclass(frozen=True)
class Stat:
    key: str  # the per-item score it reads (presence decides whether a row counts)
    label: str
    fn: Callable[[Sequence[Row]], float]
    rate: bool = True  # a proportion in [0, 1] (plotted together); counts are not


STATS: dict[str, Stat] = {
    "exact_match": Stat("exact_match", "exact match", mean_of("exact_match")),
    "contains": Stat("contains", "contains answer", mean_of("contains")),
    "numeric": Stat("numeric", "accuracy", mean_of("numeric")),
    "mc_accuracy": Stat("mc_accuracy", "accuracy", mean_of("mc_accuracy")),
    "list_precision": Stat("list_pos", "precision (micro)", ratio_of("list_pos", "list_pos", "list_neg")),
    "list_recall": Stat("list_hits", "recall (micro)", ratio_of("list_hits", "list_gold")),
    "list_pos": Stat("list_pos", "pos. per question", mean_of("list_pos"), rate=False),
    "list_neg": Stat("list_neg", "neg. per question", mean_of("list_neg"), rate=False),
    "judge": Stat("judge", "judge score", mean_of("judge"), rate=False),
    "game24": Stat("game24", "solved (verified)", mean_of("game24")),
}
#: the statistics a task reports, in the papers' column order; the first is the task's headline
TASK_STATS: dict[str, tuple[str, ...]] = {
    "list": ("list_precision", "list_recall", "list_pos", "list_neg"),
    "qa": ("contains", "exact_match"),
    "math": ("numeric",),
    "mc": ("mc_accuracy",),
    "open": (),
    "game24": ("game24",),
}


def condition_stat(stat: Stat, condition: str) -> Callable[[Sequence[Row]], float]:
    """``stat`` over the rows of one condition."""
    return lambda rows: stat.fn([r for r in rows if r.get("condition") == condition])


def gap_stat(stat: Stat, conditions: Sequence[str], baseline: str) -> Callable[[Sequence[Row]], float]:
    """Mean of ``stat`` over ``conditions`` minus ``stat`` on the baseline condition."""

    def gap(rows: Sequence[Row]) -> float:
        base = condition_stat(stat, baseline)(rows)
        vals = [condition_stat(stat, c)(rows) for c in conditions]
        return sum(vals) / len(vals) - base if vals else float("nan")

    return gap


def judge_score(verdict: Any, pairwise: bool) -> float | None:
    """A judge verdict as a number: the rating (single-answer judges), or, against the reference answer, the
    answer's P(better) (log-prob judge) or 1 / 0.5 / 0 for a win / tie or inconsistent / loss. None if it failed."""
    if not verdict.ok:
        return None
    if not pairwise:
        return verdict.rating
    if verdict.prob_a is not None:
        return verdict.prob_a
    return {"A": 1.0, "tie": 0.5, "inconsistent": 0.5, "B": 0.0}.get(verdict.winner or "")
