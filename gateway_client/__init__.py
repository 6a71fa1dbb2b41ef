"""A typed Python client for the payment gateway's HTTP API, sync (`Client`) and async
(`AsyncClient`) with the same surface, and `verify_event` for the systems that receive its
events. POSTs carry an Idempotency-Key (the caller's, or one made per call) and are retried
with that same key and body on lost connections, 409 in flight, 429 and 503. Guide:
docs/client.md.

    with Client("http://127.0.0.1:8080", api_key) as gateway:
        charge = gateway.charges.create(
            account_id="acct_42", amount=1000, currency="USD", payment_method="pm_card_visa"
        )"""

from gateway_client.clients import AsyncClient, Client
from gateway_client.errors import (
    ApiError,
    AuthenticationFailed,
    Conflict,
    ConnectionFailed,
    GatewayClientError,
    IdempotencyKeyReused,
    InvalidRequest,
    NotFound,
    PaymentRequired,
    PermissionDenied,
    RateLimited,
    ServiceUnavailable,
    SignatureInvalid,
)
from gateway_client.event_models import (
    DeletedEndpoint,
    Delivery,
    DeliveryAttempt,
    EndpointList,
    Event,
    EventData,
    EventDetail,
    EventList,
    WebhookEndpoint,
    WebhookEndpointWithSecret,
)
from gateway_client.models import (
    Account,
    AccountBalance,
    AutoRecharge,
    AutoRechargeSettings,
    BulkUsageRecord,
    BulkUsageResult,
    Charge,
    ChargeList,
    LedgerEntry,
    Page,
    RechargeAttempt,
    RechargeDecision,
    Refund,
    Statement,
    UsageBatchResult,
    UsageBulkResult,
    UsageRecord,
    UsageRecordResult,
    UsageResult,
)
from gateway_client.webhooks import verify_event

__all__ = [
    "Account",
    "AccountBalance",
    "ApiError",
    "AsyncClient",
    "AuthenticationFailed",
    "AutoRecharge",
    "AutoRechargeSettings",
    "BulkUsageRecord",
    "BulkUsageResult",
    "Charge",
    "ChargeList",
    "Client",
    "Conflict",
    "ConnectionFailed",
    "DeletedEndpoint",
    "Delivery",
    "DeliveryAttempt",
    "EndpointList",
    "Event",
    "EventData",
    "EventDetail",
    "EventList",
    "GatewayClientError",
    "IdempotencyKeyReused",
    "InvalidRequest",
    "LedgerEntry",
    "NotFound",
    "Page",
    "PaymentRequired",
    "PermissionDenied",
    "RateLimited",
    "RechargeAttempt",
    "RechargeDecision",
    "Refund",
    "ServiceUnavailable",
    "SignatureInvalid",
    "Statement",
    "UsageBatchResult",
    "UsageBulkResult",
    "UsageRecord",
    "UsageRecordResult",
    "UsageResult",
    "WebhookEndpoint",
    "WebhookEndpointWithSecret",
    "verify_event",
]
