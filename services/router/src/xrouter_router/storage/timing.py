"""Call latencies of the router's Redis and PostgreSQL clients, kept as cumulative histogram
buckets in plain Python (about a microsecond per call, no metrics library in the storage layer);
the accounting metrics export them when Prometheus scrapes."""

from __future__ import annotations

import bisect

# 100 µs (a loopback round trip) to 5 s (the pool's wait).
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
           1.0, 2.5, 5.0)


class Latency:
    """Durations of one kind of call, in BUCKETS (the last bucket: longer)."""

    def __init__(self) -> None:
        self._counts = [0] * (len(BUCKETS) + 1)
        self.total = 0.0

    def observe(self, seconds: float) -> None:
        self._counts[bisect.bisect_left(BUCKETS, seconds)] += 1
        self.total += seconds

    def buckets(self) -> list[tuple[str, int]]:
        """Cumulative: (upper bound as Prometheus writes it, calls), ending with +Inf."""
        running, out = 0, []
        for bound, count in zip((*BUCKETS, None), self._counts, strict=True):
            running += count
            out.append(("+Inf" if bound is None else repr(bound), running))
        return out
