"""Personal data in free text is found by shape and check, and only where it is (docs/data.md)."""

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from stdnum import luhn

from callwatch.model import pii
from callwatch.model.pii import Found
from tests.model.redaction_corpus import lines, score


@pytest.mark.parametrize(
    ("text", "region", "redacted"),
    [
        ("call me on (212) 555-0187 today", "US", "call me on [PHONE] today"),
        ("ring +44 20 7946 0958 or 07911 123456", "US", "ring [PHONE] or 07911 123456"),
        ("ring +44 20 7946 0958 or 07911 123456", "GB", "ring [PHONE] or [PHONE]"),
        ("mail jo.m+x@mail.example.com.", "US", "mail [EMAIL]."),
        ("card 4111-1111-1111-1111 exp 08/28", "US", "card [CARD] exp 08/28"),
        ("amex 3782 822463 10005 2027", "US", "amex [CARD] 2027"),
        ("IBAN DE89 3704 0044 0532 0130 00 THANKS", "DE", "IBAN [IBAN] THANKS"),
        ("iban gb82west12345698765432", "GB", "iban [IBAN]"),
        ("SSN 512-34-8890 or 512 34 8890", "US", "SSN [SSN] or [SSN]"),
        ("am 05.12.2024 um 14:30 Uhr, 1.299,00 €", "DE", "am 05.12.2024 um 14:30 Uhr, 1.299,00 €"),
        ("Bestellnummer 030 12345678", "DE", "Bestellnummer 030 12345678"),
        ("order number: 2125550199", "US", "order number: 2125550199"),
    ],
)
def test_each_kind_is_replaced_by_its_placeholder_and_look_alikes_stay(
    text: str, region: str, redacted: str
) -> None:
    assert pii.redact(text, region) == redacted


@pytest.mark.parametrize(
    "kept",
    [
        "4111 1111 1111 1112",  # Luhn fails
        "1234 5678 9012 3452",  # Luhn holds, but no card network starts with 1
        "DE88 3704 0044 0532 0130 00",  # mod 97 fails
        "000-12-3456 666-12-3456 912-12-3456 123-00-4567",  # no such area, group
        "555-123-4567",  # no such area code
        "12/05/2024 2024-12-05 14:30 $1,299.99",
    ],
)
def test_values_of_the_shape_that_fail_their_check_stay(kept: str) -> None:
    assert pii.find(kept, "US") == []


def test_finds_are_in_order_with_their_places_and_never_overlap() -> None:
    text = "a@b.co 4111111111111111 212-555-0187"

    assert pii.find(text, "US") == [
        Found(0, 6, "EMAIL"),
        Found(7, 23, "CARD"),
        Found(24, 36, "PHONE"),
    ]


def test_the_region_is_the_first_number_libphonenumber_places() -> None:
    assert pii.region_of(None, "", "not a number", "+4930123456", "+15550001111") == "DE"
    assert pii.region_of("+881612345678", default="GB") == "GB"  # non-geographic: the default
    assert pii.region_of() == "US"


def test_the_corpus_recall_is_at_least_95_percent_and_false_positives_at_most_2() -> None:
    measured = score(lines())
    print("\n" + measured.table())  # shown with -s; docs/data.md#redaction holds the figures

    assert {kind: measured.recall(kind) >= 0.95 for kind in pii.KINDS} == dict.fromkeys(
        pii.KINDS, True
    )
    assert {kind: measured.false_rate(kind) <= 0.02 for kind in pii.KINDS} == dict.fromkeys(
        pii.KINDS, True
    )
    assert measured.kept_touched <= 0.02 * measured.kept
    assert (sum(measured.marked.values()) >= 120, measured.kept >= 150) == (True, True)


# Text as transcripts hold it: words, digits, punctuation and the separators numbers use.
_ALPHABET = st.sampled_from(list("abcdefghij XYZ@.+-()/,:0123456789€$ßé\n"))
_TEXT = st.text(_ALPHABET, max_size=120)


@given(_TEXT, st.sampled_from(["US", "GB", "DE", "FR", "ES", "IN"]))
@example("call 212-555-0187, card 4111 1111 1111 1111, a@b.co", "US")
def test_redacting_twice_changes_nothing_more(text: str, region: str) -> None:
    once = pii.redact(text, region)

    # `find`, not `redact` again: the memo would answer that the redaction redacts to itself.
    assert (pii.find(once, region), pii.redact(once, region)) == ([], once)


@given(st.text(st.characters(exclude_characters="@0123456789", codec="utf-8"), max_size=200))
def test_text_without_digits_or_at_signs_is_unchanged(text: str) -> None:
    # Any Unicode decimal digit counts as a digit to the phone matcher; only ASCII are left out,
    # so the others must be left alone too.
    assert pii.redact(text) == text


@st.composite
def _cards(draw: st.DrawFn) -> str:
    """A Luhn-valid number of a card network (13 to 19 digits), grouped as people write it."""
    size = draw(st.integers(13, 19))
    body = draw(st.sampled_from("23456")) + "".join(
        draw(st.lists(st.sampled_from("0123456789"), min_size=size - 2, max_size=size - 2))
    )
    digits = body + luhn.calc_check_digit(body)
    separator = draw(st.sampled_from(["", " ", "-"]))
    return separator.join(re.findall(r".{1,4}", digits))


@given(_cards(), _TEXT, _TEXT)
def test_a_luhn_valid_card_number_is_replaced_wherever_it_stands(
    card: str, before: str, after: str
) -> None:
    # Apart from the text around it by a space, as in any sentence. Digits running on past it
    # may be taken in too (a card number followed by " 00" is a longer valid one).
    redacted = pii.redact(f"{before} {card} {after}")

    assert (card in redacted, "[CARD]" in redacted) == (False, True)
