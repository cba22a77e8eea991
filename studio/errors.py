"""User-facing errors, and the one redaction every error text passes through.

Every message names the cause and, where one exists, the fix. The CLI prints ``str(err)`` and exits 2; the UI
shows it with ``gr.Error``. Neither shows a traceback. A message is redacted when the error is made, so a key
an endpoint echoes back ("Incorrect API key provided: Bearer sk-...") is never shown, stored or logged.
"""

from __future__ import annotations

import logging
import os
import re

# What a secret looks like: bearer credentials, OpenAI-style and Hugging Face keys, studio API tokens, and
# "api_key=..."-style assignments. Kept conservative: a false positive only hides a word from an error text.
_PATTERNS = [
    re.compile(r"(?i)\b(bearer)\s+[A-Za-z0-9._~+/=-]{8,}"),
    re.compile(r"\b(sk|pk|rk)-[A-Za-z0-9_-]{8,}"),
    re.compile(r"\bhf_[A-Za-z0-9]{8,}"),
    re.compile(r"\bstudio_[A-Za-z0-9_-]{20,}"),
    re.compile(r"(?i)\b(api[_-]?key|access[_-]?token|secret|password)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]{6,}"),
]
KEY_ENV_PREFIX = "STUDIO_KEY_"
# Environment variables whose values are secrets, besides every STUDIO_KEY_* and every name listed in
# STUDIO_ALLOWED_KEY_ENVS: their values are cut out of error texts wherever they appear.
KNOWN_KEY_ENVS = ("OPENAI_API_KEY", "STUDIO_OPENAI_API_KEY", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN")
REDACTED = "[redacted]"


def secret_env_names(env: os._Environ[str] | dict[str, str] | None = None) -> list[str]:
    env = os.environ if env is None else env
    listed = [n.strip() for n in env.get("STUDIO_ALLOWED_KEY_ENVS", "").split(",") if n.strip()]
    return sorted({*KNOWN_KEY_ENVS, *listed, *(n for n in env if n.startswith(KEY_ENV_PREFIX))})


def redact(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` without anything that looks like a key or token, nor the value of any key env var in use
    (nor any of ``secrets``)."""
    if not text:
        return text
    values = [os.environ.get(n, "") for n in secret_env_names()] + list(secrets)
    for value in sorted({v for v in values if len(v) >= 4}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    for pattern in _PATTERNS:
        text = pattern.sub(_keep_label, text)
    return text


def _keep_label(m: re.Match[str]) -> str:
    """'Bearer sk-..' -> 'Bearer [redacted]'; 'api_key=xyz' -> 'api_key=[redacted]'; a bare key -> '[redacted]'."""
    groups = m.groups()
    if len(groups) == 2:
        return f"{groups[0]}{groups[1]}{REDACTED}"
    if groups and groups[0] and groups[0].lower() == "bearer":
        return f"{groups[0]} {REDACTED}"
    return REDACTED


# An absolute path of two or more parts (not the path of a URL: that follows a host or a ':').
_SERVER_PATH = re.compile(r"(?<![\w:/.~-])(?:/[\w.@+-]+){2,}/?")
_private_roots: set[str] = set()


def private_root(path: str | os.PathLike[str]) -> None:
    """Add a directory whose paths error texts shown to remote users must not reveal (the data dir)."""
    for p in {os.path.abspath(path), os.path.realpath(path)}:
        _private_roots.add(p.rstrip("/") or "/")


def _roots() -> list[str]:
    import sys
    import tempfile

    found = {*_private_roots, os.getcwd(), tempfile.gettempdir(), os.path.expanduser("~"), sys.prefix}
    found |= {os.environ[v] for v in ("GRADIO_TEMP_DIR", "STUDIO_HOME") if os.environ.get(v)}
    return [r for r in found if r not in ("", "/")]


def hide_paths(text: str) -> str:
    """``text`` with every path inside the server's own directories (the data dir, its uploads, temp and
    home dirs, the working dir, the Python install) cut to its last part ('/srv/data/uploads/3f2a/x.jsonl'
    -> 'x.jsonl'): a user of the web app learns nothing about the server's directories from an error. Paths
    elsewhere, such as one the user typed for a model dir, stay as they are."""
    if not text:
        return text
    roots = [os.path.abspath(r) for r in _roots()]

    def cut(m: re.Match[str]) -> str:
        path = m.group(0).rstrip("/")
        if any(path == r or path.startswith(r + "/") for r in roots):
            return path.rsplit("/", 1)[-1]
        return m.group(0)

    return _SERVER_PATH.sub(cut, text)


def public_message(text: str) -> str:
    """An error text fit to show a remote user: redacted, without server paths, on one short line."""
    return hide_paths(redact(" ".join(str(text).split())))[:2000]


def configure_logging(level: int = logging.INFO) -> None:
    """One stderr handler for the server's log, redacting every record. Called once by ``studio serve``."""
    root = logging.getLogger()
    if any(isinstance(f, RedactingFilter) for h in root.handlers for f in h.filters):
        return
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(RedactingFilter())
    root.addHandler(handler)
    logging.getLogger("studio").setLevel(level)


class RedactingFilter(logging.Filter):
    """A logging filter that redacts each record's message (and drops its args once merged in)."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a malformed record: leave it to the handler to complain
            return True
        clean = redact(message)
        if clean != message or record.args:
            record.msg, record.args = clean, None
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        return True


class StudioError(Exception):
    """Base class for errors whose message is meant for the user. The message is redacted on creation."""

    def __init__(self, *args: object) -> None:
        if args and isinstance(args[0], str):
            args = (redact(args[0]), *args[1:])
        super().__init__(*args)


class InputError(StudioError):
    """The user's input (a prompt, a parameter, a file) is not acceptable."""


class ModelNotFound(StudioError):
    """A model name that is not in the registry."""


class BackendError(StudioError):
    """A backend could not load a model or answer a request."""


class ModelWheelMissing(BackendError):
    """The embedded default model's wheel is not installed."""
