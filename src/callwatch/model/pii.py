"""Personal data in free text: where phone numbers, emails, payment cards, IBANs and US SSNs are.

Pure: no I/O, no clock. Each kind is found by its shape and then checked the way its issuer
checks it, so that a shape alone (an order number, a date, a price) is not taken for one:
phone numbers by libphonenumber's matcher (`phonenumbers`, leniency VALID: a number valid for
its region, dates refused), cards by the Luhn digit, IBANs by their country's length and the
mod-97 check, SSNs by their area, group and serial (`python-stdnum`). What it misses:
docs/data.md#redaction.
"""

import re
from dataclasses import dataclass
from typing import Literal

import phonenumbers
from stdnum import iban, luhn
from stdnum.us import ssn

Kind = Literal["EMAIL", "IBAN", "CARD", "SSN", "PHONE"]
KINDS: tuple[Kind, ...] = ("EMAIL", "IBAN", "CARD", "SSN", "PHONE")
DEFAULT_REGION = "US"  # for numbers written without a country code, when the call gives none


@dataclass(frozen=True, order=True)
class Found:
    start: int
    end: int
    kind: Kind


_EMAIL = re.compile(
    r"(?<![\w.+-])[A-Za-z0-9](?:[A-Za-z0-9._%+-]{0,62}[A-Za-z0-9_%+-])?"
    r"@(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,24}(?![\w-])"
)
# Two letters, two check digits, then up to 30 letters or digits in groups a space may part.
_IBAN = re.compile(r"(?<![\w])[A-Za-z]{2}\d{2}(?: ?[A-Za-z0-9]){10,30}(?![A-Za-z0-9])")
# A run of 13 or more digits, single spaces or dashes between any of them, in which a card
# number (13 to 19 digits: 4-4-4-4, 4-6-5, 19 in a row) is looked for; bounded, as each run costs
# the square of its length to search.
_CARD = re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,60}(?![\d-]|[.,]\d)")
# The first digit of every card network's numbers (Mastercard 2 and 5, Amex, Diners and JCB 3,
# Visa 4, Discover, Maestro and UnionPay 6): an order number starting 0, 1, 7, 8 or 9 is none.
_CARD_NETWORKS = frozenset("23456")
# As written (dashes) or as a speech-to-text engine writes it said (spaces).
_SSN = re.compile(r"(?<![\d-])\d{3}([- ])\d{2}\1\d{4}(?![\d-])")
_FIVE_DIGITS = re.compile(r"\d(?:\D*\d){4}")
# A value that is a time and nothing else (a webhook body's timestamps): no need to look.
_TIMESTAMP = re.compile(
    r"\d{4}-\d\d-\d\d(?:[T ]\d\d:\d\d(?::\d\d(?:\.\d+)?)?(?:Z|[+-]\d\d:?\d\d)?)?"
)
# What the phone matcher takes for a number but a person writes as a date.
_DATE = re.compile(r"\d{1,2}([./-])\d{1,2}\1\d{2,4}|\d{4}([./-])\d{1,2}\2\d{1,2}")
# A number right after one of these words is a reference, not a phone number.
_REFERENCE = re.compile(
    r"(?:order|invoice|ticket|case|reference|ref|tracking|booking|confirmation|account|"
    r"customer|member|policy|claim|serial|bestellung|bestellnummer|kundennummer|rechnung|"
    r"auftrag|vorgang|commande|facture|dossier|référence|reference|pedido|factura|"
    r"referencia|número de pedido)"
    r"(?:\s+(?:number|no\.?|nr\.?|num(?:ber|éro)?|id|#|n[°º]))?\s*[:#]?\s*$",
    re.IGNORECASE,
)


def find(text: str, region: str = DEFAULT_REGION) -> list[Found]:
    """The personal data in `text`, in order and never overlapping; `region` (ISO 3166 alpha-2)
    is where a number written without its country code is read as dialled."""
    if _unremarkable(text):
        return []
    found: list[Found] = []
    taken = bytearray(len(text))  # 1 where an earlier (more specific) kind has matched

    def add(start: int, end: int, kind: Kind) -> None:
        if not any(taken[start:end]):
            found.append(Found(start, end, kind))
            taken[start:end] = b"\x01" * (end - start)

    for match in _EMAIL.finditer(text):
        add(match.start(), match.end(), "EMAIL")
    for match in _IBAN.finditer(text):
        end = _iban_end(match.group())
        if end:
            add(match.start(), match.start() + end, "IBAN")
    for match in _CARD.finditer(text):
        span = _card_span(match.group())
        if span:
            add(match.start() + span[0], match.start() + span[1], "CARD")
    for match in _SSN.finditer(text):
        if ssn.is_valid(re.sub(r"\D", "", match.group())):
            add(match.start(), match.end(), "SSN")
    for number in phonenumbers.PhoneNumberMatcher(text, region, phonenumbers.Leniency.VALID):
        if _DATE.fullmatch(number.raw_string) or _REFERENCE.search(text, 0, number.start):
            continue
        # The matcher keeps a bracket opened before the number and closed after it: "(07911
        # 123456)" would leave a lone ")" behind.
        start = number.start + (number.raw_string.count("(") > number.raw_string.count(")"))
        add(start, number.end, "PHONE")
    return sorted(found)


def _unremarkable(text: str) -> bool:
    """Text that holds nothing `find` looks for, known cheaply: no `@` and under 5 digits (no
    card, IBAN or SSN is shorter, nor a phone number but a few Pacific islands' 4-digit ones),
    or a time and nothing else."""
    if "@" in text:
        return False
    return not _FIVE_DIGITS.search(text) or _TIMESTAMP.fullmatch(text) is not None


def _card_span(candidate: str) -> tuple[int, int] | None:
    """Where in `candidate` (digits parted by single spaces or dashes) the first, then longest,
    Luhn-valid card number of 13 to 19 digits is, parted by one kind of separator: its digits
    may run on into a year, a code or a number said just before it."""
    bounds = [0, *(i + 1 for i, char in enumerate(candidate) if char in " -")]
    ends = [*(i for i, char in enumerate(candidate) if char in " -"), len(candidate)]
    for start in bounds:
        for end in reversed(ends):
            digits = re.sub(r"\D", "", candidate[start:end])
            if len(digits) < 13:
                break
            one_separator = not (" " in candidate[start:end] and "-" in candidate[start:end])
            if (
                one_separator
                and len(digits) <= 19
                and digits[0] in _CARD_NETWORKS
                and luhn.is_valid(digits)
            ):
                return start, end
    return None


def _iban_end(candidate: str) -> int:
    """The length of the longest valid IBAN `candidate` starts with (0: none): a word after an
    IBAN (`… 00 THANKS`) is part of the shape but not of the number."""
    for end in range(len(candidate), 14, -1):
        if candidate[end - 1] != " " and iban.is_valid(candidate[:end]):
            return end
    return 0


def redact(text: str, region: str = DEFAULT_REGION) -> str:
    """`text` with each personal datum replaced by its kind in brackets (`[PHONE]`, `[EMAIL]`,
    `[CARD]`, `[IBAN]`, `[SSN]`); a placeholder holds no digit or `@`, so redacting again
    changes nothing."""
    if _unremarkable(text):
        return text
    key = (text, region)
    done = _REDACTED.get(key)
    if done is None:
        done = _replace(text, find(text, region))
        if len(_REDACTED) >= _REDACTED_MAX:
            _REDACTED.clear()
        # A call's turns are redacted in its details, its record and its raw bodies: once.
        _REDACTED[key] = _REDACTED[(done, region)] = done
    return done


# Texts redacted lately, and their redactions (which redact to themselves): a pure function's
# memo, bounded, shared by the worker's threads (a dict's get and set are atomic).
_REDACTED: dict[tuple[str, str], str] = {}
_REDACTED_MAX = 4096


def _replace(text: str, spans: list[Found]) -> str:
    if not spans:
        return text
    parts = []
    last = 0
    for span in spans:
        parts.append(text[last : span.start])
        parts.append(f"[{span.kind}]")
        last = span.end
    parts.append(text[last:])
    return "".join(parts)


def region_of(*numbers: str | None, default: str = DEFAULT_REGION) -> str:
    """The country of the first of these numbers (E.164 or with a `+`) that libphonenumber
    places, else `default`: a call's own numbers tell how its people write theirs."""
    for number in numbers:
        if not number:
            continue
        try:
            parsed = phonenumbers.parse(number, None)
        except phonenumbers.NumberParseException:
            continue
        region = phonenumbers.region_code_for_number(parsed)
        if region and region != "001":  # 001: a non-geographic number (satellite, UIFN)
            return region
    return default


def number_forms(number: str) -> list[str]:
    """The ways a platform may have written this number in a call's number fields, its E.164
    form first: `+14155550100`, `14155550100`, `4155550100`, `(415) 555-0100`, `+1 415-555-0100`
    (a national trunk prefix too: `030 1234567`, `0301234567`). ValueError unless the number is
    written with its country code (`+…`) and possible for that country."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        raise ValueError(
            "a phone number in E.164 form, with its country code: +14155550100"
        ) from None
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError("not a possible phone number for its country code")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    national = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.NATIONAL)
    international = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)
    others = {
        e164[1:],
        str(parsed.national_number),
        national,
        re.sub(r"\D", "", national),
        international,
    }
    return [e164, *sorted(others - {e164})]
