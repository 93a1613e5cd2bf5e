"""What the engine tells the world: one list of events per applied entry.

Events are immutable, slotted records. They are `NamedTuple`s rather than frozen
dataclasses because the engine creates several per entry on its hot path: a frozen
slotted dataclass costs ~0.8 µs to build (every field goes through
`object.__setattr__`), a NamedTuple built with `tuple.__new__` ~0.1 µs. They pack as
msgpack arrays and turn into plain dicts with `to_plain` (the replay and API form).

Ids are deterministic: order ids (`oid`), trade ids and withdrawal ids are counters in
the engine state, assigned in application order. Sides are the strings "buy" / "sell".
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

BUY: Final = "buy"
SELL: Final = "sell"


class Accepted(NamedTuple):
    """A place entry passed every check and got an order id; fills may follow."""

    oid: int
    account: bytes
    market: int
    side: str
    kind: str  # "limit" / "market"
    price: int
    size: int
    tif: str
    cloid: int | None


class Rejected(NamedTuple):
    """The entry changed nothing (except consuming its nonce, see docs/MATCHING.md)."""

    code: str
    message: str


class Trade(NamedTuple):
    trade_id: int
    market: int
    price: int
    size: int
    taker_side: str
    taker_oid: int
    maker_oid: int


class Fill(NamedTuple):
    """One side of a trade. `fee` is in quote engine units, paid to the fee account."""

    trade_id: int
    oid: int
    account: bytes
    market: int
    side: str
    price: int
    size: int
    fee: int
    maker: bool
    remaining: int  # the order's open size after this fill


class Cancelled(NamedTuple):
    """An order left the book (or an IOC/market remainder was dropped) with `size` open."""

    oid: int
    account: bytes
    market: int
    size: int
    reason: str


class Expired(NamedTuple):
    """A resting order reached its `expires_ms` at a block's timestamp."""

    oid: int
    account: bytes
    market: int
    size: int


class Modified(NamedTuple):
    oid: int
    account: bytes
    market: int
    price: int
    size: int
    kept_priority: bool


class BalanceChanged(NamedTuple):
    """The new balance of an (account, asset) pair after the entry, in engine units."""

    account: bytes
    asset: int
    available: int
    locked: int


class Deposited(NamedTuple):
    deposit_id: int
    account: bytes
    asset: int
    amount: int


class Withdrawn(NamedTuple):
    withdrawal_id: int
    account: bytes
    asset: int
    amount: int


class AgentApproved(NamedTuple):
    account: bytes
    agent: bytes
    name: str


class AgentRevoked(NamedTuple):
    """The agent may no longer sign for the account; the account's orders stay."""

    account: bytes
    agent: bytes


Event = (
    Accepted
    | Rejected
    | Trade
    | Fill
    | Cancelled
    | Expired
    | Modified
    | BalanceChanged
    | Deposited
    | Withdrawn
    | AgentApproved
    | AgentRevoked
)

KINDS: dict[type, str] = {
    Accepted: "accepted",
    Rejected: "rejected",
    Trade: "trade",
    Fill: "fill",
    Cancelled: "cancelled",
    Expired: "expired",
    Modified: "modified",
    BalanceChanged: "balance",
    Deposited: "deposited",
    Withdrawn: "withdrawn",
    AgentApproved: "agent_approved",
    AgentRevoked: "agent_revoked",
}


class Reason:
    """Rejection codes (`Rejected.code`) and cancel reasons (`Cancelled.reason`)."""

    # Rejections: the entry itself.
    MALFORMED: Final = "malformed"
    BAD_TYPE: Final = "bad_type"
    UNKNOWN_ACTION: Final = "unknown_action"
    UNAUTHORIZED: Final = "unauthorized"
    AGENT_FORBIDDEN: Final = "agent_forbidden"
    NONCE_REUSED: Final = "nonce_reused"
    NONCE_TOO_OLD: Final = "nonce_too_old"
    NONCE_OUT_OF_WINDOW: Final = "nonce_out_of_window"
    # Rejections: the action's content.
    UNKNOWN_MARKET: Final = "unknown_market"
    UNKNOWN_ASSET: Final = "unknown_asset"
    BAD_SIDE: Final = "bad_side"
    BAD_KIND: Final = "bad_kind"
    BAD_TIF: Final = "bad_tif"
    BAD_SIZE: Final = "bad_size"
    BAD_PRICE: Final = "bad_price"
    BAD_AMOUNT: Final = "bad_amount"
    OFF_LOT: Final = "off_lot"
    OFF_TICK: Final = "off_tick"
    OVERFLOW: Final = "overflow"
    REDUCE_ONLY_SPOT: Final = "reduce_only_spot"
    DUPLICATE_CLOID: Final = "duplicate_cloid"
    ALREADY_EXPIRED: Final = "already_expired"
    TOO_MANY_ORDERS: Final = "too_many_orders"
    INSUFFICIENT_BALANCE: Final = "insufficient_balance"
    POST_ONLY_WOULD_CROSS: Final = "post_only_would_cross"
    FOK_UNFILLABLE: Final = "fok_unfillable"
    UNKNOWN_ORDER: Final = "unknown_order"
    WRONG_MARKET: Final = "wrong_market"
    DEPOSIT_OUT_OF_ORDER: Final = "deposit_out_of_order"
    BAD_AGENT: Final = "bad_agent"
    TOO_MANY_AGENTS: Final = "too_many_agents"
    UNKNOWN_AGENT: Final = "unknown_agent"
    # Cancel reasons.
    USER: Final = "user"
    SELF_TRADE: Final = "self_trade"
    IOC: Final = "ioc"  # the unfilled remainder of an IOC, FOK or market order


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return value


def to_plain(event: Event) -> dict[str, Any]:
    """A JSON-ready dict: {"event": kind, field: value, ...}, addresses as 0x-hex."""
    plain: dict[str, Any] = {"event": KINDS[type(event)]}
    for name, value in zip(event._fields, event, strict=True):
        plain[name] = _plain(value)
    return plain
