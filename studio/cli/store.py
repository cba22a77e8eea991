"""``studio export``, ``studio import`` and ``studio stats``: the preference store from the command line."""

from __future__ import annotations

import argparse
import json
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from studio.errors import InputError, StudioError

if TYPE_CHECKING:  # storage (and duckdb) load only when a store command runs
    from storage import Filters, Store


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="export preference data for TRL (DPO, KTO or reward-model pairs)")
    p.add_argument("--format", dest="kind", choices=["dpo", "kto", "rm"], required=True, help="item kind")
    p.add_argument("--conversational", action="store_true", help="chat messages instead of plain strings")
    p.add_argument(
        "--to", dest="fmt", choices=["parquet", "jsonl", "hf", "hub"], required=True,
        help="parquet or jsonl file, hf = datasets.save_to_disk dir, hub = push_to_hub (PATH is the repo id)",
    )  # fmt: skip
    p.add_argument(
        "path",
        metavar="PATH",
        help="output file or dir, anywhere (a relative path resolves against the current directory, not the "
        "data dir); or user/name for --to hub",
    )
    add_filter_flags(p)
    p.add_argument("--good-rating", type=float, help="KTO: single-verdict ratings >= this are desirable")
    p.set_defaults(func=lambda args, ctx: cmd_export(args, ctx))

    p = sub.add_parser("import", help="import a TRL preference set (JSONL, Parquet or an HF dataset dir)")
    p.add_argument("path", metavar="PATH", nargs="?", help="the file or dir to import (or give --prefset)")
    p.add_argument("--prompt-set", help="prompt set for the imported prompts (default import:<file stem>)")
    p.add_argument("--annotator", help="annotator id for the imported votes (default import:<file name>)")
    p.add_argument(
        "--seed", default="0", metavar="N",
        help="seed of the shuffle that shows the chosen answer first or second (default 0; same seed, same "
        "positions)",
    )  # fmt: skip
    p.add_argument(
        "--prefset", metavar="SPLIT",
        help="import the shipped preference set's split (train or test) as prompt set prefs-SPLIT, "
        "annotator prefset:written",
    )  # fmt: skip
    p.set_defaults(func=lambda args, ctx: cmd_import(args, ctx))

    p = sub.add_parser("stats", help="what the preference store holds")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=lambda args, ctx: cmd_stats(args, ctx))


def add_filter_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("filters")
    g.add_argument("--annotator", action="append", help="annotator id or judge name (repeatable)")
    g.add_argument("--source", choices=["human", "judge"], help="only human votes, or only judge verdicts")
    g.add_argument("--model", action="append", help="pairs with a run by this model (repeatable)")
    g.add_argument("--strategy", action="append", help="pairs with a run by this strategy (repeatable)")
    g.add_argument("--prompt-set", action="append", help="prompt set (repeatable)")
    g.add_argument("--since", type=_date, help="votes/verdicts at or after this date or ISO time (UTC)")
    g.add_argument(
        "--until", type=_date, help="votes/verdicts before this ISO time, or up to this date inclusive"
    )
    g.add_argument("--agree-only", action="store_true", help="only pairs where a human and a judge agree")


def filters_from_args(args: argparse.Namespace) -> Filters:
    from storage import Filters

    return Filters(
        annotator=args.annotator, source=args.source, model=args.model, strategy=args.strategy,
        prompt_set=args.prompt_set, since=args.since, until=args.until, agree_only=args.agree_only,
    )  # fmt: skip


def _date(text: str) -> date | datetime:
    try:
        return datetime.fromisoformat(text) if "T" in text or " " in text else date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an ISO date (2025-01-31) or time") from None


@contextmanager
def open_store(ctx: Any) -> Iterator[Store]:
    """The context's store (the command's context closes it); storage errors become one-line
    ``StudioError``s."""
    from storage import StoreError

    try:
        yield ctx.store
    except StoreError as e:
        raise StudioError(str(e)) from None


def cmd_export(args: argparse.Namespace, ctx: Any) -> int:
    if args.fmt != "hub":
        args.path = str(Path(args.path).expanduser().resolve())
        writable_target(Path(args.path))  # before the store opens or anything is computed
    with open_store(ctx) as store:
        try:
            result = store.export(
                args.kind, args.fmt, args.path, filters_from_args(args), conversational=args.conversational,
                good_rating=args.good_rating, allow_outside=True,  # the user named this path
            )  # fmt: skip
        except OSError as e:  # a full disk, a read-only dir: the path's problem, said in one line
            raise InputError(f"cannot write {args.path}: {e.strerror or e}") from None
    print(f"wrote {result.rows} {args.kind} rows to {result.path}")
    if not result.rows:
        print("note: no rows matched; `studio stats` shows what the store holds")
    return 0


def writable_target(path: Path) -> None:
    """Refuse an output path that cannot be created: a parent that is a file (``/dev/null/x``), or a
    directory we may not write to."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise InputError(f"cannot write {path}: {parent} is not a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {path}: {parent} is not writable")


def cmd_import(args: argparse.Namespace, ctx: Any) -> int:
    seed = _seed(args.seed)
    if args.prefset is not None:
        return _import_prefset(args, ctx, seed)
    if args.path is None:
        raise InputError("name a file or dir to import, or give --prefset train|test")
    path = Path(args.path).expanduser()
    if not path.exists():
        raise InputError(f"{path}: no such file or directory")
    with open_store(ctx) as store:
        result = store.import_preferences(
            path, prompt_set=args.prompt_set, annotator=args.annotator, seed=seed
        )
    print(
        f"imported {result.rows} pairs into prompt set {result.prompt_set!r} (annotator {result.annotator!r})"
        f"; {_second(result.rows, seed)}"
    )
    return 0


def _import_prefset(args: argparse.Namespace, ctx: Any, seed: int) -> int:
    from studio.judging import prefset

    if args.path is not None or args.prompt_set is not None or args.annotator is not None:
        raise InputError(
            "--prefset imports the shipped set under its own name; drop PATH, --prompt-set and --annotator"
        )
    prefset.path(args.prefset)  # a bad split is an error before the store opens
    with open_store(ctx) as store:
        result = prefset.import_split(store, args.prefset, seed=seed)
    print(
        f"imported the shipped preference set's {args.prefset} split: {result.rows} pairs into prompt set "
        f"{result.prompt_set!r} (annotator {result.annotator!r}); {_second(result.rows, seed)}"
    )
    return 0


def _seed(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise InputError(f"--seed takes a whole number, not {text!r}") from None


def _second(rows: int, seed: int) -> str:
    from storage.exchange import chosen_positions

    return f"chosen answer shown second in {sum(chosen_positions(rows, seed))} of them (seed {seed})"


def cmd_stats(args: argparse.Namespace, ctx: Any, out: Callable[[str], None] = print) -> int:
    with open_store(ctx) as store:
        stats = store.stats()
    if args.json:
        out(json.dumps(stats, indent=2, default=str))
        return 0
    out(f"store: {ctx.settings.db_path} (schema version {stats.pop('schema_version')})")
    choices = stats.pop("choices")
    for key, value in stats.items():
        out(f"  {key.replace('_', ' ')}: {value}")
    if choices:
        out("  pairwise choices: " + ", ".join(f"{k} {v}" for k, v in choices.items()))
    return 0
