"""The SSRF guard: subscriber URLs reach public addresses only, vetted again at every connect."""

import ipaddress
import socket
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

import httpcore
import httpx

from callwatch.errors import InvalidInput
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


class TargetRefused(Exception):
    """The URL's host is, or resolves to, an address subscribers may not use."""


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


def check_url(url: str) -> tuple[str, int]:
    """The host and port of a subscriber URL; InvalidInput (naming `url`) if it cannot be one."""
    if len(url) > MAX_URL_LENGTH:
        raise InvalidInput(f"url: longer than {MAX_URL_LENGTH} characters", field="url")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise InvalidInput(f"url: not a valid URL ({exc})", field="url") from None
    if parts.scheme not in ("http", "https"):
        raise InvalidInput("url: must start with http:// or https://", field="url")
    if not parts.hostname:
        raise InvalidInput("url: has no host", field="url")
    if any(char.isspace() or ord(char) < 0x20 for char in url):
        raise InvalidInput("url: must not contain spaces or control characters", field="url")
    try:
        httpx.URL(url)
    except httpx.InvalidURL as exc:
        raise InvalidInput(f"url: not a valid URL ({exc})", field="url") from None
    return parts.hostname, port or (443 if parts.scheme == "https" else 80)


def vet_url(url: str, guard: Guard) -> None:
    """At creation: a well-formed http(s) URL whose host resolves to public addresses only."""
    host, port = check_url(url)
    if guard.allow_private:
        return
    try:
        guard.addresses(host, port)
    except TargetRefused as exc:
        raise InvalidInput(
            f"url: {exc}; only public addresses can receive webhooks", field="url"
        ) from None
    except OSError as exc:
        raise InvalidInput(f"url: {exc}", field="url") from None


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
        try:
            addresses = self.guard.addresses(host, port)
        except TargetRefused:
            raise
        except OSError as exc:
            raise httpcore.ConnectError(str(exc)) from exc
        failure: Exception | None = None
        for address in addresses:
            try:
                return super().connect_tcp(address, port, timeout, local_address, socket_options)
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


def client(settings: Settings, resolve: Resolver = system_resolve) -> httpx.Client:
    """The client for subscriber deliveries: guarded, no redirects, no proxies from the env."""
    guard = Guard(settings.allow_private_targets, resolve)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
    return httpx.Client(
        transport=GuardedTransport(guard, limits),
        timeout=settings.delivery_timeout_s,
        follow_redirects=False,
        trust_env=False,
    )
