"""Every limit the service enforces, named in one place, units last.

A limit protects the service and its callers from unbounded work: request bodies, batches,
queues, retries and waits. Change one here and the API, the workers and the docs follow."""

from typing import Final

# HTTP edge
BODY_BYTES_MAX: Final = 1_048_576  # 1 MiB: a full usage batch of 1000 records is ~150 KiB
WEBHOOK_BODY_BYTES_MAX: Final = 262_144  # processors send small events; refuse floods early
IDEMPOTENCY_KEY_LENGTH_MAX: Final = 255
PAGE_LIMIT_DEFAULT: Final = 10
PAGE_LIMIT_MAX: Final = 100
# Processors cap metadata at 50 keys (Stripe, the sandbox) and we add two of our own
# (charge_id, account_id), so a caller may send 48.
METADATA_KEYS_MAX: Final = 48
METADATA_KEY_LENGTH_MAX: Final = 40
METADATA_VALUE_LENGTH_MAX: Final = 500
DESCRIPTION_LENGTH_MAX: Final = 1000
ID_LENGTH_MAX: Final = 255
# JSON bodies: our deepest body is three levels (a usage batch's records) and our largest
# integer has 15 digits (micros); Python's own parser recurses (~1,000 levels end in a
# RecursionError) and refuses integers over 4,300 digits, so both are bounded well before.
JSON_DEPTH_MAX: Final = 32
JSON_INTEGER_DIGITS_MAX: Final = 30
# Slow clients. aiohttp's `keepalive_timeout` bounds the time from the connection opening (or
# the previous response) to a complete request head, so it is both the header read timeout
# and how long an idle kept-alive connection stays open: long enough for a pooled caller to
# reuse its connection, short enough that a client trickling its headers cannot hold a
# connection (and a file descriptor) for long.
HTTP_HEAD_TIMEOUT_SECONDS: Final = 15.0
# A whole request body, read where a handler reads it: 1 MiB at ~300 kbit/s. A client that is
# slower gets a 408 and its connection closed.
HTTP_BODY_TIMEOUT_SECONDS: Final = 30.0

# Database
# A fixed pool: requests beyond it wait for a connection (up to the connect timeout) instead
# of opening overflow connections that are closed again at once (each new one costs a TCP
# connect, authentication and asyncpg's type introspection, under exactly the load that
# needed it).
DB_POOL_SIZE: Final = 20
DB_POOL_SIZE_MAX: Final = 200
DB_CONNECT_TIMEOUT_SECONDS: Final = 5.0
DB_STATEMENT_TIMEOUT_MS: Final = 15_000
READINESS_TIMEOUT_SECONDS: Final = 2.0
TRANSACTION_RETRIES_MAX: Final = 5  # serialization failures and deadlocks

# Serving processes per `gateway serve` (GATEWAY_PROCESSES)
PROCESSES_MAX: Final = 64

# Python's cyclic garbage collector in serving processes: (young generation allocations, then
# collections of each generation per collection of the next older one). Default (700, 10, 10).
GC_THRESHOLDS: Final = (20_000, 20, 20)

# Background work
WORKER_RESTART_BACKOFF_SECONDS_MAX: Final = 30.0
SHUTDOWN_GRACE_SECONDS: Final = 10.0

# Charges
CHARGE_AMOUNT_MINOR_MAX: Final = 99_999_999  # Stripe's own ceiling for most currencies
CHARGE_LOCK_TIMEOUT_SECONDS: Final = 75.0  # > the retry deadline plus one read timeout
# A charge is re-sent under its processor key only while the key is this far from the end of
# the processor's retention; later, the processor is asked for the charge first.
PROCESSOR_KEY_RETENTION_MARGIN_SECONDS: Final = 3600.0
IDEMPOTENCY_KEY_RETENTION_HOURS_MIN: Final = 24  # the contract: keys live at least a day
COMPLETER_BATCH_MAX: Final = 50  # unfinished charges resolved per completer pass
FINISH_BATCH_MAX: Final = 32  # charge finishes written in one transaction (group commit)
COMPLETER_CONCURRENCY_MAX: Final = 8  # processor lookups in flight per pass
COMPLETER_IDLE_SECONDS: Final = 1.0  # pause between passes when there was nothing to do
COMPLETER_BACKOFF_SECONDS_MAX: Final = 30.0  # pause after a pass failed (database down)
REAPER_BATCH_MAX: Final = 1_000  # idempotency keys deleted per statement
REAPER_INTERVAL_SECONDS: Final = 300.0

# Ledger
LEDGER_BATCH_TRANSACTIONS_MAX: Final = 10_000  # one post_transactions call
LEDGER_LEGS_MAX: Final = 100  # entries in one ledger transaction
LEDGER_REFERENCE_LENGTH_MAX: Final = 512  # fits "usage:<account id>:<usage reference>"
LEDGER_CODE_LENGTH_MAX: Final = 64
LEDGER_CHECK_PROBLEMS_MAX: Final = 100  # problems listed by /v1/ledger/check (all are counted)
# The check reads in pages, each one statement far inside DB_STATEMENT_TIMEOUT_MS (measured on
# the benchmark machine: well under a second each) whatever the ledger holds.
LEDGER_CHECK_PAGE_TRANSACTIONS: Final = 20_000  # transactions (and their entries) per statement
LEDGER_CHECK_PAGE_ENTRIES: Final = 200_000  # entries summed by account per statement
LEDGER_CHECK_PAGE_ACCOUNTS: Final = 20_000  # cached balances compared per statement
# A check that saves its checkpoint waits this long at most for transactions that may still
# commit ids below it; postings commit in milliseconds, so only a stuck one holds it back.
LEDGER_CHECK_SETTLE_SECONDS: Final = 5.0
USAGE_BATCH_RECORDS_MAX: Final = 1000  # one account's batch (`POST /v1/accounts/{id}/usage`)
# A metering pipeline's request across accounts (`POST /v1/usage`), and the most any one
# read-and-write of usage handles: one statement to read, one to write, about 0.1 s of
# database time at 10 records per account (docs/benchmarks.md).
USAGE_BULK_RECORDS_MAX: Final = 10_000
# Its body: 10,000 records of ~100 bytes are ~1 MiB; room for references and descriptions.
USAGE_BULK_BODY_BYTES_MAX: Final = 8_388_608
# `record_usage` calls of at most this many records are group-committed: a write's fixed cost
# (a read, a posting, a commit: about a millisecond) is worth sharing only while it is as
# large as the records' own (about 5 us each). Larger calls are written at once, in parallel.
USAGE_GROUP_COMMIT_CALL_RECORDS_MAX: Final = 100
USAGE_AMOUNT_MICROS_MAX: Final = 10**12  # one usage record: at most 1,000,000 major units
CREDIT_LIMIT_MICROS_MAX: Final = 10**15  # keeps every cached balance far inside bigint
USAGE_REFERENCE_LENGTH_MAX: Final = 200
TRANSACTION_RETRY_BACKOFF_SECONDS_MAX: Final = 0.2  # jittered, between whole-transaction retries

# Webhooks (inbox writes, settlement worker)
WEBHOOK_EVENTS_PER_DELIVERY_MAX: Final = 100  # Adyen batches up to a few dozen items
WEBHOOK_HEADERS_KEPT_MAX: Final = 64  # headers stored with each event, as evidence
WEBHOOK_HEADER_VALUE_LENGTH_MAX: Final = 1024
WEBHOOK_INSERT_WINDOW_SECONDS: Final = 0.001  # group commit: wait this long to gather writes
WEBHOOK_INSERT_ROWS_MAX: Final = 1000  # rows per group-commit INSERT
WEBHOOK_INSERT_FLUSHES_MAX: Final = 4  # group commits in flight at once (pool connections)
WEBHOOK_SETTLE_BATCH_MAX: Final = 500  # events claimed and settled in one transaction
WEBHOOK_ATTEMPTS_MAX: Final = 15  # then the event is dead-lettered (~1 h of retries)
WEBHOOK_RETRY_BACKOFF_SECONDS_BASE: Final = 0.5  # doubles per attempt, +-20 % jitter
WEBHOOK_RETRY_BACKOFF_SECONDS_MAX: Final = 600.0
WEBHOOK_POLL_SECONDS: Final = 1.0  # the worker polls this often when no wake-up comes
WEBHOOK_ERROR_LENGTH_MAX: Final = 4000  # error text kept on a failed event
WEBHOOK_METRICS_REFRESH_SECONDS: Final = 5.0  # inbox depth and lag gauges
# Reconciliation
RECONCILE_PAGE_SIZE: Final = 500  # records compared (and healed) in one transaction
RECONCILE_WINDOW_HOURS_DEFAULT: Final = 24  # a run without `since` looks back this far
RECONCILE_WINDOW_DAYS_MAX: Final = 400  # a longer window is a mistake, not a run
RECONCILE_EVERY_MINUTES_DEFAULT: Final = 60  # GATEWAY_RECONCILE_EVERY_MINUTES
RECONCILE_POLL_SECONDS: Final = 30.0  # the worker looks for due and abandoned runs this often
RECONCILE_MISSED_EVENTS_DAYS: Final = 30  # Stripe keeps undelivered events 30 days
RECONCILE_REPORT_FILES_MAX: Final = 100  # report files one run reads (a year of batches)
# Auto-recharge
RECHARGE_DECLINES_MAX: Final = 3  # consecutive declines before auto-recharge pauses
RECHARGE_COOLDOWN_SECONDS_BASE: Final = 60.0  # after the first decline; doubles per decline
RECHARGE_COOLDOWN_SECONDS_MAX: Final = 3600.0
RECHARGE_LOCK_TTL_MS: Final = 30_000  # Redis single-flight lock; outlives one charge call
RECHARGE_REDIS_RETRY_AFTER_SECONDS: Final = 5.0  # after a Redis error, PostgreSQL alone
RECHARGE_QUEUE_ACCOUNTS_MAX: Final = 10_000  # accounts waiting for a decision in a process
RECHARGE_CONCURRENCY_MAX: Final = 8  # decisions (and charge calls) running at once
RECHARGE_SWEEP_INTERVAL_SECONDS: Final = 5.0  # catches what a crash or full queue dropped
RECHARGE_SWEEP_BATCH_MAX: Final = 100
RECHARGE_RESUME_AFTER_SECONDS: Final = 30.0  # an attempt with no charge yet is re-driven after
RECHARGE_AMOUNT_MINOR_MAX: Final = 100_000_000  # one top-up: 1,000,000.00 in a 2-digit currency

# Events out (gateway.events): the outbox, the endpoints and the delivery worker
EVENT_ENDPOINTS_MAX: Final = 100  # registered webhook endpoints per deployment
EVENT_ENDPOINT_URL_LENGTH_MAX: Final = 2048
# The largest `data.object` an event carries, as JSON. Our largest object is a charge with
# every field at its limit in 4-byte characters (~110 KiB); the text a processor gives it
# (a failure message) comes in a webhook of at most WEBHOOK_BODY_BYTES_MAX.
EVENT_OBJECT_BYTES_MAX: Final = 524_288
EVENT_DELIVERY_TIMEOUT_SECONDS: Final = 10.0  # one attempt: connect, send, first answer
# A claimed delivery is leased for two attempts' timeouts (it may wait for one, claimed ahead)
# plus this: a worker that dies mid-attempt leaves it due again once the lease runs out.
EVENT_DELIVERY_LEASE_MARGIN_SECONDS: Final = 5.0
EVENT_DELIVERY_CONCURRENCY_MAX: Final = 256  # attempts in flight per worker process
# Attempts in flight per endpoint per worker process: a slow endpoint holds at most these,
# never the others' share. Claims are made for the slots free, so a fast endpoint's
# throughput is about this many per claim round (64: ~3,000/s to a local receiver).
EVENT_DELIVERY_ENDPOINT_CONCURRENCY_MAX: Final = 64
# Retries: the n-th failed attempt waits base * 2^(n-1) seconds, capped, +-20 % jitter, until
# the window since the event (or its resend) is over: about three days, 24 attempts.
EVENT_RETRY_BASE_SECONDS: Final = 5.0
EVENT_RETRY_BACKOFF_SECONDS_MAX: Final = 21_600.0  # 6 hours
EVENT_RETRY_WINDOW_SECONDS: Final = 259_200.0  # 3 days; failing for all of it disables
EVENT_DELIVERY_ATTEMPTS_MAX: Final = 30  # a bound the window reaches first
EVENT_RESPONSE_EXCERPT_BYTES: Final = 1024  # kept of each answer, as evidence
EVENT_ATTEMPT_ERROR_LENGTH_MAX: Final = 500
EVENT_ATTEMPTS_SHOWN_MAX: Final = 100  # attempts `GET /v1/events/{id}` lists, newest first
EVENT_DELIVERY_POLL_SECONDS: Final = 0.5  # the worker looks this often when no wake-up comes
EVENT_DELIVERY_OUTAGE_BACKOFF_SECONDS_MAX: Final = 30.0  # database down: retry, doubling to this
EVENT_RECORD_BATCH_MAX: Final = 1000  # attempt results written in one transaction
# Attempt results gather this long before they are written: nobody waits on a record, and at
# thousands of attempts a second it makes one transaction of dozens instead of a few each.
EVENT_RECORD_WINDOW_SECONDS: Final = 0.02
EVENT_METRICS_REFRESH_SECONDS: Final = 5.0  # queue depth, lag and disabled endpoints
EVENT_SECRET_OVERLAP_SECONDS_DEFAULT: Final = 86_400  # a rotated secret still signs for a day
EVENT_SECRET_OVERLAP_SECONDS_MAX: Final = 604_800  # at most a week
EVENT_REPLAY_BATCH_MAX: Final = 1000  # deliveries `gateway events replay` queues per transaction

# API keys (gateway/keys)
API_KEY_ID_BYTES: Final = 6  # 12 hex digits: the key's visible id, unique per database
API_KEY_SECRET_BYTES: Final = 32  # 256 random bits, 43 url-safe characters
API_CALLER_NAME_LENGTH_MAX: Final = 64
API_KEY_LIFETIME_SECONDS_MAX: Final = 2 * 365 * 86_400  # a key lives at most two years
API_KEY_ROTATION_OVERLAP_SECONDS_DEFAULT: Final = 86_400  # time for every replica to redeploy
API_KEY_ROTATION_OVERLAP_SECONDS_MAX: Final = 30 * 86_400
# A verified key is trusted this long in a process before its row is read again: a key on
# every request is then not a query on every request, and a revocation made in another
# process takes effect here within this time (at once in the process that made it).
API_KEY_CACHE_SECONDS: Final = 5.0
API_KEY_CACHE_ENTRIES_MAX: Final = 10_000  # keys (and unknown ids) remembered per process
# `last_used_at` is written at most this often per key: a hot key is not a write per request.
API_KEY_LAST_USED_INTERVAL_SECONDS: Final = 60.0

AUDIT_BATCH_MAX: Final = 256  # audit events written in one statement (group commit)
# An answer waits this long at most for its audit event: a database in trouble must not hold
# back a charge's answer (the write goes on without it, and a failure is logged in full).
AUDIT_WAIT_SECONDS: Final = 1.0

# Rate limits per key: a token bucket per key and rate class, `quota` requests that refill
# evenly over `window` seconds (so `quota / window` per second sustained, bursts of `quota`).
# Money: card charges, refunds and usage debits. Stripe allows a live account about 100
# operations a second; a caller sending more only turns into processor 429s and requests
# waiting in our retries, so one key gets that rate, with two seconds of burst.
RATE_LIMIT_MONEY_QUOTA: Final = 200
RATE_LIMIT_MONEY_WINDOW_SECONDS: Final = 2
# Other writes (account settings, key administration, webhook replays) are operator-paced;
# 10 a second stops a runaway script long before it matters to the database.
RATE_LIMIT_WRITE_QUOTA: Final = 100
RATE_LIMIT_WRITE_WINDOW_SECONDS: Final = 10
# Reads are single index lookups; 500 a second keeps one caller's polling loop from holding
# the whole connection pool (20 per process).
RATE_LIMIT_READ_QUOTA: Final = 1000
RATE_LIMIT_READ_WINDOW_SECONDS: Final = 2
RATE_LIMIT_QUOTA_MAX: Final = 1_000_000  # per-key overrides stay within these
RATE_LIMIT_WINDOW_SECONDS_MAX: Final = 86_400
RATE_LIMIT_REDIS_RETRY_AFTER_SECONDS: Final = 5.0  # after a Redis error, limits are off this long

# Startup waits this long (by default; at most the max) for a database that is not reachable
# yet, retrying with backoff up to the longest pause: long enough for a PostgreSQL crash
# recovery or a container started together, short enough that a wrong URL fails visibly.
DATABASE_STARTUP_WAIT_SECONDS_DEFAULT = 60.0
DATABASE_STARTUP_WAIT_SECONDS_MAX = 3600.0
DATABASE_STARTUP_RETRY_SECONDS_MAX = 5.0
