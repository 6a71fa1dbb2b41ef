"""Every operation of the API the client offers, as a function of its arguments that makes a
`Call` (no I/O): the path, the query or body, the Idempotency-Key of a POST (the caller's, or
a new one made here, once, so every retry sends the same), and the model of the answer.
`gateway_client.resources` gives them to the sync and the async client alike."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any
from urllib.parse import quote

import httpx

from gateway_client.event_models import (
    DeletedEndpoint,
    EndpointList,
    EventDetail,
    EventList,
    WebhookEndpoint,
    WebhookEndpointWithSecret,
)
from gateway_client.flow import Call
from gateway_client.models import (
    Account,
    AutoRechargeSettings,
    BulkUsageRecord,
    Charge,
    ChargeList,
    RechargeDecision,
    Refund,
    Statement,
    UsageBatchResult,
    UsageBulkResult,
    UsageRecord,
    UsageRecordResult,
)
from gateway_client.wire import ApiRequest, decimal_text, error_fields, parse, without_none


def new_idempotency_key() -> str:
    return f"gwc_{uuid.uuid4().hex}"


def _segment(value: str) -> str:
    """A path parameter, quoted so an id can never reach another route."""
    return quote(value, safe="")


def _post(path: str, body: dict[str, Any] | None, key: str | None) -> ApiRequest:
    return ApiRequest("POST", path, body=body, idempotency_key=key or new_idempotency_key())


def _page(**query: Any) -> dict[str, str]:
    return {name: str(value) for name, value in without_none(**query).items()}


# Charges and refunds


def create_charge(
    *,
    account_id: str,
    amount: int,
    currency: str,
    payment_method: str,
    provider: str | None = None,
    description: str | None = None,
    metadata: dict[str, str] | None = None,
    idempotency_key: str | None = None,
) -> Call[Charge]:
    """Charge an account `amount` in the currency's minor unit. A decline is the charge,
    with status `failed` (read back from the API's 402, which names it)."""
    body = without_none(
        account_id=account_id,
        amount=amount,
        currency=currency,
        payment_method=payment_method,
        provider=provider,
        description=description,
        metadata=metadata,
    )
    return Call(_post("/v1/charges", body, idempotency_key), _charge_or_decline)


def _charge_or_decline(response: httpx.Response) -> Charge | Call[Charge]:
    error = error_fields(response) if response.status_code == 402 else None
    if error is not None and error.get("type") == "card_error" and "charge" in error:
        return get_charge(str(error["charge"]))
    return parse(Charge, response)


def get_charge(charge_id: str) -> Call[Charge]:
    return Call.of(ApiRequest("GET", f"/v1/charges/{_segment(charge_id)}"), Charge)


def list_charges(
    *, account_id: str, limit: int | None = None, starting_after: str | None = None
) -> Call[ChargeList]:
    query = _page(account_id=account_id, limit=limit, starting_after=starting_after)
    return Call.of(ApiRequest("GET", "/v1/charges", params=query), ChargeList)


def create_refund(
    charge_id: str, *, amount: int | None = None, idempotency_key: str | None = None
) -> Call[Refund]:
    """Refund `amount` (minor units) of a charge, or without it whatever is left."""
    path = f"/v1/charges/{_segment(charge_id)}/refunds"
    return Call.of(_post(path, without_none(amount=amount), idempotency_key), Refund)


# Accounts and usage


def put_account(
    account_id: str,
    *,
    currency: str,
    credit_limit: Decimal | str | None = None,
    auto_recharge: AutoRechargeSettings | None = None,
) -> Call[Account]:
    """Create an account or replace its settings (a setting left out takes its default:
    no credit limit, no auto-recharge)."""
    body = without_none(
        currency=currency,
        credit_limit=None if credit_limit is None else decimal_text(credit_limit),
        auto_recharge=None if auto_recharge is None else _recharge_body(auto_recharge),
    )
    return Call.of(ApiRequest("PUT", f"/v1/accounts/{_segment(account_id)}", body=body), Account)


def _recharge_body(settings: AutoRechargeSettings) -> dict[str, Any]:
    return without_none(
        threshold=decimal_text(settings.threshold),
        amount=settings.amount,
        payment_method=settings.payment_method,
        provider=settings.provider,
    )


def get_account(account_id: str) -> Call[Account]:
    return Call.of(ApiRequest("GET", f"/v1/accounts/{_segment(account_id)}"), Account)


def list_entries(
    account_id: str, *, limit: int | None = None, starting_after: str | None = None
) -> Call[Statement]:
    """The account's statement, newest first."""
    path = f"/v1/accounts/{_segment(account_id)}/entries"
    query = _page(limit=limit, starting_after=starting_after)
    return Call.of(ApiRequest("GET", path, params=query), Statement)


def decide_recharge(
    account_id: str, *, idempotency_key: str | None = None
) -> Call[RechargeDecision]:
    """Run an auto-recharge decision for the account now."""
    path = f"/v1/accounts/{_segment(account_id)}/recharge"
    return Call.of(_post(path, None, idempotency_key), RechargeDecision)


def _usage_body(record: UsageRecord) -> dict[str, Any]:
    return without_none(
        amount=decimal_text(record.amount),
        reference=record.reference,
        description=record.description,
    )


def record_usage(
    account_id: str,
    *,
    amount: Decimal | str,
    reference: str,
    description: str | None = None,
    idempotency_key: str | None = None,
) -> Call[UsageRecordResult]:
    """Debit one usage record (`amount` in major units); a repeated `reference` is a
    no-op (`duplicate`)."""
    body = _usage_body(UsageRecord(amount=amount, reference=reference, description=description))
    path = f"/v1/accounts/{_segment(account_id)}/usage"
    return Call.of(_post(path, body, idempotency_key), UsageRecordResult)


def record_usage_batch(
    account_id: str, records: Sequence[UsageRecord], *, idempotency_key: str | None = None
) -> Call[UsageBatchResult]:
    """Debit a batch of usage records for one account."""
    body = {"records": [_usage_body(record) for record in records]}
    path = f"/v1/accounts/{_segment(account_id)}/usage"
    return Call.of(_post(path, body, idempotency_key), UsageBatchResult)


def record_usage_bulk(
    records: Sequence[BulkUsageRecord], *, idempotency_key: str | None = None
) -> Call[UsageBulkResult]:
    """Debit usage records for many accounts in one request."""
    body = {"records": [_usage_body(r) | {"account_id": r.account_id} for r in records]}
    return Call.of(_post("/v1/usage", body, idempotency_key), UsageBulkResult)


# Events and webhook endpoints


def list_events(
    *,
    type: str | None = None,  # the API's own name for the filter
    object_id: str | None = None,
    limit: int | None = None,
    starting_after: str | None = None,
) -> Call[EventList]:
    """Events newest first, of one type or about one object if asked."""
    query = _page(type=type, object_id=object_id, limit=limit, starting_after=starting_after)
    return Call.of(ApiRequest("GET", "/v1/events", params=query), EventList)


def get_event(event_id: str) -> Call[EventDetail]:
    return Call.of(ApiRequest("GET", f"/v1/events/{_segment(event_id)}"), EventDetail)


def resend_event(
    event_id: str, *, endpoint: str | None = None, idempotency_key: str | None = None
) -> Call[EventDetail]:
    """Deliver an event again to the endpoints subscribed to it, or to `endpoint` only."""
    path = f"/v1/events/{_segment(event_id)}/resend"
    return Call.of(_post(path, without_none(endpoint=endpoint), idempotency_key), EventDetail)


_ENDPOINTS = "/v1/webhook-endpoints"


def _endpoint_path(endpoint_id: str, tail: str = "") -> str:
    return f"{_ENDPOINTS}/{_segment(endpoint_id)}{tail}"


def create_endpoint(
    *,
    url: str,
    enabled_events: Sequence[str],
    description: str | None = None,
    idempotency_key: str | None = None,
) -> Call[WebhookEndpointWithSecret]:
    """Register an endpoint for `enabled_events` (types, or `["*"]`); the answer holds its
    signing secret, shown only here."""
    body = without_none(url=url, enabled_events=list(enabled_events), description=description)
    return Call.of(_post(_ENDPOINTS, body, idempotency_key), WebhookEndpointWithSecret)


def list_endpoints(
    *, limit: int | None = None, starting_after: str | None = None
) -> Call[EndpointList]:
    query = _page(limit=limit, starting_after=starting_after)
    return Call.of(ApiRequest("GET", _ENDPOINTS, params=query), EndpointList)


def get_endpoint(endpoint_id: str) -> Call[WebhookEndpoint]:
    return Call.of(ApiRequest("GET", _endpoint_path(endpoint_id)), WebhookEndpoint)


def update_endpoint(
    endpoint_id: str,
    *,
    url: str | None = None,
    enabled_events: Sequence[str] | None = None,
    description: str | None = None,
    enabled: bool | None = None,
) -> Call[WebhookEndpoint]:
    """Change what is given; `enabled=True` re-enables a disabled endpoint."""
    events = None if enabled_events is None else list(enabled_events)
    body = without_none(url=url, enabled_events=events, description=description, enabled=enabled)
    request = ApiRequest("PATCH", _endpoint_path(endpoint_id), body=body)
    return Call.of(request, WebhookEndpoint)


def delete_endpoint(endpoint_id: str) -> Call[DeletedEndpoint]:
    return Call.of(ApiRequest("DELETE", _endpoint_path(endpoint_id)), DeletedEndpoint)


def rotate_endpoint_secret(
    endpoint_id: str,
    *,
    expires_in_seconds: int | None = None,
    idempotency_key: str | None = None,
) -> Call[WebhookEndpointWithSecret]:
    """A new signing secret; the previous one keeps signing beside it for
    `expires_in_seconds` (the service's default: a day)."""
    path = _endpoint_path(endpoint_id, "/rotate-secret")
    body = without_none(expires_in_seconds=expires_in_seconds)
    return Call.of(_post(path, body, idempotency_key), WebhookEndpointWithSecret)
