"""The one SSRF guard: every URL callwatch fetches or posts to (subscriber deliveries, platform
detail APIs, `api_base_url`, recordings) reaches public addresses only, vetted when it is saved and
again at every connect, with no redirects followed and, inside `deadline()`, a total time bound."""

import ipaddress
import re
import socket
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpcore
import httpx

from callwatch.errors import InvalidInput
from callwatch.errors import TargetRefused as TargetRefused  # once defined here; still named here
from callwatch.settings import Settings

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

METADATA = frozenset(
    {
        ipaddress.ip_address("169.254.169.254"),  # AWS, GCP, Azure, Oracle, DigitalOcean
        ipaddress.ip_address("fd00:ec2::254"),  # AWS over IPv6
        ipaddress.ip_address("100.100.100.200"),  # Alibaba Cloud
    }
)
CGNAT = ipaddress.ip_network("100.64.0.0/10")
NAT64 = ipaddress.ip_network("64:ff9b::/96")
MAX_URL_LENGTH = 2048
_SPACE_OR_CONTROL = re.compile(r"[\s\x00-\x1f]")
DEADLINE_SLACK_S = 0.05


def refusal(address: Address) -> str | None:
    """Why a connection to this address is refused (None: a public address)."""
    if isinstance(address, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(address)
        if embedded is not None:
            return refusal(embedded)
    checks: list[tuple[str, bool]] = [
        ("cloud metadata", address in METADATA),
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("multicast", address.is_multicast),
        ("carrier-grade NAT", isinstance(address, ipaddress.IPv4Address) and address in CGNAT),
        ("reserved", address.is_reserved),
        ("private", address.is_private),
        ("not globally routable", not address.is_global),
    ]
    return next((reason for reason, hit in checks if hit), None)


def _embedded_ipv4(address: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one stands for (mapped, 6to4, NAT64), if any."""
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address.sixtofour is not None:
        return address.sixtofour
    if address in NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return None


def system_resolve(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for the host, in its order."""
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(frozen=True)
class Guard:
    """Resolves a host and refuses it unless every address it has is public."""

    allow_private: bool
    resolve: Resolver = system_resolve

    def addresses(self, host: str, port: int) -> list[str]:
        """The addresses to connect to, all vetted; raises TargetRefused."""
        try:
            found = self.resolve(host, port)
        except (OSError, UnicodeError) as exc:
            raise OSError(f"{host} does not resolve: {exc}") from exc
        if not found:
            raise OSError(f"{host} does not resolve")
        if not self.allow_private:
            for text in found:
                reason = refusal(ipaddress.ip_address(text.split("%", 1)[0]))
                if reason is not None:
                    raise TargetRefused(f"{host} resolves to {text} ({reason})")
        return found


def parse_url(url: str) -> tuple[str, int]:
    """The host and port of an http(s) URL; ValueError saying why it cannot be fetched."""
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("must start with http:// or https://")
    if not parts.hostname:
        raise ValueError("has no host")
    if _SPACE_OR_CONTROL.search(url):
        raise ValueError("must not contain spaces or control characters")
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise ValueError(f"not a valid URL ({exc})") from None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def check_url(url: str, field: str = "url") -> tuple[str, int]:
    """The host and port of a URL; InvalidInput (naming `field`) if it cannot be one."""
    try:
        return parse_url(url)
    except ValueError as exc:
        raise InvalidInput(f"{field}: {exc}", field=field) from None


def vet_url(
    url: str, guard: Guard, *, field: str = "url", use: str = "can receive webhooks"
) -> None:
    """When saved: a well-formed http(s) URL whose host resolves to public addresses only."""
    host, port = check_url(url, field)
    if guard.allow_private:
        return
    try:
        guard.addresses(host, port)
    except TargetRefused as exc:
        raise InvalidInput(f"{field}: {exc}; only public addresses {use}", field=field) from None
    except OSError as exc:
        raise InvalidInput(f"{field}: {exc}", field=field) from None


# The monotonic time by which the current fetch must be done (None: per-operation timeouts only).
_deadline: ContextVar[float | None] = ContextVar("callwatch_fetch_deadline", default=None)


@contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """Every connect, TLS handshake, read and write inside ends within `seconds` in total: a
    server that drips a byte at a time cannot hold the thread past it (httpx's timeouts are per
    operation). Nested, the earlier deadline wins."""
    at = time.monotonic() + seconds
    outer = _deadline.get()
    token = _deadline.set(at if outer is None else min(outer, at))
    try:
        yield
    finally:
        _deadline.reset(token)


def deadline_passed() -> bool:
    """Whether the current deadline (if any) has passed: a timeout cut to what was left of it
    ends at it, give or take the clock's and the socket's rounding."""
    at = _deadline.get()
    return at is not None and time.monotonic() >= at - DEADLINE_SLACK_S


def _bounded(timeout: float | None, expired: type[Exception]) -> float | None:
    """The operation's timeout, cut to what is left of the deadline; `expired` once none is."""
    at = _deadline.get()
    if at is None:
        return timeout
    left = at - time.monotonic()
    if left <= 0:
        raise expired("deadline exceeded")
    return left if timeout is None else min(timeout, left)


class DeadlineStream(httpcore.NetworkStream):
    """A connection whose every operation ends by the deadline of the fetch using it (a pooled
    connection serves fetches with different deadlines, so it is read at each call)."""

    def __init__(self, inner: httpcore.NetworkStream) -> None:
        self._inner = inner

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _bounded(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _bounded(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self,
        ssl_context: Any,
        server_hostname: str | None = None,
        timeout: float | None = None,
    ) -> httpcore.NetworkStream:
        bounded = _bounded(timeout, httpcore.ConnectTimeout)
        return DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class GuardedBackend(httpcore.SyncBackend):
    """Connects to the address it vetted, never to a second lookup of the name: a DNS answer
    that changes between the check and the connect (rebinding) cannot slip through. TLS still
    uses the name for SNI and certificate checks."""

    def __init__(self, guard: Guard) -> None:
        self.guard = guard

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[httpcore.SOCKET_OPTION] | None = None,
    ) -> httpcore.NetworkStream:
        _bounded(timeout, httpcore.ConnectTimeout)  # the lookup is not started past the deadline
        try:
            addresses = self.guard.addresses(host, port)
        except TargetRefused:
            raise
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        failure: Exception | None = None
        for address in addresses:
            try:
                bounded = _bounded(timeout, httpcore.ConnectTimeout)
                stream = super().connect_tcp(address, port, bounded, local_address, socket_options)
                return DeadlineStream(stream)
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                failure = exc
        assert failure is not None
        raise failure


class GuardedTransport(httpx.HTTPTransport):
    """httpx's transport over a connection pool that connects through the guard."""

    def __init__(self, guard: Guard, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=GuardedBackend(guard),
        )


def _guarded_client(allow_private: bool, resolve: Resolver, timeout: float) -> httpx.Client:
    guard = Guard(allow_private, resolve)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    return httpx.Client(
        transport=GuardedTransport(guard, limits),
        timeout=timeout,
        follow_redirects=False,
        trust_env=False,
    )


def client(settings: Settings, resolve: Resolver = system_resolve) -> httpx.Client:
    """The client for subscriber deliveries: guarded, no redirects, no proxies from the env."""
    return _guarded_client(settings.allow_private_targets, resolve, settings.delivery_timeout_s)


def fetch_client(settings: Settings, resolve: Resolver = system_resolve) -> httpx.Client:
    """The client for platform APIs (detail fetches, recordings): the same guard, no redirects
    (a redirect could lead anywhere; it is an error the caller reports), timeouts per operation
    of HTTP_TIMEOUT_S; wrap each fetch in `deadline()` for its total bound."""
    return _guarded_client(settings.allow_private_targets, resolve, settings.http_timeout_s)
