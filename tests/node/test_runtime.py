"""Committee members in one trio process over real loopback sockets: ordering, execution,
restart from storage. (Separate processes are exercised in tests/integration.)"""

from __future__ import annotations

from pathlib import Path

import trio

from node.genesis import ConsensusParams, committee_init, load_node_setup
from node.runtime import Node, NodeOptions
from node.storage import open_storage
from tests.node.cluster import free_base_port, place, trader_key

FAST = NodeOptions(idle_block_interval_ms=40)


def make_nodes(tmp_path: Path, n: int) -> list[Node]:
    base = free_base_port(n)
    committee_init(
        tmp_path,
        n,
        base_port=base,
        consensus=ConsensusParams(round_timeout_ms=300, checkpoint_interval_blocks=5),
    )
    nodes = []
    for i in range(n):
        setup = load_node_setup(tmp_path / f"node{i}" / "config.toml")
        nodes.append(
            Node(setup, open_storage(setup.config.data_dir, setup.genesis.genesis_hash()), FAST)
        )
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
    common = min(n.storage.committed_height() for n in nodes)
    logs = {tuple(n.storage.load_committed(1, common)) for n in nodes}
    assert len(logs) == 1, "honest nodes disagree on the committed log"
    assert all(n.counters["entries_committed"] == 40 for n in nodes)


async def _run_until_cancelled(
    node: Node,
    scope_box: list[trio.CancelScope],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.CancelScope() as scope:
        scope_box.append(scope)
        await node.run(task_status=task_status)


def reopen(node: Node) -> Node:
    node.storage.close()
    setup = node.setup
    return Node(setup, open_storage(setup.config.data_dir, setup.genesis.genesis_hash()), FAST)


async def test_restarted_node_catches_up_from_peers_and_votes_again(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, 4)
    async with trio.open_nursery() as nursery:
        scopes: list[list[trio.CancelScope]] = [[] for _ in nodes]
        for node, box in zip(nodes, scopes, strict=True):
            await nursery.start(_run_until_cancelled, node, box)
        await wait_height(nodes, 2)
        scopes[3][-1].cancel()  # node 3 goes down
        await trio.sleep(0.1)
        domain = nodes[0].domain
        stopped_at = nodes[3].exec_height
        for i in range(30):
            await nodes[i % 3].submit([place(trader_key(i), domain)], wait=False, timeout_s=1)
        await wait_height(nodes[:3], stopped_at + 12)  # past the sync gap
        nodes[3] = reopen(nodes[3])
        assert nodes[3].exec_height == stopped_at  # recovered from its own storage
        await nursery.start(_run_until_cancelled, nodes[3], scopes[3])
        await wait_height(nodes, nodes[0].exec_height)
        # With node 2 down, a quorum (3 of 4) needs node 3's votes again.
        scopes[2][-1].cancel()
        live = [nodes[0], nodes[1], nodes[3]]
        result = await nodes[3].submit([place(trader_key(99), domain)], wait=True, timeout_s=20)
        assert result[0].height is not None, result
        await wait_height(live, result[0].height)
        nursery.cancel_scope.cancel()
    common = min(n.storage.committed_height() for n in nodes)
    logs = {tuple(n.storage.load_committed(1, common)) for n in nodes}
    assert len(logs) == 1
