"""User-facing errors. Every message names the cause and, where one exists, the fix.

The CLI prints ``str(err)`` and exits non-zero; the UI shows it with ``gr.Error``. Neither shows a traceback.
"""

from __future__ import annotations


class StudioError(Exception):
    """Base class for errors whose message is meant for the user."""


class InputError(StudioError):
    """The user's input (a prompt, a parameter, a file) is not acceptable."""


class ModelNotFound(StudioError):
    """A model name that is not in the registry."""


class BackendError(StudioError):
    """A backend could not load a model or answer a request."""


class ModelWheelMissing(BackendError):
    """The embedded default model's wheel is not installed."""
