"""The API's history (node/api/history.py, node/api/indexer.py): the money loop's routes,
pagination, candles and stats, bad input — over the in-process exchange
(tests/api/exchange.py) and the real app served by hypercorn."""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import httpx
import trio
from eth_abi.abi import decode as abi_decode
from hypothesis import given, settings
from hypothesis import strategies as st

from matching.merkle import keccak, process_proof, withdrawal_leaf
from node.api.app import ApiLimits, create_app, serve_api
from node.api.history import HistoryStore
from node.api.indexer import ChainEvent, Indexer
from node.api.query import CLAIM_SIGNATURE, CLAIM_TYPES
from node.intents import address_of_private_key, intent_to_json, place_action, sign_intent
from node.runtime import Executable
from seqnet_sdk import Client
from tests.api.exchange import DOMAIN, ExchangeNode

OPEN = ApiLimits(ip_limit=None, account_limit=None)
ALICE_KEY = bytes(31) + b"\x0a"
BOB_KEY = bytes(31) + b"\x0b"
ALICE = address_of_private_key(ALICE_KEY)
BOB = address_of_private_key(BOB_KEY)
ETH, USDC = 0, 1
NONCES = itertools.count(time.time_ns() // 1_000_000)
TX = bytes([0x77]) * 32


class ChainedExchange(ExchangeNode):
    """The exchange with what a node wired to a chain tells the indexer (`ChainView`)."""

    def __init__(self) -> None:
        super().__init__()
        self.landed: int | None = 0
        self.head: int | None = 100
        self.chain_listeners: list[Callable[[ChainEvent], None]] = []

    def deposit_origin(self, deposit_id: int) -> tuple[bytes, int] | None:
        return TX, 90 + deposit_id

    def chain_head(self) -> int | None:
        return self.head

    def landed_sequence(self) -> int | None:
        return self.landed

    def add_chain_listener(self, listener: Callable[[ChainEvent], None]) -> None:
        self.chain_listeners.append(listener)


class Claim:
    kind = "claim"

    def __init__(self, withdrawal_id: int, sequence: int) -> None:
        self.id = withdrawal_id
        self.sequence: int | None = sequence
        self.tx_hash = bytes([0x99]) * 32
        self.block_number = 120


def funded(node: ExchangeNode) -> ExchangeNode:
    for who in (ALICE, BOB):
        node.deposit(who, ETH, 100 * 10**9)
        node.deposit(who, USDC, 10**12)
    return node


async def serve(nursery: trio.Nursery, node: ExchangeNode) -> str:
    port = await nursery.start(serve_api, create_app(node, OPEN), "127.0.0.1", 0)
    return f"http://127.0.0.1:{port}"


async def submit(http: httpx.AsyncClient, key: bytes, action: dict[str, Any]) -> dict[str, Any]:
    account = address_of_private_key(key)
    intent = sign_intent(key, account, next(NONCES), action, DOMAIN)
    response = await http.post("/v1/intents?wait=committed", json=intent_to_json(intent))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()["results"][0]
    assert result["status"] == "committed", result
    return result


async def get(http: httpx.AsyncClient, path: str, status: int = 200) -> Any:
    response = await http.get(path)
    assert response.status_code == status, response.text
    return response.json()


async def test_withdrawal_lifecycle_and_claim_call(nursery: trio.Nursery) -> None:
    node = ChainedExchange()
    url = await serve(nursery, node)  # the history starts here: deposits after it
    funded(node)
    alice = "0x" + ALICE.hex()
    async with httpx.AsyncClient(base_url=url) as http:
        deposits = await get(http, f"/v1/accounts/{alice}/deposits")
        assert [d["deposit_id"] for d in deposits["deposits"]] == [2, 1]
        first = deposits["deposits"][1]
        assert first["tx_hash"] == "0x" + TX.hex() and first["chain_block"] == 91
        assert first["confirmations"] == 100 - 91 + 1 and first["amount"] == 100 * 10**9
        assert first["token_amount"] == str(100 * 10**18)  # gwei engine units, wei on chain

        answer = await submit(http, ALICE_KEY, {"type": "withdraw", "asset": USDC, "amount": 5})
        withdrawal_id = answer["withdrawal_id"]
        record = await get(http, f"/v1/withdrawals/{withdrawal_id}")
        assert record["status"] == "pending" and record["sequence"] is None
        refused = await get(http, f"/v1/withdrawals/{withdrawal_id}/claim", 409)
        assert refused["error"]["code"] == "not_checkpointed"

        node.seal()  # checkpoint 1 carries it
        listed = await get(http, f"/v1/accounts/{alice}/withdrawals")
        assert [w["withdrawal_id"] for w in listed["withdrawals"]] == [withdrawal_id]
        record = listed["withdrawals"][0]
        assert record["status"] == "checkpointed" and record["sequence"] == 1
        assert record["checkpoint_height"] == node.exec_height

        claim = await get(http, f"/v1/withdrawals/{withdrawal_id}/claim")
        assert not claim["claimable"] and claim["status"] == "checkpointed"
        node.landed = 1
        claim = await get(http, f"/v1/withdrawals/{withdrawal_id}/claim")
        assert claim["claimable"] and claim["status"] == "landed"
        assert claim["contract"] == "0x" + DOMAIN.verifying_contract.hex()
        args = claim["args"]
        assert list(args) == ["sequence", "withdrawalId", "account", "token", "amount", "proof"]
        assert args["amount"] == "5" and args["account"] == alice  # USDC unit 1
        # The proof verifies against the root the engine sealed (what the contract checks).
        cp = node.engine.withdrawal_trees.checkpoints()[-1]
        leaf = withdrawal_leaf(withdrawal_id, ALICE, cp.withdrawals[0].token, 5)
        proof = [bytes.fromhex(p[2:]) for p in args["proof"]]
        assert process_proof(proof, leaf) == cp.withdrawals_root
        calldata = bytes.fromhex(claim["calldata"][2:])
        assert calldata[:4] == keccak(CLAIM_SIGNATURE.encode())[:4]
        decoded = abi_decode(CLAIM_TYPES, calldata[4:])
        assert decoded[0] == 1 and decoded[1] == withdrawal_id and decoded[4] == 5
        assert [bytes(p) for p in decoded[5]] == proof

        for listener in node.chain_listeners:
            listener(Claim(withdrawal_id, 1))
        record = await get(http, f"/v1/withdrawals/{withdrawal_id}")
        assert record["status"] == "claimed" and record["claim"]["chain_block"] == 120
        checkpoints = await get(http, "/v1/checkpoints")  # the facade's (no checkpointer)
        assert "checkpoints" in checkpoints

        missing = await get(http, "/v1/withdrawals/999/claim", 404)
        assert missing["error"]["code"] == "not_found"


async def test_bad_history_queries_are_clear_400s(nursery: trio.Nursery) -> None:
    url = await serve(nursery, funded(ExchangeNode()))
    alice = "0x" + ALICE.hex()
    async with httpx.AsyncClient(base_url=url) as http:
        for path, code in (
            (f"/v1/accounts/{alice}/fills?cursor=nonsense", "bad_cursor"),
            (f"/v1/accounts/{alice}/history?cursor=1.99999999999999999999", "bad_cursor"),
            (f"/v1/accounts/{alice}/history?cursor={'x' * 65}", "bad_request"),
            (f"/v1/accounts/{alice}/history?cursor=99999999999999999999.1", "bad_cursor"),
            ("/v1/markets/0/trades?start_ms=10&end_ms=5", "bad_range"),
            (f"/v1/accounts/{alice}/deposits?start_ms=10&end_ms=5", "bad_range"),
            ("/v1/markets/0/candles?start_ms=10&end_ms=5", "bad_range"),
            ("/v1/markets/0/trades?limit=1000000", "bad_request"),
            ("/v1/markets/0/trades?limit=0", "bad_request"),
            ("/v1/markets/0/trades?start_ms=-1", "bad_request"),
            ("/v1/markets/0/candles?interval=7m", "bad_request"),
            (f"/v1/accounts/{alice}/withdrawals?limit=1001", "bad_request"),
        ):
            body = await get(http, path, 400)
            assert body["error"]["code"] == code, (path, body)
        assert (await get(http, "/v1/markets/9/candles", 404))["error"]["code"] == "unknown_market"


async def test_candles_and_stats_from_trades(nursery: trio.Nursery) -> None:
    node = funded(ExchangeNode())
    url = await serve(nursery, node)
    start = (node.engine.timestamp_ms // 86_400_000 + 1) * 86_400_000  # a day boundary
    # price per lot, size in base units (lot 10^6): three trades in two minutes
    for offset_ms, price in ((1_000, 3_000_000), (2_000, 3_100_000), (61_000, 2_900_000)):
        for key, side in ((ALICE_KEY, "sell"), (BOB_KEY, "buy")):
            action = place_action(0, side, price, 2 * 10**6)
            account = address_of_private_key(key)
            node.apply([trade_entry(key, account, action)], timestamp_ms=start + offset_ms)
    async with httpx.AsyncClient(base_url=url) as http:
        one_minute = await get(http, "/v1/markets/0/candles?interval=1m")
        assert one_minute["candles"] == [
            [start, 3_000_000, 3_100_000, 3_000_000, 3_100_000, 4 * 10**6, 12_200_000, 2],
            [start + 60_000, 2_900_000, 2_900_000, 2_900_000, 2_900_000, 2 * 10**6, 5_800_000, 1],
        ]
        daily = await get(http, f"/v1/markets/0/candles?interval=1d&start_ms={start}")
        assert daily["candles"] == [
            [start, 3_000_000, 3_100_000, 2_900_000, 2_900_000, 6 * 10**6, 18_000_000, 3]
        ]
        window = await get(http, f"/v1/markets/0/candles?interval=1m&end_ms={start + 60_000}")
        assert [c[0] for c in window["candles"]] == [start]
        stats = await get(http, "/v1/markets/0/stats")
        assert stats["open"] == 3_000_000 and stats["last"] == 2_900_000
        assert stats["high"] == 3_100_000 and stats["low"] == 2_900_000
        assert stats["trades"] == 3 and stats["volume"] == 6 * 10**6
        assert stats["timestamp_ms"] == start + 61_000


def trade_entry(key: bytes, account: bytes, action: dict[str, Any]) -> Executable:
    from node.intents import verify_intent

    entry = verify_intent(sign_intent(key, account, next(NONCES), action, DOMAIN), DOMAIN)
    return Executable(entry.to_dict(), entry.signer, entry.intent_id)


@settings(max_examples=25, deadline=None)
@given(
    blocks=st.lists(st.integers(0, 4), min_size=1, max_size=12),
    step_ms=st.lists(st.integers(0, 3), min_size=12, max_size=12),
    limit=st.integers(1, 7),
    bounds=st.tuples(st.integers(0, 40), st.integers(0, 40)),
)
def test_pages_hold_every_item_exactly_once(
    blocks: list[int], step_ms: list[int], limit: int, bounds: tuple[int, int]
) -> None:
    """Trades, fills and orders, paged with any limit over any time range: each item in
    the range exactly once, most recent first, whatever blocks (several per timestamp
    too) held them."""
    node = funded(ExchangeNode())
    indexer = Indexer.attach(node)
    base = node.engine.timestamp_ms + 1_000
    now = base
    for trades, step in zip(blocks, step_ms, strict=False):
        now += step
        entries = []
        for _ in range(trades):
            for key, side in ((ALICE_KEY, "sell"), (BOB_KEY, "buy")):
                account = address_of_private_key(key)
                entries.append(trade_entry(key, account, place_action(0, side, 3_000_000, 10**6)))
        node.apply(entries, timestamp_ms=now)
    start, end = base + min(bounds), base + max(bounds)
    lists: dict[str, Callable[..., Any]] = {
        "trades": lambda **kw: indexer.trades(0, limit, **kw),
        "fills": lambda **kw: indexer.fills(ALICE, limit, **kw),
        "orders": lambda **kw: indexer.order_history(BOB, limit, **kw),
    }
    for name, read in lists.items():
        everything = read_all(read, limit)
        assert len(everything) == len({key_of(name, i) for i in everything})
        times = [i["timestamp_ms"] for i in everything]
        assert times == sorted(times, reverse=True)
        ranged = read_all(functools.partial(read, start_ms=start, end_ms=end), limit)
        expected = [i for i in everything if start <= i["timestamp_ms"] < end]
        assert [key_of(name, i) for i in ranged] == [key_of(name, i) for i in expected]
    assert sum(blocks) == len(read_all(lambda **kw: indexer.trades(0, 7, **kw), 7))


def read_all(read: Callable[..., Any], limit: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    cursor = None
    for _ in range(1000):
        page = read(cursor=cursor)
        assert len(page.items) <= limit
        out.extend(page.items)
        cursor = page.next_cursor
        if cursor is None:
            return out
    raise AssertionError("pagination does not end")


def key_of(name: str, item: dict[str, Any]) -> tuple[int, ...]:
    if name == "fills":
        return (item["trade_id"], item["side"] == "sell")
    return (item["oid"],) if name == "orders" else (item["trade_id"],)


def test_history_survives_a_reopen_and_a_foreign_file_is_emptied(tmp_path: Any) -> None:
    path = tmp_path / "index.sqlite"
    node = funded(ExchangeNode())
    store = HistoryStore.open(path, b"genesis-a")
    indexer = Indexer.attach(node, store=store)
    account = address_of_private_key(ALICE_KEY)
    node.apply([trade_entry(ALICE_KEY, account, {"type": "withdraw", "asset": 1, "amount": 7})])
    store.close()
    assert indexer.height == node.exec_height
    reopened = HistoryStore.open(path, b"genesis-a")
    assert reopened.height == node.exec_height
    assert reopened.page("withdrawals", ALICE, 10).items[0]["amount"] == 7
    reopened.close()
    foreign = HistoryStore.open(path, b"genesis-b")
    assert foreign.height == 0 and not foreign.page("withdrawals", ALICE, 10).items
    foreign.close()


async def test_sdk_history_decimals_and_withdrawal_id(nursery: trio.Nursery) -> None:
    node = ChainedExchange()
    url = await serve(nursery, node)
    funded(node)
    async with Client(url, ALICE_KEY) as alice, Client(url, BOB_KEY) as bob:
        await alice.place("ETH-USDC", "sell", "0.5", "3000.25")
        await bob.place("ETH-USDC", "buy", "0.2", "3000.25", tif="ioc")
        await bob.place("ETH-USDC", "buy", "0.3", "3000.25", tif="ioc")
        trades = await alice.trades("ETH-USDC", limit=1)
        assert trades[0]["price_decimal"] == Decimal("3000.25")
        assert trades[0]["size_decimal"] == Decimal("0.3") and trades[0]["size"] == 300_000_000
        page = await alice.page("trades", "ETH-USDC", limit=1)
        older = await alice.page("trades", "ETH-USDC", limit=1, cursor=page.next_cursor)
        assert older.items[0]["size_decimal"] == Decimal("0.2") and older.next_cursor is None
        every = [f async for f in alice.iterate("fills", limit=1)]
        assert [f["size_decimal"] for f in every] == [Decimal("0.3"), Decimal("0.2")]
        assert every[0]["fee_decimal"] == Decimal("0.180015")  # 2 bps of 900.075 USDC
        history = await alice.order_history()
        assert history[0]["status"] == "filled" and history[0]["filled_decimal"] == Decimal("0.5")

        result = await alice.withdraw("USDC", "12.5")
        assert result.withdrawal_id is not None
        (withdrawal,) = await alice.withdrawals()
        assert withdrawal["amount_decimal"] == Decimal("12.5") and withdrawal["status"] == "pending"
        node.seal()
        node.landed = 1
        call = await alice.wait_claimable(result.withdrawal_id, timeout_s=5)
        assert call["claimable"] and call["args"]["amount"] == "12500000"
        deposits = await bob.deposits()
        assert deposits[0]["amount_decimal"] == Decimal(10**6)  # 1M USDC

        candles = await alice.candles("ETH-USDC", "1m")
        assert candles[-1]["close_decimal"] == Decimal("3000.25")
        assert candles[-1]["volume_decimal"] == Decimal("0.5")
        stats = await alice.stats("ETH-USDC")
        assert stats["trades"] == 2 and stats["quote_volume_decimal"] == Decimal("1500.125")


async def test_a_withdrawal_in_the_checkpoints_own_block_is_sealed(nursery: trio.Nursery) -> None:
    """The block that seals a checkpoint may itself hold a withdrawal (its height is a
    multiple of the interval): the checkpoint carries it, and so must its record."""
    node = ChainedExchange()
    url = await serve(nursery, node)
    funded(node)
    action = {"type": "withdraw", "asset": USDC, "amount": 7}
    entry = {"account": ALICE, "signer": ALICE, "nonce": time.time_ns() // 10**6, "action": action}
    block = node.apply([Executable(entry, ALICE, b"\x42" * 32)], seal=True)
    assert block.checkpoint is not None and len(block.checkpoint.withdrawals) == 1
    withdrawal_id = block.checkpoint.withdrawals[0].withdrawal_id
    async with httpx.AsyncClient(base_url=url) as http:
        record = await get(http, f"/v1/withdrawals/{withdrawal_id}")
    assert record["status"] == "checkpointed" and record["sequence"] == block.checkpoint.sequence
    assert record["checkpoint_height"] == block.height and record["proof"] is not None
