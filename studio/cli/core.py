"""Core commands: serve, generate, models."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import TYPE_CHECKING

from studio.backends import GenParams
from studio.cli import add_decoding_flags, add_settings_flags, params_from_args

if TYPE_CHECKING:
    from studio.context import AppContext


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="launch the studio web app (binds 127.0.0.1 unless --host is given)")
    p.add_argument("--host", help="interface to bind (env STUDIO_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=int, help="port (env STUDIO_PORT, default 7860)")
    p.add_argument("--share", action="store_true", help="create a public Gradio share link (off by default)")
    p.add_argument("--no-preload", action="store_true", help="do not load the default model before serving")
    p.add_argument(
        "--auth", metavar="USERS_TOML", help="require login; users file made by `studio users add`"
    )
    p.add_argument(
        "--root-path", help="URL prefix behind a reverse proxy, e.g. /studio (env STUDIO_ROOT_PATH)"
    )
    p.set_defaults(func=cmd_serve)

    p = sub.add_parser("users", help="manage annotator logins for `studio serve --auth`")
    usub = p.add_subparsers(dest="users_cmd", metavar="ACTION", required=True)
    q = usub.add_parser("add", help="add or update a user (asks for the password)")
    q.add_argument("name")
    q.add_argument("--file", default="users.toml", help="users file (default ./users.toml)")
    q.add_argument("--password-stdin", action="store_true", help="read the password from stdin (for scripts)")
    q.add_argument(
        "--role",
        choices=["admin", "annotator"],
        help="admin: manages models, training, imports and anyone's labels; annotator (default for a new "
        "user): labels, flags, runs the arena, browses. Omitted: an existing user keeps their role",
    )
    q.set_defaults(func=cmd_users_add)
    q = usub.add_parser("list", help="list users and their roles")
    q.add_argument("--file", default="users.toml")
    q.set_defaults(func=cmd_users_list)
    q = usub.add_parser("role", help="change a user's role")
    q.add_argument("name")
    q.add_argument("role", choices=["admin", "annotator"])
    q.add_argument("--file", default="users.toml")
    q.set_defaults(func=cmd_users_role)
    q = usub.add_parser(
        "token", help="issue an API token for the REST API (replaces the user's earlier token; printed once)"
    )
    q.add_argument("name")
    q.add_argument("--file", default="users.toml")
    q.set_defaults(func=cmd_users_token)
    for q in list(usub.choices.values()):
        add_settings_flags(q)

    p = sub.add_parser("generate", help="answer one prompt with a model, streamed to the terminal")
    p.add_argument("prompt", help="the prompt text ('-' reads stdin)")
    p.add_argument("--model", help="registered model name (default: the default model)")
    p.add_argument("--system", help="optional system message")
    add_gen_flags(p)
    p.add_argument(
        "--json", action="store_true", help="print the completion with token counts and latency as JSON"
    )
    p.set_defaults(func=cmd_generate)

    p = sub.add_parser("models", help="list, add, remove or try registered models")
    msub = p.add_subparsers(dest="models_cmd", metavar="ACTION")
    p.set_defaults(func=cmd_models_list)
    q = msub.add_parser("list", help="list registered models (default)")
    q.add_argument("--json", action="store_true")
    q.set_defaults(func=cmd_models_list)
    q = msub.add_parser(
        "add", help="register a local dir, hub id, GGUF, adapter or OpenAI-compatible endpoint"
    )
    q.add_argument("name")
    q.add_argument(
        "--backend",
        default="transformers",
        help="transformers | openai | llamacpp (a GGUF file on llama.cpp)",
    )
    q.add_argument("--path", default="", help="model dir or hub id; for openai, the server's model name")
    q.add_argument(
        "--gguf-file", default="", help="GGUF file name inside --path; llamacpp: the GGUF file itself"
    )
    q.add_argument("--adapter", default="", help="PEFT LoRA adapter dir on top of --path")
    q.add_argument(
        "--kind",
        default="chat",
        choices=("chat", "reward"),
        help="chat (default) or reward: a sequence-classification dir with one label, scored by the "
        "reward_model judge and never offered as a chat model",
    )
    q.add_argument("--base-url", default="", help="openai: e.g. http://127.0.0.1:8000/v1")
    q.add_argument(
        "--api-key-env",
        default="",
        help="openai: env var that holds the API key: STUDIO_KEY_* or a name listed in STUDIO_ALLOWED_KEY_ENVS "
        "(default: OPENAI_API_KEY / STUDIO_OPENAI_API_KEY)",
    )
    q.add_argument("--description", default="")
    q.add_argument("--replace", action="store_true")
    q.set_defaults(func=cmd_models_add)
    q = msub.add_parser("remove", help="unregister a model")
    q.add_argument("name")
    q.set_defaults(func=cmd_models_remove)
    for q in list(msub.choices.values()):
        add_settings_flags(q)


def add_gen_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("decoding")
    add_decoding_flags(g)
    g.add_argument("--stop", action="append", default=[], help="stop string (repeatable)")


def cmd_serve(args: argparse.Namespace, ctx: AppContext) -> int:
    from studio.app import serve

    settings = ctx.settings  # the server builds its own context on these settings (with --auth, --root-path)
    if args.auth:
        settings = dataclasses.replace(settings, auth_file=args.auth)
    if args.root_path is not None:
        settings = dataclasses.replace(settings, root_path=args.root_path)
    serve(settings, share=args.share, preload=not args.no_preload)
    return 0


def cmd_users_add(args: argparse.Namespace, ctx: AppContext) -> int:
    import getpass
    from pathlib import Path

    from studio.auth import add_user

    if args.password_stdin:
        password = sys.stdin.readline().rstrip("\n")
    else:
        password = getpass.getpass(f"password for {args.name}: ")
        if password != getpass.getpass("again: "):
            print("error: the passwords differ", file=sys.stderr)
            return 2
    add_user(Path(args.file), args.name, password, role=args.role)
    print(f"saved {args.name} to {args.file} (hashed)")
    return 0


def cmd_users_list(args: argparse.Namespace, ctx: AppContext) -> int:
    from pathlib import Path

    from studio.auth import load_records

    for name, record in load_records(Path(args.file)).items():
        print(f"{name}\t{record.role}" + ("\ttoken" if record.token_sha256 else ""))
    return 0


def cmd_users_role(args: argparse.Namespace, ctx: AppContext) -> int:
    from pathlib import Path

    from studio.auth import set_role

    set_role(Path(args.file), args.name, args.role)
    print(f"{args.name} is now an {args.role}")
    return 0


def cmd_users_token(args: argparse.Namespace, ctx: AppContext) -> int:
    from pathlib import Path

    from studio.auth import issue_token

    token = issue_token(Path(args.file), args.name)
    print(token)
    print(
        f"(an API token for {args.name}; only its hash is kept in {args.file}, so copy it now)",
        file=sys.stderr,
    )
    return 0


def cmd_generate(args: argparse.Namespace, ctx: AppContext) -> int:
    from studio.backends.base import validate_conversation

    prompt = sys.stdin.read() if args.prompt == "-" else args.prompt
    conv = ([{"role": "system", "content": args.system}] if args.system else []) + [
        {"role": "user", "content": prompt}
    ]
    validate_conversation(conv)  # fail fast, before loading a model
    params = params_from_args(GenParams, args)
    backend = ctx.registry.backend(args.model, progress=_stderr_progress)
    if args.json:
        print(json.dumps(backend.chat([conv], params)[0].to_dict(), ensure_ascii=False, indent=2))
        return 0
    for chunk in backend.stream(conv, params):
        sys.stdout.write(chunk)
        sys.stdout.flush()
    sys.stdout.write("\n")
    return 0


def _stderr_progress(frac: float, msg: str) -> None:
    print(f"[{frac:4.0%}] {msg}", file=sys.stderr, flush=True)


def cmd_models_list(args: argparse.Namespace, ctx: AppContext) -> int:
    specs = ctx.registry.specs()
    if getattr(args, "json", False):
        rows = [{"name": n, **s.to_toml(), "builtin": s.builtin} for n, s in specs.items()]
        print(json.dumps(rows, indent=2))
        return 0
    width = max(len(n) for n in specs)
    for name, spec in specs.items():
        tag = " (built-in)" if spec.builtin else ""
        default = " [default]" if name == ctx.settings.default_model else ""
        print(f"{name:<{width}}  {spec.summary()}{tag}{default}")
        if spec.parent:
            print(f"{'':<{width}}  parent: {spec.parent}  run: {spec.training_run}")
        defaults = ctx.registry.decoding_defaults(name)
        if defaults:
            print(f"{'':<{width}}  decoding defaults: {json.dumps(defaults)}")
    return 0


def cmd_models_add(args: argparse.Namespace, ctx: AppContext) -> int:
    from studio.models import ModelSpec

    fields = "name backend path gguf_file adapter base_url api_key_env description kind".split()
    spec = ModelSpec(**{f: getattr(args, f) for f in fields})  # the flags are named after the spec's fields
    spec = ctx.registry.add(spec, replace=args.replace)
    print(f"registered {spec.name}: {spec.summary()}")
    return 0


def cmd_models_remove(args: argparse.Namespace, ctx: AppContext) -> int:
    # models.toml only: the store's lineage row follows when a context next opens the store
    ctx.registry.remove(args.name)
    print(f"removed {args.name}")
    return 0
