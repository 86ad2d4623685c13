"""The chat page (``GET /llmcrs/chat``) in a real headless Chromium against ``python -m agent serve``:
the stages of a turn appear, the response streams as it is checked, a reload resumes the thread from
``?thread=``, and markup in a message stays text."""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from agent.boundary import MAX_MESSAGE_CHARS
from tests.conftest import REPO, skip_or_fail

pytestmark = pytest.mark.e2e

FIRST = "I loved The Shining (1980), something like it?"
MARKUP = "<script>window.__pwned=1</script><b>bold</b>"
WAIT_MS = 60_000
SCREENSHOT = REPO / "results" / "web" / "chat.png"

# Installed before the page's own script: records every text the answer elements show, so the test
# sees the response grow chunk by chunk rather than trusting a counter of the page.
WATCH_ANSWERS = """
window.__answerTexts = [];
new MutationObserver((records) => {
  for (const r of records) {
    const node = r.target.nodeType === Node.TEXT_NODE ? r.target.parentElement : r.target;
    const answer = node && node.closest && node.closest('.answer');
    if (answer) window.__answerTexts.push(answer.textContent);
  }
}).observe(document, {subtree: true, childList: true, characterData: true});
"""


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Headless Debian Chromium driven by Playwright (no browser download)."""
    executable = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        skip_or_fail("playwright is not installed (pip install playwright)")
    if executable is None:
        skip_or_fail("chromium is not installed (apt-get install -y chromium)")
    pw = sync_playwright().start()
    try:
        chromium = pw.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield chromium
        chromium.close()
    finally:
        pw.stop()


def send(page: Any, text: str) -> Any:
    """Type ``text``, press Send, wait until the run is over; the turn's assistant element."""
    turns = page.locator("#conversation > li.assistant")
    before = turns.count()
    page.get_by_label("Your message").fill(text)
    page.get_by_role("button", name="Send").click()
    page.wait_for_function(f"() => document.querySelectorAll('#conversation > li.assistant').length > {before}", timeout=WAIT_MS)
    page.wait_for_function("() => !document.getElementById('send').disabled", timeout=WAIT_MS)
    return turns.nth(before)


def test_chat_page_streams_stages_resumes_and_keeps_markup_as_text(server: str, browser: Any, tmp_path: Path) -> None:
    started = time.monotonic()
    info = httpx.get(f"{server}/llmcrs/info").json()
    assert info == {"graph": "llmcrs", "dataset": "redial", "domain": "movies"}
    assert "script-src 'self'" in httpx.get(f"{server}/llmcrs/chat").headers["content-security-policy"]  # no inline script runs
    # the page's CSP stays on: the predicates below are functions, which it admits
    page = browser.new_page(viewport={"width": 1100, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.add_init_script(WATCH_ANSWERS)
    page.goto(f"{server}/llmcrs/chat")
    page.wait_for_function("() => document.getElementById('info').textContent.includes('movies')", timeout=WAIT_MS)
    assert "redial" in page.locator("#info").text_content()

    # 1. a turn: the stage lines as they happen, then the response streamed as it is checked
    turn = send(page, FIRST)
    assert not turn.locator(".error").count(), turn.locator(".error").all_text_contents()
    stages = {s.get_attribute("data-stage"): s.text_content() for s in turn.locator(".stage").all()}
    assert stages["1"].startswith("Sub-task: ") and len(stages["1"]) > len("Sub-task: "), stages
    assert stages["2"].startswith("Expert: ") and "choosing" not in stages["2"], stages
    assert stages["3"].startswith("Expert output: "), stages
    assert stages["4"].startswith("Response: streamed in "), stages
    answer = turn.locator(".answer").text_content()
    assert answer.strip()
    seen = [t for t in page.evaluate("window.__answerTexts") if t]
    # the answer streamed as it was checked: every text shown is the start of the answer, none taken back
    assert seen and all(answer.startswith(t) for t in seen), (seen, answer)
    assert int(turn.locator(".answer").get_attribute("data-chunks")) >= 1
    thread = page.evaluate("new URLSearchParams(location.search).get('thread')")
    assert thread
    assert page.locator("#threads").input_value() == thread
    assert page.locator("#threads option").nth(1).get_attribute("value") == thread  # the picker lists the last updated first

    # 2. a reload resumes the thread from ?thread=
    page.reload()
    page.wait_for_function("() => document.querySelectorAll('#conversation > li').length >= 2", timeout=WAIT_MS)
    assert page.locator("#conversation li.user .text").first.text_content() == FIRST
    assert page.locator("#conversation li.assistant .answer").last.text_content() == answer
    assert thread in page.url and page.locator("#threads").input_value() == thread

    # 3. markup in a message (and in anything echoed back) stays text
    marked = send(page, MARKUP)
    assert page.locator("#conversation li.user .text").last.text_content() == MARKUP
    assert page.get_by_text(MARKUP, exact=True).count() >= 1
    assert page.evaluate("window.__pwned") is None
    assert page.locator("#conversation b").count() == 0 and page.locator("#conversation script").count() == 0
    assert marked.locator(".answer").text_content().strip() or marked.locator(".error").count()
    page.evaluate("window.scrollTo(0, 0)")
    shot = tmp_path / "chat.png"
    page.screenshot(path=str(shot))
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(shot, SCREENSHOT)

    # 4. an input the graph refuses shows its error (the page's maxlength removed to get one through)
    page.evaluate("document.getElementById('message').removeAttribute('maxlength')")
    refused = send(page, "x" * (MAX_MESSAGE_CHARS + 1))
    alert = refused.get_by_role("alert")
    assert alert.text_content().startswith("input refused:") and str(MAX_MESSAGE_CHARS) in alert.text_content()
    assert not refused.locator(".stage").count() and refused.locator(".answer").is_hidden()
    assert not errors, errors

    print(f"screenshot: {SCREENSHOT} (and {shot}); the page test took {time.monotonic() - started:.1f} s")
    page.close()
