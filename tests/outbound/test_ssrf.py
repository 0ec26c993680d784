"""The SSRF guard: which addresses are refused, at creation and at every connect."""

import ipaddress
from collections.abc import Callable

import httpx
import pytest
from starlette.testclient import TestClient

from callwatch.app import create_app
from callwatch.db import transaction
from callwatch.downstream import attempts, deliveries, subscriptions
from callwatch.downstream.subscriptions import SubscriptionIn
from callwatch.errors import InvalidInput
from callwatch.outbound import ssrf
from callwatch.settings import Settings
from tests.downstream.test_deliveries import Receiver, Reply, call_data, log_of, summary
from tests.factories import tenant

ADDRESSES = [
    ("127.0.0.1", "loopback"),
    ("127.8.9.10", "loopback"),
    ("10.1.2.3", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.255", "private"),
    ("192.168.1.1", "private"),
    ("169.254.169.254", "cloud metadata"),
    ("100.100.100.200", "cloud metadata"),
    ("169.254.1.1", "link-local"),
    ("100.64.0.1", "carrier-grade NAT"),
    ("100.127.255.254", "carrier-grade NAT"),
    ("0.0.0.0", "unspecified"),  # noqa: S104 (an address to refuse, not to bind)
    ("0.1.2.3", "private"),  # "this network"
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("240.0.0.1", "reserved"),
    ("255.255.255.255", "reserved"),
    ("192.0.2.10", "private"),  # documentation
    ("198.18.0.1", "private"),  # benchmarking
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fe80::1", "link-local"),
    ("fc00::1", "private"),
    ("fd12:3456::1", "private"),
    ("fd00:ec2::254", "cloud metadata"),
    ("ff02::1", "multicast"),
    ("::ffff:127.0.0.1", "loopback"),  # IPv4-mapped
    ("::ffff:10.0.0.1", "private"),
    ("::ffff:169.254.169.254", "cloud metadata"),
    ("2002:7f00:1::", "loopback"),  # 6to4 of 127.0.0.1
    ("2002:a00:1::", "private"),  # 6to4 of 10.0.0.1
    ("64:ff9b::a9fe:a9fe", "cloud metadata"),  # NAT64 of 169.254.169.254
    ("2001:db8::1", "private"),  # documentation
    ("8.8.8.8", None),
    ("93.184.216.34", None),
    ("100.63.255.255", None),  # just below the carrier-grade NAT range
    ("172.32.0.1", None),  # just above 172.16/12
    ("2606:4700:4700::1111", None),
    ("::ffff:8.8.8.8", None),
]


@pytest.mark.parametrize(("address", "reason"), ADDRESSES)
def test_refusal(address: str, reason: str | None) -> None:
    assert ssrf.refusal(ipaddress.ip_address(address)) == reason


def resolver(table: dict[str, list[str]]) -> Callable[[str, int], list[str]]:
    """Names from the table; IP literals (in any spelling) as the system reads them."""

    def resolve(host: str, port: int) -> list[str]:
        if host in table:
            return table[host]
        return ssrf.system_resolve(host, port)

    return resolve


DNS = {
    "public.test": ["93.184.216.34"],
    "inside.test": ["10.0.0.7"],
    "metadata.test": ["169.254.169.254"],
    "mixed.test": ["93.184.216.34", "10.0.0.7"],
    "v6.test": ["2606:4700:4700::1111", "fd00:ec2::254"],
}

URLS = [
    ("https://public.test/hooks", None),
    ("http://public.test:8080/hooks?x=1", None),
    ("https://8.8.8.8/hook", None),
    ("https://inside.test/", "url: inside.test resolves to 10.0.0.7 (private)"),
    ("https://metadata.test/", "url: metadata.test resolves to 169.254.169.254 (cloud metadata)"),
    ("https://mixed.test/", "url: mixed.test resolves to 10.0.0.7 (private)"),
    ("https://v6.test/", "url: v6.test resolves to fd00:ec2::254 (cloud metadata)"),
    ("http://127.0.0.1:9000/", "url: 127.0.0.1 resolves to 127.0.0.1 (loopback)"),
    ("http://127.1/", "url: 127.1 resolves to 127.0.0.1 (loopback)"),
    ("http://2130706433/", "url: 2130706433 resolves to 127.0.0.1 (loopback)"),
    ("http://0x7f000001/", "url: 0x7f000001 resolves to 127.0.0.1 (loopback)"),
    ("http://[::1]:8000/", "url: ::1 resolves to ::1 (loopback)"),
    ("http://[::ffff:a9fe:a9fe]/", "url: ::ffff:a9fe:a9fe resolves to ::ffff:169.254.169.254"),
    ("http://169.254.169.254/latest/meta-data/", "url: 169.254.169.254 resolves to"),
    ("http://0.0.0.0/", "url: 0.0.0.0 resolves to 0.0.0.0 (unspecified)"),
    ("http://localhost:8000/", "url: localhost resolves to"),
    ("ftp://public.test/", "url: must start with http:// or https://"),
    ("file:///etc/passwd", "url: must start with http:// or https://"),
    ("gopher://public.test:70/", "url: must start with http:// or https://"),
    ("public.test/hooks", "url: must start with http:// or https://"),
    ("http:///hooks", "url: has no host"),
    ("http://public.test:99999/", "url: not a valid URL (Port out of range 0-65535)"),
    ("http://public .test/", "url: must not contain spaces or control characters"),
    ("http://nowhere.invalid/", "url: nowhere.invalid does not resolve"),
]


@pytest.mark.parametrize(("url", "refused"), URLS)
def test_vet_url(url: str, refused: str | None) -> None:
    guard = ssrf.Guard(allow_private=False, resolve=resolver(DNS))
    if refused is None:
        ssrf.vet_url(url, guard)
        return
    with pytest.raises(InvalidInput) as caught:
        ssrf.vet_url(url, guard)
    assert (caught.value.field, caught.value.detail[: len(refused)]) == ("url", refused)


def test_private_targets_can_be_allowed() -> None:
    guard = ssrf.Guard(allow_private=True, resolve=resolver(DNS))

    for url in ("http://127.0.0.1:9000/", "https://inside.test/", "http://[::1]/"):
        ssrf.vet_url(url, guard)
    with pytest.raises(InvalidInput):
        ssrf.vet_url("ftp://inside.test/", guard)  # the scheme is still checked


def test_creating_a_subscription_on_a_private_address_is_422(settings) -> None:
    strict = settings.model_copy(update={"allow_private_targets": False})
    with TestClient(create_app(strict), raise_server_exceptions=False) as client:
        owner = tenant(client, "acme")
        body = {"url": "http://127.0.0.1:9/hook", "event_types": ["call.assembled"]}

        response = client.post("/api/subscriptions", json=body, headers=owner.headers)

    assert (response.status_code, response.headers["content-type"]) == (
        422,
        "application/problem+json",
    )
    assert response.json() == {
        "type": "about:blank",
        "title": "Invalid input",
        "status": 422,
        "detail": "url: 127.0.0.1 resolves to 127.0.0.1 (loopback); only public addresses "
        "can receive webhooks",
        "field": "url",
    }


def guarded(settings: Settings, resolve: Callable[[str, int], list[str]]) -> httpx.Client:
    return ssrf.client(settings.model_copy(update={"allow_private_targets": False}), resolve)


def test_a_name_rebound_to_a_private_address_is_refused_at_connect(settings) -> None:
    answers = iter([["93.184.216.34"], ["127.0.0.1"]])  # public when checked, then loopback
    with Receiver() as receiver:
        port = int(receiver.url.rsplit(":", 1)[1])
        url = f"http://rebind.test:{port}/hook"
        ssrf.vet_url(url, ssrf.Guard(False, lambda host, port: next(answers)))
        client = guarded(settings, lambda host, port: next(answers))
        with client, pytest.raises(ssrf.TargetRefused) as caught:
            client.post(url, content=b"{}")
        assert str(caught.value) == "rebind.test resolves to 127.0.0.1 (loopback)"
        assert receiver.received == []


def test_the_connection_goes_to_the_address_that_was_vetted(settings) -> None:
    """One lookup per connection, and that answer is where it connects: a second answer
    (here unroutable) is never looked up, so it cannot differ from what was checked."""
    lookups: list[str] = []

    def resolve(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.1"] if len(lookups) == 1 else ["192.0.2.1"]

    allowed = settings.model_copy(update={"allow_private_targets": True})
    with Receiver() as receiver, ssrf.client(allowed, resolve) as client:
        port = int(receiver.url.rsplit(":", 1)[1])
        response = client.post(f"http://pinned.test:{port}/hook", content=b"{}")

        assert (response.status_code, lookups) == (200, ["pinned.test"])
        assert receiver.received[0].headers["host"] == f"pinned.test:{port}"


def test_a_delivery_to_an_address_refused_at_delivery_time_fails(client, runtime) -> None:
    owner = tenant(client, "acme")
    with Receiver() as receiver:
        port = int(receiver.url.rsplit(":", 1)[1])
        with transaction(runtime.sessions) as session:  # created while it resolved publicly
            data = SubscriptionIn(url=f"http://rebind.test:{port}/", event_types=["call.assembled"])
            subscription, _ = subscriptions.create(
                session, runtime.vault, owner.org_id, data, runtime.clock()
            )
            [created] = deliveries.fan_out(
                session, owner.org_id, "call.assembled", call_data(owner), "k", runtime.clock()
            )
        runtime.outbound = guarded(runtime.settings, resolver({"rebind.test": ["127.0.0.1"]}))

        assert attempts.deliver(runtime, created) == {}
        [item] = log_of(client, owner, subscription.id)

        assert summary(item) == {
            "state": "failed",
            "last_status": None,
            "last_error": "refused: rebind.test resolves to 127.0.0.1 (loopback)",
            "attempts": [
                (1, None, "failed", "refused: rebind.test resolves to 127.0.0.1 (loopback)")
            ],
        }
        assert receiver.received == []


def test_the_client_never_follows_redirects_or_env_proxies(settings, monkeypatch) -> None:
    monkeypatch.setenv("HTTP_PROXY", "http://192.0.2.1:3128")
    allowed = settings.model_copy(update={"allow_private_targets": True})
    with Receiver() as receiver, ssrf.client(allowed) as client:
        url = receiver.script("hook", Reply(307, {"location": "/elsewhere"}))
        response = client.post(url, content=b"{}")

        assert (response.status_code, [r.path for r in receiver.received]) == (307, ["hook"])
