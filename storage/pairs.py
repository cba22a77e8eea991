"""Preference items from votes and verdicts, as SQL: DPO pairs, KTO labels, reward-model pairs, win counts.

**Pairs.** A ranking gives one rank per screen position (1 = best, equal = tie), and a pairwise vote is the
ranking of two (A = [1, 2], B = [2, 1], tie and both_bad = [1, 1]): every two positions with different ranks give
one (winner, loser) pair, which is C(K,2) pairs for a strict ranking of K (InstructGPT) and fewer with ties.
Tied positions give no pair, and neither does 'both_bad'. A pairwise judge verdict that is ``ok`` with winner A or B gives one pair of source ``judge``; a
judge's 'tie' or 'inconsistent' (position-swap disagreement) gives none. Pairs are deduplicated on the exact
(prompt, chosen, rejected) text, and a pair whose two answers are identical is dropped.

**KTO labels.** Each vote or verdict labels the runs it covers; a run's label within one event is the sign of its
wins minus losses there (so in a strict ranking the top half is desirable and the bottom half not; the middle of
an odd ranking gets no label):

- a decisive pair (human or judge): winner ``True``, loser ``False``;
- a human *tie* (pairwise 'tie', or a ranking whose ranks are all equal): every run ``True``. The arena offers
  'both_bad' beside 'tie', so a plain tie means "both acceptable";
- a human *both_bad*: both runs ``False``;
- a judge's tie or inconsistent verdict: no label (it says nothing about quality);
- a single-answer judge rating, only when ``good_rating`` is given: ``rating >= good_rating``.

The labels of one (prompt, completion) are then merged by majority; an exact split is dropped.

**Failed runs** (``runs.error`` set) never appear: no pair, KTO row or win count includes one, even if a
comparison or verdict written before the store refused them holds one.

**One label per annotator.** The store keeps one vote per (comparison, annotator), so a person who submits
again replaces their label and a pair is asserted once per annotator, not once per click.

**Filters** (``Filters``) select the events, then the runs: ``source``/``annotator``/``since``/``until`` apply
to the vote or verdict (``annotator`` matches a human annotator id or a judge name); ``model``/``strategy``
match a pair when either of its runs matches (a KTO row when its own run does; ``strategy`` is a name such as
``cove`` or a method such as ``cove:factored``); ``prompt_set`` matches the prompt. The same run filters select
the store's readers' rows (``list_runs``, ``list_votes``, ``list_verdicts``, ``list_step_labels``, ``matching``):
:func:`match_where` is their one implementation. ``agree_only`` keeps pairs asserted by both a human and a judge (in the same direction) and, for KTO,
only the labels from those pairs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, time, timedelta, timezone
from typing import Any

from storage.errors import StoreError

Params = dict[str, Any]
Text = str | Sequence[str] | None

SOURCES = ("human", "judge")

# A vote's ranks, one per position (1 = best): a ranking stores them, a pairwise vote only its choice.
VOTE_RANKS = "coalesce(ranks, CASE choice WHEN 'A' THEN [1, 2] WHEN 'B' THEN [2, 1] ELSE [1, 1] END)"

# The one place a label becomes run pairs: every two positions of a voted comparison (A = the earlier position),
# with the outcome the vote's ranks give them (A, B or tie). Exports keep the decisive ones; the agreement and
# leaderboard figures (studio.judging) read all of them through ``Store.vote_pairs``.
VOTE_PAIRS = f"""
vote_pairs AS (
    SELECT v.id AS vote_id, v.comparison_id, v.annotator, v.created_at, a.position AS position_a,
           b.position AS position_b, a.run_id AS run_a, b.run_id AS run_b,
           CASE WHEN v.ranks[a.position + 1] < v.ranks[b.position + 1] THEN 'A'
                WHEN v.ranks[a.position + 1] > v.ranks[b.position + 1] THEN 'B' ELSE 'tie' END AS outcome
    FROM (SELECT * REPLACE ({VOTE_RANKS} AS ranks) FROM votes) v
    JOIN comparison_runs a ON a.comparison_id = v.comparison_id
    JOIN comparison_runs b ON b.comparison_id = v.comparison_id AND a.position < b.position
)"""

# Every (winner run, loser run) that a vote or a verdict asserts, before any filter: the decisive vote pairs, and
# the pairwise verdicts with a winner.
PAIR_EVENTS = f"""{VOTE_PAIRS},
pair_events AS (
    SELECT 'human' AS source, vote_id AS event_id, annotator, created_at AS event_at,
           CASE outcome WHEN 'A' THEN run_a ELSE run_b END AS chosen_id,
           CASE outcome WHEN 'A' THEN run_b ELSE run_a END AS rejected_id
    FROM vote_pairs WHERE outcome <> 'tie'
    UNION ALL
    SELECT 'judge', d.id, d.judge, d.created_at,
           d.run_ids[CASE d.winner WHEN 'A' THEN 1 ELSE 2 END],
           d.run_ids[CASE d.winner WHEN 'A' THEN 2 ELSE 1 END]
    FROM verdicts d
    WHERE d.mode = 'pairwise' AND d.ok AND d.winner IN ('A', 'B')
)"""

# Labels that are not pair outcomes: human ties and both-bad votes, and (optionally) single-answer ratings.
TIE_LABELS = """
    SELECT 'human' AS source, v.id AS event_id, v.annotator AS annotator, v.created_at AS event_at,
           cr.run_id AS run_id, CASE WHEN v.choice = 'both_bad' THEN -1 ELSE 1 END AS w
    FROM votes v JOIN comparison_runs cr ON cr.comparison_id = v.comparison_id
    WHERE v.choice IN ('tie', 'both_bad') OR (v.kind = 'ranking' AND len(list_distinct(v.ranks)) = 1)"""
RATING_LABELS = """
    SELECT 'judge' AS source, d.id AS event_id, d.judge AS annotator, d.created_at AS event_at,
           d.run_ids[1] AS run_id, CASE WHEN d.rating >= $good_rating THEN 1 ELSE -1 END AS w
    FROM verdicts d
    WHERE d.mode = 'single' AND d.ok AND d.rating IS NOT NULL"""

MESSAGE_TYPE = """'[{"role":"VARCHAR","content":"VARCHAR"}]'"""


def _texts(value: Text) -> list[str] | None:
    if value is None or value == "" or value == ():
        return None
    return [value] if isinstance(value, str) else [str(v) for v in value]


def _utc(value: datetime | date | None, end: bool = False) -> datetime | None:
    """A naive UTC datetime; a bare date means its start (or, for an ``until``, the start of the next day)."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        value = datetime.combine(value + timedelta(days=1 if end else 0), time())
    if value.tzinfo is not None:
        value = value.astimezone(timezone.utc).replace(tzinfo=None)
    return value


@dataclass(frozen=True)
class Filters:
    """Which votes and verdicts feed the preference items; every field is optional (see the module docstring)."""

    annotator: Text = None  # human annotator id(s) or judge name(s)
    source: str | None = None  # 'human' or 'judge'
    model: Text = None
    strategy: Text = None
    prompt_set: Text = None
    since: datetime | date | None = None  # vote/verdict time >= since
    until: datetime | date | None = None  # vote/verdict time < until; a date includes that whole day
    agree_only: bool = False

    def __post_init__(self) -> None:
        if self.source not in (None, *SOURCES):
            raise StoreError(f"source must be 'human' or 'judge', not {self.source!r}")


def event_where(alias: str, f: Filters, params: Params) -> str:
    """Conditions on an event's source, annotator and time."""
    conds = ["TRUE"]
    if f.source:
        params["source"] = f.source
        conds.append(f"{alias}.source = $source")
    if (annotators := _texts(f.annotator)) is not None:
        params["annotators"] = annotators
        conds.append(f"list_contains($annotators, {alias}.annotator)")
    if f.since is not None:
        params["since"] = _utc(f.since)
        conds.append(f"{alias}.event_at >= $since")
    if f.until is not None:
        params["until"] = _utc(f.until, end=True)
        conds.append(f"{alias}.event_at < $until")
    return " AND ".join(conds)


def method_sql(run: str) -> str:
    """A run's method as studio.methods.Method.label writes it, ``strategy[:variant]``, in SQL."""
    return f"{run}.strategy || coalesce(':' || {run}.variant, '')"


# What the run filters ask of one run (aliased ``{r}``): the one implementation. A strategy filter is a name or a
# method, so ``cove`` and ``cove:factored`` both match a CoVe factored run.
RUN_MATCHES = {
    "model": "list_contains($model, {r}.model)",
    "strategy": "(list_contains($strategy, {r}.strategy) OR list_contains($strategy, {method}))",
}


def match_where(f: Filters, params: Params, any_run: Callable[[str], str], prompt_set: str) -> str:
    """The run filters: each holds when ``any_run(condition)`` does (an item matches when any of its runs does;
    ``condition`` is a template over ``{r}`` and ``{method}``); ``prompt_set`` is the item's prompt's set."""
    conds = ["TRUE"]
    for name, values in (("model", f.model), ("strategy", f.strategy)):
        if (texts := _texts(values)) is not None:
            params[name] = texts
            conds.append(any_run(RUN_MATCHES[name]))
    if (sets := _texts(f.prompt_set)) is not None:
        params["prompt_sets"] = sets
        conds.append(f"list_contains($prompt_sets, {prompt_set})")
    return " AND ".join(conds)


def _on(run: str, condition: str) -> str:
    return condition.format(r=run, method=method_sql(run))


def run_where(runs: Sequence[str], prompt: str, f: Filters, params: Params) -> str:
    """The run filters on a row that joins its runs as ``runs`` (aliases; any may match) and its prompt."""

    def any_run(condition: str) -> str:
        return "(" + " OR ".join(_on(r, condition) for r in runs) + ")"

    return match_where(f, params, any_run, f"{prompt}.prompt_set")


def has_run_filters(f: Filters) -> bool:
    return any(_texts(v) is not None for v in (f.model, f.strategy, f.prompt_set))


def matching_items(item_runs: str, f: Filters, params: Params) -> str:
    """A query of the items whose runs match the run filters; ``item_runs`` is a query of ``(item, run_id)`` rows
    (a vote's comparison and its runs, a verdict and its runs, a run and itself)."""
    where = match_where(
        f, params, lambda condition: f"bool_or({_on('r', condition)})", "any_value(p.prompt_set)"
    )
    return f"""SELECT x.item FROM ({item_runs}) x JOIN runs r ON r.id = x.run_id JOIN prompts p ON p.id = r.prompt_id
    GROUP BY x.item HAVING {where}"""


def items_where(column: str, item_runs: str, f: Filters | None, params: Params) -> str:
    """``column`` is one of the matching items; TRUE without run filters."""
    if f is None or not has_run_filters(f):
        return "TRUE"
    return f"{column} IN ({matching_items(item_runs, f, params)})"


def _selected_pairs(f: Filters, params: Params) -> str:
    """CTEs ``pair_events`` and ``selected``: the filtered pair events, as ids (texts are joined later, once
    per distinct pair of runs, which keeps long strings out of the big joins)."""
    agree = _agreed("e") if f.agree_only else ""
    prompts = "JOIN prompts p ON p.id = c.prompt_id" if _texts(f.prompt_set) is not None else ""
    return f"""WITH {PAIR_EVENTS},
selected AS (
    SELECT e.*, c.prompt_id
    FROM pair_events e
    JOIN runs c ON c.id = e.chosen_id
    JOIN runs r ON r.id = e.rejected_id {prompts}
    WHERE c.prompt_id = r.prompt_id AND c.error IS NULL AND r.error IS NULL
      AND {event_where("e", f, params)} AND {run_where(("c", "r"), "p", f, params)} {agree}
)"""


def _pair_texts(f: Filters, params: Params, *, margin: bool = False, provenance: bool = False) -> str:
    """CTEs up to ``grouped``: one row per distinct (prompt, chosen, rejected) text, identical answers dropped.
    ``provenance`` adds the event count, sources and annotators (list aggregates: slow on millions of votes)."""
    ratings = margin_col = ratings_join = ""
    events = grouped_events = ""
    if provenance:
        events = (
            ", count(*) AS n_events, list(DISTINCT source) AS sources, list(DISTINCT annotator) AS annotators"
        )
        grouped_events = """, sum(n_events) AS n_events, list_sort(list_distinct(flatten(list(sources)))) AS sources,
           list_sort(list_distinct(flatten(list(annotators)))) AS annotators"""
    if margin:
        ratings = """
ratings AS (
    SELECT run_ids[1] AS run_id, avg(rating) AS rating FROM verdicts
    WHERE mode = 'single' AND ok AND rating IS NOT NULL GROUP BY 1
),"""
        ratings_join = "LEFT JOIN ratings rc ON rc.run_id = t.chosen_id LEFT JOIN ratings rr ON rr.run_id = t.rejected_id"
        margin_col = ", avg(rc.rating - rr.rating) AS margin"
    return f"""{_selected_pairs(f, params)},{ratings}
run_pairs AS (
    SELECT prompt_id, chosen_id, rejected_id, min(event_at) AS first_at, min(event_id) AS first_event{events}
    FROM selected GROUP BY prompt_id, chosen_id, rejected_id
),
texts AS (
    SELECT rp.*, p.text AS prompt_text, p.messages AS prompt_messages,
           c.answer AS chosen_text, r.answer AS rejected_text
    FROM run_pairs rp
    JOIN prompts p ON p.id = rp.prompt_id
    JOIN runs c ON c.id = rp.chosen_id
    JOIN runs r ON r.id = rp.rejected_id
    WHERE c.answer <> r.answer
),
grouped AS (
    SELECT prompt_text, prompt_messages, chosen_text, rejected_text, min(first_at) AS first_at,
           min(first_event) AS first_event, min(chosen_id) AS chosen_run_id,
           min(rejected_id) AS rejected_run_id{grouped_events}{margin_col}
    FROM texts t {ratings_join}
    GROUP BY prompt_text, prompt_messages, chosen_text, rejected_text
)"""


ORDER = "ORDER BY first_at, first_event, prompt_text, chosen_text, rejected_text"


def _agreed(alias: str) -> str:
    """The pair was also asserted, in the same direction, by the other source (human vs judge)."""
    return f"""AND EXISTS (SELECT 1 FROM pair_events o WHERE o.chosen_id = {alias}.chosen_id
                   AND o.rejected_id = {alias}.rejected_id AND o.source <> {alias}.source)"""


def _prompt_expr(conversational: bool, text: str, messages: str) -> str:
    if not conversational:
        return text
    return (
        f"CASE WHEN {messages} IS NULL THEN [{{'role': 'user', 'content': {text}}}] "
        f"ELSE json_transform({messages}, {MESSAGE_TYPE}) END"
    )


def _answer_expr(conversational: bool, text: str) -> str:
    return f"[{{'role': 'assistant', 'content': {text}}}]" if conversational else text


def pairs_sql(
    f: Filters, *, conversational: bool = False, margin: bool = False, fill_margin: bool = False
) -> tuple[str, Params]:
    """Deduplicated preference pairs: ``prompt, chosen, rejected`` (+ ``margin`` for reward-model pairs: NULL
    where a side has no rating, or 0.0 with ``fill_margin``, as TRL's RewardTrainer needs a number in every row)."""
    params: Params = {}
    margin_col = "coalesce(margin, 0.0) AS margin" if fill_margin else "margin"
    cols = [
        f"{_prompt_expr(conversational, 'prompt_text', 'prompt_messages')} AS prompt",
        f"{_answer_expr(conversational, 'chosen_text')} AS chosen",
        f"{_answer_expr(conversational, 'rejected_text')} AS rejected",
    ] + ([margin_col] if margin else [])
    return f"{_pair_texts(f, params, margin=margin)}\nSELECT {', '.join(cols)} FROM grouped {ORDER}", params


def pair_details_sql(f: Filters) -> tuple[str, Params]:
    """Pairs with provenance, for readers: run ids, sources, annotators and the number of events."""
    params: Params = {}
    sql = f"""{_pair_texts(f, params, provenance=True)}
SELECT prompt_text AS prompt, chosen_text AS chosen, rejected_text AS rejected, chosen_run_id, rejected_run_id,
       sources, annotators, n_events, first_at
FROM grouped {ORDER}"""
    return sql, params


def kto_sql(
    f: Filters, *, conversational: bool = False, good_rating: float | None = None
) -> tuple[str, Params]:
    """KTO rows ``prompt, completion, label``, merged by majority per (prompt, completion)."""
    params: Params = {}
    extra = ""
    if not f.agree_only:
        parts = [TIE_LABELS]
        if good_rating is not None:
            params["good_rating"] = float(good_rating)
            parts.append(RATING_LABELS)
        extra = f"""
    UNION ALL
    SELECT source, event_id, run_id, w FROM ({" UNION ALL ".join(parts)}) x WHERE {event_where("x", f, params)}"""
    sql = f"""{_selected_pairs(_without_runs(f), params)},
labels AS (
    SELECT source, event_id, chosen_id AS run_id, 1 AS w FROM selected
    UNION ALL
    SELECT source, event_id, rejected_id, -1 FROM selected{extra}
),
per_event AS (
    SELECT run_id, sum(w) AS w FROM labels GROUP BY source, event_id, run_id HAVING sum(w) <> 0
),
merged AS (
    SELECT p.text AS prompt_text, p.messages AS prompt_messages, r.answer AS completion_text,
           count_if(e.w > 0) AS pos, count_if(e.w < 0) AS neg, min(r.id) AS first_run
    FROM per_event e JOIN runs r ON r.id = e.run_id JOIN prompts p ON p.id = r.prompt_id
    WHERE r.error IS NULL AND {run_where(("r",), "p", f, params)}
    GROUP BY p.text, p.messages, r.answer
    HAVING pos <> neg
)
SELECT {_prompt_expr(conversational, "prompt_text", "prompt_messages")} AS prompt,
       {_answer_expr(conversational, "completion_text")} AS completion, pos > neg AS label
FROM merged ORDER BY first_run, prompt_text, completion_text"""
    return sql, params


def _without_runs(f: Filters) -> Filters:
    """KTO filters runs per labelled run, not per pair, so the pair selection ignores the run filters."""
    return replace(f, model=None, strategy=None)


def win_counts_sql(f: Filters, by: str = "model") -> tuple[str, Params]:
    """Decisive wins per (winner, loser) group, before text deduplication (every vote counts)."""
    if by not in ("model", "strategy"):
        raise StoreError(f"win counts are by 'model' or 'strategy', not {by!r}")
    params: Params = {}
    agree = _agreed("e") if f.agree_only else ""
    sql = f"""WITH {PAIR_EVENTS}
SELECT c.{by} AS winner, r.{by} AS loser, count(*) AS wins
FROM pair_events e
JOIN runs c ON c.id = e.chosen_id
JOIN runs r ON r.id = e.rejected_id
JOIN prompts p ON p.id = c.prompt_id
WHERE c.{by} <> r.{by} AND c.error IS NULL AND r.error IS NULL AND {event_where("e", f, params)} AND {run_where(("c", "r"), "p", f, params)} {agree}
GROUP BY ALL ORDER BY winner, loser"""
    return sql, params
