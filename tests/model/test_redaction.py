"""A call's free text and a raw webhook body are redacted; structure and the call's numbers stay."""

import json

from callwatch.model import redaction
from callwatch.model.records import (
    Analysis,
    CallDetails,
    CallError,
    Evaluation,
    Interruption,
    Interruptions,
    Utterance,
)


def test_every_free_text_field_is_redacted_and_the_rest_kept() -> None:
    details = CallDetails(
        from_number="+4915123456789",
        to_number="+4930123456",
        end_reason_raw="customer hung up",
        transcript=[Utterance(role="user", content="Meine Nummer: 0151 23456789", start_s=1.0)],
        interruptions=Interruptions(count=1, items=[Interruption(at_s=2.0, text="m@x.de")]),
        analysis=Analysis(
            summary="IBAN DE89 3704 0044 0532 0130 00",
            sentiment="neutral",
            data={"contact": ["030 12345678", 7], "ok": True},
        ),
        evaluations=[Evaluation(name="n", result="030 12345678", reason=None)],
        errors=[CallError(type="t", description="card 4111111111111111 refused")],
        metadata={"deep": {"deeper": [{"note": "SSN 512-34-8890"}]}, "count": 3},
    )

    redacted = redaction.redact_facts(details)

    assert redacted.model_dump(exclude_none=True) == {
        "from_number": "+4915123456789",
        "to_number": "+4930123456",
        "end_reason_raw": "customer hung up",
        "transcript": [{"role": "user", "content": "Meine Nummer: [PHONE]", "start_s": 1.0}],
        "interruptions": {"count": 1, "items": [{"at_s": 2.0, "text": "[EMAIL]"}]},
        "analysis": {
            "summary": "IBAN [IBAN]",
            "sentiment": "neutral",
            "data": {"contact": ["[PHONE]", 7], "ok": True},
        },
        "evaluations": [{"name": "n", "result": "[PHONE]"}],
        "errors": [{"type": "t", "description": "card [CARD] refused"}],
        "metadata": {"deep": {"deeper": [{"note": "SSN [SSN]"}]}, "count": 3},
    }
    assert redaction.region_of(details) == "DE"  # hence 0151 … read as a German mobile


def test_details_with_no_free_text_come_back_equal() -> None:
    details = CallDetails(from_number="+15550001111", duration_s=3.0)

    assert redaction.redact_facts(details) == details


def test_a_json_body_keeps_its_shape_with_its_strings_redacted() -> None:
    body = json.dumps({"data": {"from": "+14155552671", "n": 4155552671, "t": ["a@b.co", None]}})

    redacted = redaction.redact_body(body, "application/json", "US")

    assert json.loads(redacted) == {
        "data": {"from": "[PHONE]", "n": 4155552671, "t": ["[EMAIL]", None]}
    }


def test_a_form_body_has_its_values_redacted_and_anything_else_is_dropped() -> None:
    form = "CallSid=CA1&From=%2B14155552671&SpeechResult=mail+me+at+a%40b.co"

    assert redaction.redact_body(
        form, "application/x-www-form-urlencoded; charset=utf-8", "US"
    ) == ("CallSid=CA1&From=%5BPHONE%5D&SpeechResult=mail+me+at+%5BEMAIL%5D")
    assert redaction.redact_body("From: +14155552671", "text/plain", "US") == ""
