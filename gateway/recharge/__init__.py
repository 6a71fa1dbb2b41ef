"""Auto-recharge: when a prepaid balance falls below its threshold, charge the saved card
once per crossing through the ordinary charge path, and never storm a declining card.

    policy    pure decision and decline state machine
    lock      Redis single flight (fast path, fails open)
    store     PostgreSQL rows and the one-open-attempt guarantee
    service   one decision end to end
    metrics   a counter and a log line per decision
"""
