"""CSV answers the statement and the usage report share: the `format` query parameter, rows as
text (RFC 4180 line ends), money as exact decimal text to at least the kopeck, and the download
response."""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Sequence
from decimal import Decimal, InvalidOperation

from starlette.requests import Request
from starlette.responses import Response

from xrouter_gateway.errors import APIError

FORMATS = ("json", "csv")
_KOPECK = Decimal("0.01")


def requested_format(request: Request) -> str:
    """`format`: json (the default) or csv; 400 otherwise."""
    fmt = request.query_params.get("format", "json")
    if fmt not in FORMATS:
        raise APIError(400, f"format must be one of {list(FORMATS)}, got {fmt!r}", param="format")
    return fmt


def csv_text(columns: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(columns)
    writer.writerows([str(v) for v in row] for row in rows)
    return out.getvalue()


def kopecks(text: str) -> str:
    """An exact decimal amount with at least two places: "12" -> "12.00", "0.5" -> "0.50",
    "0.00012345" stays ("" is 0.00)."""
    try:
        value = Decimal(text or "0")
    except InvalidOperation:
        return text
    exponent = value.as_tuple().exponent
    return format(value.quantize(_KOPECK) if isinstance(exponent, int) and exponent > -2
                  else value, "f")


def csv_download(text: str, filename: str) -> Response:
    """The CSV as an attachment named `filename` (only ASCII letters, digits and ._- kept)."""
    safe = "".join(c if c.isascii() and (c.isalnum() or c in "._-") else "_" for c in filename)
    return Response(text, media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": f'attachment; filename="{safe}"'})
