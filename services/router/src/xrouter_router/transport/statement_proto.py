"""A monthly statement as its proto message: money as fixed-point decimal strings (lines and
exact totals to 1e-8 RUB, kopeck totals to 0.01), rates as fractions."""

from __future__ import annotations

from decimal import Decimal

from xrouter.v1 import router_pb2 as pb
from xrouter_router.domain.accounting import COST_QUANTUM
from xrouter_router.domain.statement import Line, Statement, Total
from xrouter_router.domain.vat import rate_text


def _exact(amount: Decimal) -> str:
    return format(amount.quantize(COST_QUANTUM), "f")


def _line(line: Line) -> pb.StatementLine:
    split = line.split
    return pb.StatementLine(
        generation_id=line.generation_id, date=line.date, model=line.model,
        provider=line.provider, prompt_tokens=line.prompt_tokens,
        completion_tokens=line.completion_tokens, vat_rate=rate_text(split.rate),
        net=_exact(split.net), vat=_exact(split.vat), gross=_exact(split.gross))


def _total(total: Total) -> pb.StatementTotal:
    return pb.StatementTotal(
        vat_rate="" if total.rate is None else rate_text(total.rate), requests=total.requests,
        prompt_tokens=total.prompt_tokens, completion_tokens=total.completion_tokens,
        net=_exact(total.exact.net), vat=_exact(total.exact.vat),
        gross=_exact(total.exact.gross), net_rub=format(total.net_rub, "f"),
        vat_rub=format(total.vat_rub, "f"), gross_rub=format(total.gross_rub, "f"))


def statement_to_proto(statement: Statement) -> pb.Statement:
    return pb.Statement(account_id=statement.account_id, month=statement.month,
                        timezone=statement.zone, lines=[_line(x) for x in statement.lines],
                        by_rate=[_total(t) for t in statement.by_rate],
                        total=_total(statement.total))
