"""The console in a real browser: Debian's chromium, driven headless by Playwright.

Log in, watch a task appear live after a POST to the API and turn completed
without a reload, retry a failed task from its page; no console errors (a CSP
violation would be one). Saves test-artifacts/console.png. Under CI a missing
browser fails the test; elsewhere it skips.
"""

from __future__ import annotations

import time
import uuid
from pathlib import Path

from tests import services
from tests.conftest import Backend, server_for
from tests.hookserver import HookServer

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def browser_or_missing() -> None:
    if not CHROMIUM.exists():
        services.missing("chromium", FileNotFoundError(str(CHROMIUM)))
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as error:
        services.missing("playwright", error)


def test_console_live_in_chromium(hooks: HookServer, tmp_path: Path) -> None:
    browser_or_missing()
    from playwright.sync_api import expect, sync_playwright

    backend = Backend("sqlite", f"sqlite:///{tmp_path / 'ntorque.db'}")
    marker = uuid.uuid4().hex[:8]
    with server_for(backend, tmp_path, NTORQUE_MIN_DUE_DELAY="300") as server:
        failed = server.enqueue(hooks.url(f"/status/400/orders-{marker}"), b'{"order": 1}')
        server.enqueue(hooks.url(f"/status/503/invoices-{marker}"), b"id=7")
        for n in range(3):
            server.enqueue(hooks.url(f"/status/200/emails-{marker}-{n}"), b"to=a@example.org")
        server.wait_for(failed["id"])
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            page = browser.new_page(viewport={"width": 1320, "height": 900})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda error: errors.append(str(error)))

            page.goto(server.base_url + "/")  # a browser at the root lands on the login
            page.fill("#key", server.key)
            page.click("button[type=submit]")
            page.wait_for_url("**/console")
            expect(page.locator("#live")).to_have_text("live", timeout=10_000)
            page.evaluate("window.notReloaded = true")

            task = server.enqueue(hooks.url(f"/slow/1/webhooks-{marker}"), b"live")
            row = page.locator(f"#task-{task['id']}")
            expect(row).to_be_visible(timeout=10_000)
            expect(row.locator(".badge")).to_have_text("completed", timeout=20_000)
            assert page.evaluate("window.notReloaded") is True
            expect(page.locator('[data-stat="completed"]')).not_to_have_text("0", timeout=5_000)
            ARTIFACTS.mkdir(exist_ok=True)
            time.sleep(1.5)  # let the highlight fade for the picture
            page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=True)

            page.click(f"#task-{failed['id']} a")
            page.wait_for_url(f"**/console/task/{failed['id']}")
            page.click("#retry")
            page.wait_for_url(f"**/console/task/{failed['id']}")
            deadline = time.monotonic() + 20
            while len(hooks.calls(f"/status/400/orders-{marker}")) < 2:
                assert time.monotonic() < deadline, "the retried task was not called again"
                time.sleep(0.1)
            server.wait_for(failed["id"])
            page.reload()
            expect(page.locator("#attempts tbody tr")).to_have_count(2)
            page.screenshot(path=str(ARTIFACTS / "console-task.png"), full_page=True)
            browser.close()
        assert not errors, errors
