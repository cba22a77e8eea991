"""Logins for ``studio serve --auth users.toml``: salted PBKDF2 password hashes, a role per user, and API
tokens for the REST API (only a sha256 of each token is stored).

users.toml::

    [users.alice]
    password_hash = "pbkdf2_sha256$600000$<salt hex>$<hash hex>"
    role = "admin"            # or "annotator" (the default when absent)
    token_sha256 = "<hex>"    # optional, written by `studio users token alice`

Create entries with ``studio users add alice [--role admin]`` (asks for the password) rather than by hand.
"""

from __future__ import annotations

import contextvars
import hashlib
import hmac
import logging
import os
import re
import secrets
import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.to_thread
import tomli_w

from studio.access import ANNOTATOR, ROLES, User
from studio.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ALGO = "pbkdf2_sha256"
ITERATIONS = 600_000
TOKEN_PREFIX = "studio_"


@dataclass(frozen=True)
class UserRecord:
    name: str
    password_hash: str
    role: str = ANNOTATOR
    token_sha256: str = ""

    @property
    def user(self) -> User:
        return User(self.name, self.role)


def hash_password(password: str, *, iterations: int = ITERATIONS) -> str:
    if not password:
        raise InputError("the password is empty")
    salt = secrets.token_bytes(16)
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    return f"{ALGO}${iterations}${salt.hex()}${digest.hex()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        algo, iterations, salt, digest = stored.split("$")
        if algo != ALGO:
            return False
        got = hashlib.pbkdf2_hmac("sha256", password.encode(), bytes.fromhex(salt), int(iterations))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got.hex(), digest)


# -- the users file -------------------------------------------------------------------------------------------
_cache: dict[Path, tuple[tuple[int, int, int], dict[str, UserRecord]]] = {}
_cache_lock = threading.Lock()


def file_key(path: Path) -> tuple[int, int, int]:
    """What tells a users file changed: a rewrite (always a rename, so a new inode) or an edit in place."""
    st = Path(path).stat()
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def load_records(path: Path) -> dict[str, UserRecord]:
    """name -> record, re-read only when the file changes (so a role or token edit applies without a
    restart). Plain-text passwords and unknown roles are refused."""
    path = Path(path)
    try:
        key = file_key(path)
    except FileNotFoundError:
        raise InputError(
            f"auth file {path} does not exist; create it with: studio users add NAME --file {path}"
        ) from None
    with _cache_lock:
        hit = _cache.get(path)
        if hit and hit[0] == key:
            return hit[1]
    records = _parse(path, _read_toml(path))
    with _cache_lock:
        _cache[path] = (key, records)
    return records


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not valid TOML: {e}") from None


def _parse(path: Path, raw: dict[str, Any]) -> dict[str, UserRecord]:
    records = {}
    for name, body in raw.get("users", {}).items():
        body = body if isinstance(body, dict) else {}
        h = str(body.get("password_hash", ""))
        if not h.startswith(ALGO + "$"):
            raise InputError(
                f"{path}: user {name!r} needs a password_hash made by `studio users add` (no plain text)"
            )
        role = str(body.get("role", ANNOTATOR))
        if role not in ROLES:
            raise InputError(f"{path}: user {name!r} has role {role!r}; use one of {', '.join(ROLES)}")
        records[name] = UserRecord(name, h, role, str(body.get("token_sha256", "")))
    if not records:
        raise InputError(f"{path} defines no users; add one with: studio users add NAME --file {path}")
    return records


def load_users(path: Path) -> dict[str, str]:
    """username -> password hash."""
    return {n: r.password_hash for n, r in load_records(path).items()}


def user_named(path: Path, name: str) -> User | None:
    record = load_records(path).get(name)
    return record.user if record else None


def _write(path: Path, raw: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # never readable by others, even briefly
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(tomli_w.dumps(raw))
    tmp.replace(path)
    with _cache_lock:  # a rewrite within the clock's granularity could otherwise look unchanged
        _cache.pop(path, None)


def add_user(path: Path, name: str, password: str, *, role: str | None = None) -> None:
    """Add a user or change their password; ``role`` None keeps an existing user's role (new: annotator)."""
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise InputError(f"user name {name!r} may use only letters, digits, '-', '_' and '.'")
    if role is not None and role not in ROLES:
        raise InputError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    path = Path(path)
    raw = _read_toml(path) if path.exists() else {}
    old = raw.setdefault("users", {}).get(name) or {}
    entry = {**old, "password_hash": hash_password(password), "role": role or old.get("role", ANNOTATOR)}
    raw["users"][name] = entry
    _write(path, raw)


def set_role(path: Path, name: str, role: str) -> None:
    if role not in ROLES:
        raise InputError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    raw = _read_toml(Path(path)) if Path(path).exists() else {}
    if name not in raw.get("users", {}):
        raise InputError(f"no user {name!r} in {path}; add one with: studio users add {name} --file {path}")
    raw["users"][name]["role"] = role
    _write(Path(path), raw)


# -- API tokens -----------------------------------------------------------------------------------------------
def token_hash(token: str) -> str:
    """What is stored of a token (and what caches key on): its sha256, never the token."""
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(path: Path, name: str) -> str:
    """A new API token for ``name`` (replacing any earlier one). Only its sha256 is stored; the token itself
    is returned once, to be shown to its owner."""
    path = Path(path)
    raw = _read_toml(path) if path.exists() else {}
    if name not in raw.get("users", {}):
        raise InputError(f"no user {name!r} in {path}; add one with: studio users add {name} --file {path}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    raw["users"][name]["token_sha256"] = token_hash(token)
    _write(path, raw)
    return token


def user_for_token(path: Path, token: str) -> User | None:
    """The user an API token belongs to, or None. Every stored hash is compared, in constant time each."""
    if not token:
        return None
    want = token_hash(token)
    found = None
    for record in load_records(Path(path)).values():
        if record.token_sha256 and hmac.compare_digest(record.token_sha256, want):
            found = record.user
    return found


# -- logins ---------------------------------------------------------------------------------------------------
log = logging.getLogger("studio.auth")
CLIENT: contextvars.ContextVar[str] = contextvars.ContextVar("studio_login_client", default="")


class LoginLimiter:
    """Failed logins per user name and per client address. After ``max_failures`` failures within
    ``window_s`` (a client address gets ``ip_factor`` times as many), that name or address is locked out for
    ``lockout_s``, doubling with each further failure up to ``max_lock_s``; a correct password is refused
    while locked. Unknown names are counted like known ones, so a lockout reveals nothing. Memory is
    bounded: the oldest entries go first when ``max_entries`` is reached."""

    def __init__(
        self,
        max_failures: int = 5,
        lockout_s: float = 30.0,
        *,
        ip_factor: int = 4,
        window_s: float = 900.0,
        max_lock_s: float = 3600.0,
        max_entries: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures, self.lockout_s, self.ip_factor = max_failures, lockout_s, ip_factor
        self.window_s, self.max_lock_s, self.max_entries, self.clock = (
            window_s,
            max_lock_s,
            max_entries,
            clock,
        )
        self._fails: OrderedDict[str, tuple[int, float]] = OrderedDict()  # key -> (failures, last failure)
        self._lock = threading.Lock()

    def _keys(self, user: str, client: str) -> list[tuple[str, int]]:
        keys = [("user:" + user, self.max_failures)]
        if client:
            keys.append(("client:" + client, self.max_failures * self.ip_factor))
        return keys

    def _until(self, failures: int, last: float, limit: int) -> float:
        if failures < limit:
            return 0.0
        return last + min(self.lockout_s * 2 ** (failures - limit), self.max_lock_s)

    def wait_s(self, user: str, client: str = "") -> float:
        """Seconds until ``user`` from ``client`` may try again (0: now)."""
        now = self.clock()
        with self._lock:
            waits = [
                self._until(*self._fails[key], limit) - now
                for key, limit in self._keys(user, client)
                if key in self._fails
            ]
        return max([0.0, *waits])

    def failed(self, user: str, client: str = "") -> None:
        now = self.clock()
        with self._lock:
            for key, _ in self._keys(user, client):
                failures, last = self._fails.pop(key, (0, now))
                self._fails[key] = (1 if now - last > self.window_s else failures + 1, now)
            while len(self._fails) > self.max_entries:
                self._fails.popitem(last=False)

    def succeeded(self, user: str) -> None:
        with self._lock:  # the client address keeps its count: one good account must not reset a flood
            self._fails.pop("user:" + user, None)


def authenticator(path: Path, limiter: LoginLimiter | None = None) -> Callable[[str, str], Awaitable[bool]]:
    """A Gradio ``auth=`` callable over the users file. It is async, so gradio awaits it on the event loop,
    and it hashes in a worker thread (at most two at once): a flood of logins never stalls other requests.
    An unknown name is checked against a dummy hash, so it costs what a known one costs."""
    load_records(path)  # fail at start-up on a missing or bad file
    limiter = limiter or LoginLimiter()
    dummy = hash_password(secrets.token_hex(16))
    hashing = anyio.CapacityLimiter(2)

    def verify(username: str, password: str) -> bool:
        record = load_records(path).get(username)
        ok = verify_password(password, record.password_hash if record else dummy)
        return ok and record is not None

    async def check(username: str, password: str) -> bool:
        client = CLIENT.get()
        wait = limiter.wait_s(username, client)
        if wait > 0:
            log.warning(
                "login refused for %r from %s: locked out for %.0f s more", username, client or "?", wait
            )
            return False
        ok = await anyio.to_thread.run_sync(verify, username, password, limiter=hashing)
        if ok:
            limiter.succeeded(username)
        else:
            limiter.failed(username, client)
            log.warning("failed login for %r from %s", username, client or "?")
        return ok

    return check


class AuthGuard:
    """ASGI middleware for the app gradio builds: notes the client address of each login (for
    :class:`LoginLimiter`; behind a reverse proxy on this machine, its ``X-Forwarded-For``), and keeps the
    page that a visitor who has not logged in gets free of the API description, which would name prompt sets
    and models."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        if scope["method"] == "POST" and scope["path"].rstrip("/").endswith("/login"):
            token = CLIENT.set(client_address(scope))
            try:
                return await self.app(scope, receive, send)
            finally:
                CLIENT.reset(token)
        if scope["method"] == "GET" and not _logged_in(scope):
            return await self.app(scope, receive, _without_api_info(send))
        return await self.app(scope, receive, send)


def client_address(scope: dict[str, Any]) -> str:
    host = (scope.get("client") or ("", 0))[0] or ""
    if host in ("127.0.0.1", "::1"):  # a reverse proxy on this machine says who its client is
        for name, value in scope.get("headers", []):
            if name == b"x-forwarded-for":
                return value.decode("latin-1").split(",")[-1].strip() or host
    return host


def _logged_in(scope: dict[str, Any]) -> bool:
    app = scope.get("app")
    if app is None or getattr(app, "auth", None) is None:
        return True  # no logins on this server: nothing to hide
    cookie_id, tokens = getattr(app, "cookie_id", ""), getattr(app, "tokens", {})
    for name, value in scope.get("headers", []):
        if name != b"cookie":
            continue
        for part in value.decode("latin-1").split(";"):
            key, _, token = part.strip().partition("=")
            if key in (f"access-token-{cookie_id}", f"access-token-unsecure-{cookie_id}") and token in tokens:
                return True
    return False


_API_INFO = re.compile(rb"window\.gradio_api_info = .*?;</script>", re.DOTALL)
_NO_API_INFO = b'window.gradio_api_info = {"named_endpoints": {}, "unnamed_endpoints": {}};</script>'


def _without_api_info(send: Any) -> Any:
    """Wrap ``send`` so that an HTML page's embedded API description is replaced by an empty one."""
    state: dict[str, Any] = {"start": None, "body": b"", "html": False}

    async def wrapped(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = dict(message.get("headers", []))
            state["html"] = headers.get(b"content-type", b"").startswith(b"text/html")
            if not state["html"]:
                return await send(message)
            state["start"] = message
            return None
        if message["type"] != "http.response.body" or not state["html"]:
            return await send(message)
        state["body"] += message.get("body", b"")
        if message.get("more_body"):
            return None
        body = _API_INFO.sub(lambda _: _NO_API_INFO, state["body"])
        start = state["start"]
        headers = [(k, v) for k, v in start.get("headers", []) if k != b"content-length"]
        headers.append((b"content-length", str(len(body)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": body})
        return None

    return wrapped
