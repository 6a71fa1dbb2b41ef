"""HTTP routes for customer accounts and the ledger:

    PUT  /v1/accounts/{account_id}          create or replace settings {currency, credit_limit?}
    GET  /v1/accounts/{account_id}          balance (exact decimal string) and settings
    GET  /v1/accounts/{account_id}/entries  the statement: {data, has_more}, newest first
    POST /v1/accounts/{account_id}/usage    one record {amount, reference, description?}
                                            or {"records": [...]} (at most 1000), once per
                                            Idempotency-Key
    GET  /v1/ledger/check                   run the ledger's invariants now

Amounts are decimal strings in major units ("0.0079"), at most 6 fractional digits (micros);
a JSON number with a fraction is refused with a 400 naming the field. What each route
answers is described in `gateway.accounts.shapes`."""

from __future__ import annotations

from typing import Annotated, Any

import asyncpg
from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field, RootModel, field_validator

from gateway import limits, money
from gateway.accounts import shapes, store
from gateway.accounts.usage import debit_usage
from gateway.accounts.usage_plan import (
    AccountNotFound,
    RefusalCode,
    UsageOutcome,
    UsageRecord,
    UsageResult,
    status_counts,
)
from gateway.api import idempotent
from gateway.api.body import parse_body, read_json, validate
from gateway.api.errors import json_response
from gateway.api.parameters import PAGE_LIMIT, page_limit
from gateway.api.routing import add_route
from gateway.db import in_transaction, raw_connection
from gateway.errors import Conflict, NotFound, PaymentRequired, invalid
from gateway.idempotency import StoredResponse
from gateway.keys.scopes import Scope
from gateway.ledger.check import check_ledger
from gateway.ledger.customers import account_object
from gateway.processors import PROVIDERS
from gateway.recharge import api as recharge_api
from gateway.recharge import runtime as recharge
from gateway.recharge import store as recharge_store
from gateway.state import ENGINE, ROLE, Role
from gateway.text import IDENTIFIER_CHARACTERS

TAG = "accounts"


class AccountSettings(BaseModel):
    """PUT replaces the settings: a field left out takes its default."""

    model_config = ConfigDict(extra="forbid")
    currency: str = Field(description="ISO 4217 code in any case, e.g. USD or usd")
    credit_limit: str = Field(
        default="0", description="How far below zero the balance may go (major units)"
    )
    auto_recharge: recharge_api.AutoRechargeIn | None = None

    @field_validator("currency")
    @classmethod
    def _known_currency(cls, value: str) -> str:
        # Upper case at the edge, as `POST /v1/charges` does: stored, compared and shown as
        # USD. ASCII only: Python upper-cases some other letters to ASCII ones (the dotless i
        # to I), and no ISO code is spelled with them.
        code = value.upper() if value.isascii() else value
        money.currency(code)
        return code

    @field_validator("credit_limit")
    @classmethod
    def _decimal(cls, value: str) -> str:
        if money.parse_micros(value) > limits.CREDIT_LIMIT_MICROS_MAX:
            raise ValueError(f"at most {money.format_micros(limits.CREDIT_LIMIT_MICROS_MAX)}")
        return value


class UsageIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    amount: str = Field(description='Major units as a decimal string, e.g. "0.0079"')
    reference: Annotated[
        str,
        Field(min_length=1, max_length=limits.USAGE_REFERENCE_LENGTH_MAX),
        IDENTIFIER_CHARACTERS,
    ]
    description: str | None = Field(default=None, max_length=limits.DESCRIPTION_LENGTH_MAX)

    @field_validator("amount")
    @classmethod
    def _positive_micros(cls, value: str) -> str:
        micros = money.parse_micros(value)
        if micros <= 0:
            raise ValueError("must be greater than 0")
        if micros > limits.USAGE_AMOUNT_MICROS_MAX:
            raise ValueError(f"at most {money.format_micros(limits.USAGE_AMOUNT_MICROS_MAX)}")
        return value

    def record(self) -> UsageRecord:
        return UsageRecord(money.parse_micros(self.amount), self.reference, self.description)


class UsageBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    records: list[UsageIn] = Field(min_length=1, max_length=limits.USAGE_BATCH_RECORDS_MAX)


class UsageBody(RootModel[UsageIn | UsageBatchIn]):
    """`POST /v1/accounts/{id}/usage`: one record, or a batch under `records`."""


def _account_id(request: web.Request) -> str:
    account_id = request.match_info["account_id"]
    if len(account_id) > limits.ID_LENGTH_MAX or not account_id.isprintable():
        raise invalid(
            "account_id", f"account_id must be 1 to {limits.ID_LENGTH_MAX} printable characters"
        )
    return account_id


async def put_account(request: web.Request) -> web.Response:
    account_id = _account_id(request)
    body = await parse_body(request, AccountSettings)
    engine = request.app[ENGINE]
    auto = body.auto_recharge
    recharge_config = (
        None
        if auto is None
        else recharge_api.config_from(auto, body.currency, request.app[PROVIDERS])
    )

    async def configure(conn: asyncpg.Connection[Any]) -> bool:
        created = await store.configure(
            conn, account_id, body.currency, money.parse_micros(body.credit_limit)
        )
        await recharge_store.configure(conn, account_id, body.currency, recharge_config)
        return created

    try:
        created = await in_transaction(engine, configure)
    except store.CurrencyLocked:
        raise Conflict(
            "account_currency_locked",
            f"Account '{account_id}' has ledger entries; its currency cannot change",
            param="currency",
        ) from None
    account = await store.fetch(engine, account_id)
    if account is None:
        raise RuntimeError(f"account {account_id} missing right after it was configured")
    auto_view = await recharge_api.describe(engine, account_id)
    return json_response(account_object(account, auto_view), status=201 if created else 200)


async def get_account(request: web.Request) -> web.Response:
    account_id = _account_id(request)
    account = await store.fetch(request.app[ENGINE], account_id)
    if account is None:
        raise NotFound("account", account_id, param="account_id")
    auto_view = await recharge_api.describe(request.app[ENGINE], account_id)
    return json_response(account_object(account, auto_view))


def _page(request: web.Request) -> tuple[int, int | None]:
    limit = page_limit(request)
    after = request.query.get("starting_after")
    if after is None:
        return limit, None
    number = after.removeprefix("ent_")
    entry_id = after.startswith("ent_") and number.isascii() and number.isdigit()
    if not entry_id or len(number) > 18:
        raise invalid("starting_after", "starting_after must be an entry id like 'ent_42'")
    return limit, int(number)


async def list_entries(request: web.Request) -> web.Response:
    account_id = _account_id(request)
    limit, after = _page(request)
    engine = request.app[ENGINE]
    account = await store.fetch(engine, account_id)
    if account is None:
        raise NotFound("account", account_id, param="account_id")
    entries, has_more = await store.statement(engine, account_id, limit=limit, starting_after=after)
    data = [
        {
            "object": e.kind,
            "id": f"ent_{e.id}",
            "side": e.side,
            "amount": money.format_micros(e.amount_micros),
            "currency": account.currency,
            "reference": e.reference,
            "code": e.code,
            "metadata": e.metadata,
            "created_at": e.created_at.isoformat(),
        }
        for e in entries
    ]
    return json_response({"object": "list", "data": data, "has_more": has_more})


def _result_body(result: UsageResult) -> dict[str, Any]:
    body: dict[str, Any] = {"reference": result.reference, "status": result.status.value}
    if result.code is not None:
        body["code"] = result.code.value
    return body


def _single_answer(record: UsageRecord, outcome: UsageOutcome) -> StoredResponse:
    """One record's answer; a refused debit ran (and changed nothing): its 402 or 409 is
    the request's outcome, stored under the key like a 200."""
    [result] = outcome.results
    balance = money.format_micros(outcome.balance_micros)
    if result.code is RefusalCode.INSUFFICIENT_BALANCE:
        return idempotent.refusal(
            PaymentRequired(
                "insufficient_balance",
                "The debit would take the balance below its credit limit",
                param="amount",
                details={"balance": balance, "currency": outcome.currency},
            )
        )
    if result.code is RefusalCode.REFERENCE_REUSED:
        return idempotent.refusal(
            Conflict(
                "reference_reused",
                f"Reference '{record.reference}' was already used with another amount",
                param="reference",
            )
        )
    return idempotent.answer(
        {
            "object": "usage_record",
            **_result_body(result),
            "amount": money.format_micros(record.amount_micros),
            "currency": outcome.currency,
            "balance": balance,
        }
    )


def _batch_answer(outcome: UsageOutcome) -> StoredResponse:
    return idempotent.answer(
        {
            "object": "usage_batch",
            "data": [_result_body(r) for r in outcome.results],
            **status_counts(outcome.results),
            "currency": outcome.currency,
            "balance": money.format_micros(outcome.balance_micros),
        }
    )


async def post_usage(request: web.Request) -> web.Response:
    """The debit, its key and its answer commit together: a crash never leaves a debit
    whose answer a retry could not replay. An unknown account stores nothing."""
    account_id = _account_id(request)
    data = await read_json(request)
    batch = isinstance(data, dict) and "records" in data
    records = (
        [r.record() for r in validate(UsageBatchIn, data).records]
        if batch
        else [validate(UsageIn, data).record()]
    )

    async def debit(conn: asyncpg.Connection[Any]) -> StoredResponse:
        try:
            outcome = await debit_usage(conn, account_id, records)
        except AccountNotFound:
            raise NotFound("account", account_id, param="account_id") from None
        return _batch_answer(outcome) if batch else _single_answer(records[0], outcome)

    response = await idempotent.in_one_transaction(request, data, debit)
    recharge.notify(request.app, account_id)  # committed: a top-up is decided in the background
    return response


async def ledger_check(request: web.Request) -> web.Response:
    async with raw_connection(request.app[ENGINE]) as conn:
        report = await check_ledger(conn)
    return json_response(report.as_dict())


def setup(app: web.Application) -> None:
    if app[ROLE] is not Role.SERVE:  # workers serve no /v1 routes (and authenticate none)
        return
    path = "/v1/accounts/{account_id}"
    add_route(
        app,
        "PUT",
        path,
        put_account,
        scope=Scope.ACCOUNTS_WRITE,
        summary="Create or configure an account",
        tag=TAG,
        body=AccountSettings,
        responses={200: "Updated", 201: "Created", 409: "Currency locked"},
        response_model=shapes.Account,
    )
    add_route(
        app,
        "GET",
        path,
        get_account,
        scope=Scope.ACCOUNTS_READ,
        summary="An account's balance and settings",
        tag=TAG,
        responses={200: "The account", 404: "No such account"},
        response_model=shapes.Account,
    )
    add_route(
        app,
        "GET",
        f"{path}/entries",
        list_entries,
        scope=Scope.ACCOUNTS_READ,
        summary="The account's statement",
        tag=TAG,
        query={"limit": PAGE_LIMIT, "starting_after": "An entry id: the page after it"},
        responses={200: "A page of entries", 404: "No such account"},
        response_model=shapes.Statement,
    )
    add_route(
        app,
        "POST",
        f"{path}/usage",
        post_usage,
        scope=Scope.USAGE_WRITE,
        summary="Debit usage (one record or a batch)",
        tag=TAG,
        body=UsageBody,
        responses={
            200: "Per-record results",
            402: "Insufficient balance (single record)",
            404: "No such account (nothing stored)",
            409: "Reference reused with another amount (single record), or a request with "
            "this key is in flight",
        },
        response_model=shapes.UsageAnswer,
    )
    add_route(
        app,
        "GET",
        "/v1/ledger/check",
        ledger_check,
        scope=Scope.LEDGER_READ,
        summary="Run the ledger's invariants now",
        tag="ledger",
        responses={200: "The report"},
        response_model=shapes.LedgerReport,
    )
