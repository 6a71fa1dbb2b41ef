"""What a processor's answer to a refund look-up concludes, the same for every provider: no
refund (authoritatively none, so re-sending is safe), the one refund, or a refusal.

A look-up that matched several refunds found a double refund: that is refused loudly and
never resolved by picking one, because whichever we picked, the other is money sent out that
our ledger would not know about."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from providers.base import ProviderRequestError, RefundRequest, RefundResult

log = structlog.get_logger(__name__)


def one_refund(
    provider: str, request: RefundRequest, matches: Sequence[RefundResult]
) -> RefundResult | None:
    """The refund among `matches` (the processor's refunds carrying `request`'s identity), or
    None when there is none. Several, or one of another amount than `request`'s, raise
    `ProviderRequestError`: callers of a look-up treat any `ProviderError` as not knowing."""
    if not matches:
        return None
    if len(matches) > 1:
        ids = ", ".join(str(match.provider_refund_id) for match in matches)
        log.error(
            "provider.duplicate_refunds", provider=provider, refund_id=request.refund_id, ids=ids
        )
        raise ProviderRequestError(
            f"{provider}: several refunds carry refund_id {request.refund_id}: {ids}"
        )
    (refund,) = matches
    if refund.amount_minor != request.amount_minor:
        raise ProviderRequestError(
            f"{provider}: refund {refund.provider_refund_id} for refund_id {request.refund_id} "
            f"is {refund.amount_minor}, not {request.amount_minor}"
        )
    return refund
