"""What the runtime feeds the core: `Core.handle(event, now_ms)`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from consensus.verifier import Verified


@dataclass(frozen=True, slots=True)
class Start:
    """Once, first: arms the round timer; re-derives commits after a restart."""


@dataclass(frozen=True, slots=True)
class TimerFired:
    """The `ScheduleTimeout(round, at_ms)` deadline passed. Stale rounds are ignored, so
    the runtime may keep one timer and overwrite it with each new ScheduleTimeout."""

    round: int


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A peer's message, already checked by `Verifier` (the core checks nothing twice)."""

    verified: Verified


@dataclass(frozen=True, slots=True)
class PayloadReady:
    """The answer to `NeedPayload(round)`: the ordered entries of our proposal."""

    round: int
    payload: tuple[bytes, ...]


Event: TypeAlias = Start | TimerFired | MessageReceived | PayloadReady
