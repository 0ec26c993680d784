"""Erasure on request: one call (`DELETE /api/calls/{id}`), or every call of a phone number
(`POST /api/erasures`), each with everything of its own (removal.py). Subscribers that want it
get `call.deleted`; the ops streams lose the calls' entries; an erasure by number is kept as
its count, its key and a keyed fingerprint of the number, never the number."""

import logging
from collections.abc import Callable
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError
from redis import RedisError
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from callwatch import ids
from callwatch.calls import store
from callwatch.db import transaction
from callwatch.downstream import call_events, deliveries, streams
from callwatch.model import pii
from callwatch.recordings.store import store_for
from callwatch.retention import counters, removal
from callwatch.runtime import Runtime
from callwatch.tables import Call, Erasure

log = logging.getLogger("callwatch.retention")

BATCH = 200  # calls erased per transaction
LISTED = 100  # erasures `GET /api/erasures` shows, newest first
Send = Callable[[list[str]], None]  # sends these deliveries now


class ErasureIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    phone_number: str = Field(
        min_length=2,
        max_length=40,
        description="E.164, with its country code: calls from, to or with this customer "
        "number, however the platform wrote it (+14155550100, 14155550100, (415) 555-0100 …)",
        examples=["+14155550100"],
    )

    @field_validator("phone_number")
    @classmethod
    def _a_possible_number(cls, value: str) -> str:
        try:
            return pii.number_forms(value)[0]
        except ValueError as exc:
            raise PydanticCustomError("phone_number", str(exc)) from None


class ErasureView(BaseModel):
    id: str
    calls: int = Field(description="calls erased")
    key_id: str | None = Field(description="the API key that asked; null: the command line")
    created_at: datetime


class ErasureList(BaseModel):
    items: list[ErasureView]


def view(erasure: Erasure) -> ErasureView:
    return ErasureView(
        id=erasure.id, calls=erasure.calls, key_id=erasure.key_id, created_at=erasure.created_at
    )


def delete_call(runtime: Runtime, org_id: str, call_id: str, send: Send) -> None:
    """Delete one call of the org (its callwatch or provider id); NotFound for any other."""
    with transaction(runtime.sessions) as session:
        call = store.find(session, org_id, call_id)
        sent = _erase(session, runtime, org_id, [call.id])
    _after(runtime, [call.id], sent, send)


def erase_number(
    runtime: Runtime, org_id: str, number: str, key_id: str | None, send: Send
) -> ErasureView:
    """Erase every call of the org from, to or with this number, `BATCH` calls a transaction,
    then keep the erasure. Run again after a failure, it finishes the work."""
    forms = pii.number_forms(number)
    erased = 0
    while True:
        with transaction(runtime.sessions) as session:
            call_ids = _calls_of(session, org_id, forms)
            sent = _erase(session, runtime, org_id, call_ids)
        _after(runtime, call_ids, sent, send)
        erased += len(call_ids)
        if len(call_ids) < BATCH:
            break
    with transaction(runtime.sessions) as session:
        erasure = Erasure(
            id=ids.new_id("era"),
            org_id=org_id,
            number_fingerprint=runtime.vault.fingerprint(forms[0]),
            calls=erased,
            key_id=key_id,
            created_at=runtime.clock(),
        )
        session.add(erasure)
        return view(erasure)


def list_for(session: Session, org_id: str) -> ErasureList:
    found = session.scalars(
        select(Erasure)
        .where(Erasure.org_id == org_id)
        .order_by(Erasure.created_at.desc(), Erasure.id.desc())
        .limit(LISTED)
    )
    return ErasureList(items=[view(erasure) for erasure in found])


def _calls_of(session: Session, org_id: str, forms: list[str]) -> list[str]:
    numbers = (Call.from_number, Call.to_number, Call.customer_number)
    return list(
        session.scalars(
            select(Call.id)
            .where(Call.org_id == org_id, or_(*(column.in_(forms) for column in numbers)))
            .order_by(Call.id)
            .limit(BATCH)
        )
    )


def _erase(session: Session, runtime: Runtime, org_id: str, call_ids: list[str]) -> list[str]:
    """Remove the calls and fan `call.deleted` out: the deliveries to send once committed."""
    removed = removal.remove(session, org_id, call_ids)
    now = runtime.clock()
    sent = []
    for facts in removed.calls:
        key = call_events.key(call_events.DELETED, facts["call_id"])
        sent += deliveries.fan_out(session, org_id, call_events.DELETED, facts, key, now)
    removal.forget_files(store_for(runtime.settings), removed.files)
    return sent


def _after(runtime: Runtime, call_ids: list[str], sent: list[str], send: Send) -> None:
    if sent:
        send(sent)
    runtime.count({counters.ERASED_CALLS: len(call_ids)})
    if runtime.redis is not None and call_ids:
        try:
            streams.forget(runtime.redis, call_ids)
        except RedisError as exc:  # best effort, as every stream write; they age out
            log.warning("stream entries of erased calls kept", extra={"error": str(exc)})
