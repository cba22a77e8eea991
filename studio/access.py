"""Who may do what. Two roles: an admin changes the studio (models and endpoints, training jobs, imports,
other people's labels); an annotator labels, flags, runs the arena and browses. Without ``--auth`` the single
local user is an admin. The checks live here so every path (UI, REST, CLI) asks the same question."""

from __future__ import annotations

from dataclasses import dataclass

from studio.errors import InputError

ADMIN = "admin"
ANNOTATOR = "annotator"
ROLES = (ADMIN, ANNOTATOR)


@dataclass(frozen=True)
class User:
    name: str
    role: str = ANNOTATOR

    @property
    def is_admin(self) -> bool:
        return self.role == ADMIN


def require_admin(user: User, action: str) -> None:
    """Refuse ``action`` (e.g. "add a model") unless ``user`` is an admin."""
    if not user.is_admin:
        raise InputError(f"only an admin may {action}; {user.name} is an annotator")
