"""`make chaos`: the exactly-once claim checked against the processor's own records under a
mix of faults (docs/chaos.md). The service never imports this package."""
