"""`POST /v1/usage`: usage records for many accounts in one request, as a metering pipeline
sends them, once per Idempotency-Key:

    {"records": [{"account_id": "acct_42", "amount": "0.0079", "reference": "msg-1"}, ...]}

At most `USAGE_BULK_RECORDS_MAX` records; each is what `POST /v1/accounts/{id}/usage` takes,
plus the account it debits. The records are grouped per account inside and decided as that
route decides them, each account's in request order; a record for an account that does not
exist is refused (`account_not_found`) and the others go ahead. The answer (200) lists every
record's result in request order, the counts, and the balance after the request of every
account named that exists:

    {"object": "usage_bulk", "data": [{"account_id", "reference", "status", "code"?}, ...],
     "applied": n, "duplicate": n, "refused": n,
     "accounts": [{"account_id", "currency", "balance"}, ...]}

The debits, the key and the answer commit together (one transaction); then the accounts whose
balance went down below their auto-recharge threshold are offered for a top-up decision."""

from __future__ import annotations

from typing import Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field

from gateway import limits, money
from gateway.accounts.api import UsageIn
from gateway.accounts.shapes import UsageBulkResult
from gateway.accounts.usage import debit_usage_bulk
from gateway.accounts.usage_plan import BulkOutcome, BulkRecord, UsageStatus, status_counts
from gateway.api import idempotent
from gateway.api.body import read_json, validate
from gateway.api.routing import add_route
from gateway.idempotency import StoredResponse
from gateway.keys.scopes import Scope
from gateway.recharge import runtime as recharge
from gateway.recharge import store as recharge_store
from gateway.state import ROLE, Role
from gateway.text import Identifier


class BulkUsageIn(UsageIn):
    account_id: Identifier


class UsageBulkIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: list[BulkUsageIn] = Field(min_length=1, max_length=limits.USAGE_BULK_RECORDS_MAX)


def _answer(records: list[BulkRecord], outcome: BulkOutcome) -> dict[str, Any]:
    data = []
    for record, result in zip(records, outcome.results, strict=True):
        line = {"account_id": record.account_id, "reference": result.reference}
        line["status"] = result.status.value
        if result.code is not None:
            line["code"] = result.code.value
        data.append(line)
    return {
        "object": "usage_bulk",
        "data": data,
        **status_counts(outcome.results),
        "accounts": [
            {
                "account_id": account_id,
                "currency": balance.currency,
                "balance": money.format_micros(balance.balance_micros),
            }
            for account_id, balance in outcome.balances.items()
        ],
    }


async def post_bulk_usage(request: web.Request) -> web.Response:
    data = await read_json(request, limits.USAGE_BULK_BODY_BYTES_MAX)
    records = [
        BulkRecord(r.account_id, money.parse_micros(r.amount), r.reference, r.description)
        for r in validate(UsageBulkIn, data).records
    ]
    below: list[str] = []

    async def debit(conn: asyncpg.Connection[Any]) -> StoredResponse:
        outcome = await debit_usage_bulk(conn, records)
        debited = {
            record.account_id
            for record, result in zip(records, outcome.results, strict=True)
            if result.status is UsageStatus.APPLIED
        }
        # Read in the transaction, so a failure fails the request before anything commits.
        below[:] = await recharge_store.below_threshold_among(conn, sorted(debited))
        return idempotent.answer(_answer(records, outcome))

    response = await idempotent.in_one_transaction(request, data, debit)
    for account_id in below:  # committed: each decided in the background
        recharge.notify(request.app, account_id)
    return response


def setup(app: web.Application) -> None:
    if app[ROLE] is not Role.SERVE:  # workers serve no /v1 routes
        return
    add_route(
        app,
        "POST",
        "/v1/usage",
        post_bulk_usage,
        summary="Debit usage for many accounts (a metering pipeline's batch)",
        scope=Scope.USAGE_WRITE,
        tag="accounts",
        operation_id="create_usage_bulk",
        body=UsageBulkIn,
        responses={
            200: "Per-record results and the accounts' balances",
            413: f"More than {limits.USAGE_BULK_BODY_BYTES_MAX} bytes",
        },
        response_model=UsageBulkResult,
    )
