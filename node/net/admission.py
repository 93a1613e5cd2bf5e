"""Who may start a handshake: slots per source address and back-off for failing sources.

Before a connection authenticates, all we know of it is its source address. A handshake
holds a slot until it ends (at most `handshake_timeout_s`); the slots are capped in total
and per source, so one address that opens connections and never finishes them holds at
most its own few, and a member dialing from another address still gets in. A source whose
handshakes keep failing is refused at once for a period that doubles with each further
failure, so a stream of garbage costs us an accept and a close, not a handshake.

Pure bookkeeping over a `now` in seconds (trio's clock); no sockets, no logging.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass
from typing import Final

_MAX_DOUBLINGS: Final = 32

# Refusal reasons, also the keys of TransportStats.refusals.
BUSY: Final = "busy"
SOURCE_BUSY: Final = "source_busy"
SOURCE_BACKOFF: Final = "source_backoff"


def source_of(host: str) -> str:
    """The unit that shares slots: an IPv4 address, or an IPv6 /64 (one host often has a
    whole /64, so counting single IPv6 addresses would count nothing)."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host  # not an IP (a memory stream in tests): its own source
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


@dataclass(slots=True)
class _Failures:
    count: int  # consecutive failed handshakes
    last_s: float  # when the last one failed
    refused_until_s: float


class SourceGate:
    """Handshake slots by source and back-off of failing sources (see module doc)."""

    __slots__ = (
        "_backoff_initial_s",
        "_backoff_max_s",
        "_failures",
        "_failures_free",
        "_max_per_source",
        "_max_sources",
        "_max_total",
        "_pending",
        "_pending_total",
    )

    def __init__(
        self,
        *,
        max_total: int,
        max_per_source: int,
        failures_free: int,
        backoff_initial_s: float,
        backoff_max_s: float,
        max_sources: int,
    ) -> None:
        assert 0 < max_per_source <= max_total and failures_free >= 0 and max_sources > 0
        assert 0 < backoff_initial_s <= backoff_max_s
        self._max_total = max_total
        self._max_per_source = max_per_source
        self._failures_free = failures_free
        self._backoff_initial_s = backoff_initial_s
        self._backoff_max_s = backoff_max_s
        self._max_sources = max_sources
        self._pending: dict[str, int] = {}  # at most max_total entries
        self._pending_total = 0
        # Ordered by last failure, so the table's bound evicts the longest quiet source.
        self._failures: OrderedDict[str, _Failures] = OrderedDict()

    def try_acquire(self, source: str, now: float) -> str | None:
        """Take a handshake slot for `source`: None if taken, else why it was refused."""
        failures = self._failures.get(source)
        if failures is not None and now < failures.refused_until_s:
            return SOURCE_BACKOFF
        if self._pending_total >= self._max_total:
            return BUSY
        held = self._pending.get(source, 0)
        if held >= self._max_per_source:
            return SOURCE_BUSY
        self._pending[source] = held + 1
        self._pending_total += 1
        return None

    def release(self, source: str) -> None:
        held = self._pending[source] - 1
        if held:
            self._pending[source] = held
        else:
            del self._pending[source]
        self._pending_total -= 1
        assert held >= 0 and self._pending_total >= 0

    def succeeded(self, source: str) -> None:
        self._failures.pop(source, None)

    def failed(self, source: str, now: float) -> float | None:
        """Count a failed handshake; the back-off in seconds if the source is now refused.

        A failure more than `backoff_max_s` after the previous one (or after the end of
        the source's back-off) starts the count afresh: an honest peer that fails now
        and then (a restart mid-handshake) is never backed off."""
        failures = self._failures.pop(source, None)
        if (
            failures is None
            or now - max(failures.last_s, failures.refused_until_s) > self._backoff_max_s
        ):
            failures = _Failures(0, now, now)
        failures.count += 1
        failures.last_s = now
        if len(self._failures) >= self._max_sources:
            self._failures.popitem(last=False)
        self._failures[source] = failures
        over = failures.count - self._failures_free
        if over <= 0:
            return None
        backoff_s = min(
            self._backoff_max_s, self._backoff_initial_s * (1 << min(over - 1, _MAX_DOUBLINGS))
        )
        failures.refused_until_s = now + backoff_s
        return backoff_s

    def pending(self, source: str | None = None) -> int:
        return self._pending_total if source is None else self._pending.get(source, 0)

    def backed_off(self, now: float) -> int:
        """Sources refused right now (a gauge for metrics)."""
        return sum(1 for f in self._failures.values() if now < f.refused_until_s)
