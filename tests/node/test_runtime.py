"""Committee members in one trio process over real loopback sockets: ordering, execution,
restart from storage. (Separate processes are exercised in tests/integration.)"""

from __future__ import annotations

from pathlib import Path

import trio

from node.genesis import ConsensusParams, committee_init, load_node_setup
from node.runtime import Node
from node.storage import open_storage
from tests.node.cluster import free_base_port, place, trader_key


def make_nodes(tmp_path: Path, n: int) -> list[Node]:
    base = free_base_port(n)
    committee_init(tmp_path, n, base_port=base, consensus=ConsensusParams(round_timeout_ms=500))
    nodes = []
    for i in range(n):
        setup = load_node_setup(tmp_path / f"node{i}" / "config.toml")
        nodes.append(Node(setup, open_storage(setup.config.data_dir, setup.genesis.genesis_hash())))
    return nodes


async def wait_height(nodes: list[Node], height: int) -> None:
    with trio.fail_after(30):
        while min(n.exec_height for n in nodes) < height:
            await trio.sleep(0.02)


async def test_four_nodes_order_intents_sent_to_different_nodes(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, 4)
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
        await wait_height(nodes, 1)
        domain = nodes[0].domain
        intents = [place(trader_key(i % 7), domain) for i in range(40)]
        results = []
        for i, intent in enumerate(intents):
            results += await nodes[i % 4].submit([intent], wait=False, timeout_s=1)
        assert all(r.status == "accepted" for r in results), results
        with trio.fail_after(30):
            done = await nodes[1].submit([intents[-1]], wait=True, timeout_s=20)
        assert done[0].height is not None
        await wait_height(nodes, max(n.exec_height for n in nodes))
        nursery.cancel_scope.cancel()
    common = min(n.exec_height for n in nodes)
    logs = {tuple(n.storage.load_committed(1, common)) for n in nodes}
    assert len(logs) == 1, "honest nodes disagree on the committed log"
    assert all(n.counters["entries_committed"] == 40 for n in nodes)
