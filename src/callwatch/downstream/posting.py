"""One signed POST of a delivery to its subscriber, through the SSRF guard, on a pooled client."""

import logging
import time
from dataclasses import dataclass
from datetime import datetime
from urllib.parse import urlsplit

import httpx

from callwatch import signatures, tracing
from callwatch.downstream.deliveries import Result, verdict
from callwatch.errors import internal_error
from callwatch.outbound import ssrf
from callwatch.outbound.http import retry_after

log = logging.getLogger("callwatch.deliveries")

USER_AGENT = "callwatch-webhooks/1"
BODY_LIMIT = 64 * 1024  # of a receiver's answer, read only so the connection can be reused


@dataclass(frozen=True)
class Job:
    """A claimed attempt: what to send, and what settling it needs to know."""

    delivery_id: str
    subscription_id: str
    attempt_id: str
    url: str
    body: bytes
    secrets: list[str]
    lease_until: datetime
    failing: bool  # the subscription was failing when the attempt began


@dataclass(frozen=True)
class Sent:
    job: Job
    result: Result
    location: str | None  # of a redirect, which is never followed


def send(client: httpx.Client, job: Job, now: datetime, timeout_s: float) -> Sent:
    """POST the signed payload; what came back."""
    stamp = int(now.timestamp())
    signature = " ".join(
        signatures.sign(secret, job.delivery_id, stamp, job.body) for secret in job.secrets
    )
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": job.delivery_id,
        "webhook-timestamp": str(stamp),
        "webhook-signature": signature,
    }
    started = time.monotonic()
    host = urlsplit(job.url).hostname or ""  # not the URL: a subscriber's can hold a token
    attributes = {
        "http.request.method": "POST",
        "server.address": host,
        "callwatch.delivery_id": job.delivery_id,
        "callwatch.subscription_id": job.subscription_id,
    }
    with tracing.span("POST", tracing.SpanKind.CLIENT, attributes) as span:
        answer, location = _post(client, job, headers, timeout_s, started)
        span.set_attribute("callwatch.delivery_outcome", verdict(answer))
        if answer.status is not None:
            span.set_attribute("http.response.status_code", answer.status)
        return Sent(job, answer, location)


def _post(
    client: httpx.Client, job: Job, headers: dict[str, str], timeout_s: float, started: float
) -> tuple[Result, str | None]:
    def took() -> float:
        return round((time.monotonic() - started) * 1000, 1)

    try:
        # In total, not per read: a receiver dripping its answer cannot outlive the lease.
        with (
            ssrf.deadline(timeout_s),
            client.stream("POST", job.url, content=job.body, headers=headers) as response,
        ):
            _drain(response, started + timeout_s)
            answer = Result(
                response.status_code,
                retry_after_s=retry_after(response.headers.get("retry-after")),
                duration_ms=took(),
            )
            return answer, response.headers.get("location")
    except ssrf.TargetRefused as exc:
        return Result(None, f"refused: {exc}", duration_ms=took(), refused=True), None
    except httpx.TimeoutException as exc:
        error = f"timed out after {timeout_s:g} s ({type(exc).__name__})"
        return Result(None, error, duration_ms=took()), None
    except httpx.HTTPError as exc:
        return Result(None, f"{type(exc).__name__}: {exc}", duration_ms=took()), None
    except Exception as exc:  # a bug, not the receiver: retried like a failure, so bounded
        log.exception("delivery attempt crashed", extra={"delivery_id": job.delivery_id})
        return Result(None, internal_error(exc), duration_ms=took()), None


def _drain(response: httpx.Response, deadline: float) -> None:
    """Read a little of the answer, briefly, so a small one frees the connection for reuse."""
    read = 0
    try:
        for chunk in response.iter_raw():
            read += len(chunk)
            if read > BODY_LIMIT or time.monotonic() > deadline:
                return
    except httpx.HTTPError:
        return
