"""Event-loop lag: how late a periodic wake-up runs, the clearest sign of a blocked loop."""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class GaugeLike(Protocol):
    def set(self, value: float) -> None: ...


async def watch_loop_lag(gauge: GaugeLike, interval: float = 0.5) -> None:
    """Run forever (cancel to stop): every `interval` seconds, set the gauge to the delay."""
    while True:
        started = time.perf_counter()
        await asyncio.sleep(interval)
        gauge.set(max(0.0, time.perf_counter() - started - interval))
