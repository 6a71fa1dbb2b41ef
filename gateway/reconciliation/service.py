"""What the command line and the API share about runs: which provider (configured here, able
to list its records or read from report files), which window (default: the last day), and how
a run and a difference it found are shown."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg

from gateway import limits
from gateway.errors import invalid
from gateway.reconciliation.report_source import reads_reports
from gateway.reconciliation.store import Run
from providers.base import Capability, Provider
from providers.registry import NoSuchProvider, ProviderSet


def listing_provider(providers: ProviderSet, name: str) -> Provider:
    """The provider called `name`, if it can be reconciled against its lists (400 naming
    `provider`)."""
    provider = _configured(providers, name)
    if Capability.LIST not in provider.capabilities:
        how = "(Capability.LIST)"
        if reads_reports(provider):
            how = f"to read: give its reports, `gateway reconcile --provider {name} --report PATH`"
        raise invalid(
            "provider",
            f"{name} has no list API {how}",
            code="reconciliation_not_supported",
        )
    return provider


def report_provider(providers: ProviderSet, name: str) -> Provider:
    """The provider called `name`, if it is reconciled from report files (400 naming
    `report`)."""
    provider = _configured(providers, name)
    if not reads_reports(provider):
        raise invalid("report", f"{name} is reconciled against its lists, not report files")
    return provider


def _configured(providers: ProviderSet, name: str) -> Provider:
    try:
        return providers.get(name)
    except NoSuchProvider as exc:
        raise invalid("provider", str(exc)) from None


def window(
    since: datetime | None, until: datetime | None, now: datetime | None = None
) -> tuple[datetime, datetime]:
    """[since, until): `until` defaults to now, `since` to a day before `until`. Times must
    say their offset (a naive time is a guess at the time zone)."""
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise invalid(name, f"{name} must carry a UTC offset, e.g. 2026-03-01T00:00:00Z")
    end = until or now or datetime.now(UTC)
    start = since or end - timedelta(hours=limits.RECONCILE_WINDOW_HOURS_DEFAULT)
    if start >= end:
        raise invalid("since", "since must be before until")
    if end - start > timedelta(days=limits.RECONCILE_WINDOW_DAYS_MAX):
        raise invalid("since", f"a window is at most {limits.RECONCILE_WINDOW_DAYS_MAX} days")
    return start, end


def run_object(run: Run) -> dict[str, Any]:
    """A run as the API and the command line show it."""
    return {
        "id": run.id,
        "object": "reconciliation_run",
        "provider": run.provider,
        "since": run.since.isoformat(),
        "until": run.until.isoformat(),
        "heal": run.heal,
        "trigger": run.trigger.value,
        "status": run.status.value,
        "phase": run.phase,
        "counts": run.counts,
        "error": run.error,
        "created_at": run.created_at.isoformat(),
        "finished_at": None if run.finished_at is None else run.finished_at.isoformat(),
    }


def item_object(row: asyncpg.Record) -> dict[str, Any]:
    """One difference a run found, as the API and the command line show it."""
    return {
        "id": row["id"],
        "object": "reconciliation_item",
        "run": row["run_id"],
        "kind": row["kind"],
        "charge_id": row["charge_id"],
        "refund_id": row["refund_id"],
        "provider_ref": row["provider_ref"],
        "ours": _json(row["ours"]),
        "theirs": _json(row["theirs"]),
        "healed": row["healed"],
        "new": row["new"],
        "created_at": row["created_at"].isoformat(),
    }


def _json(value: Any) -> Any:
    """jsonb arrives as text unless a codec is set on the connection."""
    return json.loads(value) if isinstance(value, str) else value
