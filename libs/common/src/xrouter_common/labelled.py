"""A metric's labelled children, each looked up once (issue 16): prometheus-client's labels()
validates the values, builds a tuple and takes a lock on every call, which a request that
touches several metrics pays several times. Label values here are bounded sets (models,
providers, outcomes), and no child is ever removed, so the cache stays as small as the metric."""

from __future__ import annotations

from typing import Generic, TypeVar

from prometheus_client.metrics import MetricWrapperBase

M = TypeVar("M", bound=MetricWrapperBase)


class Labelled(Generic[M]):
    __slots__ = ("_children", "_metric")

    def __init__(self, metric: M) -> None:
        self._metric = metric
        self._children: dict[tuple[str, ...], M] = {}

    def __call__(self, *values: str) -> M:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._metric.labels(*values)
        return child
