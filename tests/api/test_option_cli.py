"""Option trading from the SDK and `seqnet trade`: set_option_margin signed end to end,
reduce-only option orders, and the option commands (series with mark IV and Greeks, an
account's positions with Greeks, the margin by scenario). The exchange is
tests/api/exchange.py's in-process node (real engine, real EIP-712 signatures) with the
localnet's BTC-PERP and option chain; prices arrive as committee entries."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pytest
import trio

from node.api.app import create_app, serve_api
from node.intents import address_of_private_key
from node.runtime import Executable
from seqnet_sdk import Client
from tests.api.exchange import ExchangeNode
from tests.api.test_option_api import ATM_CALL, BTC_PERP, MEMBERS, OPEN, USDC, option_exchange

ALICE_KEY = bytes(31) + b"\x0a"
BOB_KEY = bytes(31) + b"\x0b"
ALICE = address_of_private_key(ALICE_KEY)
BOB = address_of_private_key(BOB_KEY)


@pytest.fixture
async def node() -> ExchangeNode:
    exchange = ExchangeNode(option_exchange())
    exchange.deposit(ALICE, USDC, 10**11)  # 100,000 USDC
    exchange.deposit(BOB, USDC, 10**12)
    exchange.apply(
        [
            Executable(
                {"action": {"type": "oracle", "member": m, "prices": [[BTC_PERP, 970_000]]}},
                bytes(20),
                None,
            )
            for m in MEMBERS
        ]
    )
    return exchange


@pytest.fixture
async def url(nursery: trio.Nursery, node: ExchangeNode) -> str:
    port = await nursery.start(serve_api, create_app(node, OPEN), "127.0.0.1", 0)
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def bob(url: str) -> AsyncIterator[Client]:
    async with Client(url, BOB_KEY) as client:
        yield client


@pytest.fixture
async def alice(url: str) -> AsyncIterator[Client]:
    async with Client(url, ALICE_KEY) as client:
        yield client


def standard(node: ExchangeNode, who: bytes) -> bool:
    options = node.engine.options
    assert options is not None
    oa = options.accounts.get(node.engine.accounts[who])
    return oa is not None and oa.standard


def holding(node: ExchangeNode, who: bytes, market: int) -> int:
    options = node.engine.options
    assert options is not None
    oa = options.accounts.get(node.engine.accounts[who])
    h = None if oa is None else oa.holdings.get(market)
    return 0 if h is None else h.size


async def test_set_option_margin_is_signed_end_to_end(node: ExchangeNode, alice: Client) -> None:
    result = await alice.set_option_margin("standard")
    assert result.status == "committed", result
    assert standard(node, ALICE)
    assert (await alice.option_account())["margin_mode"] == "standard"
    assert (await alice.set_option_margin("portfolio")).status == "committed"
    assert not standard(node, ALICE)
    with pytest.raises(ValueError, match="portfolio or standard"):
        await alice.set_option_margin("cross")


async def test_reduce_only_option_orders(node: ExchangeNode, alice: Client, bob: Client) -> None:
    series = await alice.options(ATM_CALL)
    symbol = series["symbol"]
    price = Decimal(series["mark"] // 100_000) / 10  # whole ticks of 0.1 USDC
    # No holding: refused; a resting reduce-only: refused.
    refused = await alice.place(symbol, "sell", "1", price, tif="ioc", reduce_only=True)
    assert (refused.status, refused.code) == ("rejected", "reduce_only_no_position")
    refused = await alice.place(symbol, "sell", "1", price, tif="gtc", reduce_only=True)
    assert (refused.status, refused.code) == ("rejected", "reduce_only_tif")
    # Alice buys 2 calls; a reduce-only buy (the same side) is refused.
    assert (await bob.place(symbol, "sell", "2", price, tif="post")).ok
    assert (await alice.place(symbol, "buy", "2", price, tif="ioc")).ok
    assert holding(node, ALICE, ATM_CALL) == 2
    refused = await alice.place(symbol, "buy", "1", price, tif="ioc", reduce_only=True)
    assert (refused.status, refused.code) == ("rejected", "reduce_only_no_position")
    # A reduce-only sell of 5 against a bid of 5 closes the 2 and no more.
    assert (await bob.place(symbol, "buy", "5", price, tif="post")).ok
    done = await alice.place(symbol, "sell", "5", price, tif="ioc", reduce_only=True)
    assert done.status == "committed", done
    assert holding(node, ALICE, ATM_CALL) == 0
    assert holding(node, BOB, ATM_CALL) == 0  # sold 2, bought 2


async def test_trade_cli_option_commands(
    node: ExchangeNode, url: str, bob: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    from node.trade_cli import main as trade_main

    async def trade(*argv: str) -> tuple[int, str]:
        common = ["--api", url, "--key", "0x" + ALICE_KEY.hex()]
        capsys.readouterr()  # the server's log lines so far
        code = await trio.to_thread.run_sync(trade_main, [*common, *argv])
        return code, capsys.readouterr().out

    def parsed(out: str) -> Any:
        lines = out.splitlines()
        start = next(i for i, line in enumerate(lines) if line[:1] in "{[")
        return json.loads("\n".join(lines[start:]))

    code, out = await trade("option-margin-mode", "standard")
    assert code == 0 and parsed(out)["status"] == "committed"
    assert standard(node, ALICE)
    code, out = await trade("option-margin-mode", "portfolio")
    assert code == 0 and not standard(node, ALICE)

    code, out = await trade("options", "--json")
    listed = parsed(out)
    assert code == 0 and len(listed) == 12
    atm = next(s for s in listed if s["market"] == ATM_CALL)
    code, out = await trade("options")
    assert code == 0 and atm["symbol"] in out and "60.00%" in out  # the genesis IV
    # A delta near 0.5 for the ATM call, in human units.
    delta = Decimal(atm["greeks"]["delta"]) / 10**18
    assert Decimal("0.4") < delta < Decimal("0.65")
    assert str(delta.quantize(Decimal("0.0001"))) in out
    code, out = await trade("options", atm["symbol"])
    assert code == 0 and atm["symbol"] in out and "BTC-" not in out.replace(atm["symbol"], "")

    symbol = atm["symbol"]
    price = Decimal(atm["mark"] // 100_000) / 10
    assert (await bob.place(symbol, "buy", "3", price, tif="post")).ok
    code, out = await trade("place", symbol, "sell", "3", str(price), "--tif", "ioc")
    assert code == 0 and parsed(out)["status"] == "committed"
    code, out = await trade("option-positions")
    assert code == 0 and symbol in out and "total" in out
    code, out = await trade("option-positions", "--json")
    view = parsed(out)
    assert [h["size"] for h in view["holdings"]] == [-3]
    code, out = await trade("option-margin")
    assert code == 0 and "worst" in out and "mode portfolio" in out
    worst = min(r["pnl"] for r in view["scenarios"][0]["scenarios"])
    assert view["maintenance_margin"] == -worst  # the binding scenario, as the table marks
    # Reduce-only from the CLI: buy back more than held, only 3 fill.
    assert (await bob.place(symbol, "sell", "5", price + 1, tif="post")).ok
    code, out = await trade(
        "place", symbol, "buy", "5", str(price + 1), "--tif", "ioc", "--reduce-only"
    )
    assert code == 0 and parsed(out)["status"] == "committed"
    assert holding(node, ALICE, ATM_CALL) == 0
