"""The labeling page in a real headless Chromium: a rater rates one task and ranks one
list while a trainer's /score request waits, which then receives exactly those values."""

import os
import shutil
import threading

import httpx
import pytest

from tests.conftest import write_human_config
from tests.conftest import start_server, stop

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
GUIDELINES = "Prefer responses that praise the film."

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM) and not os.environ.get("CI"),
    reason="needs Debian's chromium (apt-get install chromium chromium-driver); CI installs it",
)


def test_rate_and_rank_in_the_browser_while_the_trainer_waits(tmp_path):
    from playwright.sync_api import expect, sync_playwright

    config = write_human_config(tmp_path, {"alice": "token-alice-0123456"}, guidelines=GUIDELINES)
    items = [
        {"prompt": "The movie was", "response": " a delight."},
        {"prompt": "The plot", "response": " x dragged."},
        {"prompt": "The plot", "response": " y was thin."},
        {"prompt": "The plot", "response": " z was clever."},
    ]
    process, url = start_server(config)
    try:
        answer = {}
        trainer = threading.Thread(target=lambda: answer.setdefault("r", httpx.post(
            f"{url}/score", json={"items": items, "request_id": "browser-step", "timeout_s": 120}, timeout=130)))
        trainer.start()
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True,
                args=["--no-sandbox", "--disable-background-networking", "--disable-component-update"],
            )
            page = browser.new_page()
            console = []
            page.on("console", lambda message: console.append(message.text))
            page.goto(f"{url}/label")
            page.fill("#token", "not-alices-token-0123456")
            page.click("#signin")
            expect(page.locator("#signin-error")).to_have_text("That token was not accepted. Check it, or ask for "
                                                              "a new one.")
            expect(page.locator("#signin-error")).to_have_css("color", "rgb(179, 38, 30)")  # the page's error red
            page.fill("#token", "token-alice-0123456")
            page.click("#signin")
            expect(page.locator("#guidelines")).to_have_text(GUIDELINES)
            expect(page.locator("#rate-view")).to_be_visible(timeout=20_000)
            expect(page.locator("#pending")).to_have_text("2")
            expect(page.locator("#rate-response")).to_have_text(" a delight.")
            page.keyboard.press("4")  # shortcut: the 4th value of the 1..5 scale
            expect(page.locator("#rank-view")).to_be_visible()
            expect(page.locator("#status")).to_have_text("Previous task saved ✓")
            expect(page.locator("#rate-keys")).to_have_text("Keys: 1 = 1, 2 = 2, 3 = 3, 4 = 4, 5 = 5")
            expect(page.locator("#ranklist li")).to_have_count(3)
            page.locator("#ranklist li").nth(2).locator("button.up").click()  # x, z, y
            page.keyboard.press("Shift+ArrowUp")  # the moved item (z) up again: z, x, y
            expect(page.locator("#ranklist li .response")).to_have_text([" z was clever.", " x dragged.",
                                                                          " y was thin."])
            page.keyboard.press("Enter")
            expect(page.locator("#empty")).to_be_visible()
            expect(page.locator("#pending")).to_have_text("0")
            assert not [text for text in console if "Content Security Policy" in text], console
            browser.close()
        trainer.join(60)
        response = answer["r"]
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["scores"] == [4.0, 3.0, 1.0, 5.0]  # rated 4; ranked z > x > y on the 1..5 scale
        assert body["sources"] == ["human"] * 4
    finally:
        stop(process)


def test_the_api_docs_render_offline_under_the_content_security_policy(tmp_path):
    """/docs loads Swagger UI from the service itself (no CDN: the browser here has no way
    out), and renders the OpenAPI schema with inline script forbidden."""
    from playwright.sync_api import expect, sync_playwright

    config = write_human_config(tmp_path, {"alice": "token-alice-0123456"})
    process, url = start_server(config)
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                                 args=["--no-sandbox", "--disable-background-networking"])
            page = browser.new_page()
            console, outside = [], []
            page.on("console", lambda message: console.append(message.text))
            page.on("request", lambda request: outside.append(request.url) if not request.url.startswith(url)
                    else None)
            page.goto(f"{url}/docs")
            expect(page.locator(".swagger-ui .info .title")).to_contain_text("reward-service", timeout=20_000)
            page.locator(".opblock-summary-path", has_text="/score").first.click()
            page.locator("button.try-out__btn").first.click()
            expect(page.locator("button.execute").first).to_be_visible()
            browser.close()
        assert not outside, outside
        assert not [text for text in console if "Content Security Policy" in text or "404" in text], console
    finally:
        stop(process)
