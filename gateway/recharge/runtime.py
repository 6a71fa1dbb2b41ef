"""Wiring auto-recharge into the app: its dependencies, the decision queue and the sweep as
supervised background loops, `POST /v1/accounts/{id}/recharge` (once per Idempotency-Key),
and the call the accounts routes make after a usage debit commits: `notify(app, account_id)`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from gateway import limits
from gateway.api import idempotent
from gateway.api.routing import add_route
from gateway.charges.deps import CHARGE_DEPS
from gateway.db import raw_connection
from gateway.idempotency import StoredResponse
from gateway.keys.scopes import Scope
from gateway.recharge import api, service, store
from gateway.recharge.charging import ChargePathAdapter
from gateway.recharge.lock import SingleFlight
from gateway.recharge.worker import Pending, sweep_forever
from gateway.state import ENGINE, REDIS, ROLE, Role
from gateway.workers import supervised


@dataclass(frozen=True)
class Recharge:
    deps: service.Deps
    pending: Pending


RECHARGE: web.AppKey[Recharge] = web.AppKey("recharge", Recharge)


async def _recharge(app: web.Application) -> AsyncIterator[None]:
    deps = service.Deps(
        engine=app[ENGINE],
        lock=SingleFlight(app[REDIS]),
        charges=ChargePathAdapter(app[CHARGE_DEPS]),
        balance_of=store.customer_balance,
    )
    app[RECHARGE] = Recharge(deps, Pending())
    yield


async def _decide_queued(app: web.Application) -> None:
    recharge = app[RECHARGE]
    await recharge.pending.drain(
        lambda account_id: service.run_if_below(recharge.deps, account_id),
        concurrency=limits.RECHARGE_CONCURRENCY_MAX,
    )


async def _sweep(app: web.Application) -> None:
    recharge = app[RECHARGE]
    await sweep_forever(recharge.deps, recharge.pending)


def notify(app: web.Application, account_id: str) -> None:
    """After a usage debit has committed: queue a decision for `account_id` (it runs in the
    background and does nothing unless the account is due a top-up). Never blocks; a full
    queue drops the offer and the sweep finds the account instead."""
    app[RECHARGE].pending.offer(account_id)


async def post_recharge(request: web.Request) -> web.Response:
    """One decision per Idempotency-Key. It may charge a card, so it runs under the key's
    lock, outside any transaction; running it again is safe (an open attempt is in flight,
    never a second top-up), which is what a takeover after a crash does."""
    account_id = request.match_info["account_id"]
    recharge = request.app[RECHARGE]

    async def decide() -> StoredResponse:
        async with raw_connection(recharge.deps.engine) as conn:
            if await store.load(conn, account_id) is None:
                raise api.not_configured(account_id)
        opened = await service.run(recharge.deps, account_id)
        attempt = None
        if opened is not None and opened.attempt is not None:
            async with raw_connection(recharge.deps.engine) as conn:
                attempt = await store.attempt(conn, opened.attempt.id)
        return idempotent.answer(api.decision_object(account_id, opened, attempt))

    body = await idempotent.optional_json(request)
    return await idempotent.under_lock(request, body, decide)


def setup(app: web.Application) -> None:
    """Auto-recharge: after the charges feature (its deps are the charge path)."""
    app.cleanup_ctx.append(_recharge)
    app.cleanup_ctx.append(supervised("recharge.decider", _decide_queued))
    app.cleanup_ctx.append(supervised("recharge.sweep", _sweep))
    if app[ROLE] is not Role.SERVE:
        return
    add_route(
        app,
        "POST",
        "/v1/accounts/{account_id}/recharge",
        post_recharge,
        scope=Scope.CHARGES_WRITE,
        summary="Decide on an auto-recharge top-up now (same rules as a threshold crossing)",
        tag="accounts",
        operation_id="decide_recharge",
        responses={
            200: "The decision, and the attempt it made or found in flight",
            400: "Auto-recharge not configured (nothing stored)",
        },
        response_model=api.RechargeDecision,
    )
