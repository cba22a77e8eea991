"""Arena tab (walking skeleton): a prompt, a model picker and a streamed System 1 answer."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import gradio as gr

from studio.backends import GenParams
from studio.context import AppContext
from studio.errors import StudioError


@dataclass
class Handles:
    prompt: gr.Textbox
    model: gr.Dropdown
    run: gr.Button
    answer: gr.Textbox


def build(ctx: AppContext) -> Handles:
    names = ctx.model_names()
    with gr.Row():
        prompt = gr.Textbox(label="Prompt", placeholder="Ask something...", lines=3, scale=4)
        with gr.Column(scale=1):
            model = gr.Dropdown(names, value=ctx.settings.default_model, label="Model")
            run = gr.Button("Run", variant="primary")
    answer = gr.Textbox(label="System 1 answer", lines=6, elem_classes="answer-box", interactive=False)

    def system1(text: str, model_name: str) -> Iterator[str]:
        conv = [{"role": "user", "content": text or ""}]
        try:
            backend = ctx.registry.backend(model_name)
            acc = ""
            for chunk in backend.stream(conv, GenParams(max_new_tokens=256)):
                acc += chunk
                yield acc
        except StudioError as e:
            raise gr.Error(str(e)) from None

    run.click(system1, [prompt, model], answer, api_name="system1")
    prompt.submit(system1, [prompt, model], answer, api_name=False)
    return Handles(prompt, model, run, answer)
