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


class Observed(NamedTuple):
    """An oracle entry's price for one perp market, recorded at the block's timestamp."""

    member: bytes
    market: int
    price: int  # quote engine units per lot (price_ticks x tick_size)


class Prices(NamedTuple):
    """A perp market's prices after a block (emitted when one of them changed).
    `index` is 0 and `fresh` false without a fresh oracle quorum (reduce-only)."""

    market: int
    index_price: int
    mark: int
    premium_ppb: int  # the premium EMA (parts per billion of the index)
    fresh: bool


class PositionChanged(NamedTuple):
    """A perp position after the entry or step. Sizes in base (contract) units, signed;
    `entry_notional` is the signed cost of the open size, `realized_pnl` cumulative."""

    account: bytes
    market: int
    size: int
    entry_notional: int
    realized_pnl: int
    isolated_margin: int


class LeverageSet(NamedTuple):
    account: bytes
    market: int
    leverage: int
    isolated: bool


class MarginChanged(NamedTuple):
    """Isolated margin moved: `amount` > 0 added from the cross balance, < 0 removed."""

    account: bytes
    market: int
    amount: int
    margin: int


class FundingPaid(NamedTuple):
    """One position's funding at an interval boundary: `amount` > 0 received, < 0 paid."""

    account: bytes
    market: int
    amount: int


class Funding(NamedTuple):
    """A funding interval settled: the rate (ppb of the mark notional, > 0: longs pay)
    and the rounding residue credited to the insurance fund."""

    market: int
    rate_ppb: int
    mark: int
    residue: int


class Liquidation(NamedTuple):
    """An account (market -1: its cross margin; else that isolated position) was found
    under maintenance margin; its orders were cancelled and its positions are closed."""

    account: bytes
    market: int
    equity: int
    maintenance: int


class LiquidationOrder(NamedTuple):
    """A liquidated position goes to the book: an IOC of `size` (signed: the position's
    side, so a long sells) whose limit is the bankruptcy price. Its fills carry oid 0."""

    account: bytes
    market: int
    size: int
    bankruptcy_price: int


class Backstop(NamedTuple):
    """The insurance fund took over a liquidated position at the bankruptcy price."""

    account: bytes
    market: int
    size: int  # signed, from the liquidated account's side
    price: int


class Deleveraged(NamedTuple):
    """Auto-deleveraging: `counterparty`'s opposing position was reduced against the
    liquidated `account` at its bankruptcy price."""

    account: bytes
    counterparty: bytes
    market: int
    size: int  # signed, from the liquidated account's side
    price: int


class LiquidationFee(NamedTuple):
    account: bytes
    amount: int  # paid to the insurance fund


class BadDebt(NamedTuple):
    """A negative balance without positions, covered by the insurance fund (`covered`)."""

    account: bytes
    deficit: int
    covered: int


class AuctionCleared(NamedTuple):
    """A batch auction market cleared (docs/MATCHING.md, "Batch auctions"): every fill of
    batch `batch` is at `price`; `volume` base units changed hands; `imbalance` is demand
    minus supply at that price (> 0: buyers were rationed, < 0: sellers)."""

    market: int
    batch: int
    price: int
    volume: int
    imbalance: int


class VolObserved(NamedTuple):
    """A committee member's implied vol for an option series (counts from the block's end)."""

    member: bytes
    market: int
    vol_e9: int


class OptionMark(NamedTuple):
    """An option series' mark at a block's end (when it changed): `forward` is the index x
    underlying_lots, `vol_e9` the mark vol (`from_book`: the book's mid set it, else the
    committee's vol), `mark` the Black value in price units per lot, floored."""

    market: int
    forward: int
    vol_e9: int
    mark: int
    from_book: bool


class OptionPosition(NamedTuple):
    """An account's position in an option series: `size` signed (in base units, as
    orders), `premium` the net premium it paid for it (< 0: received)."""

    account: bytes
    market: int
    size: int
    premium: int


class OptionSettlement(NamedTuple):
    """A series expired: it settles at `price` (the index TWAP x underlying_lots over the
    rules' twap_ms, `samples` block samples; 0 samples: the last forward)."""

    market: int
    price: int
    samples: int


class OptionSettled(NamedTuple):
    """A position's cash settlement: `amount` collateral paid to it (< 0: paid by it)."""

    account: bytes
    market: int
    size: int
    amount: int


class SeriesListed(NamedTuple):
    """An option series listed after genesis by a committee listing (docs/MATCHING.md,
    "Series by admin action"): its book takes orders from the next entry on."""

    market: int
    symbol: str
    underlying: int
    right: str
    strike: int
    expiry_ms: int


class MarginModeSet(NamedTuple):
    """The account's option margin mode: the risk matrix, or standard (per position)."""

    account: bytes
    standard: bool


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
    | Observed
    | Prices
    | PositionChanged
    | LeverageSet
    | MarginChanged
    | FundingPaid
    | Funding
    | Liquidation
    | LiquidationOrder
    | Backstop
    | Deleveraged
    | LiquidationFee
    | BadDebt
    | AuctionCleared
    | VolObserved
    | OptionMark
    | OptionPosition
    | OptionSettlement
    | OptionSettled
    | MarginModeSet
    | SeriesListed
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
    Observed: "observed",
    Prices: "prices",
    PositionChanged: "position",
    LeverageSet: "leverage_set",
    MarginChanged: "margin_changed",
    FundingPaid: "funding_paid",
    Funding: "funding",
    Liquidation: "liquidation",
    LiquidationOrder: "liquidation_order",
    Backstop: "backstop",
    Deleveraged: "deleveraged",
    LiquidationFee: "liquidation_fee",
    BadDebt: "bad_debt",
    AuctionCleared: "auction",
    VolObserved: "vol_observed",
    OptionMark: "option_mark",
    OptionPosition: "option_position",
    OptionSettlement: "option_settlement",
    OptionSettled: "option_settled",
    MarginModeSet: "margin_mode_set",
    SeriesListed: "series_listed",
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
    # Rejections: perpetual markets and the oracle.
    NOT_PERP: Final = "not_perp"
    ORACLE_STALE: Final = "oracle_stale"
    INSUFFICIENT_MARGIN: Final = "insufficient_margin"
    REDUCE_ONLY_TIF: Final = "reduce_only_tif"
    REDUCE_ONLY_NO_POSITION: Final = "reduce_only_no_position"
    BAD_LEVERAGE: Final = "bad_leverage"
    POSITION_OPEN: Final = "position_open"
    NOT_ISOLATED: Final = "not_isolated"
    UNKNOWN_MEMBER: Final = "unknown_member"
    # Rejections: batch auction markets.
    SELF_CROSS: Final = "self_cross"  # would cross the account's own order in the batch
    # Rejections: option series.
    SERIES_EXPIRED: Final = "series_expired"
    BAD_VOL: Final = "bad_vol"
    BAD_MODE: Final = "bad_mode"
    # Rejections: a committee listing of a series (the members signed it, the engine
    # decides: docs/MATCHING.md, "Series by admin action").
    MARKET_TAKEN: Final = "market_taken"  # its id or symbol is a market's already
    BAD_UNDERLYING: Final = "bad_underlying"  # not a perp market in the collateral
    EXPIRY_TOO_SOON: Final = "expiry_too_soon"  # less than twap_ms ahead of the block
    TOO_MANY_MARKETS: Final = "too_many_markets"
    # Cancel reasons.
    USER: Final = "user"
    SELF_TRADE: Final = "self_trade"
    IOC: Final = "ioc"  # the unfilled remainder of an IOC, FOK or market order
    REDUCE_ONLY: Final = "reduce_only"  # a reduce-only order's size beyond the position
    LIQUIDATION: Final = "liquidation"  # the orders of an account being liquidated
    SETTLEMENT: Final = "settlement"  # the orders of an option series at its expiry


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
