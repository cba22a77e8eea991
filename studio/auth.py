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

import hashlib
import hmac
import os
import secrets
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def load_records(path: Path) -> dict[str, UserRecord]:
    """name -> record, re-read only when the file changes (so a role or token edit applies without a
    restart). Plain-text passwords and unknown roles are refused."""
    path = Path(path)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise InputError(
            f"auth file {path} does not exist; create it with: studio users add NAME --file {path}"
        ) from None
    key = (st.st_mtime_ns, st.st_size, st.st_ino)
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
def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(path: Path, name: str) -> str:
    """A new API token for ``name`` (replacing any earlier one). Only its sha256 is stored; the token itself
    is returned once, to be shown to its owner."""
    path = Path(path)
    raw = _read_toml(path) if path.exists() else {}
    if name not in raw.get("users", {}):
        raise InputError(f"no user {name!r} in {path}; add one with: studio users add {name} --file {path}")
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    raw["users"][name]["token_sha256"] = _token_hash(token)
    _write(path, raw)
    return token


def user_for_token(path: Path, token: str) -> User | None:
    """The user an API token belongs to, or None. Every stored hash is compared, in constant time each."""
    if not token:
        return None
    want = _token_hash(token)
    found = None
    for record in load_records(Path(path)).values():
        if record.token_sha256 and hmac.compare_digest(record.token_sha256, want):
            found = record.user
    return found


def authenticator(path: Path) -> Callable[[str, str], bool]:
    """A Gradio ``auth=`` callable over the users file."""
    load_records(path)  # fail at start-up on a missing or bad file

    def check(username: str, password: str) -> bool:
        record = load_records(path).get(username)
        return record is not None and verify_password(password, record.password_hash)

    return check
