"""Models tab: the registered models, adding an endpoint or a local dir, removing one, and trying one with a
prompt. Opening the tab rereads the table and the pickers (a model a training job registered shows up)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import gradio as gr

from components.common import current_user, friendly, optional, text
from studio.access import require_admin
from studio.backends import GenParams
from studio.context import AppContext
from studio.errors import InputError, StudioError
from studio.models import ModelSpec, engine

COLUMNS = ["name", "backend", "engine", "path / url", "adapter", "parent", "description"]


@dataclass
class AddHandles:
    """Registering an endpoint or a local dir (admins only)."""

    name: gr.Textbox
    backend: gr.Radio
    path: gr.Textbox
    base_url: gr.Textbox
    key_env: gr.Textbox
    adapter: gr.Textbox
    add: gr.Button

    @property
    def inputs(self) -> list[Any]:
        return [self.name, self.backend, self.path, self.base_url, self.key_env, self.adapter]


@dataclass
class TryHandles:
    model: gr.Dropdown
    prompt: gr.Textbox
    button: gr.Button
    output: gr.Textbox


@dataclass
class Handles:
    table: gr.Dataframe
    add: AddHandles
    remove_model: gr.Dropdown
    remove: gr.Button
    try_it: TryHandles

    @property
    def refreshed(self) -> list[Any]:
        """What :func:`refreshed` returns, in order: the table and the pickers."""
        return [self.table, self.try_it.model, self.remove_model]


def rows(ctx: AppContext) -> list[list[str]]:
    return [
        [
            n,
            s.backend,
            engine_cell(ctx, s),
            s.base_url or s.path or s.gguf_file,
            s.adapter,
            s.parent,
            s.description,
        ]
        for n, s in ctx.registry.specs().items()
    ]


def engine_cell(ctx: AppContext, spec: ModelSpec) -> str:
    """The engine that runs the model's answers, with the registry's note when it is not its parent's."""
    note = ctx.registry.engine_note(spec.name)
    return f"{engine(spec)} ({note})" if note else engine(spec)


def removable(ctx: AppContext) -> list[str]:
    """The models a person may try to remove: the registered ones, not the built-in or the default model."""
    return [n for n, s in ctx.registry.specs().items() if not s.builtin and n != ctx.settings.default_model]


def refreshed(ctx: AppContext) -> list:
    """The table and the pickers for the models registered now (on page load and when the tab opens)."""
    pickers = [gr.Dropdown(choices=ctx.model_names()), gr.Dropdown(choices=removable(ctx), value=None)]
    return [rows(ctx), *pickers]


# -- layout ---------------------------------------------------------------------------------------------------------
def build(ctx: AppContext, opened: Sequence[Any] = ()) -> Handles:
    """The tab's widgets, then its events. ``opened``: the events on which the table and the pickers are read
    again (the app passes the page load and the tab's select); none given, the page load."""
    h = layout(ctx)
    wire(ctx, h, opened)
    return h


def layout(ctx: AppContext) -> Handles:
    gr.Markdown(
        "Every registered model can answer in the Arena and act as a judge. Trained adapters appear here "
        "with their parent; the engine column says what runs each model (a GGUF on llamacpp; LoRA adapters on "
        "transformers, also when their parent ran on llama.cpp). Only admins add models. API keys are read "
        "from the environment variable you name (STUDIO_KEY_*, or one an admin allowed in "
        "STUDIO_ALLOWED_KEY_ENVS), never stored."
    )
    table = gr.Dataframe(rows(ctx), headers=COLUMNS, interactive=False, label="Registered models")
    with gr.Accordion("Add a model", open=False):
        with gr.Row():
            name = gr.Textbox(label="Name", placeholder="my-model")
            backend = gr.Radio(["openai", "transformers"], value="openai", label="Backend")
        with gr.Row():
            path = gr.Textbox(label="Model (server's model name, local dir, or hub id)")
            base_url = gr.Textbox(label="Base URL (openai)", placeholder="http://127.0.0.1:8000/v1")
            key_env = gr.Textbox(label="API key env var (openai)", placeholder="STUDIO_KEY_MYSERVER")
            adapter = gr.Textbox(label="LoRA adapter dir (transformers, optional)")
        add = gr.Button("Add model")
    with gr.Accordion("Remove a model", open=False):
        gr.Markdown(
            "Removes the model from the registry (`models.toml`) and its lineage record. Runs, votes and "
            "verdicts that used it keep its name. The default model and a model that others were trained from "
            "cannot be removed; files on disk (weights, adapters) are left alone."
        )
        with gr.Row(equal_height=True):
            # any name is let through to the registry, which says what it refuses and why
            remove_pick = gr.Dropdown(removable(ctx), value=None, label="Model to remove", allow_custom_value=True,
                                      scale=3)  # fmt: skip
            remove = gr.Button("Remove model", variant="stop", scale=1)
    with gr.Row():
        try_model = gr.Dropdown(
            ctx.model_names(), value=ctx.settings.default_model, label="Try a model", scale=1
        )
        try_prompt = gr.Textbox(label="Prompt", value="What is the capital of France?", scale=3)
        try_btn = gr.Button("Try", scale=0)
    try_output = gr.Textbox(label="Answer", lines=4, interactive=False)
    added = AddHandles(name, backend, path, base_url, key_env, adapter, add)
    return Handles(table, added, remove_pick, remove, TryHandles(try_model, try_prompt, try_btn, try_output))


# -- events ---------------------------------------------------------------------------------------------------------
def wire(ctx: AppContext, h: Handles, opened: Sequence[Any]) -> None:
    def add_model(n: str, b: str, p: str, url: str, env: str, ad: str, request: gr.Request):
        try:
            user = current_user(ctx, request)
            require_admin(user, "add or change models")  # before reading anything else the caller sent
            spec = ModelSpec(
                name=text(n, "model name", required=True),
                backend=text(b, "backend") or "openai",
                path=text(p, "model"),
                base_url=text(url, "base URL"),
                api_key_env=text(env, "API key env var"),
                adapter=text(ad, "adapter dir"),
            )
            ctx.registry.add(spec, user=user)
        except StudioError as e:
            raise gr.Error(str(e)) from None
        gr.Info(f"Registered {spec.name}")
        names = ctx.model_names()
        return rows(ctx), gr.Dropdown(choices=names, value=spec.name)

    @friendly
    def remove_model(name: str | None, request: gr.Request) -> list:
        name = optional(name)
        if name is None:
            raise InputError("pick a model to remove")
        ctx.registry.remove(name, user=current_user(ctx, request))  # the registry keeps the store in step
        gr.Info(f"Removed {name}")
        return refreshed(ctx)

    def try_it(model: str, prompt: str) -> str:
        try:
            backend = ctx.registry.backend(model)
            [c] = backend.chat([[{"role": "user", "content": prompt or ""}]], GenParams(max_new_tokens=128))
        except StudioError as e:
            raise gr.Error(str(e)) from None
        return f"{c.text}\n\n— {c.completion_tokens} tokens in {c.latency_s:.2f} s"

    t = h.try_it
    h.add.add.click(add_model, h.add.inputs, [h.table, t.model], api_name="add_model").success(
        lambda: gr.Dropdown(choices=removable(ctx)), None, h.remove_model, api_visibility="private"
    )
    h.remove.click(remove_model, h.remove_model, h.refreshed, api_name="remove_model")
    gr.on(list(opened) or None, lambda: refreshed(ctx), None, h.refreshed, api_name="models_open",
          api_visibility="undocumented", show_progress="hidden", trigger_mode="always_last")  # fmt: skip
    t.button.click(
        try_it,
        [t.model, t.prompt],
        t.output,
        api_name="try_model",
        concurrency_id="generate",
        concurrency_limit=ctx.settings.concurrency,
    )
