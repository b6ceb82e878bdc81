"""``/docs`` renders in a real browser with no internet: Debian's chromium (Playwright)
against a real ``unetbg serve``, every request off the server aborted and recorded."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest

from prerequisites import unavailable

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run"]


def test_docs_render_offline(server):
    if not CHROMIUM.is_file():
        unavailable(f"Debian's chromium not found at {CHROMIUM}")
    from playwright.sync_api import sync_playwright

    here = urlsplit(server.url).netloc
    elsewhere: list[str] = []

    def offline(route) -> None:  # as a machine without internet: nothing else answers
        if urlsplit(route.request.url).netloc == here:
            route.continue_()
        else:
            elsewhere.append(route.request.url)
            route.abort("internetdisconnected")

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.set_default_timeout(30_000)
            page.route("**/*", offline)
            page.goto(f"{server.url}/docs")
            # Swagger UI drew the API's description and its operations.
            page.locator(".swagger-ui .info .title").filter(has_text="unetbg").wait_for()
            page.locator(".opblock-summary-path", has_text="/api/remove").first.wait_for()
        finally:
            browser.close()
    assert elsewhere == []
    # One documentation page: /redoc is not served (its assets would need the internet too).
    assert httpx.get(f"{server.url}/redoc", timeout=10).status_code in (401, 404)
