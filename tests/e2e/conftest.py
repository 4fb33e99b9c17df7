"""A live ASGI server (daphne, as in production) and Debian's Chromium driven by Playwright."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys

import pytest

from tests.support import (
    REPO,
    database_url_for_processes,
    free_port,
    prerequisite_missing,
    wait_for,
)

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# Playwright's sync API keeps an event loop in this thread; our ORM calls here are plain sync code.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def asgi_server(transactional_db):
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url_for_processes(), "LOG_LEVEL": "WARNING"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "daphne",
            "-b",
            "127.0.0.1",
            "-p",
            str(port),
            "console.asgi:application",
        ],
        cwd=REPO,
        env=env,
        start_new_session=True,
    )
    import urllib.request

    def up():
        try:
            return (
                urllib.request.urlopen(f"http://127.0.0.1:{port}/login/", timeout=1).status == 200
            )
        except OSError:
            return False

    try:
        wait_for(up, timeout=30, what="daphne to serve the console")
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(10)


@pytest.fixture(scope="session")
def browser():
    if not shutil.which(CHROMIUM):
        prerequisite_missing(f"Chromium not found at {CHROMIUM} (Debian package 'chromium')")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=CHROMIUM,
            headless=True,
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
            ],
        )
        yield browser
        browser.close()


@pytest.fixture
def page(browser):
    context = browser.new_context()
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()
