"""The Improve tab in a real browser (Chromium via Playwright): a finished tiny System-2-distillation run, made
by the domain API in the fixture (a real training job on the default model), shows its per-iteration table, its
reference row and its plot; "Open in Arena" switches to the Arena with M0 and M1 as its columns."""

from __future__ import annotations

from pathlib import Path

import pytest

from studio import improve as imp
from studio.context import AppContext
from tests.servers import studio_server
from tests.test_browser import CHROMIUM, CHROMIUM_ARGS, SHOTS
from tests.test_improve import TINY

pytestmark = [pytest.mark.slow, pytest.mark.browser, pytest.mark.filterwarnings("ignore::FutureWarning")]


@pytest.fixture()
def finished(settings, tmp_path: Path):
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    with AppContext(settings) as ctx:
        run = imp.improve(ctx, "arithmetic", "s2_distill", 1, values=TINY["s2_distill"], eval_limit=4,
                          stop_early=False, eval_params={"max_new_tokens": 16})  # fmt: skip
    assert run.status == "done", run.error
    with studio_server(settings.data_dir, tmp_path / "serve.log") as (url, _proc):
        yield url, run


def test_the_improve_tab_shows_a_finished_run_and_opens_it_in_the_arena(finished) -> None:
    from playwright.sync_api import expect, sync_playwright

    url, run = finished
    m1 = run.iterations[1].model
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(url)
        page.get_by_role("tab", name="Improve").click()
        expect(page.locator("#improve-status")).to_contain_text(f"Improve run {run.id}", timeout=60_000)
        expect(page.locator("#improve-status")).to_contain_text("done")
        table = page.locator("#improve-table")
        expect(table).to_contain_text(m1, timeout=30_000)
        expect(table).to_contain_text("smollm2-135m")
        expect(page.locator("#improve-references")).to_contain_text("System 2 (cot) on M0")
        plot = page.locator("#improve-plot .matplotlib img")
        expect(plot).to_be_visible(timeout=30_000)
        assert (plot.get_attribute("src") or "").startswith("data:image/")  # the drawn figure
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "improve-tab.png"), full_page=True)

        page.click("#improve-open-arena")
        columns = page.locator("#arena-columns")
        expect(columns).to_be_visible(timeout=30_000)
        expect(columns).to_contain_text(f"system1 @ {m1}", timeout=30_000)
        expect(columns).to_contain_text("system1 @ smollm2-135m")
        assert columns.locator(".token").count() == 2
        assert page.locator(".toast-body").count() == 0
        browser.close()
