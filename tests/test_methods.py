"""The one home of three rules: a method's name (``strategy[:variant]``), saving a run, and the run filters.

- :class:`studio.methods.Method` parses what it writes, for every registered strategy x variant, and says what is
  wrong with bad input;
- :func:`studio.runs.save_run` stores a run's fields, its error (or not, for the eval), and the caller's params;
- the run filters are one SQL implementation: every reader (runs, votes, verdicts, step labels, the judge's
  items, the Data tab, the exports) selects the same rows for the same filter, and a ranking becomes pairs once
  (``Store.vote_pairs`` gives the figures the pairs the exports read).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from storage import Filters, Store
from studio import browse, judging
from studio.arena import ArenaColumn, column_choices
from studio.errors import InputError
from studio.methods import Method, method_choices, parse_methods
from studio.runs import save_run
from studio.strategies import RunResult, Step, StrategyParams, Trace


@pytest.fixture()
def store(tmp_path: Path):
    with Store(tmp_path / "studio.duckdb") as s:
        yield s


# -- Method -------------------------------------------------------------------------------------------------------
def test_every_choice_round_trips_and_resolves_to_itself() -> None:
    choices = method_choices()
    assert "system1" in choices and "cove:factored" in choices and "cove" not in choices  # cove has variants
    for label in choices:
        m = Method.parse(label)
        assert m.label == label == str(m)
        assert m.resolve() == m  # a listed choice names its variant already
        assert Method.of({"strategy": m.strategy, "variant": m.variant}) == m
    assert column_choices(["m1"]) == [f"{c} @ m1" for c in choices]


def test_parse_strips_spaces_and_takes_a_default() -> None:
    assert Method.parse("  cove : factored ") == Method("cove", "factored")
    assert Method.parse("s2a:") == Method("s2a")
    assert Method.parse("", default="system1") == Method("system1")
    assert Method.parse(None, default="cot").label == "cot"
    assert Method.parse("cove").resolve().variant  # the strategy's default variant, made explicit


@pytest.mark.parametrize("text", ["", "  ", ":factored", None])
def test_bad_method_is_one_clear_message(text) -> None:
    with pytest.raises(InputError, match=r"a method is written 'strategy\[:variant\]', e.g. 'cove:factored'"):
        Method.parse(text)


def test_unknown_names_are_refused_when_resolved() -> None:
    Method.parse("magic")  # the shape is fine
    with pytest.raises(InputError, match="unknown strategy 'magic'; known: .*system1"):
        Method.parse("magic").resolve()
    with pytest.raises(InputError, match="name at least one strategy"):
        parse_methods(" , ")
    assert parse_methods("system1, cot,system1") == (Method("system1"), Method("cot"))


def test_a_column_is_a_method_at_a_model() -> None:
    col = ArenaColumn.parse("cove:factored @ m2", "default")
    assert (col.method, col.model, col.label) == (Method("cove", "factored"), "m2", "cove:factored @ m2")
    assert ArenaColumn.parse("system1", "default").label == "system1 @ default"
    assert ArenaColumn.of({"strategy": "s2a", "variant": None, "model": "m"}).label == "s2a @ m"
    with pytest.raises(InputError, match=r"a column is 'strategy\[:variant\] @ model', not ':x @ m'"):
        ArenaColumn.parse(":x @ m", "default")


# -- saving a run -------------------------------------------------------------------------------------------------
def result(error: str | None = None) -> RunResult:
    step = Step("s1", "answer", None, [{"role": "user", "content": "q"}], {}, status="done", output="A",
                prompt_tokens=7, completion_tokens=3)  # fmt: skip
    trace = Trace(
        "cove", "factored", "backend-name", "q", {}, [step], final_answer="A", error=error, latency_s=0.5
    )
    return RunResult(
        "q", "cove", "factored", "backend-name", StrategyParams(max_new_tokens=9), "A", trace, error
    )


def test_save_run_stores_every_field(store: Store) -> None:
    pid = store.add_prompt("q", "set")
    run = store.get_run(save_run(store, pid, result(), model="registered", extra={"eval": {"item": "i1"}}))
    assert run is not None
    assert (run["model"], run["strategy"], run["variant"], run["answer"]) == (
        "registered",
        "cove",
        "factored",
        "A",
    )
    assert (run["tokens_in"], run["tokens_out"], run["latency_s"], run["error"]) == (7, 3, 0.5, None)
    assert run["params"]["max_new_tokens"] == 9 and run["params"]["eval"] == {"item": "i1"}
    assert run["trace"]["steps"][0]["output"] == "A"
    assert store.get_run(save_run(store, pid, result()))["model"] == "backend-name"  # type: ignore[index]


def test_save_run_keeps_the_error_unless_told_not_to(store: Store) -> None:
    pid = store.add_prompt("q", "set")
    failed = save_run(store, pid, result("prompt too long"))
    assert store.get_run(failed)["error"] == "prompt too long"  # type: ignore[index]
    assert [r["id"] for r in store.list_runs(failed=True)] == [failed]
    kept = save_run(store, pid, result("prompt too long"), keep_error=False)  # the eval runner's choice
    assert store.get_run(kept)["error"] is None  # type: ignore[index]


#: the params a run stored before StrategyParams took its decoding fields from GenParams (captured from that code)
STORED_PARAMS = {
    "default": (
        {},
        {"max_new_tokens": 256, "temperature": 0.0, "top_p": 1.0, "seed": None, "max_questions": 5,
         "max_branches": 5, "token_budget": None},
    ),
    "custom": (
        {"max_new_tokens": 64, "temperature": 0.7, "top_p": 0.9, "seed": 3, "max_questions": 2, "max_branches": 4,
         "token_budget": 1000},
        {"max_new_tokens": 64, "temperature": 0.7, "top_p": 0.9, "seed": 3, "max_questions": 2, "max_branches": 4,
         "token_budget": 1000},
    ),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(STORED_PARAMS))
def test_the_stored_params_are_unchanged(store: Store, case: str) -> None:
    kwargs, expected = STORED_PARAMS[case]
    params = StrategyParams(**kwargs)
    # the fields added since (decoding, structured, step caps, ToT, self-consistency) come on top, at their
    # defaults; the old ones keep their values, and a dict stored before them reads back as the same params
    new_fields = {k: v for k, v in StrategyParams().to_dict().items() if k not in expected}
    assert params.to_dict() == expected | new_fields
    assert new_fields.keys() >= {"repetition_penalty", "structured", "step_max_tokens", "samples", "breadth"}
    assert StrategyParams.from_dict(params.to_dict()) == params
    assert StrategyParams.from_dict(expected) == params, "an old stored dict reads back unchanged"
    res = result()
    res.params = params
    run = store.get_run(save_run(store, store.add_prompt("q", "set"), res))
    assert run is not None and run["params"] == expected | new_fields
    gen = params.gen_params()
    assert (gen.max_new_tokens, gen.temperature, gen.top_p, gen.seed, gen.stop) == (
        expected["max_new_tokens"], expected["temperature"], expected["top_p"], expected["seed"], ()
    )  # fmt: skip


# -- the run filters, one implementation --------------------------------------------------------------------------
def seeded(store: Store) -> dict[str, int]:
    """Two prompts: math (a CoVe factored run on m1, a CoT run on m2) and facts (CoT on m1, System 1 on m3); a
    ranking, a pairwise vote and a verdict on each, and a step label on each run."""
    math, facts = store.add_prompt("2+2?", "math"), store.add_prompt("Capital of France?", "facts")
    ids = {
        "cove": store.add_run(math, "m1", "cove", "four", variant="factored"),
        "cot": store.add_run(math, "m2", "cot", "4"),
        "cot2": store.add_run(facts, "m1", "cot", "Paris"),
        "s1": store.add_run(facts, "m3", "system1", "Lyon"),
    }
    ids["c_math"] = store.add_comparison([ids["cove"], ids["cot"]])
    ids["c_facts"] = store.add_comparison([ids["cot2"], ids["s1"]])
    store.add_vote(ids["c_math"], "B", "ann")
    store.add_ranking(ids["c_facts"], [1, 2], "ann")
    for cid in (ids["c_math"], ids["c_facts"]):
        store.add_verdict("pairwise", "pairwise", comparison_id=cid, winner="A", judge_model="j")
    for name in ("cove", "cot", "cot2", "s1"):
        store.add_step_label(ids[name], "s1", "good", "ann")
    return ids


CASES = [  # filter -> the prompt sets whose items it selects (a pair matches when either run does)
    ({"strategy": "cove"}, {"math"}),
    ({"strategy": "cove:factored"}, {"math"}),
    ({"strategy": "cove:joint"}, set()),
    ({"strategy": "cot"}, {"math", "facts"}),
    ({"model": "m3"}, {"facts"}),
    ({"model": "m1", "strategy": "system1"}, {"facts"}),  # the model on one run, the strategy on the other
    ({"prompt_set": "math", "model": "m2"}, {"math"}),
]


@pytest.mark.parametrize(("filters", "sets"), CASES)
def test_every_reader_selects_the_same_items(store: Store, filters: dict[str, str], sets: set[str]) -> None:
    ids = seeded(store)
    f = Filters(**filters)
    prompt_set = {p["id"]: p["prompt_set"] for p in store.list_prompts(limit=None)}
    run_set = {r["id"]: prompt_set[r["prompt_id"]] for r in store.list_runs(limit=None)}
    cmp_set = {ids["c_math"]: "math", ids["c_facts"]: "facts"}
    pairs = [(ids["cove"], ids["cot"]), (ids["cot2"], ids["s1"])]
    query = browse.Browse(**filters, limit=None)

    assert {cmp_set[v["comparison_id"]] for v in store.list_votes(filters=f)} == sets
    assert {cmp_set[d["comparison_id"]] for d in store.list_verdicts(filters=f)} == sets
    assert {("math", "facts")[i] for i in store.matching(pairs, f)} == sets
    assert {run_set[p["chosen_run_id"]] for p in store.preference_pairs(f)} == sets  # the exports
    found = judging.targets(judging.snapshot(store), judging.Scope(**filters), "pairwise")
    assert {run_set[t.run_ids[0]] for t in found} == sets  # the judge's items
    assert {cmp_set[v["comparison_id"]] for v in browse.vote_rows(store, query)} == sets  # the Data tab
    assert {cmp_set[d["comparison_id"]] for d in browse.verdict_rows(store, query)} == sets


def test_runs_and_step_labels_match_on_their_own_run(store: Store) -> None:
    ids = seeded(store)
    assert [r["id"] for r in store.list_runs(filters=Filters(strategy="cot"), limit=None)] == [
        ids["cot2"],
        ids["cot"],
    ]
    assert [r["id"] for r in store.list_runs(filters=Filters(strategy="cove:factored"))] == [ids["cove"]]
    assert [s["run_id"] for s in store.list_step_labels(filters=Filters(model="m1"))] == [
        ids["cove"],
        ids["cot2"],
    ]
    several = Filters(model=["m2", "m3"], prompt_set=["math", "facts"])  # any of the listed values
    assert [r["id"] for r in store.list_runs(filters=several)] == [ids["s1"], ids["cot"]]
    rows = browse.run_rows(store, browse.Browse(strategy="cove", search="FOUR"))
    assert [(r["id"], r["strategy"], r["prompt_set"]) for r in rows] == [
        (ids["cove"], "cove:factored", "math")
    ]
    assert browse.step_label_rows(store, browse.Browse(annotator="nobody")) == []


def test_a_ranking_becomes_pairs_once(store: Store) -> None:
    """The figures' human outcomes (Store.vote_pairs, ties kept) and the exports' pairs come from one rule."""
    pid = store.add_prompt("P", "set")
    r = [store.add_run(pid, "m", "s", a) for a in "abcd"]
    cid = store.add_comparison(r)
    store.add_ranking(cid, [2, 1, 2, 3], "u1")  # b best, a and c tied, d last
    got = {(p["run_a"], p["run_b"]): p["outcome"] for p in store.vote_pairs()}
    assert got == {(r[0], r[1]): "B", (r[0], r[2]): "tie", (r[0], r[3]): "A", (r[1], r[2]): "A",
                   (r[1], r[3]): "A", (r[2], r[3]): "A"}  # fmt: skip
    decisive = {(a, b) if o == "A" else (b, a) for (a, b), o in got.items() if o != "tie"}
    exported = {(p["chosen_run_id"], p["rejected_run_id"]) for p in store.preference_pairs()}
    assert exported == decisive
    human = judging.outcomes(judging.snapshot(store)).votes[judging.HUMAN]
    assert {
        pair: labels[0] for pair, labels in human.items()
    } == got  # run ids ascend with the positions here
