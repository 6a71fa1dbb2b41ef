"""The double-entry ledger: tables, the chart of accounts, posting, and the invariants check.
It imports nothing from payments or webhooks; they post into it (see `posting`)."""
