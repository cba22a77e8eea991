"""Models tab: the registered models, adding an endpoint or a local dir, and trying one with a prompt."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from components.common import current_user, text
from studio.access import require_admin
from studio.backends import GenParams
from studio.context import AppContext
from studio.errors import StudioError
from studio.models import ModelSpec

COLUMNS = ["name", "backend", "path / url", "adapter", "parent", "description"]


@dataclass
class Handles:
    table: gr.Dataframe
    try_model: gr.Dropdown
    try_prompt: gr.Textbox
    try_output: gr.Textbox


def rows(ctx: AppContext) -> list[list[str]]:
    return [
        [n, s.backend, s.base_url or s.path, s.adapter, s.parent, s.description]
        for n, s in ctx.registry.specs().items()
    ]


def refreshed(ctx: AppContext) -> list:
    """The table and the picker for the models registered now (called on every page load)."""
    return [rows(ctx), gr.Dropdown(choices=ctx.model_names())]


def build(ctx: AppContext) -> Handles:
    gr.Markdown(
        "Every registered model can answer in the Arena and act as a judge. Trained adapters appear here "
        "with their parent. Only admins add models. API keys are read from the environment variable you name "
        "(STUDIO_KEY_*, or one an admin allowed in STUDIO_ALLOWED_KEY_ENVS), never stored."
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
    with gr.Row():
        try_model = gr.Dropdown(
            ctx.model_names(), value=ctx.settings.default_model, label="Try a model", scale=1
        )
        try_prompt = gr.Textbox(label="Prompt", value="What is the capital of France?", scale=3)
        try_btn = gr.Button("Try", scale=0)
    try_output = gr.Textbox(label="Answer", lines=4, interactive=False)

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

    def try_it(model: str, prompt: str) -> str:
        try:
            backend = ctx.registry.backend(model)
            [c] = backend.chat([[{"role": "user", "content": prompt or ""}]], GenParams(max_new_tokens=128))
        except StudioError as e:
            raise gr.Error(str(e)) from None
        return f"{c.text}\n\n— {c.completion_tokens} tokens in {c.latency_s:.2f} s"

    add.click(
        add_model, [name, backend, path, base_url, key_env, adapter], [table, try_model], api_name="add_model"
    )
    try_btn.click(
        try_it,
        [try_model, try_prompt],
        try_output,
        api_name="try_model",
        concurrency_id="generate",
        concurrency_limit=ctx.settings.concurrency,
    )
    return Handles(table, try_model, try_prompt, try_output)
