"""Builders for engine tests: a small genesis, addresses, and plain entries."""

from __future__ import annotations

from typing import Any

from matching.config import Genesis
from matching.engine import BlockResult, Engine
from matching.events import Event

USDC, ETH, BTC = 0, 1, 2
ETH_USDC, BTC_USDC = 0, 1
LOT, TICK = 10, 5  # ETH_USDC: 10 base units per lot, prices in multiples of 5
T0 = 1_700_000_000_000  # a block timestamp (ms)

FEE = bytes([0xFE]) * 20


def addr(n: int) -> bytes:
    return n.to_bytes(20, "big")


ALICE, BOB, CAROL, AGENT = addr(1), addr(2), addr(3), addr(99)


def genesis_dict() -> dict[str, Any]:
    return {
        "fee_account": "0x" + FEE.hex(),
        "assets": [
            {"id": USDC, "symbol": "USDC", "token": "0x" + "aa" * 20, "unit": 1},
            {"id": ETH, "symbol": "ETH", "token": "0x" + "00" * 20, "unit": 10**9},
            {"id": BTC, "symbol": "BTC", "token": "0x" + "bb" * 20, "unit": 100},
        ],
        "markets": [
            {"id": ETH_USDC, "symbol": "ETH-USDC", "base": ETH, "quote": USDC,
             "lot_size": LOT, "tick_size": TICK, "maker_fee_bps": 10, "taker_fee_bps": 30},
            {"id": BTC_USDC, "symbol": "BTC-USDC", "base": BTC, "quote": USDC,
             "lot_size": 1, "tick_size": 1, "maker_fee_bps": 0, "taker_fee_bps": 5},
        ],
    }  # fmt: skip


def genesis() -> Genesis:
    return Genesis.from_dict(genesis_dict())


class Harness:
    """An engine plus nonce bookkeeping, so tests read as a list of actions."""

    def __init__(self) -> None:
        self.engine = Engine(genesis())
        self.ts = T0
        self.nonce = T0
        self.deposit_id = 0

    def entry(
        self, account: bytes, action: dict[str, Any], signer: bytes | None = None
    ) -> dict[str, Any]:
        self.nonce += 1
        return {
            "account": account,
            "signer": signer or account,
            "nonce": self.nonce,
            "action": action,
        }

    def deposit_entry(self, account: bytes, asset: int, amount: int) -> dict[str, Any]:
        self.deposit_id += 1
        return {"action": {"type": "deposit", "deposit_id": self.deposit_id, "account": account,
                           "asset": asset, "amount": amount}}  # fmt: skip

    def block(self, entries: list[dict[str, Any]], advance_ms: int = 1) -> BlockResult:
        self.ts += advance_ms
        return self.engine.apply_block(self.ts, entries)

    def one(
        self, account: bytes, action: dict[str, Any], signer: bytes | None = None
    ) -> list[Event]:
        return self.block([self.entry(account, action, signer)]).events[0]

    def fund(self, account: bytes, asset: int, amount: int) -> None:
        self.block([self.deposit_entry(account, asset, amount)])

    def balance(self, account: bytes, asset: int) -> tuple[int, int]:
        return self.engine.balance(account, asset)


def place(
    market: int = ETH_USDC,
    side: str = "buy",
    price: int = 100,
    size: int = 10,
    kind: str = "limit",
    tif: str = "gtc",
    reduce_only: bool = False,
    cloid: int | None = None,
    expires_ms: int | None = None,
) -> dict[str, Any]:
    return {"type": "place", "market": market, "side": side, "kind": kind, "price": price,
            "size": size, "tif": tif, "reduce_only": reduce_only, "cloid": cloid,
            "expires_ms": expires_ms}  # fmt: skip


def cancel(oid: int, market: int = ETH_USDC) -> dict[str, Any]:
    return {"type": "cancel", "market": market, "oid": oid}


def cancel_cloid(cloid: int, market: int = ETH_USDC) -> dict[str, Any]:
    return {"type": "cancel_cloid", "market": market, "cloid": cloid}


def cancel_all(market: int | None = None) -> dict[str, Any]:
    return {"type": "cancel_all", "market": market}


def modify(oid: int, price: int, size: int, market: int = ETH_USDC) -> dict[str, Any]:
    return {"type": "modify", "market": market, "oid": oid, "price": price, "size": size}


def withdraw(asset: int, amount: int) -> dict[str, Any]:
    return {"type": "withdraw", "asset": asset, "amount": amount}


def approve(agent: bytes, name: str = "bot") -> dict[str, Any]:
    return {"type": "approve_agent", "agent": agent, "name": name}


def revoke(agent: bytes) -> dict[str, Any]:
    return {"type": "revoke_agent", "agent": agent}


def kinds(events: list[Event]) -> list[str]:
    return [type(e).__name__ for e in events]


def book_view(engine: Engine, market: int = ETH_USDC) -> tuple[list[tuple[int, list[int]]], ...]:
    """Each side best first: (price, [oid, ...] in queue order)."""
    book = engine.books[market]
    return tuple(
        [(level.price, [o.oid for o in level]) for level in side.best_first()]
        for side in (book.bids, book.asks)
    )


def state_view(engine: Engine) -> tuple[Any, ...]:
    """Everything but the nonces: balances, open orders, counters, book queues."""
    balances = {
        address: (tuple(a.available), tuple(a.locked), tuple(a.leaf))
        for address, a in engine.accounts.items()
        if any(a.available) or any(a.locked)
    }
    orders = {
        o.oid: (o.account.address, o.book.id, o.is_buy, o.price, o.size, o.reserved, o.cloid)
        for a in engine.accounts.values()
        for o in a.orders.values()
    }
    books = tuple(book_view(engine, m) for m in engine.books)
    counters = (engine.next_oid, engine.next_trade_id, engine.next_withdrawal_id,
                engine.last_deposit_id, len(engine.pending_withdrawals))  # fmt: skip
    return balances, orders, books, counters


def reserve(price: int, size: int, lot: int = LOT, fee_bps: int = 30) -> int:
    notional = price * (size // lot)
    return notional + notional * fee_bps // 10_000
