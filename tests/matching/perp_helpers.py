"""Builders for perp tests: a genesis with a spot market and two perp markets, oracle
members, and a harness that reads as a list of actions."""

from __future__ import annotations

from typing import Any

from matching.config import Genesis
from matching.engine import BlockResult, Engine
from matching.events import Event
from tests.matching.helpers import FEE, T0, addr

USDC, ETH = 0, 1
ETH_USDC, BTC_PERP, ETH_PERP = 0, 7, 8
PERP_LOT = 10  # contract units per lot
INSURANCE = bytes([0x1F]) * 20
MEMBERS = tuple(bytes([0xD0 + i]) * 20 for i in range(4))  # n = 4, f = 1, quorum 3
TRADERS = tuple(addr(10 + i) for i in range(6))
BTC_TIERS = [[1_000_000, 1_000, 500], [10_000_000, 2_000, 1_000]]  # 10x/5 %, then 5x/10 %


def perp_genesis_dict(**market: Any) -> dict[str, Any]:
    btc = {"id": BTC_PERP, "symbol": "BTC-PERP", "kind": "perp", "quote": USDC,
           "lot_size": PERP_LOT, "tick_size": 1, "maker_fee_bps": 2, "taker_fee_bps": 5,
           "margin_tiers": BTC_TIERS, "max_leverage": 10, "funding_interval_ms": 60_000,
           "liquidation_fee_bps": 100, "oracle_max_age_ms": 5_000, **market}  # fmt: skip
    eth = {"id": ETH_PERP, "symbol": "ETH-PERP", "kind": "perp", "quote": USDC,
           "lot_size": 1, "tick_size": 1, "maker_fee_bps": 0, "taker_fee_bps": 0,
           "margin_tiers": [[10**12, 500, 200]], "max_leverage": 20}  # fmt: skip
    return {
        "fee_account": "0x" + FEE.hex(),
        "insurance_account": "0x" + INSURANCE.hex(),
        "oracle_members": ["0x" + m.hex() for m in MEMBERS],
        "oracle_quorum": 3,
        "assets": [
            {"id": USDC, "symbol": "USDC", "token": "0x" + "aa" * 20, "unit": 1},
            {"id": ETH, "symbol": "ETH", "token": "0x" + "00" * 20, "unit": 10**9},
        ],
        "markets": [
            {"id": ETH_USDC, "symbol": "ETH-USDC", "base": ETH, "quote": USDC,
             "lot_size": 10, "tick_size": 5, "maker_fee_bps": 10, "taker_fee_bps": 30},
            btc,
            eth,
        ],
    }  # fmt: skip


def perp_genesis(**market: Any) -> Genesis:
    return Genesis.from_dict(perp_genesis_dict(**market))


def oracle(member: bytes, *prices: tuple[int, int]) -> dict[str, Any]:
    return {"action": {"type": "oracle", "member": member, "prices": [list(p) for p in prices]}}


def perp_order(
    side: str,
    price: int,
    size: int,
    market: int = BTC_PERP,
    tif: str = "gtc",
    kind: str = "limit",
    reduce_only: bool = False,
    cloid: int | None = None,
) -> dict[str, Any]:
    return {"type": "place", "market": market, "side": side, "kind": kind, "price": price,
            "size": size, "tif": tif, "reduce_only": reduce_only, "cloid": cloid,
            "expires_ms": None}  # fmt: skip


def set_leverage(leverage: int, isolated: bool = False, market: int = BTC_PERP) -> dict[str, Any]:
    return {"type": "set_leverage", "market": market, "leverage": leverage, "isolated": isolated}


def margin(kind: str, amount: int, market: int = BTC_PERP) -> dict[str, Any]:
    return {"type": kind, "market": market, "amount": amount}


class PerpHarness:
    def __init__(self, **market: Any) -> None:
        self.engine = Engine(perp_genesis(**market))
        self.ts = T0
        self.nonce = T0
        self.deposit_id = 0
        self.log: list[tuple[int, list[dict[str, Any]]]] = []
        self.results: list[BlockResult] = []

    def entry(self, account: bytes, action: dict[str, Any]) -> dict[str, Any]:
        self.nonce += 1
        return {"account": account, "signer": account, "nonce": self.nonce, "action": action}

    def deposit(self, account: bytes, amount: int, asset: int = USDC) -> dict[str, Any]:
        self.deposit_id += 1
        return {"action": {"type": "deposit", "deposit_id": self.deposit_id, "account": account,
                           "asset": asset, "amount": amount}}  # fmt: skip

    def block(self, entries: list[dict[str, Any]], advance_ms: int = 100) -> BlockResult:
        self.ts += advance_ms
        result = self.engine.apply_block(self.ts, entries)
        self.log.append((self.ts, entries))
        self.results.append(result)
        return result

    def one(self, account: bytes, action: dict[str, Any]) -> list[Event]:
        return self.block([self.entry(account, action)]).events[0]

    def prices(self, *prices: tuple[int, int], members: int = 4) -> BlockResult:
        return self.block([oracle(m, *prices) for m in MEMBERS[:members]])

    def position(self, account: bytes, market: int = BTC_PERP) -> tuple[int, int]:
        """(size, entry notional), (0, 0) without one."""
        perp = self.engine.accounts[account].perp
        pos = perp.positions.get(market) if perp is not None else None
        return (0, 0) if pos is None else (pos.size, pos.entry)

    def cash(self, account: bytes) -> int:
        return self.engine.balance(account, USDC)[0]


def withdraw_action(asset: int, amount: int) -> dict[str, Any]:
    return {"type": "withdraw", "asset": asset, "amount": amount}
