"""The Arena's renderers and option parsing, as pure functions: Tree of Thoughts' tree and self-consistency's
vote (from hand-made summaries of the contract in ``Trace.summary``), the per-step caps text, the options sent,
and what a blind screen hides while a column's tree grows."""

from __future__ import annotations

import time
from collections.abc import Iterator
from html.parser import HTMLParser
from typing import Any

import pytest

from components import arena as ui
from components.tree import step_facts, summary_html, tree_html, tree_stats, vote_html
from studio import arena as svc
from studio.errors import InputError
from studio.strategies import RunResult, Step, StrategyParams, Trace, TraceEvent

TREE: dict[str, Any] = {
    "nodes": [
        {"id": "n0", "parent": None, "depth": 0, "text": "4 6 8 2", "thought": "", "value": None,
         "status": "root", "propose_step": None, "value_steps": []},
        {"id": "n1", "parent": "n0", "depth": 1, "text": "left: 6 12 2", "thought": "4 + 8 = 12 (left: 6 12 2)",
         "value": 21.0, "status": "chosen", "propose_step": "s1", "value_steps": ["s2", "s3"]},
        {"id": "n2", "parent": "n0", "depth": 1, "text": "left: 24 8 2", "thought": "4 * 6 = 24 (left: 24 8 2)",
         "value": 2.0, "status": "kept", "propose_step": "s1", "value_steps": ["s4"]},
        {"id": "n3", "parent": "n0", "depth": 1, "text": "left: 2 8 2", "thought": "6 - 4 = 2 (left: 2 8 2)",
         "value": 0.002, "status": "pruned", "propose_step": "s1", "value_steps": ["s5"]},
        {"id": "n4", "parent": "n1", "depth": 2, "text": "left: 2 12", "thought": "<b>6 / 3</b> = 2",
         "value": None, "status": "proposed", "propose_step": "s6", "value_steps": []},
        {"id": "n5", "parent": "n1", "depth": 2, "text": "left: 12 12", "thought": "6 * 2 = 12 (left: 12 12)",
         "value": 20.0, "status": "chosen", "propose_step": "s6", "value_steps": ["s7"]},
    ],
    "chosen": ["n0", "n1", "n5"],
    "variant": "bfs",
    "depth": 3,
    "breadth": 2,
}  # fmt: skip
VOTE = {
    "paths": [
        {"path": 1, "final": "Paris.", "normalized": "paris", "steps": ["s1"]},
        {"path": 2, "final": "Paris", "normalized": "paris", "steps": ["s2"]},
        {"path": 3, "final": "Lyon", "normalized": "lyon", "steps": ["s3"]},
    ],
    "tally": {"paris": 2, "lyon": 1},
    "answer": "Paris.",
    "share": 2 / 3,
    "samples": 3,
}


def step(sid: str, name: str, output: str = "", batch: int = 1, constrained: bool = False) -> dict[str, Any]:
    return Step(sid, name, None, [], {}, status="done", output=output, latency_s=0.25, batch_size=batch,
                constrained=constrained).to_dict()  # fmt: skip


STEPS = [
    step("s1", "propose", "4 + 8 = 12 (left: 6 12 2)", batch=1, constrained=True),
    step("s2", "value", "sure", batch=3),
    step("s3", "value", "likely", batch=3),
    step("s4", "value", "likely", batch=3),
    step("s5", "value", "impossible", batch=3),
    step("s6", "propose", "6 * 2 = 12", batch=2),
    step("s7", "value", "sure"),
]


class Nodes(HTMLParser):
    """The tree's nodes as the browser gets them: each <details data-node>'s attributes, the nodes it hangs
    under (its <li>'s ancestors: a node's children stay in view while it is closed), its summary line, and
    the flag buttons (node -> step)."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.nodes: dict[str, dict[str, Any]] = {}
        self.flags: dict[str, str] = {}
        self.items: list[str] = []  # the node of each open <li>
        self.summary: str | None = None
        self.feed(text)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        if tag == "li":
            self.items.append("")
        elif tag == "details" and a.get("data-node"):
            nid = a["data-node"] or ""
            self.nodes[nid] = {**a, "ancestors": [n for n in self.items[:-1] if n], "line": ""}
            self.items[-1] = nid
            self.current = nid
        elif tag == "summary":
            self.summary = self.current
        elif tag == "button" and a.get("data-flag-node"):
            self.flags[a["data-flag-node"] or ""] = a.get("data-flag-step") or ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "li":
            self.items.pop()
        elif tag == "summary":
            self.summary = None

    def handle_data(self, data: str) -> None:
        if self.summary:
            self.nodes[self.summary]["line"] += data


def test_the_tree_draws_every_node_greys_pruned_ones_and_highlights_the_chosen_path() -> None:
    text = tree_html(TREE, STEPS, flaggable=True)
    nodes = Nodes(text)
    assert list(nodes.nodes) == ["n0", "n1", "n4", "n5", "n2", "n3"], "depth first, children under parents"
    assert nodes.nodes["n4"]["ancestors"] == ["n0", "n1"] and nodes.nodes["n2"]["ancestors"] == ["n0"]
    highlighted = {n for n, a in nodes.nodes.items() if "#059669" in a["style"]}
    assert highlighted == {"n0", "n1", "n5"}, "the chosen path, root included"
    greyed = {n for n, a in nodes.nodes.items() if "grayscale" in a["style"]}
    assert greyed == {"n3"}
    assert nodes.nodes["n4"]["data-status"] == "proposed" and "dashed" in nodes.nodes["n4"]["style"]
    assert "21" in nodes.nodes["n1"]["line"] and "4 + 8 = 12" in nodes.nodes["n1"]["line"]
    assert "…" in nodes.nodes["n4"]["line"], "a node not valued yet says so"
    assert "&lt;b&gt;6 / 3&lt;/b&gt;" in text and "<b>6 / 3</b>" not in text, "thoughts are escaped"
    assert "chosen path: n0 → n1 → n5" in text and "6 nodes, 1 pruned" in text and "BFS" in text
    # a node opens to its thought, state, value and the steps behind it, each with its own timing
    assert "Thought" in text and "State" in text and "Value:</b> 21 from 2 evaluation step(s)" in text
    assert "shared a batch of 3" in text and "constrained (JSON schema)" in text and "0.25 s" in text
    # a flag goes to the node's first value step, or its propose step; the root has neither
    assert nodes.flags == {"n1": "s2", "n4": "s6", "n5": "s7", "n2": "s4", "n3": "s5"}
    assert {n: svc.node_step(TREE, n) for n in ("n0", "n1", "n4", "nx")} == {
        "n0": None, "n1": "s2", "n4": "s6", "nx": None,
    }  # fmt: skip
    assert not Nodes(tree_html(TREE, STEPS)).flags, "no flag buttons unless asked"
    assert tree_stats(TREE) == {"nodes": 6, "root": 1, "chosen": 2, "kept": 1, "pruned": 1, "proposed": 1}


def test_a_live_or_malformed_tree_still_draws_what_it_can() -> None:
    live = {**TREE, "chosen": [], "nodes": TREE["nodes"][:4]}
    assert "chosen path: searching…" in tree_html(live)
    assert (
        tree_html(None) == "" and tree_html({"nodes": "oops"}) == "" and tree_html({"nodes": [1, None]}) == ""
    )
    loop = {"nodes": [{"id": "a", "parent": "b"}, {"id": "b", "parent": "a"}, {"id": "c", "parent": "c"}]}
    assert set(Nodes(tree_html(loop)).nodes) == {"a", "b", "c"}, "a parent loop loses no node"
    assert summary_html({"tree": {"nodes": []}}) == "" and summary_html(None) == ""


def test_the_vote_shows_the_tally_and_the_share() -> None:
    text = vote_html(VOTE)
    assert 'vote share <b class="sc-share">67%</b>' in text and "3 samples" in text
    assert text.index("paris") < text.index("lyon"), "the majority first"
    assert "Majority: <b>Paris.</b>" in text and "path 3: Lyon" in text
    both = summary_html({"tree": TREE, "vote": VOTE})
    assert "tot-tree" in both and "sc-vote" in both
    assert vote_html({"tally": "x"}) and vote_html(None) == ""


def test_step_facts_say_how_a_step_ran() -> None:
    assert step_facts({"latency_s": 1.234}) == "1.23 s"
    assert step_facts({"latency_s": 0.5, "batch_size": 4, "constrained": True}) == (
        "0.50 s · shared a batch of 4 · constrained (JSON schema)"
    )


# -- decoding options -------------------------------------------------------------------------------------------------
def test_step_caps_are_read_from_text() -> None:
    assert ui.step_caps("merge=160, answer=96") == {"merge": 160, "answer": 96}
    assert ui.step_caps(" merge: 160;\nvalue=8 ,") == {"merge": 160, "value": 8}
    assert ui.step_caps("") == {} and ui.step_caps(None) == {}
    assert ui.caps_text({"merge": 160, "answer": 96}) == "merge=160, answer=96"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("merge 160", "are written 'step=tokens, …' (e.g. 'merge=160, answer=96'); 'merge 160' is not"),
        ("160", "are written 'step=tokens"),
        ("merge=lots", "the cap of merge must be a whole number >= 1, not 'lots'"),
        ("merge=0", "the cap of merge must be a whole number >= 1, not '0'"),
        ("merge=1.5", "whole number"),
        ("mrege=160", "'mrege' is not a step name; the steps: answer, baseline"),
        ("merge=1, merge=2", "merge is given twice"),
    ],
)
def test_bad_step_caps_are_one_clear_message(text: str, message: str) -> None:
    with pytest.raises(InputError) as e:
        ui.step_caps(text)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_only_the_options_changed_from_the_model_defaults_are_sent() -> None:
    defaults = StrategyParams().to_dict() | {"repetition_penalty": 1.1, "step_max_tokens": {"merge": 160}}
    shown = {f: defaults[f] for f in ui.OPTION_FIELDS} | {"step_max_tokens": ui.caps_text({"merge": 160})}
    assert ui.option_params(shown, defaults) == {}, "nothing changed: each model keeps its own defaults"
    changed = shown | {"breadth": 1, "depth": 2.0, "repetition_penalty": 1.0, "step_max_tokens": "merge=96",
                       "structured": True, "samples": 3}  # fmt: skip
    assert ui.option_params(changed, defaults) == {
        "breadth": 1, "depth": 2, "repetition_penalty": 1.0, "step_max_tokens": {"merge": 96},
        "structured": True, "samples": 3,
    }  # fmt: skip
    sent = ui.option_params(changed, defaults)
    assert StrategyParams.from_dict(sent).breadth == 1, "what is sent is valid StrategyParams fields"
    with pytest.raises(InputError, match="repetition penalty must be between 0.5 and 3"):
        ui.option_params(shown | {"repetition_penalty": 5}, defaults)
    with pytest.raises(InputError, match="ToT breadth must be >= 1"):
        ui.option_params(shown | {"breadth": 0}, defaults)


# -- the screen while a tree grows ------------------------------------------------------------------------------------
def tot_run(final: bool) -> Iterator[svc.ArenaUpdate]:
    """Column 0 runs ToT (steps, a half-grown tree, a pause, the whole tree, maybe its end and storing); column 1
    is still decoding."""
    half = {**TREE, "chosen": [], "nodes": TREE["nodes"][:4]}
    for s in STEPS:
        yield svc.ArenaUpdate("event", 0, event=TraceEvent("step_started", 0, step=Step.from_dict(s)))
    yield svc.ArenaUpdate("event", 0, event=TraceEvent("summary", 0, text="tree", data=half))
    time.sleep(ui.REFRESH_S * 1.5)  # the screen is redrawn at most every REFRESH_S
    yield svc.ArenaUpdate("event", 1, event=TraceEvent("step_started", 1, step=Step.from_dict(STEPS[0])))
    yield svc.ArenaUpdate("event", 0, event=TraceEvent("summary", 0, text="tree", data=TREE))
    if final:
        trace = Trace("tot", "bfs", "m", "q", {}, summary={"tree": TREE}, final_answer="24")
        result = RunResult("q", "tot", "bfs", "m", StrategyParams(), "24", trace)
        yield svc.ArenaUpdate("event", 0, event=TraceEvent("run_finished", 0, result=result))
        steps = [[(s["id"], s["name"]) for s in STEPS], [("s1", "propose")]]
        state = svc.ArenaState("q", 1, None, False, ["tot:bfs @ m", "cot @ m"], [1, None], steps, ["24", ""],
                               [None, None])  # fmt: skip
        yield svc.ArenaUpdate("stored", 0, state=state)


SUMS = slice(7 + 5 * ui.N, 7 + 6 * ui.N)  # the column summaries among the run's outputs
HEADERS = slice(7 + ui.N, 7 + 2 * ui.N)


def test_the_tree_grows_live_when_not_blind_and_never_shows_while_blind() -> None:
    open_run = list(ui._render_stream(tot_run(final=True), 2, False, "q"))
    first, *_, last = open_run
    assert first[SUMS][0] == "", "the first screen clears the trees of the run before"
    drawn = [Nodes(s[SUMS][0]) for s in open_run if isinstance(s[SUMS][0], str) and s[SUMS][0]]
    assert [list(d.nodes) for d in drawn] == [
        ["n0", "n1", "n2", "n3"],
        ["n0", "n1", "n4", "n5", "n2", "n3"],
    ], "drawn as it grows, each change once"
    assert drawn[-1].flags["n1"] == "s2", "with its flag buttons"
    assert last[HEADERS][0].value.endswith("· done") and not last[HEADERS][1].value.endswith("done"), (
        "a column is done once its run finished, while the other still decodes"
    )
    blind_run = list(ui._render_stream(tot_run(final=True), 2, True, "q"))
    for screen in blind_run:
        assert all(s in ("", {"__type__": "update"}) for s in screen[SUMS]), "no tree while blind"
        assert "tot" not in str(screen[HEADERS][0].value)


def test_an_unchanged_tree_is_not_redrawn_so_opened_nodes_stay_open() -> None:
    sent = ui.Sent()
    traces = [{"steps": STEPS, "notes": [], "question": "q", "strategy": "tot", "model": "m",
               "summary": {"tree": TREE}}]  # fmt: skip
    state = svc.ArenaState(blind=False, columns=["tot:bfs @ m"], run_ids=[None], step_ids=[[(s["id"], s["name"])
                           for s in STEPS]], answers=[""], errors=[None])  # fmt: skip
    args = (state, traces, [{}], [None], [None], 1, False)
    a = ui._screen(*args, final=False, first=True, sent=sent)
    b = ui._screen(*args, final=False, first=False, sent=sent)
    assert "tot-tree" in a[SUMS][0] and b[SUMS][0] == {"__type__": "update"}
    assert b[3] == {"__type__": "update"}, "the flag picker keeps what was picked"
    node_choices = [v for _, v in a[3].choices if v.count("|") == 2]
    assert node_choices == ["0|s2|n1", "0|s4|n2", "0|s5|n3", "0|s6|n4", "0|s7|n5"]
    assert ui._step("0|s2|n1") == (0, "s2") and ui._node("0|s2|n1") == "n1" and ui._node("0|s2") == ""
