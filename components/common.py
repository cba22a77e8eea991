"""What the UI tabs share: user errors as readable messages, table formatting, downloads, and a run's trace
as HTML. No domain logic here: these only shape what studio and storage return for the screen."""

from __future__ import annotations

import contextlib
import functools
import html
import inspect
import json
import logging
import re
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import gradio as gr

from components.tree import step_facts, summary_html
from storage import StoreError
from studio.access import ADMIN, User, require_admin
from studio.auth import user_named
from studio.context import AppContext
from studio.errors import InputError, StudioError, hide_paths, private_root, public_message
from studio.methods import Method

F = TypeVar("F", bound=Callable[..., Any])
USER_ERRORS = (StudioError, StoreError)
log = logging.getLogger("studio.ui")


def shown(e: BaseException) -> gr.Error:
    """A user error as the toast a remote user sees (redacted, no server paths), logged as one line."""
    message = public_message(str(e))
    log.warning("user error: %s", message)
    return gr.Error(message, print_exception=False)


@contextlib.contextmanager
def user_errors() -> Iterator[None]:
    """Show a studio or store error as a ``gr.Error`` toast with its message, logged as one line and never as
    a traceback. Anything else is a fault: its traceback goes to the log, the user sees its kind only."""
    try:
        yield
    except gr.Error as e:
        e.message = public_message(e.message)
        log.warning("user error: %s", e.message)
        e.print_exception = False
        raise
    except USER_ERRORS as e:
        raise shown(e) from None
    except Exception as e:
        log.exception("internal error in a UI handler")
        raise gr.Error(
            f"internal error ({type(e).__name__}); the server log has the details", print_exception=False
        ) from None


def friendly(fn: F) -> F:
    """Decorate a handler (plain or generator) with :func:`user_errors`. The wrapper keeps the signature, so
    gradio still finds a ``gr.Progress()`` default, and stays a generator function, so gradio still streams."""
    if inspect.isgeneratorfunction(fn):

        @functools.wraps(fn)
        def gen(*args: Any, **kwargs: Any) -> Any:
            with user_errors():
                yield from fn(*args, **kwargs)

        return gen  # type: ignore[return-value]

    @functools.wraps(fn)
    def plain(*args: Any, **kwargs: Any) -> Any:
        with user_errors():
            return fn(*args, **kwargs)

    return plain  # type: ignore[return-value]


# What only an admin may do, by event (api) name: the one table of the roles' rules for the UI. Annotators
# label, flag, skip, run the arena, try models and browse; everything that changes the studio is here.
ADMIN_ONLY = {
    "add_model": "add or change models",
    "remove_model": "remove models",
    "train_start": "start training jobs",
    "train_cancel": "cancel training jobs",
    "train_resume": "resume training jobs",
    "compare_with_parent": "start comparison jobs",
    "eval_run": "start evaluation runs",
    "judge_run": "start judge runs",
    "import_prompts": "import data",
    "data_import": "import data",
    "data_save_prompt_set": "change a prompt set's guidelines",
    "improve_start": "start improve runs",
    "improve_stop": "stop improve runs",
    "improve_resume": "resume improve runs",
}


def guard_events(demo: gr.Blocks, ctx: AppContext) -> None:
    """Guard every event of ``demo`` (once): an admin-only one (:data:`ADMIN_ONLY`) checks the caller's role
    before anything else, even before gradio reads the inputs; a failed input check and every handler's user
    error become one toast and one log line, never a traceback, a server path or a key."""
    if getattr(demo, "_studio_guarded", False):
        return
    demo._studio_guarded = True  # type: ignore[attr-defined]
    private_root(ctx.settings.data_dir)
    process_api, preprocess_data = demo.process_api, demo.preprocess_data

    @functools.wraps(process_api)
    async def checked_process_api(block_fn: Any, *args: Any, **kwargs: Any) -> Any:
        fn = demo.fns[block_fn] if isinstance(block_fn, int) else block_fn
        action = ADMIN_ONLY.get(str(fn.api_name))
        if action:
            request = kwargs.get("request", args[2] if len(args) > 2 else None)
            request = request[0] if isinstance(request, list) and request else request
            try:
                require_admin(current_user(ctx, request), action)
            except StudioError as e:
                raise shown(e) from None
        return await process_api(block_fn, *args, **kwargs)

    @functools.wraps(preprocess_data)
    async def checked_preprocess_data(*args: Any, **kwargs: Any) -> Any:
        try:
            return await preprocess_data(*args, **kwargs)
        except gr.Error:
            raise
        except Exception as e:  # a missing or wrong-typed value, a file that was not uploaded: the caller's
            block_fn = args[0] if args else kwargs.get("block_fn")
            raise shown(InputError(_input_message(str(e), getattr(block_fn, "inputs", [])))) from None

    demo.process_api = checked_process_api  # type: ignore[method-assign]
    demo.preprocess_data = checked_preprocess_data  # type: ignore[method-assign]
    for block_fn in demo.fns.values():
        fn = block_fn.fn
        if fn is None or inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn):
            continue
        block_fn.fn = friendly(fn)


_TOO_FEW = re.compile(
    r"event handler \((\w+)\) didn't receive enough input values \(needed: (\d+), got: (\d+)\)"
)
_WRONG_TYPE = re.compile(
    r"at index (\d+) \(a `(\w+)` component\) of the event handler \(named \"(\w+)\"\).*?"
    r"Expected an? `([^`]+)`, but the value passed to the event handler was: (.*?) \(of type",
    re.DOTALL,
)


_NOT_UPLOADED = re.compile(r"Cannot move (.*?) to the gradio cache dir because it was not uploaded")
_KINDS = {"float": "a number", "int": "a whole number", "str": "text", "bool": "true or false"}


def _input_message(text: str, inputs: Sequence[Any] = ()) -> str:
    """Gradio's input-check messages, shortened to what the caller needs to fix (naming the field)."""
    if m := _TOO_FEW.search(text):
        return f"{m[1]} takes {m[2]} input values; {m[3]} were sent"
    if m := _WRONG_TYPE.search(text):
        i, want = int(m[1]), m[4].replace(" | None", "")
        label = getattr(inputs[i], "label", None) if i < len(inputs) else None
        field = f"'{label}'" if label else f"input {i + 1}"
        return f"{m[3]}: {field} (a {m[2]}) must be {_KINDS.get(want, want)}, not {m[5]}"
    if m := _NOT_UPLOADED.search(text):
        return f"only files uploaded to this server can be read; {hide_paths(m[1])} was not uploaded"
    return text


# -- who is asking ----------------------------------------------------------------------------------------------
def current_user(ctx: AppContext, request: gr.Request | None, typed_name: str | None = None) -> User:
    """With ``--auth``: the logged-in user and their role from users.toml. Without: the single local user, an
    admin, named by what was typed in the session's name box (``local`` when nothing was typed)."""
    auth_file = ctx.settings.auth_file
    if not auth_file:
        return User((typed_name or "").strip() or "local", ADMIN)
    name = getattr(request, "username", None) if request is not None else None
    if not name:
        raise InputError("log in first")
    user = user_named(Path(auth_file), name)
    if user is None:
        raise InputError(f"user {name!r} is no longer in the users file; ask an admin")
    return user


# -- inputs ---------------------------------------------------------------------------------------------------
def optional(value: Any) -> str | None:
    """A text or dropdown value, with '' (or whitespace, or None) meaning 'any'."""
    text = "" if value is None else str(value).strip()
    return text or None


def row_id(value: Any, what: str) -> int:
    """An id typed or picked in the UI, as an int; a clear error when there is none."""
    if value is None or (isinstance(value, str) and not value.strip()):
        raise InputError(f"enter a {what} id (pick a row in the table, or type the number)")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise InputError(f"a {what} id is a whole number, not {value!r}") from None
    if not number.is_integer() or number < 0:
        raise InputError(f"a {what} id is a whole number, not {value!r}")
    return int(number)


def limit_of(value: Any, default: int = 100) -> int | None:
    """A row limit from a number box: 0 or empty means every row."""
    if value in (None, ""):
        return default
    n = whole(value, "row limit")
    return None if n <= 0 else n


def text(value: Any, what: str, *, required: bool = False) -> str:
    """A text box's value, stripped; a clear error for a non-text value or, when ``required``, an empty one."""
    if value is None:
        value = ""
    if not isinstance(value, str):
        raise InputError(f"the {what} must be text, not {type(value).__name__} {value!r:.40}")
    if required and not value.strip():
        raise InputError(f"enter a {what}")
    return value.strip()


def number(value: Any, what: str, *, lo: float | None = None, hi: float | None = None) -> float | None:
    """A number box's value (None when empty); a clear error for text such as 'lots' or a value out of range."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise InputError(f"the {what} must be a number, not {value!r}")
    try:
        n = float(value)
    except (TypeError, ValueError):
        raise InputError(f"the {what} must be a number, not {value!r:.40}") from None
    if n != n or n in (float("inf"), float("-inf")):
        raise InputError(f"the {what} must be a finite number, not {value!r}")
    if (lo is not None and n < lo) or (hi is not None and n > hi):
        bounds = (
            f"between {lo:g} and {hi:g}"
            if lo is not None and hi is not None
            else (f">= {lo:g}" if lo is not None else f"<= {hi:g}")
        )
        raise InputError(f"the {what} must be {bounds}, not {value!r}")
    return n


def whole(value: Any, what: str, *, lo: int | None = None, hi: int | None = None) -> int:
    """A whole number from a number box; a clear error for text, fractions, empty or out-of-range values."""
    n = number(value, what, lo=lo, hi=hi)
    if n is None:
        raise InputError(f"enter the {what} (a whole number)")
    if not n.is_integer():
        raise InputError(f"the {what} must be a whole number, not {value!r}")
    return int(n)


# -- tables ---------------------------------------------------------------------------------------------------
def cell(value: Any, width: int = 160) -> Any:
    """One table cell: numbers and booleans as they are, times to the second, everything else as short text."""
    if value is None:
        return ""
    if isinstance(value, bool | int | float):
        return round(value, 3) if isinstance(value, float) else value
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, list | tuple | dict):
        value = json.dumps(value, ensure_ascii=False, default=str)
    text = " ".join(str(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def table(rows: Sequence[Mapping[str, Any]], columns: Sequence[str], width: int = 160) -> list[list[Any]]:
    """Rows (dicts) as a list of lists in ``columns`` order, for a ``gr.Dataframe``."""
    return [[cell(r.get(c), width) for c in columns] for r in rows]


def downloadable(path: str | Path) -> str:
    """A path gradio will hand to the browser: it serves files from the working dir and the temp dir only,
    so a file elsewhere (a data dir in $HOME) is copied into a fresh temp dir first."""
    p = Path(path).resolve()
    if p.is_relative_to(Path.cwd().resolve()) or p.is_relative_to(Path(tempfile.gettempdir()).resolve()):
        return str(p)
    copy = Path(tempfile.mkdtemp(prefix="studio-download-")) / p.name
    shutil.copyfile(p, copy)
    return str(copy)


# -- traces ---------------------------------------------------------------------------------------------------
_BOX = "border:1px solid var(--border-color-primary);border-radius:8px;padding:8px 10px;margin:6px 0;"
_PRE = "white-space:pre-wrap;word-break:break-word;margin:4px 0;font-family:var(--font-mono);font-size:0.9em;"
_DIM = "color:var(--body-text-color-subdued);font-size:0.9em;"
_BADGE = "display:inline-block;border-radius:6px;padding:0 6px;margin-left:6px;font-size:0.85em;"
_LABEL_COLORS = {"wrong": "#fde2e1;color:#9b1c1c", "good": "#def7ec;color:#03543f"}


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _badge(text: str, colors: str = "#e5e7eb;color:#111827") -> str:
    return f'<span style="{_BADGE}background:{colors}">{_e(text)}</span>'


def _messages_html(messages: Sequence[Mapping[str, Any]]) -> str:
    if not messages:
        return ""
    parts = [
        f'<div style="margin:4px 0"><b>{_e(m.get("role", "?"))}</b>'
        f'<pre style="{_PRE}">{_e(m.get("content", ""))}</pre></div>'
        for m in messages
    ]
    n = len(messages)
    return (
        f'<details><summary style="cursor:pointer;{_DIM}">Prompt ({n} message{"s" if n != 1 else ""})'
        f"</summary>{''.join(parts)}</details>"
    )


def _step_html(
    step: Mapping[str, Any],
    children: Mapping[str | None, list[Mapping[str, Any]]],
    live: Mapping[str, str],
    labels: Mapping[str, Sequence[str]],
    depth: int,
    seen: set[str],
) -> str:
    sid = str(step.get("id", ""))
    seen.add(sid)
    status = step.get("status", "done")
    output = live.get(sid, step.get("output", ""))
    head = f"<b>{_e(step.get('name', 'step'))}</b>"
    if step.get("label"):
        head += f" <i>{_e(step['label'])}</i>"
    if status not in ("done", "", None):
        head += _badge(status, "#fef3c7;color:#92400e")
    for lab in labels.get(sid, ()):
        head += _badge(lab, _LABEL_COLORS.get(lab.split(" ")[0], "#e5e7eb;color:#111827"))
    # its own decode time, "shared a batch of N", "constrained (JSON schema)" (components.tree.step_facts)
    stats = f"{_e(sid)} · {step.get('prompt_tokens', 0)} → {step.get('completion_tokens', 0)} tokens · " + _e(
        step_facts(step)
    )
    notes = "".join(f'<div style="{_DIM}">⚠ {_e(n)}</div>' for n in step.get("notes") or [])
    kids = "".join(
        _step_html(c, children, live, labels, depth + 1, seen)
        for c in children.get(sid, [])
        if str(c.get("id")) not in seen
    )
    indent = "margin-left:22px;border-left:3px solid var(--color-accent);" if depth else ""
    return (
        f'<div class="trace-step" data-step="{_e(sid)}" style="{_BOX}{indent}">'
        f'<div>{head} <span style="{_DIM}">{stats}</span></div>'
        f'<pre style="{_PRE}">{_e(output)}</pre>{_messages_html(step.get("messages") or [])}{notes}{kids}</div>'
    )


def render_trace_html(
    trace_dict: Mapping[str, Any] | None,
    live_outputs: Mapping[str, str] | None = None,
    *,
    labels: Mapping[str, Sequence[str]] | None = None,
    summary: bool = True,
) -> str:
    """A run's trace (``Trace.to_dict()``, as stored) as HTML: the final answer, then every step with its name,
    label, tokens in/out, latency, output, an expandable prompt and its notes; child steps indented under their
    parents. ``live_outputs`` (step id -> text so far) overrides the outputs of steps still streaming;
    ``labels`` (step id -> ["wrong (ann)", ...]) shows people's step labels as badges. All text is escaped."""
    if not trace_dict:
        return f'<div style="{_DIM}">No trace.</div>'
    t = trace_dict
    live = live_outputs or {}
    steps = list(t.get("steps") or [])
    ids = {str(s.get("id")) for s in steps}
    children: dict[str | None, list[Mapping[str, Any]]] = {}
    for s in steps:
        parent = s.get("parent")
        children.setdefault(str(parent) if parent is not None and str(parent) in ids else None, []).append(s)
    seen: set[str] = set()
    body = "".join(_step_html(s, children, live, labels or {}, 0, seen) for s in children.get(None, []))
    # a step whose parent chain loops never hangs under a root: show it at the top level rather than lose it
    body += "".join(
        _step_html(s, children, live, labels or {}, 0, seen) for s in steps if str(s.get("id")) not in seen
    )
    method = Method.of(t).label
    totals = t.get("totals") or {}
    head = (
        f"{_e(method)} @ {_e(t.get('model', '?'))} · {len(steps)} step(s)"
        + (
            f" · {totals.get('prompt_tokens', 0)} → {totals.get('completion_tokens', 0)} tokens"
            if totals
            else ""
        )
        + (f" · {float(t.get('latency_s') or 0):.2f} s" if t.get("latency_s") else "")
    )
    notes = "".join(f'<div style="{_DIM}">⚠ {_e(n)}</div>' for n in t.get("notes") or [])
    error = f'<div style="color:#b91c1c"><b>Error:</b> {_e(t["error"])}</div>' if t.get("error") else ""
    question = f'<div style="{_DIM}">Question</div><pre style="{_PRE}">{_e(t.get("question", ""))}</pre>'
    answer = (
        f'<div style="{_DIM}">Final answer</div>'
        f'<pre style="{_PRE}font-size:1.05em;font-weight:600">{_e(t.get("final_answer", ""))}</pre>'
    )
    built = summary_html(t.get("summary"), steps) if summary else ""  # ToT's tree, self-consistency's vote
    return f'<div class="trace"><div style="{_DIM}">{head}</div>{question}{answer}{error}{notes}{built}{body}</div>'
