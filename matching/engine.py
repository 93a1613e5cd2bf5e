"""The exchange state machine: blocks of entries in, events out (docs/MATCHING.md).

Pure: no clock (the block timestamp is an argument), no randomness, no I/O. Every
entry either applies completely or is rejected with a reason and changes nothing
(except that a correctly signed entry consumes its nonce). A malformed entry never
raises, whatever its size or nesting depth (the entry schema is flat, so no check walks
into a value, and rejection messages quote values through `_show`, which never does);
a broken invariant does (an assert), because then the node must stop.

Sections: construction and queries; block application and the entry envelope
(authorization, nonces); trading actions (place, modify, cancels); matching;
funds (deposits, withdrawals, agents); checkpoints and snapshots.

The hot path (place, cancel, match) is written for CPython: locals instead of
attribute chains, events built with `tuple.__new__`, no allocation that is not needed.
"""

from __future__ import annotations

import hashlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from heapq import heappop, heappush
from typing import Any, Final, TypeGuard

from matching.accounts import (
    MAX_AGENT_KEYS,
    MAX_AGENTS,
    MAX_OPEN_ORDERS,
    NONCE_FUTURE_MS,
    NONCE_PAST_MS,
    NONCE_SET_SIZE,
    NONCE_SLACK,
    Account,
    use_nonce,
)
from matching.auction import Auctions
from matching.book import Book, Order, Side
from matching.checkpoint import Checkpoint, StateTree, Withdrawal, WithdrawalTrees
from matching.config import (
    BPS,
    MAX_MARKETS,
    U64_MAX,
    ConfigError,
    Genesis,
    OptionRules,
    listed_series,
)
from matching.crossing import FillSettlement, cross
from matching.events import (
    BUY,
    SELL,
    Accepted,
    AgentApproved,
    AgentRevoked,
    BalanceChanged,
    Cancelled,
    Deposited,
    Event,
    Expired,
    Modified,
    Reason,
    Rejected,
    SeriesListed,
    Withdrawn,
)
from matching.merkle import MerkleTree
from matching.optionmarkets import OptionMarkets
from matching.perp import Perps

# Module constants are Final: the compiled build (docs/MATCHING.md) then reads them as C
# statics or literals instead of looking them up in the module dict.
_new: Final[Any] = tuple.__new__  # builds a NamedTuple event without its Python-level __new__

CANCEL_TYPES: Final = frozenset(("cancel", "cancel_cloid", "cancel_all"))
OWNER_ONLY_TYPES: Final = frozenset(("withdraw", "approve_agent", "revoke_agent"))
_LIMIT_TIFS: Final = ("gtc", "ioc", "fok", "post")
_MARKET_TIFS: Final = ("ioc", "fok")
AGENT_NAME_MAX_BYTES: Final = 32
_SHOWN_CHARS: Final = 40  # of a string or bytes value quoted in a rejection message

_FIELDS = {
    "place": (
        "type",
        "market",
        "side",
        "kind",
        "price",
        "size",
        "tif",
        "reduce_only",
        "cloid",
        "expires_ms",
    ),
    "cancel": ("type", "market", "oid"),
    "cancel_cloid": ("type", "market", "cloid"),
    "cancel_all": ("type", "market"),
    "modify": ("type", "market", "oid", "price", "size"),
    "withdraw": ("type", "asset", "amount"),
    "approve_agent": ("type", "agent", "name"),
    "revoke_agent": ("type", "agent"),
    "deposit": ("type", "deposit_id", "account", "asset", "amount"),
    "set_leverage": ("type", "market", "leverage", "isolated"),
    "add_margin": ("type", "market", "amount"),
    "remove_margin": ("type", "market", "amount"),
    "oracle": ("type", "member", "prices"),
    "vols": ("type", "member", "vols"),
    "set_option_margin": ("type", "mode"),
    "list_series": ("type", "series"),
}


@dataclass(frozen=True, slots=True)
class BlockResult:
    """`events[i]` belongs to `entries[i]` (cancels were applied first, see MATCHING.md);
    `expired` are the orders that expired at this block's timestamp, before any entry;
    `end` are the events of the block's end step, after every entry: batch auction
    clearings, then with perp markets prices, funding and liquidations."""

    timestamp_ms: int
    expired: list[Event]
    events: list[list[Event]]
    end: list[Event] = field(default_factory=list)


# The fast checks compare with this instead of U64_MAX: compiled code compares ints up to
# it inline, and U64_MAX is a boxed Python int (a slow compare per field). Larger values
# fail the fast check and are judged by _place_rejection.
_SHORT_MAX: Final = (1 << 60) - 1


def _is_u64(value: object) -> TypeGuard[int]:
    return type(value) is int and 0 <= value <= U64_MAX  # type() is int: refuses bool


def _is_address(value: object) -> TypeGuard[bytes]:
    return type(value) is bytes and len(value) == 20


def _show(value: object) -> str:
    """`value` quoted in a rejection message, in bounded time and length. Input may be
    of any size and nested to any depth: `repr` would walk all of it (a RecursionError
    past ~1,000 levels, a ValueError for an integer of over 4,300 digits), so only
    scalars are shown, cut short, and anything else is named by its type."""
    if value is None or value is True or value is False or type(value) is float:
        return repr(value)
    if type(value) is int:
        bits = value.bit_length()
        return repr(value) if bits <= 64 else f"an integer of {bits} bits"
    if type(value) is str:
        if len(value) <= _SHOWN_CHARS:
            return repr(value)
        return repr(value[:_SHOWN_CHARS]) + "..."
    if type(value) is bytes:
        if len(value) <= _SHOWN_CHARS:
            return repr(value)
        return repr(value[:_SHOWN_CHARS]) + "..."
    return f"a value of type {type(value).__name__}"


def _malformed(kind: str) -> tuple[str, str]:
    return Reason.MALFORMED, f"{kind} needs exactly the fields {', '.join(_FIELDS[kind])}"


def _check_amount(value: object, what: str, step: int, off_grid: str) -> tuple[str, str] | None:
    """A positive u64 multiple of `step` (price: the tick, size: the lot)."""
    if type(value) is not int:
        return Reason.BAD_TYPE, f"{what} must be an integer, got {type(value).__name__}"
    if value <= 0:
        code = Reason.BAD_SIZE if what == "size" else Reason.BAD_PRICE
        return code, f"{what} must be positive, got {_show(value)}"
    if value > U64_MAX:
        return Reason.OVERFLOW, f"{what} {_show(value)} does not fit in 64 bits"
    if value % step:
        return off_grid, f"{what} {value} is not a multiple of {step}"
    return None


def _check_price_size(book: Book, price: object, size: object) -> tuple[str, str] | None:
    return _check_amount(price, "price", book.tick, Reason.OFF_TICK) or _check_amount(
        size, "size", book.lot, Reason.OFF_LOT
    )


class SpotFills(FillSettlement):
    """A spot fill: the taker pays one asset and gets the other; the maker's locked
    reserve pays its side (a buy's reserve shrinks to what its remainder needs)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def settle(
        self,
        taker: Account,
        maker: Order,
        maker_account: Account,
        fill: int,
        price: int,
        notional: int,
        taker_fee: int,
        maker_fee: int,
        left: int,
    ) -> None:
        book = maker.book
        base, quote = book.base, book.quote
        available = taker.available
        state = self.engine.state
        if maker.is_buy:  # the taker sells
            available[base] -= fill
            available[quote] += notional - taker_fee
            reserved = book.reserve(price, left)
            released = maker.reserved - reserved
            maker.reserved = reserved
            maker_account.locked[quote] -= released
            maker_account.available[quote] += released - notional - maker_fee
            maker_account.available[base] += fill
            if maker_account.leaf[base] < 0:
                state.new_leaf(maker_account, base)
            gets = quote
        else:
            available[quote] -= notional + taker_fee
            available[base] += fill
            maker_account.locked[base] -= fill
            maker.reserved = left
            maker_account.available[quote] += notional - maker_fee
            if maker_account.leaf[quote] < 0:
                state.new_leaf(maker_account, quote)
            gets = base
        if taker.leaf[gets] < 0:
            state.new_leaf(taker, gets)
        state.dirty[maker_account] = None


class Engine:
    # ---------------------------------------------------------------- construction

    def __init__(self, genesis: Genesis) -> None:
        self.genesis = genesis
        self.assets = genesis.assets
        self.asset_ids = [a.id for a in genesis.assets]  # asset index -> asset id
        self.asset_index = {a.id: i for i, a in enumerate(genesis.assets)}
        self.books: dict[int, Book] = {
            m.id: Book(
                m,
                self.asset_index[m.quote if m.base is None else m.base],
                self.asset_index[m.quote],
            )
            for m in genesis.markets
        }
        self.accounts: dict[bytes, Account] = {}
        # Heap of (expires_ms, oid, account) of resting orders with an expiry; entries of
        # orders that left the book are skipped when they surface.
        self.expiries: list[tuple[int, int, bytes]] = []
        self.state = StateTree(genesis.assets)
        self.withdrawal_trees = WithdrawalTrees()
        # (withdrawal_id, account, asset index, engine amount) since the last checkpoint
        self.pending_withdrawals: list[tuple[int, bytes, int, int]] = []
        self.timestamp_ms = 0
        self._nonce_lo = self._nonce_hi = 0  # the nonce window of the current block
        self.next_oid = 1
        self.next_trade_id = 1
        self.next_withdrawal_id = 1
        self.last_deposit_id = 0
        self.sequence = 0  # of the last checkpoint
        self.fee_account = self._account(genesis.fee_account)
        self._spot_fills = SpotFills(self)
        self.auctions: Auctions | None = None  # batch auction markets (auction.py)
        if any(m.auction_blocks for m in genesis.markets):
            self.auctions = Auctions(self, genesis)
        self.perps: Perps | None = None
        if genesis.perp_markets:
            self.perps = Perps(self, genesis)
            self.state.collateral = self.perps.coll
        self.options: OptionMarkets | None = None  # option series (optionmarkets.py)
        if genesis.option_markets:
            assert self.perps is not None
            self.options = self.perps.options = OptionMarkets(self, self.perps, genesis)
            self.state.options = self.options
        self._handlers = {
            "place": self._place,
            "cancel": self._cancel,
            "cancel_cloid": self._cancel_cloid,
            "cancel_all": self._cancel_all,
            "modify": self._modify,
            "withdraw": self._withdraw,
            "approve_agent": self._approve_agent,
            "revoke_agent": self._revoke_agent,
        }
        if self.perps is not None:
            self._handlers["set_leverage"] = self.perps.set_leverage
            self._handlers["add_margin"] = self.perps.add_margin
            self._handlers["remove_margin"] = self.perps.remove_margin
        if self.options is not None:
            self._handlers["set_option_margin"] = self.options.set_mode

    def _account(self, address: bytes) -> Account:
        account = self.accounts.get(address)
        if account is None:
            account = self.accounts[address] = Account(address, len(self.assets))
        return account

    # --------------------------------------------------------------------- queries

    def balance(self, address: bytes, asset_id: int) -> tuple[int, int]:
        """(available, locked) in engine units."""
        account = self.accounts.get(address)
        if account is None:
            return 0, 0
        i = self.asset_index[asset_id]
        return account.available[i], account.locked[i]

    def open_orders(self, address: bytes) -> list[Order]:
        account = self.accounts.get(address)
        return [] if account is None else list(account.orders.values())

    def is_authorized(self, address: bytes, signer: bytes) -> bool:
        """May `signer` sign trading actions for the account `address` now: the account
        itself, or an agent it approved and has not revoked (what `apply_block` checks;
        the node asks before it admits an intent, PROTOCOL.md §4.3)."""
        if signer == address:
            return True
        account = self.accounts.get(address)
        return account is not None and signer in account.agents

    def digest(self) -> bytes:
        """A cheap fingerprint of the whole state (for tests): hash of the snapshot."""
        return hashlib.blake2b(self.snapshot(), digest_size=32).digest()

    # ------------------------------------------------------------ block application

    def apply_block(self, timestamp_ms: int, entries: Sequence[Any]) -> BlockResult:
        """Expire orders due at `timestamp_ms`, then apply the cancels of the block in
        their order, then every other entry in its order."""
        if type(timestamp_ms) is not int or not self.timestamp_ms <= timestamp_ms <= U64_MAX:
            raise ValueError(
                f"block timestamp {_show(timestamp_ms)} is before the previous {self.timestamp_ms}"
            )
        self.timestamp_ms = timestamp_ms
        self._nonce_lo = timestamp_ms - NONCE_PAST_MS
        self._nonce_hi = timestamp_ms + NONCE_FUTURE_MS
        expired: list[Event] = []
        if self.expiries and self.expiries[0][0] <= timestamp_ms:
            self._expire(timestamp_ms, expired)
        out: list[list[Event]] = [[]] * len(entries)
        # Cancels first, then the rest, each in block order.
        first: list[int] = []
        later: list[int] = []
        first_append, later_append = first.append, later.append
        for i, entry in enumerate(entries):
            try:
                kind = entry["action"]["type"]
                # A str first: hashing a deeply nested tuple would recurse in C.
                is_cancel = type(kind) is str and kind in CANCEL_TYPES
            except Exception:  # malformed: _apply rejects it in its turn
                is_cancel = False
            if is_cancel:
                first_append(i)
            else:
                later_append(i)
        if first:
            first.extend(later)
            later = first
        # The envelope of _apply, inlined for a well-formed entry signed by its own
        # account with its next nonce (almost every entry); anything else, before any
        # state is touched, goes to _apply, which finds the reason.
        apply = self._apply
        handlers = self._handlers
        accounts_get = self.accounts.get
        lo, hi = self._nonce_lo, self._nonce_hi
        if hi > U64_MAX:
            hi = U64_MAX
        for i in later:
            entry = entries[i]
            try:
                action = entry["action"]
                kind = action["type"]
                if type(kind) is not str:
                    raise TypeError
                handler = handlers[kind]  # raises for an unknown type
                address = entry["account"]
                signer = entry["signer"]
                nonce = entry["nonce"]
            except Exception:
                out[i] = apply(entry)
                continue
            if (
                type(address) is bytes
                and type(signer) is bytes
                and type(nonce) is int
                and signer == address
                and len(address) == 20
                and (account := accounts_get(address)) is not None
                and (raw := account.raw_nonces)
                and raw[-1] < nonce <= hi
                and lo <= nonce
            ):
                raw.append(nonce)
                if len(raw) > NONCE_SET_SIZE + NONCE_SLACK:
                    del raw[:-NONCE_SET_SIZE]
                ev: list[Event] = []
                # Direct calls for the two commonest actions: compiled, they skip the
                # Python-level call wrapper of a bound method.
                if kind == "place":
                    self._place(address, account, action, ev)
                elif kind == "cancel":
                    self._cancel(address, account, action, ev)
                else:
                    handler(address, account, action, ev)
                out[i] = ev
            else:
                out[i] = apply(entry)
        end: list[Event] = []
        if self.auctions is not None:
            self.auctions.end_block(end)
        if self.perps is not None:
            self.perps.end_block(timestamp_ms, end)
        return BlockResult(timestamp_ms, expired, out, end)

    def _apply(self, entry: Any) -> list[Event]:
        ev: list[Event] = []
        try:
            action = entry["action"]
            kind = action["type"]
        except Exception:
            ev.append(_new(Rejected, (Reason.MALFORMED, "an entry needs an action with a type")))
            return ev
        handler = self._handlers.get(kind) if type(kind) is str else None
        if handler is None:
            if kind == "deposit":
                self._deposit(action, ev)
            elif kind == "oracle" and self.perps is not None:
                self.perps.observe(action, ev)
            elif kind == "vols" and self.options is not None:
                self.options.observe(action, ev)
            elif kind == "list_series":
                self._list_series(action, ev)
            else:
                msg = f"unknown action {_show(kind)}"
                ev.append(_new(Rejected, (Reason.UNKNOWN_ACTION, msg)))
            return ev
        try:
            address = entry["account"]
            signer = entry["signer"]
            nonce = entry["nonce"]
        except Exception:
            ev.append(_new(Rejected, (Reason.MALFORMED, "an entry needs account, signer, nonce")))
            return ev
        if not (
            type(address) is bytes
            and len(address) == 20
            and type(signer) is bytes
            and len(signer) == 20
            and type(nonce) is int
            and 0 <= nonce <= U64_MAX
        ):
            msg = "account and signer must be 20-byte addresses, nonce a u64"
            ev.append(_new(Rejected, (Reason.BAD_TYPE, msg)))
            return ev
        account = self.accounts.get(address)
        if signer == address:
            if account is None:  # its nonce must be consumed even if the action fails
                account = self._account(address)
            kept = account.raw_nonces
        else:
            if account is None or signer not in account.agents:
                msg = f"0x{signer.hex()} is not an approved agent of 0x{address.hex()}"
                ev.append(_new(Rejected, (Reason.UNAUTHORIZED, msg)))
                return ev
            if kind in OWNER_ONLY_TYPES:
                msg = f"an agent may not {kind}; the account itself must sign"
                ev.append(_new(Rejected, (Reason.AGENT_FORBIDDEN, msg)))
                return ev
            agent_kept = account.agent_nonces.get(signer)
            if agent_kept is None:
                agent_kept = account.agent_nonces[signer] = array("Q")
            kept = agent_kept
        if kept and kept[-1] < nonce and self._nonce_lo <= nonce <= self._nonce_hi:
            # The usual case, inlined from use_nonce: a signer's next, higher nonce.
            kept.append(nonce)
            if len(kept) > NONCE_SET_SIZE + NONCE_SLACK:
                del kept[:-NONCE_SET_SIZE]
        else:
            refused = use_nonce(kept, nonce, self._nonce_lo, self._nonce_hi)
            if refused is not None:
                msg = f"nonce {nonce} of 0x{signer.hex()}: {refused}"
                ev.append(_new(Rejected, (refused, msg)))
                return ev
        handler(address, account, action, ev)
        return ev

    def _list_series(self, a: Any, ev: list[Event]) -> None:
        """A committee listing {type: list_series, series: {terms}} (docs/MATCHING.md,
        "Series by admin action"): the node lets one through only with the signatures of
        the oracle quorum of members, so the engine trusts it as it trusts an observation,
        and lists the series at this block unless the limit of markets is reached, its id
        or symbol is taken, its underlying is not a perp market, or it expires less than
        the rules' twap_ms after this block. A refused listing is a rejection, not a
        fault: the members signed it, the engine decides.

        The listed market joins the engine's genesis, so a snapshot (which carries its
        genesis) and a restored engine have it, its book and series in the same order."""
        try:
            if len(a) != 2:
                raise KeyError
            terms = a["series"]
        except KeyError:
            ev.append(_new(Rejected, _malformed("list_series")))
            return
        perps = self.perps
        if perps is None:
            _reject(ev, Reason.BAD_UNDERLYING, "no perp market: a series has no underlying")
            return
        try:
            market = listed_series(terms, perps.coll_id)
        except ConfigError as exc:
            _reject(ev, Reason.MALFORMED, str(exc))
            return
        option = market.option
        assert option is not None
        genesis = self.genesis
        rules = genesis.option_rules or OptionRules()
        if len(self.books) >= MAX_MARKETS:
            _reject(ev, Reason.TOO_MANY_MARKETS, f"{MAX_MARKETS} markets already")
            return
        if market.id in self.books or any(m.symbol == market.symbol for m in genesis.markets):
            msg = f"market id {market.id} or symbol {market.symbol!r} is taken"
            _reject(ev, Reason.MARKET_TAKEN, msg)
            return
        if option.underlying not in perps.markets:
            msg = f"underlying {option.underlying} is not a perp market"
            _reject(ev, Reason.BAD_UNDERLYING, msg)
            return
        if option.expiry_ms - self.timestamp_ms < rules.twap_ms:
            msg = f"expiry {option.expiry_ms} is less than twap_ms {rules.twap_ms} ahead"
            _reject(ev, Reason.EXPIRY_TOO_SOON, msg)
            return
        genesis = replace(genesis, markets=(*genesis.markets, market), option_rules=rules)
        self.genesis = genesis
        self.books[market.id] = Book(market, perps.coll, perps.coll)
        options = self.options
        if options is None:  # the first series: the option half starts as at genesis
            options = self.options = perps.options = OptionMarkets(self, perps, genesis)
            self.state.options = options
            self._handlers["set_option_margin"] = options.set_mode
        else:
            options.add_series(market)
        listed = (market.id, market.symbol, option.underlying, option.right, option.strike)
        ev.append(_new(SeriesListed, (*listed, option.expiry_ms)))

    def _expire(self, timestamp_ms: int, ev: list[Event]) -> None:
        expiries, accounts = self.expiries, self.accounts
        while expiries and expiries[0][0] <= timestamp_ms:
            _, oid, address = heappop(expiries)
            account = accounts[address]
            order = account.orders.get(oid)
            if order is None or order.expires_ms is None or order.expires_ms > timestamp_ms:
                continue  # gone already, or a stale heap entry
            book = order.book
            size = order.size
            (book.bids if order.is_buy else book.asks).remove(order)
            self._forget(order)
            ev.append(_new(Expired, (oid, address, book.id, size)))
            self._balance_event(ev, account, book.quote if order.is_buy else book.base)

    # ------------------------------------------------------------- trading actions

    def _option_reduce_only(self, book: Book, reduce_only: object) -> bool:
        """A reduce-only place on an option series (its rules: OptionMarkets.place)."""
        options = self.options
        return reduce_only is True and options is not None and book.id in options.series

    def _place(self, address: bytes, account: Account, a: Any, ev: list[Event]) -> None:
        try:
            market = a["market"]
            side = a["side"]
            kind = a["kind"]
            price = a["price"]
            size = a["size"]
            tif = a["tif"]
            reduce_only = a["reduce_only"]
            cloid = a["cloid"]
            expires_ms = a["expires_ms"]
            if len(a) != 10:
                raise KeyError
        except KeyError:
            ev.append(_new(Rejected, _malformed("place")))
            return
        book = self.books.get(market) if type(market) is int else None
        if book is not None and book.perp is not None:
            self._place_perp(
                address, account, book, market, side, kind, price, size, tif, reduce_only,
                cloid, expires_ms, ev,
            )  # fmt: skip
            return
        # Every static check in one expression; if any fails, _place_rejection finds which.
        if (
            book is None
            or type(price) is not int
            or type(size) is not int
            or not 0 < price <= U64_MAX
            or not 0 < size <= U64_MAX
            or price % book.tick
            or size % book.lot
            or (side != BUY and side != SELL)
            or (tif not in _LIMIT_TIFS if kind == "limit" else tif not in _MARKET_TIFS)
            or (kind != "limit" and kind != "market")
            or (reduce_only is not False and not self._option_reduce_only(book, reduce_only))
            or (cloid is not None and (not _is_u64(cloid) or cloid in account.cloids))
            or (
                expires_ms is not None
                and (not _is_u64(expires_ms) or expires_ms <= self.timestamp_ms)
            )
            or len(account.orders) >= MAX_OPEN_ORDERS
        ):
            rejection = _place_rejection(
                self, account, market, side, kind, price, size, tif, reduce_only, cloid, expires_ms
            )
            assert rejection is not None
            ev.append(_new(Rejected, rejection))
            return
        options = self.options
        if options is not None and book.id in options.series:
            options.place(address, account, book, side == BUY, kind, price, size, tif, cloid,
                          expires_ms, ev, reduce_only is True)  # fmt: skip
            return
        auctions = self.auctions
        if auctions is not None and book.id in auctions.markets:
            auctions.place(
                address, account, book, side == BUY, kind, price, size, tif, cloid, expires_ms, ev
            )
            return
        # The dynamic checks of _check_order, inlined for the common case; on any doubt
        # _check_order decides (and names the reason).
        if side == BUY:
            is_buy = True
            side = BUY
            asset = book.quote
            notional = price * (size // book.lot)
            need = notional + notional * book.fee_bps_max // BPS  # Book.reserve
            keys = book.asks.keys
            crosses = bool(keys) and keys[-1] >= -price
        else:
            is_buy = False
            side = SELL
            asset = book.base
            need = size
            keys = book.bids.keys
            crosses = bool(keys) and keys[-1] >= price
        available = account.available
        if (
            available[asset] < need
            or tif == "fok"
            or (crosses and tif == "post")
            or account.perp is not None
        ):
            checked = self._check_order(account, book, is_buy, price, size, tif, 0)
            if type(checked) is not int:
                ev.append(_new(Rejected, checked))
                return
        oid = self.next_oid
        self.next_oid = oid + 1
        ev.append(_new(Accepted, (oid, address, book.id, side, kind, price, size, tif, cloid)))
        if crosses:
            self._take(account, book, is_buy, price, size, tif, oid, cloid, expires_ms, ev)
        elif tif == "gtc" or tif == "post":
            # _rest, inlined: the most common outcome of an entry.
            locked = account.locked
            available[asset] -= need
            locked[asset] += need
            order = Order(
                oid, account, book, is_buy, price, size, need, cloid, expires_ms, tif == "post"
            )
            key = order.key
            side_ = book.bids if is_buy else book.asks
            level = side_.levels.get(key)
            if level is None:
                side_.add(order)  # opens the level
            else:
                level.orders.append(order)
                level.live += 1
            account.orders[oid] = order
            if cloid is not None:
                account.cloids[cloid] = order
            if expires_ms is not None:
                heappush(self.expiries, (expires_ms, oid, address))
            ev.append(
                _new(
                    BalanceChanged,
                    (address, self.asset_ids[asset], available[asset], locked[asset]),
                )
            )
        else:
            ev.append(_new(Cancelled, (oid, address, book.id, size, Reason.IOC)))

    def _place_perp(
        self,
        address: bytes,
        account: Account,
        book: Book,
        market: object,
        side: object,
        kind: object,
        price: object,
        size: object,
        tif: object,
        reduce_only: object,
        cloid: object,
        expires_ms: object,
        ev: list[Event],
    ) -> None:
        """A place in a perp market: the same static checks as spot (reduce-only allowed),
        then margin, matching and settlement in perp.py."""
        # Every static check in one expression, as in _place; on any doubt
        # _place_rejection decides.
        if (
            type(price) is not int
            or type(size) is not int
            or not 0 < price <= _SHORT_MAX
            or not 0 < size <= _SHORT_MAX
            or price % book.tick
            or size % book.lot
            or (side != BUY and side != SELL)
            or (tif not in _LIMIT_TIFS if kind == "limit" else tif not in _MARKET_TIFS)
            or (kind != "limit" and kind != "market")
            or (reduce_only is not False and reduce_only is not True)
            or (cloid is not None and (not _is_u64(cloid) or cloid in account.cloids))
            or (
                expires_ms is not None
                and (not _is_u64(expires_ms) or expires_ms <= self.timestamp_ms)
            )
            or len(account.orders) >= MAX_OPEN_ORDERS
        ):
            rejection = _place_rejection(
                self, account, market, side, kind, price, size, tif, reduce_only, cloid, expires_ms
            )
            if rejection is not None:
                ev.append(_new(Rejected, rejection))
                return
        perps = self.perps
        assert perps is not None
        assert type(price) is int and type(size) is int and type(kind) is str
        assert type(tif) is str
        perps.place(
            address, account, book, side == BUY, kind, price, size, tif, reduce_only is True,
            cloid if type(cloid) is int else None,
            expires_ms if type(expires_ms) is int else None, ev,
        )  # fmt: skip

    def _check_order(
        self,
        account: Account,
        book: Book,
        is_buy: bool,
        price: int,
        size: int,
        tif: str,
        credit: int,
    ) -> int | tuple[str, str]:
        """Can this order run in full? Reads state, changes none; returns what a resting
        order of the full size would lock, or the rejection. `credit` is what a
        modified order's old reservation gives back."""
        if is_buy:
            asset = book.quote
            need = book.reserve(price, size)
        else:
            asset = book.base
            need = size
        have = account.available[asset] + credit
        perps = self.perps
        if perps is not None and asset == perps.coll and account.perp is not None:
            # Collateral backing perp positions is not free to lock (docs/MATCHING.md).
            free = perps.cross_free(account) + credit
            if free < have:
                have = free
            perps.touched[account] = None
        if have < need:
            symbol = self.assets[asset].symbol
            return Reason.INSUFFICIENT_BALANCE, f"needs {need} {symbol} available, has {have}"
        if tif == "post" or tif == "fok":
            opposite = book.asks if is_buy else book.bids
            if tif == "post":
                if opposite.crossed_by(price, is_buy):
                    return Reason.POST_ONLY_WOULD_CROSS, "a post-only order may not take"
            elif not _fillable(opposite, -price if is_buy else price, size, account):
                return Reason.FOK_UNFILLABLE, "the book cannot fill this FOK order in full"
        return need

    def _rest(
        self,
        account: Account,
        book: Book,
        is_buy: bool,
        price: int,
        size: int,
        reserved: int,
        asset: int,
        oid: int,
        cloid: int | None,
        expires_ms: int | None,
        post_only: bool,
    ) -> None:
        """Put a checked order on the book and lock `reserved` of `asset` for it."""
        account.available[asset] -= reserved
        account.locked[asset] += reserved
        order = Order(
            oid, account, book, is_buy, price, size, reserved, cloid, expires_ms, post_only
        )
        key = order.key
        side = book.bids if is_buy else book.asks
        level = side.levels.get(key)
        if level is None:
            side.add(order)  # opens the level
        else:
            level.orders.append(order)  # the common case of Side.add, inlined
            level.live += 1
        account.orders[oid] = order
        if cloid is not None:
            account.cloids[cloid] = order
        if expires_ms is not None:
            heappush(self.expiries, (expires_ms, oid, account.address))

    def _take(
        self,
        account: Account,
        book: Book,
        is_buy: bool,
        price: int,
        size: int,
        tif: str,
        oid: int,
        cloid: int | None,
        expires_ms: int | None,
        ev: list[Event],
    ) -> None:
        """Match a checked, crossing order, then rest or drop the remainder."""
        makers: dict[Account, None] = {}
        remaining, fees = self._match(account, book, is_buy, price, size, oid, ev, makers)
        if remaining:
            if tif == "gtc" or tif == "post":
                if is_buy:
                    asset, reserved = book.quote, book.reserve(price, remaining)
                else:
                    asset, reserved = book.base, remaining
                self._rest(
                    account, book, is_buy, price, remaining, reserved, asset, oid, cloid,
                    expires_ms, tif == "post",
                )  # fmt: skip
            else:
                ev.append(_new(Cancelled, (oid, account.address, book.id, remaining, Reason.IOC)))
        # Balances: the taker's two assets, each maker's two, the fee account's quote.
        base, quote = book.base, book.quote
        base_id, quote_id = self.asset_ids[base], self.asset_ids[quote]
        touched = dict.fromkeys(makers)
        touched.pop(account, None)
        for who in (account, *touched):
            available, locked = who.available, who.locked
            ev.append(_new(BalanceChanged, (who.address, base_id, available[base], locked[base])))
            ev.append(
                _new(BalanceChanged, (who.address, quote_id, available[quote], locked[quote]))
            )
        fee_account = self.fee_account
        if fees and fee_account is not account and fee_account not in touched:
            self._balance_event(ev, fee_account, quote)

    def _cancel(self, address: bytes, account: Account, a: Any, ev: list[Event]) -> None:
        try:
            if len(a) != 3:
                raise KeyError
            market = a["market"]
            oid = a["oid"]
        except KeyError:
            ev.append(_new(Rejected, _malformed("cancel")))
            return
        orders = account.orders
        order = orders.get(oid) if type(oid) is int else None
        if order is None:
            msg = f"the account has no open order {_show(oid)}"
            ev.append(_new(Rejected, (Reason.UNKNOWN_ORDER, msg)))
            return
        book = order.book
        if book.id != market or type(market) is not int:
            msg = f"order {oid} is in market {book.id}, not {_show(market)}"
            ev.append(_new(Rejected, (Reason.WRONG_MARKET, msg)))
            return
        # _cancel_order and _forget, inlined.
        if order.is_buy:
            book.bids.remove(order)
            asset = book.quote
        else:
            book.asks.remove(order)
            asset = book.base
        del orders[oid]
        if order.cloid is not None:
            del account.cloids[order.cloid]
        available, locked = account.available, account.locked
        reserved = order.reserved
        if reserved:
            locked[asset] -= reserved
            available[asset] += reserved
            order.reserved = 0
        elif book.perp is not None:  # a perp order reserves nothing
            perps = self.perps
            assert perps is not None
            perps.order_gone(order)
        elif self.options is not None:  # an option order reserves nothing either
            self.options.order_gone(order)
        ev.append(_new(Cancelled, (oid, address, market, order.size, Reason.USER)))
        ev.append(
            _new(BalanceChanged, (address, self.asset_ids[asset], available[asset], locked[asset]))
        )

    def _cancel_cloid(self, address: bytes, account: Account, a: Any, ev: list[Event]) -> None:
        try:
            if len(a) != 3:
                raise KeyError
            market = a["market"]
            cloid = a["cloid"]
        except KeyError:
            ev.append(_new(Rejected, _malformed("cancel_cloid")))
            return
        order = account.cloids.get(cloid) if _is_u64(cloid) else None
        if order is None:
            msg = f"no open order with cloid {_show(cloid)}"
            ev.append(_new(Rejected, (Reason.UNKNOWN_ORDER, msg)))
        elif order.book.id != market or type(market) is not int:
            msg = f"cloid {cloid} is in market {order.book.id}, not {_show(market)}"
            ev.append(_new(Rejected, (Reason.WRONG_MARKET, msg)))
        else:
            self._cancel_order(order, ev)

    def _cancel_all(self, address: bytes, account: Account, a: Any, ev: list[Event]) -> None:
        try:
            if len(a) != 2:
                raise KeyError
            market = a["market"]
        except KeyError:
            ev.append(_new(Rejected, _malformed("cancel_all")))
            return
        if market is not None and (type(market) is not int or market not in self.books):
            msg = f"unknown market {_show(market)}"
            ev.append(_new(Rejected, (Reason.UNKNOWN_MARKET, msg)))
            return
        touched: dict[int, None] = {}
        for order in list(account.orders.values()):
            book = order.book
            if market is None or book.id == market:
                (book.bids if order.is_buy else book.asks).remove(order)
                self._forget(order)
                ev.append(_new(Cancelled, (order.oid, address, book.id, order.size, Reason.USER)))
                touched[book.quote if order.is_buy else book.base] = None
        for asset in sorted(touched):
            self._balance_event(ev, account, asset)

    def _cancel_order(self, order: Order, ev: list[Event]) -> None:
        book = order.book
        (book.bids if order.is_buy else book.asks).remove(order)
        self._forget(order)
        account = order.account
        ev.append(_new(Cancelled, (order.oid, account.address, book.id, order.size, Reason.USER)))
        asset = book.quote if order.is_buy else book.base
        ev.append(
            _new(
                BalanceChanged,
                (
                    account.address,
                    self.asset_ids[asset],
                    account.available[asset],
                    account.locked[asset],
                ),
            )
        )

    def _forget(self, order: Order) -> None:
        """Drop a dead order from the indexes and release what it still reserves."""
        account = order.account
        del account.orders[order.oid]
        if order.cloid is not None:
            del account.cloids[order.cloid]
        reserved = order.reserved
        if reserved:
            asset = order.book.quote if order.is_buy else order.book.base
            account.locked[asset] -= reserved
            account.available[asset] += reserved
            order.reserved = 0
        elif order.book.perp is not None:  # a perp order reserves nothing
            perps = self.perps
            assert perps is not None
            perps.order_gone(order)
        elif self.options is not None:  # an option order reserves nothing either
            self.options.order_gone(order)

    def _modify(self, address: bytes, account: Account, a: Any, ev: list[Event]) -> None:
        """Cancel-replace. The order keeps its oid, cloid and expiry; it keeps its place
        in the queue only if the price is unchanged and the size does not grow."""
        try:
            if len(a) != 5:
                raise KeyError
            market = a["market"]
            oid = a["oid"]
            price = a["price"]
            size = a["size"]
        except KeyError:
            ev.append(_new(Rejected, _malformed("modify")))
            return
        order = account.orders.get(oid) if type(oid) is int else None
        if order is None:
            msg = f"the account has no open order {_show(oid)}"
            ev.append(_new(Rejected, (Reason.UNKNOWN_ORDER, msg)))
            return
        book = order.book
        if book.id != market or type(market) is not int:
            msg = f"order {oid} is in market {book.id}, not {_show(market)}"
            ev.append(_new(Rejected, (Reason.WRONG_MARKET, msg)))
            return
        bad = _check_price_size(book, price, size)
        if bad is not None:
            ev.append(_new(Rejected, bad))
            return
        if book.perp is not None:
            perps = self.perps
            assert perps is not None
            perps.modify(address, account, order, price, size, ev)
            return
        options = self.options
        if options is not None and book.id in options.series:
            options.modify(address, account, order, price, size, ev)
            return
        auctions = self.auctions
        if auctions is not None and book.id in auctions.markets:
            auctions.modify(address, account, order, price, size, ev)
            return
        is_buy = order.is_buy
        asset = book.quote if is_buy else book.base
        if price == order.price and size <= order.size:
            reserved = book.reserve(price, size) if is_buy else size
            released = order.reserved - reserved
            order.size = size
            order.reserved = reserved
            account.locked[asset] -= released
            account.available[asset] += released
            ev.append(_new(Modified, (oid, address, book.id, price, size, True)))
            self._balance_event(ev, account, asset)
            return
        tif = "post" if order.post_only else "gtc"
        need = self._check_order(account, book, is_buy, price, size, tif, order.reserved)
        if type(need) is not int:
            ev.append(_new(Rejected, need))
            return
        (book.bids if is_buy else book.asks).remove(order)
        self._forget(order)
        ev.append(_new(Modified, (oid, address, book.id, price, size, False)))
        cloid, expires_ms = order.cloid, order.expires_ms
        if (book.asks if is_buy else book.bids).crossed_by(price, is_buy):
            self._take(account, book, is_buy, price, size, tif, oid, cloid, expires_ms, ev)
        else:
            self._rest(
                account, book, is_buy, price, size, need, asset, oid, cloid, expires_ms,
                order.post_only,
            )  # fmt: skip
            self._balance_event(ev, account, asset)

    # -------------------------------------------------------------------- matching

    def _match(
        self,
        account: Account,
        book: Book,
        is_buy: bool,
        price: int,
        size: int,
        oid: int,
        ev: list[Event],
        makers: dict[Account, None],
    ) -> tuple[int, int]:
        """Take liquidity up to `price` (matching/crossing.py); return the unfilled size
        and the fees paid, credited here to the fee account in the quote asset."""
        dirty = self.state.dirty
        dirty[account] = None
        remaining, fees = cross(
            self, self._spot_fills, account, book, is_buy, price, size, oid, book.taker_bps,
            ev, makers,
        )  # fmt: skip
        if fees:
            quote = book.quote
            fee_account = self.fee_account
            fee_account.available[quote] += fees
            if fee_account.leaf[quote] < 0:
                self.state.new_leaf(fee_account, quote)
            dirty[fee_account] = None
        return remaining, fees

    def _balance_event(self, ev: list[Event], account: Account, asset: int) -> None:
        ev.append(
            _new(
                BalanceChanged,
                (
                    account.address,
                    self.asset_ids[asset],
                    account.available[asset],
                    account.locked[asset],
                ),
            )
        )

    # ----------------------------------------------------------------------- funds

    def _deposit(self, a: Any, ev: list[Event]) -> None:
        """Deposits arrive in the contract's id order. A deposit with the next id is
        always consumed (else the queue would stall); if it is invalid (unknown asset,
        bad account or amount) it credits nothing and is reported as rejected."""
        try:
            if len(a) != 5:
                raise KeyError
            deposit_id = a["deposit_id"]
            address = a["account"]
            asset_id = a["asset"]
            amount = a["amount"]
        except KeyError:
            ev.append(_new(Rejected, _malformed("deposit")))
            return
        if deposit_id != self.last_deposit_id + 1 or type(deposit_id) is not int:
            msg = f"deposit id {_show(deposit_id)}, expected {self.last_deposit_id + 1}"
            ev.append(_new(Rejected, (Reason.DEPOSIT_OUT_OF_ORDER, msg)))
            return
        self.last_deposit_id = deposit_id
        asset = self.asset_index.get(asset_id) if type(asset_id) is int else None
        if asset is None:
            msg = (
                f"unknown asset {_show(asset_id)}; deposit {deposit_id} consumed, nothing credited"
            )
            ev.append(_new(Rejected, (Reason.UNKNOWN_ASSET, msg)))
            return
        if not _is_address(address) or not _is_u64(amount):
            msg = f"bad account or amount; deposit {deposit_id} consumed, nothing credited"
            ev.append(_new(Rejected, (Reason.BAD_TYPE, msg)))
            return
        account = self._account(address)
        account.available[asset] += amount
        if amount and account.leaf[asset] < 0:
            self.state.new_leaf(account, asset)
        self.state.dirty[account] = None
        ev.append(_new(Deposited, (deposit_id, address, asset_id, amount)))
        self._balance_event(ev, account, asset)

    def _withdraw(self, address: bytes, account: Account, a: Any, ev: list[Event]) -> None:
        try:
            if len(a) != 3:
                raise KeyError
            asset_id = a["asset"]
            amount = a["amount"]
        except KeyError:
            ev.append(_new(Rejected, _malformed("withdraw")))
            return
        asset = self.asset_index.get(asset_id) if type(asset_id) is int else None
        if asset is None:
            msg = f"unknown asset {_show(asset_id)}"
            ev.append(_new(Rejected, (Reason.UNKNOWN_ASSET, msg)))
            return
        bad = _check_amount(amount, "amount", 1, Reason.BAD_AMOUNT)
        if bad is not None:
            ev.append(_new(Rejected, (Reason.BAD_AMOUNT, bad[1])))
            return
        have = account.available[asset]
        perps = self.perps
        if perps is not None and asset == perps.coll and account.perp is not None:
            have = perps.cross_free(account)  # collateral backing positions stays
            perps.touched[account] = None
        if have < amount:
            msg = f"withdraw {amount} {self.assets[asset].symbol}: only {have} available"
            ev.append(_new(Rejected, (Reason.INSUFFICIENT_BALANCE, msg)))
            return
        account.available[asset] -= amount
        self.state.dirty[account] = None
        withdrawal_id = self.next_withdrawal_id
        self.next_withdrawal_id = withdrawal_id + 1
        self.pending_withdrawals.append((withdrawal_id, address, asset, amount))
        ev.append(_new(Withdrawn, (withdrawal_id, address, asset_id, amount)))
        self._balance_event(ev, account, asset)

    def _approve_agent(self, address: bytes, account: Account, a: Any, ev: list[Event]) -> None:
        try:
            if len(a) != 3:
                raise KeyError
            agent = a["agent"]
            name = a["name"]
        except KeyError:
            ev.append(_new(Rejected, _malformed("approve_agent")))
            return
        if not _is_address(agent) or agent == address:
            ev.append(_new(Rejected, (Reason.BAD_AGENT, "agent must be another 20-byte address")))
            return
        if type(name) is not str or len(name.encode()) > AGENT_NAME_MAX_BYTES:
            msg = f"name must be a string of at most {AGENT_NAME_MAX_BYTES} bytes"
            ev.append(_new(Rejected, (Reason.BAD_TYPE, msg)))
            return
        agents = account.agents
        if agent not in agents:
            if len(agents) >= MAX_AGENTS:
                msg = f"an account may approve {MAX_AGENTS} agents"
                ev.append(_new(Rejected, (Reason.TOO_MANY_AGENTS, msg)))
                return
            self._forget_stale_agent_nonces(account)
            if agent not in account.agent_nonces and len(account.agent_nonces) >= MAX_AGENT_KEYS:
                msg = (
                    f"an account keeps the nonces of {MAX_AGENT_KEYS} agent keys, revoked "
                    "ones until their nonces leave the replay window"
                )
                ev.append(_new(Rejected, (Reason.TOO_MANY_AGENTS, msg)))
                return
        agents[agent] = name
        ev.append(_new(AgentApproved, (address, agent, name)))

    def _revoke_agent(self, address: bytes, account: Account, a: Any, ev: list[Event]) -> None:
        """The agent can no longer sign for the account (its entries still in flight are
        `unauthorized` when applied). Its kept nonces stay, so an intent it signed cannot
        be replayed should the account approve it again; the account's orders stay too
        (they belong to the account, not to the key that placed them)."""
        try:
            if len(a) != 2:
                raise KeyError
            agent = a["agent"]
        except KeyError:
            ev.append(_new(Rejected, _malformed("revoke_agent")))
            return
        if not _is_address(agent):
            ev.append(_new(Rejected, (Reason.BAD_AGENT, "agent must be a 20-byte address")))
            return
        if agent not in account.agents:
            msg = f"0x{agent.hex()} is not an approved agent of 0x{address.hex()}"
            ev.append(_new(Rejected, (Reason.UNKNOWN_AGENT, msg)))
            return
        del account.agents[agent]
        self._forget_stale_agent_nonces(account)
        ev.append(_new(AgentRevoked, (address, agent)))

    def _forget_stale_agent_nonces(self, account: Account) -> None:
        """Drop the nonces of revoked agents whose newest nonce is below the replay window:
        every intent they signed is refused as out of the window anyway."""
        low = self._nonce_lo
        agents = account.agents
        stale = [
            signer
            for signer, raw in account.agent_nonces.items()
            if signer not in agents and (not raw or raw[-1] < low)
        ]
        for signer in stale:
            del account.agent_nonces[signer]

    # ------------------------------------------------------- checkpoints, snapshots

    def checkpoint(self) -> Checkpoint:
        """Seal the withdrawals since the last checkpoint and compute both roots."""
        withdrawals = tuple(
            Withdrawal(wid, address, self.assets[asset].token, amount * self.assets[asset].unit)
            for wid, address, asset, amount in self.pending_withdrawals
        )
        tree = MerkleTree(w.leaf() for w in withdrawals)
        if self.perps is not None:
            # Exit values move with the mark: every perp account's leaves are rehashed.
            exit_values = self.state.exit_values = self.perps.exit_values()
            self.state.dirty.update(dict.fromkeys(exit_values))
        self.sequence += 1
        checkpoint = Checkpoint(
            sequence=self.sequence,
            state_root=self.state.root(),
            withdrawals_root=tree.root(),
            last_deposit_id=self.last_deposit_id,
            withdrawals=withdrawals,
        )
        self.withdrawal_trees.add(checkpoint, tree)
        self.pending_withdrawals = []
        return checkpoint

    def balance_proof(self, address: bytes, asset_id: int) -> tuple[bytes, list[bytes]] | None:
        """(leaf, proof) of an (account, asset) balance against the last checkpoint's
        state root, or None if the pair had no leaf at that checkpoint."""
        account = self.accounts.get(address)
        asset = self.asset_index.get(asset_id)
        if account is None or asset is None:
            return None
        return self.state.proof(account, asset)

    def position_proof(self, address: bytes, market: int) -> tuple[bytes, list[bytes]] | None:
        """(leaf, proof) of a perp position against the last checkpoint's state root, or
        None if the position had no leaf there."""
        account = self.accounts.get(address)
        perp = account.perp if account is not None else None
        pos = perp.positions.get(market) if perp is not None else None
        return None if pos is None else self.state.proof_at(pos.leaf)

    def withdrawal_proof(
        self, sequence: int, withdrawal_id: int
    ) -> tuple[bytes, list[bytes]] | None:
        """(leaf, proof) of a withdrawal against the withdrawals root of checkpoint
        `sequence` (one of the last KEPT_CHECKPOINTS), or None."""
        return self.withdrawal_trees.proof(sequence, withdrawal_id)

    def snapshot(self) -> bytes:
        from matching.snapshot import dump

        return dump(self)

    @classmethod
    def restore(cls, data: bytes) -> Engine:
        from matching.snapshot import load

        return load(data)


def _reject(ev: list[Event], code: str, message: str) -> None:
    ev.append(_new(Rejected, (code, message)))


def _place_rejection(
    engine: Engine,
    account: Account,
    market: object,
    side: object,
    kind: object,
    price: object,
    size: object,
    tif: object,
    reduce_only: object,
    cloid: object,
    expires_ms: object,
) -> tuple[str, str] | None:
    """Why a place fails the static checks of Engine._place (the slow path, in order), or
    None if it passes them."""
    book = engine.books.get(market) if type(market) is int else None
    if book is None:
        return Reason.UNKNOWN_MARKET, f"unknown market {_show(market)}"
    if side != BUY and side != SELL:
        return Reason.BAD_SIDE, f"side must be buy or sell, got {_show(side)}"
    bad = _check_price_size(book, price, size)
    if bad is not None:
        return bad
    if kind == "limit":
        if tif not in _LIMIT_TIFS:
            msg = f"a limit order's tif is gtc, ioc, fok or post, not {_show(tif)}"
            return Reason.BAD_TIF, msg
    elif kind == "market":
        if tif not in _MARKET_TIFS:
            return Reason.BAD_TIF, f"a market order's tif is ioc or fok, not {_show(tif)}"
    else:
        return Reason.BAD_KIND, f"kind must be limit or market, got {_show(kind)}"
    if reduce_only is not False:
        if reduce_only is not True:
            return Reason.BAD_TYPE, "reduce_only must be a boolean"
        if book.perp is None and not engine._option_reduce_only(book, reduce_only):
            return Reason.REDUCE_ONLY_SPOT, "reduce-only needs a position; spot markets have none"
    if cloid is not None:
        if not _is_u64(cloid):
            return Reason.BAD_TYPE, "cloid must be a u64 or nil"
        if cloid in account.cloids:
            return Reason.DUPLICATE_CLOID, f"cloid {cloid} belongs to an open order"
    if expires_ms is not None:
        if not _is_u64(expires_ms):
            return Reason.BAD_TYPE, "expires_ms must be a u64 or nil"
        if expires_ms <= engine.timestamp_ms:
            msg = f"expires_ms {expires_ms} is not after the block time {engine.timestamp_ms}"
            return Reason.ALREADY_EXPIRED, msg
    if len(account.orders) >= MAX_OPEN_ORDERS:
        return Reason.TOO_MANY_ORDERS, f"an account may have {MAX_OPEN_ORDERS} open orders"
    return None


def _fillable(opposite: Side, threshold: int, size: int, account: Account) -> bool:
    """Can the levels up to `threshold` fill `size`, not counting the taker's own orders
    (self-trade prevention cancels those instead of filling them)?"""
    needed = size
    levels = opposite.levels
    for key in reversed(opposite.keys):
        if key < threshold:
            break
        for order in levels[key].orders:
            if order.live and order.account is not account:
                needed -= order.size
                if needed <= 0:
                    return True
    return False
