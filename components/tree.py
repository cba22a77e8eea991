"""What a run built beyond its steps, as HTML: Tree of Thoughts' search tree and self-consistency's vote.

Pure functions from the summary dicts a strategy sets (``Trace.summary["tree"]`` and ``["vote"]``, live or as
stored) to HTML; no domain logic beyond display. Every text is escaped, and a malformed summary renders what it
can rather than fail (a strategy's bug must not blank a column).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from studio.arena import flaggable_nodes

#: a node's look by status: the chosen path stands out, pruned nodes are greyed, unvalued ones dashed
_NODE = "border:1px solid var(--border-color-primary);border-radius:6px;padding:3px 8px;margin:3px 0;"
_STATUS_STYLE = {
    "chosen": "background:rgba(16,185,129,.14);border:2px solid #059669;",
    "pruned": "opacity:.5;filter:grayscale(1);",
    "proposed": "border-style:dashed;",
}
_STATUS_BADGE = {
    "root": "#e0e7ff;color:#3730a3",
    "proposed": "#fef3c7;color:#92400e",
    "kept": "#dbeafe;color:#1e40af",
    "pruned": "#e5e7eb;color:#4b5563",
    "chosen": "#d1fae5;color:#065f46",
}
_DIM = "color:var(--body-text-color-subdued);font-size:0.88em;"
_PRE = "white-space:pre-wrap;word-break:break-word;margin:2px 0 4px;font-family:var(--font-mono);font-size:0.88em;"
_BADGE = "display:inline-block;border-radius:6px;padding:0 6px;margin-left:4px;font-size:0.8em;"
_VALUE = (
    "display:inline-block;min-width:2.2em;text-align:center;border-radius:9px;padding:0 5px;font-size:0.82em;"
    "font-family:var(--font-mono);background:rgba(99,102,241,.14);"
)
_UL = (
    "list-style:none;margin:0;padding-left:14px;border-left:2px solid var(--border-color-primary);"
    "font-size:inherit;"
)
_FLAG = (
    "margin:4px 0;padding:1px 8px;font:inherit;font-size:0.85em;border:1px solid var(--border-color-primary);"
    "border-radius:6px;cursor:pointer;background:var(--button-secondary-background-fill);"
)
_SHORT = 90  # characters of a thought on a node's one-line summary
_OUTPUT = 800  # characters of a step's output inside an opened node

#: how a column's tree HTML keeps opened nodes open while it is redrawn live, and hands a node's flag button
#: to the server (``trigger('click', {node, step})``): the gradio HTML component's ``js_on_load``
TREE_JS = """
const open = new Set();
element.addEventListener('toggle', (e) => {
  const d = e.target;
  if (d && d.dataset && d.dataset.node) { if (d.open) open.add(d.dataset.node); else open.delete(d.dataset.node); }
}, true);
watch('value', () => {
  element.querySelectorAll('details[data-node]').forEach((d) => { if (open.has(d.dataset.node)) d.open = true; });
});
element.addEventListener('click', (e) => {
  const b = e.target.closest('[data-flag-node]');
  if (b) { e.preventDefault(); trigger('click', {node: b.dataset.flagNode, step: b.dataset.flagStep}); }
});
"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _badge(text: str, colors: str = "#e5e7eb;color:#111827") -> str:
    return f'<span style="{_BADGE}background:{colors}">{_e(text)}</span>'


def _short(text: str, n: int = _SHORT) -> str:
    one = " ".join(str(text or "").split())
    return one if len(one) <= n else one[: n - 1] + "…"


def value_text(value: Any) -> str:
    """A node's value for display: ``12.5``, ``0.001``; ``…`` while it is not valued yet."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "…"
    return f"{value:.3g}"


def step_facts(step: Mapping[str, Any]) -> str:
    """What a step cost and how it ran, in words: its own decode time, whether it shared a batch, whether it
    ran constrained (plain text; the caller escapes)."""
    facts = [f"{float(step.get('latency_s') or 0):.2f} s"]
    n = int(step.get("batch_size") or 1)
    if n > 1:
        facts.append(f"shared a batch of {n}")
    if step.get("constrained"):
        facts.append("constrained (JSON schema)")
    return " · ".join(facts)


# -- Tree of Thoughts ------------------------------------------------------------------------------------------------
def _nodes(tree: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    nodes = tree.get("nodes") if isinstance(tree, Mapping) else None
    return [n for n in nodes or [] if isinstance(n, Mapping) and n.get("id") is not None]


def tree_stats(tree: Mapping[str, Any]) -> dict[str, int]:
    """Node counts by status (and ``nodes``, the total), for the tree's headline and for tests."""
    counts: dict[str, int] = {"nodes": 0}
    for n in _nodes(tree):
        counts["nodes"] += 1
        status = str(n.get("status") or "proposed")
        counts[status] = counts.get(status, 0) + 1
    return counts


def _step_html(sid: str, steps: Mapping[str, Mapping[str, Any]]) -> str:
    step = steps.get(sid)
    if step is None:
        return f'<div style="{_DIM}">{_e(sid)}</div>'
    out = str(step.get("output") or "")
    out = out if len(out) <= _OUTPUT else out[: _OUTPUT - 1] + "…"
    notes = "".join(f'<div style="{_DIM}">⚠ {_e(n)}</div>' for n in step.get("notes") or [])
    return (
        f'<div class="tot-step" data-step="{_e(sid)}"><span style="{_DIM}"><b>{_e(sid)}</b> · '
        f"{_e(step.get('name', ''))} · {_e(step_facts(step))}</span>"
        f'<pre style="{_PRE}">{_e(out)}</pre>{notes}</div>'
    )


def _node_html(
    node: Mapping[str, Any],
    children: Mapping[str, list[Mapping[str, Any]]],
    chosen: set[str],
    steps: Mapping[str, Mapping[str, Any]],
    targets: Mapping[str, str],
    seen: set[str],
) -> str:
    nid = str(node["id"])
    seen.add(nid)
    status = str(node.get("status") or "proposed")
    on_path = nid in chosen or status == "chosen"
    style = _NODE + (_STATUS_STYLE["chosen"] if on_path else _STATUS_STYLE.get(status, ""))
    classes = f"tot-node tot-{_e(status)}" + (" tot-chosen" if on_path and status != "chosen" else "")
    thought = str(node.get("thought") or "")
    line = _short(thought) if thought else _short(node.get("text") or "")
    pill = (
        f'<span class="tot-value" title="value" style="{_VALUE}">{_e(value_text(node.get("value")))}</span> '
        if status != "root" or node.get("value") is not None
        else ""
    )
    head = (
        f"{pill}{'<b>' if on_path else ''}{_e(line) or '<em>(empty)</em>'}{'</b>' if on_path else ''}"
        f"{_badge(status, _STATUS_BADGE.get(status, '#e5e7eb;color:#111827'))}"
    )
    value_steps = [str(s) for s in node.get("value_steps") or []]
    propose = node.get("propose_step")
    behind = [str(propose)] if propose else []
    behind += [s for s in value_steps if s not in behind]
    body = [f'<div style="{_DIM}">node {_e(nid)} · depth {_e(node.get("depth", "?"))}</div>']
    if thought:
        body.append(f'<div style="{_DIM}">Thought</div><pre style="{_PRE}">{_e(thought)}</pre>')
    body.append(f'<div style="{_DIM}">State</div><pre style="{_PRE}">{_e(node.get("text", ""))}</pre>')
    samples = f" from {len(value_steps)} evaluation step(s)" if value_steps else ""
    body.append(
        f'<div class="tot-node-value"><b>Value:</b> {_e(value_text(node.get("value")))}{_e(samples)}</div>'
    )
    if behind:
        body.append(
            f'<div style="{_DIM}">Steps behind it</div>' + "".join(_step_html(s, steps) for s in behind)
        )
    target = targets.get(nid)
    if target:
        body.append(
            f'<button type="button" class="tot-flag" data-flag-node="{_e(nid)}" data-flag-step="{_e(target)}" '
            f'style="{_FLAG}">Flag this node (step {_e(target)})…</button>'
        )
    kids = [c for c in children.get(nid, []) if str(c["id"]) not in seen]
    sub = "".join(_node_html(c, children, chosen, steps, targets, seen) for c in kids)
    return (
        f'<li><details class="{classes}" data-node="{_e(nid)}" data-status="{_e(status)}" style="{style}">'
        f'<summary style="cursor:pointer">{head}</summary>{"".join(body)}</details>'
        f"{f'<ul style={chr(34)}{_UL}{chr(34)}>{sub}</ul>' if sub else ''}</li>"
    )


def tree_html(
    tree: Mapping[str, Any] | None,
    steps: Iterable[Mapping[str, Any]] = (),
    *,
    flaggable: bool = False,
) -> str:
    """A Tree of Thoughts search tree (the ``tree`` summary) as nested, openable nodes: each shows its value and
    thought, and opens to its thought, state, value and the steps behind it (``steps``: the trace's steps, as
    dicts). Pruned nodes are greyed, the chosen path is highlighted. ``flaggable`` adds a button per node that
    flags the step its label goes to (:func:`studio.arena.node_step`)."""
    nodes = _nodes(tree or {})
    if not nodes:
        return ""
    t: Mapping[str, Any] = tree or {}
    by_step = {str(s.get("id")): s for s in steps if isinstance(s, Mapping)}
    ids = {str(n["id"]) for n in nodes}
    children: dict[str, list[Mapping[str, Any]]] = {}
    roots = []
    for n in nodes:
        parent = n.get("parent")
        if parent is not None and str(parent) in ids and str(parent) != str(n["id"]):
            children.setdefault(str(parent), []).append(n)
        else:
            roots.append(n)
    chosen_path = [str(c) for c in t.get("chosen") or []]
    chosen = set(chosen_path)
    targets = dict(flaggable_nodes(t)) if flaggable else {}
    seen: set[str] = set()
    body = "".join(_node_html(n, children, chosen, by_step, targets, seen) for n in roots)
    # a node whose parent chain loops hangs under no root: show it at the top rather than lose it
    body += "".join(
        _node_html(n, children, chosen, by_step, targets, seen) for n in nodes if str(n["id"]) not in seen
    )
    counts = tree_stats(t)
    variant = str(t.get("variant") or "").upper()
    limits = " · ".join(
        f"{k} {_e(t[k])}" for k in ("depth", "breadth") if isinstance(t.get(k), int | float | str)
    )
    pruned = f", {counts['pruned']} pruned" if counts.get("pruned") else ""
    path = " → ".join(chosen_path) if chosen_path else "searching…"
    head = (
        f'<div style="{_DIM}"><b>Tree of Thoughts</b>{" · " + _e(variant) if variant else ""}'
        f"{' · ' + limits if limits else ''} · {counts['nodes']} nodes{pruned} · chosen path: {_e(path)}</div>"
    )
    return f'<div class="tot-tree">{head}<ul style="{_UL}border-left:none;padding-left:0">{body}</ul></div>'


# -- self-consistency --------------------------------------------------------------------------------------------------
def vote_html(vote: Mapping[str, Any] | None) -> str:
    """Self-consistency's vote (the ``vote`` summary): the majority answer with its share, the tally as bars,
    and every path's final answer."""
    if not isinstance(vote, Mapping):
        return ""
    tally = vote.get("tally") if isinstance(vote.get("tally"), Mapping) else {}
    counts = {
        str(k): int(v) for k, v in tally.items() if isinstance(v, int | float) and not isinstance(v, bool)
    }
    paths = [p for p in vote.get("paths") or [] if isinstance(p, Mapping)]
    samples = vote.get("samples") or len(paths) or sum(counts.values())
    share = vote.get("share")
    share_text = f"{100 * float(share):.0f}%" if isinstance(share, int | float) else "?"
    top = max(counts.values(), default=0)
    total = max(sum(counts.values()), 1)
    rows = "".join(
        f'<div class="sc-tally-row" style="display:flex;gap:6px;align-items:center;margin:2px 0">'
        f'<span style="flex:0 0 9em;overflow:hidden;text-overflow:ellipsis;white-space:nowrap" title="{_e(ans)}">'
        f"{'<b>' if n == top else ''}{_e(ans) or '<em>(empty)</em>'}{'</b>' if n == top else ''}</span>"
        f'<span style="flex:1;background:var(--border-color-primary);border-radius:3px;height:8px">'
        f'<span style="display:block;height:8px;border-radius:3px;width:{100 * n / total:.0f}%;'
        f'background:{"#059669" if n == top else "#9ca3af"}"></span></span>'
        f'<span style="flex:0 0 auto">{n}</span></div>'
        for ans, n in sorted(counts.items(), key=lambda kv: -kv[1])
    )
    listed = "".join(
        f'<div style="{_DIM}">path {_e(p.get("path", i + 1))}: {_e(_short(p.get("final", ""), 120))}'
        f"{' → ' + _e(p['normalized']) if p.get('normalized') not in (None, '', p.get('final')) else ''}</div>"
        for i, p in enumerate(paths)
    )
    paths_box = (
        f'<details><summary style="cursor:pointer;{_DIM}">Paths</summary>{listed}</details>' if listed else ""
    )
    return (
        f'<div class="sc-vote"><div style="{_DIM}"><b>Self-consistency</b> · {_e(samples)} samples · '
        f'vote share <b class="sc-share">{_e(share_text)}</b></div>'
        f'<div style="margin:2px 0">Majority: <b>{_e(_short(vote.get("answer", ""), 120))}</b></div>'
        f"{rows}{paths_box}</div>"
    )


def summary_html(
    summary: Mapping[str, Any] | None, steps: Sequence[Mapping[str, Any]] = (), *, flaggable: bool = False
) -> str:
    """Everything of a run's ``Trace.summary`` the arena shows: the tree, the vote ('' when it has neither)."""
    if not isinstance(summary, Mapping):
        return ""
    parts = [tree_html(summary.get("tree"), steps, flaggable=flaggable), vote_html(summary.get("vote"))]
    return "".join(p for p in parts if p)
