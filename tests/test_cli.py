"""The command line: managing applications, migrations, settings, start and stop.

Every command runs at least once as a user would run it, `python -m ntorque ...`
(or the `ntorque` script) in a process of its own. Where a check is about what
a command says and does, not about the process (refusals, the other backend),
it calls `ntorque.__main__.main(argv, environ)` in this process instead: the
same code and output, without starting an interpreter (see `in_process`).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import io
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import redis.asyncio as redis
from alembic.script import ScriptDirectory

from ntorque.__main__ import main
from ntorque.config import Settings
from ntorque.store import Store
from ntorque.store import engine as database
from tests import services
from tests.conftest import BACKENDS, Backend, make_backend, server_for
from tests.factories import spec
from tests.hookserver import HookServer
from tests.server import NtorqueServer, free_port

CREATED = re.compile(r"its API key: (\S+)")
ROTATED = re.compile(r"new API key of .*: (\S+)")
URL_SAFE_KEY = re.compile(r"[A-Za-z0-9_-]{40}")
APPLIED = re.compile(r"^ntorque: applied (\w+) \((.+)\)$", re.MULTILINE)


@dataclass(frozen=True)
class Done:
    """What one command printed, and its exit status (as a process reports them)."""

    returncode: int
    stdout: str
    stderr: str


def launched(done: subprocess.CompletedProcess[str]) -> Done:
    return Done(done.returncode, done.stdout, done.stderr)


def in_process(backend: Backend, *argv: str, **settings: str) -> Done:
    """`python -m ntorque argv...` run by `main` in this process, with the backend's
    settings as its environment (from a sync test: main runs its own event loop)."""
    out, err = io.StringIO(), io.StringIO()
    with kept_logging(), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv), {**backend.environ(), **settings})
        except SystemExit as exit_:  # argparse's own exits: --help, a bad option
            code = exit_.code if isinstance(exit_.code, int) else 1
    return Done(code, out.getvalue(), err.getvalue())


@contextlib.contextmanager
def kept_logging() -> Iterator[None]:
    """Undo what a command does to logging (levels, a root handler), so that
    running one in this process changes nothing for the tests after it."""
    loggers = [logging.getLogger(), *logging.getLogger().manager.loggerDict.values()]
    levels = {log: log.level for log in loggers if isinstance(log, logging.Logger)}
    handlers = list(logging.getLogger().handlers)
    try:
        yield
    finally:
        for log, level in levels.items():
            log.setLevel(level)
        logging.getLogger().handlers[:] = handlers


def revisions(database_url: str) -> list[str]:
    """Every schema revision, oldest first."""
    scripts = ScriptDirectory.from_config(database.alembic_config(database_url))
    return [script.revision for script in reversed(list(scripts.walk_revisions()))]


class CliServer(NtorqueServer):
    """ntorque started with exactly the given arguments (no implied `serve --port`)."""

    def __init__(
        self, backend: Backend, workdir: Path, argv: tuple[str, ...], port: int, **settings: str
    ) -> None:
        super().__init__(workdir, {**backend.environ(), **settings})
        self.argv = argv
        self.port = port

    def start(self, wait: bool = True) -> NtorqueServer:
        self.workdir.mkdir(parents=True, exist_ok=True)
        with open(self.stdout_path, "ab") as out, open(self.log_path, "ab") as err:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "ntorque", *self.argv],
                env=self.full_environ(),
                cwd=self.workdir,
                stdout=out,
                stderr=err,
            )
        self.starts += 1
        if wait:
            self.wait_ready()
        return self


@pytest.fixture(params=BACKENDS)
def fresh_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """A backend whose database has never been migrated."""
    if request.param == "sqlite":
        return Backend("sqlite", f"sqlite:///{tmp_path / 'fresh.db'}")
    databases: services.PostgresDatabases = request.getfixturevalue("postgres_databases")
    return Backend("postgres", databases.new(migrated=False), request.getfixturevalue("redis_url"))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def created_key(done: Done | subprocess.CompletedProcess[str]) -> str:
    match = CREATED.search(done.stdout)
    assert match, (done.stdout, done.stderr)
    return match.group(1)


def refused(done: Done | subprocess.CompletedProcess[str], *words: str) -> None:
    """A command that failed with a one-line message naming words, no traceback."""
    assert done.returncode != 0, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in done.stderr, (word, done.stderr)


def try_serve(cli: NtorqueServer, *args: str) -> subprocess.CompletedProcess[str]:
    return cli.command("serve", "--port", str(free_port()), *args, check=False)


def try_serve_in_process(backend: Backend, *args: str, **settings: str) -> Done:
    """A serve that must refuse to start (one that starts holds the test to its timeout)."""
    return in_process(backend, "serve", "--port", str(free_port()), *args, **settings)


def port_is_closed(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def assert_serves(server: NtorqueServer, hooks: HookServer, key: str = "") -> dict[str, Any]:
    """A task enqueued with key (or the server's own) is performed; its final JSON."""
    server.key = key or server.key
    assert server.key, server.logs()
    path = f"/status/200/{uuid.uuid4().hex}"
    task = server.enqueue(hooks.url(path), b"a=1")
    done = server.wait_for(task["id"])
    assert done["status"] == "completed"
    assert len(hooks.wait_for_calls(path, 1)) == 1
    return done


# -- applications ----------------------------------------------------------------


@dataclass(frozen=True)
class Managed:
    """The outputs of one session of application management on a backend."""

    backend: Backend
    first: str
    second: str
    created: list[Done]
    deactivated: Done
    rotated: Done
    listed: Done
    targeted: Done

    @property
    def keys(self) -> list[str]:
        return [created_key(done) for done in self.created]

    @property
    def new_key(self) -> str:
        match = ROTATED.search(self.rotated.stdout)
        assert match, self.rotated.stdout
        return match.group(1)


@pytest.fixture(scope="module")
def managed(module_backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Managed:
    """create-app first and second, deactivate-app first, rotate-key second, list-apps,
    set-targets first: each a process of its own on SQLite, in this process on PostgreSQL."""
    cli = server_for(module_backend, tmp_path_factory.mktemp("cli-apps"))

    def command(*args: str) -> Done:
        if module_backend.name == "sqlite":
            return launched(cli.command(*args))
        return in_process(module_backend, *args)

    first, second = unique("first"), unique("second")
    created = [command("create-app", "--name", name) for name in (first, second)]
    deactivated = command("deactivate-app", "--name", first)
    rotated = command("rotate-key", "--name", second)
    listed = command("list-apps")
    targets = (
        "--allow",
        "10.0.0.0/8,*.example.com",
        "--allow",
        "hooks.test",
        "--deny",
        "10.9.0.0/16",
    )
    targeted = command("set-targets", "--name", first, *targets)  # second's key serves on
    return Managed(module_backend, first, second, created, deactivated, rotated, listed, targeted)


@pytest.fixture(scope="module")
def app_key(managed: Managed) -> str:
    """The key of an active application on the module's backend."""
    return managed.new_key


def test_create_app_prints_a_key(managed: Managed) -> None:
    first_key, second_key = managed.keys
    for name, done, key in zip(
        (managed.first, managed.second), managed.created, managed.keys, strict=True
    ):
        assert done.returncode == 0
        assert name in done.stdout
        assert URL_SAFE_KEY.fullmatch(key), key
        assert re.search(r"^its signing secret: whsec_\S{44}$", done.stdout, re.MULTILINE)
        assert " INFO " not in done.stderr  # no migration chatter unless --verbose
    assert first_key != second_key


def test_list_apps_shows_names_and_states(managed: Managed) -> None:
    apps = {}
    for line in managed.listed.stdout.splitlines():
        _, name, state = line.split("\t")
        apps[name] = state
    assert apps[managed.first] == "inactive"
    assert apps[managed.second] == "active"


def test_deactivate_app_and_rotate_key(managed: Managed) -> None:
    assert managed.deactivated.returncode == 0
    assert managed.first in managed.deactivated.stdout
    assert managed.rotated.returncode == 0
    assert URL_SAFE_KEY.fullmatch(managed.new_key)
    assert managed.new_key not in managed.keys


def test_set_targets_stores_the_lists_as_given(managed: Managed) -> None:
    assert managed.targeted.returncode == 0, managed.targeted.stderr
    stored = {"allow": ["10.0.0.0/8", "*.example.com", "hooks.test"], "deny": ["10.9.0.0/16"]}
    expected = f"target policy of {managed.first!r}: {json.dumps(stored)}"
    assert managed.targeted.stdout.strip() == expected


def test_application_errors(managed: Managed) -> None:
    backend, taken, missing = managed.backend, managed.first, unique("missing")
    refused(in_process(backend, "create-app", "--name", taken), taken, "exists")
    for command in ("deactivate-app", "rotate-key"):
        refused(in_process(backend, command, "--name", missing), missing)


def test_keys_are_not_stored_in_clear(module_backend: Backend, managed: Managed) -> None:
    stored = stored_bytes(module_backend)
    assert managed.second.encode() in stored  # the right place was read
    for key in [*managed.keys, managed.new_key]:
        assert key.encode() not in stored


def stored_bytes(backend: Backend) -> bytes:
    """Everything the database holds about applications, as bytes."""
    if backend.name == "sqlite":
        database = Path(backend.database_url.removeprefix("sqlite:///"))
        files = [database, Path(f"{database}-wal"), Path(f"{database}-journal")]
        return b"".join(path.read_bytes() for path in files if path.exists())

    async def rows() -> list[asyncpg.Record]:
        connection = await asyncpg.connect(backend.database_url, timeout=5)
        try:
            return list(await connection.fetch("SELECT * FROM applications"))
        finally:
            await connection.close()

    return repr([dict(row) for row in services.run_async(rows())]).encode()


# -- migrations ------------------------------------------------------------------


def test_serve_refuses_an_unmigrated_postgres_database(
    postgres_databases: services.PostgresDatabases, redis_url: str, tmp_path: Path
) -> None:
    backend = Backend("postgres", postgres_databases.new(migrated=False), redis_url)
    cli = server_for(backend, tmp_path)
    refused(try_serve(cli), "migrate")
    refused(in_process(backend, "create-app", "--name", "early"), "migrate")


def test_serve_with_migrate_starts(
    fresh_backend: Backend, hooks: HookServer, tmp_path: Path
) -> None:
    """The first start migrates (Alembic's steps logged: --verbose), creates the
    default application and prints its key and signing secret."""
    with server_for(fresh_backend, tmp_path, args=("--migrate", "--verbose")) as server:
        assert_serves(server, hooks)
    first = revisions(fresh_backend.database_url)[0]
    assert f"Running upgrade  -> {first}" in server.logs()
    assert f"applied the schema revision {first} (" in server.logs()
    printed = server.stdout_path.read_text().splitlines()
    assert re.fullmatch(r"ntorque: created application 'default'; its API key: \S{40}", printed[0])
    assert re.fullmatch(r"ntorque: its signing secret .*: whsec_\S{44}", printed[1])


def test_migrate_then_serve(
    fresh_backend: Backend, hooks: HookServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """migrate names what it applied, then says there was nothing to apply;
    Alembic's own lines only with --verbose."""
    server, url = server_for(fresh_backend, tmp_path), fresh_backend.database_url
    migrated = launched(server.command("migrate"))
    assert [revision for revision, _ in APPLIED.findall(migrated.stdout)] == revisions(url)
    assert all(message.strip() for _, message in APPLIED.findall(migrated.stdout))
    assert " INFO " not in migrated.stderr, migrated.stderr
    caplog.set_level(logging.DEBUG)
    again = in_process(fresh_backend, "migrate")
    assert again.stdout == f"ntorque: already up to date at {revisions(url)[-1]}\n"
    assert not [record for record in caplog.records if record.name.startswith("alembic")]
    assert in_process(fresh_backend, "migrate", "--verbose").returncode == 0
    assert any(record.name.startswith("alembic") for record in caplog.records)
    with server:
        assert_serves(server, hooks)
    assert "alembic" not in server.logs()  # SQLite checks its schema at every start


# -- settings --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("settings", "named"),
    [
        ({"NTORQUE_MAX_RETRIES": "abc"}, "NTORQUE_MAX_RETRIES"),
        (
            {"NTORQUE_MAX_DUE_DELAY": "30", "NTORQUE_DEFAULT_TIMEOUT": "60"},
            "NTORQUE_MAX_DUE_DELAY",
        ),
        ({"NTORQUE_MIN_DUE_DELAY": "-1"}, "NTORQUE_MIN_DUE_DELAY"),
        ({"NTORQUE_BACKOFF": "quadratic"}, "NTORQUE_BACKOFF"),
    ],
    ids=[
        "retries-abc",
        "delay-under-timeout",
        "min-delay-negative",
        "backoff",
    ],
)
def test_bad_setting_refuses_to_start(
    module_backend: Backend, tmp_path: Path, settings: dict[str, str], named: str
) -> None:
    refused(try_serve_in_process(module_backend, **settings), named)


def test_config_file_with_unknown_key_is_refused(module_backend: Backend, tmp_path: Path) -> None:
    config = tmp_path / "ntorque.yaml"
    config.write_text("port: 8123\nbogus_setting: 1\n")
    refused(try_serve_in_process(module_backend, "--config", str(config)), "bogus_setting")


def test_config_file_with_bad_value_is_refused(module_backend: Backend, tmp_path: Path) -> None:
    config = tmp_path / "ntorque.yaml"
    config.write_text("max_retries: many\n")
    refused(
        try_serve_in_process(module_backend, "--config", str(config)), "max_retries", str(config)
    )


def test_config_file_values_are_used(
    module_backend: Backend, hooks: HookServer, tmp_path: Path, app_key: str
) -> None:
    port = free_port()
    config = tmp_path / "ntorque.yaml"
    config.write_text(f"port: {port}\ndefault_timeout_s: 7\n")
    argv = ("serve", "--config", str(config))
    with CliServer(module_backend, tmp_path / "run", argv, port) as server:
        assert assert_serves(server, hooks, app_key)["timeout"] == 7
        assert server.stop() == 0


def test_environment_overrides_config_file(
    module_backend: Backend, hooks: HookServer, tmp_path: Path, app_key: str
) -> None:
    yaml_port, env_port = free_port(), free_port()
    config = tmp_path / "ntorque.yaml"
    config.write_text(f"port: {yaml_port}\ndefault_timeout_s: 7\n")
    settings = {
        "NTORQUE_CONFIG": str(config),
        "NTORQUE_PORT": str(env_port),
        "NTORQUE_DEFAULT_TIMEOUT": "9",
    }
    with CliServer(module_backend, tmp_path / "run", ("serve",), env_port, **settings) as server:
        assert assert_serves(server, hooks, app_key)["timeout"] == 9
        assert port_is_closed(yaml_port)
        assert server.stop() == 0


# -- starting and stopping -------------------------------------------------------


def test_serves_without_a_subcommand(
    module_backend: Backend, hooks: HookServer, tmp_path: Path, app_key: str
) -> None:
    """`python -m ntorque --port P` serves on P, even with NTORQUE_PORT set elsewhere."""
    port, env_port = free_port(), free_port()
    settings = {"NTORQUE_PORT": str(env_port)}
    with CliServer(module_backend, tmp_path, ("--port", str(port)), port, **settings) as server:
        assert server.request("GET", "/", key="").status == 200
        assert_serves(server, hooks, app_key)
        assert port_is_closed(env_port)
        assert server.stop() == 0


def test_sigterm_exits_zero(
    module_backend: Backend, hooks: HookServer, tmp_path: Path, app_key: str
) -> None:
    """SIGTERM while a call is in flight: the call finishes, then exit status 0."""
    with server_for(module_backend, tmp_path) as server:
        server.key = app_key
        path = f"/slow/1/{uuid.uuid4().hex}"
        task = server.enqueue(hooks.url(path))
        hooks.wait_for_calls(path, 1)
        assert server.stop() == 0
    logs = server.logs()
    assert "Traceback" not in logs
    assert f"task {task['id']} completed" in logs
    assert len(hooks.calls(path)) == 1


def test_console_script(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    """The installed `ntorque` script runs main (the help it prints is main's)."""
    (entry,) = importlib.metadata.entry_points(group="console_scripts", name="ntorque")
    assert entry.value == "ntorque.__main__:main"
    search = os.pathsep.join([sysconfig.get_path("scripts"), os.environ.get("PATH", "")])
    script = shutil.which("ntorque", path=search)
    assert script, "the ntorque script is not installed"
    backend = make_backend(request, "sqlite", tmp_path)
    cli = server_for(backend, tmp_path)
    done = in_process(backend, "--help")
    assert done.returncode == 0, done.stderr
    for command in ("serve", "migrate", "create-app", "list-apps", "queues", "schedules"):
        assert command in done.stdout
    name = unique("script")
    created = subprocess.run(
        [script, "create-app", "--name", name],
        env=cli.full_environ(),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert created.returncode == 0, created.stderr
    assert URL_SAFE_KEY.fullmatch(created_key(created))


def test_sigint_exits_zero(module_backend: Backend, tmp_path: Path, app_key: str) -> None:
    """Ctrl-C stops as cleanly as SIGTERM."""
    with server_for(module_backend, tmp_path) as server:
        assert server.process is not None
        server.process.send_signal(signal.SIGINT)
        assert server.process.wait(30) == 0


def test_development_mode_serves_and_logs_debug(
    module_backend: Backend, hooks: HookServer, tmp_path: Path, app_key: str
) -> None:
    """MODE=development: autoreload on, debug lines in the log, tasks still served."""
    with server_for(module_backend, tmp_path, MODE="development") as server:
        server.key = app_key
        assert_serves(server, hooks, app_key)
        assert server.stop() == 0
    assert " DEBUG " in server.log_path.read_text()


# -- named queues ----------------------------------------------------------------


def app_id_of(managed: Managed, name: str) -> int:
    """The application's id, as list-apps printed it."""
    for line in managed.listed.stdout.splitlines():
        app_id, listed, *_ = line.split("\t")
        if listed == name:
            return int(app_id)
    raise AssertionError(f"{name} not listed: {managed.listed.stdout}")


def insert_tasks(backend: Backend, app_id: int | None, queue: str, count: int) -> list[int]:
    """Tasks of the queue, due now, stored as an enqueue stores them."""

    async def insert() -> list[int]:
        made = database.make_engine(Settings(database_url=backend.database_url))
        try:
            specs = [spec(app_id=app_id, queue=queue) for _ in range(count)]
            return [task.id for task in await Store(made).tasks.insert_many(specs, time.time())]
        finally:
            await made.dispose()

    return services.run_async(insert())


def queue_json(done: Done) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_queues_set_show_list_and_delete(managed: Managed) -> None:
    """set changes only the options given (`none` clears one); --json is the API's JSON."""
    backend, app, name = managed.backend, managed.second, unique("mail")
    made = in_process(
        backend, "queues", "set", name, "--app", app,
        "--max-concurrency", "5", "--rate-per-s", "2.5", "--retries", "3", "--paused",
    )  # fmt: skip
    assert made.returncode == 0, made.stderr
    assert made.stdout.splitlines()[:3] == [
        f"queue {name}: paused",
        "  limits:   max_concurrency 5, rate_per_s 2.5, burst 3",
        "  defaults: retries 3",
    ]
    assert made.stderr == ""  # no log chatter
    changed = queue_json(
        in_process(backend, "queues", "set", name, "--app", app, "--rate-per-s", "none",
                   "--backoff", "linear", "--no-paused", "--json")
    )  # fmt: skip
    assert {key: changed[key] for key in ("paused", "max_concurrency", "rate_per_s", "burst")} == {
        "paused": False, "max_concurrency": 5, "rate_per_s": None, "burst": None,
    }  # fmt: skip
    assert [changed[key] for key in ("retries", "backoff", "timeout")] == [3, "linear", None]
    shown = in_process(backend, "queues", "show", name, "--app", app, "--json")
    assert queue_json(shown) == changed
    listed = queue_json(in_process(backend, "queues", "list", "--app", app, "--json"))
    assert listed["next_cursor"] is None
    assert {"default", name} <= {queue["name"] for queue in listed["queues"]}
    table = in_process(backend, "queues", "list", "--app", app).stdout.splitlines()
    assert table[0].split()[:3] == ["NAME", "STATE", "CONCURRENCY"]
    (line,) = [line.split() for line in table if line.startswith(name)]
    assert line == [name, "running", "5", "-", "-", "0", "0", "0", "-"]
    deleted = in_process(backend, "queues", "delete", name, "--app", app)
    assert (deleted.returncode, deleted.stdout) == (0, f"deleted queue {name!r}\n")
    refused(in_process(backend, "queues", "show", name, "--app", app), "no queue", name)


def test_pause_and_resume_print_the_queue(managed: Managed) -> None:
    backend, app, name = managed.backend, managed.second, unique("pause")
    paused = in_process(backend, "queues", "pause", name, "--app", app, "--json")
    assert queue_json(paused)["paused"] is True
    resumed = in_process(backend, "queues", "resume", name, "--app", app)
    assert resumed.stdout.startswith(f"queue {name}: running\n"), resumed.stdout
    assert in_process(backend, "queues", "delete", name, "--app", app, "--json").stdout == ""


def test_queue_commands_refuse_what_they_cannot_do(managed: Managed) -> None:
    backend, app, name = managed.backend, managed.second, unique("busy")
    refused(in_process(backend, "queues", "list"), "--app")  # authentication is on
    refused(in_process(backend, "queues", "list", "--app", "nobody"), "nobody")
    refused(in_process(backend, "queues", "show", "a b", "--app", app), "queue must be")
    refused(
        in_process(backend, "queues", "set", name, "--app", app, "--backoff", "quadratic"),
        "backoff",
    )
    refused(in_process(backend, "queues", "set", name, "--app", app, "--burst", "2"), "rate_per_s")
    refused(in_process(backend, "queues", "set", name, "--app", app, "--retries", "x"), "--retries")
    refused(in_process(backend, "queues", "delete", name, "--app", app), "no configured queue")
    in_process(backend, "queues", "pause", name, "--app", app)
    insert_tasks(backend, app_id_of(managed, app), name, 1)
    refused(in_process(backend, "queues", "delete", name, "--app", app), "unfinished tasks")
    assert in_process(backend, "queues", "show", name, "--app", app, "--json").returncode == 0


def test_queues_of_no_application_when_authentication_is_off(managed: Managed) -> None:
    backend, name = managed.backend, unique("open")
    insert_tasks(backend, None, name, 2)
    off = {"NTORQUE_AUTHENTICATE": "false"}
    shown = queue_json(in_process(backend, "queues", "show", name, "--json", **off))
    assert (shown["figures"]["pending"], shown["figures"]["due_now"]) == (2, 2)
    refused(in_process(backend, "queues", "show", name, "--app", managed.second), "no queue")


@pytest.mark.postgres
@pytest.mark.redis
def test_resume_pushes_the_queues_due_ids_to_the_nodes_channel(
    postgres_databases: services.PostgresDatabases, redis_url: str, tmp_path: Path
) -> None:
    """With Redis, what a resume lets start reaches every node's consumers at once:
    the ids go onto the channel's list (within the queue's limits)."""
    backend = Backend("postgres", postgres_databases.new(), redis_url)
    off, name = {"NTORQUE_AUTHENTICATE": "false"}, unique("wake")
    try:
        in_process(backend, "queues", "set", name, "--paused", "--max-concurrency", "2", **off)
        ids = insert_tasks(backend, None, name, 3)
        assert redis_list(redis_url, backend.redis_channel) == []
        assert in_process(backend, "queues", "resume", name, **off).returncode == 0
        assert redis_list(redis_url, backend.redis_channel) == ids[:2]  # its concurrency limit
    finally:
        postgres_databases.give_back(backend.database_url)


def redis_list(url: str, name: str) -> list[int]:
    async def read() -> list[int]:
        client = redis.from_url(url)
        try:
            return [int(item) for item in await client.lrange(name, 0, -1)]
        finally:
            await client.delete(name)
            await client.aclose()

    return services.run_async(read())


def test_a_resumed_queue_runs_on_the_serving_node(
    module_backend: Backend, hooks: HookServer, tmp_path: Path, managed: Managed, app_key: str
) -> None:
    """The command changes the database; the node it does not share a process
    with starts the waiting task (by Redis at once, or by its requeuer)."""
    name = unique("served")
    with server_for(module_backend, tmp_path, NTORQUE_REQUEUE_INTERVAL="1") as server:
        server.key = app_key
        in_process(module_backend, "queues", "pause", name, "--app", managed.second)
        hook = f"/status/200/{uuid.uuid4().hex}"
        task = server.enqueue(hooks.url(hook), queue=name)
        time.sleep(1.5)  # more than a requeue round: the pause holds it
        assert (server.task(task["id"])["status"], hooks.calls(hook)) == ("pending", [])
        in_process(module_backend, "queues", "resume", name, "--app", managed.second)
        assert server.wait_for(task["id"], timeout_s=15)["status"] == "completed"
