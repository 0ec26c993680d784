"""The call filters of the query API (design.md §8): a query string parsed into SQL conditions."""

from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from sqlalchemy import ColumnElement, or_, select
from starlette.datastructures import QueryParams

from callwatch.errors import InvalidInput
from callwatch.model.events import CallStatus
from callwatch.model.records import EndReason
from callwatch.tables import Call, Source
from callwatch.validation import parse_query


def _day_or_time(value: Any) -> date | datetime:
    """`2026-11-20` is that whole day; a time without a zone is UTC."""
    if isinstance(value, date):
        return value
    try:
        if isinstance(value, str) and len(value) == 10:
            return date.fromisoformat(value)
        return datetime.fromisoformat(str(value))
    except ValueError:
        raise ValueError("expected an ISO 8601 date or date-time, e.g. 2026-11-20") from None


DayOrTime = Annotated[datetime | date, BeforeValidator(_day_or_time)]
REPEATABLE = ("status", "end_reason", "include")
ALIASES = {"assistant_id": "agent_id"}  # the reference APIs' names for our parameters


class Paging(BaseModel):
    """`skip` or `page` (not both) and `limit`, as every list endpoint takes them."""

    model_config = ConfigDict(extra="ignore")

    skip: int | None = Field(None, ge=0, le=10**9, description="items to skip (or use page)")
    page: int | None = Field(None, ge=1, le=10**6, description="1-based page of `limit` items")
    limit: int = Field(100, ge=1, le=1000)

    @model_validator(mode="after")
    def _one_paging_style(self) -> "Paging":
        if self.skip is not None and self.page is not None:
            raise InvalidInput("give skip or page, not both", field="page")
        return self

    @property
    def offset(self) -> int:
        if self.page is not None:
            return (self.page - 1) * self.limit
        return self.skip or 0


class CallFilters(BaseModel):
    model_config = ConfigDict(extra="ignore")

    status: list[CallStatus] = Field(default_factory=list)
    agent_id: str | None = None
    campaign_id: str | None = None
    source: str | None = Field(None, description="source name")
    direction: Literal["inbound", "outbound"] | None = None
    channel: str | None = None
    customer_phone: str | None = Field(None, description="part of the customer's number")
    search: str | None = Field(None, description="call id, provider call id, or part of a number")
    date_from: DayOrTime | None = Field(None, description="started at or after (ISO 8601)")
    date_to: DayOrTime | None = Field(None, description="started at or before; a date: that day")
    min_duration: float | None = Field(None, ge=0, allow_inf_nan=False, description="seconds")
    max_duration: float | None = Field(None, ge=0, allow_inf_nan=False, description="seconds")
    end_reason: list[EndReason] = Field(default_factory=list)
    has_recording: bool | None = None

    @model_validator(mode="after")
    def _ranges(self) -> "CallFilters":
        # InvalidInput passes through pydantic untouched, so the problem names the parameter.
        if (
            self.min_duration is not None
            and self.max_duration is not None
            and self.min_duration > self.max_duration
        ):
            raise InvalidInput("min_duration is greater than max_duration", field="min_duration")
        start, end = self.started_range()
        if start is not None and end is not None and start >= end:
            raise InvalidInput("date_from is after date_to", field="date_from")
        return self

    def started_range(self) -> tuple[datetime | None, datetime | None]:
        """[from, to) bounds on `started_at`; a date `date_to` includes that whole day.

        At the end of the calendar (`date_to=9999-12-31`) there is no bound after it: None.
        """
        end: datetime | None = None
        if isinstance(self.date_to, datetime):
            end = _later(_utc(self.date_to), timedelta(microseconds=1))
        elif isinstance(self.date_to, date):
            end = _later(_as_time(self.date_to), timedelta(days=1))
        return _as_time(self.date_from), end

    def where(self, org_id: str) -> list[ColumnElement[bool]]:
        """SQL conditions for these filters, always scoped to `org_id`."""
        conditions: list[ColumnElement[bool]] = [Call.org_id == org_id]
        if self.status:
            conditions.append(Call.status.in_([status.value for status in self.status]))
        if self.end_reason:
            conditions.append(Call.end_reason.in_(list(self.end_reason)))
        for column, value in (
            (Call.agent_id, self.agent_id),
            (Call.campaign_id, self.campaign_id),
            (Call.direction, self.direction),
            (Call.channel, self.channel),
        ):
            if value is not None:
                conditions.append(column == value)
        if self.source is not None:
            conditions.append(
                Call.source_id.in_(
                    select(Source.id).where(Source.org_id == org_id, Source.name == self.source)
                )
            )
        if self.customer_phone:
            conditions.append(Call.customer_number.contains(self.customer_phone, autoescape=True))
        if self.search:
            term = self.search
            conditions.append(
                or_(
                    Call.id == term,
                    Call.provider_call_id == term,
                    Call.from_number.contains(term, autoescape=True),
                    Call.to_number.contains(term, autoescape=True),
                )
            )
        start, end = self.started_range()
        if start is not None:
            conditions.append(Call.started_at >= start)
        if end is not None:
            conditions.append(Call.started_at < end)
        if self.min_duration is not None:
            conditions.append(Call.duration_s >= self.min_duration)
        if self.max_duration is not None:
            conditions.append(Call.duration_s <= self.max_duration)
        if self.has_recording is not None:
            conditions.append(Call.has_recording.is_(self.has_recording))
        return conditions


def _as_time(value: datetime | date | None) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return _utc(value)
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _utc(value: datetime) -> datetime:
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError:  # a zone's offset pushes it past year 1 or 9999: the nearest instant
        return (datetime.min if value.year == 1 else datetime.max).replace(tzinfo=UTC)


def _later(value: datetime | None, delta: timedelta) -> datetime | None:
    try:
        return None if value is None else value + delta
    except OverflowError:
        return None


M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], params: QueryParams) -> M:
    """A query string into `model`: repeatable parameters as lists, `assistant_id` as `agent_id`."""
    data: dict[str, Any] = dict(params)
    for name in REPEATABLE:
        if name in params:
            data[name] = [part for value in params.getlist(name) for part in value.split(",")]
    for alias, name in ALIASES.items():
        if alias in data:
            if name in data:
                raise InvalidInput(f"give {name} or {alias}, not both", field=alias)
            data[name] = data.pop(alias)
    return parse_query(model, data)
