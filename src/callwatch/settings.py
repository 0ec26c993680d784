"""Typed configuration, read once per process from CALLWATCH_* variables and `.env`."""

from pathlib import Path
from typing import Self

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CALLWATCH_", env_file=".env", extra="ignore")

    database_url: str = "sqlite:///./.callwatch/callwatch.db"
    redis_url: str | None = None
    admin_token: SecretStr | None = None
    secret_key: SecretStr | None = None
    public_url: str = "http://127.0.0.1:8000"
    recording_wait_s: float = Field(600.0, ge=0)
    max_body_bytes: int = Field(1_048_576, gt=0)
    # Intake: a batch of webhooks not stored within this is failed (503, Retry-After) and its
    # connection closed, so a database that stops answering cannot hold a request (issue 21).
    intake_deadline_s: float = Field(0.25, gt=0)
    # After SIGTERM, how long `callwatch serve` waits for in-flight requests before it stops.
    shutdown_grace_s: int = Field(5, gt=0)

    data_dir: Path = Path(".callwatch")
    # Retry and timing knobs; all countdowns stay below the broker visibility timeout.
    fetch_max_failures: int = Field(6, ge=1)
    assembly_max_runs: int = Field(200, ge=1)
    fetch_backoff_base_s: float = Field(2.0, gt=0)
    recording_check_min_s: float = Field(2.0, gt=0)
    recording_check_max_s: float = Field(30.0, gt=0)
    max_countdown_s: float = Field(300.0, gt=0)
    visibility_timeout_s: int = Field(3600, gt=0)
    lease_s: float = Field(120.0, gt=0)
    http_timeout_s: float = Field(10.0, gt=0)  # each connect, read or write of a platform API
    # One call's detail fetch (all its requests) ends within this, whatever the platform's API
    # does (a byte every few seconds resets no timeout of its own): below LEASE_S, so a fetch is
    # over before its lease lapses and the sweeper can start another.
    fetch_deadline_s: float = Field(20.0, gt=0)
    # A platform's answer larger than this is refused unread (a long call's transcript with
    # word timings is a few MB).
    fetch_max_bytes: int = Field(8 * 1024 * 1024, gt=0)
    sweep_interval_s: float = Field(15.0, gt=0)
    sweep_grace_s: float = Field(60.0, ge=0)
    # How long an event that does not name its call (Burki's end-of-call report) waits for the
    # call to be known before it becomes a call of its own.
    match_wait_s: float = Field(120.0, ge=0)
    source_cache_s: float = Field(30.0, ge=0)
    log_level: str = "INFO"

    # Downstream: subscriber deliveries, alert windows, ops streams.
    # URLs on private/loopback/link-local/metadata addresses (subscriber URLs, detail_url,
    # api_base_url): only for local use, e.g. the simulator's loopback platform APIs.
    allow_private_targets: bool = False
    delivery_timeout_s: float = Field(10.0, gt=0)
    # Seconds before each retry (jittered ±50 %, Retry-After a floor): 8 attempts over about a
    # day, as Standard Webhooks senders do. Waits above MAX_COUNTDOWN_S go to the sweeper.
    delivery_retry_s: list[float] = Field(
        default_factory=lambda: [5.0, 300.0, 1800.0, 7200.0, 18000.0, 36000.0, 36000.0]
    )
    delivery_lease_s: float = Field(60.0, gt=0)
    # One task claims up to this many due deliveries of a subscription and sends them at once.
    delivery_batch: int = Field(50, ge=1, le=1000)
    # Sends in flight at once per worker process, across its tasks' batches.
    delivery_concurrency: int = Field(32, ge=1, le=1000)
    # A subscription failing without a success for this long is disabled.
    subscription_disable_after_s: float = Field(5 * 24 * 3600.0, gt=0)
    secret_rotation_overlap_s: float = Field(24 * 3600.0, ge=0)
    window_eval_interval_s: float = Field(60.0, gt=0)
    stream_maxlen: int = Field(100_000, gt=0)

    # The recording archive (issue 25): where archived recordings are kept — unset: files under
    # DATA_DIR/recordings; `s3://bucket/prefix`: an S3-compatible bucket; `file:///path`: files
    # there — and how one download is bounded and retried.
    # false: this deployment archives no recording (records carry no `recording.archive`),
    # whatever each org chose.
    archive_recordings: bool = True
    recordings_url: str | None = None
    recordings_endpoint_url: str | None = None  # a MinIO, R2, … endpoint; unset: AWS's
    recordings_region: str | None = None
    # Unset: boto3's own chain (environment, shared config, instance role).
    recordings_access_key_id: SecretStr | None = None
    recordings_secret_access_key: SecretStr | None = None
    recording_max_bytes: int = Field(512 * 1024 * 1024, gt=0)
    recording_deadline_s: float = Field(300.0, gt=0)
    recording_max_failures: int = Field(6, ge=1)
    recording_backoff_base_s: float = Field(10.0, gt=0)
    # Retention (issue 25): a periodic purge deletes what passed each org's retention, in
    # batches of `purge_batch` calls, each its own short transaction, resting `purge_rest` times
    # as long as each batch took so intake keeps its pace, for at most `purge_budget_s` a run.
    purge_interval_s: float = Field(300.0, gt=0)
    purge_batch: int = Field(500, ge=1, le=10_000)
    purge_rest: float = Field(1.0, ge=0)
    purge_budget_s: float = Field(240.0, gt=0)
    # Query: GET /api/stats over at most this many calls reads them for exact percentiles; over
    # more, it answers from the stats rollups (percentiles within 1 %, docs/design.md §stats).
    stats_exact_up_to: int = Field(20_000, ge=0)

    # Observability: per-agent metrics name the busiest agents only (Prometheus label cardinality).
    metrics_top_agents: int = Field(20, ge=0)
    # Celery task events, for Flower or celery-exporter (`worker_send_task_events`).
    celery_events: bool = False

    # Dashboard: a signed-in browser session lasts this long (its API key is checked on each
    # request as well, so a revoked key's sessions end at once).
    dashboard_session_s: int = Field(12 * 3600, gt=0)

    @field_validator("recordings_url")
    @classmethod
    def _a_store_callwatch_knows(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("s3://", "file:///")):
            raise ValueError("RECORDINGS_URL is s3://bucket/prefix or file:///path")
        if value is not None and value.startswith("s3://") and not value[5:].split("/")[0]:
            raise ValueError("RECORDINGS_URL s3://bucket/prefix names no bucket")
        return value

    @model_validator(mode="after")
    def _fetch_ends_within_its_lease(self) -> Self:
        if self.fetch_deadline_s >= self.lease_s:
            raise ValueError(
                f"FETCH_DEADLINE_S ({self.fetch_deadline_s:g}) must be below LEASE_S "
                f"({self.lease_s:g}): a fetch outliving its lease overlaps the next one"
            )
        return self

    @property
    def broker_url(self) -> str:
        if self.redis_url is None:
            raise RuntimeError("CALLWATCH_REDIS_URL is not set; start with `callwatch up`")
        return self.redis_url
