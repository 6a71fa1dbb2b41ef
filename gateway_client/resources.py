"""The client's surface, written once for both clients: `client.charges.create(...)` is
`operations.create_charge` run by the client's runner. `operation` is a descriptor typed
per runner, so on `Client` the method returns the answer and on `AsyncClient` an awaitable
of it, with the operation's own signature in both."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, Generic, ParamSpec, TypeVar, overload

from gateway_client import operations as ops
from gateway_client.flow import Call
from gateway_client.runners import AsyncRunner, BlockingRunner

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R", bound=BlockingRunner | AsyncRunner)


class Resource(Generic[R]):
    def __init__(self, runner: R) -> None:
        self._runner: R = runner


class operation(Generic[P, T]):  # lower case: it reads as a declaration, like property
    """`name = operation(build)` in a resource: calling `resource.name(...)` builds the call
    and runs it."""

    def __init__(self, build: Callable[P, Call[T]]) -> None:
        self._build = build

    @overload
    def __get__(self, resource: Resource[BlockingRunner], owner: type) -> Callable[P, T]: ...

    @overload
    def __get__(
        self, resource: Resource[AsyncRunner], owner: type
    ) -> Callable[P, Awaitable[T]]: ...

    def __get__(self, resource: Resource[Any], owner: type) -> Callable[P, Any]:
        build = self._build

        @functools.wraps(build)
        def run(*args: P.args, **kwargs: P.kwargs) -> Any:
            return resource._runner.run(build(*args, **kwargs))

        return run


class Charges(Resource[R]):
    create = operation(ops.create_charge)
    get = operation(ops.get_charge)
    list = operation(ops.list_charges)


class Refunds(Resource[R]):
    create = operation(ops.create_refund)


class Accounts(Resource[R]):
    put = operation(ops.put_account)
    get = operation(ops.get_account)
    entries = operation(ops.list_entries)
    recharge = operation(ops.decide_recharge)


class Usage(Resource[R]):
    record = operation(ops.record_usage)
    record_batch = operation(ops.record_usage_batch)
    bulk = operation(ops.record_usage_bulk)


class Events(Resource[R]):
    list = operation(ops.list_events)
    get = operation(ops.get_event)
    resend = operation(ops.resend_event)


class WebhookEndpoints(Resource[R]):
    create = operation(ops.create_endpoint)
    list = operation(ops.list_endpoints)
    get = operation(ops.get_endpoint)
    update = operation(ops.update_endpoint)
    delete = operation(ops.delete_endpoint)
    rotate_secret = operation(ops.rotate_endpoint_secret)


class Resources(Generic[R]):
    """Every resource, on one runner: what `Client` and `AsyncClient` share."""

    def __init__(self, runner: R) -> None:
        self.charges: Charges[R] = Charges(runner)
        self.refunds: Refunds[R] = Refunds(runner)
        self.accounts: Accounts[R] = Accounts(runner)
        self.usage: Usage[R] = Usage(runner)
        self.events: Events[R] = Events(runner)
        self.webhook_endpoints: WebhookEndpoints[R] = WebhookEndpoints(runner)
