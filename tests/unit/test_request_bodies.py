"""The API's JSON rules (`gateway.api.body`): every refusal is a 400 naming the field by its
JSON path, or `body`, and never quotes the value; webhook bodies get the structural rules
only; identifiers and free text differ only in TAB, LF and CR."""

from __future__ import annotations

import pytest

from gateway import limits
from gateway.api.body import check_json_limits, loads_strict
from gateway.api.errors import ApiError
from gateway.text import refused_character

CARD = "4242424242424242"


def refusal(raw: bytes) -> tuple[str, str | None]:
    with pytest.raises(ApiError) as caught:
        loads_strict(raw)
    assert caught.value.status == 400
    assert CARD not in caught.value.message
    return caught.value.code, caught.value.param


def nested(levels: int) -> bytes:
    return b'{"a":' * (levels - 1) + b"[]" + b"}" * (levels - 1)


def test_a_body_within_every_rule_parses_to_plain_values() -> None:
    raw = b'{"amount": 100, "metadata": {"note": "line one\\nline\\ttwo"}, "records": [1, -2]}'
    assert loads_strict(raw) == {
        "amount": 100,
        "metadata": {"note": "line one\nline\ttwo"},
        "records": [1, -2],
    }


@pytest.mark.parametrize(
    ("raw", "param"),
    [
        (b'{"description": "' + CARD.encode() + b'\\u0000"}', "description"),
        (b'{"metadata": {"note": "a\\u0000b"}}', "metadata.note"),
        (b'{"records": [{"reference": "r"}, {"reference": "\\u001b[2J"}]}', "records.1.reference"),
        (b'{"description": "\\ud800"}', "description"),  # an unpaired surrogate
        (b'{"currency": "\xed\xa0\x80"}', "currency"),  # one as raw bytes: json decodes them
        (b'{"description": "del\x7f"}', "description"),
        (b'{"metadata": {"n\\u0000te": "x"}}', "metadata"),  # a key: named by its object
        (b'"\\u0000"', "body"),
    ],
)
def test_control_characters_and_unpaired_surrogates_are_refused_by_path(
    raw: bytes, param: str
) -> None:
    assert refusal(raw) == ("invalid_character", param)


def test_json_deeper_than_the_limit_is_refused_and_ten_thousand_levels_never_recurse() -> None:
    assert loads_strict(nested(limits.JSON_DEPTH_MAX)) is not None
    assert refusal(nested(limits.JSON_DEPTH_MAX + 1)) == ("json_too_deep", "body")
    assert refusal(b"[" * 10_000 + b"]" * 10_000) == ("json_too_deep", "body")
    assert refusal(b'{"a":' * 10_000 + b"1" + b"}" * 10_000) == ("json_too_deep", "body")


def test_integers_longer_than_the_limit_are_refused_without_being_converted() -> None:
    longest = "9" * limits.JSON_INTEGER_DIGITS_MAX
    assert loads_strict(f'{{"amount": -{longest}}}'.encode()) == {"amount": -int(longest)}
    assert refusal(f'{{"amount": {longest}9}}'.encode()) == ("integer_too_long", "amount")
    assert refusal(b'{"amount": ' + b"9" * 5000 + b"}") == ("integer_too_long", "amount")


def test_a_key_twice_in_one_object_is_refused_whichever_copy_would_win() -> None:
    assert refusal(b'{"amount": 100, "amount": 99900}') == ("duplicate_key", "amount")
    assert refusal(b'{"metadata": {"a": "1", "b": "2", "a": "3"}}') == (
        "duplicate_key",
        "metadata.a",
    )


def test_floats_are_named_by_their_full_path() -> None:
    assert refusal(b'{"records": [{"amount": 1}, {"amount": 0.5}]}') == (
        "float_not_allowed",
        "records.1.amount",
    )
    assert refusal(b'{"amount": NaN}') == ("float_not_allowed", "amount")


def test_what_is_not_json_is_a_400_naming_the_body() -> None:
    assert refusal(b'{"amount": ') == ("body_invalid_json", "body")
    assert refusal(b"\xff\xfe") == ("body_invalid_json", "body")


def test_webhook_bodies_get_the_structural_rules_and_keep_floats_and_free_text() -> None:
    check_json_limits(b'{"fee_percent": 2.9, "note": "\\u0007bell", "n": 12}')
    check_json_limits(b"amount=100&currency=usd")  # not JSON: its provider judges it
    for raw, code in [
        (b"[" * 10_000 + b"]" * 10_000, "json_too_deep"),
        (b'{"amount": ' + b"9" * 5000 + b"}", "integer_too_long"),
        (b'{"id": "evt_1", "id": "evt_2"}', "duplicate_key"),
    ]:
        with pytest.raises(ApiError) as caught:
            check_json_limits(raw)
        assert (caught.value.status, caught.value.code) == (400, code)


def test_identifiers_refuse_every_control_character_and_free_text_keeps_tab_lf_cr() -> None:
    for allowed_in_text in "\t\n\r":
        assert refused_character(f"a{allowed_in_text}b", free_text=True) is None
        assert refused_character(f"a{allowed_in_text}b") == f"U+{ord(allowed_in_text):04X}"
    for never in ("\x00", "\x01", "\x1f", "\x7f", "\ud800", "\udcff"):
        assert refused_character(never, free_text=True) is not None
        assert refused_character(never) is not None
    assert refused_character("café \u0085 ok") is None  # C1 controls are left alone
