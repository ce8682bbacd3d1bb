"""The console in a real browser: Debian's chromium, driven headless by Playwright,
against `python -m ntorque` on each backend.

A wrong key is refused and the form stays; log in, watch a task appear live
after a POST to the API and turn completed without a reload (its due date
then "-"), the chart's time axis; cancel asks first (dismissed: nothing
happens; accepted: cancelled, and it may be retried); "Retry now" on a failed
task whose hook answers fast: the page shows the new status and attempt
without a reload; a scheduled task shows when it is due; a callback's link
appears live when its task ends and leads back; "Cancel all shown" on a view
filtered by state and url prefix asks first, then says what it did; the
named queues: a row per queue (in flight against its limit), a queue that
appears live, Pause whose paused badge arrives over the socket without a
reload, Resume, and the task list filtered by queue; the schedules page: a
schedule's row (its rule in words, its next fire times), the outcome of a
tick after the page loaded arriving without a reload, and Pause. No console
errors (a CSP violation would be one). Saves test-artifacts/console-<backend>.png.
Under CI a missing browser fails the test; elsewhere it skips.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from tests import services
from tests.conftest import Backend, server_for
from tests.hookserver import HookServer
from tests.server import NtorqueServer

if TYPE_CHECKING:
    from playwright.sync_api import Dialog, Page

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CLOCK = re.compile(r"^\d\d:\d\d:\d\d$")


def browser_or_missing() -> None:
    if not CHROMIUM.exists():
        services.missing("chromium", FileNotFoundError(str(CHROMIUM)))
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError as error:
        services.missing("playwright", error)


def test_console_live_in_chromium(backend: Backend, hooks: HookServer, tmp_path: Path) -> None:
    browser_or_missing()
    from playwright.sync_api import sync_playwright

    marker = uuid.uuid4().hex[:8]
    with server_for(backend, tmp_path, NTORQUE_MIN_DUE_DELAY="300") as server:
        failed = server.enqueue(hooks.url(f"/status/400/orders-{marker}"), b'{"order": 1}')
        waiting = server.enqueue(hooks.url(f"/status/503/invoices-{marker}"), b"id=7")
        for n in range(3):
            server.enqueue(hooks.url(f"/status/200/emails-{marker}-{n}"), b"to=a@example.org")
        server.wait_for(failed["id"])
        retrying(server, waiting["id"])
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True)
            page = browser.new_page(viewport={"width": 1320, "height": 900})
            errors: list[str] = []
            page.on(
                "console", lambda m: errors.append(m.text) if is_error(m.type, m.text) else None
            )
            page.on("pageerror", lambda error: errors.append(str(error)))

            log_in(page, server)
            dashboard_is_live(page, server, hooks, marker, backend.name)
            queues_live(page, server, hooks, marker)
            page.screenshot(
                path=str(ARTIFACTS / f"console-queues-{backend.name}.png"), full_page=True
            )
            cancel_asks_first(page, server, waiting["id"])
            retry_shows_the_new_attempt_live(page, server, hooks, failed["id"], marker)
            page.screenshot(
                path=str(ARTIFACTS / f"console-task-{backend.name}.png"), full_page=True
            )
            scheduled_and_callbacks(page, server, hooks, marker)
            cancel_all_shown(page, server, hooks, marker)
            page.screenshot(
                path=str(ARTIFACTS / f"console-bulk-{backend.name}.png"), full_page=True
            )
            schedules_live(page, server, hooks, marker)
            page.screenshot(
                path=str(ARTIFACTS / f"console-schedules-{backend.name}.png"), full_page=True
            )
            browser.close()
        assert not errors, errors


def retrying(server: NtorqueServer, task_id: int) -> None:
    """Wait until the task's first attempt failed and it waits for its next."""
    deadline = time.monotonic() + 20
    while (task := server.task(task_id))["retry_count"] < 1 or task["status"] != "pending":
        assert time.monotonic() < deadline, task
        time.sleep(0.05)


def is_error(kind: str, text: str) -> bool:
    """A console error, except the browser's own note of the wrong key's 401."""
    return kind == "error" and "status of 401" not in text


def log_in(page: Page, server: NtorqueServer) -> None:
    from playwright.sync_api import expect

    page.goto(server.base_url + "/")  # a browser at the root lands on the login
    page.fill("#key", "not-a-key")
    with page.expect_response("**/console/login") as answer:
        page.click("button[type=submit]")
    assert answer.value.status == 401
    expect(page.locator("#login-error")).to_contain_text("not valid")
    page.fill("#key", server.key)  # the form is there again
    page.click("button[type=submit]")
    page.wait_for_url("**/console")


def dashboard_is_live(
    page: Page, server: NtorqueServer, hooks: HookServer, marker: str, name: str
) -> None:
    from playwright.sync_api import expect

    expect(page.locator("#live")).to_have_text("live", timeout=10_000)
    page.evaluate("window.notReloaded = true")
    task = server.enqueue(hooks.url(f"/slow/2/webhooks-{marker}"), b"live")
    row = page.locator(f"#task-{task['id']}")
    expect(row).to_be_visible(timeout=10_000)
    expect(row.locator('[data-field="due"]')).to_have_text(re.compile(r"^\d{4}-"))
    expect(row.locator(".badge")).to_have_text("completed", timeout=20_000)
    expect(row.locator('[data-field="due"]')).to_have_text("-")  # due no more
    assert page.evaluate("window.notReloaded") is True
    expect(page.locator('[data-stat="completed"]')).not_to_have_text("0", timeout=5_000)
    ticks = page.locator("#chart-axis .tick")
    expect(ticks).to_have_count(6)
    labels = ticks.all_text_contents()
    assert all(CLOCK.match(label) for label in labels), labels
    ARTIFACTS.mkdir(exist_ok=True)
    time.sleep(1.5)  # let the highlight fade for the picture
    page.screenshot(path=str(ARTIFACTS / f"console-{name}.png"), full_page=True)


def cancel_asks_first(page: Page, server: NtorqueServer, task_id: int) -> None:
    from playwright.sync_api import expect

    page.goto(f"{server.base_url}/console/task/{task_id}")
    badge = page.locator("h1 .badge")
    expect(badge).to_have_text("pending")
    asked: list[str] = []

    def answer(accept: bool) -> None:
        def reply(dialog: Dialog) -> None:
            asked.append(dialog.message)
            if accept:
                dialog.accept()
            else:
                dialog.dismiss()

        page.once("dialog", reply)

    answer(accept=False)
    page.click("#cancel")
    assert asked and f"task {task_id}" in asked[0], asked
    assert server.task(task_id)["status"] == "pending"  # dismissed: nothing sent
    expect(badge).to_have_text("pending")
    answer(accept=True)
    with page.expect_navigation():
        page.click("#cancel")
    assert len(asked) == 2
    expect(badge).to_have_text("cancelled")
    assert server.task(task_id)["status"] == "cancelled"
    expect(page.locator('[data-field="due"]')).to_have_text("-")
    expect(page.locator("#retry")).to_be_visible()  # a cancelled task may be retried
    expect(page.locator("#cancel")).to_be_hidden()


def retry_shows_the_new_attempt_live(
    page: Page, server: NtorqueServer, hooks: HookServer, task_id: int, marker: str
) -> None:
    """The hook answers 400 at once: the retried task is failed again with two
    attempts, often before the page that the retry redirects to has subscribed."""
    from playwright.sync_api import expect

    page.goto(f"{server.base_url}/console/task/{task_id}")
    expect(page.locator("#attempts tbody tr")).to_have_count(1)
    page.click("#retry")
    page.wait_for_url(f"**/console/task/{task_id}")
    page.evaluate("window.notReloaded = true")
    hooks.wait_for_calls(f"/status/400/orders-{marker}", 2, timeout_s=20)
    assert server.wait_for(task_id)["retry_count"] == 2
    expect(page.locator("h1 .badge")).to_have_text("failed", timeout=10_000)
    expect(page.locator('[data-field="retry_count"]')).to_have_text("2")
    expect(page.locator('[data-field="last_status_code"]')).to_have_text("400")
    expect(page.locator('[data-field="due"]')).to_have_text("-")
    attempts = page.locator("#attempts tbody tr")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(1).locator("td").first).to_have_text("2")
    expect(page.locator("#retry")).to_be_visible()  # failed: it may be retried again
    expect(page.locator("#cancel")).to_be_hidden()
    assert page.evaluate("window.notReloaded") is True


def scheduled_and_callbacks(
    page: Page, server: NtorqueServer, hooks: HookServer, marker: str
) -> None:
    from playwright.sync_api import expect

    later = server.enqueue(hooks.url(f"/status/200/later-{marker}"), delay=10800)
    page.goto(f"{server.base_url}/console/task/{later['id']}")
    expect(page.locator("#due-in")).to_have_text(re.compile(r"^\(in 3 h\)$"))
    expect(page.locator("#run-now")).to_be_visible()
    task = server.enqueue(
        hooks.url(f"/slow/1/reported-{marker}"),
        callback=hooks.url(f"/status/200/callback-{marker}"),
    )
    page.goto(f"{server.base_url}/console/task/{task['id']}")
    link = page.locator('[data-field="callback_task_id"] a')
    expect(link).to_have_text(re.compile(r"^callback task #\d+$"), timeout=20_000)
    link.click()
    page.wait_for_url(re.compile(r"/console/task/\d+$"))
    expect(page.locator("#callback-of a")).to_have_text(f"callback of task #{task['id']}")


def cancel_all_shown(page: Page, server: NtorqueServer, hooks: HookServer, marker: str) -> None:
    """Two tasks of one url prefix wait for their second attempt, a third of
    another prefix too; the view filtered by state and prefix cancels the two."""
    from playwright.sync_api import expect

    prefix = hooks.url(f"/status/503/bulk-{marker}")
    made = [server.enqueue(f"{prefix}/{n}") for n in range(2)]
    other = server.enqueue(hooks.url(f"/status/503/spared-{marker}"))
    for task in [*made, other]:
        retrying(server, task["id"])
    page.goto(f"{server.base_url}/console")
    page.select_option("#status", "pending")
    page.select_option("#match", "prefix")
    page.fill("#q", prefix)
    page.click(".filters button[type=submit]")
    expect(page.locator("#task-rows tr")).to_have_count(2)
    asked: list[str] = []
    page.once("dialog", lambda dialog: (asked.append(dialog.message), dialog.dismiss()))
    page.click("#cancel-all")
    assert asked and "pending tasks whose url starts with" in asked[0], asked
    assert all(server.task(task["id"])["status"] == "pending" for task in made)
    page.once("dialog", lambda dialog: dialog.accept())
    with page.expect_navigation():
        page.click("#cancel-all")
    expect(page.locator("#bulk-done")).to_have_text("Cancel all shown: matched 2, changed 2.")
    expect(page.locator("#no-tasks")).to_be_visible()
    assert all(server.task(task["id"])["status"] == "cancelled" for task in made)
    assert server.task(other["id"])["status"] == "pending"


def queue_paused(server: NtorqueServer, name: str) -> bool:
    answer = server.request("GET", f"/queues/{name}")
    assert answer.status == 200, answer.body
    return bool(json.loads(answer.body)["paused"])


def queues_live(page: Page, server: NtorqueServer, hooks: HookServer, marker: str) -> None:
    """A limited queue's row; a queue that appears while the page is open;
    Pause and Resume posted from the page, their state brought by the socket."""
    from playwright.sync_api import expect

    name = f"mail-{marker}"
    settings = json.dumps({"max_concurrency": 2, "rate_per_s": 5}).encode()
    assert server.request("PUT", f"/queues/{name}", settings).status == 200
    waiting = server.enqueue(hooks.url(f"/status/200/mail-{marker}"), queue=name, delay=3600)
    page.goto(f"{server.base_url}/console")
    expect(page.locator("#live")).to_have_text("live", timeout=10_000)
    page.evaluate("window.notReloaded = true")
    row = page.locator(f'#queue-rows tr[data-queue="{name}"]')
    expect(row.locator('[data-q="pending"]')).to_have_text("1")
    expect(row.locator('[data-q="in_flight"]')).to_have_text("0 / 2")
    expect(row.locator('[data-q="calls"]')).to_have_text(re.compile(r"^\d+(\.\d)? / 5$"))
    expect(row.locator(".badge.paused")).to_be_hidden()

    late = f"late-{marker}"
    server.enqueue(hooks.url(f"/status/200/late-{marker}"), queue=late, delay=3600)
    later = page.locator(f'#queue-rows tr[data-queue="{late}"]')
    expect(later.locator('[data-q="pending"]')).to_have_text("1", timeout=10_000)
    expect(later.locator('[data-q="in_flight"]')).to_have_text("0")  # no limit

    row.locator("button", has_text="Pause").click()
    expect(row.locator(".badge.paused")).to_be_visible(timeout=10_000)
    expect(row.locator("button", has_text="Resume")).to_be_visible()
    expect(row.locator("button", has_text="Pause")).to_be_hidden()
    assert queue_paused(server, name)
    later.locator("button", has_text="Pause").click()  # a row the page made itself
    expect(later.locator(".badge.paused")).to_be_visible(timeout=10_000)
    assert queue_paused(server, late)
    row.locator("button", has_text="Resume").click()
    expect(row.locator(".badge.paused")).to_be_hidden(timeout=10_000)
    expect(row.locator("button", has_text="Pause")).to_be_visible()
    assert not queue_paused(server, name)
    assert page.evaluate("window.notReloaded") is True

    page.select_option("#queue", name)
    page.click(".filters button[type=submit]")
    page.wait_for_url(f"**/console?*queue={name}*")
    expect(page.locator("#task-rows tr")).to_have_count(1)
    expect(page.locator(f"#task-{waiting['id']} [data-field=queue]")).to_have_text(name)


# An outcome of the schedule's row that the page did not show when it loaded,
# completed with a 200 (a tick's task, brought by the socket).
NEW_OUTCOME = """([id, seen]) => Array.from(document.querySelectorAll(`#schedule-${id} .outcome`))
  .some((a) => !seen.includes(a.getAttribute("href"))
    && a.querySelector(".badge.st-completed") && a.querySelector(".code").textContent === "200")"""


def schedules_live(page: Page, server: NtorqueServer, hooks: HookServer, marker: str) -> None:
    """A schedule every second: its row, a tick's outcome arriving without a
    reload, then Pause posted from the page, its badge brought by the socket."""
    from playwright.sync_api import expect

    name = f"beat-{marker}"
    task = {"url": hooks.url(f"/status/200/beat-{marker}")}
    body = json.dumps({"name": name, "every_s": 1, "task": task}).encode()
    answer = server.request("POST", "/schedules", body)
    assert answer.status == 201, answer.body
    schedule_id = json.loads(answer.body)["id"]
    page.click("#nav-schedules")
    page.wait_for_url("**/console/schedules")
    expect(page.locator("#live")).to_have_text("live", timeout=10_000)
    page.evaluate("window.notReloaded = true")
    row = page.locator(f"#schedule-{schedule_id}")
    expect(row.locator('[data-s="name"]')).to_have_text(name)
    expect(row.locator('[data-s="description"]')).to_have_text("Every second")
    expect(row.locator('[data-s="next_ticks"] div')).to_have_count(3)
    seen = [link.get_attribute("href") for link in row.locator(".outcome").all()]
    page.wait_for_function(NEW_OUTCOME, arg=[schedule_id, seen], timeout=10_000)
    expect(row.locator('[data-s="last_tick"]')).to_have_text(re.compile(r"^\d{4}-"))

    row.locator("button", has_text="Pause").click()
    expect(row.locator(".badge.paused")).to_be_visible(timeout=10_000)
    expect(row.locator("button", has_text="Resume")).to_be_visible()
    expect(row.locator("button", has_text="Pause")).to_be_hidden()
    answer = server.request("GET", f"/schedules/{schedule_id}")
    assert json.loads(answer.body)["paused"] is True
    assert page.evaluate("window.notReloaded") is True
