"""The app factory: the only place that wires storage, studio and components together."""

from __future__ import annotations

import os
from pathlib import Path

import gradio as gr
from starlette.middleware import Middleware

from components import arena, data, improve, judge, models, train
from components import eval as eval_tab
from components.common import guard_events
from studio import rest
from studio.auth import AuthGuard, LoginLimiter, authenticator
from studio.context import AppContext
from studio.errors import configure_logging
from studio.settings import Settings

TITLE = "Reasoning Studio"
CSS = """
.arena-answer {font-size: 1.08rem; font-weight: 600; white-space: pre-wrap; padding: 10px 12px;
  border-radius: 8px; background: var(--background-fill-secondary); min-height: 3.5em;}
.arena-live {white-space: pre-wrap; padding: 10px 12px; color: var(--body-text-color-subdued); min-height: 3.5em;}
.arena-wait {font-style: italic;}
.arena-error {color: #b91c1c; padding: 10px 12px; white-space: pre-wrap;}
.arena-hidden {color: var(--body-text-color-subdued); font-style: italic;}
.arena-progress {font-size: 0.9rem;}
.arena-bar {display: flex; height: 8px; border-radius: 4px; overflow: hidden; margin: 4px 0;
  background: var(--background-fill-secondary); border: 1px solid var(--border-color-primary);}
.arena-bar-done {background: #16a34a;}
.arena-bar-skipped {background: #f59e0b;}
#arena-vote-msg {align-self: center;}
#arena-keys {font-size: 0.85rem; color: var(--body-text-color-subdued);}
"""
# Arena keyboard shortcuts, off while typing in a text box: A/B/T/X pick the pairwise choice, digits rank the
# focused (else the next unranked) column, Enter submits, N loads the next prompt, S skips it.
JS = """
() => {
  if (window.__arenaKeys) return;
  window.__arenaKeys = true;
  const shown = (el) => !!el && el.offsetParent !== null;
  const typing = (el) => !!el && (el.isContentEditable || ["TEXTAREA", "SELECT"].includes(el.tagName) ||
    (el.tagName === "INPUT" && !["radio", "checkbox", "button", "submit", "range"].includes(el.type)));
  const click = (id) => { const el = document.getElementById(id); if (shown(el)) { el.click(); return true; } return false; };
  let lastRank = -1;
  document.addEventListener("keydown", (e) => {
    if (e.ctrlKey || e.metaKey || e.altKey || e.isComposing || typing(e.target)) return;
    if (!shown(document.getElementById("arena-submit"))) return;  // another tab is open
    const key = e.key.length === 1 ? e.key.toLowerCase() : e.key;
    const pair = document.getElementById("arena-pairwise");
    let done = false;
    if ("abtx".includes(key) && key.length === 1 && shown(pair)) {
      const option = pair.querySelectorAll("input[type=radio]")[{a: 0, b: 1, t: 2, x: 3}[key]];
      if (option) { option.click(); done = true; }
    } else if (/^[1-6]$/.test(key)) {
      const groups = [...document.querySelectorAll("[id^=arena-rank-]")].filter(shown);
      if (groups.length && Number(key) <= groups.length) {
        let i = groups.findIndex((g) => g.contains(document.activeElement));
        if (i < 0) i = groups.findIndex((g) => !g.querySelector("input:checked"));
        if (i < 0) i = (lastRank + 1) % groups.length;
        const option = [...groups[i].querySelectorAll("input[type=radio]")].find((r) => r.value === key);
        if (option) { option.click(); lastRank = i; done = true; }
        if (document.activeElement && groups[i].contains(document.activeElement)) document.activeElement.blur();
      }
    } else if (key === "Enter" && e.target.tagName !== "BUTTON") {
      done = click("arena-submit");
    } else if (key === "n") {
      done = click("arena-next");
    } else if (key === "s") {
      done = click("arena-skip");
    }
    if (done) e.preventDefault();
  });
}
"""


def create_app(settings: Settings, ctx: AppContext | None = None) -> gr.Blocks:
    settings.ensure_dirs()
    ctx = ctx or AppContext(settings)
    _ = ctx.store  # open it now: a second studio on this data dir stops here, naming the holder
    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(f"# {TITLE}\nSystem 1 vs System 2 prompting, side by side.")
        with gr.Tabs() as tabs:
            with gr.Tab("Arena", id="arena") as arena_page:
                arena_tab = arena.build(ctx)
            # each tab rereads its tables and model pickers when it is opened (and on page load), so a model
            # registered while the studio runs (Models tab, a finished training job) is offered everywhere
            with gr.Tab("Data") as page:
                data.build(ctx, [demo.load, page.select])
            with gr.Tab("Judge") as page:
                judge.build(ctx, [demo.load, page.select])
            with gr.Tab("Train") as page:
                train.build(ctx, [demo.load, page.select])
            with gr.Tab("Models") as page:
                models.build(ctx, [demo.load, page.select])
            with gr.Tab("Eval") as page:
                eval_tab.build(ctx, [demo.load, page.select])
            with gr.Tab("Improve") as page:
                improve_tab = improve.build(ctx, [demo.load, page.select])
        improve.wire_arena(ctx, improve_tab, tabs, "arena", arena_tab.columns)  # "Open in Arena" beside M0
        gr.on([demo.load, arena_page.select], lambda: arena.opened(ctx), None,
              [arena_tab.columns, arena_tab.workflow.prompt_set],
              api_name="arena_open", api_visibility="undocumented", show_progress="hidden",
              trigger_mode="always_last")  # fmt: skip
    guard_events(demo, ctx)  # admin-only events check the role; user errors: one toast and one log line
    # Quick actions (votes, labels, browsing) run 16 at a time, so they never wait behind a generation;
    # events that generate share concurrency_id="generate", limited to settings.concurrency.
    demo.queue(default_concurrency_limit=16)
    return demo


def serve(settings: Settings, *, share: bool = False, preload: bool = True, block: bool = True) -> gr.Blocks:
    configure_logging()
    limiter = LoginLimiter(settings.login_max_failures, settings.login_lockout_s)
    auth = authenticator(Path(settings.auth_file), limiter) if settings.auth_file else None  # fails early
    # uploads land in the data dir (not a temp dir shared with every gradio app), unless the user chose a place
    os.environ.setdefault("GRADIO_TEMP_DIR", str(settings.data_dir.resolve() / "uploads"))
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no telemetry or version checks leave
    ctx = AppContext(settings)
    demo = create_app(settings, ctx)  # opens the store: fails before loading when another studio holds it
    api = rest.Api(ctx)  # the REST API (/api/v1) on the same server, sharing the store
    if preload:  # load (and, on first run, convert) the default model before the first click
        ctx.registry.backend(None, progress=lambda f, m: print(f"[{f:4.0%}] {m}", flush=True))
    print(
        f"Reasoning Studio on http://{settings.host}:{settings.port} (data dir: {settings.data_dir})",
        flush=True,
    )
    demo.launch(
        server_name=settings.host,
        server_port=settings.port,
        share=share,
        auth=auth,
        auth_message="Reasoning Studio: log in to label (your labels carry your user name)."
        if auth
        else None,
        prevent_thread_lock=not block,
        show_error=True,  # gradio's own input errors (missing or wrong-typed values) reach API clients
        max_file_size=f"{settings.max_upload_mb}mb",
        root_path=settings.root_path or None,
        theme=gr.themes.Soft(),
        css=CSS,
        js=JS,
        footer_links=["api"],
        # AuthGuard: login backoff per client address; no API description before login
        app_kwargs={"lifespan": rest.lifespan(api), "middleware": [Middleware(AuthGuard)]},
    )
    return demo
