"""The fields a rule can compare, read off CallRecord, and why a path names none of them."""

from callwatch.alerts.fields import FIELDS, OTHERS, Field, unknown


def test_fields_take_their_kind_and_choices_from_the_record() -> None:
    assert [FIELDS["latency.turn.p95"], FIELDS["recording.status"], OTHERS["transcript"]] == [
        Field("number"),
        Field("text", ("available", "pending", "missing", "none")),
        "a list",
    ]


def test_a_path_that_names_no_field_says_what_it_is_or_might_have_been() -> None:
    assert [
        unknown("latency.trun.p95"),
        unknown("evaluations.passed"),
        unknown("transcript.text"),
        unknown("nothing.like.it"),
    ] == [
        "unknown field 'latency.trun.p95'; did you mean 'latency.turn.p95'?",
        "'evaluations' is a list: use 'any evaluation failed'",
        "'transcript' is a list and cannot be compared",
        "unknown field 'nothing.like.it'",
    ]
