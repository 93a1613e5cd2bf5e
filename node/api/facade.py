"""The seam between the client API and the node: what the API needs from the node.

The API (node/api/app.py) parses and rate-limits client input; everything that needs node
state — signature check, replay and duplicate check, mempool admission, waiting for a
commit — happens behind `NodeFacade`, which node/runtime.py implements and
node/api/local.py implements for tests and benchmarks. Nothing here does I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, Literal, Protocol

from node.api.ratelimit import RateLimit
from node.intents import Domain, SignedIntent

SubmitStatus = Literal["accepted", "committed", "rejected", "timeout"]
SUBMIT_STATUSES: Final[frozenset[str]] = frozenset({"accepted", "committed", "rejected", "timeout"})


@dataclass(frozen=True, slots=True)
class SubmitResult:
    """The node's answer for one intent.

    - `accepted`: verified and in the mempool (or already there: resubmitting is
      idempotent). `height` is None.
    - `committed`: in a committed block at `height`.
    - `rejected`: refused; `code` says why (an IntentError code of PROTOCOL.md §4.5, or a
      node code such as `mempool_full`, `account_full`, `not_ready`). With a `height`, it
      was ordered in that block and the matching engine refused it there
      (insufficient_balance, replayed nonce…).
    - `timeout`: accepted, but not committed before the wait ran out.
    """

    intent_id: bytes
    status: SubmitStatus
    code: str | None = None
    message: str | None = None
    height: int | None = None
    # True when this intent was already known (pending or done) before this call: an
    # idempotent resubmit. Anyone can replay someone's intent, so the API does not charge
    # the account's rate limit for it.
    duplicate: bool = False

    def __post_init__(self) -> None:
        assert self.status in SUBMIT_STATUSES, self.status
        assert (self.code is not None) == (self.status == "rejected"), "code iff rejected"
        # A rejected intent has a height when the engine refused it in a committed block.
        assert self.status in ("committed", "rejected") or self.height is None, "height too early"
        assert self.status != "committed" or self.height is not None, "committed needs a height"


class NodeFacade(Protocol):
    """What the API calls. Implementations must not raise on any client input: every
    outcome for an intent is a `SubmitResult`."""

    domain: Domain

    async def submit(
        self, intents: list[SignedIntent], wait: bool, timeout_s: float
    ) -> list[SubmitResult]:
        """One result per intent, in order. Verifies signatures (CPU bound: keep the loop
        responsive), drops replays, admits to the mempool. With `wait`, returns when each
        admitted intent committed or `timeout_s` passed (then `timeout`)."""
        ...

    def status(self) -> dict[str, Any]:
        """JSON-ready snapshot: round, committed_height, leader, peers, mempool size, lag.
        Values bytes are shown as 0x-hex."""
        ...

    def is_ready(self) -> bool:
        """Joined the committee and caught up: worth sending intents to."""
        ...


# Defaults sized for one node on a 2-core machine verifying ~18k signatures/s per core.
IP_LIMIT: Final = RateLimit(rate_per_s=5_000, burst=10_000, cancel_cost=0.25, reserve=1_000)
ACCOUNT_LIMIT: Final = RateLimit(rate_per_s=500, burst=1_000, cancel_cost=0.25, reserve=100)


@dataclass(frozen=True, slots=True)
class ApiLimits:
    """Every bound of the client API in one place (units last in names)."""

    max_body_bytes: int = 2 * 1024 * 1024
    max_batch_intents: int = 1000
    body_read_timeout_s: float = 10.0
    default_wait_timeout_ms: int = 5_000
    max_wait_timeout_ms: int = 60_000
    # Per client IP (IPv6 by /64): every request or WebSocket message costs 1, plus each
    # intent (a cancel costs `cancel_cost`). None disables.
    ip_limit: RateLimit | None = IP_LIMIT
    # Per trading account, charged only for intents the node admitted.
    account_limit: RateLimit | None = ACCOUNT_LIMIT
    max_rate_keys: int = 100_000
    ws_max_inflight_messages: int = 32
    ws_max_bad_frames: int = 10
    ws_max_connections: int = 1_024
    ws_max_connections_per_ip: int = 16

    def __post_init__(self) -> None:
        assert self.max_batch_intents >= 1 and self.max_body_bytes >= 4096
        assert 0 < self.default_wait_timeout_ms <= self.max_wait_timeout_ms
        assert self.ws_max_inflight_messages >= 1 and self.ws_max_bad_frames >= 1
        if self.ip_limit is not None:
            # A full batch of orders must be admissible from a full bucket.
            assert self.ip_limit.burst >= 1 + self.max_batch_intents + self.ip_limit.reserve
