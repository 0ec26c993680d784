"""fixa: its unsigned analysis webhook `{success, call, url}` enriches another source's call."""

import hashlib
import math
from typing import Any

import httpx
from pydantic import BaseModel, ConfigDict, Field

from callwatch.errors import InvalidInput, ProviderRejected
from callwatch.model.events import CallEvent
from callwatch.model.records import (
    CallDetails,
    CallError,
    Evaluation,
    Interruption,
    Interruptions,
    Latency,
    Stats,
)
from callwatch.providers.base import FetchContext, SourceConfig, WebhookRequest
from callwatch.validation import parse_body


class _Lenient(BaseModel):
    model_config = ConfigDict(extra="allow")


class Block(_Lenient):
    secondsFromStart: float
    duration: float
    text: str | None = None


class FixaError(_Lenient):
    secondsFromStart: float | None = None
    type: str | None = None
    description: str = ""


class EvalRef(_Lenient):
    name: str | None = None


class EvalResult(_Lenient):
    evalId: str | None = None
    eval: EvalRef | None = None
    success: bool | None = None
    result: str | None = None
    details: str | None = None
    type: str | None = None


class FixaCall(_Lenient):
    id: str = Field(min_length=1, max_length=200)
    customerCallId: str | None = Field(None, max_length=200)
    vapiCallId: str | None = Field(None, max_length=200)
    status: str | None = None
    result: str | None = None
    failureReason: str | None = None
    latencyBlocks: list[Block] = Field(default_factory=list)
    interruptions: list[Block] = Field(default_factory=list)
    errors: list[FixaError] = Field(default_factory=list)
    # The API reference calls them evaluationResults; fixa's schema calls them evalResults.
    evaluationResults: list[EvalResult] | None = None
    evalResults: list[EvalResult] | None = None
    latencyP50: float | None = None
    latencyP90: float | None = None
    latencyP95: float | None = None
    interruptionP50: float | None = None
    interruptionP90: float | None = None
    interruptionP95: float | None = None
    numInterruptions: int | None = None
    timeToFirstWord: float | None = None


class Analysed(BaseModel):
    success: bool = True
    call: FixaCall
    url: str | None = None


class FixaProvider:
    name = "fixa"

    def prepare_credentials(self, credentials: dict[str, str]) -> str | None:
        return None  # unsigned: the webhook token is the credential

    def authenticate(self, request: WebhookRequest, source: SourceConfig, now: float) -> str | None:
        return None

    def parse(self, request: WebhookRequest, delivery_id: str | None) -> list[CallEvent]:
        analysed = parse_body(Analysed, request.body)
        call = analysed.call
        joins = list(dict.fromkeys(i for i in (call.customerCallId, call.vapiCallId) if i))
        if not joins:
            raise InvalidInput(
                "call.customerCallId: fixa's call must name the call it analysed "
                "(customerCallId or vapiCallId)",
                field="call.customerCallId",
            )
        digest = hashlib.sha256(request.body).hexdigest()[:24]
        return [
            CallEvent(
                provider_call_id=joins[0],
                type="fixa.analysis",
                status=None,
                at=request.received_at,
                enrich=enrichment(call, analysed.url),
                joins=joins,
                dedupe_key=f"{call.id}:{digest}",
            )
        ]

    def fetch(self, client: httpx.Client, source: SourceConfig, call: FetchContext) -> CallDetails:
        raise ProviderRejected("fixa analyses enrich calls of other sources; it has none itself")


def enrichment(call: FixaCall, url: str | None) -> dict[str, Any]:
    """What fixa measured, as details that override the platform's where both say something."""
    blocks_ms = [block.duration * 1000 for block in call.latencyBlocks]
    turn = None
    if blocks_ms or call.latencyP50 is not None:
        # fixa's own nearest-rank percentiles are kept; the rest is derived from its blocks.
        turn = Stats(
            count=len(blocks_ms) or None,
            mean=round(math.fsum(blocks_ms) / len(blocks_ms), 2) if blocks_ms else None,
            p50=call.latencyP50,
            p90=call.latencyP90,
            p95=call.latencyP95,
            min=round(min(blocks_ms), 2) if blocks_ms else None,
            max=round(max(blocks_ms), 2) if blocks_ms else None,
        )
    # fixa's time to first word is its first latency block; its API docs say seconds, its
    # code stores milliseconds, so it is taken from the block when there is one.
    first_word = round(blocks_ms[0], 2) if blocks_ms else call.timeToFirstWord
    results = call.evaluationResults if call.evaluationResults is not None else call.evalResults
    measured = CallDetails(
        latency=Latency(turn=turn, time_to_first_word_ms=first_word)
        if turn or first_word is not None
        else None,
        interruptions=Interruptions(
            count=len(call.interruptions),
            items=[
                Interruption(at_s=item.secondsFromStart, duration_s=item.duration, text=item.text)
                for item in call.interruptions
            ],
        ),
        evaluations=[_evaluation(item) for item in results] if results is not None else None,
        errors=[
            CallError(
                at_s=error.secondsFromStart,
                type=error.type or "error",
                description=error.description,
            )
            for error in call.errors
        ]
        or None,
        metadata={"fixa": _summary(call, url)},
    ).model_dump(mode="json", exclude_none=True)
    if turn is not None:
        # Emptied so the platform's own turn samples do not outrank fixa's measurement.
        measured["latency_samples"] = {"turn": []}
    return measured


def _evaluation(item: EvalResult) -> Evaluation:
    name = (item.eval.name if item.eval else None) or item.evalId or "evaluation"
    return Evaluation(
        name=name, success=item.success, result=item.result, reason=item.details, type=item.type
    )


def _summary(call: FixaCall, url: str | None) -> dict[str, Any]:
    """fixa's verdict and figures that have no place of their own in the record."""
    found = {
        "id": call.id,
        "url": url,
        "status": call.status,
        "result": call.result,
        "failure_reason": call.failureReason,
        "num_interruptions": call.numInterruptions,
        "interruption_p50_ms": call.interruptionP50,
        "interruption_p90_ms": call.interruptionP90,
        "interruption_p95_ms": call.interruptionP95,
    }
    return {key: value for key, value in found.items() if value is not None}
