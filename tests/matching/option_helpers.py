"""Builders for option-market tests: the perp test genesis with a small BTC option chain
on BTC-PERP's index, and a harness with option shortcuts."""

from __future__ import annotations

from typing import Any

from matching.config import Genesis
from matching.engine import BlockResult, Engine
from matching.events import Event
from tests.matching.helpers import T0
from tests.matching.perp_helpers import (
    BTC_PERP,
    MEMBERS,
    TRADERS,
    USDC,
    PerpHarness,
    perp_genesis_dict,
)

DAY_MS = 86_400_000
EXPIRY = T0 + 30 * DAY_MS
INDEX = 50_000  # BTC-PERP index per lot in the tests (ticks of 1)
# (market id, right, strike): one expiry, three strikes, calls and puts
CHAIN = (
    (20, "call", 45_000),
    (21, "call", 50_000),
    (22, "call", 55_000),
    (23, "put", 45_000),
    (24, "put", 50_000),
    (25, "put", 55_000),
)
C50, P50 = 21, 24
VOL = 800_000_000  # 80 %: the genesis committee vol


def option_market(market: int, right: str, strike: int, expiry_ms: int = EXPIRY) -> dict[str, Any]:
    return {"id": market, "symbol": f"BTC-{right[0].upper()}{strike}", "kind": "option",
            "quote": USDC, "underlying": BTC_PERP, "strike": strike, "expiry_ms": expiry_ms,
            "right": right, "underlying_lots": 1, "vol_e9": VOL, "lot_size": 1,
            "tick_size": 1, "maker_fee_bps": 2, "taker_fee_bps": 5}  # fmt: skip


def option_genesis_dict(expiry_ms: int = EXPIRY, **rules: int) -> dict[str, Any]:
    raw = perp_genesis_dict()
    raw["markets"] += [option_market(m, r, k, expiry_ms) for m, r, k in CHAIN]
    if rules:
        raw["option_rules"] = rules
    return raw


def option_order(
    market: int, side: str, price: int, size: int, tif: str = "gtc", kind: str = "limit"
) -> dict[str, Any]:
    return {"type": "place", "market": market, "side": side, "kind": kind, "price": price,
            "size": size, "tif": tif, "reduce_only": False, "cloid": None,
            "expires_ms": None}  # fmt: skip


def vols(member: bytes, *pairs: tuple[int, int]) -> dict[str, Any]:
    return {"action": {"type": "vols", "member": member, "vols": [list(p) for p in pairs]}}


class OptionHarness(PerpHarness):
    def __init__(self, expiry_ms: int = EXPIRY, **rules: int) -> None:
        super().__init__()
        self.engine = Engine(Genesis.from_dict(option_genesis_dict(expiry_ms, **rules)))

    def fund(self, amount: int = 10_000_000, traders: tuple[bytes, ...] = TRADERS) -> None:
        self.block([self.deposit(t, amount) for t in traders])

    def index(self, price: int = INDEX) -> BlockResult:
        return self.prices((BTC_PERP, price))

    def holding(self, account: bytes, market: int) -> int:
        options = self.engine.options
        assert options is not None
        oa = options.accounts.get(self.engine.accounts[account])
        h = oa.holdings.get(market) if oa is not None else None
        return 0 if h is None else h.size

    def place(self, account: bytes, market: int, side: str, price: int, size: int) -> list[Event]:
        return self.one(account, option_order(market, side, price, size))

    def committee_vols(self, *pairs: tuple[int, int]) -> None:
        self.block([vols(m, *pairs) for m in MEMBERS])
