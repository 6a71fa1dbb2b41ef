"""Customer accounts: prepaid balances kept in the ledger, their settings, usage debits,
statements, and the HTTP routes for them (and for the ledger check)."""
