"""Structured JSON logs: one object per line, with the fields a line was given (`extra=
{"fields": {...}}`). Never log prompts, completions, API keys or provider credentials.

Every request writes a line in each tier, so a line is made cheap (issue 16): no caller lookup,
thread or process names (the lines carry none of them; the logging HOWTO's "Optimization"
switches), the timestamp's text made once a second, and lines written on the event loop's thread
leave in one write per loop iteration (LoopStreamHandler) rather than one each. Warnings and
errors, and lines from other threads, are written at once."""

from __future__ import annotations

import asyncio
import logging
import sys
import time
from typing import Any, TextIO

import orjson


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def _timestamp(self, created: float) -> str:
        second = int(created)
        if second != self._second:
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return self._stamp

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": f"{self._timestamp(record.created)}.{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            line.update(fields)
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()


class LoopStreamHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A StreamHandler that gathers the INFO and DEBUG lines made on a running event loop's
    thread and writes them at the end of the loop iteration, in order, in one write."""

    def __init__(self, stream: TextIO) -> None:
        super().__init__(stream)
        self._lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        loop = asyncio._get_running_loop()
        if loop is None or record.levelno > logging.INFO:
            self.flush_lines()
            super().emit(record)
            return
        try:
            line = self.format(record)
        except Exception:  # noqa: BLE001 - logging's own policy for a line that cannot be made
            self.handleError(record)
            return
        if not self._lines:
            loop.call_soon(self.flush_lines)
        self._lines.append(line + self.terminator)

    def flush_lines(self) -> None:
        if not self._lines:
            return
        lines, self._lines = self._lines, []
        with self.lock:  # type: ignore[union-attr]
            try:
                self.stream.write("".join(lines))
                self.flush()
            except Exception:  # noqa: BLE001 - as StreamHandler.emit
                self.handleError(logging.makeLogRecord({"msg": "(buffered log lines)"}))

    def close(self) -> None:
        self.flush_lines()
        super().close()


def setup_logging(level: str = "INFO") -> None:
    """JSON lines on stderr for the whole process (uvicorn's loggers included)."""
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    logging._srcfile = None  # no caller lookup per line
    handler = LoopStreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
