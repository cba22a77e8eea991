"""One real-browser end-to-end test: Playwright drives Debian's Chromium (headless) against `studio serve`.

It labels a prompt set as an annotator would, mostly from the keyboard: a blind three-column comparison
(nothing on the page may name a column's method, variant, steps or model until the vote), a rejected
incomplete label (one toast, nothing replaced), a ranking by digits, a re-submit that edits the label, a
pairwise vote by `B`, auto-advance and skip. Then it checks the DuckDB file the server wrote.
"""

import os
import re
import shutil
import time
from pathlib import Path
from typing import Any

import pytest

from storage import Store
from studio.arena import ANSWER_STEPS
from studio.strategies import STEP_NAMES, STRATEGIES
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
SHOTS = Path("/tmp/shots")
SET = "capitals"
PROMPTS = [
    "What is the capital of France?",
    "What is 2+3?",
    "Name a primary colour.",
    "What is the opposite of hot?",
]
GUIDELINES = "**Prefer** the short, correct reply."
THREE = 3  # System 1, CoVe (factored) and S2A: the default columns without BSM
TRACKER_ERRORS = "#arena-col-0 span.error, #arena-status span.error, #arena-vote-msg span.error"
#: step names that are also the page's own words ("after a vote"): checked where a step name would show (a
#: "[name]" prefix, a trace step, a tree node), not as words
PAGE_WORDS = {"vote", "value"}
TOT = "tot:bfs @ smollm2-135m"
TOT_SETTINGS = {
    "breadth": 1,
    "depth": 2,
    "k": 2,
    "n-evaluate": 1,
}  # small: a few rounds; one of two is pruned


def names_that_identify(models: list[str]) -> list[str]:
    """Every strategy, variant, step and model name: none may show while a comparison is blind."""
    names = {*STEP_NAMES, *models}
    for name in STRATEGIES.names():
        names |= {name, *STRATEGIES.get(name).variants}
    return sorted(names - PAGE_WORDS)


@pytest.fixture()
def served(settings, tmp_path: Path):
    if not Path(CHROMIUM).exists():  # `make test` installs it; say how when someone runs pytest alone
        pytest.fail(f"{CHROMIUM} is missing: run `make browser` (apt-get install chromium)")
    with Store(settings.db_path, data_dir=settings.data_dir) as store:
        for text in PROMPTS:  # one by one, so the ids follow the list
            store.add_prompt(text, SET)
        store.set_prompt_set(SET, guidelines=GUIDELINES)
    env = {"STUDIO_MAX_NEW_TOKENS": "16"}
    with studio_server(settings.data_dir, tmp_path / "serve.log", env=env) as served:
        yield served


def norm(text: str) -> str:
    return " ".join(text.split())


def leaks(text: str, names: list[str]) -> list[str]:
    return [n for n in names if re.search(rf"(?<![\w]){re.escape(n)}(?![\w])", text, re.IGNORECASE)]


class Arena:
    """The page, as an annotator sees it."""

    def __init__(self, page: Any, names: list[str]) -> None:
        self.page, self.names = page, names
        self.samples: dict[str, list[list[str]]] = {}  # what the answer boxes showed while blind, by run

    def text(self, selector: str) -> str:
        return self.page.inner_text(selector)

    def press(self, *keys: str) -> None:
        self.page.evaluate("document.activeElement && document.activeElement.blur()")
        for key in keys:
            self.page.keyboard.press(key)

    def answers(self, n: int) -> list[str]:
        return [self.text(f"#arena-answer-{i}") for i in range(n)]

    def blind_page(self, n: int) -> str:
        """The page's visible text and every title attribute, less the answers (the one thing allowed)."""
        body = self.page.evaluate(
            "document.body.innerText + '\\n' + [...document.querySelectorAll('[title]')].map(e => e.title)"
            ".join('\\n')"
        )
        for answer in self.answers(n):
            body = body.replace(answer.strip(), "")
        return body

    def assert_blind(self, n: int) -> None:
        found = leaks(self.blind_page(n), self.names)
        assert not found, f"the blind page names {found}"
        shown = self.page.locator(".trace-step, [data-node], .sc-vote").count()
        assert not shown, f"{shown} trace steps, tree nodes or votes show while blind"
        for answer in self.answers(n):
            assert not re.match(r"\s*\[\w+\]", answer), f"a step name prefixes the streamed text: {answer!r}"

    def run_until(self, done: str, n: int, *, blind: bool, timeout: float = 600) -> None:
        """Wait for the status line to say ``done``, checking the page for names while the columns stream."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.text("#arena-status")
            if blind and "Running" in status:
                self.assert_blind(n)
                self.samples.setdefault(done, []).append(self.answers(n))
            if done in status:
                return
            time.sleep(0.1)
        pytest.fail(f"the status never said {done!r}: {self.text('#arena-status')!r}")

    def ranks(self, n: int) -> list[str | None]:
        out = []
        for i in range(n):
            checked = self.page.locator(f"#arena-rank-{i} input:checked")
            out.append(checked.get_attribute("value") if checked.count() else None)
        return out

    def wait_text(self, selector: str, text: str, timeout: float = 60) -> str:
        self.page.wait_for_function(
            "([s, t]) => document.querySelector(s) && document.querySelector(s).innerText.includes(t)",
            arg=[selector, text],
            timeout=timeout * 1000,
        )
        return self.text(selector)

    def prompt(self) -> str:
        return self.page.input_value("#arena-prompt textarea")

    def shot(self, name: str) -> Path:
        SHOTS.mkdir(parents=True, exist_ok=True)
        path = SHOTS / name
        self.page.screenshot(path=str(path), full_page=True)
        if os.environ.get("STUDIO_SCREENSHOTS"):
            shutil.copy(path, Path(os.environ["STUDIO_SCREENSHOTS"]) / name)
        return path


def test_labelling_a_prompt_set_in_a_real_browser(served, settings) -> None:
    from playwright.sync_api import sync_playwright

    url, proc = served
    names = names_that_identify(["smollm2-135m"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(url)
        ui = Arena(page, names)
        page.get_by_label("Your name (stored with your labels)").fill("carol")
        page.click("#arena-set input")
        page.get_by_role("option", name=SET, exact=True).click()
        ui.wait_text("#arena-progress", "0 labelled · 0 skipped · 4 remaining")
        page.click("#arena-guidelines button.label-wrap")
        ui.wait_text("#arena-guidelines", "short, correct reply")
        assert page.locator("#arena-rank-0 input:checked").count() == 0, "no rank is set before any run"

        # Enter with nothing to label: one toast, no "Error" overlay on the page's outputs
        ui.press("Enter")
        ui.wait_text(".toast-body", "nothing to label yet")
        assert page.locator(TRACKER_ERRORS).count() == 0

        # N loads the first prompt of the set; three blind columns run on it
        page.locator("#arena-columns .token", has_text="bsm:").locator(".token-remove").click()
        ui.press("n")
        page.wait_for_function("document.querySelector('#arena-prompt textarea').value.length > 0")
        assert ui.prompt() == PROMPTS[0]
        page.click("#arena-run")
        ui.run_until("Comparison #1 saved", THREE, blind=True)
        ui.assert_blind(THREE)
        blind_answers = ui.answers(THREE)
        blind_shot = ui.shot("arena-blind.png")
        page.click("#arena-trace-0 button.label-wrap")
        ui.wait_text("#arena-trace-0", "Traces open after your vote")
        assert not page.locator(".trace-step").count()

        # an incomplete ranking: one toast, the answers stay, no overlay
        page.fill("#arena-comment textarea", "first try")
        ui.press("1", "Enter")
        ui.wait_text(".toast-body", "incomplete label")
        assert ui.answers(THREE) == blind_answers and page.locator(TRACKER_ERRORS).count() == 0
        assert ui.ranks(THREE) == ["1", None, None]

        # digits rank the next unranked columns, Enter submits: the names and traces open
        ui.press("2", "3")
        assert ui.ranks(THREE) == ["1", "2", "3"]
        ui.press("Enter")
        msg = ui.wait_text("#arena-vote-msg", "Saved vote")
        assert "submitting again replaces your label" in msg
        status = ui.text("#arena-status")
        assert "carol" in status and "system1 @ smollm2-135m" in status
        assert ui.ranks(THREE) == [None] * THREE and page.input_value("#arena-comment textarea") == ""
        page.locator("#arena-trace-0 .trace-step").first.wait_for(state="visible")
        ui.wait_text("#arena-progress", "1 labelled")

        # a second label on the same comparison replaces the first
        ui.press("3", "2", "1", "Enter")
        ui.wait_text("#arena-vote-msg", "Replaced your label")
        name = page.get_by_label("Your name (stored with your labels)")
        name.fill("dave")  # another annotator has no label here; carol has
        ui.press()
        page.wait_for_function("!document.querySelector('#arena-vote-msg').innerText.includes('Replaced')")
        assert "You labelled" not in ui.text("#arena-vote-msg")
        name.fill("carol")
        ui.press()
        ui.wait_text("#arena-vote-msg", "You labelled this comparison (vote #1); submitting again replaces")
        revealed_shot = ui.shot("arena-revealed.png")

        # auto-advance on, two columns: N loads and runs the next prompt; B and Enter vote; the next one runs
        page.click("#arena-auto input")
        page.click("#arena-setup button.label-wrap")  # blind runs fold the column picker away
        page.locator("#arena-columns .token", has_text="cove:").locator(".token-remove").click()
        ui.press("n")
        ui.run_until("Comparison #2 saved", 2, blind=True)
        assert ui.prompt() == PROMPTS[1]
        ui.assert_blind(2)
        ui.press("b")
        assert page.locator("#arena-pairwise input:checked").get_attribute("value") == "B"
        ui.press("Enter")
        ui.run_until("Comparison #3 saved", 2, blind=True)
        assert ui.prompt() == PROMPTS[2]
        ui.wait_text("#arena-progress", "2 labelled · 0 skipped · 2 remaining")

        # S skips the prompt on screen and (auto-advance) runs the next one
        ui.press("s")
        ui.wait_text("#arena-progress", "2 labelled · 1 skipped · 1 remaining")
        ui.run_until("Comparison #4 saved", 2, blind=True)
        assert ui.prompt() == PROMPTS[3]
        browser.close()
    assert blind_shot.stat().st_size > 10_000 and revealed_shot.stat().st_size > 10_000
    assert sum(map(len, ui.samples.values())) >= 4, "the page was never seen while the columns ran"

    stop(proc)  # the server holds the DuckDB lock; read the file once it is gone
    with Store(settings.db_path) as store:
        first, second, third, fourth = sorted(store.list_comparisons(), key=lambda c: c["id"])
        prompts = {p["id"]: p for p in store.list_prompts(SET)}
        assert [prompts[c["prompt_id"]]["text"] for c in (first, second, third, fourth)] == PROMPTS
        runs = [store.get_run(r) for r in first["run_ids"]]
        assert first["blind"] and {r["strategy"] for r in runs} == {"system1", "cove", "s2a"}
        assert [norm(r["answer"]) for r in runs] == [norm(a) for a in blind_answers]
        for k, cmp in enumerate((first, second, third, fourth), 1):
            shown_runs = [store.get_run(r) for r in cmp["run_ids"]]
            for sample in ui.samples.get(f"Comparison #{k} saved", []):  # only each column's answer text
                for shown, run in zip(sample, shown_runs, strict=True):
                    texts = [s["output"] for s in run["trace"]["steps"] if s["name"] in ANSWER_STEPS]
                    if norm(shown) not in ("", "waiting…"):
                        assert any(norm(t).startswith(norm(shown)) for t in [*texts, run["answer"]]), shown
        [vote] = store.list_votes(comparison_id=first["id"])  # one label per annotator: edited, not added
        assert (vote["kind"], vote["ranks"], vote["annotator"]) == ("ranking", [3, 2, 1], "carol")
        [audit] = store.label_audit(comparison_id=first["id"])
        assert (audit["action"], audit["actor"], audit["row_id"]) == ("replace", "carol", vote["id"])
        assert '"first try"' in str(audit["old"]) or "first try" in str(audit["old"])
        [pair] = store.list_votes(comparison_id=second["id"])
        assert (pair["choice"], pair["annotator"]) == ("B", "carol")
        assert store.list_votes(comparison_id=third["id"]) == []
        assert store.annotator_progress(SET, "carol") == {
            "total": 4,
            "labelled": 2,
            "skipped": 1,
            "remaining": 1,
        }


def set_slider(page: Any, elem_id: str, value: int) -> None:
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Enter")


def test_a_live_tree_of_thoughts_in_a_real_browser(served, settings) -> None:
    """A ToT column, not blind: its tree grows while the run is in progress (nodes before the final answer),
    a node opens to its thought and value, and a node's flag button labels its step (read from the store)."""
    from playwright.sync_api import sync_playwright

    assert "tot" in STRATEGIES.names(), "the tot strategy is registered (pyproject.toml entry point)"
    url, proc = served
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.goto(url)
        ui = Arena(page, [])
        page.get_by_label("Your name (stored with your labels)").fill("erin")
        page.click("#arena-blind input")
        for _ in range(4):  # the default columns out, one ToT column in
            page.locator("#arena-columns .token-remove").first.click()
        page.click("#arena-columns input")
        page.keyboard.type("tot:bfs")
        page.get_by_role("option", name=TOT, exact=True).click()
        page.click("#arena-decoding button.label-wrap")
        set_slider(page, "arena-max-new-tokens", 96)
        page.click("#arena-structured input")  # proposals parse whatever the model writes: nodes to flag
        for name, value in TOT_SETTINGS.items():
            set_slider(page, f"arena-tot-{name}", value)
        page.locator("#arena-tot-breadth").scroll_into_view_if_needed()
        ui.shot("arena-decoding-options.png")
        # a free question: any proposed thought is a node (a 24 puzzle's thoughts must also keep its number count,
        # which the model's output may miss on another thread count)
        page.fill("#arena-prompt textarea", "How should I plan a picnic for ten people?")
        page.click("#arena-run")

        # while the run is in progress: tree nodes, and no final answer yet
        def live_nodes() -> int:
            running = "Running" in ui.text("#arena-status")
            final = page.locator("#arena-answer-0 .arena-answer").count()
            return page.locator("#arena-tree-0 details[data-node]").count() if running and not final else 0

        (SHOTS / "arena-tot-live.png").unlink(missing_ok=True)
        live, deadline = 0, time.monotonic() + 600
        while "All 1 columns finished" not in ui.text("#arena-status") and time.monotonic() < deadline:
            nodes = live_nodes()
            if nodes > max(live, 1):  # a bigger tree: keep its picture if the run was still going after it
                ui.shot("arena-tot-growing.png")
                if live_nodes():
                    (SHOTS / "arena-tot-growing.png").replace(SHOTS / "arena-tot-live.png")
            live = max(live, nodes)
            time.sleep(0.1)
        assert live, "no tree node showed before the run's final answer"
        if (SHOTS / "arena-tot-live.png").exists() and os.environ.get("STUDIO_SCREENSHOTS"):
            shutil.copy(
                SHOTS / "arena-tot-live.png", Path(os.environ["STUDIO_SCREENSHOTS"]) / "arena-tot-live.png"
            )
        ui.wait_text("#arena-col-0", "done")

        # open a node: its thought, state and value
        nodes = page.locator("#arena-tree-0 details[data-node]:has(button.tot-flag)")  # the root has no step
        assert nodes.count(), "the search proposed no node"
        target = nodes.first
        node_id = target.get_attribute("data-node")
        target.locator("summary").click()
        opened = target.inner_text()
        assert "State" in opened and "Value:" in opened, opened
        if target.get_attribute("data-status") != "root":
            assert "Thought" in opened
        ui.shot("arena-tot-node.png")

        # flag it: its flag button picks it in the flag picker; Flag step saves the label
        flag = target.locator("button.tot-flag")
        step_id = flag.get_attribute("data-flag-step")
        flag.click()
        ui.wait_text("#arena-status", f"Node {node_id} of column A is picked")
        page.wait_for_function(
            "t => document.querySelector('#arena-flag-step input').value.includes(t)", arg=f"node {node_id}"
        )
        page.click("#arena-flag-btn")
        ui.wait_text("#arena-status", f"Saved step label #1: A {step_id} (node {node_id}) is wrong")
        ui.shot("arena-tot-flagged.png")
        browser.close()

    stop(proc)
    with Store(settings.db_path) as store:
        [run] = store.list_runs(limit=None)
        assert run["strategy"] == "tot"
        tree = store.get_run(run["id"])["trace"]["summary"]["tree"]
        assert any(n["id"] == node_id for n in tree["nodes"]), "the stored tree has the node"
        [label] = store.list_step_labels(run["id"])
        assert (label["step_id"], label["label"], label["annotator"]) == (step_id, "wrong", "erin")
        assert label["note"] == f"node {node_id}"
