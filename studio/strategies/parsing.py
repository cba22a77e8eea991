"""Reading model output. Every function here accepts any text and never raises: a small model's output is
free-form, and a pipeline must degrade (with a trace note) rather than crash.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

# A list marker at the start of a line: "1.", "1)", "(1)", "1:", "-", "*", "•", "Q1:", "Question 1.", "Sub-task 2:"
_MARKER = re.compile(
    r"""^\s*(?:
        [-*•+·](?:\s+|$)
      | \(\d{1,2}\)\s*
      | \d{1,2}[.):](?:\s+|$)
      | (?:q|question|sub-?questions?|sub-?tasks?|tasks?|aspects?|branch(?:es)?|steps?)\s*\d{1,2}\s*[.):-]?\s+
    )""",
    re.IGNORECASE | re.VERBOSE,
)
# Header lines such as "Verification questions:" or "Here are the sub-questions:" (alone, or before an item).
_HEADER = re.compile(
    r"""^\s*(?:here\s+(?:are|is)\s+)?(?:the\s+|some\s+|my\s+)?
        (?:verification\s+)?(?:sub-?)?(?:questions?|tasks?|aspects?|branches|answers?|list)
        (?:\s+(?:and\s+answers|to\s+verify|to\s+ask))?\s*:\s*""",
    re.IGNORECASE | re.VERBOSE,
)
_EMPHASIS = re.compile(r"^\*\*(.*?)\*\*:?$|^__(.*?)__$")


def clean_item(text: str) -> str:
    """Strip markdown emphasis, surrounding quotes and stray whitespace from one list item."""
    text = text.strip()
    m = _EMPHASIS.match(text)
    if m:
        text = (m.group(1) or m.group(2) or "").strip()
    text = text.replace("**", "").strip()
    if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'`":
        text = text[1:-1].strip()
    return text


def _is_header(line: str) -> bool:
    """A line that only announces a list: "Verification questions:", "**Sub-questions:**"."""
    bare = line.replace("*", "").strip()
    m = _HEADER.match(bare)
    if m and not bare[m.end() :].strip():
        return True
    return bare.endswith(":") and len(bare.split()) <= 5 and "?" not in bare


def _strip_header_prefix(line: str) -> str:
    """ "Verification questions: 1. Who..." -> "1. Who..." (a header sharing a line with the first item)."""
    m = _HEADER.match(line.replace("**", ""))
    return line.replace("**", "")[m.end() :] if m else line


def _split_single_line(line: str) -> list[str]:
    """A one-line list: "Who is X? Where is Y?" or "history, culture; economy"."""
    if line.count("?") >= 2:
        return [q.strip() + "?" for q in line.split("?") if q.strip()]
    if line.rstrip().endswith("?"):  # one question, possibly with commas in it
        return [line]
    parts = [p.strip() for p in re.split(r"[;,]", line)]
    if len(parts) > 1:
        parts[-1] = re.sub(r"^(?:and|or)\s+", "", parts[-1], flags=re.IGNORECASE)
    return [p for p in parts if p]


def _dedupe(items: list[str]) -> list[str]:
    seen: set[str] = set()
    out = []
    for item in items:
        key = re.sub(r"[\W_]+", " ", item.casefold()).strip()
        if key and key not in seen:
            seen.add(key)
            out.append(item)
    return out


def parse_list(
    text: str, cap: int | None = None, *, split_commas: bool = True, dedupe: bool = True
) -> list[str]:
    """List items from numbered lists, bullets, one item per line, or (``split_commas``) one comma-separated line.

    Header lines ("Verification questions:") are dropped, duplicates removed (case and punctuation blind),
    and the result capped at ``cap``. When some lines carry list markers, unmarked lines are commentary
    and are ignored.
    """
    lines = [ln.strip() for ln in (text or "").splitlines() if ln.strip()]
    lines = [_strip_header_prefix(ln).strip() for ln in lines]
    # a marked line ending in ":" ("1. History:") is an item, not a header
    lines = [ln for ln in lines if ln and (_MARKER.match(ln) or not _is_header(ln))]
    marked = [_MARKER.sub("", ln, count=1) for ln in lines if _MARKER.match(ln)]
    if marked:
        items = marked
    elif len(lines) == 1 and split_commas:
        items = _split_single_line(lines[0])
    else:
        items = lines
    items = [c for c in (clean_item(i) for i in items) if re.search(r"\w", c)]
    if dedupe:
        items = _dedupe(items)
    return items[:cap] if cap is not None else items


_QUESTION_START = re.compile(
    r"^(?:who|whom|whose|what|when|where|which|why|how|is|are|was|were|do|does|did|can|could|has|have|had|"
    r"will|would|should|name|list|in|on|at|for|from|by|of|to|during)\b",
    re.IGNORECASE,
)


def looks_like_question(text: str) -> bool:
    """A verification question has a "?" or opens like one ("In which year...", "How tall...")."""
    return "?" in text or bool(_QUESTION_START.match(text.strip()))


# -- CoVe ---------------------------------------------------------------------------------------------------------
# "Q:", "Q1)", "Question -"; not "A-list" or "A.I.", which start answers
_Q_LABEL = re.compile(r"^(?:q|question|verification question)\s*\d*\s*(?::|\)|\s-\s)\s*", re.IGNORECASE)
_A_LABEL = re.compile(r"^(?:a|answer|verification answer)\s*\d*\s*(?::|\)|\s-\s)\s*", re.IGNORECASE)


def parse_qa_pairs(text: str, cap: int | None = None) -> list[tuple[str, str]]:
    """Question/answer pairs from CoVe's joint output.

    Accepts "Q: ... / A: ..." blocks, "Question: ... / Answer: ..." blocks, and numbered lines where the
    answer follows the question on the same line ("1. Who is X? X is Y."). Pairs with the same question
    are merged (first wins); a question without an answer gets "".
    """
    pairs: list[list[str]] = []
    for raw in (text or "").splitlines():
        line = clean_item(_MARKER.sub("", raw.strip(), count=1))
        if not line or _is_header(line):
            continue
        if _A_LABEL.match(line):
            if pairs and not pairs[-1][1]:
                pairs[-1][1] = clean_item(_A_LABEL.sub("", line, count=1))
            continue
        is_q = bool(_Q_LABEL.match(line)) or "?" in line
        if is_q:
            q = _Q_LABEL.sub("", line, count=1)
            head, sep, tail = q.partition("?")
            pairs.append([clean_item(head + sep), clean_item(_A_LABEL.sub("", tail.strip(), count=1))])
        elif pairs and not pairs[-1][1]:  # an unlabelled answer line under its question
            pairs[-1][1] = line
    out, seen = [], set()
    for q, a in pairs:
        key = re.sub(r"[\W_]+", " ", q.casefold()).strip()
        if key and key not in seen:
            seen.add(key)
            out.append((q, a))
    return out[:cap] if cap is not None else out


def parse_answers(text: str, n: int) -> tuple[list[str], bool]:
    """CoVe two_step: ``n`` answers from one output that answers ``n`` numbered questions, in order.

    Returns the answers (missing ones are "") and whether the count matched. One question: the whole text.
    """
    text = (text or "").strip()
    if n == 1:
        items = parse_list(text, split_commas=False, dedupe=False)
        single = items[0] if len(items) == 1 else text
        return [_A_LABEL.sub("", single, count=1).strip()], bool(text)
    pairs = parse_qa_pairs(text)
    if len(pairs) == n and all(a for _, a in pairs):  # the model repeated each question before its answer
        return [a for _, a in pairs], True
    items = [_A_LABEL.sub("", i, count=1).strip() for i in parse_list(text, split_commas=False, dedupe=False)]
    answers = (items + [""] * n)[:n]
    return answers, len(items) == n


_VERDICT = re.compile(
    r"\b(PARTIALLY[\s_-]+CONSISTENT|INCONSISTENT|NOT[\s_-]+CONSISTENT|CONSISTENT)\b", re.IGNORECASE
)
_VERDICT_LEAD = re.compile(
    r"^[\s*_#>\"'`]*(?:(?:verdict|answer|result|cross-check)\s*:\s*)?[\s*_\"'`]*", re.IGNORECASE
)


def _verdict_word(m: re.Match[str]) -> str:
    word = re.sub(r"[\s_-]+", " ", m.group(1).upper())
    return "INCONSISTENT" if word == "NOT CONSISTENT" else word


def parse_verdict(text: str) -> tuple[str | None, str]:
    """A CoVe cross-check verdict: ("CONSISTENT" | "INCONSISTENT" | "PARTIALLY CONSISTENT" | None, the rest).

    A verdict that opens the output wins. Otherwise the output must name exactly one verdict: one that
    lists several (often an echo of the instruction's options) is ambiguous, and gives None, as does none.
    "NOT CONSISTENT" reads as INCONSISTENT.
    """
    text = (text or "").strip()
    lead = _VERDICT_LEAD.match(text)
    start = lead.end() if lead else 0
    first = _VERDICT.match(text, start)
    found = [first] if first else list(_VERDICT.finditer(text))
    if not found or len({_verdict_word(m) for m in found}) != 1:
        return None, text
    # After an opening verdict, the rest is its explanation; a verdict inside a sentence keeps the sentence.
    rest = text[first.end() :].strip(" \n\t:.-*,") if first else text
    return _verdict_word(found[0]), rest


# -- Chain-of-Thought ------------------------------------------------------------------------------------------------
_ANSWER_MARKER = re.compile(
    r"(?:\*\*)?\b(?:final\s+answer|answer)\s*(?:\*\*)?\s*[:：]\s*(?:\*\*)?", re.IGNORECASE
)


@dataclass(frozen=True)
class CotSplit:
    reasoning: str
    final: str
    marker_found: bool


def split_cot(text: str) -> CotSplit:
    """Reasoning vs final answer: the answer follows the last ``Answer:`` (or ``Final answer:``) marker.

    Without a marker (or with nothing after it), the final answer is the last non-empty line.
    """
    text = (text or "").strip()
    markers = list(_ANSWER_MARKER.finditer(text))
    if markers:
        last = markers[-1]
        final = clean_item(text[last.end() :].strip())
        if final:
            return CotSplit(text[: last.start()].strip(), final, True)
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        return CotSplit("", "", False)
    return CotSplit("\n".join(lines[:-1]).strip(), clean_item(lines[-1]), False)


# -- System 2 Attention ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Sections:
    context: str
    query: str
    found_context: bool
    found_query: bool


def _label_regex(label: str, anchored: bool) -> re.Pattern[str]:
    """A section label with optional **bold** and an optional "(...)" after it, ending in a colon.

    The published label may appear anywhere (small models put both sections on one line); a short alias
    such as "Question" must start a line, so that the word inside a sentence is not taken for a label.
    """
    words = r"\s+".join(re.escape(w) for w in label.split())
    start = r"(?:^|(?<=\n))[ \t]*" if anchored else ""
    return re.compile(
        rf"{start}(?:\*\*|__)?{words}(?:\s*\([^)\n]*\))?\s*(?:\*\*|__)?\s*:\s*(?:\*\*|__)?",
        re.IGNORECASE,
    )


def _last_label(text: str, labels: Sequence[str]) -> re.Match[str] | None:
    """The last occurrence of the first label form that occurs at all (the published label first).

    The last, because a small model sometimes echoes the instruction (which names both labels) first.
    """
    for i, label in enumerate(labels):
        found = list(_label_regex(label, anchored=i > 0).finditer(text))
        if found:
            return found[-1]
    return None


def parse_sections(text: str, context_labels: Sequence[str], query_labels: Sequence[str]) -> Sections:
    """S2A's two labelled sections. Each ``*_labels`` is the published label's leading words first, e.g.
    ``("Unbiased text context", "Context")``, then aliases. A missing query label yields ""; a missing
    context label yields the text before the query label (often an unlabelled context), or ""."""
    text = text or ""
    c = _last_label(text, context_labels)
    q = _last_label(text, query_labels)

    def section(m: re.Match[str] | None, other: re.Match[str] | None) -> str:
        if m is None:
            return ""
        end = other.start() if other is not None and other.start() > m.start() else len(text)
        return clean_item(text[m.end() : end].strip())

    context = section(c, q) if c is not None else (clean_item(text[: q.start()]) if q is not None else "")
    return Sections(context, section(q, c), c is not None, q is not None)


# -- structured outputs (JSON) -----------------------------------------------------------------------------------------
_FENCE = re.compile(r"```[ \t]*(?:json|JSON)?[ \t]*\n?(.*?)```", re.DOTALL)
_MAX_OPENERS = 32  # how many "{" / "[" positions to try before giving up on a long text


def parse_json(text: str) -> Any | None:
    """The JSON value in a step's output, or None: the whole text, else the first fenced block
    (```json ... ```), else the first decodable object or array inside the text. Never raises.

    A backend that constrained the output returns bare JSON; the rest is for servers that only half honour a
    schema (a code fence, a sentence before the object)."""
    text = (text or "").strip()
    if not text:
        return None
    candidates = [text]
    fenced = _FENCE.search(text)
    if fenced:
        candidates.insert(0, fenced.group(1).strip())
    for c in candidates:
        try:
            return json.loads(c)
        except ValueError:
            pass
    decoder = json.JSONDecoder()
    tried = 0
    for i, ch in enumerate(text):
        if ch not in "{[":
            continue
        tried += 1
        if tried > _MAX_OPENERS:
            break
        try:
            return decoder.raw_decode(text, i)[0]
        except ValueError:
            continue
    return None


def json_field(obj: Any, key: str) -> Any:
    """``obj[key]`` when ``obj`` is an object with that key (keys compared case- and separator-blind), else None."""
    if not isinstance(obj, dict):
        return None
    if key in obj:
        return obj[key]
    want = re.sub(r"[\W_]+", "", key.casefold())
    for k, v in obj.items():
        if isinstance(k, str) and re.sub(r"[\W_]+", "", k.casefold()) == want:
            return v
    return None


def json_text(value: Any) -> str | None:
    """A JSON value read as one piece of text: a string (stripped), a number, or None for anything else."""
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    return None


def json_strings(value: Any) -> list[str] | None:
    """A JSON array read as a list of non-empty strings (an item that is an object gives its first string
    value); None when ``value`` is not an array."""
    if not isinstance(value, list):
        return None
    out = []
    for item in value:
        if isinstance(item, dict):
            item = next((v for v in item.values() if isinstance(v, str)), None)
        text = json_text(item)
        if text:
            out.append(clean_item(text))
    return [t for t in out if t]


# -- self-consistency: answers as votes ------------------------------------------------------------------------------
_ARTICLES = re.compile(r"\b(?:a|an|the)\b")
_PUNCT = re.compile(r"[^\w\s]|_")
_NUM = re.compile(r"-?\d[\d,]*(?:\.\d+)?")
_ANSWER_NUM = re.compile(r"\banswer\s*(?:is|:|=)?\s*[$€£]?\s*(-?\d[\d,]*(?:\.\d+)?)", re.IGNORECASE)


def normalize_text(text: str) -> str:
    """SQuAD-style: accents folded, lower case, punctuation and the articles a/an/the dropped, spaces collapsed
    (the eval metrics' :func:`studio.eval.metrics.normalize`; repeated here, as the eval package imports this one)."""
    text = unicodedata.normalize("NFKD", text or "")
    text = "".join(c for c in text if not unicodedata.combining(c)).lower()
    text = _PUNCT.sub(" ", text)
    return " ".join(_ARTICLES.sub(" ", text).split())


def normalize_answer(text: str) -> str:
    """A final answer as a vote: the number after the last "answer is" / "Answer:", else the last number in it
    (GSM's convention, as the eval's ``numeric`` metric reads it; "1,500.0" -> "1500"); an answer without a
    number is its normalised text."""
    found = _ANSWER_NUM.findall(text or "") or _NUM.findall(text or "")
    if found:
        try:
            value = float(found[-1].replace(",", ""))
        except ValueError:
            value = None
        if value is not None:
            return str(int(value)) if value.is_integer() else repr(value)
    return normalize_text(text)


_JSON_STRING = re.compile(r'"((?:[^"\\\n]|\\.)*)"(\s*:)?')


def json_salvage_strings(text: str) -> list[str]:
    """The complete string values (not keys) in JSON that does not decode, e.g. cut off at the token cap:
    ``{"questions": ["Who is X?", "Wh`` -> ["Who is X?"]."""
    out = []
    for m in _JSON_STRING.finditer(text or ""):
        if m.group(2):  # a key
            continue
        try:
            value = json.loads(f'"{m.group(1)}"')
        except ValueError:
            continue
        if value.strip():
            out.append(clean_item(value))
    return out


def read_list(text: str, constrained: bool, key: str) -> tuple[list[str], bool | None]:
    """A step's list of strings (CoVe's planned questions, BSM's branches): from the JSON field ``key`` when the
    step was constrained, else from the free-text list parser. Returns the items and whether the JSON was read:
    None for a free step, False for constrained output that was not the expected JSON (cut off at the cap), whose
    complete strings are salvaged, or failing that its lines parsed as free text."""
    if not constrained:
        return parse_list(text), None
    got = json_strings(json_field(parse_json(text), key))
    if got is not None:
        return got, True
    return json_salvage_strings(text) or parse_list(text), False


def json_salvage_field(text: str, key: str, *, partial: bool = False) -> str | None:
    """The string value of ``key`` in JSON that does not decode (cut off at the token cap): the complete value,
    or with ``partial`` also a value cut off before its closing quote. None when the key has no string value."""
    close = '"?' if partial else '"'
    m = re.search(rf'"{re.escape(key)}"\s*:\s*"((?:[^"\\]|\\.)*){close}', text or "")
    if not m:
        return None
    body = m.group(1)
    if body.endswith("\\") and not body.endswith("\\\\"):  # cut inside an escape
        body = body[:-1]
    try:
        return json.loads(f'"{body}"').strip()
    except ValueError:
        return body.strip()
