"""The JSON log lines and LoopStreamHandler: lines made on the event loop leave together, in
order, at the end of the loop iteration; warnings, and lines made off the loop, leave at once."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import threading
from collections.abc import Iterator

import pytest

from xrouter_common.logs import JsonFormatter, LoopStreamHandler


class Counting(io.StringIO):
    """A stream that counts its writes."""

    writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


@pytest.fixture
def logged() -> Iterator[tuple[logging.Logger, Counting]]:
    stream = Counting()
    handler = LoopStreamHandler(stream)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger("xrouter.test.logs")
    logger.handlers[:] = [handler]
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield logger, stream
    finally:
        handler.close()
        logger.handlers[:] = []


def _lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


async def test_lines_of_one_loop_iteration_leave_together_in_order(
        logged: tuple[logging.Logger, Counting]) -> None:
    logger, stream = logged
    for i in range(5):
        logger.info("request", extra={"fields": {"n": i}})
    assert stream.getvalue() == ""  # not yet: at the end of this iteration
    await asyncio.sleep(0)
    assert [(line["msg"], line["n"]) for line in _lines(stream)] == [("request", i) for i in range(5)]
    assert stream.writes == 1
    assert {line["level"] for line in _lines(stream)} == {"info"}


async def test_a_warning_leaves_at_once_after_the_lines_before_it(
        logged: tuple[logging.Logger, Counting]) -> None:
    logger, stream = logged
    logger.info("first")
    logger.warning("trouble")
    assert [line["msg"] for line in _lines(stream)] == ["first", "trouble"]
    logger.info("after")
    await asyncio.sleep(0)
    assert [line["msg"] for line in _lines(stream)] == ["first", "trouble", "after"]


def test_a_line_off_the_loop_leaves_at_once(logged: tuple[logging.Logger, Counting]) -> None:
    logger, stream = logged
    logger.info("no loop here")
    worker = threading.Thread(target=logger.info, args=("from a thread",))
    worker.start()
    worker.join()
    assert [line["msg"] for line in _lines(stream)] == ["no loop here", "from a thread"]


def test_the_timestamp_is_the_records_second_and_millisecond() -> None:
    formatter = JsonFormatter()
    record = logging.makeLogRecord({"msg": "m", "created": 1_700_000_000.25, "msecs": 250.0})
    again = logging.makeLogRecord({"msg": "m", "created": 1_700_000_001.5, "msecs": 500.0})
    assert json.loads(formatter.format(record))["ts"] == "2023-11-14T22:13:20.250Z"
    assert json.loads(formatter.format(again))["ts"] == "2023-11-14T22:13:21.500Z"
