"""A method: a reasoning strategy and its variant, written ``strategy[:variant]`` (``cove:factored``, ``s2a``).

This is the one place that parses, writes and lists methods. The arena's columns (``method @ model``), the eval
runner's ``--strategies``, compare-with-parent's ``--strategy``, the leaderboard's contestants, the Data tab and
the pickers all go through :class:`Method` and :func:`method_choices`. The store filters runs by the same name
(``storage.pairs.method_sql`` writes it in SQL: a filter ``cove`` or ``cove:factored`` matches a CoVe factored run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from studio.errors import InputError
from studio.strategies import STRATEGIES, Strategy, make_strategy

SEP = ":"


@dataclass(frozen=True)
class Method:
    """A strategy name and its variant (None: the strategy has none, or its default is meant)."""

    strategy: str
    variant: str | None = None

    @property
    def label(self) -> str:
        """``strategy:variant``, or ``strategy`` without a variant; :meth:`parse` reads it back."""
        return f"{self.strategy}{SEP}{self.variant}" if self.variant else self.strategy

    def __str__(self) -> str:
        return self.label

    @classmethod
    def parse(cls, text: str | None, default: str | None = None) -> Method:
        """``"cove:factored"`` as a method; empty text is ``default`` when given. Only the shape is checked here:
        :meth:`resolve` checks the names against the registered strategies."""
        raw = (text or "").strip() or (default or "")
        strategy, _, variant = raw.partition(SEP)
        if not strategy.strip():
            raise InputError(f"a method is written 'strategy[:variant]', e.g. 'cove:factored', not {text!r}")
        return cls(strategy.strip(), variant.strip() or None)

    @classmethod
    def of(cls, row: Mapping[str, Any]) -> Method:
        """The method of a stored run, a trace or a results line (``strategy`` and ``variant`` keys)."""
        return cls(row.get("strategy") or "?", row.get("variant") or None)

    def make(self) -> Strategy:
        """The strategy object; unknown strategies and variants are user errors naming the known ones."""
        return make_strategy(self.strategy, self.variant)

    def resolve(self) -> Method:
        """This method checked against the registry, its variant made explicit (the strategy's default)."""
        made = self.make()
        return Method(made.name, made.variant)


def method_choices() -> list[str]:
    """Every registered strategy x variant as a label, in registry order: the pickers' choices."""
    out: list[str] = []
    for name in STRATEGIES.names():
        variants = STRATEGIES.get(name).variants
        out += [Method(name, v).label for v in variants] if variants else [name]
    return out


def parse_methods(value: str | Sequence[str]) -> tuple[Method, ...]:
    """``"system1,cove:factored,s2a"`` (or a list of such) as checked methods, deduplicated, in order."""
    parts = value.split(",") if isinstance(value, str) else [p for v in value for p in str(v).split(",")]
    methods = tuple(dict.fromkeys(Method.parse(p).resolve() for p in parts if p.strip()))
    if not methods:
        raise InputError("name at least one strategy, e.g. system1,cove:factored,s2a")
    return methods
