"""Events out to the systems that call us: the outbox (`outbox`: an `events` row written in the
transaction of the change it reports), the endpoints that subscribe to them (`endpoints`,
`urls`), and the worker that delivers them signed with Standard Webhooks, at least once,
retried for days (`delivery`, `attempts`, `schedule`, `signing`, `client`).

Settlement, refunds and auto-recharge import the outbox; this package imports none of them.
The HTTP routes and the wiring are `gateway.events_api`."""
