"""What `make bench` checks besides measuring: that every answered request was recorded and
charged once (the accounting check), and issue 16's targets against the floors of the same run."""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

# A bench row: mode, connections, req/s, p50, p99, direct req/s, direct p50, added p50,
# CPU ms per request (both processes), gateway's, router's.
Row = tuple[str, int, float, float, float, float, float, float, float, float, float]
Get = Callable[[str, str], dict[str, Any]]


def charged_once(name: str, url: str, key: str, answered: int, cut_off: int, *, get: Get,
                 master_key: str, bound: float = 30.0) -> str:
    """That every answered request left one generation record, charged to the account: the
    usage report's count, once the ledger has drained, within what wrk may have cut off (up to
    `cut_off` requests in flight when a run stopped, answered after), and the account's usage
    equal to the records' cost. A bench of a stack that skips its accounting would measure
    nothing."""
    deadline = time.monotonic() + bound
    while True:
        rows = get(f"{url}/v1/usage?account_id=bench", master_key)["data"]
        records, cost = sum(r["requests"] for r in rows), sum(Decimal(str(r["cost"])) for r in rows)
        spent = Decimal(str(get(f"{url}/v1/credits", key)["data"]["total_usage"]))
        if answered <= records <= answered + cut_off and cost == spent:
            return (f"{name}: {records} generation records for {answered} answered requests "
                    f"(+{records - answered} answered after wrk stopped), {spent} RUB charged, "
                    "equal to their cost")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{name}: {records} records ({cost} RUB) for {answered} answered "
                               f"requests, {spent} RUB charged")
        time.sleep(0.5)


# Issue 16's targets: CPU per request within FLOOR_MULTIPLE times the pass-through floor measured
# in the same run; added latency and time to first token at one connection; idle memory.
FLOOR_MULTIPLE = 5.0
ADDED_MS = 1.2
IDLE_MB = 80.0


def targets(rows: list[Row], single: dict[str, tuple[float, float]], *, ttft_d: float,
            ttft_g: float, idle: dict[str, float], floors: dict[str, float],
            multiples: dict[str, float], chunks: int) -> list[str]:
    """The targets table: each figure of this run against its limit. A CPU target is met when
    the median of its paired multiples (each XRouter run over the floor run just after it) is
    at most FLOOR_MULTIPLE; the medians of either side alone are shown beside it."""
    cpu = {r[0]: r[8] for r in rows if r[1] == 16}
    lines = ["| target (issue 16) | XRouter | limit | multiple of the floor (median of pairs) "
             "| met |", "|---|---|---|---|---|"]

    def row(what: str, value: float, limit: float, multiple: float | None = None) -> None:
        met = value <= limit if multiple is None else multiple <= FLOOR_MULTIPLE
        lines.append(f"| {what} | {value:.3f} | {limit:.3f} | "
                     f"{'' if multiple is None else f'{multiple:.1f}x'} | {'yes' if met else 'no'} |")
    for kind, floor_name, what in (
            ("non-streaming", "passthrough", "CPU ms per non-streaming request, 16 conns"),
            ("streaming", "passthrough_stream", f"CPU ms per {chunks}-chunk stream, 16 conns")):
        if kind in cpu:
            row(what, cpu[kind], FLOOR_MULTIPLE * floors[floor_name], multiples[kind])
    if "non-streaming" in single:
        direct, via = single["non-streaming"]
        row("added p50 ms at one connection (non-streaming)", via - direct, ADDED_MS)
    row("added time to first token ms at one connection", ttft_g - ttft_d, ADDED_MS)
    for name in ("gateway", "router"):
        row(f"idle memory MB, {name}", idle[name], IDLE_MB)
    return [*lines, ""]
