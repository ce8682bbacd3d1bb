"""Signed calls checked by code other than ntorque's: the npm `standardwebhooks`
package and Node's own crypto (tests/interop/verify.mjs, run by Node as the
web hook), and the README's few lines of Python.

The Standard Webhooks libraries decode the body as UTF-8 before checking its
signature, so they verify UTF-8 bodies only: the README says so. Any body
verifies with ntorque.client.verify or an HMAC over the raw bytes.

Node and the package come from tests/interop: the test runs `npm ci` there
(from its lock file) when the package is missing, as .ci/run does. Without
Node or the package it fails under CI, and is skipped elsewhere.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import inspect
import json
import shutil
import subprocess
import textwrap
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tornado.httpclient

from ntorque.client import SignatureError, verify
from tests import services
from tests.conftest import Backend, live_for, make_backend

INTEROP = Path(__file__).parent / "interop"
SCRIPT = INTEROP / "verify.mjs"
README = Path(__file__).parents[1] / "README.md"
NODE_EXAMPLE = ("// -- the README's Node example", "// -- end of the README's Node example")


@dataclass(frozen=True)
class Body:
    kind: str
    data: bytes
    content_type: str = ""

    @property
    def utf8(self) -> bool:
        try:
            self.data.decode("utf-8")
        except UnicodeDecodeError:
            return False
        return True


UTF8_KINDS = ("JSON", "UTF-8 text", "form", "empty")
BODIES = (
    Body("JSON", b'{"user_id": 1234}', "application/json"),
    Body("JSON", '{"name": "Zoë", "tags": ["✓"]}'.encode(), "application/json; charset=utf-8"),
    Body("UTF-8 text", "héllo wörld ✓ 日本".encode(), "text/plain; charset=utf-8"),
    Body("UTF-8 text", b"plain ascii", "text/plain"),
    Body("form", b"user_id=1234&name=Zo%C3%AB", "application/x-www-form-urlencoded"),
    Body("form", "name=Zoë".encode(), "application/x-www-form-urlencoded; charset=utf-8"),
    Body("latin-1 text", "café crème".encode("latin-1"), "text/plain; charset=iso-8859-1"),
    Body("latin-1 text", "Zoë, déjà".encode("latin-1"), "text/plain"),
    Body("binary", bytes(range(256)), "application/octet-stream"),
    Body("binary", b"\x89PNG\r\n\x1a\n" + bytes(i * 37 % 256 for i in range(500)), "image/png"),
    Body("empty", b""),
)


# -- the README's Python example (test_readme_shows_the_tested_examples) --
def signed_by(secret: str, headers: Mapping[str, str], body: bytes) -> bool:
    """One of the call's signatures is HMAC-SHA256 of "id.timestamp.body" over
    the raw body bytes, and the timestamp is within 5 minutes."""
    stamp = headers["webhook-timestamp"]
    key = base64.b64decode(secret.removeprefix("whsec_"))
    signed = f"{headers['webhook-id']}.{stamp}.".encode() + body
    mac = hmac.new(key, signed, hashlib.sha256).digest()
    expected = "v1," + base64.b64encode(mac).decode()
    fresh = abs(time.time() - int(stamp)) <= 300
    given = headers["webhook-signature"].split()
    return fresh and any(hmac.compare_digest(expected, one) for one in given)


@pytest.fixture
def sqlite_backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    """Signing does not depend on the backend: the embedded one."""
    return make_backend(request, "sqlite", tmp_path)


def node_executable() -> str:
    """node, with the lock file's packages installed; fails under CI, skips elsewhere."""
    node = shutil.which("node")
    if node is None:
        services.missing("Node", FileNotFoundError("no `node` on PATH"))
    installed = INTEROP / "node_modules" / "standardwebhooks" / "package.json"
    npm = shutil.which("npm")
    if not installed.exists() and npm:  # the README's test line alone installs it too
        command = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
        subprocess.run(command, cwd=INTEROP, capture_output=True, timeout=300, check=False)
    if not installed.exists():
        services.missing(
            "The npm standardwebhooks package", FileNotFoundError(f"run `npm ci` in {INTEROP}")
        )
    assert node is not None
    return node


@dataclass
class Receiver:
    """verify.mjs running as a web hook."""

    port: int
    client: tornado.httpclient.AsyncHTTPClient

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def calls(self) -> list[dict[str, Any]]:
        answer = await self.client.fetch(self.url("/calls"))
        calls: list[dict[str, Any]] = json.loads(answer.body)
        return calls


@asynccontextmanager
async def node_receiver(node: str, secret: str, logs: Path) -> AsyncIterator[Receiver]:
    """Start verify.mjs; stop it (by its pid) when done."""
    with open(logs, "wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            node, str(SCRIPT), cwd=INTEROP, env={"SECRET": secret},
            stdout=asyncio.subprocess.PIPE, stderr=stderr,
        )  # fmt: skip
    client = tornado.httpclient.AsyncHTTPClient(force_instance=True)
    try:
        assert process.stdout is not None
        line = await asyncio.wait_for(process.stdout.readline(), 10)
        assert line.startswith(b"listening "), (line, logs.read_text())
        yield Receiver(int(line.split()[1]), client)
    finally:
        client.close()
        if process.returncode is None:
            process.terminate()
        await asyncio.wait_for(process.wait(), 10)


def headers_of(body: Body) -> dict[str, str]:
    return {"Content-Type": body.content_type} if body.content_type else {}


async def test_signed_calls_verified_by_the_npm_package_and_raw_hmacs(
    sqlite_backend: Backend, tmp_path: Path
) -> None:
    """Every UTF-8 body verifies with npm standardwebhooks, and it refuses exactly
    the others (its documented limit); ntorque.client.verify and an HMAC over the
    raw bytes (Python, and Node's crypto) verify every body."""
    node = node_executable()
    assert [body.utf8 for body in BODIES] == [body.kind in UTF8_KINDS for body in BODIES]
    async with live_for(sqlite_backend) as ntorque:
        created = ntorque.running.created  # the default application, whose key ntorque uses
        assert created is not None and created.key == ntorque.key
        secret = created.signing_secret
        async with node_receiver(node, secret, tmp_path / "node.log") as receiver:
            tasks = [
                await ntorque.enqueue(receiver.url(f"/{i}"), body.data, headers_of(body))
                for i, body in enumerate(BODIES)
            ]
            for task in tasks:
                assert (await ntorque.wait_for(task["id"]))["status"] == "completed"
            calls = {call["path"]: call for call in await receiver.calls()}
    assert len(calls) == len(BODIES)  # one call per task
    counts: Counter[tuple[str, str]] = Counter()
    for i, body in enumerate(BODIES):
        call, context = calls[f"/{i}"], (body.kind, body.data[:40])
        received = base64.b64decode(call["body"])
        assert received == body.data, context
        counts[body.kind, "calls"] += 1
        # npm standardwebhooks: the UTF-8 bodies, and only those
        assert call["library"] == ("verified" if body.utf8 else "WebhookVerificationError"), context
        assert call["library_tampered"] == "WebhookVerificationError", context
        counts[body.kind, "npm standardwebhooks"] += call["library"] == "verified"
        # by default it also parses the body as JSON: text and forms throw, once verified
        parsed = "verified" if body.kind in ("JSON", "empty") else "SyntaxError"
        expected = parsed if body.utf8 else "WebhookVerificationError"
        assert call["library_parsing_json"] == expected, context
        # any body: Node's crypto, ntorque.client.verify, the README's Python lines
        assert call["crypto"] is True and call["crypto_tampered"] is False, context
        assert verify(secret, call["headers"], received) == call["headers"]["webhook-id"]
        with pytest.raises(SignatureError):
            verify(secret, call["headers"], received + b"!")
        assert signed_by(secret, call["headers"], received), context
        assert not signed_by(secret, call["headers"], received + b"!"), context
        counts[body.kind, "ntorque.client.verify and raw HMACs"] += 1
    print(json.dumps({" / ".join(key): value for key, value in counts.items()}, indent=1))


def test_readme_shows_the_tested_examples() -> None:
    """The README's Python and Node lines are the ones this test runs."""
    readme = README.read_text()
    python = inspect.getsource(signed_by)
    assert textwrap.indent(python, "    ") in readme
    script = SCRIPT.read_text()
    start, end = (script.index(marker) for marker in NODE_EXAMPLE)
    node = script[start:end].split("\n", 1)[1]
    assert textwrap.indent(node, "    ") in readme
