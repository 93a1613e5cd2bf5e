"""Option markets through the API (node/api/options.py): the series list with marks and
Greeks, one series, and an account's holdings, Greeks, margin and scenario P&L, compared
with the engine's own objects. The exchange is tests/api/exchange.py's in-process node
with the localnet's BTC-PERP and option chain (node/genesis.py); entries are applied as
blocks directly (the intake's signatures are tested elsewhere)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import httpx
import trio

from matching.config import Genesis, OptionRules
from node.api.app import ApiLimits, create_app, serve_api
from node.genesis import default_exchange, option_chain, perp_market
from node.runtime import Executable
from tests.api.exchange import FEE_ACCOUNT, ExchangeNode

OPEN = ApiLimits(ip_limit=None, account_limit=None)
MEMBERS = tuple(bytes([0xD0 + i]) * 20 for i in range(4))
INSURANCE = bytes([0x1F]) * 20
ALICE, BOB = bytes([0xA1]) * 20, bytes([0xB0]) * 20
USDC, BTC_PERP = 1, 2
ATM_CALL = 4  # BTC-...-97000-C of the first expiry


def option_exchange() -> Genesis:
    base = default_exchange(FEE_ACCOUNT)
    now_ms = time.time_ns() // 1_000_000
    genesis = dataclasses.replace(
        base,
        markets=(*base.markets, perp_market(), *option_chain(now_ms)),
        insurance_account=INSURANCE,
        oracle_members=MEMBERS,
        oracle_quorum=3,
        option_rules=OptionRules(),
    )
    genesis.check()
    return genesis


def entry(node: ExchangeNode, account: bytes, action: dict[str, Any]) -> Executable:
    nonce = max(node.engine.timestamp_ms, time.time_ns() // 1_000_000) + len(node.pending)
    node.pending.append(Executable({}, account, None))  # only to vary the nonce
    body = {"account": account, "signer": account, "nonce": nonce, "action": action}
    return Executable(body, account, None)


def place(market: int, side: str, price: int, size: int) -> dict[str, Any]:
    return {"type": "place", "market": market, "side": side, "kind": "limit", "price": price,
            "size": size, "tif": "gtc", "reduce_only": False, "cloid": None,
            "expires_ms": None}  # fmt: skip


async def test_series_and_account_views(nursery: trio.Nursery) -> None:
    node = ExchangeNode(option_exchange())
    node.deposit(ALICE, USDC, 10**12)
    node.deposit(BOB, USDC, 10**12)
    oracle = [
        Executable({"action": {"type": "oracle", "member": m, "prices": [[BTC_PERP, 970_000]]}},
                   bytes(20), None)
        for m in MEMBERS
    ]  # fmt: skip
    node.apply(oracle)
    options = node.engine.options
    assert options is not None
    s = options.series[ATM_CALL]
    assert s.forward == 97_000 * 10**6
    price = s.mark // 100_000 * 100_000
    node.apply([entry(node, BOB, place(ATM_CALL, "sell", price, 2))])
    node.apply([entry(node, ALICE, place(ATM_CALL, "buy", price, 2))])
    port = await nursery.start(serve_api, create_app(node, OPEN), "127.0.0.1", 0)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
        listed = (await http.get("/v1/options")).json()
        assert [v["market"] for v in listed["series"]] == sorted(options.series)
        one = (await http.get(f"/v1/options/{ATM_CALL}")).json()
        assert one["mark"] == s.mark and one["forward"] == s.forward
        assert one["right"] == "call" and one["vol_source"] == "committee"
        assert 0 < int(one["greeks"]["delta"]) < 10**18
        missing = await http.get(f"/v1/options/{BTC_PERP}")
        assert missing.status_code == 404
        bob = (await http.get("/v1/accounts/0x" + BOB.hex() + "/options")).json()
        assert [h["size"] for h in bob["holdings"]] == [-2]
        maintenance, initial = options.requirement(node.engine.accounts[BOB])
        assert bob["maintenance_margin"] == maintenance and bob["initial_margin"] == initial
        assert int(bob["greeks"]["delta"]) < 0
        rows = bob["scenarios"][0]["scenarios"]
        assert len(rows) == len(options.grid)
        assert -min(r["pnl"] for r in rows) == maintenance


async def test_sdk_reads_option_markets(nursery: trio.Nursery) -> None:
    from seqnet_sdk import Client

    node = ExchangeNode(option_exchange())
    node.apply(
        [Executable({"action": {"type": "oracle", "member": m, "prices": [[BTC_PERP, 970_000]]}},
                    bytes(20), None) for m in MEMBERS]
    )  # fmt: skip
    port = await nursery.start(serve_api, create_app(node, OPEN), "127.0.0.1", 0)
    async with Client(f"http://127.0.0.1:{port}", bytes(31) + b"\x0a") as client:
        markets = await client.markets()
        info = markets.market(ATM_CALL)
        assert info.price_to_ticks("1234.5") == 1_234_500_000  # micro-USDC per contract
        series = await client.options()
        assert len(series) == 12
        assert (await client.options(ATM_CALL))["strike"] == 97_000 * 10**6
        assert (await client.option_account())["holdings"] == []
