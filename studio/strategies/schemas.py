"""JSON schemas of the parsed steps, kept as data beside their prompts (``<name>.schema.json``).

A schema file is the JSON schema one step's output follows when a run is ``structured``
(:meth:`~studio.strategies.base.RunContext.request` ``schema=``). Its ``$comment`` cites the step and is not sent.
A string value ``"{name}"`` is a limit filled in per run (``maxItems`` = the run's ``max_questions``), so one
file serves every setting. The schema only constrains the *form* of the output; the prompt's published wording is
unchanged.
"""

from __future__ import annotations

import json
import re
from functools import cache
from pathlib import Path
from typing import Any

from studio.strategies.base import PROMPTS_DIR

_SLOT = re.compile(r"^\{([a-z_]+)\}$")


@cache
def _read(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def _fill(node: Any, values: dict[str, Any], where: str) -> Any:
    if isinstance(node, dict):
        return {k: _fill(v, values, where) for k, v in node.items() if k != "$comment"}
    if isinstance(node, list):
        return [_fill(v, values, where) for v in node]
    if isinstance(node, str) and (m := _SLOT.match(node)):
        if m.group(1) not in values:
            raise KeyError(f"schema {where!r} needs {m.group(1)}")
        return values[m.group(1)]
    return node


def load_schema(name: str, folder: Path = PROMPTS_DIR, **values: Any) -> dict[str, Any]:
    """The schema ``<folder>/<name>.schema.json`` with its ``"{slot}"`` limits filled from ``values``."""
    return _fill(json.loads(_read(folder / f"{name}.schema.json")), values, name)


def schema_names(folder: Path = PROMPTS_DIR) -> list[str]:
    return sorted(p.name.removesuffix(".schema.json") for p in folder.glob("*.schema.json"))
