"""Prompt templates: data files that cite their paper, with one loader and one renderer for strategies and judges.

A template is ``<folder>/<name>.txt``. Its leading ``#`` lines cite the source paper and are not sent. ``{name}``
placeholders are filled in one pass, so braces inside a question or an answer are left alone. A line
``<<system>>``, ``<<user>>`` or ``<<assistant>>`` starts a message (the text before the first one is a user
message): few-shot examples are chat turns, which a small chat model copies far less than examples inlined in one
message.

Strategies and judges differ in one thing only, which each folder states once (``tidy``): a strategy's messages
are tidied (runs of blank lines left by an empty value closed, ends stripped); a judge's are sent byte for byte,
since their published wording and the answers under judgement must reach the judge as they are.
"""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path

from studio.backends.base import Conversation

_PLACEHOLDER = re.compile(r"\{([a-z_]+)\}")
_ROLE_LINE = re.compile(r"^<<(system|user|assistant)>>\s*$")


@cache
def _load(path: Path) -> str:
    lines = path.read_text(encoding="utf-8").splitlines()
    while lines and lines[0].startswith("#"):
        lines.pop(0)
    return "\n".join(lines).strip("\n")


class Prompts:
    """The templates of one folder (``studio/strategies/prompts``, ``studio/judges/prompts``)."""

    def __init__(self, folder: Path, *, tidy: bool) -> None:
        self.folder = folder
        self.tidy = tidy

    def load(self, name: str) -> str:
        """The template ``name``, without its ``#`` header lines (which cite the source paper)."""
        return _load(self.folder / f"{name}.txt")

    def names(self) -> list[str]:
        return sorted(p.stem for p in self.folder.glob("*.txt"))

    def messages(self, name: str, **values: str) -> Conversation:
        """Fill the template's ``{placeholders}`` and split it into messages at ``<<role>>`` lines.

        Values are inserted as-is, so braces in a user's question are harmless.
        """
        template = self.load(name)
        missing = {m for m in _PLACEHOLDER.findall(template) if m not in values}
        if missing:
            raise KeyError(f"prompt {name!r} needs {', '.join(sorted(missing))}")
        chunks: list[tuple[str, list[str]]] = [("user", [])]
        for line in template.splitlines():
            m = _ROLE_LINE.match(line)
            if m:
                chunks.append((m.group(1), []))
            else:
                chunks[-1][1].append(line)
        messages = []
        for role, lines in chunks:
            text = _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), "\n".join(lines))
            if self.tidy:
                text = re.sub(r"\n{3,}", "\n\n", text).strip()  # an empty section must not leave a hole
            if text.strip():
                messages.append({"role": role, "content": text})
        return messages

    def text(self, name: str, **values: str) -> str:
        """A one-message template, filled: the text of its single user message."""
        messages = self.messages(name, **values)
        if len(messages) != 1 or messages[0]["role"] != "user":
            raise ValueError(f"prompt {name!r} has several messages; use messages()")
        return messages[0]["content"]
