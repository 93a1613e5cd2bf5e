"""Queries, streams, metrics and the SDK against the real API app served by hypercorn,
over an in-process exchange (tests/api/exchange.py: real engine, real signatures, blocks
cut by the test). Waits are for conditions, bounded by `fail_after`."""

from __future__ import annotations

import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import open_websocket_url

from node.api.app import ApiLimits, create_app, serve_api
from node.api.streams import StreamLimits
from node.intents import address_of_private_key
from seqnet_sdk import Client, OffGrid, SyncClient
from seqnet_sdk.stream import receive_until
from tests.api.exchange import ExchangeNode

OPEN = ApiLimits(ip_limit=None, account_limit=None)
ALICE_KEY = bytes(31) + b"\x0a"
BOB_KEY = bytes(31) + b"\x0b"
AGENT_KEY = bytes(31) + b"\x0c"
ALICE = address_of_private_key(ALICE_KEY)
BOB = address_of_private_key(BOB_KEY)
ETH, USDC = 0, 1


@pytest.fixture
async def node() -> ExchangeNode:
    exchange = ExchangeNode()
    for who in (ALICE, BOB):
        exchange.deposit(who, ETH, 100 * 10**9)  # 100 ETH in gwei
        exchange.deposit(who, USDC, 10**12)  # 1M USDC in micro-USDC
    return exchange


async def serve(nursery: trio.Nursery, node: ExchangeNode, **kwargs: Any) -> str:
    app = create_app(node, OPEN, **kwargs)
    port = await nursery.start(serve_api, app, "127.0.0.1", 0)
    return f"http://127.0.0.1:{port}"


@pytest.fixture
async def url(nursery: trio.Nursery, node: ExchangeNode) -> str:
    return await serve(nursery, node)


@pytest.fixture
async def alice(url: str) -> AsyncIterator[Client]:
    async with Client(url, ALICE_KEY) as client:
        yield client


@pytest.fixture
async def bob(url: str) -> AsyncIterator[Client]:
    async with Client(url, BOB_KEY) as client:
        yield client


async def test_resting_order_queries(alice: Client, url: str) -> None:
    markets = await alice.markets()
    eth_usdc = markets.market("ETH-USDC")
    assert eth_usdc.tick() == Decimal("0.01") and eth_usdc.lot() == Decimal("0.001")
    with pytest.raises(OffGrid):
        await alice.place("ETH-USDC", "buy", "0.5", "2999.999")
    with pytest.raises(OffGrid):
        await alice.place("ETH-USDC", "buy", "0.0005", "2999")

    result = await alice.place("ETH-USDC", "buy", "0.5", "2999.5", cloid=7)
    assert result.status == "committed" and result.oid is not None, result
    book = await alice.book("ETH-USDC")
    assert book["bids"] == [[2_999_500, 500_000_000, 1]] and book["asks"] == []
    assert book["height"] == result.height
    order = await alice.order(result.oid)
    assert order["status"] == "open" and order["cloid"] == 7 and order["open"] == 500_000_000
    assert (await alice.order_by_cloid(7))["oid"] == result.oid
    assert [o["oid"] for o in await alice.open_orders()] == [result.oid]
    balances = await alice.balances()
    assert balances["USDC"]["locked"] > 0

    cancelled = await alice.cancel_by_cloid("ETH-USDC", 7)
    assert cancelled.status == "committed"
    history = await alice.order_history()
    assert history[0]["status"] == "cancelled" and history[0]["reason"] == "user"
    assert await alice.open_orders() == []
    assert (await alice.book(0))["bids"] == []

    async with httpx.AsyncClient(base_url=url) as http:
        missing = await http.get("/v1/orders/999999")
        assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
        bad = await http.get("/v1/markets/77/book")
        assert bad.status_code == 404 and bad.json()["error"]["code"] == "unknown_market"
        bad = await http.get("/v1/markets/0/book?depth=0")
        assert bad.status_code == 400 and bad.json()["error"]["code"] == "bad_request"


async def test_fill_between_two_accounts(alice: Client, bob: Client) -> None:
    maker = await alice.place("ETH-USDC", "sell", "1", "3000", tif="post")
    taker = await bob.place("ETH-USDC", "buy", "0.4", "3001", tif="ioc")
    assert maker.status == taker.status == "committed"
    trades = await bob.trades("ETH-USDC")
    assert [(t["price"], t["size"], t["taker_side"]) for t in trades] == [
        (3_000_000, 400_000_000, "buy")
    ]
    alice_fills, bob_fills = await alice.fills(), await bob.fills()
    assert alice_fills[0]["maker"] and not bob_fills[0]["maker"]
    assert alice_fills[0]["remaining"] == 600_000_000
    assert (await alice.order(maker.oid or 0))["filled"] == 400_000_000
    assert (await bob.order(taker.oid or 0))["status"] == "filled"
    book = await bob.book("ETH-USDC")
    assert book["asks"] == [[3_000_000, 600_000_000, 1]]

    # modify keeps the order id; cancel_all empties the book
    modified = await alice.modify("ETH-USDC", maker.oid or 0, "0.6", "3000.5")
    assert modified.status == "committed"
    assert (await bob.book(0))["asks"] == [[3_000_500, 600_000_000, 1]]
    assert (await alice.cancel_all()).status == "committed"
    assert (await bob.book(0))["asks"] == []


async def test_agent_trades_for_account(alice: Client, url: str) -> None:
    agent = address_of_private_key(AGENT_KEY)
    assert (await alice.approve_agent(agent, "bot")).status == "committed"
    async with Client(url, AGENT_KEY, account=ALICE) as bot:
        placed = await bot.place("ETH-USDC", "buy", "0.1", "2000")
        assert placed.status == "committed"
        assert (await alice.order(placed.oid or 0))["account"] == alice.address
        refused = await bot.withdraw("USDC", "1")
        assert refused.status == "rejected" and refused.code == "signer_not_account"
    done = await alice.withdraw("USDC", "1.5")
    assert done.status == "committed"


async def test_book_stream_snapshot_deltas_and_gap_resync(
    node: ExchangeNode, alice: Client, bob: Client, url: str, nursery: trio.Nursery
) -> None:
    hub = None
    async with alice.stream() as stream:
        await stream.subscribe_book(0)
        await stream.subscribe_trades(0)
        await stream.subscribe_account(BOB)
        snapshot = await receive_until(stream, lambda m: m.get("type") == "snapshot", 5)
        assert snapshot["bids"] == snapshot["asks"] == []
        await alice.place(0, "sell", "1", "3000")
        await bob.place(0, "buy", "0.25", "3000", tif="ioc")
        seen: dict[str, Any] = {}
        with trio.fail_after(5):
            while len(seen) < 2:
                message = await stream.receive()
                if message["channel"] in ("account", "trades"):
                    seen[message["channel"]] = message
        fill = next(u for u in seen["account"]["updates"] if u["type"] == "fill")
        assert fill["size"] == 250_000_000 and not fill["maker"]
        assert [t["size"] for t in seen["trades"]["trades"]] == [250_000_000]
        with trio.fail_after(5):
            while stream.books[0].asks != {3_000_000: 750_000_000}:
                await stream.receive()

        # Lose one delta on the node's side: the client sees the gap and resyncs.
        app_hub = _hub_of(node)
        real_publish = app_hub.publish
        dropped: list[int] = []

        def lossy(topic: Any, message: dict[str, Any]) -> None:
            if topic == ("book", 0) and not dropped:
                dropped.append(message["seq"])
                return
            real_publish(topic, message)

        app_hub.publish = lossy
        await alice.place(0, "sell", "0.5", "3001")  # this delta is lost
        await alice.place(0, "sell", "0.5", "3002")  # this one reveals the gap
        gap = await receive_until(stream, lambda m: m.get("type") == "gap", 5)
        assert gap["expected"] == dropped[0] and stream.gaps == 1
        resync = await receive_until(stream, lambda m: m.get("type") == "snapshot", 5)
        rest = await alice.book(0, depth=100)
        assert resync["seq"] == rest["seq"]
        assert sorted(stream.books[0].asks.items()) == [(p, s) for p, s, _ in rest["asks"]]
        hub = app_hub
    assert hub is not None


def _hub_of(node: ExchangeNode) -> Any:
    # The app registered the indexer's and the metrics' listeners; the hub is the
    # indexer's publisher.
    indexer = node.listeners[0].__self__  # type: ignore[attr-defined]
    return indexer.publisher


async def test_stalled_subscriber_is_dropped_and_node_stays_fast(
    node: ExchangeNode, nursery: trio.Nursery
) -> None:
    url = await serve(nursery, node, stream_limits=StreamLimits(queue_messages=32))
    hub = _hub_of(node)
    ws_url = url.replace("http", "ws") + "/v1/stream"
    async with open_websocket_url(ws_url) as stalled, Client(url, ALICE_KEY) as alice:
        await stalled.send_message(json.dumps({"op": "subscribe", "channel": "book", "market": 0}))
        await stalled.send_message(
            json.dumps({"op": "subscribe", "channel": "account", "account": alice.address})
        )
        async with alice.stream() as healthy:
            await healthy.subscribe_book(0)
            await receive_until(healthy, lambda m: m.get("type") == "snapshot", 5)
            with trio.fail_after(5):
                while hub.connections < 2 or sum(hub.subscriptions().values()) < 3:
                    await trio.sleep(0.01)
            # Many book changes; `stalled` never reads. Each block's listeners must stay
            # quick whatever the stalled client does.
            market = (await alice.markets()).market(0)
            node.auto_commit = False
            slowest_s = 0.0
            blocks = 0
            with trio.fail_after(60):
                while not hub.dropped.get("slow_consumer"):
                    ticks = [market.tick_size * (1 + blocks * 50 + i) for i in range(50)]
                    actions = [
                        await alice.place_action(
                            0, "buy", size_units=market.lot_size, price_ticks=price
                        )
                        for price in ticks
                    ]
                    await alice.submit(actions, wait=False)
                    started = time.perf_counter()
                    node.commit()
                    slowest_s = max(slowest_s, time.perf_counter() - started)
                    blocks += 1
                    # the healthy stream keeps up: it sees every delta in order
                    with trio.fail_after(5):
                        while healthy.books[0].seq < _seq(node):
                            await healthy.receive()
                    assert healthy.gaps == 0
            print(f"dropped after {blocks} blocks; slowest block {slowest_s * 1000:.1f} ms")
            assert blocks < 500
            assert slowest_s < 0.25, f"a block took {slowest_s:.3f} s with a stalled reader"
            assert hub.subscriptions() == {
                "book": 1, "trades": 0, "account": 0, "checkpoints": 0, "prices": 0,
                "liquidations": 0, "positions": 0,
            }  # fmt: skip
        # Once the stalled client reads again, it learns why it was dropped.
        with trio.fail_after(10):
            while True:
                message = json.loads(await stalled.get_message())
                if message["channel"] == "error":
                    break
        assert message["error"]["code"] == "slow_consumer"


def _seq(node: ExchangeNode) -> int:
    indexer = node.listeners[0].__self__  # type: ignore[attr-defined]
    return int(indexer.depth(0, 1)["seq"])


async def test_metrics_and_stream_errors(alice: Client, url: str) -> None:
    await alice.place(0, "buy", "0.1", "100")
    async with alice.stream() as stream:
        await stream._send({"op": "subscribe", "channel": "book", "market": 99})
        error = await receive_until(stream, lambda m: m.get("channel") == "error", 5)
        assert error["error"]["code"] == "unknown_market"
        await stream._send({"op": "jump"})
        error = await receive_until(stream, lambda m: m.get("channel") == "error", 5)
        assert error["error"]["code"] == "bad_value"
        await stream.ping()
        await receive_until(stream, lambda m: m.get("channel") == "pong", 5)
        await stream.subscribe_trades(0)
        async with httpx.AsyncClient(base_url=url) as http:
            text = (await http.get("/metrics")).text
    assert 'seqnet_api_requests_total{method="POST",route="/v1/intents",status="200"}' in text
    assert 'seqnet_intake_results_total{code="",status="committed"}' in text
    assert 'seqnet_stream_subscriptions{channel="trades"} 1.0' in text
    assert "seqnet_committed_height 5.0" in text
    assert "seqnet_block_entries_bucket" in text


async def test_sync_client(url: str, node: ExchangeNode) -> None:
    def script() -> tuple[Any, Any]:
        with SyncClient(url, BOB_KEY) as client:
            placed = client.place("ETH-USDC", "buy", "0.002", "1500.25")
            return placed, client.open_orders()

    placed, orders = await trio.to_thread.run_sync(script)
    assert placed.status == "committed" and orders[0]["oid"] == placed.oid
