"""What redaction (`redact_pii`) adds to storing a record: CPU per record, in-process, no database.

Usage (from the repository root):

    uv run python bench/redaction.py [--records 300] [--rounds 5] [--pii-turns 4] [--seed 1]

1. `--records` simulated calls (`callwatch.simulator.make_call`: 12 turns, ~650 characters of
   transcript, a summary), each given `--pii-turns` more turns taken from the redaction corpus
   (tests/model/redaction_corpus: lines with phone numbers, emails, cards, IBANs, dates,
   prices), so that there are numbers to check, as in a support call; and the record's
   completion webhook body (the generic provider's, the details embedded).
2. Rounds alternate, in one process, over the same records:
   - **build**: what the worker does to store a record without redaction (`pipeline.steps`):
     merge events and details, compute the metrics, build the record, dump its JSON;
   - **build + redact**: the same, plus what `redact=True` adds in `calls.store`: the details
     and the record redacted (`model.redaction.redact_facts`, in the call's region) and the
     raw bodies of the call's events (`redact_body`; the UPDATE of those rows is not timed).
     The memo of redacted texts (`pii.redact`) is emptied before each record: a call's texts
     are new to the worker, and only repeat within the call (details, record, bodies).
3. Prints each round's ms per record, the medians, and the cost of redaction against the build
   measured in the same run.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from callwatch.calls import assembly
from callwatch.calls.fold import fold
from callwatch.model import call_metrics, pii, redaction
from callwatch.model.events import CallEvent
from callwatch.model.records import Assembly, CallDetails, Recording, Utterance
from callwatch.providers import generic
from callwatch.simulator import SimCall, events_for, make_call
from tests import factories
from tests.model.redaction_corpus import lines

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def calls(
    count: int, pii_turns: int, seed: int
) -> list[tuple[SimCall, list[CallEvent], list[str]]]:
    rng = random.Random(seed)
    corpus = [line.text.split(": ", 1)[1] for line in lines() if line.region == "US"]
    made = []
    for index in range(count):
        call = make_call(rng, T0 + timedelta(seconds=index))
        extra = [Utterance(role="user", content=rng.choice(corpus)) for _ in range(pii_turns)]
        detail = call.detail.model_copy(
            update={"transcript": [*(call.detail.transcript or []), *extra]}
        )
        call = SimCall(**{**call.__dict__, "detail": detail})
        bodies = events_for(call, embed_detail=True)
        events = [generic_event(body, number) for number, body in enumerate(bodies)]
        made.append((call, events, [json.dumps(body) for body in bodies]))
    return made


def generic_event(body: dict[str, Any], number: int) -> CallEvent:
    """The generic adapter's parse of one body (not what is measured)."""
    request = factories.webhook_request(json.dumps(body).encode(), T0)
    return generic.GenericProvider().parse(request, f"k{number}")[0]


def build(call: SimCall, events: list[CallEvent], bodies: list[str], redact: bool) -> str:
    state = fold([(str(number), event) for number, event in enumerate(events)])
    details: CallDetails = call.detail
    region = pii.region_of(call.detail.customer_number, call.from_number, call.to_number)
    if redact:
        details = redaction.redact_facts(details, region)
    stored_details = details.model_dump(mode="json", exclude_none=True)
    merged = assembly.merge(state, details)
    recording = assembly.recording_of(merged, T0)
    record = assembly.build(
        call_id="call_1",
        org_id="org_1",
        source="main",
        provider="generic",
        provider_call_id=call.call_id,
        state=state,
        details=merged,
        recording=recording if recording.status != "pending" else Recording(status="missing"),
        metrics=call_metrics.compute(merged, ringing_at=state.ringing_at),
        assembly=Assembly(state="assembled", attempts=1, assembled_at=T0),
        updated_at=T0,
    )
    if redact:
        record = redaction.redact_facts(record, region)
        bodies = [redaction.redact_body(body, "application/json", region) for body in bodies]
    return json.dumps(stored_details) + json.dumps(record.model_dump(mode="json")) + bodies[-1]


def cold(item: tuple[SimCall, list[CallEvent], list[str]]) -> str:
    """Build and redact one record with nothing redacted before: a call's texts are new."""
    pii._REDACTED.clear()
    return build(*item, redact=True)


def timed(work: list[Any], run: Any) -> float:
    """ms per item of `run` over `work`, in this process's CPU time."""
    started = time.process_time()
    for item in work:
        run(item)
    return (time.process_time() - started) * 1000 / len(work)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--records", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--pii-turns", type=int, default=4)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    work = calls(args.records, args.pii_turns, args.seed)
    build(*work[0], redact=True)  # warm: libphonenumber loads its region metadata lazily
    characters = statistics.mean(
        sum(len(turn.content) for turn in call.detail.transcript or []) for call, _, _ in work
    )
    print(f"{args.records} records, transcript {characters:.0f} characters on average")
    rows: dict[str, list[float]] = {"build": [], "build + redact": []}
    for round_number in range(1, args.rounds + 1):
        rows["build"].append(timed(work, lambda item: build(*item, redact=False)))
        rows["build + redact"].append(timed(work, cold))
        print(
            f"round {round_number}: "
            + ", ".join(f"{name} {values[-1]:.3f} ms" for name, values in rows.items())
        )
    medians = {name: statistics.median(values) for name, values in rows.items()}
    added = medians["build + redact"] - medians["build"]
    print(
        f"median ms per record: build {medians['build']:.3f}, build + redact "
        f"{medians['build + redact']:.3f} (redaction adds {added:.3f} ms, "
        f"{medians['build + redact'] / medians['build']:.2f} times the build)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
