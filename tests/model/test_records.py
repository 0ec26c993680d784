"""The record is the call's facts between its identity and its assembly, in a fixed order."""

from callwatch.model.records import CallDetails, CallFacts, CallRecord


def test_the_record_lists_its_identity_then_the_facts_then_its_assembly() -> None:
    # The order of the stored JSON, the API's responses and the OpenAPI document's properties.
    identity = ["id", "org_id", "source", "provider", "provider_call_id"]

    assert list(CallRecord.model_fields) == [
        *identity,
        *CallFacts.model_fields,
        "timeline",
        "assembly",
        "updated_at",
    ]


def test_the_record_holds_every_detail_but_the_raw_latency_samples() -> None:
    assert set(CallDetails.model_fields) - set(CallRecord.model_fields) == {"latency_samples"}
