"""The ``studio`` command. Each command group is a module with ``register(subparsers)``; add yours to GROUPS.

Errors meant for the user (``StudioError``) print one clear line and exit 2; they never show a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence
from dataclasses import fields
from typing import Any, TypeVar

from storage import StoreError
from studio import __version__
from studio.errors import StudioError

# Command-group modules, in help order. Each defines ``register(sub: argparse._SubParsersAction) -> None``
# and sets ``func=`` on its parsers; ``func(args, ctx)`` gets the command's one AppContext (settings, model
# registry, store and job runner, each made when first used) and returns an exit code.
GROUPS = [
    "studio.cli.core",
    "studio.cli.store",
    "studio.cli.run",
    "studio.cli.judge",
    "studio.cli.train",
    "studio.cli.eval",
    "studio.cli.compare",
    "studio.cli.improve",
]


def add_settings_flags(p: argparse.ArgumentParser) -> None:
    """Flags shared by every command; they override ``STUDIO_*`` environment variables."""
    # SUPPRESS: a nested sub-command's unset flag must not overwrite one given to its parent command.
    g = p.add_argument_group("settings (override STUDIO_* environment variables)")
    kw = {"default": argparse.SUPPRESS}
    g.add_argument("--data-dir", help="data dir (env STUDIO_HOME, default ./studio-data)", **kw)
    g.add_argument("--threads", type=int, help="torch threads (env STUDIO_THREADS, 0 = all cores)", **kw)
    g.add_argument(
        "--dtype",
        choices=["auto", "bfloat16", "float32", "float16"],
        help="model dtype (env STUDIO_DTYPE)",
        **kw,
    )
    g.add_argument("--default-model", help="default model name (env STUDIO_DEFAULT_MODEL)", **kw)


def add_decoding_flags(g: Any, max_new_tokens_help: str | None = None) -> None:
    """The flags of the :class:`~studio.backends.base.Decoding` fields, shared by `generate`, `run` and `eval`.

    Every flag defaults to None (unset): only the flags a user gives reach the params, and the model's decoding
    defaults (``models.toml`` ``params``) fill the rest (:func:`studio.strategies.resolve_params`)."""
    g.add_argument("--max-new-tokens", type=int, help=max_new_tokens_help or "new tokens (default 256)")
    g.add_argument("--temperature", type=float, help="0 = greedy (the default)")
    g.add_argument("--top-p", type=float, help="nucleus sampling (default 1.0 = off)")
    g.add_argument("--seed", type=int)
    g.add_argument(
        "--repetition-penalty",
        type=float,
        help="penalty on tokens already in the output (the transformers backend; a server applies its own rule), 1.0 = off (default: the model's)",
    )
    g.add_argument(
        "--no-repeat-ngram-size",
        type=int,
        help="no n-gram of this size occurs twice in the output, 0 = off (default: the model's)",
    )


P = TypeVar("P")


def given_params(cls: type, args: argparse.Namespace) -> dict[str, Any]:
    """The fields of the params dataclass ``cls`` that the user GAVE as flags (flags left unset are None and
    are left out), as a dict: ``studio.api`` fills the rest from the model's decoding defaults."""
    return {f.name: getattr(args, f.name) for f in fields(cls) if getattr(args, f.name, None) is not None}


def params_from_args(cls: type[P], args: argparse.Namespace) -> P:
    """The one flags -> params mapping: each field of the params dataclass ``cls`` (``GenParams``,
    ``StrategyParams``) is read from the flag of the same name; unset flags keep the class defaults."""
    return cls(**given_params(cls, args))  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="studio", description="Reasoning Studio: System 1 vs System 2, side by side."
    )
    parser.add_argument("--version", action="version", version=f"studio {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in GROUPS:
        importlib.import_module(name).register(sub)
    for p in sub.choices.values():
        add_settings_flags(p)
    return parser


def settings_from_args(args: argparse.Namespace):  # -> Settings
    from studio.settings import Settings

    return Settings.load(
        data_dir=getattr(args, "data_dir", None),
        threads=getattr(args, "threads", None),
        dtype=getattr(args, "dtype", None),
        default_model=getattr(args, "default_model", None),
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        from studio.context import AppContext

        settings = settings_from_args(args)
        settings.apply_threads()
        with AppContext(settings) as ctx:
            return int(args.func(args, ctx) or 0)
    except (StudioError, StoreError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
