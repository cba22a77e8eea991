"""Reasoning Studio: System 1 vs System 2 prompting pipelines, preference data, judges and fine-tunes.

The one-call Python entry points live in :mod:`studio.api`.
"""

__version__ = "0.1.0"
