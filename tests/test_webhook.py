"""What a hook's answer means, and the outgoing request (headers, timeouts
within the lease, certificates)."""

from __future__ import annotations

import io
import time
from pathlib import Path

import pytest
from tornado.httpclient import HTTPRequest, HTTPResponse
from tornado.httputil import HTTPHeaders

from ntorque.tasks import Verdict
from ntorque.webhook import MAX_REDIRECTS, MIN_CALL_S, Webhook, classify, make_client
from tests.test_tasks import stored_task

# -- what a hook's answer means ---------------------------------------------------

TRANSIENT = (408, 423, 429, 449)


@pytest.mark.parametrize(
    ("code", "verdict"),
    [
        (200, Verdict.COMPLETED),
        (201, Verdict.COMPLETED),
        (202, Verdict.FAILED),
        (204, Verdict.FAILED),
        (301, Verdict.FAILED),
        (304, Verdict.FAILED),
        (400, Verdict.FAILED),
        (401, Verdict.FAILED),
        (404, Verdict.FAILED),
        (408, Verdict.RETRY),
        (410, Verdict.FAILED),
        (423, Verdict.RETRY),
        (429, Verdict.RETRY),
        (449, Verdict.RETRY),
        (499, Verdict.FAILED),
        (500, Verdict.RETRY),
        (502, Verdict.RETRY),
        (503, Verdict.RETRY),
        (504, Verdict.RETRY),
        (599, Verdict.RETRY),
    ],
)
def test_classify(code: int, verdict: Verdict) -> None:
    assert classify(code, TRANSIENT) is verdict


def test_classify_uses_the_configured_transient_codes() -> None:
    assert classify(418, {418}) is Verdict.RETRY
    assert classify(429, ()) is Verdict.FAILED
    assert classify(503, ()) is Verdict.RETRY  # server errors are always retried


async def test_webhook_request(tmp_path: Path) -> None:
    client = make_client(1)
    try:
        ca_file = tmp_path / "ca.pem"
        ca_file.write_text("", encoding="utf-8")
        webhook = Webhook(client, max_retries=36, transient_codes=TRANSIENT, ca_certs=str(ca_file))
        # Freshly leased: the lease (due) runs well past the 25 s timeout.
        request = webhook.request(stored_task(due=time.time() + 25 + 2))
    finally:
        client.close()

    assert isinstance(request, HTTPRequest)
    assert request.url == "https://example.com/hooks/send_email?x=1"
    assert request.method == "PUT"
    assert request.body == b'\x00{"user_id": 1234}\xff'
    assert {name.lower(): value for name, value in request.headers.items()} == {
        "x-foo": "Bar",
        "authorization": "Bearer t",
        "content-type": "application/json; charset=utf-8",
        "ntorque-task-id": "42",
        "ntorque-task-retry-count": "2",  # attempts before this one
        "ntorque-task-retry-limit": "36",
    }
    assert request.connect_timeout == 25
    assert request.request_timeout == 25
    # Webhook follows redirects itself, checking and pinning each hop's target
    # (tests/test_targets.py); curl must not follow them on its own.
    assert request.follow_redirects is False
    assert MAX_REDIRECTS == 10
    assert request.validate_cert is True
    assert request.ca_certs == str(ca_file)
    assert request.allow_nonstandard_methods is True  # a DELETE with a body


async def test_webhook_request_for_a_first_attempt_and_the_system_ca_bundle() -> None:
    client = make_client(1)
    try:
        webhook = Webhook(client, max_retries=5, transient_codes=TRANSIENT, ca_certs=None)
        request = webhook.request(stored_task(method="DELETE", retry_count=1, headers=()))
    finally:
        client.close()
    assert request.method == "DELETE"
    headers = HTTPHeaders(request.headers)
    assert headers["NTorque-Task-Retry-Count"] == "0"
    assert headers["NTorque-Task-Retry-Limit"] == "5"
    assert headers["Content-Type"] == "application/json; charset=utf-8"
    assert request.ca_certs is None or Path(request.ca_certs).is_file()


def response(code: int, body: bytes = b"", error: Exception | None = None) -> HTTPResponse:
    request = HTTPRequest("http://example.com/")
    return HTTPResponse(request, code, buffer=io.BytesIO(body), error=error)


async def test_webhook_outcome() -> None:
    client = make_client(1)
    try:
        webhook = Webhook(client, max_retries=5, transient_codes=TRANSIENT, ca_certs=None)
        done = webhook.outcome(response(201, b"created"), 100.0, 0.5)
        busy = webhook.outcome(response(503, b"  try later \n" + b"x" * 500), 100.0, 0.5)
        gone = webhook.outcome(response(404), 100.0, 0.5)
        down = webhook.outcome(
            response(599, error=ConnectionRefusedError("Connection refused")), 100.0, 0.5
        )
    finally:
        client.close()
    assert (done.verdict, done.status_code, done.error) == (Verdict.COMPLETED, 201, None)
    assert (done.started, done.duration_s) == (100.0, 0.5)
    assert (busy.verdict, busy.status_code) == (Verdict.RETRY, 503)
    assert busy.error == "HTTP 503 Service Unavailable: try later \n" + "x" * 187
    assert (gone.verdict, gone.status_code, gone.error) == (
        Verdict.FAILED,
        404,
        "HTTP 404 Not Found",
    )
    assert (down.verdict, down.status_code) == (Verdict.RETRY, None)
    assert down.error == "Connection refused"


@pytest.mark.parametrize("lease_left_s", [10.0, 0.5])
def test_webhook_call_never_outlasts_the_lease(lease_left_s: float) -> None:
    """A slow acquire can eat into the lease: the call is cut to what is left of it,
    so no other consumer can take the task while this call still runs."""
    webhook = Webhook(make_client(1), max_retries=36, transient_codes=TRANSIENT, ca_certs=None)
    try:
        request = webhook.request(stored_task(due=time.time() + lease_left_s))
    finally:
        webhook.client.close()
    assert request.request_timeout is not None and request.connect_timeout is not None
    assert lease_left_s - 0.5 < request.request_timeout <= lease_left_s
    assert request.connect_timeout == request.request_timeout


def test_webhook_call_with_its_lease_spent_still_happens_and_fails_fast() -> None:
    webhook = Webhook(make_client(1), max_retries=36, transient_codes=TRANSIENT, ca_certs=None)
    try:
        request = webhook.request(stored_task(due=time.time() - 5))
    finally:
        webhook.client.close()
    assert request.request_timeout == MIN_CALL_S
