"""Model backends, one file each, registered by name in ``BACKENDS`` through the ``studio.backends`` entry
points (pyproject.toml; loaded on first lookup, see studio/registry.py)."""

from studio.backends.base import BACKENDS, Backend, Completion, Conversation, GenParams, Message

__all__ = ["BACKENDS", "Backend", "Completion", "Conversation", "GenParams", "Message"]
