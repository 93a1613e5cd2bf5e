"""Structured JSON logs (structlog), one object per line, for node processes and tools,
and `LogGate`, which keeps events a peer can trigger at will to one line per interval."""

from __future__ import annotations

import logging
import sys
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any, TextIO

import structlog


def configure(level: str = "info", stream: TextIO | None = None, node: str | None = None) -> None:
    """JSON lines with an ISO timestamp and level; `node` is bound into every line."""
    numeric = logging.getLevelNamesMapping().get(level.upper())
    if numeric is None:
        raise ValueError(f"unknown log level {level!r}")
    processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        structlog.processors.JSONRenderer(sort_keys=False),
    ]
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=stream or sys.stderr),
        cache_logger_on_first_use=True,
    )
    if node is not None:
        structlog.contextvars.bind_contextvars(node=node)
    # Libraries that use stdlib logging (hypercorn, web3) go to the same stream, less chatty.
    logging.basicConfig(level=max(numeric, logging.WARNING), stream=stream or sys.stderr)


class LogGate:
    """At most one log line per key per interval, for events a peer can trigger at will
    (a refusal, a bad message): one warning each would let it fill the disk.

    `allow(key, now)` returns how many lines were suppressed for `key` since the last one
    that passed, or None to stay quiet. `now` is any monotonic clock in seconds (trio's,
    so tests can use a MockClock). Keys are bounded: when `max_keys` are tracked, a new
    key evicts the one that passed longest ago, whose pending count is lost; the gate
    only ever errs towards one more line, never towards silence.
    """

    __slots__ = ("_interval_s", "_last", "_max_keys")

    def __init__(self, interval_s: float, max_keys: int = 1024) -> None:
        assert interval_s > 0 and max_keys > 0, (interval_s, max_keys)
        self._interval_s = interval_s
        self._max_keys = max_keys
        # key -> [passed at, suppressed since]; ordered by when each last passed
        self._last: OrderedDict[Hashable, list[float | int]] = OrderedDict()

    def allow(self, key: Hashable, now: float) -> int | None:
        entry = self._last.get(key)
        if entry is not None and now - entry[0] < self._interval_s:
            entry[1] += 1
            return None
        suppressed = 0 if entry is None else int(entry[1])
        if entry is None:
            if len(self._last) >= self._max_keys:
                self._last.popitem(last=False)
            self._last[key] = [now, 0]
        else:
            entry[0], entry[1] = now, 0
            self._last.move_to_end(key)
        return suppressed

    def emit(
        self, method: Callable[..., Any], event: str, key: Hashable, now: float, **fields: Any
    ) -> bool:
        """Log `event` through `method` (e.g. `log.warning`) unless (event, key) passed
        within the interval; the line carries `suppressed`. True if it was logged."""
        suppressed = self.allow((event, key), now)
        if suppressed is None:
            return False
        method(event, suppressed=suppressed, **fields)
        return True
