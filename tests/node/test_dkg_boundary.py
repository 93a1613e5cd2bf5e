"""DKG entries at the vote boundary (docs/PROTOCOL.md §10.9): a replica refuses a
proposal with too many or oversized 0x07 entries, or any in a committee without [dkg];
what passes is judged at execution, deterministically."""

from __future__ import annotations

from pathlib import Path

import pytest

from consensus.types import Block, genesis_block, genesis_qc
from node.genesis import committee_init, load_node_setup
from node.net.messages import PeerProtocolError
from node.payload import NO_SIGNER, dkg_entry, with_signers
from node.runtime import Node
from node.store.storage import open_storage


def _node(tmp_path: Path, chain_id: int) -> Node:
    committee_init(tmp_path, 4, base_port=17_600, chain_id=chain_id)
    setup = load_node_setup(tmp_path / "node0" / "config.toml")
    return Node(setup, open_storage(setup.config.data_dir, setup.genesis.genesis_hash()))


def _block(node: Node, entries: list[bytes]) -> Block:
    genesis = genesis_block(node.committee.chain_id)
    payload = with_signers(entries, [NO_SIGNER] * len(entries))
    return Block(1, 1, 1, 1, genesis_qc(genesis), payload, bytes(64))


@pytest.mark.parametrize(
    ("count", "size", "ok"),
    [(1, 0, True), (8, 0, True), (9, 0, False), (1, 1, False)],
)
async def test_dkg_entries_are_bounded_before_a_vote(
    tmp_path: Path, count: int, size: int, ok: bool
) -> None:
    node = _node(tmp_path, 4242)
    assert node.genesis.dkg is not None
    dealing = node.genesis.dkg.config(0).dealing_bytes
    entries = [dkg_entry(bytes([1]) + bytes(dealing - 1 + size))] * count  # junk content
    block = _block(node, entries)
    if ok:
        assert await node._proposal_payload_ok(block)
    else:
        with pytest.raises(PeerProtocolError, match="DKG entries"):
            await node._proposal_payload_ok(block)
    node.storage.close()


async def test_no_dkg_entry_in_a_committee_without_dkg(tmp_path: Path) -> None:
    node = _node(tmp_path, 31337)
    assert node.genesis.dkg is None
    with pytest.raises(PeerProtocolError, match="DKG entries"):
        await node._proposal_payload_ok(_block(node, [dkg_entry(bytes(100))]))
    node.storage.close()
