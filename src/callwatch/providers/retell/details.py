"""A Retell call object (webhook or get-call) mapped onto the canonical call details."""

import re
from typing import Any

from callwatch.model.records import (
    Analysis,
    CallDetails,
    CallError,
    Cost,
    Latency,
    LatencySamples,
    Recording,
    Stats,
    Utterance,
)
from callwatch.providers.retell.call import (
    UNCONNECTED,
    CallAnalysis,
    CallCost,
    Latencies,
    RetellCall,
    Stage,
    end_reason_of,
    status_of,
)

METADATA_KEY = "retell"
ROLES = {"agent": "assistant", "user": "user", "transfer_target": "user"}
TRANSCRIPT_LINE = re.compile(r"^(Agent|User):\s?(.*)$")
# Words in a `call_cost.product_costs[].product` name, per cost component (first match wins).
# Names seen in Retell payloads: elevenlabs_tts, voice_engine, gpt-4o-mini, gemini_2_0_flash,
# llm_token_usage (the long-prompt surcharge), background_voice_cancellation.
PRODUCT_COMPONENTS = (
    ("tts", ("tts",)),
    ("stt", ("asr", "stt", "transcri")),
    ("telephony", ("telephony", "twilio", "telnyx", "vonage", "sip", "phone_number")),
    (
        "llm",
        ("llm", "gpt", "gemini", "claude", "token", "llama", "mistral", "deepseek", "grok"),
    ),
    ("platform", ("voice_engine", "platform", "retell", "cancellation", "denois")),
)


def call_details(call: RetellCall) -> CallDetails:
    """A Retell call object (webhook or get-call) mapped onto the canonical details."""
    status = status_of(call.call_status, call.disconnection_reason)
    reason = call.disconnection_reason
    connected = reason not in UNCONNECTED and call.call_status not in (
        "not_connected",
        "registered",
    )
    started = call.started
    end_reason = end_reason_of(reason)
    return CallDetails(
        agent_id=call.agent_id,
        agent_name=call.agent_name,
        direction=call.direction if call.direction in ("inbound", "outbound") else None,
        channel=call.channel,
        from_number=call.from_number,
        to_number=call.to_number,
        status=status,
        end_reason=end_reason,
        end_reason_raw=reason,
        created_at=started,
        initiated_at=None if connected else started,
        answered_at=started if connected else None,
        ended_at=call.ended,
        duration_s=call.duration_ms / 1000 if call.duration_ms is not None else None,
        billed_duration_s=call.call_cost.total_duration_seconds if call.call_cost else None,
        recording=_recording(call),
        transcript=_transcript(call),
        latency=_latency_summary(call.latency),
        latency_samples=_latency_samples(call.latency),
        cost=_cost(call.call_cost),
        analysis=_analysis(call.call_analysis),
        errors=[CallError(type=reason or "error")] if end_reason == "error" else None,
        metadata=_metadata(call),
    )


def _recording(call: RetellCall) -> Recording:
    if call.recording_url:
        return Recording(url=call.recording_url, dual_url=call.recording_multi_channel_url)
    if call.data_storage_setting == "basic_attributes_only":
        return Recording(status="missing")  # the agent keeps no recordings
    return Recording(status="pending")


def _transcript(call: RetellCall) -> list[Utterance] | None:
    if call.transcript_object:
        said = []
        for turn in call.transcript_object:
            if turn.role not in ROLES:
                continue
            starts = [word.start for word in turn.words if word.start is not None]
            ends = [word.end for word in turn.words if word.end is not None]
            said.append(
                Utterance.model_validate(
                    {
                        "role": ROLES[turn.role],
                        "content": turn.content,
                        "start_s": round(starts[0], 3) if starts else None,
                        "end_s": round(ends[-1], 3) if ends else None,
                    }
                )
            )
        return said or None
    lines = [TRANSCRIPT_LINE.match(line) for line in (call.transcript or "").splitlines()]
    untimed = [
        Utterance(role="assistant" if found.group(1) == "Agent" else "user", content=found.group(2))
        for found in lines
        if found
    ]
    return untimed or None


def _latency_summary(latency: Latencies | None) -> Latency | None:
    """Retell's own figures, used for the stages that come without raw values."""
    if latency is None:
        return None
    summary = Latency(
        turn=_summary(latency.e2e),
        stt=_summary(latency.asr),
        llm=_summary(latency.llm),
        tts=_summary(latency.tts),
    )
    return summary if summary != Latency() else None


def _summary(stage: Stage | None) -> Stats | None:
    if stage is None or stage.values or stage.p50 is None:
        return None
    return Stats(
        count=int(stage.num) if stage.num is not None else None,
        p50=stage.p50,
        p90=stage.p90,
        p95=stage.p95,
        p99=stage.p99,
        min=stage.min,
        max=stage.max,
    )


def _latency_samples(latency: Latencies | None) -> LatencySamples | None:
    if latency is None:
        return None

    def values(stage: Stage | None) -> list[float]:
        return list(stage.values or []) if stage else []

    samples = LatencySamples(
        turn=values(latency.e2e),
        stt=values(latency.asr),
        llm=values(latency.llm),
        tts=values(latency.tts),
    )
    return samples if samples != LatencySamples() else None


def _cost(cost: CallCost | None) -> Cost | None:
    """Cents to dollars; each product is filed under the first component its name names."""
    if cost is None:
        return None
    cents: dict[str, float] = {}
    for item in cost.product_costs:
        component = product_component(item.product)
        if component is not None:
            cents[component] = cents.get(component, 0.0) + item.cost
    dollars = {component: _dollars(amount) for component, amount in cents.items()}
    return Cost(total=_dollars(cost.combined_cost), currency="USD", **dollars)


def _dollars(cents: float | None) -> float | None:
    return round(cents / 100, 6) if cents is not None else None


def product_component(product: str) -> str | None:
    name = product.lower()
    for component, words in PRODUCT_COMPONENTS:
        if any(word in name for word in words):
            return component
    return None  # counted in the total only


def _analysis(found: CallAnalysis | None) -> Analysis | None:
    if found is None:
        return None
    sentiment = (found.user_sentiment or "").lower()
    return Analysis(
        summary=found.call_summary,
        success=found.call_successful,
        sentiment=None if sentiment in ("", "unknown") else sentiment,
        data=_as_data(found.custom_analysis_data),
    )


def _as_data(given: Any) -> dict[str, Any]:
    if given is None:
        return {}
    return dict(given) if isinstance(given, dict) else {"custom_analysis_data": given}


def _metadata(call: RetellCall) -> dict[str, Any] | None:
    own = dict(call.metadata) if isinstance(call.metadata, dict) else {}
    extra = call.model_extra or {}
    retell = {
        "agent_version": call.agent_version,
        "public_log_url": call.public_log_url,
        "twilio_call_sid": call.telephony_identifier.twilio_call_sid
        if call.telephony_identifier
        else None,
        "transfer_destination": call.transfer_destination,
        "dynamic_variables": extra.get("retell_llm_dynamic_variables") or None,
        "collected_variables": extra.get("collected_dynamic_variables") or None,
    }
    kept = {key: value for key, value in retell.items() if value is not None}
    if kept:
        own[METADATA_KEY] = kept
    return own or None
