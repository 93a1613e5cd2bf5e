"""What the core asks of the runtime: the list returned by `Core.handle`.

Execute the actions in list order. The one ordering that safety depends on: every
`PersistSafety` and `PersistBlock` must be durable (fsync) before any `Send` or
`Broadcast` that comes after it in the same list leaves the node. The core always puts
the persist actions first; a runtime may therefore flush them in one write, then send.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from consensus.safety_data import SafetyData
from consensus.types import Block, Message, Proposal, QuorumCert


@dataclass(frozen=True, slots=True)
class PersistSafety:
    """Make `data` the durable safety record (replace the previous one), then fsync."""

    data: SafetyData


@dataclass(frozen=True, slots=True)
class PersistBlock:
    """Store a block that entered the block tree (needed for `Recovery.blocks`)."""

    block: Block


@dataclass(frozen=True, slots=True)
class Send:
    to: int
    msg: Message


@dataclass(frozen=True, slots=True)
class Broadcast:
    """Send to every other member (never back to ourselves)."""

    msg: Message


@dataclass(frozen=True, slots=True)
class Commit:
    """Blocks committed, oldest first, each exactly once; `proof` is the QC of the child
    that committed them. Persist the last block as the new root (with the proof as
    `Recovery.high_qc`) atomically with applying the blocks."""

    blocks: tuple[Block, ...]
    proof: QuorumCert


@dataclass(frozen=True, slots=True)
class ScheduleTimeout:
    """Fire `TimerFired(round)` at `at_ms` (replaces any earlier timer)."""

    round: int
    at_ms: int


@dataclass(frozen=True, slots=True)
class NeedPayload:
    """We lead `round`: answer with `PayloadReady(round, entries)`, whenever ready (wait
    for entries or a batch interval; never too late for the round's timeout). The block
    extends `parent_id`: leave out entries already in its uncommitted ancestors."""

    round: int
    parent_id: bytes


@dataclass(frozen=True, slots=True)
class Misbehavior:
    """Evidence worth a log line or a metric: an equivocating vote, an invalid block."""

    author: int
    what: str


Action: TypeAlias = (
    PersistSafety
    | PersistBlock
    | Send
    | Broadcast
    | Commit
    | ScheduleTimeout
    | NeedPayload
    | Misbehavior
)


def leads_persists(action: Action) -> bool:
    """Our own proposal, which may leave before the persists of its action list: the
    safety record guards votes and timeouts, not proposals (docs/CONSENSUS.md)."""
    return isinstance(action, Broadcast) and isinstance(action.msg, Proposal)
