"""Block tree: insertion rules, 2-chain commits with pruning, retrieval helpers."""

from __future__ import annotations

from consensus_testkit import Kit

from consensus.block_store import BlockStore, InsertStatus, Orphans, serve_request
from consensus.types import BlockRequest


def test_insert_statuses() -> None:
    kit = Kit(4)
    chain = kit.chain(3)
    store = BlockStore(kit.genesis, kit.genesis_qc)
    assert store.insert(chain[2]) is InsertStatus.MISSING_PARENT
    assert store.insert(chain[1]) is InsertStatus.INSERTED
    assert store.insert(chain[1]) is InsertStatus.KNOWN
    assert store.insert(chain[2]) is InsertStatus.INSERTED
    same_time = kit.block(3, chain[2], timestamp_ms=chain[2].timestamp_ms)
    assert store.insert(same_time) is InsertStatus.INVALID
    assert store.insert(chain[3]) is InsertStatus.INSERTED
    assert len(store) == 4


def test_commit_returns_path_and_prunes_forks() -> None:
    kit = Kit(4)
    chain = kit.chain(4)
    store = BlockStore(kit.genesis, kit.genesis_qc)
    for block in chain[1:]:
        store.insert(block)
    fork = kit.block(2, chain[1], payload=(b"fork",))  # sibling of chain[2]
    fork_child = kit.block(3, fork)
    assert store.insert(fork) is InsertStatus.INSERTED
    assert store.insert(fork_child) is InsertStatus.INSERTED
    qc4 = kit.qc(chain[4])
    assert qc4.certifies_two_chain()
    committed = store.commit(qc4.parent_id)
    assert [b.round for b in committed] == [1, 2, 3]
    assert store.root == chain[3]
    assert fork.id not in store and fork_child.id not in store and chain[1].id not in store
    assert chain[4].id in store
    assert store.commit(chain[3].id) == ()  # exactly once
    assert store.insert(kit.block(3, chain[2], payload=(b"late",))) is InsertStatus.STALE


def test_qc_after_a_timeout_does_not_certify_a_two_chain() -> None:
    kit = Kit(4)
    chain = kit.chain(2)
    b4 = kit.block(4, chain[2])
    assert not kit.qc(b4).certifies_two_chain()


def test_serve_request_walks_parents() -> None:
    kit = Kit(4)
    chain = kit.chain(5)
    blocks = {b.id: b for b in chain}
    response = serve_request(blocks, BlockRequest(chain[5].id, 3))
    assert response is not None and [b.round for b in response.blocks] == [5, 4, 3]
    response = serve_request(blocks, BlockRequest(chain[2].id, 64))
    assert response is not None and [b.round for b in response.blocks] == [2, 1]  # no genesis
    assert serve_request(blocks, BlockRequest(bytes(32), 3)) is None


def test_orphans() -> None:
    kit = Kit(4)
    chain = kit.chain(3)
    orphans = Orphans(max_blocks=2)
    assert orphans.want(chain[3].id, 3, peer=1, now_ms=0)
    assert not orphans.want(chain[3].id, 3, peer=2, now_ms=0)
    assert orphans.add(chain[3]) and chain[3].id not in orphans.wanted
    assert orphans.add(chain[2])
    assert not orphans.add(chain[1])  # full
    assert orphans.children_of(chain[1].id) == [chain[2]]
    orphans.want(chain[1].id, 1, peer=1, now_ms=0)
    orphans.prune(root_round=3)
    assert len(orphans) == 0 and not orphans.wanted
