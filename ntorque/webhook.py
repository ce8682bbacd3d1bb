"""Calling a task's web hook, and what its answer means.

Remote failures are data: `call()` returns an Outcome for every HTTP or
network result and never raises for them.
"""

from __future__ import annotations

import logging
import os
import ssl
import time
from collections.abc import Collection

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

from .tasks import Outcome, Task, Verdict

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10
ERROR_SNIPPET_BYTES = 200
MIN_CALL_S = 0.001  # a lease already spent still gets a (failing) call, so attempts match calls


def classify(code: int, transient_codes: Collection[int]) -> Verdict:
    """200/201 done; transient codes and 5xx retried; anything else failed."""
    if code in (200, 201):
        return Verdict.COMPLETED
    if code in transient_codes or code >= 500:
        return Verdict.RETRY
    return Verdict.FAILED


def make_client(max_clients: int) -> AsyncHTTPClient:
    """The curl client (keep-alive, faster) where pycurl is installed."""
    try:
        from tornado.curl_httpclient import CurlAsyncHTTPClient
    except ImportError:  # pragma: no cover - pycurl is a dependency
        log.warning("pycurl is not installed: using tornado's simple HTTP client")
        return AsyncHTTPClient(force_instance=True, max_clients=max_clients)
    return CurlAsyncHTTPClient(force_instance=True, max_clients=max_clients)


def default_ca_certs() -> str | None:
    """The system's CA bundle: pycurl wheels may look for theirs elsewhere."""
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.exists(candidate):
            return candidate
    return None


class Webhook:
    def __init__(
        self,
        client: AsyncHTTPClient,
        *,
        max_retries: int,
        transient_codes: Collection[int],
        ca_certs: str | None,
    ) -> None:
        self.client = client
        self.max_retries = max_retries
        self.transient_codes = frozenset(transient_codes)
        self.ca_certs = ca_certs or default_ca_certs()

    def request(self, task: Task) -> HTTPRequest:
        """The outgoing call: stored method, body bytes, headers.

        The task's timeout bounds it all, and so does its lease (task.due):
        the call always ends before another consumer may take the task.
        """
        budget_s = max(min(float(task.timeout_s), task.due - time.time()), MIN_CALL_S)
        headers = dict(task.headers)
        headers.update(
            {
                "Content-Type": f"{task.content_type}; charset={task.charset}",
                "NTorque-Task-Id": str(task.id),
                "NTorque-Task-Retry-Count": str(task.retry_count - 1),
                "NTorque-Task-Retry-Limit": str(self.max_retries),
            }
        )
        return HTTPRequest(
            task.url,
            method=task.method,
            headers=headers,
            body=task.body,
            connect_timeout=budget_s,
            request_timeout=budget_s,
            follow_redirects=True,
            max_redirects=MAX_REDIRECTS,
            validate_cert=True,
            ca_certs=self.ca_certs,
            allow_nonstandard_methods=True,
            decompress_response=False,
        )

    async def call(self, task: Task) -> Outcome:
        started = time.time()
        clock = time.monotonic()
        try:
            response = await self.client.fetch(self.request(task), raise_error=False)
        except HTTPClientError as error:  # a network error (599): raised despite raise_error=False
            return Outcome(
                Verdict.RETRY, started, time.monotonic() - clock, None, _network_error(error)
            )
        except Exception as error:  # a request curl refuses: retried, up to max_retries
            log.warning("task %s could not be called: %s", task.id, error)
            return Outcome(Verdict.RETRY, started, time.monotonic() - clock, None, str(error))
        return self.outcome(response, started, time.monotonic() - clock)

    def outcome(self, response: HTTPResponse, started: float, duration_s: float) -> Outcome:
        if response.code == 599 or (response.error and not response.code):
            return Outcome(Verdict.RETRY, started, duration_s, None, _network_error(response.error))
        verdict = classify(response.code, self.transient_codes)
        error = None if verdict is Verdict.COMPLETED else _http_error(response)
        return Outcome(verdict, started, duration_s, response.code, error)


def _network_error(error: BaseException | None) -> str:
    return str(error or "network error").removeprefix("HTTP 599: ")


def _http_error(response: HTTPResponse) -> str:
    snippet = (response.body or b"")[:ERROR_SNIPPET_BYTES].decode("utf-8", "replace").strip()
    text = f"HTTP {response.code} {response.reason}"
    return f"{text}: {snippet}" if snippet else text
