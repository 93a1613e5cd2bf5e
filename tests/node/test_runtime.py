"""Committee members in one trio process over real loopback sockets: ordering, execution,
restart from storage. (Separate processes are exercised in tests/integration.)"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import msgpack
import pytest
import trio

from consensus.actions import Action, Commit, NeedPayload, PersistSafety, Send
from consensus.events import PayloadReady
from consensus.safety_data import SafetyData
from consensus.types import Block, Vote, VoteData, genesis_block, genesis_qc
from node.genesis import ConsensusParams, committee_init, load_node_setup
from node.intents import Entry, IntentError
from node.payload import decode_committed
from node.procs import free_base_port
from node.runtime import Node, NodeOptions
from node.store.storage import open_storage
from tests.node.cluster import place, trader_key

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
        with trio.fail_after(30):
            while min(n.counters["entries_committed"] for n in nodes) < 40:
                await trio.sleep(0.02)
        nursery.cancel_scope.cancel()
    common = min(n.storage.committed_height() for n in nodes)
    logs = {tuple(n.storage.load_committed(1, common)) for n in nodes}
    assert len(logs) == 1, "honest nodes disagree on the committed log"
    assert [n.counters["entries_committed"] for n in nodes] == [40] * 4


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
        intents = [place(trader_key(i), domain) for i in range(30)]
        answers = []
        for i, intent in enumerate(intents):
            answers += await nodes[i % 3].submit([intent], wait=True, timeout_s=20)
        await wait_height(nodes[:3], stopped_at + 12)  # past the sync gap
        nodes[3] = reopen(nodes[3])
        assert nodes[3].exec_height == stopped_at  # recovered from its own storage
        await nursery.start(_run_until_cancelled, nodes[3], scopes[3])
        await wait_height(nodes, nodes[0].exec_height)
        # What it took by log sync, it answers as the members that were there.
        again = await nodes[3].submit(intents, wait=False, timeout_s=1)
        assert [(a.status, a.height, a.code) for a in again] == [
            (a.status, a.height, a.code) for a in answers
        ]
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


async def test_a_member_that_caught_up_by_sync_serves_the_synced_root(tmp_path: Path) -> None:
    """What a member took by log sync it proves to the next one: its stored root moves
    to the synced tip, so its sync answers reach that height (and a restart rebuilds the
    core there). Before, it kept the root of its last live commit: in the simulator two
    such members could not bring a third back while that third's vote was the one
    missing for any live commit (seed 210)."""
    nodes = make_nodes(tmp_path, 4)
    async with trio.open_nursery() as nursery:
        scopes: list[list[trio.CancelScope]] = [[] for _ in nodes]
        for node, box in zip(nodes, scopes, strict=True):
            await nursery.start(_run_until_cancelled, node, box)
        await wait_height(nodes, 2)
        scopes[3][-1].cancel()  # node 3 goes down
        await trio.sleep(0.1)
        stopped_at = nodes[3].exec_height
        await wait_height(nodes[:3], stopped_at + 12)
        for i in (1, 2):  # no quorum from here on: nothing commits live any more
            scopes[i][-1].cancel()
        await trio.sleep(0.1)
        tip = nodes[0].exec_height
        nodes[3] = reopen(nodes[3])
        await nursery.start(_run_until_cancelled, nodes[3], scopes[3])
        await wait_height([nodes[3]], tip)
        raw = nodes[3].storage.load_meta("root")
        assert raw is not None
        root, _proof = msgpack.unpackb(raw, raw=False)
        assert Block.from_wire(root).height == tip > stopped_at
        nursery.cancel_scope.cancel()


async def test_byzantine_leader_and_double_voter_cannot_split_honest_nodes(tmp_path: Path) -> None:
    nodes = make_nodes(tmp_path, 4)
    setup = nodes[3].setup
    nodes[3].storage.close()
    byzantine = NodeOptions(idle_block_interval_ms=40, byzantine="equivocate")
    nodes[3] = Node(
        setup, open_storage(setup.config.data_dir, setup.genesis.genesis_hash()), byzantine
    )
    setup = nodes[2].setup
    nodes[2].storage.close()
    voter = NodeOptions(idle_block_interval_ms=40, byzantine="double-vote")
    nodes[2] = Node(setup, open_storage(setup.config.data_dir, setup.genesis.genesis_hash()), voter)
    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
        domain = nodes[0].domain
        for i in range(20):
            await nodes[i % 2].submit([place(trader_key(i), domain)], wait=False, timeout_s=1)
        result = await nodes[0].submit([place(trader_key(50), domain)], wait=True, timeout_s=20)
        assert result[0].height is not None
        await wait_height(nodes[:2], result[0].height + 4)
        nursery.cancel_scope.cancel()
    # Two Byzantine members exceed f = 1 only if they collude on one block; here they
    # misbehave independently, and the honest pair must still agree with each other.
    common = min(n.storage.committed_height() for n in nodes[:2])
    assert len({tuple(n.storage.load_committed(1, common)) for n in nodes[:2]}) == 1


async def test_storage_failure_halts_signing_and_the_rest_go_on(tmp_path: Path) -> None:
    import sqlite3

    nodes = make_nodes(tmp_path, 4)
    broken = nodes[1]

    def full_disk(batch: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    async with trio.open_nursery() as nursery:
        for node in nodes:
            await nursery.start(node.run)
        await wait_height(nodes, 2)
        broken.storage.write = full_disk  # type: ignore[method-assign]
        domain = nodes[0].domain
        result = await nodes[0].submit([place(trader_key(1), domain)], wait=True, timeout_s=20)
        assert result[0].height is not None
        assert broken.halted is not None and "disk is full" in broken.halted
        assert not broken.is_ready() and broken.status()["halted"]
        nursery.cancel_scope.cancel()


async def test_wiped_node_withholds_votes_for_rounds_it_may_have_signed(tmp_path: Path) -> None:
    import shutil

    nodes = make_nodes(tmp_path, 4)
    async with trio.open_nursery() as nursery:
        scopes: list[list[trio.CancelScope]] = [[] for _ in nodes]
        for node, box in zip(nodes, scopes, strict=True):
            await nursery.start(_run_until_cancelled, node, box)
        await wait_height(nodes, 8)
        scopes[3][-1].cancel()
        await trio.sleep(0.1)
        seen_round = max(n.core.status().round for n in nodes[:3])
        nodes[3].storage.close()
        shutil.rmtree(nodes[3].setup.config.data_dir)  # the operator lost the disk
        setup = nodes[3].setup
        nodes[3] = Node(
            setup, open_storage(setup.config.data_dir, setup.genesis.genesis_hash()), FAST
        )
        await nursery.start(_run_until_cancelled, nodes[3], scopes[3])
        with trio.fail_after(20):
            while nodes[3]._guard_round in (-1, None):
                await trio.sleep(0.02)
        assert nodes[3]._guard_round > seen_round
        await wait_height(nodes, nodes[0].exec_height)  # it still catches up
        nursery.cancel_scope.cancel()


def test_only_a_store_no_member_ran_from_starts_unguarded(tmp_path: Path) -> None:
    """`committee init` marks each data directory fresh; a member on a fresh store signed
    nothing before, so it does not withhold its votes (a first start guarded stalled a
    committee that had advanced without it while a Byzantine peer fell silent: the
    simulator's seed 166). An empty store without the mark may be a wiped disk."""
    from node.config import FRESH_DATA_MARK

    committee_init(tmp_path, 4, base_port=free_base_port(4))
    setup = load_node_setup(tmp_path / "node0" / "config.toml")
    assert (setup.config.data_dir / FRESH_DATA_MARK).is_file()
    storage = open_storage(setup.config.data_dir, setup.genesis.genesis_hash())
    try:
        assert Node(setup, storage, FAST, fresh=True)._guard_round is None
        assert Node(setup, storage, FAST)._guard_round == -1  # observing first
    finally:
        storage.close()


async def test_far_behind_node_installs_a_snapshot_that_f_plus_1_peers_agree_on(
    tmp_path: Path,
) -> None:
    """…and with it the intents' outcomes: a resubmission to it gets what the others said
    (issue 17). Every member keeps only `history_blocks` of log below its snapshot, and
    each committed block once (the consensus blocks at or below the root are dropped)."""
    nodes = make_nodes(tmp_path, 4)
    options = NodeOptions(
        idle_block_interval_ms=20,
        snapshot_interval_blocks=5,
        snapshot_sync_gap_blocks=10,
        history_blocks=8,
    )
    for i, node in enumerate(nodes):
        node.storage.close()
        setup = node.setup
        storage = open_storage(setup.config.data_dir, setup.genesis.genesis_hash())
        nodes[i] = Node(setup, storage, options)
    async with trio.open_nursery() as nursery:
        scopes: list[list[trio.CancelScope]] = [[] for _ in nodes]
        for node, box in zip(nodes, scopes, strict=True):
            await nursery.start(_run_until_cancelled, node, box)
        await wait_height(nodes, 2)
        scopes[3][-1].cancel()
        await trio.sleep(0.1)
        domain = nodes[0].domain
        intents = [place(trader_key(i), domain, size=10**6 * (1 + i % 2)) for i in range(20)]
        answers = []
        for i, intent in enumerate(intents):
            answers += await nodes[i % 3].submit([intent], wait=True, timeout_s=20)
        assert all(a.status in ("committed", "rejected") for a in answers), answers
        await wait_height(nodes[:3], nodes[3].exec_height + 20)
        nodes[3].storage.close()
        setup = nodes[3].setup
        storage = open_storage(setup.config.data_dir, setup.genesis.genesis_hash())
        nodes[3] = Node(setup, storage, options)
        await nursery.start(_run_until_cancelled, nodes[3], scopes[3])
        await wait_height(nodes, nodes[0].exec_height)
        assert nodes[3].counters["snapshot_syncs"] == 1
        again = await nodes[3].submit(intents, wait=True, timeout_s=5)
        assert [(a.status, a.height, a.code) for a in again] == [
            (a.status, a.height, a.code) for a in answers
        ]
        assert all(a.duplicate for a in again)
        # and it votes again: with node 2 down the quorum needs it
        scopes[2][-1].cancel()
        result = await nodes[3].submit([place(trader_key(99), domain)], wait=True, timeout_s=20)
        assert result[0].height is not None
        nursery.cancel_scope.cancel()
    base = max(nodes[i].storage.first_committed_height() for i in (0, 3))
    top = min(n.storage.committed_height() for n in nodes[:2] + nodes[3:])
    assert base > 2 and top >= base
    logs = {tuple(n.storage.load_committed(base, top - base + 1)) for n in (nodes[0], nodes[3])}
    assert len(logs) == 1
    for node in nodes:
        storage = node.storage
        snapshot = storage.latest_snapshot()
        assert snapshot is not None
        first = storage.first_committed_height()
        # (a member that installed a snapshot has no log below it at all)
        assert min(snapshot[0], storage.committed_height() - 8) <= first <= snapshot[0]
        stored = {msgpack.unpackb(b, raw=False)[0] for b in storage.load_blocks(0)}
        rows = storage.load_committed(first, 1 << 20)
        assert not stored & {decode_committed(data).round for _, data in rows}, node.me


async def test_committed_blocks_run_after_the_vote_and_the_proposal_leave(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Executing a committed block is kept off the round's critical path: the vote (after
    its persist) and our filled proposal leave first, the engine runs last."""
    node = make_nodes(tmp_path, 4)[1]
    order: list[str] = []

    async def commit(blocks: object, proof: object) -> None:
        order.append("commit")

    async def persist(safety: object, blocks: object, proposed: bool) -> None:
        order.append("persist")

    def handle(event: object, now_ms: int) -> list[Action]:
        assert isinstance(event, PayloadReady) and event.round == 8
        order.append("payload")
        return []

    monkeypatch.setattr(node, "_commit", commit)
    monkeypatch.setattr(node, "_persist", persist)
    monkeypatch.setattr(node.core, "handle", handle)

    def send(to: int, msg: object) -> bool:
        order.append("send")
        return True

    monkeypatch.setattr(node.transport, "send", send)
    monkeypatch.setattr(node, "_idle", lambda parent_id: False)
    node._guard_round = None  # a fresh data directory withholds votes until it has looked
    vote = Vote(VoteData(bytes(32), 7, bytes(32), 6), node.me, bytes(64))
    qc = genesis_qc(genesis_block(node.committee.chain_id))
    await node._execute(
        [
            Commit((), qc),
            PersistSafety(SafetyData(last_voted_round=7)),
            Send(2, vote),
            NeedPayload(8, bytes(32)),
        ]
    )
    assert order == ["persist", "send", "payload", "commit"]


async def test_signatures_checked_in_threads_answer_as_on_the_loop(tmp_path: Path) -> None:
    node = make_nodes(tmp_path, 4)[0]
    domain = node.domain
    intents = [place(trader_key(i % 5), domain) for i in range(150)]
    # An r no key recovers from (0), and a signature by another key: a different signer,
    # which recovery alone accepts (an agent, perhaps) and the pool checks later.
    intents[7] = replace(intents[7], signature=bytes(32) + intents[7].signature[32:])
    intents[9] = replace(intents[9], signature=intents[10].signature)
    answers = []
    for threads in (0, 2, 3):
        node.entries.threads = threads
        got = await node.entries.verify(intents)
        answers.append([a.code if isinstance(a, IntentError) else a for a in got])
    assert answers[0] == answers[1] == answers[2]
    assert [i for i, a in enumerate(answers[0]) if isinstance(a, str)] == [7]
    other = answers[0][9]
    assert isinstance(other, Entry) and other.signer != intents[9].account


async def test_a_committee_of_one_commits_and_keeps_serving(tmp_path: Path) -> None:
    """Alone, each proposal certifies itself and asks for the next within the same
    event: the runtime must still execute commits between rounds (a regression once
    spun through empty rounds with 3,000 entries pending and never executed them)."""
    node = make_nodes(tmp_path, 1)[0]
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        intents = [place(trader_key(i % 50), node.domain) for i in range(3000)]
        await node.submit(intents, wait=False, timeout_s=1)
        with trio.fail_after(20):
            while node.counters["entries_committed"] < 3000:
                await trio.sleep(0.05)
            # Ordered and executed (the engine refuses them: the traders hold no funds).
            done = await node.submit(intents[-1:], wait=True, timeout_s=5)
        assert done[0].height is not None and done[0].duplicate
        assert node.core.status().round < 1000  # no spinning through empty rounds
        nursery.cancel_scope.cancel()


async def test_a_resubmission_whose_outcome_is_forgotten_is_refused_at_intake(
    tmp_path: Path,
) -> None:
    """Outcomes keeps the last OUTCOMES_KEPT; an intent committed before that, whose nonce
    the engine still keeps, is refused by intake (`nonce_reused`) rather than ordered a
    second time. Its committed copy stays the only one in the log."""
    node = make_nodes(tmp_path, 1)[0]
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        intents = [place(trader_key(i % 5), node.domain) for i in range(20)]
        with trio.fail_after(20):
            done = await node.submit(intents, wait=True, timeout_s=10)
        assert all(r.height is not None for r in done)
        height = node.exec_height
        node.outcomes.load([])  # as if every one of them had aged out of the index
        again = await node.submit(intents, wait=False, timeout_s=1)
        assert [r.status for r in again] == ["rejected"] * len(intents)
        assert {r.code for r in again} == {"nonce_reused"}, again[0]
        assert len(node.mempool) == 0
        # A fresh intent still goes through, and the log holds each id once.
        fresh = [place(trader_key(0), node.domain)]
        with trio.fail_after(20):
            (result,) = await node.submit(fresh, wait=True, timeout_s=10)
        assert result.height is not None and result.height > height
        with trio.fail_after(10):  # the log is written after the block is applied
            while node.storage.committed_height() < result.height:
                await trio.sleep(0.01)
        payloads = [
            raw
            for _, data in node.storage.load_committed(1, node.exec_height)
            for raw in decode_committed(data).payload[:-1]
        ]
        assert len(payloads) == len(set(payloads)) == len(intents) + 1
        nursery.cancel_scope.cancel()
