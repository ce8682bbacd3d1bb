"""Which urls and addresses a web hook may reach (the guard against
server-side request forgery). `Policy.check_url` is the one url check.

A target is checked twice: at enqueue, as far as the url alone tells (its
form, scheme, literal addresses, host names on the lists); and at call time,
for every redirect hop, the url again and every address its host name
resolves to. The call is then pinned to the checked addresses, so a second
DNS answer cannot move it.

The rules, in order (see the README's "Target policy"):
1. an entry of a deny list (global, then the application's) refuses;
2. always-refused ranges (link-local, cloud metadata, 0.0.0.0/8, multicast,
   reserved) are refused, unless an allow list has a CIDR entry that lies
   inside that range (so 0.0.0.0/0 never reopens 169.254.169.254);
3. private and loopback ranges are refused when private targets are off,
   unless an allow list has a CIDR entry covering the address;
4. a level (global or the application's) that has an allow list lets through
   only what it lists. Host patterns match names only: they never reopen an
   address refused by rules 2 and 3.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import urlsplit

from .cache import TtlCache
from .errors import InvalidRequest

log = logging.getLogger(__name__)

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_ENTRIES = 1000
MAX_DECISIONS = 10_000
_PATTERN = re.compile(
    r"^(\*|(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*)$"
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
MAX_URL_LENGTH = 2048
# A host as curl and the policy must read it alike: ASCII letters, digits,
# dots, hyphens (and underscores), or a bracketed IPv6 address. Percent-encoded
# or non-ASCII hosts are refused (give IDN names in punycode).
HOST_NAME = re.compile(r"^[A-Za-z0-9._-]+$")
IPV6_LITERAL = re.compile(r"^\[[0-9A-Fa-f:.]+\]$")
# Backslashes too: browsers read them as "/", curl does not (a host confusion).
URL_FORBIDDEN = re.compile(r"[\x00-\x20\x7f\\]")


def _ranges(*pairs: tuple[str, str]) -> tuple[tuple[Network, str], ...]:
    return tuple((ipaddress.ip_network(cidr), kind) for cidr, kind in pairs)


ALWAYS_REFUSED = _ranges(
    ("169.254.0.0/16", "link-local"),  # includes the cloud metadata address 169.254.169.254
    ("100.100.100.200/32", "a cloud metadata address"),
    ("0.0.0.0/8", "in 0.0.0.0/8 ('this network')"),
    ("224.0.0.0/4", "multicast"),
    ("240.0.0.0/4", "reserved"),  # includes the broadcast address
    ("fd00:ec2::254/128", "a cloud metadata address"),
    ("fe80::/10", "link-local"),
    ("ff00::/8", "multicast"),
    ("::/128", "unspecified"),
)
PRIVATE = _ranges(
    ("127.0.0.0/8", "loopback"),
    ("10.0.0.0/8", "private"),
    ("172.16.0.0/12", "private"),
    ("192.168.0.0/16", "private"),
    ("100.64.0.0/10", "private (shared address space)"),
    ("::1/128", "loopback"),
    ("fc00::/7", "private (unique local)"),
)


class TargetRefused(InvalidRequest):
    """The web hook's target is not allowed."""


def refused(why: str) -> TargetRefused:
    return TargetRefused(f"target refused: {why}")


@functools.lru_cache(maxsize=4096)
def parse_address(host: str) -> Address | None:
    """The address a literal host stands for, in every form a resolver accepts
    (2852039166, 0xa9.0xfe.0xa9.0xfe, 0251.0376.0251.0376 ...); None for a name."""
    host = host.rstrip(".")  # resolvers ignore a final dot
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:  # inet_aton reads the legacy forms the way getaddrinfo (and curl) would
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def effective(address: Address) -> Address:
    """The IPv4 address behind an IPv4-mapped (::ffff:a.b.c.d) or NAT64 address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


def normal_host(host: str) -> str:
    """A host name as the lists compare it: lower case, no final dot, IDNA."""
    host = host.lower().rstrip(".")
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def _kind(address: Address, table: tuple[tuple[Network, str], ...]) -> tuple[Network, str] | None:
    return next(((net, kind) for net, kind in table if address in net), None)


@dataclass(frozen=True)
class Rules:
    """One level's allow and deny lists: CIDRs (or addresses) and host patterns."""

    allow_networks: tuple[Network, ...] = ()
    allow_hosts: tuple[str, ...] = ()
    deny_networks: tuple[Network, ...] = ()
    deny_hosts: tuple[str, ...] = ()

    @classmethod
    def parse(cls, allow: Iterable[str] = (), deny: Iterable[str] = ()) -> Rules:
        """Raise ValueError naming the first entry that is neither a CIDR nor a host pattern."""
        allow_networks, allow_hosts = _entries(allow)
        deny_networks, deny_hosts = _entries(deny)
        return cls(allow_networks, allow_hosts, deny_networks, deny_hosts)

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> Rules:
        """An application's stored policy: {"allow": [...], "deny": [...]}."""
        data = data or {}
        return cls.parse(data.get("allow") or (), data.get("deny") or ())

    @property
    def has_allow(self) -> bool:
        return bool(self.allow_networks or self.allow_hosts)

    def denies(self, host: str, address: Address | None) -> bool:
        return _host_in(host, self.deny_hosts) or _address_in(address, self.deny_networks)

    def allows(self, host: str, address: Address | None) -> bool:
        return _host_in(host, self.allow_hosts) or _address_in(address, self.allow_networks)


def _entries(items: Iterable[str]) -> tuple[tuple[Network, ...], tuple[str, ...]]:
    networks: list[Network] = []
    hosts: list[str] = []
    for item in items:
        text = str(item).strip()
        if not text:
            continue
        if len(networks) + len(hosts) >= MAX_ENTRIES:
            raise ValueError(f"a list has more than {MAX_ENTRIES} entries")
        try:
            networks.append(ipaddress.ip_network(text, strict=False))
            continue
        except ValueError:
            pass
        pattern = normal_host(text)
        if not _PATTERN.match(pattern):
            raise ValueError(f"{text[:100]!r} is neither a CIDR nor a host pattern")
        hosts.append(pattern)
    return tuple(networks), tuple(hosts)


def _host_in(host: str, patterns: tuple[str, ...]) -> bool:
    for pattern in patterns:
        if pattern == "*" or pattern == host:
            return True
        if pattern.startswith("*.") and host.endswith(pattern[1:]):
            return True
    return False


def _address_in(address: Address | None, networks: tuple[Network, ...]) -> bool:
    if address is None:
        return False
    candidates = {address, effective(address)}
    return any(candidate in net for net in networks for candidate in candidates)


def check_form(url: str) -> str:
    """An absolute http or https url with a plain host, or InvalidRequest."""
    url = url.strip()
    if not url:
        raise InvalidRequest("url is required: POST /?url=<absolute http or https url>")
    if len(url) > MAX_URL_LENGTH:
        raise InvalidRequest(f"url is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as error:
        raise InvalidRequest(f"url is not valid: {error}") from error
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise InvalidRequest("url must be an absolute http or https url")
    if URL_FORBIDDEN.search(url):
        raise InvalidRequest("url must not contain spaces, backslashes or control characters")
    if not _plain_host(parts.netloc):
        raise InvalidRequest("url host must be a plain name (ASCII, punycode) or an IP address")
    return url


def _plain_host(netloc: str) -> bool:
    """Whether the host, as written, is one curl and the policy read alike."""
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        address, _, rest = host.partition("]")
        return bool(IPV6_LITERAL.match(address + "]")) and rest[:1] in ("", ":")
    return bool(HOST_NAME.match(host.partition(":")[0]))


@dataclass(frozen=True)
class Policy:
    """The rules a task's calls obey: the global level, then its application's."""

    allow_private: bool = True
    levels: tuple[Rules, ...] = field(default_factory=tuple)
    # (host, address) -> the refusal, or None: decisions are pure, so kept (bounded).
    _decided: dict[tuple[str, str], str | None] = field(
        default_factory=dict, init=False, compare=False, hash=False, repr=False
    )

    def with_rules(self, rules: Rules) -> Policy:
        return replace(self, levels=(*self.levels, rules))

    def check_url(self, url: str) -> str:
        """The one url check, at enqueue and on every redirect hop: a url curl
        and the policy read alike (InvalidRequest otherwise), not refused by
        what it alone shows (TargetRefused; no DNS). The url, stripped."""
        url = check_form(url)
        host = urlsplit(url).hostname or ""
        address = parse_address(host)
        if address is not None:
            self.check_address(host, address)
        else:
            self.check_name(normal_host(host))
        return url

    def check_name(self, host: str) -> None:
        """What a name alone decides: deny patterns, and allow lists of names only."""
        for rules in self.levels:
            if _host_in(host, rules.deny_hosts):
                raise refused(f"{host} is on the deny list")
            if rules.allow_hosts and not rules.allow_networks and not rules.allows(host, None):
                raise refused(f"{host} is not on the allow list")

    def check_address(self, host: str, address: Address) -> None:
        """Refuse an address host resolves to (or is), naming the rule."""
        key = (host, str(address))
        if key not in self._decided:
            if len(self._decided) >= MAX_DECISIONS:
                self._decided.clear()
            try:
                self._check_address(host, address)
                self._decided[key] = None
            except TargetRefused as error:
                self._decided[key] = error.message
        why = self._decided[key]
        if why is not None:
            raise TargetRefused(why)

    def _check_address(self, host: str, address: Address) -> None:
        host = normal_host(host)
        label = str(address) if parse_address(host) else f"{host} ({address})"
        for rules in self.levels:
            if rules.denies(host, address):
                raise refused(f"{label} is on the deny list")
        self._check_ranges(address)
        for rules in self.levels:
            if rules.has_allow and not rules.allows(host, address):
                raise refused(f"{label} is not on the allow list")

    def _check_ranges(self, address: Address) -> None:
        inner = effective(address)
        always = _kind(inner, ALWAYS_REFUSED)
        if always is not None and not self._reopened(inner, always[0]):
            raise refused(f"{address} is {always[1]}")
        private = _kind(inner, PRIVATE)
        if private is not None and not self.allow_private and not self._reopened(inner, None):
            raise refused(f"{address} is {private[1]} and private targets are not allowed")

    def _reopened(self, address: Address, within: Network | None) -> bool:
        """An allow CIDR covering address (and, for within, lying inside it)."""
        for rules in self.levels:
            for net in rules.allow_networks:
                inside = within is None or (
                    net.version == within.version and net.subnet_of(within)  # type: ignore[arg-type]
                )
                if inside and address in net:
                    return True
        return False

    async def resolve(self, host: str, port: int, resolver: Resolver) -> list[str]:
        """The checked addresses to pin the call to; TargetRefused if any is refused.

        Every address is checked, not only the first: curl may try any of them.
        """
        literal = parse_address(host)
        if literal is not None:
            self.check_address(host, literal)
            return [str(literal)]
        self.check_name(normal_host(host))
        answers = await resolver(host, port)
        addresses = [ipaddress.ip_address(answer.split("%", 1)[0]) for answer in answers]
        for address in addresses:
            self.check_address(host, address)
        return list(dict.fromkeys(str(address) for address in addresses))


async def system_resolver(host: str, port: int) -> list[str]:
    """getaddrinfo on the loop's executor; socket.gaierror when the name is unknown."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


PolicyLoader = Callable[[int], Awaitable[Mapping[str, Any] | None]]


class Targets:
    """The global policy, and each application's policy cached for cache_s
    so the hot path does not read the database on every call."""

    def __init__(
        self,
        policy: Policy,
        load: PolicyLoader | None = None,
        *,
        cache_s: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.policy = policy
        self.load = load
        self._cache: TtlCache[int, Policy | TargetRefused] = TtlCache(cache_s, clock=clock)

    async def for_app(self, app_id: int | None) -> Policy:
        """The policy of app_id's tasks; TargetRefused if its stored policy is not valid."""
        if app_id is None or self.load is None:
            return self.policy
        policy = await self._cache.get(app_id, lambda: self._load(app_id))
        if isinstance(policy, TargetRefused):
            raise policy
        return policy

    async def _load(self, app_id: int) -> Policy | TargetRefused:
        assert self.load is not None
        data = await self.load(app_id)
        if not data:
            return self.policy
        try:
            return self.policy.with_rules(Rules.from_json(data))
        except (ValueError, TypeError, AttributeError) as error:  # fail closed
            log.error("application %s has an invalid target policy: %s", app_id, error)
            return refused(f"the application's target policy is not valid: {error}")
