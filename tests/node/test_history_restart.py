"""The API's history across restarts of a real member (a committee of one, in process):
the file keeps it, a file behind the node is topped up from the committed log, and a
deleted file is rebuilt from the log with the same answers (node/api/history.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import trio

from node.api.app import create_app
from node.api.history import HistoryStore
from node.api.indexer import Indexer
from node.intents import address_of_private_key, place_action, sign_intent
from node.payload import DepositRecord
from node.runtime import Node
from tests.node.cluster import _nonces, trader_key
from tests.node.test_runtime import make_nodes, reopen

ETH_UNIT = 10**9
TX = bytes([0x42]) * 32


class FakeWatcher:
    """Stands in for the chain watcher: deposits handed to the proposer as if confirmed."""

    def __init__(self, records: list[DepositRecord]) -> None:
        self.records = {r.deposit_id: r for r in records}
        self.head = 50

    def next_deposits(self, after_id: int, limit: int, min_age_s: float = 0.0) -> list[Any]:
        out: list[DepositRecord] = []
        while len(out) < limit and (after_id + 1 + len(out)) in self.records:
            out.append(self.records[after_id + 1 + len(out)])
        return out

    def seen(self, deposit_id: int) -> DepositRecord | None:
        return self.records.get(deposit_id)

    def applied(self, last_deposit_id: int) -> None:
        pass

    def origin(self, deposit_id: int) -> tuple[bytes, int] | None:
        return (TX, 10 + deposit_id) if deposit_id in self.records else None

    def add_listener(self, listener: Any) -> None:
        pass

    def status(self) -> dict[str, Any]:
        return {}

    async def run(self, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep_forever()


def wired(node: Node, traders: list[bytes]) -> Node:
    records = []
    for i, account in enumerate(traders):
        records.append(DepositRecord(2 * i + 1, account, bytes(20), 10 * 10**18, 0, 10**10))
        usdc = node.genesis.exchange.assets[1]
        records.append(DepositRecord(2 * i + 2, account, usdc.token, 10**11, 1, 10**11))
    watcher: Any = FakeWatcher(records)
    node.watcher = node.executor.watcher = watcher
    return node


def answers(indexer: Indexer, accounts: list[bytes]) -> dict[str, Any]:
    out: dict[str, Any] = {"trades": indexer.trades(0, 1000).items}
    for account in accounts:
        key = account.hex()
        out[f"fills {key}"] = indexer.fills(account, 1000).items
        out[f"orders {key}"] = indexer.order_history(account, 1000).items
        out[f"deposits {key}"] = indexer.deposits(account, 1000).items
        out[f"withdrawals {key}"] = indexer.withdrawals(account, 1000).items
    out["checkpoints"] = indexer.checkpoint_records(100)
    return out


async def test_history_kept_topped_up_and_rebuilt_across_restarts(tmp_path: Path) -> None:
    keys = [trader_key(i) for i in range(2)]
    traders = [address_of_private_key(k) for k in keys]
    node = wired(make_nodes(tmp_path, 1)[0], traders)
    index_file = node.setup.config.index_file

    def signed(key: bytes, action: dict[str, Any]) -> Any:
        return sign_intent(key, address_of_private_key(key), next(_nonces), action, node.domain)

    history = HistoryStore.open(index_file, node.genesis_hash)
    app = create_app(node, history=history)
    indexer: Indexer = app.state.indexer
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        with trio.fail_after(20):
            while node.engine.last_deposit_id < 4:
                await trio.sleep(0.02)
        for price in (3_000_000, 3_000_010):
            done = await node.submit(
                [signed(keys[0], place_action(0, "sell", price, 10**6))], True, 10
            )
            assert done[0].status == "committed", done
            done = await node.submit(
                [signed(keys[1], place_action(0, "buy", price, 10**6, tif="ioc"))], True, 10
            )
            assert done[0].status == "committed", done
        withdraw = {"type": "withdraw", "asset": 1, "amount": 1_000}
        done = await node.submit([signed(keys[0], withdraw)], True, 10)
        assert done[0].status == "committed", done
        checkpoint_height = (done[0].height or 0) // 5 * 5 + 5  # interval 5
        with trio.fail_after(20):
            while node.exec_height < checkpoint_height:
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    before = answers(indexer, traders)
    assert len(before["trades"]) == 2 and len(before[f"fills {traders[0].hex()}"]) == 2
    deposits = before[f"deposits {traders[0].hex()}"]
    assert [d["deposit_id"] for d in deposits] == [2, 1]
    assert deposits[0]["tx_hash"] == "0x" + TX.hex() and deposits[0]["chain_block"] == 12
    withdrawal = before[f"withdrawals {traders[0].hex()}"][0]
    assert withdrawal["sequence"] is not None and withdrawal["proof"] is not None
    assert withdrawal["checkpoint_height"] == withdrawal["sequence"] * 5
    history.close()
    height = node.exec_height

    # 1. Restart with the file: nothing to replay, the same history.
    node = wired(reopen(node), traders)
    history = HistoryStore.open(index_file, node.genesis_hash)
    assert history.height == height == node.exec_height
    indexer = create_app(node, history=history).state.indexer
    assert indexer.blocks_indexed == 0
    assert answers(indexer, traders) == before
    history.close()

    # 2. A file behind the node (a crash lost its last rows): topped up from the log.
    history = HistoryStore.open(index_file, node.genesis_hash)
    history._set_meta("height", height - 3)  # as if the last three blocks were lost
    indexer = create_app(node, history=history).state.indexer
    assert indexer.blocks_indexed == 3
    assert answers(indexer, traders) == before
    history.close()

    # 3. No file: rebuilt from the committed log, the same answers.
    index_file.unlink()
    history = HistoryStore.open(index_file, node.genesis_hash)
    indexer = create_app(node, history=history).state.indexer
    assert indexer.blocks_indexed == height and history.first_height == 1
    assert answers(indexer, traders) == before
    history.close()
    node.storage.close()
