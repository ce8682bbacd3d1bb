"""The target policy (SSRF guard): which addresses a web hook may reach.

Pure policy cases first; then real calls through the curl client to real
servers on 127.0.0.1 (a stub resolver plays DNS, so names can point anywhere
without touching the network); then the whole thing through a node in the
test's own event loop (and the command line's set-targets on its database).
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import socket
import time
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode
from uuid import uuid4

import pytest
import pytest_asyncio
import tornado.web
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets

from ntorque import __main__ as cli
from ntorque.errors import InvalidRequest
from ntorque.intake import new_task
from ntorque.targets import Policy, Rules, TargetRefused, Targets, parse_address
from ntorque.tasks import Status, Task, Verdict
from ntorque.webhook import Webhook, make_client
from tests.conftest import Backend, live_for
from tests.hookserver import HookServer, TLSFiles
from tests.inprocess import LiveNode

DEFAULT = Policy()
NO_PRIVATE = Policy(allow_private=False)


def policy(allow: tuple[str, ...] = (), deny: tuple[str, ...] = (), private: bool = True) -> Policy:
    return Policy(private, (Rules.parse(allow, deny),))


def refusal(check: Policy, url: str) -> str:
    with pytest.raises(TargetRefused) as caught:
        check.check_url(url)
    return caught.value.message


# -- the policy ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://169.254.169.254/latest/meta-data/", "169.254.169.254 is link-local"),
        ("http://169.254.170.2/", "169.254.170.2 is link-local"),
        ("http://100.100.100.200/", "100.100.100.200 is a cloud metadata address"),
        ("http://[fd00:ec2::254]/", "fd00:ec2::254 is a cloud metadata address"),
        ("http://[fe80::1]:8080/", "fe80::1 is link-local"),
        ("http://0.0.0.0:9/", "0.0.0.0 is in 0.0.0.0/8 ('this network')"),
        ("http://0.1.2.3/", "0.1.2.3 is in 0.0.0.0/8 ('this network')"),
        ("http://224.0.0.1/", "224.0.0.1 is multicast"),
        ("http://[ff02::1]/", "ff02::1 is multicast"),
        ("http://255.255.255.255/", "255.255.255.255 is reserved"),
        ("http://[::]/", ":: is unspecified"),
        # the same addresses in the forms a resolver (and curl) also accepts
        ("http://2852039166/", "169.254.169.254 is link-local"),
        ("http://0xa9fea9fe/", "169.254.169.254 is link-local"),
        ("http://0251.0376.0251.0376/", "169.254.169.254 is link-local"),
        ("http://0xa9.0xfe.0xa9.0xfe/", "169.254.169.254 is link-local"),
        ("http://169.254.43518/", "169.254.169.254 is link-local"),
        ("http://169.254.169.254./", "169.254.169.254 is link-local"),
        ("http://[::ffff:169.254.169.254]/", "::ffff:a9fe:a9fe is link-local"),
        ("http://[::ffff:a9fe:a9fe]/", "::ffff:a9fe:a9fe is link-local"),
        ("http://[64:ff9b::a9fe:a9fe]/", "64:ff9b::a9fe:a9fe is link-local"),
        ("http://0/", "0.0.0.0 is in 0.0.0.0/8 ('this network')"),
    ],
)
def test_always_refused_addresses(url: str, why: str) -> None:
    assert refusal(DEFAULT, url) == f"target refused: {why}"
    assert refusal(NO_PRIVATE, url) == f"target refused: {why}"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:5000/hooks",
        "http://127.1.2.3/",
        "http://2130706433/",  # 127.0.0.1
        "http://10.1.2.3/",
        "http://172.16.0.1/",
        "http://172.31.255.255/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://[::1]:8080/",
        "http://[fd12:3456::1]/",
        "http://[::ffff:127.0.0.1]/",
    ],
)
def test_private_addresses_are_allowed_by_default_and_can_be_turned_off(url: str) -> None:
    DEFAULT.check_url(url)
    assert "private targets are not allowed" in refusal(NO_PRIVATE, url)


@pytest.mark.parametrize(
    "url",
    [
        "http://93.184.215.14/",
        "https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/",
        "http://8.8.8.8/",
    ],
)
def test_public_addresses_are_allowed(url: str) -> None:
    DEFAULT.check_url(url)
    NO_PRIVATE.check_url(url)


def test_names_are_not_resolved_at_enqueue() -> None:
    """localhost and metadata.google.internal are only names until call time."""
    NO_PRIVATE.check_url("http://localhost:8080/")
    DEFAULT.check_url("http://metadata.google.internal/computeMetadata/v1/")


@pytest.mark.parametrize("scheme", ["ftp", "file", "gopher", "dict", "ldap"])
def test_only_http_and_https(scheme: str) -> None:
    with pytest.raises(InvalidRequest, match=r"^url must be an absolute http or https url$"):
        DEFAULT.check_url(f"{scheme}://example.com/x")


def test_deny_list_of_networks_and_host_patterns() -> None:
    rules = policy(deny=("203.0.113.0/24", "*.internal.example.com", "db.example.com"))
    for url in (
        "http://203.0.113.9/",
        "http://hooks.internal.example.com/",
        "http://a.b.internal.example.com./",
        "http://DB.Example.COM/",
        "http://[::ffff:203.0.113.9]/",  # an IPv4-mapped address is the IPv4 address
    ):
        assert "on the deny list" in refusal(rules, url), url
    rules.check_url("http://internal.example.com/")  # *.x matches below x, not x itself
    rules.check_url("http://example.com/")
    rules.check_url("http://203.0.114.1/")


def test_deny_wins_over_allow() -> None:
    rules = policy(allow=("10.0.0.0/8",), deny=("10.0.0.5",))
    rules.check_url("http://10.0.0.4/")
    assert "on the deny list" in refusal(rules, "http://10.0.0.5/")


def test_an_allow_list_lets_through_only_what_it_lists() -> None:
    rules = policy(allow=("*.hooks.example.com", "198.51.100.0/24"))
    rules.check_url("http://a.hooks.example.com/")
    rules.check_url("http://198.51.100.7/")
    assert "not on the allow list" in refusal(rules, "http://8.8.8.8/")
    assert "not on the allow list" in refusal(rules, "http://127.0.0.1/")
    # A name the patterns miss might still resolve into the CIDR: decided at call time.
    rules.check_url("http://other.example.com/")
    names_only = policy(allow=("*.hooks.example.com",))
    assert "not on the allow list" in refusal(names_only, "http://other.example.com/")


def test_only_an_allow_cidr_inside_an_always_refused_range_reopens_it() -> None:
    assert "link-local" in refusal(policy(allow=("0.0.0.0/0",)), "http://169.254.169.254/")
    assert "link-local" in refusal(policy(allow=("169.0.0.0/8",)), "http://169.254.169.254/")
    policy(allow=("169.254.10.0/24",)).check_url("http://169.254.10.5/")
    assert "link-local" in refusal(policy(allow=("*.example.com",)), "http://169.254.169.254/")


def test_an_allow_cidr_reopens_private_addresses() -> None:
    reopened = policy(allow=("10.1.0.0/16", "*.example.com"), private=False)
    reopened.check_url("http://10.1.2.3/")
    assert "private targets are not allowed" in refusal(reopened, "http://10.2.0.1/")


def test_the_application_level_narrows_the_global_one() -> None:
    both = policy(deny=("8.8.8.8",)).with_rules(Rules.parse(allow=("8.8.0.0/16", "9.9.9.9")))
    both.check_url("http://8.8.4.4/")
    assert "deny list" in refusal(both, "http://8.8.8.8/")  # the global deny still holds
    assert "allow list" in refusal(both, "http://1.1.1.1/")


def test_decisions_are_remembered_per_policy_only() -> None:
    """Each policy remembers its own (pure) decisions: never another's."""
    DEFAULT.check_url("http://8.8.8.8/")
    narrowed = DEFAULT.with_rules(Rules.parse(deny=("8.8.8.8",)))
    assert "deny list" in refusal(narrowed, "http://8.8.8.8/")
    assert "deny list" in refusal(narrowed, "http://8.8.8.8/")
    DEFAULT.check_url("http://8.8.8.8/")


@pytest.mark.parametrize("entry", ["10.0.0.0/33", "hooks/bad", "*.*.example.com", "a..b", "*x.com"])
def test_bad_entries_are_refused(entry: str) -> None:
    with pytest.raises(ValueError, match="neither a CIDR nor a host pattern"):
        Rules.parse(allow=(entry,))


def test_literal_forms() -> None:
    assert parse_address("2852039166") == ipaddress.ip_address("169.254.169.254")
    assert parse_address("127.1") == ipaddress.ip_address("127.0.0.1")
    assert parse_address("example.com") is None
    assert parse_address("1e100.net") is None


# -- at enqueue: a 400 ---------------------------------------------------------------


def enqueue(url: str, check: Policy | None) -> None:
    new_task(
        app_id=None,
        query={"url": url},
        headers={},
        body=b"",
        max_timeout_s=7200,
        policy=check or Policy(),
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://%31%32%37.0.0.1/",  # curl would decode it: refused, not left to chance
        "http://ex%61mple.com/",
        "http://exämple.com/",  # IDN names: give them in punycode
        "http://[::1]junk/",
        "http://exa_mple.com:80@/",
    ],
)
def test_hosts_curl_could_read_differently_are_refused(url: str) -> None:
    with pytest.raises(InvalidRequest, match="url"):
        enqueue(url, None)


def test_a_refused_target_is_an_invalid_request_at_enqueue() -> None:
    with pytest.raises(InvalidRequest, match=r"target refused: 169\.254\.169\.254 is link-local"):
        enqueue("http://169.254.169.254/", DEFAULT)
    enqueue("http://xn--exmple-cua.com/", DEFAULT)
    enqueue("http://user:pw@127.0.0.1:80/", DEFAULT)


# -- the per-application cache ---------------------------------------------------------


async def test_application_policies_are_cached() -> None:
    loads: list[int] = []
    stored: dict[int, Any] = {1: {"deny": ["8.8.8.8"]}, 2: None, 3: {"allow": ["10.0.0.0/99"]}}

    async def load(app_id: int) -> dict[str, Any] | None:
        loads.append(app_id)
        result: dict[str, Any] | None = stored[app_id]
        return result

    now = [0.0]
    targets = Targets(DEFAULT, load, cache_s=5, clock=lambda: now[0])
    first = await targets.for_app(1)
    assert "deny list" in refusal(first, "http://8.8.8.8/")
    assert await targets.for_app(1) is first
    assert await targets.for_app(None) is DEFAULT
    assert await targets.for_app(2) is DEFAULT
    now[0] = 6.0
    await targets.for_app(1)
    assert loads == [1, 2, 1]
    with pytest.raises(TargetRefused, match="target policy is not valid"):
        await targets.for_app(3)  # fails closed


# -- real calls --------------------------------------------------------------------------


def task_for(url: str, app_id: int | None = None, method: str = "POST") -> Task:
    now = time.time()
    return Task(
        id=7,
        app_id=app_id,
        url=url,
        method=method,
        timeout_s=5,
        body=b"a=1",
        content_type="application/x-www-form-urlencoded",
        charset="utf-8",
        headers=(("Authorization", "Bearer t"),),
        status=Status.IN_PROGRESS,
        retry_count=1,
        due=now + 7,
        created=now,
        modified=now,
        last_status_code=None,
        last_error=None,
    )


class StubDns:
    """A resolver answering from a table, one answer list per lookup in turn."""

    def __init__(self, answers: dict[str, list[list[str]]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    async def __call__(self, host: str, port: int) -> list[str]:
        self.asked.append(host)
        queue = self.answers[host]
        return queue.pop(0) if len(queue) > 1 else queue[0]


class RecordingSigner:
    def __init__(self) -> None:
        self.signed: list[int] = []

    async def headers(self, task: Task, body: bytes | None = None) -> dict[str, str]:
        self.signed.append(task.id)
        return {"webhook-id": f"msg_{task.id}", "webhook-signature": "v1,test"}


@pytest.fixture
async def webhook_parts() -> AsyncIterator[AsyncHTTPClient]:
    client = make_client(4)
    yield client
    client.close()


def webhook(client: Any, dns: StubDns | None = None, **options: Any) -> Webhook:
    extra: dict[str, Any] = {"resolver": dns} if dns else {}
    return Webhook(client, max_retries=3, transient_codes=(), ca_certs=None, **extra, **options)


class _Redirect(tornado.web.RequestHandler):
    """POST /?to=URL&code=N answers a redirect to any url (the hook server's stay home)."""

    def post(self) -> None:
        self.redirect(self.get_query_argument("to"), status=int(self.get_query_argument("code")))


@pytest.fixture
async def redirector() -> AsyncIterator[str]:
    sockets = bind_sockets(0, "127.0.0.1", family=socket.AF_INET)
    server = HTTPServer(tornado.web.Application([(r"/", _Redirect)]))
    server.add_sockets(sockets)
    yield f"http://127.0.0.1:{sockets[0].getsockname()[1]}/"
    server.stop()
    await server.close_all_connections()


def hook_path() -> str:
    return f"/status/200/{uuid4().hex}"


async def test_a_name_resolving_to_a_refused_address_fails_without_connecting(
    webhook_parts: Any, hooks: HookServer
) -> None:
    dns = StubDns({"metadata.test": [["169.254.169.254"]]})
    outcome = await webhook(webhook_parts, dns).call(task_for("http://metadata.test/latest/"))
    assert outcome.verdict is Verdict.FAILED
    assert outcome.error == "target refused: 169.254.169.254 is link-local"
    assert outcome.status_code is None
    assert dns.asked == ["metadata.test"]


async def test_every_address_of_a_name_is_checked(webhook_parts: Any, hooks: HookServer) -> None:
    path = hook_path()
    port = hooks.base_url.rsplit(":", 1)[1]
    dns = StubDns({"mixed.test": [["127.0.0.1", "fd00:ec2::254"]]})
    outcome = await webhook(webhook_parts, dns).call(task_for(f"http://mixed.test:{port}{path}"))
    assert outcome.error == "target refused: fd00:ec2::254 is a cloud metadata address"
    assert hooks.calls(path) == []


async def test_the_call_is_pinned_to_the_checked_address(
    webhook_parts: Any, hooks: HookServer
) -> None:
    """DNS rebinding: the name answers a good address first, then a bad one.
    ntorque asks once, checks that answer and makes curl connect there; curl
    never resolves the name itself (it could not: .test names do not exist)."""
    path = hook_path()
    port = hooks.base_url.rsplit(":", 1)[1]
    dns = StubDns({"rebind.test": [["127.0.0.1"], ["169.254.169.254"]]})
    outcome = await webhook(webhook_parts, dns).call(task_for(f"http://rebind.test:{port}{path}"))
    assert (outcome.verdict, outcome.status_code) == (Verdict.COMPLETED, 200), outcome
    (call,) = hooks.calls(path)
    assert call.headers["host"] == f"rebind.test:{port}"  # the Host header is the name
    assert dns.asked == ["rebind.test"]
    second = await webhook(webhook_parts, dns).call(task_for(f"http://rebind.test:{port}{path}"))
    assert second.error == "target refused: 169.254.169.254 is link-local"
    assert len(hooks.calls(path)) == 1


async def test_a_pin_of_one_call_does_not_leak_into_the_next(
    webhook_parts: Any, hooks: HookServer
) -> None:
    """curl handles are reused: a later call to a literal address, or a name
    that no longer resolves, must not ride on an earlier call's pin."""
    port = hooks.base_url.rsplit(":", 1)[1]
    hook = webhook(webhook_parts, StubDns({"once.test": [["127.0.0.1"]]}))
    for _ in range(3):
        first = await hook.call(task_for(f"http://once.test:{port}{hook_path()}"))
        assert first.status_code == 200
    assert (await hook.call(task_for(hooks.url(hook_path())))).status_code == 200
    hook.resolver = StubDns({"once.test": [["127.0.0.2"]]})  # nobody listens there
    path = hook_path()
    task = task_for(f"http://once.test:{port}{path}")
    outcome = await hook.call(replace_due(task, 2.0))
    assert outcome.verdict is Verdict.RETRY, outcome
    assert outcome.error is not None and "connect" in outcome.error.lower(), outcome.error
    assert hooks.calls(path) == []


def replace_due(task: Task, lease_s: float) -> Task:
    values = {name: getattr(task, name) for name in task.__dataclass_fields__}
    values["due"] = time.time() + lease_s
    return Task(**values)


async def unknown_name(host: str, port: int) -> list[str]:
    raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")


async def test_a_name_that_does_not_resolve_is_retried(webhook_parts: Any) -> None:
    hook = Webhook(
        webhook_parts, max_retries=3, transient_codes=(), ca_certs=None, resolver=unknown_name
    )
    outcome = await hook.call(task_for("http://no-such-host.invalid/"))
    assert outcome.verdict is Verdict.RETRY
    assert outcome.error is not None and outcome.error.startswith("cannot resolve the host")


async def test_a_redirect_to_a_refused_address_is_refused_at_that_hop(
    webhook_parts: Any, redirector: str
) -> None:
    signer = RecordingSigner()
    url = f"{redirector}?to=http://169.254.169.254/latest/meta-data/&code=302"
    outcome = await webhook(webhook_parts, signer=signer).call(task_for(url))
    assert outcome.verdict is Verdict.FAILED
    assert outcome.error == "target refused: 169.254.169.254 is link-local"
    assert signer.signed == [7]


@pytest.mark.parametrize(
    ("to", "why"),
    [
        ("ftp://127.0.0.1/x", "redirect to an invalid url: url must be an absolute http"),
        ("http://127.0.0.1/a b", "redirect to an invalid url: url must not contain spaces,"),
        ("http://2852039166/", "target refused: 169.254.169.254 is link-local"),
        ("http://[::ffff:169.254.169.254]/", "target refused: ::ffff:a9fe:a9fe is link-local"),
        ("http://%31%32%37.0.0.1/", "redirect to an invalid url: url host must be a plain"),
    ],
)
async def test_redirects_are_checked_like_enqueued_urls(
    webhook_parts: Any, redirector: str, to: str, why: str
) -> None:
    outcome = await webhook(webhook_parts).call(task_for(f"{redirector}?to={quote(to)}&code=307"))
    assert outcome.verdict is Verdict.FAILED
    assert outcome.error is not None and outcome.error.startswith(why), outcome.error


async def test_each_hop_carries_the_signature_and_credentials_stay_home(
    webhook_parts: Any, redirector: str, hooks: HookServer
) -> None:
    """Signed once per attempt; Authorization is not sent on to another origin."""
    same, other = hook_path(), hook_path()
    port = hooks.base_url.rsplit(":", 1)[1]
    dns = StubDns({"localhost": [["127.0.0.1"]]})
    signer = RecordingSigner()
    hook = webhook(webhook_parts, dns, signer=signer)
    chain = f"/redirect/307/redirect/308{same}"
    done = await hook.call(task_for(hooks.url(chain)))
    away = await hook.call(task_for(f"{redirector}?to=http://localhost:{port}{other}&code=307"))
    assert (done.status_code, away.status_code) == (200, 200)
    assert signer.signed == [7, 7]
    found = [hooks.calls(path) for path in (chain, "/redirect/308" + same, same)]
    assert [len(each) for each in found] == [1, 1, 1]
    calls = [each[0] for each in found]
    for call in [*calls, *hooks.calls(other)]:
        assert call.headers["webhook-signature"] == "v1,test"
        assert call.body == b"a=1"
    assert all(call.headers["authorization"] == "Bearer t" for call in calls)
    (moved,) = hooks.calls(other)
    assert "authorization" not in moved.headers


async def test_more_than_ten_redirects_fail(webhook_parts: Any, hooks: HookServer) -> None:
    target = hook_path()
    path = "/redirect/302" * 11 + target
    outcome = await webhook(webhook_parts).call(task_for(hooks.url(path)))
    assert outcome.verdict is Verdict.FAILED
    assert (outcome.status_code, outcome.error) == (302, "more than 10 redirects")
    assert hooks.calls(target) == []
    ten = await webhook(webhook_parts).call(task_for(hooks.url("/redirect/302" * 10 + target)))
    assert ten.status_code == 200


async def test_private_targets_off_refuses_a_name_for_loopback(
    webhook_parts: Any, hooks: HookServer
) -> None:
    path = hook_path()
    port = hooks.base_url.rsplit(":", 1)[1]
    hook = webhook(webhook_parts, targets=Targets(NO_PRIVATE))
    outcome = await hook.call(task_for(f"http://localhost:{port}{path}"))
    assert outcome.verdict is Verdict.FAILED
    assert outcome.error is not None
    assert outcome.error.endswith("is loopback and private targets are not allowed")
    assert hooks.calls(path) == []


async def test_https_keeps_its_name_checks_when_pinned(
    webhook_parts: Any, tls: TLSFiles, tls_hooks: HookServer
) -> None:
    """The certificate names localhost, not the pinned address: still valid.
    A name the certificate does not cover, pinned to the same address, fails."""
    port = tls_hooks.base_url.rsplit(":", 1)[1]
    dns = StubDns({"localhost": [["127.0.0.1"]], "other.test": [["127.0.0.1"]]})
    hook = Webhook(
        webhook_parts, max_retries=3, transient_codes=(), ca_certs=str(tls.ca_pem), resolver=dns
    )
    path = hook_path()
    good = await hook.call(task_for(f"https://localhost:{port}{path}"))
    bad = await hook.call(task_for(f"https://other.test:{port}{hook_path()}"))
    assert good.status_code == 200, good
    assert (bad.verdict, bad.status_code) == (Verdict.RETRY, None)
    assert bad.error is not None and "certificate" in bad.error.lower(), bad.error


# -- through a node ------------------------------------------------------------------------

STRICT: dict[str, Any] = {
    "allow_private_targets": False,
    "target_deny": ("*.blocked.test", "198.51.100.0/24"),
    "auth_cache_s": 0,
    "max_retries": 3,
    "min_due_delay_s": 0.2,
}
in_module_loop = pytest.mark.asyncio(loop_scope="module")


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def strict(module_backend: Backend) -> AsyncIterator[LiveNode]:
    """A node with private targets off and a global deny list."""
    async with live_for(module_backend, **STRICT) as running:
        yield running


async def post(node: LiveNode, url: str, key: str | None = None) -> tuple[int, Any]:
    response = await node.request("POST", "/?" + urlencode({"url": url}), b"a=1", key=key)
    return response.status, response.json


async def set_targets(node: LiveNode, *args: str) -> int:
    """`python -m ntorque set-targets ARGS` on the node's database: its exit status."""
    options = cli.parser().parse_args(["set-targets", *args])
    return await cli.set_targets(options, node.running.store)


@in_module_loop
@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://127.0.0.1:9/x", "127.0.0.1 is loopback and private targets are not allowed"),
        ("http://[::1]:9/x", "::1 is loopback and private targets are not allowed"),
        ("http://10.0.0.1/x", "10.0.0.1 is private and private targets are not allowed"),
        ("http://169.254.169.254/latest", "169.254.169.254 is link-local"),
        ("http://2852039166/", "169.254.169.254 is link-local"),
        ("http://hooks.blocked.test/", "hooks.blocked.test is on the deny list"),
        ("http://198.51.100.7/", "198.51.100.7 is on the deny list"),
    ],
)
async def test_refused_targets_are_a_400_at_enqueue(strict: LiveNode, url: str, error: str) -> None:
    status, body = await post(strict, url)
    assert (status, body) == (
        400,
        {"status": 400, "error": f"target refused: {error}", "field": "url"},
    )


@in_module_loop
async def test_a_name_for_loopback_fails_at_call_time(strict: LiveNode, hooks: HookServer) -> None:
    path = hook_path()
    port = hooks.base_url.rsplit(":", 1)[1]
    task = await strict.enqueue(f"http://localhost:{port}{path}", b"a=1")
    done = await strict.wait_for(task["id"])
    assert done["status"] == "failed"
    assert done["retry_count"] == 1  # refused is final: not retried
    assert done["last_error"].startswith("target refused: ")
    assert done["last_error"].endswith("is loopback and private targets are not allowed")
    assert hooks.calls(path) == []
    assert "Traceback" not in strict.logged.text


@in_module_loop
async def test_an_application_gets_its_own_lists(
    strict: LiveNode, hooks: HookServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """set-targets stores an application's lists; they add to the global ones,
    and an allow CIDR reopens private addresses for that application only."""
    name, key = await strict.create_app(f"targets-{uuid4().hex[:8]}")
    path = hook_path()
    assert (await post(strict, hooks.url(path), key))[0] == 400  # private targets are off
    capsys.readouterr()
    assert await set_targets(
        strict, "--name", name, "--allow", "127.0.0.0/8,*.hooks.test",
        "--deny", "bad.hooks.test", "--allow", "192.168.7.0/24",
    ) == 0  # fmt: skip
    assert json.loads(capsys.readouterr().out.split(": ", 1)[1]) == {
        "allow": ["127.0.0.0/8", "*.hooks.test", "192.168.7.0/24"],
        "deny": ["bad.hooks.test"],
    }
    status, task = await post(strict, hooks.url(path), key)
    assert status == 201
    deadline = time.monotonic() + 30
    while (await strict.task(task["id"], key))["status"] != "completed":
        assert time.monotonic() < deadline, await strict.task(task["id"], key)
        await asyncio.sleep(0.02)
    assert len(hooks.calls(path)) == 1
    refused = {
        "http://bad.hooks.test/": "bad.hooks.test is on the deny list",
        "http://x.blocked.test/": "x.blocked.test is on the deny list",  # the global list holds
        "http://10.0.0.1/": "10.0.0.1 is private and private targets are not allowed",
        "http://192.0.2.1/": "192.0.2.1 is not on the allow list",
    }
    for url, error in refused.items():
        assert await post(strict, url, key) == (
            400,
            {"status": 400, "error": f"target refused: {error}", "field": "url"},
        )
    assert (await post(strict, hooks.url(hook_path())))[0] == 400  # another application: unchanged
    assert await set_targets(strict, "--name", name) == 0  # no lists: cleared
    assert (await post(strict, hooks.url(hook_path()), key))[0] == 400


@in_module_loop
async def test_set_targets_refuses_bad_entries_and_unknown_applications(
    strict: LiveNode, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()
    assert await set_targets(strict, "--name", "default", "--deny", "10.0.0.0/33") == 1
    assert "'10.0.0.0/33' is neither a CIDR nor a host pattern" in capsys.readouterr().err
    assert await set_targets(strict, "--name", "nobody", "--deny", "x.test") == 1
    assert "no application named 'nobody'" in capsys.readouterr().err
