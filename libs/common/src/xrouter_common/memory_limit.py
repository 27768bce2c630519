"""The memory limit of the process's container (cgroup v2 `memory.max`, or cgroup v1
`memory.limit_in_bytes`), exported as `xrouter_process_memory_limit_bytes` beside the client
library's `process_resident_memory_bytes`, so an alert can compare the two without
kube-state-metrics. Read at scrape time, never on a request path."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

CGROUP = Path("/sys/fs/cgroup")
# cgroup v1 reports "no limit" as a page-rounded 2**63 - 1; anything this large is no limit.
_UNLIMITED = 1 << 60


def memory_limit(root: Path = CGROUP) -> int | None:
    """Bytes, or None when there is no limit or no cgroup file to read."""
    for path in (root / "memory.max", root / "memory" / "memory.limit_in_bytes"):
        try:
            text = path.read_text(encoding="ascii").strip()
        except OSError:
            continue
        if not text.isdigit():  # "max": no limit
            return None
        value = int(text)
        return value if 0 < value < _UNLIMITED else None
    return None


class MemoryLimitCollector(Collector):
    """Yields the gauge only when a limit is known (an absent series, not a fake value)."""

    def __init__(self, root: Path = CGROUP) -> None:
        self._root = root

    def collect(self) -> Iterator[GaugeMetricFamily]:
        limit = memory_limit(self._root)
        if limit is not None:
            yield GaugeMetricFamily("xrouter_process_memory_limit_bytes",
                                    "The container's memory limit (cgroup), for alerts on "
                                    "process_resident_memory_bytes", value=float(limit))
