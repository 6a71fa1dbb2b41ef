"""API keys as data: named callers and their keys (hashed, scoped, rotated with overlap,
revoked), per-key rate limits, and the audit trail.

    scopes.py     what a key may do, and which rate class a request falls in
    tokens.py     the key format `sk_<env>_<id>_<secret>`: issuing, parsing, hashing
    model.py      callers, keys, principals, rate limits, durations
    store.py      the `api_callers` and `api_keys` tables
    service.py    create, list, rotate, revoke (each with its audit event)
    verify.py     from a presented bearer key to a principal (or a refusal)
    ratelimit.py  the token bucket in Redis, failing open
    audit.py      the append-only `audit_events` table
    cli.py        `gateway keys create|list|rotate|revoke`

The HTTP edge (the middlewares, `/v1/api-keys`, `/v1/audit-events`) is in `gateway.api`."""
