"""The HTTP face and the wiring of events out (`gateway.events`): `/v1/webhook-endpoints`,
`/v1/events`, and the delivery worker in `serve` and `worker` processes. Apart from
`gateway.events` because it uses the HTTP edge, which the outbox's writers must not reach."""
