"""Debian's chromium, headless, driven by Playwright (with ``executable_path``: no browser is ever
downloaded), logged in to an Airflow api-server the way the UI is: its ``_token`` cookie."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from tests.helpers.services import require_program


@contextlib.contextmanager
def logged_in_page(base_url: str, token: str) -> Iterator[Any]:
    chromium = require_program("chromium", "chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # --no-sandbox: the tests run as root, where Chromium's own sandbox cannot start
        browser = p.chromium.launch(executable_path=chromium, headless=True, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1440, "height": 1000})
            context.add_cookies([{"name": "_token", "value": token, "url": base_url}])
            page = context.new_page()
            page.set_default_timeout(60_000)
            yield page
        finally:
            browser.close()
