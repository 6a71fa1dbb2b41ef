"""The payment gateway service: API, settings, database, ledger, charges and workers."""
