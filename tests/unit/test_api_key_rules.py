"""The rules of API keys that need no database: scopes and what `admin` implies, rate classes,
the key format, and the durations and rate limits operators write."""

from __future__ import annotations

from datetime import timedelta

import pytest

from gateway import limits
from gateway.errors import InvalidRequest
from gateway.keys import tokens
from gateway.keys.model import RateLimit, parse_duration, parse_rate_limit
from gateway.keys.scopes import (
    RateClass,
    Scope,
    UnknownScope,
    grants,
    moves_money,
    parse_scopes,
    rate_class,
)


@pytest.mark.parametrize("needed", list(Scope))
def test_admin_implies_every_scope(needed: Scope) -> None:
    assert grants({Scope.ADMIN}, needed)


def test_a_scope_grants_only_itself() -> None:
    held = {Scope.ACCOUNTS_READ}
    assert grants(held, Scope.ACCOUNTS_READ)
    assert [s for s in Scope if grants(held, s)] == [Scope.ACCOUNTS_READ]


def test_an_unknown_scope_is_named() -> None:
    with pytest.raises(UnknownScope, match="'charges:delete'"):
        parse_scopes(["charges:read", "charges:delete"])
    assert parse_scopes([" charges:read", "admin "]) == {Scope.CHARGES_READ, Scope.ADMIN}


@pytest.mark.parametrize(
    ("scope", "method", "expected"),
    [
        (Scope.CHARGES_WRITE, "POST", RateClass.MONEY),
        (Scope.USAGE_WRITE, "POST", RateClass.MONEY),
        (Scope.ACCOUNTS_WRITE, "PUT", RateClass.WRITE),
        (Scope.EVENTS_ADMIN, "POST", RateClass.WRITE),
        (Scope.ADMIN, "POST", RateClass.WRITE),
        (Scope.CHARGES_READ, "GET", RateClass.READ),
        (Scope.EVENTS_ADMIN, "GET", RateClass.READ),
        (None, "GET", RateClass.READ),
        (None, "DELETE", RateClass.WRITE),
    ],
)
def test_rate_class_follows_scope_and_method(
    scope: Scope | None, method: str, expected: RateClass
) -> None:
    assert rate_class(scope, method) is expected
    assert moves_money(scope, method) is (expected is RateClass.MONEY)


def test_an_issued_key_parses_back_to_its_id_and_verifies_by_digest() -> None:
    issued = tokens.issue(tokens.Environment.LIVE)
    assert issued.text.startswith(f"sk_live_{issued.key_id.removeprefix('key_')}_")
    presented = tokens.parse(issued.text)
    assert presented is not None
    assert presented.environment is tokens.Environment.LIVE
    assert presented.key_id == issued.key_id
    assert tokens.digest(presented.secret) == issued.digest
    assert len(presented.secret) >= 43


def test_every_issued_key_is_new() -> None:
    keys = {tokens.issue(tokens.Environment.TEST).text for _ in range(200)}
    ids = {tokens.parse(k).key_id for k in keys}  # type: ignore[union-attr]
    assert len(keys) == len(ids) == 200


@pytest.mark.parametrize(
    "text",
    [
        "sk_test_" + "k" * 24,  # a bootstrap key of the tests: not in the format
        "sk_prod_0123456789ab_" + "s" * 43,
        "sk_test_0123456789AB_" + "s" * 43,
        "sk_test_0123456789ab_" + "s" * 42,
        "sk_test_0123456789ab_" + "s" * 43 + "!",
        "",
    ],
)
def test_text_outside_the_format_is_not_a_key(text: str) -> None:
    assert tokens.parse(text) is None


def test_a_bootstrap_key_id_is_stable_and_reveals_nothing() -> None:
    ident = tokens.bootstrap_key_id("sk_dev_secret")
    assert ident == tokens.bootstrap_key_id("sk_dev_secret")
    assert ident.startswith("key_")
    assert len(ident) == 20
    assert "secret" not in ident


@pytest.mark.parametrize(
    ("text", "seconds"), [("90d", 90 * 86_400), ("24h", 86_400), ("30m", 1800), ("0s", 0)]
)
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text, param="expires_in") == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["90", "1w", "-1d", "1.5h", "d", ""])
def test_a_bad_duration_names_its_parameter(text: str) -> None:
    with pytest.raises(InvalidRequest) as raised:
        parse_duration(text, param="expires_in")
    assert raised.value.param == "expires_in"


def test_a_rate_limit_override_is_a_class_a_quota_and_a_window() -> None:
    assert parse_rate_limit("money=600/1m") == (RateClass.MONEY, RateLimit(600, 60))
    assert parse_rate_limit("read=5/10s") == (RateClass.READ, RateLimit(5, 10))


@pytest.mark.parametrize(
    "text",
    [
        "cards=1/1s",
        "money=0/1s",
        "money=ten/1s",
        "money=10",
        "money=10/0s",
        f"money={limits.RATE_LIMIT_QUOTA_MAX + 1}/1s",
        f"money=1/{limits.RATE_LIMIT_WINDOW_SECONDS_MAX + 1}s",
    ],
)
def test_a_bad_rate_limit_is_refused(text: str) -> None:
    with pytest.raises(InvalidRequest):
        parse_rate_limit(text)
