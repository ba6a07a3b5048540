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

    config = write_human_config(tmp_path, {"alice": "token-alice"}, guidelines=GUIDELINES)
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
            page.goto(f"{url}/label")
            page.fill("#token", "token-alice")
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
            browser.close()
        trainer.join(60)
        response = answer["r"]
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["scores"] == [4.0, 3.0, 1.0, 5.0]  # rated 4; ranked z > x > y on the 1..5 scale
        assert body["sources"] == ["human"] * 4
    finally:
        stop(process)
