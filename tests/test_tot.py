"""Tree of Thoughts (arXiv 2305.10601): the search, its live tree, and its reading of model output.

Real-model runs use the default model with tiny settings (the tree's shape is the point, not the model's
arithmetic); a scripted backend feeds hand-written output for the parsing edge cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator, Sequence

import pytest

from studio.api import run_strategy, stream_strategy
from studio.backends.base import Backend, Completion, Conversation, GenParams, OnDelta
from studio.eval.game24 import question as game24_question
from studio.eval.game24 import verify
from studio.strategies import RunResult, StrategyParams
from studio.strategies.tot import VALUES, game24_numbers, parse_value

PUZZLE = game24_question([4, 5, 6, 10])
FREE = "A farmer has 17 sheep and buys 5 more. How many sheep does he have now?"
STATUSES = {"root", "proposed", "kept", "pruned", "chosen"}


def tiny(**kw) -> StrategyParams:
    base = dict(breadth=1, depth=2, k=2, n_evaluate=1, max_new_tokens=24, temperature=0.0, seed=0)
    return StrategyParams(**{**base, **kw})


def check_tree(result: RunResult) -> dict:
    """The tree summary follows the ToT contract; returns it."""
    tree = result.trace.summary["tree"]
    assert set(tree) >= {"nodes", "chosen", "variant", "depth", "breadth"}
    nodes = {n["id"]: n for n in tree["nodes"]}
    assert len(nodes) == len(tree["nodes"]), "node ids are unique"
    steps = {s.id: s for s in result.trace.steps}
    for n in tree["nodes"]:
        assert set(n) == {"id", "parent", "depth", "text", "thought", "value", "status", "propose_step",
                          "value_steps"}  # fmt: skip
        assert n["status"] in STATUSES and n["status"] != "proposed", "the search ended: no node is left open"
        if n["parent"] is None:
            assert n["status"] == "root" and n["depth"] == 0 and n["propose_step"] is None
            continue
        parent = nodes[n["parent"]]
        assert n["depth"] == parent["depth"] + 1
        assert steps[n["propose_step"]].name == "propose"
        # the propose step that made a node hangs under the propose step that made its parent
        assert steps[n["propose_step"]].parent == parent["propose_step"]
        for v in n["value_steps"]:
            assert steps[v].name == "value" and steps[v].parent == n["propose_step"]
    chosen = tree["chosen"]
    assert chosen and chosen[0] == next(i for i, n in nodes.items() if n["parent"] is None)
    for a, b in zip(chosen, chosen[1:], strict=False):
        assert nodes[b]["parent"] == a, "the chosen path is a root-to-node chain"
    assert all(nodes[i]["status"] == "chosen" for i in chosen[1:])
    assert all(n["status"] != "chosen" for i, n in nodes.items() if i not in chosen)
    return tree


def rounds_by_depth(result: RunResult, name: str) -> dict[int, set[int]]:
    """For each depth, the driver rounds that the ``name`` steps of that depth's nodes ran in."""
    tree = result.trace.summary["tree"]
    out: dict[int, set[int]] = {}
    for n in tree["nodes"]:
        ids = [n["propose_step"]] if name == "propose" and n["propose_step"] else []
        ids = ids if name == "propose" else n["value_steps"]
        for i in ids:
            out.setdefault(n["depth"], set()).add(result.trace.step(i).round)
    return out


# -- real model --------------------------------------------------------------------------------------------------
def test_tot_bfs_on_a_24_puzzle_builds_the_tree_live(backend) -> None:
    events = list(stream_strategy(PUZZLE, "tot", "bfs", backend, tiny(breadth=2)))
    result = events[-1].result
    assert result is not None and result.error is None
    tree = check_tree(result)
    assert tree["variant"] == "bfs" and tree["breadth"] == 2
    assert tree["nodes"][0]["text"] == "left: 4 5 6 10"  # the paper's prompts: the state is the numbers left
    # live: a summary event after the first proposals, and the tree grows between events
    summaries = [e for e in events if e.kind == "summary" and e.text == "tree"]
    assert len(summaries) >= 3
    assert len(summaries[0].data["nodes"]) < len(summaries[-1].data["nodes"])
    assert summaries[-1].data == tree
    # the game-24 prompts were used
    first = result.trace.by_name("propose")[0]
    assert "Possible next steps:" in first.messages[-1]["content"]
    # each depth's proposals shared one round, and its values one (later) round
    for d, rounds in rounds_by_depth(result, "propose").items():
        assert len(rounds) == 1, f"depth {d} proposals ran in rounds {rounds}"
    for d, rounds in rounds_by_depth(result, "value").items():
        assert len(rounds) == 1 and max(rounds_by_depth(result, "propose")[d]) < min(rounds)
    assert result.trace.by_name("answer"), "the run ends with an answer step"
    for s in result.trace.by_name("propose") + result.trace.by_name("value"):
        assert isinstance(s.parsed.get("parse_ok"), bool)
    assert result.final_answer.strip()


def test_tot_on_a_free_question_uses_the_generic_prompts(backend) -> None:
    result = run_strategy(FREE, "tot", None, backend, tiny(depth=1, k=2))
    tree = check_tree(result)
    assert tree["nodes"][0]["text"] == FREE and tree["variant"] == "bfs"
    first = result.trace.by_name("propose")[0]
    assert "Propose 2 different possible next steps" in first.messages[-1]["content"]
    assert (
        result.trace.by_name("answer")[0].parent == result.trace.by_name("propose")[0].id
        or len(tree["chosen"]) == 1
    )
    assert result.final_answer.strip()


def test_tot_dfs_on_a_24_puzzle(backend) -> None:
    result = run_strategy(PUZZLE, "tot", "dfs", backend, tiny(value_threshold=0.5))
    tree = check_tree(result)
    assert tree["variant"] == "dfs"
    # dfs expands one state at a time, at most breadth * depth of them
    assert 1 <= len(result.trace.by_name("propose")) <= 2


def test_tot_cli_json_prints_the_tree(settings) -> None:
    # the token budget ends the search after depth 1 (the CLI has no --breadth/--depth flags yet)
    args = ["run", "--strategy", "tot", "--json", "--max-new-tokens", "16", "--token-budget", "400", FREE]
    env = {
        **os.environ,
        "STUDIO_HOME": str(settings.data_dir),
        "STUDIO_THREADS": os.environ.get("STUDIO_THREADS", "1"),
    }
    out = subprocess.run(
        [sys.executable, "-m", "studio", *args], capture_output=True, text=True, timeout=900, env=env
    )
    assert out.returncode == 0, out.stderr[-2000:]
    trace = json.loads(out.stdout)
    assert trace["strategy"] == "tot" and trace["variant"] == "bfs"
    tree = trace["summary"]["tree"]
    assert tree["nodes"][0]["status"] == "root" and tree["chosen"][0] == "n0"
    assert len(tree["nodes"]) > 1 and any("token budget" in n for n in trace["notes"])
    assert {n["status"] for n in tree["nodes"]} <= {"root", "kept", "pruned", "chosen"}


# -- scripted output ------------------------------------------------------------------------------------------------
class Scripted(Backend):
    """Answers each prompt with ``reply(prompt)``; ``constrained`` says whether it claims to follow the schema."""

    def __init__(self, reply: Callable[[str, GenParams], str], constrained: bool = False) -> None:
        self.reply, self.constrained = reply, constrained
        self.model_name = "scripted"
        self.calls: list[tuple[int, GenParams]] = []

    def chat(
        self, conversations: Sequence[Conversation], params: GenParams, on_delta: OnDelta | None = None
    ) -> list[Completion]:
        self.calls.append((len(conversations), params))
        outs = []
        for c in conversations:
            text = self.reply(c[-1]["content"], params)
            constrained = self.constrained and params.schema is not None
            outs.append(
                Completion(text, 10, max(1, len(text) // 4), 0.01, model="scripted", constrained=constrained)
            )
        return outs

    def stream(self, conversation: Conversation, params: GenParams) -> Iterator[str]:
        yield self.reply(conversation[-1]["content"], params)


def game24_reply(propose: str, value: str, answer: str) -> Callable[[str, GenParams], str]:
    def reply(prompt: str, params: GenParams) -> str:
        if "Possible next steps:" in prompt:
            return propose
        if "Evaluate if given numbers can reach 24" in prompt:
            return value
        return answer

    return reply


SOLVING = {  # a model that proposes the right steps for 4 5 6 10 and values them "sure"
    "4 5 6 10": "10 - 4 = 6 (left: 5 6 6)\n5 * 6 = 30 (left: 4 6 30)",
    "5 6 6": "6 - 5 = 1 (left: 1 6)\n6 / 6 = 1 (left: 1 5)",
    "1 6": "6 * 1 = 6 (left: 6)\n6 - 1 = 5 (left: 5)",
}


def test_bfs_stops_at_a_solution_and_answers_from_the_chosen_path() -> None:
    steps = {
        "4 5 6 10": "10 - 4 = 6 (left: 5 6 6)\n5 + 6 = 11 (left: 4 10 11)",
        "5 6 6": "6 - 5 = 1 (left: 1 6)\n5 * 6 = 30 (left: 6 30)",
        "6 30": "30 - 6 = 24 (left: 24)\n30 + 6 = 36 (left: 36)",
        "1 6": "6 - 1 = 5 (left: 5)",
    }

    def reply(prompt: str, params: GenParams) -> str:
        if "Possible next steps:" in prompt:
            state = prompt.rsplit("Input: ", 1)[1].split("\n")[0].strip()
            return steps.get(state, "")
        if "Evaluate if given numbers" in prompt:
            state = prompt.strip().splitlines()[-1]
            return "sure" if state in ("5 6 6", "6 30", "24") else "impossible"
        return "5 * (10 - 4) - 6 = 24\nInput: 1 2 3 4"

    b = Scripted(reply)
    r = run_strategy(PUZZLE, "tot", "bfs", b, StrategyParams(breadth=1, depth=3, k=3, n_evaluate=2))
    tree = check_tree(r)
    chosen = [n for n in tree["nodes"] if n["id"] in tree["chosen"]]
    assert [n["text"] for n in chosen] == ["left: 4 5 6 10", "left: 5 6 6", "left: 6 30", "left: 24"]
    assert chosen[-1]["value"] == 2 * VALUES["sure"]  # n_evaluate samples summed
    assert r.final_answer == "5 * (10 - 4) - 6 = 24"  # the first line: the prompt ends in "Answer:"
    assert verify(r.final_answer, [4, 5, 6, 10]).ok
    pruned = [n for n in tree["nodes"] if n["status"] == "pruned"]
    assert {n["text"] for n in pruned} >= {"left: 4 10 11", "left: 36"}
    # value samples are sampled (temperature 0.7) when there are several
    assert {p.temperature for size, p in b.calls if size and p.max_new_tokens == 40} == {0.7}
    answer = r.trace.by_name("answer")[0]
    assert (
        "Steps:\n10 - 4 = 6 (left: 5 6 6)\n5 * 6 = 30 (left: 6 30)\n30 - 6 = 24 (left: 24)"
        in (answer.messages[-1]["content"])
    )


@pytest.mark.parametrize(
    "propose",
    ["", "   \n\n", "I think we should add the numbers.", "4 + 5 = 9\n9 + 6 = 15", "left: 1 2 3 4 5 6 7"],
)
def test_garbage_proposals_still_give_an_answer_with_notes(propose: str) -> None:
    b = Scripted(game24_reply(propose, "sure", "Answer: (10 - 4) * (5 - 6 / 6)"))
    r = run_strategy(PUZZLE, "tot", "bfs", b, StrategyParams(depth=3))
    assert r.error is None
    tree = check_tree(r)
    assert [n["id"] for n in tree["nodes"]] == ["n0"] and tree["chosen"] == ["n0"]
    prop = r.trace.by_name("propose")[0]
    assert prop.parsed["parse_ok"] is False and prop.notes
    assert any("no thought could be parsed" in n for n in r.trace.notes)
    assert r.final_answer == "(10 - 4) * (5 - 6 / 6)"


def test_all_impossible_values_still_choose_a_path() -> None:
    b = Scripted(game24_reply(SOLVING["4 5 6 10"], "impossible", ""))
    r = run_strategy(PUZZLE, "tot", "bfs", b, StrategyParams(depth=1, n_evaluate=2))
    tree = check_tree(r)
    assert all(n["value"] == pytest.approx(0.002) for n in tree["nodes"][1:])
    assert len(tree["chosen"]) == 2  # ties keep the first proposed
    assert r.final_answer == "10 - 4 = 6 (left: 5 6 6)"  # empty answer: the chosen path's steps
    assert any("answer step was empty" in n for n in r.trace.step(r.trace.by_name("answer")[0].id).notes)


def test_unreadable_values_count_zero_with_a_note_and_dfs_prunes_them() -> None:
    b = Scripted(game24_reply(SOLVING["4 5 6 10"], "1\nI can obtain 24.", "Answer: 24"))
    r = run_strategy(PUZZLE, "tot", "dfs", b, StrategyParams(depth=3, n_evaluate=1, value_threshold=1.0))
    tree = check_tree(r)
    assert [n["status"] for n in tree["nodes"][1:]] == ["chosen", "pruned"]  # the fallback: the best state
    assert all(s.parsed["parse_ok"] is False for s in r.trace.by_name("value"))
    assert any("no solution" in n for n in r.trace.notes)
    assert len(r.trace.by_name("propose")) == 1  # nothing above the threshold: no further expansion


def test_dfs_backtracks_from_a_dead_end() -> None:
    steps = {
        "4 5 6 10": "10 - 4 = 6 (left: 5 6 6)\n5 * 6 = 30 (left: 4 10 30)",
        "5 6 6": "6 - 5 = 1 (left: 1 6)",
        "1 6": "6 - 1 = 5 (left: 5)",
        "4 10 30": "10 - 4 = 6 (left: 6 30)",
        "6 30": "30 - 6 = 24 (left: 24)",
    }

    def reply(prompt: str, params: GenParams) -> str:
        if "Possible next steps:" in prompt:
            return steps.get(prompt.rsplit("Input: ", 1)[1].split("\n")[0].strip(), "")
        if "Evaluate if given numbers" in prompt:
            return "sure" if prompt.strip().splitlines()[-1] != "4 10 30" else "likely"
        return "Answer: 5 * 6 - (10 - 4) = 24"

    r = run_strategy(PUZZLE, "tot", "dfs", Scripted(reply), StrategyParams(breadth=3, depth=3, n_evaluate=1))
    tree = check_tree(r)
    by_text = {n["text"]: n for n in tree["nodes"]}
    assert by_text["left: 5 6 6"]["status"] == "pruned"  # explored first (sure), dead end: backtracked
    assert by_text["left: 5"]["status"] == "pruned"
    assert by_text["left: 24"]["status"] == "chosen"
    assert r.final_answer == "5 * 6 - (10 - 4) = 24"


def test_structured_outputs_are_read_as_json_and_bad_json_is_noted() -> None:
    def reply(prompt: str, params: GenParams) -> str:
        if "Possible next steps:" in prompt:
            assert params.schema is not None and '"thoughts"' in params.schema and "(left: " in params.schema
            return json.dumps(
                {"thoughts": ["10 - 4 = 6 (left: 5 6 6)", "nonsense", "5 + 6 = 11 (left: 4 10 11)"]}
            )
        if "Evaluate if given numbers" in prompt:
            assert params.schema is not None and "impossible" in params.schema
            return '{"value": "likely"}' if "5 6 6" in prompt.splitlines()[-1] else '{"value": "sur'
        return "Answer: 5 * (10 - 4) - 6 = 24"

    b = Scripted(reply, constrained=True)
    r = run_strategy(PUZZLE, "tot", "bfs", b, StrategyParams(depth=1, k=3, n_evaluate=1, structured=True))
    tree = check_tree(r)
    assert [n["thought"] for n in tree["nodes"][1:]] == [
        "10 - 4 = 6 (left: 5 6 6)",
        "5 + 6 = 11 (left: 4 10 11)",
    ]
    prop = r.trace.by_name("propose")[0]
    assert prop.constrained and prop.parsed["parse_ok"] is True and prop.parsed["dropped"] == 1
    values = {s.label.split(" ")[0]: s for s in r.trace.by_name("value")}
    assert values["n1"].parsed == {"verdict": "likely", "value": 1.0, "parse_ok": True}
    assert values["n2"].parsed["parse_ok"] is False  # cut-off JSON; "sur" is no verdict
    assert tree["nodes"][1]["status"] == "chosen"


def test_a_token_budget_stops_with_the_best_partial_path() -> None:
    b = Scripted(game24_reply(SOLVING["4 5 6 10"], "sure", "Answer: 24"))
    r = run_strategy(PUZZLE, "tot", "bfs", b, StrategyParams(depth=3, token_budget=60))
    assert r.error is None
    assert any("token budget" in n for n in r.trace.notes)
    assert r.final_answer == "10 - 4 = 6 (left: 5 6 6)"
    tree = r.trace.summary["tree"]
    assert tree["chosen"] == ["n0", "n1"] and "proposed" not in {n["status"] for n in tree["nodes"]}


# -- small readers ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "verdict"),
    [
        ("sure", "sure"),
        ("10 + 14 = 24\nSure.", "sure"),
        ("5 + 7 + 8 = 20\nlikely\n11 12\nimpossible", "likely"),
        ("I would say it is impossible to reach", "impossible"),
        ("**Likely**", "likely"),
        ("1\nI can obtain 24.", None),
        ("", None),
        ("unsure", None),
    ],
)
def test_parse_value(text: str, verdict: str | None) -> None:
    assert parse_value(text) == verdict


@pytest.mark.parametrize(
    ("question", "numbers"),
    [
        (PUZZLE, ["4", "5", "6", "10"]),
        ("Make 24 from 3, 3, 8 and 8.", ["3", "3", "8", "8"]),
        ("Game of 24: 1 2 3 4", ["1", "2", "3", "4"]),
        ("What is 24 times 3?", None),
        ("Obtain 24 somehow.", None),
        ("What is the capital of Australia?", None),
    ],
)
def test_game24_questions_are_recognised(question: str, numbers: list[str] | None) -> None:
    assert game24_numbers(question) == numbers
