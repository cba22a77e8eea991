"""Model backends, one file each, registered by name in ``BACKENDS``."""

from studio.backends import openai_backend, transformers_backend  # noqa: F401  (registration)
from studio.backends.base import BACKENDS, Backend, Completion, Conversation, GenParams, Message

__all__ = ["BACKENDS", "Backend", "Completion", "Conversation", "GenParams", "Message"]
