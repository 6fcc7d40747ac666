"""A real ``velox serve`` process on the test's store, and users made in it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from webtools import KEY, WebServer, start_web_server


@pytest.fixture
def web_server(store, tmp_path: Path) -> Iterator[WebServer]:
    """``velox serve`` on a free port against ``store`` (its own process, as in production)."""
    yield from start_web_server(store, tmp_path)


@pytest.fixture
def users(store):
    from velox.auth import Users

    return Users(store, key=KEY)


# -- a real browser: Debian's chromium driven by Playwright (no browser download) ----------

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]  # fmt: skip
#: Where the browser tests keep their screenshots (CI keeps the folder as an artifact).


@pytest.fixture
def chromium():
    """Debian's headless chromium (``.ci/run`` installs it); missing fails under CI=true.

    One per test: Playwright's sync API runs an event loop on this thread while it is open,
    and a later test calling ``asyncio.run`` must not find one running.
    """
    if not CHROMIUM.exists():
        message = f"no browser at {CHROMIUM}: apt-get install chromium chromium-driver"
        if os.environ.get("CI") == "true":
            pytest.fail(message + " (CI=true: the browser tests must run)")
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser
        browser.close()
