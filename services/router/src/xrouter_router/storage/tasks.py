"""Stopping background tasks for sure.

On Python 3.11 a cancellation can be lost inside a client library: a read whose own timeout
expires as the task is cancelled surfaces as TimeoutError, which a retry loop then catches, and
the task runs on. So stop() cancels again until every task has ended.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any


async def stop(tasks: Iterable[asyncio.Task[Any] | None], *,
               every: float = 1.0) -> None:
    """Cancel the tasks (None entries are skipped) and wait until all have ended, cancelling
    again every `every` seconds those that swallowed it. Their exceptions are discarded."""
    pending = {task for task in tasks if task is not None}
    while pending:
        for task in pending:
            task.cancel()
        _, pending = await asyncio.wait(pending, timeout=every)
