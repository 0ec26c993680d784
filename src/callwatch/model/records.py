"""Canonical call details (what adapters produce) and the assembled record (design.md §7)."""

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from callwatch.model.events import CallStatus

EndReason = Literal[
    "user_hangup",
    "agent_hangup",
    "no_answer",
    "busy",
    "timeout",
    "error",
    "transferred",
    "voicemail",
    "other",
]
RecordingStatus = Literal["available", "pending", "missing", "none"]
ArchiveStatus = Literal["pending", "archived", "failed", "skipped"]
AssemblyState = Literal["pending", "fetching", "awaiting_recording", "assembled", "failed"]


# Far beyond any duration (s), latency (ms), count or price, yet sums of millions stay finite;
# NaN and Infinity have no JSON form: a record holding one could never be stored.
MAX_MAGNITUDE = 1e15
Number = Annotated[float, Field(allow_inf_nan=False, ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE)]
Count = Annotated[int, Field(ge=0, le=MAX_MAGNITUDE)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="ignore", allow_inf_nan=False)


class Utterance(_Model):
    role: Literal["assistant", "user", "system", "tool"]
    content: str
    start_s: Number | None = None
    end_s: Number | None = None


class Stats(_Model):
    count: Count | None = None
    mean: Number | None = None
    p50: Number | None = None
    p90: Number | None = None
    p95: Number | None = None
    p99: Number | None = None
    min: Number | None = None
    max: Number | None = None


class Latency(_Model):
    turn: Stats | None = None
    stt: Stats | None = None
    llm: Stats | None = None
    tts: Stats | None = None
    time_to_first_word_ms: Number | None = None


class LatencySamples(_Model):
    """Raw per-turn samples in milliseconds, when a platform exposes them."""

    turn: list[Number] = Field(default_factory=list)
    stt: list[Number] = Field(default_factory=list)
    llm: list[Number] = Field(default_factory=list)
    tts: list[Number] = Field(default_factory=list)


class Interruption(_Model):
    at_s: Number
    duration_s: Number | None = None
    text: str | None = None


class Interruptions(_Model):
    count: Count
    items: list[Interruption] = Field(default_factory=list)


class Turns(_Model):
    count: Count
    user_talk_s: Number | None = None
    agent_talk_s: Number | None = None


class Cost(_Model):
    total: Number | None = None
    currency: str | None = None
    llm: Number | None = None
    stt: Number | None = None
    tts: Number | None = None
    telephony: Number | None = None
    platform: Number | None = None
    per_minute: Number | None = None


class ArchivedFile(_Model):
    """A file in the org's recording store: its size, SHA-256 (hex) and media type."""

    bytes: Count
    sha256: str
    content_type: str


class Archive(_Model):
    """The recording's copy in callwatch's own store (design.md §7): `pending` until a worker
    has it, `archived` with the file's facts, `failed` with the last error, `skipped` when the
    org keeps no copies. `dual`: the platform's separate dual-channel file, archived too."""

    status: ArchiveStatus
    bytes: Count | None = None
    sha256: str | None = None
    content_type: str | None = None
    archived_at: datetime | None = None
    error: str | None = None
    dual: ArchivedFile | None = None


class Recording(_Model):
    status: RecordingStatus = "pending"
    url: str | None = None
    dual_url: str | None = None
    available_at: datetime | None = None
    archive: Archive | None = None  # set by callwatch, never taken from a platform


class Analysis(_Model):
    summary: str | None = None
    success: bool | None = None
    sentiment: str | None = None
    data: dict[str, Any] = Field(default_factory=dict)


class Evaluation(_Model):
    name: str
    success: bool | None = None
    result: str | None = None
    reason: str | None = None
    type: str | None = None


class CallError(_Model):
    at_s: Number | None = None
    type: str
    description: str | None = None


class Quality(_Model):
    mos: Number | None = None
    jitter_ms: Number | None = None
    packet_loss_pct: Number | None = None


class CallFacts(_Model):
    """What a call's details and its record both say about it: who, when, how it went."""

    agent_id: str | None = None
    agent_name: str | None = None
    campaign_id: str | None = None
    direction: str | None = None
    channel: str | None = None
    from_number: str | None = None
    to_number: str | None = None
    customer_number: str | None = None
    status: CallStatus | None = None
    end_reason: EndReason | None = None
    end_reason_raw: str | None = None
    created_at: datetime | None = None
    initiated_at: datetime | None = None
    answered_at: datetime | None = None
    ended_at: datetime | None = None
    duration_s: Number | None = None
    billed_duration_s: Number | None = None
    ring_duration_s: Number | None = None
    recording: Recording | None = None
    transcript: list[Utterance] | None = None
    latency: Latency | None = None
    interruptions: Interruptions | None = None
    turns: Turns | None = None
    cost: Cost | None = None
    analysis: Analysis | None = None
    evaluations: list[Evaluation] | None = None
    errors: list[CallError] | None = None
    quality: Quality | None = None
    metadata: dict[str, Any] | None = None


class CallDetails(CallFacts):
    """Everything a platform told us about a call, normalised; any subset may be known."""

    latency_samples: LatencySamples | None = None  # the record keeps only their statistics


class Metrics(_Model):
    """What the pure metrics module derives from details and the event timeline."""

    duration_s: Number | None = None
    billed_duration_s: Number | None = None
    ring_duration_s: Number | None = None
    latency: Latency
    interruptions: Interruptions | None = None
    turns: Turns | None = None
    cost: Cost | None = None


class TimelineEntry(_Model):
    status: CallStatus | None
    at: datetime
    event: str


class Assembly(_Model):
    state: AssemblyState
    attempts: int
    assembled_at: datetime | None = None
    last_error: str | None = None


class _RecordIdentity(_Model):
    id: str
    org_id: str
    source: str
    provider: str
    provider_call_id: str


# Pydantic orders fields base-most first along the reversed MRO: _RecordIdentity's fields lead,
# then the facts (those narrowed here keep their place), then the record's own.
class CallRecord(CallFacts, _RecordIdentity):
    recording: Recording
    latency: Latency
    metadata: dict[str, Any] = Field(default_factory=dict)
    timeline: list[TimelineEntry] = Field(default_factory=list)
    assembly: Assembly
    updated_at: datetime | None = None

    @property
    def has_recording(self) -> bool:
        return self.recording.status == "available"
