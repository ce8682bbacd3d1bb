"""Calling a task's web hook, and what its answer means.

Remote failures are data: `call()` returns an Outcome for every HTTP or
network result and never raises for them. Every hop of a call (the first
request and each redirect) goes only to addresses the target policy allowed:
the host is resolved here, each address checked, and curl pinned to them.
"""

from __future__ import annotations

import email.utils
import hashlib
import logging
import os
import ssl
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from datetime import UTC
from typing import Any, Protocol
from urllib.parse import urldefrag, urljoin, urlsplit

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse

from .errors import InvalidRequest
from .targets import Policy, Resolver, TargetRefused, Targets, system_resolver
from .tasks import Outcome, Task, Verdict, iso

log = logging.getLogger(__name__)

MAX_REDIRECTS = 10
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
# Never sent on to another origin after a redirect (as browsers and curl do).
CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "proxy-authorization"})
ERROR_SNIPPET_BYTES = 200
MAX_RETRY_AFTER_S = 10**9  # a delay-seconds beyond this is no number a float needs
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


class Signer(Protocol):
    """Signs a call (Standard Webhooks): headers for a request carrying body
    (the task's own body when None)."""

    async def headers(self, task: Task, body: bytes | None = None) -> dict[str, str]: ...


@dataclass(frozen=True)
class Hop:
    """One request of a call: the first one, or one after a redirect."""

    url: str
    method: str
    body: bytes | None
    headers: dict[str, str]


def next_hop(hop: Hop, response: HTTPResponse) -> Hop | None:
    """The request a redirect asks for, or None when the answer is not a redirect.

    After a POST, 301 and 302 become a GET without body; 303 does for every
    method; 307 and 308 keep method and body (as browsers and curl do).
    """
    location = response.headers.get("Location", "").strip() if response.headers else ""
    if response.code not in REDIRECT_CODES or not location:
        return None
    url = urldefrag(urljoin(hop.url, location)).url
    headers = dict(hop.headers)
    if _origin(url) != _origin(hop.url):
        headers = {k: v for k, v in headers.items() if k.lower() not in CREDENTIAL_HEADERS}
    if response.code == 303 or (response.code in (301, 302) and hop.method == "POST"):
        headers = {k: v for k, v in headers.items() if k.lower() != "content-type"}
        return Hop(url, "GET", None, headers)
    return replace(hop, url=url, headers=headers)


def content_type_header(task: Task) -> str:
    """The stored type, with the charset when one is known (never a guessed one)."""
    return f"{task.content_type}; charset={task.charset}" if task.charset else task.content_type


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    return parts.scheme.lower(), (parts.hostname or ""), parts.port


def _pin(host: str, port: int, addresses: list[str]) -> Callable[[Any], None]:
    """Make curl connect only to the checked addresses (Host and TLS name unchanged).

    CONNECT_TO sends the connection to the address (or, for several, to a
    name standing for exactly that set, resolved by RESOLVE); curl reuses a
    kept-alive connection only for the same CONNECT_TO target, so a call
    never rides on a connection opened for other addresses. Every request
    sets both lists (empty for a literal address), so nothing lingers on a
    reused curl handle; proxies are off, since they would connect elsewhere.
    """
    connect: list[str] = []
    resolve: list[str] = []
    if addresses:
        target = _bracketed(addresses[0])
        if len(addresses) > 1:
            digest = hashlib.sha256(",".join(addresses).encode()).hexdigest()[:20]
            target = f"pin-{digest}.ntorque.invalid"
            resolve = [f"{target}:{port}:{','.join(map(_bracketed, addresses))}"]
        connect = [f"{name}:{port}:{target}:{port}" for name in sorted({host, host.rstrip(".")})]

    def prepare(curl: Any) -> None:
        import pycurl

        curl.setopt(pycurl.RESOLVE, resolve)
        curl.setopt(pycurl.CONNECT_TO, connect)
        curl.setopt(pycurl.PROXY, "")

    return prepare


def _bracketed(address: str) -> str:
    return f"[{address}]" if ":" in address else address


class Webhook:
    def __init__(
        self,
        client: AsyncHTTPClient,
        *,
        max_retries: int,
        transient_codes: Collection[int],
        ca_certs: str | None,
        targets: Targets | None = None,
        resolver: Resolver = system_resolver,
        signer: Signer | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.max_retries = max_retries
        self.transient_codes = frozenset(transient_codes)
        self.ca_certs = ca_certs or default_ca_certs()
        self.targets = targets or Targets(Policy())
        self.resolver = resolver
        self.signer = signer
        self.clock = clock  # the wall clock that leases (task.due) are read by
        self._pins_curl = type(client).__name__ == "CurlAsyncHTTPClient"

    def first_hop(self, task: Task, extra: dict[str, str] | None = None) -> Hop:
        """The stored method, body bytes and headers, plus ntorque's own."""
        headers = dict(task.headers)
        headers.update(extra or {})
        headers.update(
            {
                "Content-Type": content_type_header(task),
                "NTorque-Task-Id": str(task.id),
                "NTorque-Task-Retry-Count": str(task.retry_count - 1),
                "NTorque-Task-Retry-Limit": str(task.attempt_limit(self.max_retries)),
            }
        )
        if task.schedule_id is not None and task.schedule_tick is not None:
            headers["NTorque-Schedule-Id"] = str(task.schedule_id)
            headers["NTorque-Schedule-Tick"] = iso(task.schedule_tick)
        return Hop(task.url, task.method, task.body, headers)

    def request(
        self,
        task: Task,
        hop: Hop | None = None,
        budget_s: float | None = None,
        prepare: Callable[[Any], None] | None = None,
    ) -> HTTPRequest:
        """One outgoing request (the first hop unless given); redirects are ours to follow.

        The task's timeout bounds the whole call, and so does its lease
        (task.due): the call always ends before another consumer may take the task.
        """
        hop = hop or self.first_hop(task)
        if budget_s is None:
            budget_s = self.budget_s(task)
        return HTTPRequest(
            hop.url,
            method=hop.method,
            headers=hop.headers,
            body=hop.body,
            connect_timeout=budget_s,
            request_timeout=budget_s,
            follow_redirects=False,
            validate_cert=True,
            ca_certs=self.ca_certs,
            allow_nonstandard_methods=True,
            decompress_response=False,
            prepare_curl_callback=prepare,
        )

    async def call(self, task: Task) -> Outcome:
        started = self.clock()
        clock = time.monotonic()

        def done(verdict: Verdict, code: int | None, error: str | None) -> Outcome:
            return Outcome(verdict, started, time.monotonic() - clock, code, error)

        try:
            response = await self._follow(task, clock + self.budget_s(task))
        except TargetRefused as error:  # the policy will not change its mind: not retried
            log.warning("task %s not called: %s", task.id, error.message)
            return done(Verdict.FAILED, None, error.message)
        except InvalidRequest as error:  # a redirect to a url we would not enqueue
            return done(Verdict.FAILED, None, error.message)
        except HTTPClientError as error:  # a network error (599): raised despite raise_error=False
            return done(Verdict.RETRY, None, _network_error(error))
        except OSError as error:  # the name did not resolve: DNS may come back
            return done(Verdict.RETRY, None, f"cannot resolve the host: {error}")
        except Exception as error:  # a request curl refuses: retried, up to max_retries
            log.warning("task %s could not be called: %s", task.id, error)
            return done(Verdict.RETRY, None, str(error))
        if response.code in REDIRECT_CODES and response.headers.get("Location"):
            return done(Verdict.FAILED, response.code, f"more than {MAX_REDIRECTS} redirects")
        return self.outcome(response, started, time.monotonic() - clock)

    async def _follow(self, task: Task, deadline: float) -> HTTPResponse:
        """Call every hop, each checked and pinned, up to MAX_REDIRECTS redirects."""
        policy = await self.targets.for_app(task.app_id)
        extra = await self.signer.headers(task) if self.signer else {}
        hop: Hop | None = self.first_hop(task, extra)
        response: HTTPResponse | None = None
        for redirects in range(MAX_REDIRECTS + 1):
            if hop is None:
                break
            prepare = await self._checked(hop.url, policy, redirected=redirects > 0)
            hop = await self._signed(task, hop)
            budget_s = max(deadline - time.monotonic(), MIN_CALL_S)
            request = self.request(task, hop, budget_s, prepare)
            response = await self.client.fetch(request, raise_error=False)
            hop = next_hop(hop, response)
        assert response is not None
        return response

    async def _signed(self, task: Task, hop: Hop) -> Hop:
        """A redirect that dropped the body (303; 301/302 after a POST) is
        signed again over what it sends, so the receiver can verify it too."""
        if self.signer is None or hop.body == task.body:
            return hop
        signature = await self.signer.headers(task, hop.body or b"")
        return replace(hop, headers={**hop.headers, **signature})

    async def _checked(
        self, url: str, policy: Policy, *, redirected: bool
    ) -> Callable[[Any], None] | None:
        """Check url's target; the curl callback that pins the call to what was checked."""
        try:
            url = policy.check_url(url)
        except TargetRefused:
            raise
        except InvalidRequest as error:
            if not redirected:
                raise
            raise InvalidRequest(f"redirect to an invalid url: {error.message}") from None
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
        addresses = await policy.resolve(host, port, self.resolver)
        if not self._pins_curl:  # pragma: no cover - pycurl is a dependency
            return None
        return _pin(host, port, addresses if addresses != [host] else [])

    def budget_s(self, task: Task) -> float:
        """Seconds the whole call may take: its timeout, cut to what is left of its lease."""
        return max(min(float(task.timeout_s), task.due - self.clock()), MIN_CALL_S)

    def outcome(self, response: HTTPResponse, started: float, duration_s: float) -> Outcome:
        if response.code == 599 or (response.error and not response.code):
            return Outcome(Verdict.RETRY, started, duration_s, None, _network_error(response.error))
        verdict = classify(response.code, self.transient_codes)
        error = None if verdict is Verdict.COMPLETED else _http_error(response)
        wait = retry_after_s(response.headers.get("Retry-After"), self.clock())
        asked = wait if verdict is Verdict.RETRY else None
        return Outcome(verdict, started, duration_s, response.code, error, asked)


def retry_after_s(header: str | None, now: float) -> float | None:
    """Seconds a Retry-After header asks to wait (delay-seconds or an HTTP
    date), at least 0; None when absent or unreadable."""
    if not header:
        return None
    text = header.strip()
    if text.isdigit():
        return float(min(int(text), MAX_RETRY_AFTER_S))
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # HTTP dates are GMT
        when = when.replace(tzinfo=UTC)
    return max(when.timestamp() - now, 0.0)


def _network_error(error: BaseException | None) -> str:
    return str(error or "network error").removeprefix("HTTP 599: ")


def _http_error(response: HTTPResponse) -> str:
    snippet = (response.body or b"")[:ERROR_SNIPPET_BYTES].decode("utf-8", "replace").strip()
    text = f"HTTP {response.code} {response.reason}"
    return f"{text}: {snippet}" if snippet else text
