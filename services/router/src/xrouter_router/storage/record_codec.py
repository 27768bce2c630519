"""The generation record's codec, shared by every store that keeps records as documents (the
PostgreSQL batch function's JSON and the Redis ledger stream's entries), and money as stored."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from xrouter_router.domain.errors import Attempt, InvalidRequest
from xrouter_router.domain.ledger import GenerationRecord

_QUANTUM = Decimal("1E-8")
_MAX_AMOUNT = Decimal(2**63 - 1).scaleb(-8)


def money(amount: Decimal) -> Decimal:
    """`amount` as numeric(20, 8) stores it. InvalidRequest when it cannot be stored."""
    if not amount.is_finite():
        raise InvalidRequest(f"not an amount of money: {amount}")
    try:
        rounded = amount.quantize(_QUANTUM, rounding=ROUND_HALF_UP)
    except InvalidOperation as exc:  # more digits than the decimal context holds
        raise InvalidRequest(f"amount out of range: {amount}") from exc
    if abs(rounded) > _MAX_AMOUNT:
        raise InvalidRequest(f"amount out of range: {amount}")
    return rounded


def generation_document(r: GenerationRecord) -> dict[str, Any]:
    """The record as one element of xrouter_record_generations' batch (and of the ledger stream):
    created_at in unix seconds and cost (gross), cost_net, vat and vat_rate decimal strings, all
    already rounded as stored (to the microsecond, to 1e-8), so that a record reads back the same
    from the stream and from the table. InvalidRequest when the cost cannot be stored."""
    return {
        "id": r.id, "created_at": round(r.created_at, 6), "key_id": r.key_id, "account_id": r.account_id,
        "model": r.model, "provider": r.provider, "streamed": r.streamed,
        "prompt_tokens": r.prompt_tokens, "completion_tokens": r.completion_tokens,
        "cached_tokens": r.cached_tokens, "reasoning_tokens": r.reasoning_tokens,
        "cache_write_tokens": r.cache_write_tokens,
        "counts_native": r.counts_native, "cost": str(money(r.cost)), "latency_ms": r.latency_ms,
        "generation_ms": r.generation_ms, "finish_reason": r.finish_reason, "status": r.status,
        "attempts": [{"model": a.model, "provider": a.provider, "deployment": a.deployment,
                      "outcome": a.outcome, "latency_ms": a.latency_ms, "error": a.error,
                      "status": a.status} for a in r.attempts],
        "jurisdiction": r.jurisdiction,
        **_currency_fields(r),
        # cost is gross; cost_net is for readers of the document (PostgreSQL stores it).
        "cost_net": str(money(r.cost) - money(r.vat)), "vat": str(money(r.vat)),
        "vat_rate": str(r.vat_rate),
    }


def _currency_fields(r: GenerationRecord) -> dict[str, Any]:
    """The price currency, and for one not RUB the rate, its date (YYYY-MM-DD, when it has one)
    and the foreign cost (decimal strings); absent for RUB, so that records in RUB keep their
    documents' old shape."""
    if r.fx_rate is None or r.cost_original is None:
        return {}
    fields = {"price_currency": r.price_currency, "fx_rate": str(r.fx_rate),
              "cost_original": str(money(r.cost_original))}
    if r.fx_date is not None:
        fields["fx_date"] = r.fx_date.isoformat()
    return fields


def generation_from_document(doc: Mapping[str, Any]) -> GenerationRecord:
    """generation_document's inverse; KeyError, TypeError or ValueError when it is not one."""
    return GenerationRecord(
        id=str(doc["id"]), created_at=float(doc["created_at"]), key_id=doc["key_id"],
        account_id=doc["account_id"], model=doc["model"], provider=doc["provider"],
        streamed=bool(doc["streamed"]), prompt_tokens=int(doc["prompt_tokens"]),
        completion_tokens=int(doc["completion_tokens"]), cached_tokens=int(doc["cached_tokens"]),
        reasoning_tokens=int(doc["reasoning_tokens"]),
        # Absent from documents written before the field existed.
        cache_write_tokens=int(doc.get("cache_write_tokens", 0)),
        counts_native=bool(doc["counts_native"]),
        cost=Decimal(doc["cost"]), latency_ms=int(doc["latency_ms"]),
        generation_ms=int(doc["generation_ms"]), finish_reason=doc["finish_reason"],
        status=doc["status"], attempts=tuple(Attempt(**a) for a in doc["attempts"]),
        jurisdiction=str(doc.get("jurisdiction", "")),
        # Absent from documents of costs in RUB, and from those written before currencies.
        price_currency=str(doc.get("price_currency", "RUB")),
        fx_rate=Decimal(doc["fx_rate"]) if "fx_rate" in doc else None,
        cost_original=Decimal(doc["cost_original"]) if "cost_original" in doc else None,
        fx_date=date.fromisoformat(doc["fx_date"]) if "fx_date" in doc else None,
        # Absent from documents written before VAT was kept: no VAT, the cost all net.
        vat=Decimal(doc.get("vat", "0")), vat_rate=Decimal(doc.get("vat_rate", "0")))
