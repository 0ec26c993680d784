"""A Vapi call (GET /call/{id}, or a report laid over its call) as the canonical details."""

import re
from typing import Any

from callwatch.model import call_metrics
from callwatch.model.events import CallStatus
from callwatch.model.records import (
    Analysis,
    CallDetails,
    Cost,
    Interruptions,
    Latency,
    LatencySamples,
    Recording,
    Stats,
    Utterance,
)
from callwatch.providers.vapi.call import (
    UPDATE_STATUSES,
    Artifact,
    Performance,
    RecordingUrls,
    Turn,
    VapiAnalysis,
    VapiCall,
    call_fields,
    reason_fields,
    status_of,
)

METADATA_KEY = "vapi"
ROLES = {"bot": "assistant", "assistant": "assistant", "user": "user"}
TRANSCRIPT_LINE = re.compile(r"^(AI|User):\s?(.*)$")
COST_ITEMS = {
    "transport": "telephony",
    "transcriber": "stt",
    "model": "llm",
    "voice": "tts",
    "vapi": "platform",
}


def call_details(call: VapiCall, *, final: bool = False) -> CallDetails:
    """A Vapi call (GET /call/{id}, or a report laid over its call) as canonical details.

    `final`: the end-of-call report, after which no recording will come if it has none."""
    fields = call_fields(call)
    ended = call.endedReason is not None or call.status == "ended" or final
    status = status_of(call.endedReason) if ended else UPDATE_STATUSES.get(call.status or "")
    artifact = call.artifact or Artifact()
    performance = artifact.performanceMetrics
    transcript = _transcript(artifact, call)
    timed = any(turn.start_s is not None for turn in transcript or [])
    recording = _recording(call, artifact, final and status is CallStatus.completed)
    # A failed call was answered if something was said or recorded before it failed.
    answered = status is CallStatus.completed or (
        status is CallStatus.failed and bool(transcript or recording.url)
    )
    return CallDetails(
        **fields.model_dump(exclude={"metadata"}),
        status=status,
        **reason_fields(call.endedReason),
        created_at=call.createdAt,
        initiated_at=None if answered else call.startedAt,
        answered_at=call.startedAt if answered else None,
        ended_at=call.endedAt,
        duration_s=call.durationSeconds,
        recording=recording,
        transcript=transcript,
        latency=_latency_summary(performance),
        latency_samples=_latency_samples(performance),
        interruptions=Interruptions(count=performance.numUserInterrupted)
        if performance and performance.numUserInterrupted is not None and not timed
        else None,
        cost=_cost(call),
        analysis=_analysis(call.analysis, call.summary),
        metadata=_metadata(call, performance),
    )


def _recording(call: VapiCall, artifact: Artifact, no_more: bool) -> Recording:
    urls = artifact.recording or RecordingUrls()
    mono = (urls.mono.combinedUrl if urls.mono else None) or artifact.recordingUrl
    url = mono or call.recordingUrl
    dual = urls.stereoUrl or artifact.stereoRecordingUrl or call.stereoRecordingUrl
    if url or dual:
        return Recording(url=url or dual, dual_url=dual)
    return Recording(status="missing") if no_more else Recording(status="pending")


def _transcript(artifact: Artifact, call: VapiCall) -> list[Utterance] | None:
    said = artifact.messages if artifact.messages is not None else call.messages
    if said:
        utterances = [
            Utterance.model_validate(
                {
                    "role": ROLES[item.role],
                    "content": item.message or "",
                    "start_s": _round(item.secondsFromStart),
                    "end_s": _round(item.secondsFromStart + (item.endTime - item.time) / 1000)
                    if item.secondsFromStart is not None and item.endTime and item.time
                    else None,
                }
            )
            for item in said
            if item.role in ROLES
        ]
        if utterances:
            return utterances
    lines = [
        TRANSCRIPT_LINE.match(line)
        for line in (artifact.transcript or call.transcript or "").splitlines()
    ]
    untimed = [
        Utterance(role="assistant" if found.group(1) == "AI" else "user", content=found.group(2))
        for found in lines
        if found
    ]
    return untimed or None


def _round(value: float | None) -> float | None:
    return round(value, 3) if value is not None else None


def _stage(turns: list[Turn], name: str) -> list[float]:
    return [value for turn in turns if (value := getattr(turn, name)) is not None]


def _latency_samples(performance: Performance | None) -> LatencySamples | None:
    if performance is None or not performance.turnLatencies:
        return None
    turns = performance.turnLatencies
    return LatencySamples(
        turn=_stage(turns, "turnLatency"),
        stt=_stage(turns, "transcriberLatency"),
        llm=_stage(turns, "modelLatency"),
        tts=_stage(turns, "voiceLatency"),
    )


def _latency_summary(performance: Performance | None) -> Latency | None:
    """Vapi's averages, for a report without per-turn figures."""
    if performance is None or performance.turnLatencies:
        return None

    def mean(value: float | None) -> Stats | None:
        return Stats(mean=value) if value is not None else None

    summary = Latency(
        turn=mean(performance.turnLatencyAverage),
        stt=mean(performance.transcriberLatencyAverage),
        llm=mean(performance.modelLatencyAverage),
        tts=mean(performance.voiceLatencyAverage),
    )
    return summary if summary != Latency() else None


def _cost(call: VapiCall) -> Cost | None:
    """USD: costBreakdown (GET /call) or the report's costs[] items; `cost` is the total."""
    parts: dict[str, float] = {}
    found = call.costBreakdown
    if found is not None:
        named = {
            "telephony": found.transport,
            "stt": found.stt,
            "llm": found.llm,
            "tts": found.tts,
            "platform": found.vapi,
        }
        parts = {key: value for key, value in named.items() if value is not None}
    else:
        for item in call.costs or []:
            component = COST_ITEMS.get(item.type)
            if component is not None and item.cost is not None:
                parts[component] = parts.get(component, 0.0) + item.cost
    total = found.total if found is not None and found.total is not None else call.cost
    if total is None and not parts:
        return None
    rounded = {key: round(value, 6) for key, value in parts.items()}
    return Cost(total=total, currency="USD", **rounded)


def _analysis(found: VapiAnalysis | None, summary: str | None) -> Analysis | None:
    if found is None and summary is None:
        return None
    found = found or VapiAnalysis()
    verdict = found.successEvaluation
    success = verdict if isinstance(verdict, bool) else None
    if isinstance(verdict, str) and verdict.strip().lower() in ("true", "false"):
        success = verdict.strip().lower() == "true"
    given = found.structuredData
    data = dict(given) if isinstance(given, dict) else {} if given is None else {"value": given}
    if verdict is not None and success is None:
        data["successEvaluation"] = verdict  # a score or a sentence, not a yes or no
    return Analysis(summary=found.summary or summary, success=success, data=data)


def _metadata(call: VapiCall, performance: Performance | None) -> dict[str, Any] | None:
    own = dict(call.metadata) if isinstance(call.metadata, dict) else {}
    vapi: dict[str, Any] = {"phone_call_provider_id": call.phoneCallProviderId}
    if performance is not None:
        endpointing = call_metrics.stats(_stage(performance.turnLatencies, "endpointingLatency"))
        if endpointing is None and performance.endpointingLatencyAverage is not None:
            endpointing = Stats(mean=performance.endpointingLatencyAverage)
        vapi |= {
            "endpointing_latency_ms": endpointing.model_dump(exclude_none=True)
            if endpointing
            else None,
            "num_user_interrupted": performance.numUserInterrupted,
            "num_assistant_interrupted": performance.numAssistantInterrupted,
        }
    kept = {key: value for key, value in vapi.items() if value is not None}
    if kept:
        own[METADATA_KEY] = kept
    return own or None
