"""Perpetual futures through the API: positions, margin, prices and oracle, funding and
liquidation history, the perp streams, the SDK's perp calls, and bad input.

The exchange is tests/api/exchange.py's in-process node (the real engine, real EIP-712
signatures, blocks cut by the test) with the localnet's BTC-PERP (node/genesis.py
`perp_market`) and a one-minute funding interval; oracle observations are committee
entries applied as blocks, at block times the test chooses, so funding comes at once and
nothing waits on a clock. Liquidations are driven through the engine with
tests/matching/perp_helpers.py's scenarios (a book fill, the backstop, ADL) and read back
from the indexer's history over HTTP. Answers are compared with the engine's own objects
(`engine.perps`) and with matching/margin.py's functions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
import trio

from matching.config import Genesis
from matching.events import Backstop, Deleveraged, Fill, Funding, FundingPaid, LiquidationFee
from matching.margin import PerpMarket, cross_equity, cross_initial, cross_maintenance
from node.api.app import ApiLimits, create_app, serve_api
from node.api.indexer import POSITIONS_MARK_INTERVAL_MS
from node.api.streams import StreamLimits
from node.genesis import default_exchange, perp_market
from node.intents import address_of_private_key
from node.runtime import Executable, ExecutedBlock
from seqnet_sdk import Client
from seqnet_sdk.stream import receive_until
from tests.api.exchange import FEE_ACCOUNT, ExchangeNode
from tests.matching import perp_helpers as ph

OPEN = ApiLimits(ip_limit=None, account_limit=None)
ALICE_KEY = bytes(31) + b"\x0a"
BOB_KEY = bytes(31) + b"\x0b"
ALICE = address_of_private_key(ALICE_KEY)
BOB = address_of_private_key(BOB_KEY)
USDC = 1
BTC_PERP = 2
FUNDING_MS = 60_000
MEMBERS = tuple(bytes([0xD0 + i]) * 20 for i in range(4))
INSURANCE = bytes([0x1F]) * 20
PRICE_TICKS = 970_000  # 97,000 USDC per BTC: 9,700,000 micro-USDC a lot (tick 10)


def perp_exchange() -> Genesis:
    btc = perp_market()
    assert btc.perp is not None
    btc = dataclasses.replace(
        btc, perp=dataclasses.replace(btc.perp, funding_interval_ms=FUNDING_MS)
    )
    base = default_exchange(FEE_ACCOUNT)
    genesis = dataclasses.replace(
        base,
        markets=(*base.markets, btc),
        insurance_account=INSURANCE,
        oracle_members=MEMBERS,
        oracle_quorum=3,
    )
    genesis.check()
    return genesis


def observe(node: ExchangeNode, ticks: int, timestamp_ms: int | None = None) -> ExecutedBlock:
    """Every member's observation of BTC-PERP in one block."""
    entries = [
        Executable(
            {"action": {"type": "oracle", "member": m, "prices": [[BTC_PERP, ticks]]}},
            bytes(20),
            None,
        )
        for m in MEMBERS
    ]
    return node.apply(entries, timestamp_ms=timestamp_ms)


def btc(node: ExchangeNode) -> PerpMarket:
    perps = node.engine.perps
    assert perps is not None
    return perps.markets[BTC_PERP]


@pytest.fixture
async def node() -> ExchangeNode:
    exchange = ExchangeNode(perp_exchange())
    exchange.deposit(ALICE, USDC, 300 * 10**6)  # 300 USDC: a long near 5x
    exchange.deposit(BOB, USDC, 10**12)  # 1M USDC
    observe(exchange, PRICE_TICKS)
    return exchange


async def serve(nursery: trio.Nursery, node: ExchangeNode, **options: Any) -> str:
    port = await nursery.start(serve_api, create_app(node, OPEN, **options), "127.0.0.1", 0)
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


async def open_long(alice: Client, bob: Client) -> None:
    """Alice long 0.01 BTC at 97,000 (5x cross) against Bob's resting sell."""
    assert (await alice.set_leverage("BTC-PERP", 5)).status == "committed"
    maker = await bob.place("BTC-PERP", "sell", "0.01", "97000", tif="post")
    taker = await alice.place("BTC-PERP", "buy", "0.01", "97000", tif="ioc")
    assert maker.status == taker.status == "committed", (maker, taker)


def under_maintenance(node: ExchangeNode, who: bytes, mark: int) -> bool:
    """Whether `who`'s cross unit (one position) is under maintenance at this mark:
    the engine's rule recomputed with matching/margin.py's tiers."""
    account = node.engine.accounts[who]
    assert account.perp is not None
    pos = account.perp.positions[BTC_PERP]
    lots = pos.size // pos.market.lot
    equity = node.engine.balance(who, USDC)[0] + lots * mark - pos.entry
    return equity < pos.market.tiers.maintenance(abs(lots) * mark)


async def test_positions_margin_and_prices_match_the_engine(
    node: ExchangeNode, alice: Client, bob: Client
) -> None:
    await open_long(alice, bob)
    engine = node.engine
    market = btc(node)
    account = engine.accounts[ALICE]
    assert account.perp is not None
    pos = account.perp.positions[BTC_PERP]

    (long,) = await alice.positions()
    assert (long["side"], long["size"], long["size_decimal"]) == (
        "long",
        1_000_000,
        Decimal("0.01"),
    )
    assert long["size"] == pos.size and long["entry_notional"] == pos.entry == 970_000_000
    assert long["entry_price"] == 9_700_000 and long["entry_price_decimal"] == Decimal(97000)
    assert long["mark"] == market.mark and long["notional"] == 100 * market.mark
    assert long["unrealized_pnl"] == 100 * market.mark - pos.entry
    assert long["realized_pnl"] == pos.realized and long["funding"] == 0
    assert (long["margin_mode"], long["leverage"]) == ("cross", 5)
    assert long["maintenance_margin"] == pos.maintenance()
    (short,) = await bob.positions()
    assert (short["side"], short["size"], short["entry_notional"]) == (
        "short",
        -(10**6),
        -pos.entry,
    )

    # The liquidation price is the boundary of the engine's rule, on the right side.
    for who, found, step in ((ALICE, long, 1), (BOB, short, -1)):
        price = found["liquidation_price"]
        assert price is not None and price > 0
        assert under_maintenance(node, who, price)
        assert not under_maintenance(node, who, price + step)
    assert long["liquidation_price"] < market.mark < short["liquidation_price"]

    summary = await alice.margin()
    cash = engine.balance(ALICE, USDC)[0]
    positions = account.perp.positions
    assert summary["collateral"] == cash and summary["collateral_asset"] == USDC
    assert summary["cross_equity"] == summary["equity"] == cross_equity(positions, cash)
    assert summary["initial_margin"] == cross_initial(positions)
    assert summary["maintenance_margin"] == cross_maintenance(positions)
    perps = engine.perps
    assert perps is not None
    assert summary["free_collateral"] == perps.cross_free(account)
    assert summary["leverage_bps"] == 100 * market.mark * 10_000 // summary["equity"]
    # 970 USDC of BTC on 300 USDC less the taker fee
    assert summary["leverage"] == Decimal(summary["leverage_bps"]) / 10_000 == Decimal("3.2385")
    assert summary["positions"] == [long]
    assert summary["equity_decimal"] == Decimal(summary["equity"]) / 10**6

    prices = await alice.prices("BTC-PERP")
    assert prices["index_price"] == market.index == 9_700_000
    assert prices["mark"] == market.mark and prices["mark_decimal"] == Decimal(97000)
    assert (prices["fresh"], prices["state"], prices["quorum"]) == (True, "fresh", 3)
    assert prices["next_funding_ms"] == market.next_funding_ms
    assert [o["member"] for o in prices["observations"]] == ["0x" + m.hex() for m in MEMBERS]
    assert all(o["age_ms"] == engine.timestamp_ms - o["seen_ms"] for o in prices["observations"])
    assert prices["fresh_members"] == 4
    # No premium sample (the book was never two-sided): the rate is the interest, 12,500 ppb
    assert (prices["funding_premium_ppb"], prices["funding_rate_ppb"]) == (0, 12_500)
    assert [p["market"] for p in await alice.prices()] == [BTC_PERP]

    # An oracle that goes quiet leaves the market reduce-only; the mark stays frozen.
    stale_at = engine.timestamp_ms + btc(node).params.oracle_max_age_ms + 1
    node.apply([], timestamp_ms=stale_at)
    prices = await alice.prices("BTC-PERP")
    assert (prices["state"], prices["index_price"], prices["fresh_members"]) == (
        "reduce_only",
        None,
        0,
    )
    assert prices["mark"] == market.mark


async def test_funding_history_pages(node: ExchangeNode, alice: Client, bob: Client) -> None:
    await open_long(alice, bob)
    paid: list[tuple[Funding, dict[bytes, int]]] = []
    for _ in range(4):  # four funding boundaries, each reached by an oracle block
        block = observe(node, PRICE_TICKS, timestamp_ms=btc(node).next_funding_ms)
        funding = [e for e in block.result.end if isinstance(e, Funding)]
        payments = {e.account: e.amount for e in block.result.end if isinstance(e, FundingPaid)}
        assert len(funding) == 1, block.result.end
        paid.append((funding[0], payments))

    rates = await alice.funding_rates("BTC-PERP")
    assert [(r["rate_ppb"], r["mark"], r["residue"]) for r in rates] == [
        (f.rate_ppb, f.mark, f.residue) for f, _ in reversed(paid)
    ]
    assert all(r["rate_ppb"] > 0 for r in rates)  # longs pay
    mine = await alice.funding()
    assert [p["amount"] for p in mine] == [p[ALICE] for _, p in reversed(paid)]
    assert all(p["amount"] < 0 and p["market"] == BTC_PERP for p in mine)
    assert [p["amount"] for p in await bob.funding()] == [p[BOB] for _, p in reversed(paid)]
    assert mine[0]["amount_decimal"] == Decimal(mine[0]["amount"]) / 10**6
    # The position's funding total and the payments agree.
    (long,) = await alice.positions()
    assert long["funding"] == sum(p["amount"] for p in mine)

    # Pages of two: every payment once, most recent first; a time range cuts them.
    pages, cursor = [], None
    while True:
        page = await alice.page("funding", limit=2, cursor=cursor)
        pages.append(page.items)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert [len(p) for p in pages] == [2, 2]
    assert [p["height"] for page in pages for p in page] == [p["height"] for p in mine]
    newest = mine[0]["timestamp_ms"]
    assert await alice.funding(start_ms=newest) == mine[:1]
    assert await alice.funding_rates("BTC-PERP", end_ms=newest) == rates[1:]


async def test_bad_perp_queries_are_clear_4xx(url: str, alice: Client) -> None:
    me = alice.address
    async with httpx.AsyncClient(base_url=url) as http:
        for path, status, code in (
            ("/v1/markets/0/prices", 404, "not_perp"),  # ETH-USDC is spot
            ("/v1/markets/77/prices", 404, "unknown_market"),
            ("/v1/markets/0/funding", 404, "not_perp"),
            ("/v1/markets/77/liquidations", 404, "unknown_market"),
            ("/v1/markets/-1/prices", 400, "bad_request"),
            ("/v1/accounts/0x12/positions", 400, "bad_request"),
            ("/v1/accounts/0x12/margin", 400, "bad_request"),
            (f"/v1/accounts/{me}/funding?cursor=nope", 400, "bad_cursor"),
            (f"/v1/accounts/{me}/funding?limit=0", 400, "bad_request"),
            (f"/v1/accounts/{me}/liquidations?limit=1001", 400, "bad_request"),
            (f"/v1/accounts/{me}/liquidations?start_ms=10&end_ms=5", 400, "bad_range"),
            ("/v1/markets/2/funding?start_ms=-1", 400, "bad_request"),
            ("/v1/markets/2/liquidations?cursor=1.2.3", 400, "bad_cursor"),
        ):
            answer = await http.get(path)
            assert (answer.status_code, answer.json()["error"]["code"]) == (status, code), path
        # An account with no perp state: empty positions, a margin summary of zeros.
        nobody = "0x" + "77" * 20
        assert (await http.get(f"/v1/accounts/{nobody}/positions")).json()["positions"] == []
        empty = (await http.get(f"/v1/accounts/{nobody}/margin")).json()
        assert empty["equity"] == empty["free_collateral"] == 0
        assert empty["leverage_bps"] is None


async def test_spot_only_exchange_has_no_perp_answers(nursery: trio.Nursery) -> None:
    url = await serve(nursery, ExchangeNode())
    async with httpx.AsyncClient(base_url=url) as http:
        answer = await http.get(f"/v1/accounts/0x{'11' * 20}/margin")
        assert (answer.status_code, answer.json()["error"]["code"]) == (404, "not_perp")
        assert (await http.get("/v1/prices")).json()["markets"] == []


async def test_perp_streams(node: ExchangeNode, alice: Client, bob: Client) -> None:
    await open_long(alice, bob)
    async with alice.stream() as stream:
        await stream.subscribe_prices(BTC_PERP)
        await stream.subscribe_positions(ALICE)
        await stream.subscribe_liquidations(BTC_PERP)
        first = await receive_until(stream, lambda m: m.get("channel") == "prices", 5)
        assert first["type"] == "snapshot" and first["mark"] == btc(node).mark
        mine = await receive_until(stream, lambda m: m.get("channel") == "positions", 5)
        assert mine["positions"][0]["size"] == 1_000_000
        assert mine["equity"] == (await alice.margin())["equity"]

        observe(node, PRICE_TICKS + 10_000)  # +1,000 USDC per BTC
        moved = await receive_until(stream, lambda m: m.get("channel") == "prices", 5)
        assert moved["index_price"] == btc(node).index == 9_800_000
        assert moved["mark"] == btc(node).mark and moved["fresh"]
        update = await receive_until(stream, lambda m: m.get("channel") == "positions", 5)
        (long,) = update["positions"]
        assert long["mark"] == btc(node).mark
        assert long["unrealized_pnl"] == 100 * btc(node).mark - long["entry_notional"]

        await stream._send({"op": "subscribe", "channel": "prices", "market": 0})
        error = await receive_until(stream, lambda m: m.get("channel") == "error", 5)
        assert error["error"]["code"] == "not_perp"
        await stream._send({"op": "subscribe", "channel": "liquidations", "market": "2"})
        error = await receive_until(stream, lambda m: m.get("channel") == "error", 5)
        assert error["error"]["code"] == "unknown_market"


async def test_positions_stream_is_bounded(nursery: trio.Nursery, node: ExchangeNode) -> None:
    """Mark moves update a follower at most once per POSITIONS_MARK_INTERVAL_MS of block
    time (its own fills at once); the node follows a bounded number of accounts."""
    url = await serve(nursery, node, stream_limits=StreamLimits(max_position_accounts=1))
    async with Client(url, ALICE_KEY) as alice, Client(url, BOB_KEY) as bob:
        await open_long(alice, bob)
        async with alice.stream() as stream:
            await stream.subscribe_positions(ALICE)
            await receive_until(stream, lambda m: m.get("channel") == "positions", 5)
            start = node.engine.timestamp_ms + 1
            heights = []
            for i in range(4):  # four mark moves within one interval, then one after it
                block = observe(node, PRICE_TICKS + 100 * (i + 1), timestamp_ms=start + i)
                heights.append(block.height)
            late = observe(node, PRICE_TICKS, start + POSITIONS_MARK_INTERVAL_MS).height
            got = []
            while not got or got[-1] < late:
                message = await receive_until(stream, lambda m: m.get("channel") == "positions", 5)
                got.append(message["height"])
            assert got == [heights[0], late]
            # A second account to follow is refused while the first is followed.
            await stream.subscribe_positions(BOB)
            error = await receive_until(stream, lambda m: m.get("channel") == "error", 5)
            assert error["error"]["code"] == "too_many_subscriptions"


# ---------------------------------------------------------------------------------------
# Liquidations: the engine's scenarios (tests/matching/test_perp_scenarios.py) driven
# through an ExchangeNode, read back from the history.


class Scenario:
    """tests/matching/perp_helpers.py's harness, its blocks applied by an ExchangeNode so
    that the indexer sees them."""

    def __init__(self) -> None:
        self.h = ph.PerpHarness()
        self.node = ExchangeNode(ph.perp_genesis())
        self.h.engine = self.node.engine

    def block(self, entries: list[dict[str, Any]]) -> ExecutedBlock:
        self.h.ts += 100
        executables = [Executable(e, e.get("account", bytes(20)), None) for e in entries]
        return self.node.apply(executables, timestamp_ms=self.h.ts)

    def one(self, account: bytes, action: dict[str, Any]) -> ExecutedBlock:
        return self.block([self.h.entry(account, action)])

    def prices(self, price: int) -> ExecutedBlock:
        return self.block([ph.oracle(m, (ph.BTC_PERP, price)) for m in ph.MEMBERS])

    def setup_long(self, insurance: int) -> None:
        """A long 100 lots at 1,000 with 11,000 USDC against B (test_perp_scenarios)."""
        a, b, d = ph.TRADERS[0], ph.TRADERS[1], ph.TRADERS[3]
        deposits = [self.h.deposit(a, 11_000), self.h.deposit(b, 1_000_000)]
        deposits.append(self.h.deposit(d, 1_000_000))
        if insurance:
            deposits.append(self.h.deposit(ph.INSURANCE, insurance))
        self.block(deposits)
        self.prices(1_000)
        self.one(b, ph.perp_order("sell", 1_000, 1_000))
        self.one(a, ph.perp_order("buy", 1_000, 1_000, tif="ioc"))

    def move_to_900(self, bid: int) -> ExecutedBlock:
        d = ph.TRADERS[3]
        h = self.h
        self.block([h.entry(d, ph.perp_order("buy", bid, 2_000)),
                    h.entry(d, ph.perp_order("sell", 905, 10))])  # fmt: skip
        return self.prices(900)


async def liquidation_lists(url: str, account: bytes) -> tuple[list[Any], list[Any]]:
    async with httpx.AsyncClient(base_url=url) as http:
        mine = (await http.get(f"/v1/accounts/0x{account.hex()}/liquidations")).json()
        market = (await http.get(f"/v1/markets/{ph.BTC_PERP}/liquidations")).json()
    return mine["liquidations"], market["liquidations"]


async def test_liquidation_through_the_book_is_indexed(nursery: trio.Nursery) -> None:
    s = Scenario()
    url = await serve(nursery, s.node)
    s.setup_long(insurance=0)
    end = s.move_to_900(bid=895).result.end
    a = ph.TRADERS[0]
    mine, market = await liquidation_lists(url, a)
    kinds = [r["kind"] for r in reversed(mine)]  # oldest first
    assert kinds[:2] == ["liquidation", "liquidation_order"] and kinds[-1] == "liquidation_fee"
    first = mine[-1]
    assert (first["unit"], first["market"], first["account"]) == ("cross", None, "0x" + a.hex())
    order = mine[-2]
    assert (order["size"], order["bankruptcy_price"], order["market"]) == (1_000, 891, 7)
    fills = [e for e in end if isinstance(e, Fill) and e.oid == 0]
    assert [
        (r["trade_id"], r["price"], r["size"]) for r in reversed(mine) if r["kind"] == "fill"
    ] == [(f.trade_id, f.price, f.size) for f in fills]
    fee = next(e for e in end if isinstance(e, LiquidationFee))
    assert mine[0]["amount"] == fee.amount == 450
    # The market's list: the order and its fills (the cross liquidation and the fee are
    # the account's); ids grow with the block's order.
    assert [r["kind"] for r in market] == ["fill"] * len(fills) + ["liquidation_order"]
    assert [r["id"] for r in mine] == sorted((r["id"] for r in mine), reverse=True)
    # The liquidation's fills are trades of the market too.
    async with httpx.AsyncClient(base_url=url) as http:
        trades = (await http.get(f"/v1/markets/{ph.BTC_PERP}/trades")).json()["trades"]
    assert {f.trade_id for f in fills} <= {t["trade_id"] for t in trades}


async def test_backstop_and_adl_are_indexed(nursery: trio.Nursery) -> None:
    a, b = ph.TRADERS[0], ph.TRADERS[1]
    backstop = Scenario()
    url = await serve(nursery, backstop.node)
    backstop.setup_long(insurance=1_000_000)
    end = backstop.move_to_900(bid=880).result.end
    taken = next(e for e in end if isinstance(e, Backstop))
    mine, market = await liquidation_lists(url, a)
    record = next(r for r in mine if r["kind"] == "backstop")
    assert (record["size"], record["price"]) == (taken.size, taken.price) == (1_000, 891)
    assert record["counterparty"] == "0x" + ph.INSURANCE.hex()
    assert [r["kind"] for r in market] == ["backstop", "liquidation_order"]

    adl = Scenario()
    url = await serve(nursery, adl.node)
    adl.setup_long(insurance=0)
    end = adl.move_to_900(bid=880).result.end
    (cut,) = [e for e in end if isinstance(e, Deleveraged)]
    mine, market = await liquidation_lists(url, a)
    record = next(r for r in mine if r["kind"] == "deleveraged")
    assert (record["role"], record["size"], record["price"]) == ("liquidated", 1_000, cut.price)
    assert record["counterparty"] == "0x" + b.hex()
    theirs, _ = await liquidation_lists(url, b)
    assert [(r["kind"], r["role"], r["market"]) for r in theirs] == [
        ("deleveraged", "counterparty", ph.BTC_PERP)
    ]
    assert [r["kind"] for r in market].count("deleveraged") == 1  # once per event


async def test_trade_cli_perp_commands(
    node: ExchangeNode, url: str, bob: Client, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    from node.trade_cli import main as trade_main

    async def trade(*argv: str) -> tuple[int, Any]:
        common = ["--api", url, "--key", "0x" + ALICE_KEY.hex()]
        capsys.readouterr()  # the server's log lines so far
        code = await trio.to_thread.run_sync(trade_main, [*common, *argv])
        lines = capsys.readouterr().out.splitlines()
        start = next((i for i, line in enumerate(lines) if line[:1] in "{["), None)
        return code, None if start is None else json.loads("\n".join(lines[start:]))

    code, result = await trade("set-leverage", "BTC-PERP", "4", "--isolated")
    assert code == 0 and result["status"] == "committed", result
    assert (await bob.place("BTC-PERP", "sell", "0.01", "97000", tif="post")).ok
    code, result = await trade("place", "BTC-PERP", "buy", "0.01", "97000", "--tif", "ioc")
    assert code == 0 and result["status"] == "committed", result
    code, (position,) = await trade("positions")
    assert (position["margin_mode"], position["leverage"], position["size"]) == (
        "isolated",
        4,
        1_000_000,
    )
    pos = node.engine.accounts[ALICE].perp.positions[BTC_PERP]  # type: ignore[union-attr]
    assert position["isolated_margin"] == pos.margin == -(-970_000_000 // 4)
    code, result = await trade("add-margin", "BTC-PERP", "10")
    assert code == 0 and result["status"] == "committed"
    code, result = await trade("remove-margin", "BTC-PERP", "2.5")
    assert code == 0 and result["status"] == "committed"
    assert pos.margin == -(-970_000_000 // 4) + 7_500_000
    code, summary = await trade("margin")
    assert summary["isolated_margin"] == pos.margin and summary["positions"][0]["equity"] == (
        pos.margin + 100 * btc(node).mark - pos.entry
    )
    code, prices = await trade("prices", "BTC-PERP")
    assert prices["mark"] == btc(node).mark
    code, page = await trade("funding")
    assert code == 0 and page == {"funding": [], "next_cursor": None}
    code, page = await trade("liquidations", "--market", "BTC-PERP", "--limit", "5")
    assert code == 0 and page["liquidations"] == []
    # Too much margin out: the engine refuses it; a size off the grid never leaves.
    code, result = await trade("remove-margin", "BTC-PERP", "1000")
    assert code == 1 and result["code"] == "insufficient_margin"
    code, _ = await trade("add-margin", "BTC-PERP", "0.0000001")
    assert code == 1


async def test_perp_history_is_rebuilt_from_the_log(nursery: trio.Nursery) -> None:
    """A node whose history file is missing rebuilds funding and liquidation records by
    replaying its committed log through the same indexing code (Indexer.catch_up)."""
    from node.api.history import HistoryStore
    from node.api.indexer import Indexer

    class Replaying(ExchangeNode):
        def __init__(self, genesis: Genesis) -> None:
            super().__init__(genesis)
            self.blocks: list[ExecutedBlock] = []
            self.add_block_listener(self.blocks.append)

        def replay_blocks(self, after: int) -> Any:
            return iter([b for b in self.blocks if b.height > after])

    s = Scenario()
    s.node = Replaying(ph.perp_genesis())
    s.h.engine = s.node.engine
    live = Indexer.attach(s.node)
    s.setup_long(insurance=0)
    s.move_to_900(bid=880)  # ADL
    b = ph.TRADERS[1]
    s.one(b, ph.perp_order("sell", 880, 10, tif="ioc"))  # into D's bid: positions to fund
    perps = s.node.engine.perps
    assert perps is not None
    s.h.ts = perps.markets[ph.BTC_PERP].next_funding_ms - 100  # the next block reaches it
    end = s.prices(900).result.end
    assert any(isinstance(e, Funding) for e in end), end
    rebuilt = Indexer.attach(s.node, store=HistoryStore.open(":memory:", b""))
    assert rebuilt.height == live.height == s.node.exec_height
    for account in ph.TRADERS[:2]:
        assert rebuilt.liquidations(account, 100).items == live.liquidations(account, 100).items
        assert live.liquidations(account, 100).items
    market = ph.BTC_PERP
    found = live.market_liquidations(market, 100).items
    assert found and rebuilt.market_liquidations(market, 100).items == found
    rates = live.funding_rates(market, 100).items
    assert rates and rebuilt.funding_rates(market, 100).items == rates
    assert rebuilt.funding(b, 100).items == live.funding(b, 100).items != []
