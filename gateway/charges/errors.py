"""Telling a database outage from a bug, and the 503 it becomes. Money paths fail closed: if
the database cannot record what we are about to do, we do not do it."""

from __future__ import annotations

import asyncpg
import sqlalchemy.exc

from gateway.api.errors import ApiError

_DOWN = (
    OSError,  # refused, reset, unreachable
    TimeoutError,  # connect or pool timeout
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,  # connection closed under us
    asyncpg.CannotConnectNowError,
    asyncpg.QueryCanceledError,  # statement timeout
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
)


def is_database_down(exc: BaseException) -> bool:
    if isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, _DOWN)


def database_unavailable(charge_id: str | None = None) -> ApiError:
    return ApiError(
        503,
        "database_unavailable",
        "The service cannot reach its database; nothing was charged by this request. Retry "
        "with the same Idempotency-Key",
        headers={"Retry-After": "1"},
        extra={"charge": charge_id} if charge_id else None,
    )
