"""What makes two charge requests "the same" for idempotency, and what a charge request
accepts, without a database."""

from __future__ import annotations

import pytest

from gateway.api.body import validate
from gateway.api.errors import from_domain
from gateway.charges.model import ChargeCreate
from gateway.errors import InvalidRequest
from gateway.idempotency import fingerprint

BODY = {"account_id": "acct_1", "amount": 500, "currency": "usd", "payment_method": "pm_card_visa"}


def test_key_order_and_whitespace_do_not_change_a_fingerprint() -> None:
    reordered = dict(reversed(list(BODY.items())))
    assert fingerprint("POST", "/v1/charges", BODY) == fingerprint("POST", "/v1/charges", reordered)


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/charges", BODY | {"amount": 501}),
        ("POST", "/v1/charges/ch_1/refunds", BODY),
        ("PUT", "/v1/charges", BODY),
        ("POST", "/v1/charges", BODY | {"metadata": {"a": "b"}}),
    ],
)
def test_another_value_route_or_method_changes_the_fingerprint(
    method: str, path: str, body: dict[str, object]
) -> None:
    assert fingerprint(method, path, body) != fingerprint("POST", "/v1/charges", BODY)


def test_a_charge_request_normalizes_the_currency_code() -> None:
    assert validate(ChargeCreate, BODY).currency == "USD"


@pytest.mark.parametrize(
    ("change", "param"),
    [
        ({"amount": "500"}, "amount"),
        ({"amount": -1}, "amount"),
        ({"amount": True}, "amount"),
        ({"currency": "dollars"}, "currency"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"surprise": 1}, "surprise"),
        ({"account_id": ""}, "account_id"),
    ],
)
def test_a_bad_field_is_named_in_the_400(change: dict[str, object], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        validate(ChargeCreate, BODY | change)
    assert from_domain(caught.value).status == 400
    assert caught.value.param == param
