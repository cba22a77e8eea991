"""One real-browser end-to-end test: Playwright drives Debian's Chromium (headless) against `studio serve`."""

import os
import shutil
import time
from pathlib import Path

import pytest

from storage import Store
from tests.servers import stop, studio_server

pytestmark = [pytest.mark.slow, pytest.mark.browser]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
COLUMNS = 4  # the default Arena: System 1, CoVe (factored), S2A and BSM


@pytest.fixture()
def served(settings, tmp_path: Path):
    if not Path(CHROMIUM).exists():  # `make test` installs it; say how when someone runs pytest alone
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    env = {"STUDIO_MAX_NEW_TOKENS": "32"}
    with studio_server(settings.data_dir, tmp_path / "serve.log", env=env) as served:
        yield served


def streamed(text: str) -> bool:
    """A live column shows '[step] text so far'; a token has arrived once there is text after the tag."""
    text = text.strip()
    return bool(text) and "waiting" not in text and not (text.startswith("[") and text.endswith("]"))


def test_arena_in_a_real_browser(served, settings, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    url, proc = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(url)
        page.get_by_label("Your name (stored with your labels)").fill("carol")
        page.fill("#arena-prompt textarea", "What is the capital of France?")

        t_click = time.monotonic()
        page.click("#arena-run")
        first_token = None
        deadline = t_click + 900
        while time.monotonic() < deadline:
            texts = [page.inner_text(f"#arena-answer-{i}") for i in range(COLUMNS)]
            if first_token is None and any(streamed(t) for t in texts):
                first_token = time.monotonic() - t_click
            if "All 4 columns finished" in page.inner_text("#arena-status"):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the columns did not finish within 15 minutes")
        print(f"\nclick -> first streamed token: {first_token:.2f} s (target for System 1, warm: <= 0.5 s)")
        assert first_token is not None, "no column showed streamed text before finishing"
        assert page.locator(".arena-answer").count() + page.locator(".arena-error").count() == COLUMNS

        page.click("#arena-trace-0 button.label-wrap")
        page.locator("#arena-trace-0 .trace-step").first.wait_for(state="visible")

        for i in range(COLUMNS):
            page.click(f"#arena-rank-{i} input")
            page.locator(f"#arena-rank-{i}").get_by_role("option", name=str(i + 1), exact=True).click()
        page.click("#arena-submit")
        page.wait_for_function("document.querySelector('#arena-status').innerText.includes('Saved vote')")
        status = page.inner_text("#arena-status")
        assert "carol" in status and "system1 @ smollm2-135m" in status  # identities revealed after the vote
        shot = tmp_path / "arena.png"
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    assert shot.stat().st_size > 10_000
    if os.environ.get("STUDIO_SCREENSHOTS"):
        shutil.copy(shot, os.environ["STUDIO_SCREENSHOTS"])

    stop(proc)  # the server holds the DuckDB lock; read the file once it is gone
    with Store(settings.db_path) as store:
        [cmp] = store.list_comparisons()
        assert cmp["blind"] is True and len(cmp["run_ids"]) == COLUMNS
        strategies = {store.get_run(r)["strategy"] for r in cmp["run_ids"]}
        assert strategies == {"system1", "cove", "s2a", "bsm"}
        [vote] = store.list_votes(comparison_id=cmp["id"])
        assert vote["kind"] == "ranking" and vote["ranks"] == [1, 2, 3, 4] and vote["annotator"] == "carol"
