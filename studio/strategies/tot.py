"""Tree of Thoughts (ToT), Yao et al. 2023, arXiv 2305.10601.

A *thought* is one intermediate step (Game of 24: ``4 + 8 = 12 (left: 6 12)``); a *state* is the question plus
the thoughts so far. From each state the model **proposes** up to ``k`` next thoughts in one call, then
**values** each new state ``n_evaluate`` times (sure / likely / impossible, summed as 20 / 1 / 0.001, the paper
repo's ``value_outputs_unwrap``). The search:

- ``bfs`` (default): per depth, every kept state's proposals go to the model as **one** batch, then every new
  state's value samples as one batch; the best ``breadth`` states are kept (greedy selection, as the paper).
- ``dfs``: best-first depth-first search; a state valued below ``value_threshold`` is pruned, a dead end is
  backtracked from. At most ``breadth * depth`` states are expanded.

Both stop at ``depth`` or at a solution (Game of 24: a state ``left: 24``; otherwise a thought that starts
with "Answer:"), then an ``answer`` step writes the final answer from the chosen path (Game of 24: the paper's
5-shot CoT prompt with the steps, which the model completes with the expression).

Game-of-24 questions (:func:`game24_numbers`) get the paper's prompts (``prompts/tot_*_game24.txt``, from the
paper's repo); any other question gets generic propose / value / answer prompts written to the same structure.
The paper's Game-of-24 setting is b=5, n_evaluate=3, depth 3 (GPT-4: 74% solved; CoT 4%); the defaults here
(b=2, k=3, n_evaluate=2, depth 3, from :class:`StrategyParams`) keep a run feasible for a 135M model on a CPU.
Without a ``step_max_tokens`` entry, the steps are capped at :data:`STEP_CAPS` new tokens.

The trace is a tree: a propose step's parent is the propose step that produced its state (None for the root), a
value step's parent is the propose step of the state it values. ``trace.summary["tree"]`` holds the search
tree (nodes with values and statuses, the chosen path), updated live after proposals, values and selection.
"""

from __future__ import annotations

import re
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

from studio.backends.base import Completion
from studio.strategies.base import RunContext, StepRequest, Strategy, StrategyGen, render
from studio.strategies.parsing import (
    json_field,
    json_salvage_strings,
    json_strings,
    json_text,
    parse_json,
    parse_list,
    split_cot,
)
from studio.strategies.schemas import load_schema

#: the paper repo's value map (``value_outputs_unwrap``: "TODO: ad hoc")
VALUES = {"sure": 20.0, "likely": 1.0, "impossible": 0.001}
#: new-token caps per step when the run's ``step_max_tokens`` does not name the step (a thought is one line)
STEP_CAPS = {"propose": 96, "value": 40, "answer": 64}
VALUE_TEMPERATURE = 0.7  # value samples are sampled when there are several (n_evaluate > 1)
NOT_JSON = "the constrained output is not the expected JSON; read it as free text"
_24_TASK = re.compile(
    r"\b(?:obtain|make|reach|get|equal|equals)\s+24\b|\bgame\s+of\s+24\b|\b24\s+game\b", re.I
)
_INPUT = re.compile(r"\binput\s*:\s*([\d\s,]+)", re.IGNORECASE)
_LEFT = re.compile(r"^(?P<step>.*?)\(\s*left\s*:\s*(?P<left>[^)]*)\)", re.IGNORECASE)
_NUMBER = re.compile(r"-?\d+(?:\.\d+)?(?:/\d+)?")
_VERDICT = re.compile(r"\b(sure|likely|impossible)\b", re.IGNORECASE)

Gen = Generator[list[StepRequest], list[Completion], Any]


def game24_numbers(question: str) -> list[str] | None:
    """The numbers of a Game-of-24 question ("... obtain 24. Input: 4 4 6 8"), or None if it is not one.

    The one place that decides whether the Game-of-24 prompts are used: the question names the task (obtain /
    make / reach 24, "Game of 24") and gives 2 to 6 whole numbers (after "Input:" if present)."""
    if not _24_TASK.search(question or ""):
        return None
    m = _INPUT.search(question)
    pool = m.group(1) if m else _24_TASK.sub(" ", question)
    numbers = re.findall(r"(?<![\d.])\d+(?!\d|\.\d)", pool)
    return numbers if 2 <= len(numbers) <= 6 else None


@dataclass
class Node:
    """One state of the search tree (``summary["tree"]["nodes"]``, see the preamble's ToT contract)."""

    id: str
    parent: Node | None
    depth: int
    text: str  # the state: "left: 6 12" (Game of 24), the steps so far (other questions), the root's input
    thought: str  # the thought that led here ("" for the root)
    steps: tuple[str, ...] = ()  # the thoughts from the root to here
    left: tuple[str, ...] = ()  # Game of 24: the numbers still to combine
    value: float | None = None
    status: str = "proposed"
    propose_step: str | None = None
    value_steps: list[str] = field(default_factory=list)
    solved: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "parent": self.parent.id if self.parent else None,
            "depth": self.depth,
            "text": self.text,
            "thought": self.thought,
            "value": self.value,
            "status": self.status,
            "propose_step": self.propose_step,
            "value_steps": list(self.value_steps),
        }

    def path(self) -> list[Node]:
        out, node = [], self
        while node is not None:
            out.append(node)
            node = node.parent
        return out[::-1]


class TreeOfThoughts(Strategy):
    """Tree of Thoughts: propose k thoughts per state, value each state (sure / likely / impossible, sampled
    n_evaluate times), keep the best b per depth (bfs) or search depth-first with pruning (dfs); the paper's
    Game-of-24 setting is b=5, n_evaluate=3, depth 3."""

    description = (
        "Tree of Thoughts: propose thoughts, value the states, search (bfs keeps the best b per depth)."
    )
    source = "Yao et al. 2023, arXiv 2305.10601"
    variants = ("bfs", "dfs")

    def run(self, question: str, ctx: RunContext) -> StrategyGen:
        search = _Search(question, ctx, self.variant or "bfs")
        return (yield from search.run())


class _Search:
    def __init__(self, question: str, ctx: RunContext, variant: str) -> None:
        self.question, self.ctx, self.variant = question, ctx, variant
        self.p = ctx.params
        self.numbers = game24_numbers(question)
        self.nodes: list[Node] = []
        self.chosen: list[str] = []
        self.seen: set[tuple[int, str]] = set()  # states already in the tree (a repeat is not proposed twice)
        root_text = f"left: {' '.join(self.numbers)}" if self.numbers else question
        self.root = self._add(None, root_text, "", (), tuple(self.numbers or ()))
        self.root.status = "root"
        self.best = self.root
        self.expansions = 0

    @property
    def game24(self) -> bool:
        return self.numbers is not None

    # -- the search ----------------------------------------------------------------------------------------------
    def run(self) -> Gen:
        self._publish()
        try:
            if self.variant == "dfs":
                best = yield from self._dfs(self.root)
                best = best or self._fallback()
            else:
                best = yield from self._bfs()
        except GeneratorExit:  # stopped by the driver (token budget): the tree ends at the best state so far
            self._choose(self.best)
            raise
        return (yield from self._answer(best))

    def _bfs(self) -> Gen:
        frontier = [self.root]
        best = self.root
        for _ in range(self.p.depth):
            children = yield from self._expand(frontier)
            if not children:
                self.ctx.note(
                    f"no thought could be parsed at depth {frontier[0].depth + 1}; the search stops"
                )
                break
            yield from self._evaluate(children)
            ranked = sorted(children, key=_rank, reverse=True)
            kept = ranked[: self.p.breadth]
            for node in ranked:
                node.status = "kept" if node in kept else "pruned"
            self._publish()
            best, frontier = kept[0], kept
            self._best(best, f"best state at depth {best.depth}")
            if best.solved:
                break
        return best

    def _dfs(self, node: Node) -> Gen:
        """Best-first DFS from ``node``: the solved state found, or None after backtracking."""
        if node.solved:
            return node
        if node.depth >= self.p.depth:
            # a Game-of-24 leaf that is not 24 is a dead end; elsewhere the depth limit ends the path
            return None if self.game24 else node
        if self.expansions >= self.p.breadth * self.p.depth:
            return None
        children = yield from self._expand([node])
        if children:
            yield from self._evaluate(children)
        for child in children:
            child.status = (
                "kept" if (child.value or 0.0) >= self.p.value_threshold or child.solved else "pruned"
            )
        self._publish()
        for child in sorted((c for c in children if c.status == "kept"), key=_rank, reverse=True):
            self._best(child, f"dfs state at depth {child.depth}")
            found = yield from self._dfs(child)
            if found is not None:
                return found
            if child.status == "kept" and self.expansions < self.p.breadth * self.p.depth:
                child.status = "pruned"  # explored without a solution: backtrack
        return None

    def _fallback(self) -> Node:
        self.ctx.note("dfs found no solution within its limits; the answer follows the best state found")
        scored = [n for n in self.nodes if n.value is not None and n.status != "pruned"] or [
            n for n in self.nodes if n.value is not None
        ]
        return max(scored, key=lambda n: (n.depth, n.value or 0.0), default=self.root)

    # -- propose -------------------------------------------------------------------------------------------------
    def _expand(self, states: list[Node]) -> Gen:
        """One propose request per state, all in one round; the new nodes (also published)."""
        reqs = [self._propose_request(s) for s in states]
        self.expansions += len(states)
        outs = yield reqs
        children: list[Node] = []
        for state, req, out in zip(states, reqs, outs, strict=True):
            children += self._read_proposals(state, req.id, out)
        self._publish()
        return children

    def _propose_request(self, state: Node) -> StepRequest:
        k = self.p.k
        if self.game24:
            prompt = render("tot_propose_game24", input=" ".join(state.left))
            schema = load_schema(
                "tot_propose_game24", k=k, thought_pattern=thought_pattern(len(state.left) - 1)
            )
        else:
            steps = "\n".join(state.steps) or "(none yet)"
            prompt = render("tot_propose", question=self.question, steps=steps, k=str(k))
            schema = load_schema("tot_propose", k=k)
        return self.ctx.request(
            "propose", prompt, parent=state.propose_step, label=f"{state.id}: {_short(state.text)}",
            schema=schema, **self._cap("propose"),
        )  # fmt: skip

    def _read_proposals(self, state: Node, step_id: str, out: Completion) -> list[Node]:
        items, from_json = _thought_items(out)
        if out.constrained and not from_json:
            self.ctx.note(NOT_JSON, step=step_id)
        thoughts, dropped, repeats = [], 0, 0
        for item in items:
            thought, left = _game24_thought(item, len(state.left)) if self.game24 else (item, ())
            if thought is None:
                dropped += 1
                continue
            key = " ".join(sorted(left)) if self.game24 else re.sub(r"\W+", " ", thought.lower())
            if (state.depth, key) in self.seen:
                repeats += 1
                continue
            self.seen.add((state.depth, key))
            thoughts.append((thought, left))
            if len(thoughts) >= self.p.k:
                break
        if dropped:
            what = "a '(left: ...)' part with one number fewer" if self.game24 else "text"
            self.ctx.note(f"dropped {dropped} proposed line(s) without {what}", step=step_id)
        if repeats:
            self.ctx.note(f"skipped {repeats} thought(s) that repeat a state already proposed", step=step_id)
        if not thoughts:
            self.ctx.note(
                "no thought could be parsed from this proposal; the state is not expanded", step=step_id
            )
        nodes = [self._child(state, t, left, step_id) for t, left in thoughts]
        ok = bool(thoughts) and (from_json or not out.constrained)
        self.ctx.parsed(step_id, thoughts=[n.thought for n in nodes], nodes=[n.id for n in nodes],
                        dropped=dropped, parse_ok=ok)  # fmt: skip
        return nodes

    def _child(self, state: Node, thought: str, left: tuple[str, ...], step_id: str) -> Node:
        steps = (*state.steps, thought)
        if self.game24:
            text = f"left: {' '.join(left)}"
            solved = len(left) == 1 and _num(left[0]) == 24
        else:
            text = "\n".join(steps)
            solved = split_cot(thought).marker_found
        node = self._add(state, text, thought, steps, left)
        node.propose_step, node.solved = step_id, solved
        return node

    # -- value ---------------------------------------------------------------------------------------------------
    def _evaluate(self, nodes: list[Node]) -> Gen:
        """``n_evaluate`` value samples per node, all in one round; sets each node's value."""
        n = self.p.n_evaluate
        overrides = self._cap("value")
        if n > 1:
            overrides["temperature"] = VALUE_TEMPERATURE
        reqs: list[tuple[Node, StepRequest]] = []
        for node in nodes:
            prompt = (
                render("tot_value_game24", input=" ".join(node.left))
                if self.game24
                else render("tot_value", question=self.question, steps=node.text)
            )
            for i in range(n):
                req = self.ctx.request(
                    "value", prompt, parent=node.propose_step, label=f"{node.id} ({i + 1}/{n}): {_short(node.thought)}",
                    schema=load_schema("tot_value"), **overrides,
                )  # fmt: skip
                node.value_steps.append(req.id)
                reqs.append((node, req))
        outs = yield [r for _, r in reqs]
        verdicts: dict[str, list[str | None]] = {}
        for (node, req), out in zip(reqs, outs, strict=True):
            verdict = self._read_value(req.id, out)
            verdicts.setdefault(node.id, []).append(verdict)
        for node in nodes:
            got = verdicts.get(node.id, [])
            node.value = round(sum(VALUES.get(v or "", 0.0) for v in got), 3)
            if got and all(v is None for v in got):
                self.ctx.note(f"{node.id}: no value sample gave sure / likely / impossible; its value is 0",
                              step=node.value_steps[0])  # fmt: skip
        self._publish()

    def _read_value(self, step_id: str, out: Completion) -> str | None:
        verdict, from_json = None, False
        if out.constrained:
            word = json_text(json_field(parse_json(out.text), "value"))
            if word and word.lower() in VALUES:
                verdict, from_json = word.lower(), True
            else:
                self.ctx.note(NOT_JSON, step=step_id)
        if verdict is None:
            verdict = parse_value(out.text)
        ok = verdict is not None and (from_json or not out.constrained)
        self.ctx.parsed(step_id, verdict=verdict, value=VALUES.get(verdict or "", 0.0), parse_ok=ok)
        return verdict

    # -- the answer ----------------------------------------------------------------------------------------------
    def _choose(self, best: Node) -> list[Node]:
        """End the search at ``best``: its path is chosen, states still open are pruned; published."""
        path = best.path()
        self.chosen = [n.id for n in path]
        for n in path[1:]:
            n.status = "chosen"
        for n in self.nodes:
            if n.status == "proposed":
                n.status = "pruned"
        self._publish()
        return path

    def _answer(self, best: Node) -> Gen:
        path = self._choose(best)
        if self.game24 and not best.solved:
            self.ctx.note(f"no state reached 'left: 24' within depth {self.p.depth}; the answer follows the "
                          f"best state ({best.id}, {best.text})")  # fmt: skip
        if len(path) == 1:
            self.ctx.note("no thought survived the search; the answer is written from the question alone")
        steps = "\n".join(best.steps)
        if self.game24:
            prompt = render("tot_answer_game24", input=" ".join(self.numbers or ()), steps=steps)
        else:
            prompt = render("tot_answer", question=self.question, steps=steps or "(none)")
        req = self.ctx.request(
            "answer", prompt, parent=best.propose_step, label=f"{best.id}", **self._cap("answer")
        )
        (out,) = yield [req]
        final = _final(out.text, self.game24)
        self.ctx.parsed(req.id, final=final, chosen=self.chosen)
        if not final:
            self.ctx.note(
                "the answer step was empty; the final answer is the chosen path's steps", step=req.id
            )
            return self._partial(best)
        return final

    # -- helpers -------------------------------------------------------------------------------------------------
    def _add(
        self, parent: Node | None, text: str, thought: str, steps: tuple[str, ...], left: tuple[str, ...]
    ) -> Node:
        node = Node(
            f"n{len(self.nodes)}", parent, parent.depth + 1 if parent else 0, text, thought, steps, left
        )
        self.nodes.append(node)
        return node

    def _cap(self, step: str) -> dict[str, Any]:
        if step in self.p.step_max_tokens:
            return {}
        return {"max_new_tokens": min(STEP_CAPS[step], self.p.max_new_tokens)}

    def _best(self, node: Node, source: str) -> None:
        """The best state so far: a token-budget stop answers with its steps and ends the tree there."""
        self.best = node
        self.ctx.set_best(self._partial(node), source)

    def _partial(self, node: Node) -> str:
        return "\n".join(node.steps) or self.question

    def _publish(self) -> None:
        self.ctx.set_summary(
            "tree",
            {
                "nodes": [n.to_dict() for n in self.nodes],
                "chosen": list(self.chosen),
                "variant": self.variant,
                "depth": self.p.depth,
                "breadth": self.p.breadth,
            },
        )


# -- reading outputs (never raise) -----------------------------------------------------------------------------------
def _thought_items(out: Completion) -> tuple[list[str], bool]:
    """The proposed thoughts of one output, and whether they came from the expected JSON."""
    if out.constrained:
        items = json_strings(json_field(parse_json(out.text), "thoughts"))
        if items is not None:
            return items, True
        salvaged = json_salvage_strings(out.text)
        if salvaged:
            return salvaged, False
    items = []
    for line in (out.text or "").splitlines():  # line by line: a thought line is its own item
        items += parse_list(line, split_commas=False)
    return items, False


def _game24_thought(item: str, n_left: int) -> tuple[str | None, tuple[str, ...]]:
    """``"4 + 8 = 12 (left: 6 12)"`` -> (that thought, ("6", "12")); None when the line has no "(left: ...)" with
    one number fewer than the state (the arithmetic itself is the model's to judge, as in the paper)."""
    m = _LEFT.search(item)
    if not m:
        return None, ()
    left = tuple(_NUMBER.findall(m.group("left")))
    if len(left) != n_left - 1 or not m.group("step").strip():
        return None, ()
    return f"{' '.join(m.group('step').split())} (left: {' '.join(left)})", left


_NUM_RE = r"-?[0-9]{1,5}(\.[0-9]{1,3})?"


def thought_pattern(n_left: int) -> str:
    """The regex a structured Game-of-24 thought follows: ``a op b = c (left: ...)`` with ``n_left`` numbers left
    (the paper's line format; the arithmetic stays the model's)."""
    more = f"( {_NUM_RE}){{{n_left - 1}}}" if n_left > 1 else ""
    return f"^{_NUM_RE} [-+*/] {_NUM_RE} = {_NUM_RE} \\(left: {_NUM_RE}{more}\\)$"


def parse_value(text: str) -> str | None:
    """A value sample's verdict: a line that is just sure / likely / impossible (the repo reads the last line; a
    small model keeps writing the next few-shot example after it, so the first such line wins), else the first
    of the three words anywhere; None if there is none."""
    lines = [re.sub(r"[^a-z]", "", ln.lower()) for ln in (text or "").splitlines()]
    for line in lines:
        if line in VALUES:
            return line
    m = _VERDICT.search(text or "")
    return m.group(1).lower() if m else None


def _final(text: str, game24: bool) -> str:
    """The answer step's final answer: after an "Answer:" marker, else (Game of 24, where the prompt ends in
    "Answer:") the first line, else the last line."""
    split = split_cot(text)
    if split.marker_found or not game24:
        return split.final
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    return lines[0] if lines else ""


def _rank(node: Node) -> tuple[bool, float]:
    return (node.solved, node.value or 0.0)


def _num(text: str) -> float:
    try:
        if "/" in text:
            a, b = text.split("/", 1)
            return float(a) / float(b)
        return float(text)
    except (ValueError, ZeroDivisionError):
        return float("nan")


def _short(text: str, n: int = 60) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"
