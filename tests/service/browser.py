"""A real Chromium for the dashboard's browser tests: Debian's ``chromium`` package driven
by Playwright for Python (``executable_path``, so Playwright downloads no browser).

Without chromium (or Playwright) the browser tests are skipped with the reason, except
under ``CI=true``, where they fail: CI installs chromium (``.ci/run``)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from playwright.sync_api import Browser, ConsoleMessage, Page


def chromium_path() -> str | None:
    """The system's Chromium executable, if one is installed."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    return None


def require_chromium() -> str:
    """The Chromium executable; skip (fail under CI=true) when it or Playwright is missing."""
    path = chromium_path()
    problem = None
    if path is None:
        problem = "chromium is not installed (apt-get install chromium)"
    else:
        try:
            import playwright.sync_api  # noqa: F401
        except ImportError:
            problem = "playwright is not installed (pip install -e '.[dev]')"
    if problem is not None:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{problem}; CI=true: the browser tests must run")
        pytest.skip(problem)
    assert path is not None
    return path


@contextmanager
def launched(headless: bool = True) -> Iterator[Browser]:
    """Chromium, started through Playwright and closed afterwards."""
    from playwright.sync_api import sync_playwright

    path = require_chromium()
    args = ["--disable-gpu", "--disable-dev-shm-usage"]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        args.append("--no-sandbox")  # Chromium refuses to run its sandbox as root
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=path, headless=headless, args=args)
        try:
            yield browser
        finally:
            browser.close()


class PageErrors:
    """The page's uncaught exceptions and console errors (HTTP errors the page handles,
    like a 401 before the token or a viewer's 403, are logged by Chromium too: left out)."""

    def __init__(self, page: Page) -> None:
        self.errors: list[str] = []
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        page.on("console", self._console)

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type == "error" and "Failed to load resource" not in msg.text:
            self.errors.append(f"console: {msg.text}")


def new_page(browser: Browser, base_url: str, **context: Any) -> tuple[Page, PageErrors]:
    """A page in a fresh context (its own localStorage) on ``base_url``."""
    ctx = browser.new_context(base_url=base_url, **context)
    ctx.set_default_timeout(10_000)
    page = ctx.new_page()
    return page, PageErrors(page)
