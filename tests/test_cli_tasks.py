"""python -m ntorque tasks|apps|stats|enqueue, on both backends, in this
process (`in_process`, as the queue commands' tests do): each command once
as text and once as --json, the refusals, and the older application
commands as aliases of `apps`."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path
from typing import Any

import pytest

from ntorque.__main__ import main
from tests.conftest import Backend
from tests.test_cli import Done, in_process, insert_tasks, kept_logging, unique


def answer(done: Done, code: int = 0) -> Any:
    assert done.returncode == code, (done.stdout, done.stderr)
    return json.loads(done.stdout)


@pytest.fixture(scope="module")
def app(module_backend: Backend) -> dict[str, Any]:
    """An application made by `apps create --json`: its id, name and key."""
    made: dict[str, Any] = answer(
        in_process(module_backend, "apps", "create", unique("t"), "--json")
    )
    return made


def test_apps_group_and_its_aliases(module_backend: Backend, app: dict[str, Any]) -> None:
    backend, name = module_backend, app["name"]
    assert app["api_key"] and app["signing_secret"].startswith("whsec_")
    listed = answer(in_process(backend, "apps", "list", "--json"))["apps"]
    assert {"id": app["id"], "name": name, "active": True, "admin": False} in listed
    table = in_process(backend, "apps", "list").stdout.splitlines()
    assert table[0].split() == ["ID", "NAME", "STATE", "ADMIN"]
    assert f"{app['id']}\t{name}\tactive" in in_process(backend, "list-apps").stdout.splitlines()
    other = unique("other")
    assert "its API key: " in in_process(backend, "create-app", "--name", other).stdout
    rotated = answer(in_process(backend, "apps", "rotate-key", other, "--json"))
    assert rotated["name"] == other and rotated["api_key"]
    assert in_process(backend, "apps", "deactivate", other).stdout.strip() == (
        f"deactivated application {other!r}"
    )
    assert f"\t{other}\tinactive" in in_process(backend, "list-apps").stdout
    missing = in_process(backend, "apps", "deactivate", unique("missing"))
    assert missing.returncode == 1 and "no application named" in missing.stderr
    taken = in_process(backend, "apps", "create", name)
    assert taken.returncode == 1 and "exists already" in taken.stderr


def test_tasks_list_filters_newest_first_and_show(
    module_backend: Backend, app: dict[str, Any]
) -> None:
    backend, name = module_backend, app["name"]
    mail = insert_tasks(backend, app["id"], "mail", 3)
    other = insert_tasks(backend, None, "mail", 1)  # of no application: not listed with --app
    listed = answer(
        in_process(backend, "tasks", "list", "--app", name, "--queue", "mail", "--json")
    )
    assert [task["id"] for task in listed["tasks"]] == mail[::-1]
    assert listed["next_cursor"] is None
    page = answer(in_process(backend, "tasks", "list", "--app", name, "--limit", "2", "--json"))
    assert len(page["tasks"]) == 2 and page["next_cursor"]
    text = in_process(backend, "tasks", "list", "--app", name, "--status", "pending")
    assert text.stdout.split()[:2] == ["ID", "STATUS"] and str(mail[0]) in text.stdout
    shown = answer(in_process(backend, "tasks", "show", str(mail[0]), "--json"))
    assert shown["id"] == mail[0] and shown["attempts"] == []
    assert f"task {mail[0]}: pending" in in_process(backend, "tasks", "show", str(mail[0])).stdout
    hidden = in_process(backend, "tasks", "show", str(other[0]), "--app", name)
    assert hidden.returncode == 1 and f"no task {other[0]}" in hidden.stderr
    bad = in_process(backend, "tasks", "list", "--status", "lost")
    assert bad.returncode == 1 and "status must be one of" in bad.stderr


def test_tasks_cancel_and_retry(module_backend: Backend, app: dict[str, Any]) -> None:
    backend, name = module_backend, app["name"]
    first, second = insert_tasks(backend, app["id"], "default", 2)
    cancelled = answer(in_process(backend, "tasks", "cancel", str(first), str(second), "--json"))
    assert [task["status"] for task in cancelled["tasks"]] == ["cancelled", "cancelled"]
    again = in_process(backend, "tasks", "cancel", str(first), "--app", name)
    assert again.returncode == 1 and "it is cancelled, not pending or in-progress" in again.stderr
    retried = in_process(backend, "tasks", "retry", str(first), "--app", name)
    assert retried.returncode == 0 and f"retried task {first}" in retried.stdout
    state = answer(in_process(backend, "tasks", "show", str(first), "--json"))
    assert state["status"] == "pending"


def test_stats_counts_and_queues(module_backend: Backend, app: dict[str, Any]) -> None:
    backend, name = module_backend, app["name"]
    insert_tasks(backend, app["id"], "stats", 2)
    data = answer(in_process(backend, "stats", "--app", name, "--json"))
    assert data["pending"] >= 2 and data["due_now"] >= 2
    queues = {queue["name"]: queue for queue in data["queues"]}
    assert queues["stats"]["pending"] == 2
    everyone = answer(in_process(backend, "stats", "--json"))
    assert {"app": name, "name": "stats"}.items() <= next(
        q for q in everyone["queues"] if q["name"] == "stats"
    ).items()
    text = in_process(backend, "stats", "--app", name).stdout
    assert text.startswith("unfinished: ") and "stats" in text


def test_enqueue_file_reports_bad_lines_and_stores_the_rest(
    module_backend: Backend, app: dict[str, Any], tmp_path: Path
) -> None:
    backend, name = module_backend, app["name"]
    queue = unique("bulk")[:40]
    lines = [
        {"url": "http://127.0.0.1:9/a", "queue": queue},
        {"url": "ftp://nowhere", "queue": queue},
        {"url": "http://127.0.0.1:9/b", "queue": queue, "idempotency_key": "k"},
        {"url": "http://127.0.0.1:9/c", "queue": queue, "idempotency_key": "k"},
    ]
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join([*map(json.dumps, lines), "", "{not json"]) + "\n")
    done = in_process(backend, "enqueue", "--file", str(path), "--app", name, "--json")
    summary = answer(done, code=1)
    assert summary["enqueued"] == 2 and summary["replayed"] == 0
    assert [(r["line"], r["field"]) for r in summary["rejected"]] == [
        (2, "url"), (4, "idempotency_key"), (6, None),
    ]  # fmt: skip
    assert "ntorque: line 2 (url): url must be" in done.stderr
    listed = answer(in_process(backend, "tasks", "list", "--queue", queue, "--json"))["tasks"]
    assert [task["url"] for task in listed] == ["http://127.0.0.1:9/b", "http://127.0.0.1:9/a"]
    path.write_text(json.dumps(lines[2]) + "\n")  # the same key, the same request: replayed
    again = in_process(backend, "enqueue", "--file", str(path), "--app", name)
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("0 enqueued, 1 made before (same idempotency key), 0 rejected")
    missing = in_process(backend, "enqueue", "--file", str(tmp_path / "none"), "--app", name)
    assert missing.returncode == 1 and "cannot read" in missing.stderr


class Terminal(io.StringIO):
    """What a terminal's stderr looks like to the command."""

    def isatty(self) -> bool:
        return True


def test_enqueue_file_shows_its_progress_on_a_terminal(
    module_backend: Backend, app: dict[str, Any], tmp_path: Path
) -> None:
    """A line rewritten after each chunk of 500, ended before the summary."""
    path = tmp_path / "many.jsonl"
    line = json.dumps({"url": "http://127.0.0.1:9/p", "queue": unique("progress")[:40]})
    path.write_text((line + "\n") * 1200)
    out, err = io.StringIO(), Terminal()
    argv = ["enqueue", "--file", str(path), "--app", app["name"]]
    with kept_logging(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        assert main(argv, module_backend.environ()) == 0
    assert err.getvalue().endswith(
        "\r500 enqueued, 0 rejected\r1000 enqueued, 0 rejected\r1200 enqueued, 0 rejected\n"
    )
    assert out.getvalue().startswith("1200 enqueued, 0 rejected, in ")
