"""`LogGate` (node/log.py): what a peer can trigger at will is logged once per interval."""

from __future__ import annotations

from typing import Any

from node.log import LogGate


def test_one_line_per_interval_with_the_count_suppressed_since() -> None:
    gate = LogGate(interval_s=10.0)
    assert gate.allow("refused", 0.0) == 0
    assert [gate.allow("refused", t) for t in (1.0, 2.0, 9.9)] == [None, None, None]
    assert gate.allow("refused", 10.0) == 3  # the next line says how many were held back
    assert gate.allow("refused", 12.0) is None
    assert gate.allow("refused", 25.0) == 1


def test_keys_are_independent() -> None:
    gate = LogGate(interval_s=10.0)
    assert gate.allow(("rejected", "10.0.0.1"), 0.0) == 0
    assert gate.allow(("rejected", "10.0.0.2"), 0.0) == 0
    assert gate.allow(("rejected", "10.0.0.1"), 1.0) is None
    assert gate.allow(("refused", "10.0.0.1"), 1.0) == 0


def test_keys_are_bounded_and_the_longest_quiet_one_goes_first() -> None:
    gate = LogGate(interval_s=10.0, max_keys=2)
    assert gate.allow("a", 0.0) == 0
    assert gate.allow("b", 1.0) == 0
    assert gate.allow("a", 11.0) == 0  # "a" passed again: now "b" passed longest ago
    assert gate.allow("c", 12.0) == 0  # evicts "b"
    assert gate.allow("a", 13.0) is None  # still remembered
    assert gate.allow("b", 13.0) == 0  # forgotten: one more line, never silence


def test_emit_logs_through_the_given_method_with_the_count() -> None:
    lines: list[tuple[str, dict[str, Any]]] = []

    def warning(event: str, **fields: Any) -> None:
        lines.append((event, fields))

    gate = LogGate(interval_s=5.0)
    sent = [
        gate.emit(warning, "connection_refused", "10.0.0.9", t, source="10.0.0.9")
        for t in (0.0, 1.0, 2.0, 6.0)
    ]
    assert sent == [True, False, False, True]
    assert lines == [
        ("connection_refused", {"suppressed": 0, "source": "10.0.0.9"}),
        ("connection_refused", {"suppressed": 2, "source": "10.0.0.9"}),
    ]
    # The event is part of the key: another event for the same source has its own line.
    assert gate.emit(warning, "handshake_rejected", "10.0.0.9", 6.5)
