"""The live dashboard in a real headless browser (Debian's chromium, driven by Playwright).

Events posted through the API must show up on the page: the live feed, the
offers, the counts by pattern and by action, and a user lookup with the
explanation. A screenshot is saved as test-artifacts/dashboard.png.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from eventpatterns.broker import EmbeddedBroker
from tests.runtime.apiharness import ROOT, Worker, wait_until

pytestmark = pytest.mark.integration

CHROMIUM = os.environ.get("EVENTPATTERNS_CHROMIUM", "/usr/bin/chromium")
TOKEN = "dash-token"
ARTIFACTS = ROOT / "test-artifacts"


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    with EmbeddedBroker() as broker:
        worker = Worker("dash", broker.url, tmp_path_factory.mktemp("dash"), token=TOKEN)
        worker.start()
        try:
            wait_until(lambda: worker.status()["partitions"], 60, "the worker")
            yield worker
        except BaseException:
            print(worker.log_tail())
            raise
        finally:
            worker.stop()


def test_dashboard_shows_live_activity_and_explanations(worker: Worker) -> None:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (.ci/run installs Debian's chromium)"
    from playwright import sync_api

    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
            ],
        )
        try:
            page = browser.new_page(viewport={"width": 1440, "height": 960})
            problems: list[str] = []
            page.on("pageerror", lambda error: problems.append(str(error)))
            page.goto(f"{worker.base_url}/?token={TOKEN}")
            page.wait_for_selector("#conn.live", timeout=20_000)
            assert "token=" not in page.url  # taken out of the address bar
            page.wait_for_function(
                "document.querySelector('#version').textContent.length > 3", timeout=10_000
            )

            shoppers = ["ana-31", "ben-47", "cleo-25"]
            worker.post_events(
                [{"user_id": u, "event": "click", "attributes": {"page": "home"}} for u in shoppers]
                + [{"user_id": u, "event": "signup"} for u in shoppers[:2]]
                + [
                    {"user_id": "ana-31", "event": "purchase", "attributes": {"amount": 45}},
                    {"user_id": "ana-31", "event": "purchase", "attributes": {"amount": 20}},
                    {"user_id": "ana-31", "event": "browse", "attributes": {"sku": "VD-1"}},
                    {"user_id": "ana-31", "event": "cart", "attributes": {"sku": "VD-1"}},
                ]
            )
            for user in shoppers:
                page.wait_for_selector(
                    f"#feed li.offer[data-user='{user}']", timeout=20_000
                )  # the offer of every_click, highlighted
                page.wait_for_selector(
                    f"#feed li[data-user='{user}'][data-kind='transition']", timeout=5_000
                )
            page.wait_for_selector("#feed li[data-user='ben-47'][data-pattern='loyal']")
            counts = page.locator("#pattern-counts tr[data-pattern='every_click'] td.num")
            wait_until(lambda: counts.nth(1).text_content() == "3", 10, "3 offers counted")
            assert int(counts.nth(0).text_content() or 0) >= 3
            loyal = page.locator("#pattern-counts tr[data-pattern='loyal'] td.num")
            wait_until(lambda: loyal.nth(0).text_content() == "2", 10, "2 loyal counted")
            actions = page.locator("#action-counts tr[data-action='publish'] td.num")
            assert actions.text_content() == "3"
            assert page.locator("#n-offers").text_content() == "3"

            # Look up a user: every pattern with its explanation.
            page.fill("#lookup-input", "ana-31")
            page.click("#lookup-form button")
            card = page.locator("#lookup-result .pat[data-pattern='big_spender']")
            card.wait_for(timeout=10_000)
            assert card.get_attribute("data-status") == "not_met"
            text = card.inner_text()
            assert "Needs 1 more 'purchase' event before" in text
            assert "sum(amount) is 65, needs >= 100" in text
            journey = page.locator("#lookup-result .pat[data-pattern='journey']").inner_text()
            assert "Has done 2 of 3 steps" in journey
            loyal_card = page.locator("#lookup-result .pat[data-pattern='loyal']")
            assert loyal_card.get_attribute("data-status") == "met"
            assert "loyal = true" in page.locator("#lookup-result .profile").inner_text()

            # Clicking a user in the feed looks them up.
            page.locator("#feed .user[data-user='cleo-25']").first.click()
            page.wait_for_selector("#lookup-result [data-user='cleo-25']", timeout=10_000)

            page.fill("#lookup-input", "ana-31")
            page.click("#lookup-form button")
            page.wait_for_selector("#lookup-result [data-user='ana-31'] .pat", timeout=10_000)
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
            assert not problems, problems
        finally:
            browser.close()
