"""Annotator logins for ``studio serve --auth users.toml``. Passwords are stored as salted PBKDF2 hashes.

users.toml::

    [users.alice]
    password_hash = "pbkdf2_sha256$600000$<salt hex>$<hash hex>"

Create entries with ``studio users add alice`` (asks for the password) rather than by hand.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import sys
from collections.abc import Callable
from pathlib import Path

import tomli_w

from studio.errors import InputError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ALGO = "pbkdf2_sha256"
ITERATIONS = 600_000


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


def load_users(path: Path) -> dict[str, str]:
    """username -> password hash. Plain-text passwords are refused."""
    if not path.exists():
        raise InputError(
            f"auth file {path} does not exist; create it with: studio users add NAME --file {path}"
        )
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not valid TOML: {e}") from None
    users = {}
    for name, body in raw.get("users", {}).items():
        h = body.get("password_hash", "") if isinstance(body, dict) else ""
        if not h.startswith(ALGO + "$"):
            raise InputError(
                f"{path}: user {name!r} needs a password_hash made by `studio users add` (no plain text)"
            )
        users[name] = h
    if not users:
        raise InputError(f"{path} defines no users; add one with: studio users add NAME --file {path}")
    return users


def add_user(path: Path, name: str, password: str) -> None:
    if not name or not name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise InputError(f"user name {name!r} may use only letters, digits, '-', '_' and '.'")
    raw = tomllib.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
    raw.setdefault("users", {})[name] = {"password_hash": hash_password(password)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(tomli_w.dumps(raw))
    tmp.chmod(0o600)
    tmp.replace(path)


def authenticator(path: Path) -> Callable[[str, str], bool]:
    """A Gradio ``auth=`` callable over the users file (read once at start-up)."""
    users = load_users(path)

    def check(username: str, password: str) -> bool:
        stored = users.get(username)
        return stored is not None and verify_password(password, stored)

    return check
