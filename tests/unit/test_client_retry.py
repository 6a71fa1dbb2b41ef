"""The client's retry decision and its flow, without a clock or a network: which replies are
sent again (with the same Idempotency-Key and body), how long each wait is, when retrying
stops, and how a declined charge becomes the charge."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from gateway_client import ConnectionFailed, InvalidRequest
from gateway_client import operations as ops
from gateway_client.flow import Done, Driver, Send, Sleep, Step
from gateway_client.retry import RetryPolicy, retry_delay

POLICY = RetryPolicy(max_retries=3, backoff_base_seconds=0.5, backoff_cap_seconds=8.0)
CHARGE = {
    "id": "ch_1",
    "object": "charge",
    "account_id": "acct_1",
    "amount": 1000,
    "currency": "USD",
    "status": "failed",
    "provider": "sandbox",
    "provider_charge_id": None,
    "payment_method": "pm_card_chargeDeclined",
    "amount_refunded": 0,
    "failure_code": "card_declined",
    "failure_message": "declined",
    "description": None,
    "metadata": {},
    "created_at": "2026-12-04T23:59:21.406208Z",
    "updated_at": "2026-12-04T23:59:21.406208Z",
}


def answer(status: int, body: Any = None, **headers: str) -> httpx.Response:
    return httpx.Response(status, content=json.dumps(body).encode(), headers=headers)


def error(status: int, code: str, **headers: str) -> httpx.Response:
    body = {"error": {"type": "api_error", "code": code, "message": "m"}}
    return answer(status, body, **headers)


def test_a_request_in_flight_waits_at_least_its_retry_after() -> None:
    delay = retry_delay(POLICY, 1, error(409, "idempotency_key_in_use", **{"Retry-After": "7"}))
    assert delay is not None
    assert delay >= 7


@pytest.mark.parametrize("status", [429, 503])
def test_rate_limits_and_unavailability_are_retried_after_their_retry_after(status: int) -> None:
    delay = retry_delay(POLICY, 1, error(status, "x", **{"Retry-After": "2"}))
    assert delay is not None
    assert delay >= 2


def test_lost_connections_and_timeouts_are_retried_with_jittered_backoff() -> None:
    for attempt, nominal in [(1, 0.5), (2, 1.0), (3, 2.0)]:
        for reply in (httpx.ConnectError("refused"), httpx.ReadTimeout("slow")):
            delay = retry_delay(POLICY, attempt, reply)
            assert delay is not None
            assert nominal / 2 <= delay <= nominal


def test_backoff_never_grows_beyond_its_cap() -> None:
    policy = RetryPolicy(max_retries=50, backoff_base_seconds=0.5, backoff_cap_seconds=8.0)
    assert all(policy.backoff_seconds(attempt) <= 8.0 for attempt in range(1, 50))


@pytest.mark.parametrize(
    "reply",
    [
        error(409, "reference_reused"),
        error(400, "parameter_invalid"),
        error(402, "card_declined"),
        error(422, "idempotency_key_reused"),
        error(500, "api_error"),
        answer(200, {}),
        httpx.UnsupportedProtocol("ftp://"),
    ],
)
def test_answers_that_are_final_are_not_retried(reply: httpx.Response | Exception) -> None:
    assert retry_delay(POLICY, 1, reply) is None  # type: ignore[arg-type]


def test_retries_stop_after_max_retries() -> None:
    assert retry_delay(POLICY, 3, httpx.ConnectError("x")) is not None
    assert retry_delay(POLICY, 4, httpx.ConnectError("x")) is None


def test_a_retry_after_beyond_the_policy_maximum_is_an_answer_not_a_wait() -> None:
    assert retry_delay(POLICY, 1, error(503, "x", **{"Retry-After": "3600"})) is None


def run(call: Any, replies: list[httpx.Response | httpx.TransportError]) -> tuple[Any, list[Step]]:
    """Drive a call's flow with canned replies; the value and every step it took."""
    driver = Driver(POLICY, call)
    taken: list[Step] = []
    step = driver.first()
    while not isinstance(step, Done):
        taken.append(step)
        step = driver.next(replies.pop(0) if isinstance(step, Send) else None)
    return step.value, taken


def test_a_charge_is_sent_again_with_the_same_key_and_body_after_a_lost_connection() -> None:
    call = ops.create_charge(
        account_id="acct_1", amount=1000, currency="USD", payment_method="pm_card_visa"
    )
    charge, taken = run(call, [httpx.RemoteProtocolError("dropped"), answer(200, CHARGE)])
    sends = [step.request for step in taken if isinstance(step, Send)]
    assert len(sends) == 2
    assert sends[0] == sends[1]
    assert sends[0].idempotency_key is not None
    assert sends[0].idempotency_key.startswith("gwc_")
    assert isinstance(taken[1], Sleep)
    assert charge.id == "ch_1"


def test_each_charge_call_makes_its_own_key_unless_given_one() -> None:
    args: dict[str, Any] = {
        "account_id": "a",
        "amount": 1,
        "currency": "USD",
        "payment_method": "pm",
    }
    first, second = ops.create_charge(**args), ops.create_charge(**args)
    assert first.request.idempotency_key != second.request.idempotency_key
    assert ops.create_charge(**args, idempotency_key="mine").request.idempotency_key == "mine"


def test_a_declined_charge_is_read_back_as_the_failed_charge() -> None:
    call = ops.create_charge(
        account_id="acct_1", amount=1000, currency="USD", payment_method="pm_card_chargeDeclined"
    )
    declined = {"type": "card_error", "code": "card_declined", "message": "m", "charge": "ch_1"}
    charge, taken = run(call, [answer(402, {"error": declined}), answer(200, CHARGE)])
    follow_up = [step.request for step in taken if isinstance(step, Send)][1]
    assert (follow_up.method, follow_up.path) == ("GET", "/v1/charges/ch_1")
    assert (charge.status, charge.failure_code) == ("failed", "card_declined")


def test_an_error_answer_raises_its_typed_error_with_code_and_field() -> None:
    body = {"error": {"type": "invalid_request_error", "code": "parameter_invalid"}}
    body["error"] |= {"message": "amount must be positive", "param": "amount"}
    with pytest.raises(InvalidRequest) as raised:
        run(ops.get_charge("ch_1"), [answer(400, body, **{"Request-Id": "req_1"})])
    assert (raised.value.code, raised.value.param) == ("parameter_invalid", "amount")
    assert raised.value.request_id == "req_1"


def test_no_answer_after_every_retry_raises_naming_the_key_to_send_again() -> None:
    call = ops.create_refund("ch_1", idempotency_key="refund-1")
    with pytest.raises(ConnectionFailed) as raised:
        run(call, [httpx.ConnectError("refused")] * 4)
    assert raised.value.idempotency_key == "refund-1"


def test_path_parameters_cannot_reach_another_route() -> None:
    assert ops.get_charge("../accounts/x").request.path == "/v1/charges/..%2Faccounts%2Fx"
