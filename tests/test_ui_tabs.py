"""Tabs that read fresh when they are opened, model pickers that follow the registry, and removing a model: through
``gradio_client`` against the app launched in-process on a real DuckDB store.

A browser opening a tab fires the tab's ``select`` event; the tests read the served config to check which
events each tab's select (and the page load) runs, then call those same events by their names."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from storage import Store
from studio.models import ModelRegistry, ModelSpec
from studio.settings import Settings

pytestmark = pytest.mark.slow

ENDPOINT = ("late-endpoint", "openai", "some-model", "http://127.0.0.1:9/v1", "", "")  # never called
#: tab label -> the event its opening runs, and which of that event's outputs are model pickers
OPENERS = {
    "Arena": ("arena_open", [0]),
    "Data": ("data_open", [2]),
    "Judge": ("judge_open", [0]),
    # the base model and Compare's judge model (Compare's trained-model picker offers trained models only)
    "Train": ("train_open", [0, 2]),
    "Models": ("models_open", [1, 2]),  # the Try picker and the Remove picker
    "Eval": ("eval_open", [1]),
}


def stored(settings: Settings) -> Store:
    """A second connection to the app's DuckDB file (same process, so DuckDB shares the open database)."""
    return Store(settings.db_path, data_dir=settings.data_dir)


def opened_by(config: dict, label: str) -> list[dict]:
    """The events that run when the tab called ``label`` is selected."""
    tabs = [c for c in config["components"] if c["type"] == "tabitem"]
    [tab] = [c["id"] for c in tabs if c["props"].get("label") == label]
    return [d for d in config["dependencies"] if [tab, "select"] in [list(t) for t in d["targets"]]]


def choices(update: dict) -> list[str]:
    return [value for _, value in update["choices"]]


def test_every_tab_reads_again_when_opened(settings, launch) -> None:
    client = launch()
    config = client.config
    ids = {c["id"]: c for c in config["components"]}
    for label, (api, _) in OPENERS.items():
        events = opened_by(config, label)
        assert api in [d["api_name"] for d in events], f"opening {label} does not run {api}"
        [event] = [d for d in events if d["api_name"] == api]
        assert "load" in [t[1] for t in event["targets"]], f"{api} does not run on page load"
    # the Data tab rereads its counts and every table; the Judge tab its dashboard
    data_tables = {d["api_name"] for d in opened_by(config, "Data")}
    assert {"data_open", "data_prompts", "data_runs", "data_votes", "data_verdicts", "data_step_labels",
            "data_label_audit"} <= data_tables  # fmt: skip
    judge_outputs = {ids[o]["props"].get("label") for d in opened_by(config, "Judge") for o in d["outputs"]}
    assert {"Agreement", "Leaderboard", "Judge model"} <= judge_outputs

    # what they read is the store now, not the store when the page loaded
    stats, *_ = client.predict(api_name="/data_open")
    assert "**0** prompts" in stats
    with stored(settings) as store:
        pid = store.add_prompt("Late question?", "late-set")
        a, b = (store.add_run(pid, "smollm2-135m", s, ans) for s, ans in (("system1", "4"), ("cot", "5")))
        store.add_vote(store.add_comparison([a, b]), "A", "alice")
    stats, sets, *_ = client.predict(api_name="/data_open")
    assert "**1** prompts · **2** runs" in stats and "late-set" in choices(sets)
    status, *_ = client.predict("", False, api_name="/judge_dashboard")
    assert status.startswith("1 human votes")
    assert "late-set" in choices(client.predict(api_name="/judge_open")[1])
    assert "late-set" in choices(client.predict(api_name="/train_open")[3])
    assert "late-set" in choices(client.predict(api_name="/arena_open")[1])  # the Arena's prompt-set picker


def test_a_model_registered_while_the_studio_runs_is_in_every_picker(settings, launch) -> None:
    client = launch()
    before = {label: client.predict(api_name=f"/{api}") for label, (api, _) in OPENERS.items()}
    assert all("late-endpoint" not in str(out) for out in before.values())

    client.predict(*ENDPOINT, api_name="/add_model")  # the Models tab
    # a finished training job: the runner registers its adapter in models.toml, with its parent
    ModelRegistry(settings).add(ModelSpec("dpo-late", path="unused", adapter="unused", parent="smollm2-135m",
                                          training_run="7", description="dpo run 7"))  # fmt: skip
    for label, (api, pickers) in OPENERS.items():
        out = client.predict(api_name=f"/{api}")
        out = out if isinstance(out, tuple | list) else [out]
        for i in pickers:
            offered = choices(out[i])
            if label == "Arena":  # columns are 'strategy @ model'
                offered = [c.rsplit(" @ ", 1)[-1] for c in offered]
            assert {"late-endpoint", "dpo-late"} <= set(offered), (label, i, offered)
    trained = choices(client.predict(api_name="/train_open")[1])  # Compare with parent: trained models only
    assert trained == ["dpo-late"]


def test_remove_a_model(settings, launch) -> None:
    client = launch()
    client.predict(*ENDPOINT, api_name="/add_model")
    ModelRegistry(settings).add(ModelSpec("late-child", backend="openai", path="m", base_url=ENDPOINT[3],
                                          parent="late-endpoint"))  # fmt: skip
    with stored(settings) as store:
        store.add_model("late-endpoint", "openai")
        store.add_model("late-child", "openai", parent="late-endpoint")
        pid = store.add_prompt("Q?", "s")
        run = store.add_run(pid, "late-child", "system1", "an answer")

    with pytest.raises(Exception, match=r"'late-endpoint' has models trained from it \(late-child\): remove"):
        client.predict("late-endpoint", api_name="/remove_model")
    with pytest.raises(Exception, match="'smollm2-135m' is built in; it cannot be removed"):
        client.predict("smollm2-135m", api_name="/remove_model")
    with pytest.raises(Exception, match="pick a model to remove"):
        client.predict(None, api_name="/remove_model")
    assert {"late-endpoint", "late-child"} <= set(ModelRegistry(settings).names())  # nothing was removed

    table, try_model, remove_pick = client.predict("late-child", api_name="/remove_model")
    assert "late-child" not in [row[0] for row in table["data"]] and "late-endpoint" in choices(try_model)
    assert "late-child" not in choices(remove_pick) and "late-child" not in ModelRegistry(settings).names()
    with stored(settings) as store:
        assert store.get_model("late-child") is None
        assert store.get_run(run)["model"] == "late-child"  # past runs keep the model's name
    assert "late-child" not in choices(client.predict(api_name="/eval_open")[1])

    client.predict("late-endpoint", api_name="/remove_model")  # no children left
    assert "late-endpoint" not in (settings.models_file.read_text() if settings.models_file.exists() else "")
    with pytest.raises(Exception, match="no user-registered model 'late-endpoint'"):
        client.predict("late-endpoint", api_name="/remove_model")


def test_the_default_model_cannot_be_removed(settings) -> None:
    mine = Settings.load(env={}, data_dir=settings.data_dir, default_model="house-model")
    registry = ModelRegistry(mine)
    registry.add(ModelSpec("house-model", backend="openai", path="m", base_url=ENDPOINT[3]))
    with pytest.raises(Exception, match="'house-model' is the default model"):
        registry.remove("house-model")
    assert "house-model" in registry.names()


# -- in a real browser --------------------------------------------------------------------------------------------
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--no-first-run"]  # fmt: skip


def cancelled_job_with_a_long_log(settings: Settings) -> int:
    """A DPO job that was queued and cancelled (nothing runs), whose log has 300 lines and tqdm bars."""
    from components.train import data_filters
    from studio.training import Runner

    with stored(settings) as store:
        for q, good, bad in (("2+2?", "4", "5"), ("Capital of France?", "Paris.", "Rome.")):
            pid = store.add_prompt(q, "log-set")
            a, b = (
                store.add_run(pid, "smollm2-135m", "cot", good),
                store.add_run(pid, "smollm2-135m", "cove", bad),
            )
            store.add_vote(store.add_comparison([a, b]), "A", "alice")
        runner = Runner(settings, store, autostart=False)
        job = runner.start(
            "dpo", {"max_steps": 2, "min_examples": 2}, filters=data_filters("log-set", "human", "")
        )
        runner.cancel(job.id)
    bars = "".join(f"\r{p}%|{'#' * (p // 10)}| {p}/100 [00:0{p // 50}<00:01, 3.2it/s]" for p in (10, 50, 100))
    lines = [f"[studio] line {i}" for i in range(300)]
    runner.rundir(job.id).log.write_text(
        "\n".join(lines[:150]) + f"\n{bars}\n" + "\n".join(lines[150:]) + "\n"
    )
    return job.id


@pytest.mark.browser
def test_opening_tabs_in_a_browser_shows_new_data_new_models_and_the_newest_log_lines(
    settings, tmp_path
) -> None:
    from gradio_client import Client, handle_file
    from playwright.sync_api import sync_playwright

    from tests.servers import studio_server

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    cancelled_job_with_a_long_log(settings)
    with (
        studio_server(settings.data_dir, tmp_path / "serve.log", "--no-preload") as (url, _),
        sync_playwright() as p,
    ):
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_role("tab", name="Eval").wait_for()
        # after the page loaded: a model registered, as a finished training job's runner does, and labels stored
        ModelRegistry(settings).add(ModelSpec("late-model", path="unused", parent="smollm2-135m"))
        late = tmp_path / "late.jsonl"
        late.write_text(json.dumps({"prompt": "Late?", "chosen": "Yes.", "rejected": "No."}) + "\n")
        Client(url, verbose=False).predict(handle_file(str(late)), "late-set", "", api_name="/data_import")

        page.get_by_role(
            "tab", name="Data"
        ).click()  # reads the store again: 3 prompts, not the 2 of page load
        page.wait_for_function("() => document.body.innerText.includes('3 prompts · 6 runs')", timeout=60_000)
        page.get_by_role("tab", name="Judge").click()
        page.wait_for_function("() => document.body.innerText.includes('3 human votes')", timeout=60_000)

        page.get_by_role("tab", name="Eval").click()
        page.get_by_label("Models", exact=True).click()  # the tab's select event rereads the picker
        page.get_by_role("option", name="late-model", exact=True).wait_for(timeout=60_000)
        page.keyboard.press("Escape")

        page.get_by_role("tab", name="Train").click()
        page.wait_for_function(
            "() => { const t = document.querySelector('#train-log textarea');"
            " return t && t.value.includes('line 299'); }",
            timeout=60_000,
        )
        time.sleep(0.5)  # the scroll runs 50 ms after the change
        log = page.locator("#train-log textarea")
        assert "it/s" not in log.input_value() and "%|" not in log.input_value()
        top, height, client = log.evaluate("t => [t.scrollTop, t.scrollHeight, t.clientHeight]")
        assert height > client and top + client >= height - 5, (top, height, client)  # at its newest lines
        browser.close()
