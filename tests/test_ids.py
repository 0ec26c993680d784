"""Identifiers: base32hex of time then randomness, sorting in the order they were made."""

import base64
import random

from callwatch import ids


def test_the_fast_encoding_is_rfc_4648_base32hex() -> None:
    values = [0, 1, 2**128 - 1, *(random.getrandbits(128) for _ in range(2000))]

    assert [ids._base32hex(value) for value in values] == [
        base64.b32hexencode(value.to_bytes(16)).decode()[:26].lower() for value in values
    ]


def test_ids_made_one_after_another_sort_in_that_order() -> None:
    made = [ids.new_id("evt") for _ in range(5000)]

    assert sorted(made) == made
    assert len(set(made)) == len(made)


def test_an_id_with_given_time_and_bits_is_exactly_determined() -> None:
    # 1 ms is bit 80 of 128: the tenth digit, worth 4
    assert ids.new_id("call", millis=1, bits=0) == "call_" + "0" * 9 + "4" + "0" * 16
