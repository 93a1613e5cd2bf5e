"""The peer boundary: every message kind decoded once, typed and bounded, and nothing a
peer sends can stop a member (issue 12, findings 1, 2 and 5)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.crypto import Ed25519Signer
from consensus.types import (
    Block,
    Proposal,
    TimeoutMsg,
    block_signing_bytes,
    encode_message,
    genesis_block,
    timeout_signing_bytes,
)
from consensus.types import genesis_qc as make_genesis_qc
from node.genesis import ConsensusParams, committee_init, load_node_setup
from node.net import messages
from node.net.messages import (
    MAX_HEIGHT,
    MAX_SYNC_BLOCKS,
    PeerProtocolError,
    SnapshotChunk,
    SyncReply,
    SyncRequest,
    decode_peer_message,
)
from node.runtime import Node, NodeOptions
from node.store.storage import MemoryStorage

# ------------------------------------------------------------------ the decoder


def test_every_kind_decodes_to_its_type() -> None:
    assert decode_peer_message(["sr", 5, 256]) == SyncRequest(5, 256)
    reply = decode_peer_message(["sp", 1, [b"x"], None, 9])
    assert reply == SyncReply(1, (b"x",), None, 9)
    chunk = decode_peer_message(["ssd", 3, 0, b"abc", 10, b"rec"])
    assert isinstance(chunk, SnapshotChunk) and chunk.total == 10
    for message in (["c", b"\x00"], ["i", [b"a"]], ["ssr"], ["ssi", 0, b"", b""], ["ssg", 1, 0]):
        decode_peer_message(message)


@pytest.mark.parametrize(
    "message",
    [
        ["sr", 1 << 63, 1],  # finding 1: reached SQLite as an integer it cannot hold
        ["sr", -1, 1],
        ["sr", 1, 0],
        ["sr", 1, 10_000],
        ["sr", True, 1],
        ["sp", 1, [b"x"], None, 1 << 64],  # finding 2: crashed the sync
        ["sp", 1, "records", None, 1],
        ["sp", 1, [b"x"] * (MAX_SYNC_BLOCKS + 1), None, 1],
        ["sp", 1, [], [1, 2], 1],
        ["ssi", 5, b"short", b"short"],
        ["ssd", 1, 0, b"x" * ((1 << 20) + 1), 1 << 21, b""],
        ["ssd", 1, 5, b"abcdef", 8, b""],  # runs past the declared size
        ["ssg", 1, -5],
        ["i", [b"x" * 2000]],
        ["i", [1, 2]],
        ["nope"],
        [],
        "sr",
        [7, 1],
        ["sr", 1, 1, 1],
    ],
)
def test_out_of_range_and_malformed_messages_are_refused(message: Any) -> None:
    with pytest.raises(PeerProtocolError):
        decode_peer_message(message)


_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(1 << 64), max_value=1 << 64)
    | st.binary(max_size=40)
    | st.text(max_size=5),
    lambda inner: st.lists(inner, max_size=6),
    max_leaves=20,
)


@given(
    st.sampled_from([*sorted(messages._DECODERS), "x"]),  # every kind, and an unknown one
    st.lists(_values, max_size=7),
)
@settings(max_examples=400, deadline=None)
def test_the_decoder_raises_only_its_own_error(kind: str, fields: list[Any]) -> None:
    try:
        message = decode_peer_message([kind, *fields])
    except PeerProtocolError:
        return
    for name in getattr(message, "__slots__", ()):
        value = getattr(message, name)
        if type(value) is int:
            assert 0 <= value <= MAX_HEIGHT + (1 << 30)


# ------------------------------------------------------------------ a member under attack


class InjectNetwork:
    """A PeerNetwork whose inbound messages the test writes; records what the node sends
    and whom it penalized."""

    def __init__(self, n: int) -> None:
        self.n = n
        self._send, self.inbound = trio.open_memory_channel[tuple[int, Any]](64)
        self.sent: list[tuple[int, Any]] = []
        self.penalties: list[tuple[int, str]] = []

    async def run(self, *, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started([])
        await trio.sleep_forever()

    def send(self, peer_id: int, message: Any) -> bool:
        self.sent.append((peer_id, msgpack.unpackb(msgpack.packb(message), raw=False)))
        return True

    def broadcast(self, message: Any) -> None:
        for peer in range(1, self.n):
            self.send(peer, message)

    def connected_peers(self) -> frozenset[int]:
        return frozenset(range(1, self.n))

    def penalize(self, peer_id: int, reason: str) -> None:
        self.penalties.append((peer_id, reason))

    async def inject(self, peer: int, message: Any) -> None:
        # Through msgpack, as the transport delivers it.
        await self._send.send((peer, msgpack.unpackb(msgpack.packb(message), raw=False)))


def _member(tmp_path: Path) -> tuple[Node, InjectNetwork, list[Ed25519Signer]]:
    committee_init(tmp_path, 4, base_port=1, consensus=ConsensusParams(round_timeout_ms=300))
    setups = [load_node_setup(tmp_path / f"node{i}" / "config.toml") for i in range(4)]
    network = InjectNetwork(4)
    options = NodeOptions(join_wait_s=0, sync_timeout_s=0.05, wal_checkpoint_interval_s=0)
    node = Node(setups[0], MemoryStorage(), options, network=network)
    signers = [Ed25519Signer(bytes(s.keys.identity)) for s in setups]
    return node, network, signers


async def _settle() -> None:
    for _ in range(50):
        await trio.sleep(0)
    await trio.sleep(0.05)


async def test_hostile_messages_are_contained_to_their_sender(tmp_path: Path) -> None:
    node, network, _ = _member(tmp_path)
    attacks: list[Any] = [
        ["sr", 1 << 63, 20],
        ["sr", MAX_HEIGHT, 256],  # in range, far above our log: an empty answer
        ["sp", 1, [b"\xc1junk"], None, 1 << 40],  # nobody asked: dropped
        ["ssd", 1, 0, b"x", 1, b"junk"],
        ["ssg", 1, 0],
        ["c", b"\x93\x01\x02\x03"],
        ["c", msgpack.packb([[[[[[[[]]]]]]]])],
        ["i", [b"\xff" * 10]],
        ["cps", 1, 2, 3, 4, 5, 6],
        ["zz", 1],
        {"a": 1},
    ]
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        for message in attacks:
            await network.inject(1, message)
        await _settle()
        assert node.halted is None
        assert {peer for peer, _ in network.penalties} == {1}
        assert node.counters["peer_messages_rejected"] == 6  # sr, c, c, i, zz, {}
        answered = [m for p, m in network.sent if p == 1 and m[0] == "sp"]
        assert answered == [["sp", MAX_HEIGHT, [], None, 0]]
        nursery.cancel_scope.cancel()


async def test_a_signed_past_round_proposal_claiming_a_far_height_starts_no_sync(
    tmp_path: Path,
) -> None:
    node, network, signers = _member(tmp_path)
    chain_id = node.committee.chain_id
    genesis = genesis_block(chain_id)
    qc = make_genesis_qc(genesis)
    async with trio.open_nursery() as nursery:
        await nursery.start(node.run)
        # Members 1 and 2 time out rounds 1 and 2 with the member (its own timer): two
        # TCs move it to round 3. Then member 1 replays a proposal of round 1, which it
        # led, claiming height 10**6 and carrying 50 junk entries.
        for round_ in (1, 2):
            for author in (1, 2):
                signed = timeout_signing_bytes(chain_id, round_, 0)
                timeout = TimeoutMsg(round_, qc, author, signers[author].sign(signed), None)
                await network.inject(author, ["c", encode_message(timeout)])
            with trio.fail_after(10):
                while node.core.status().round <= round_:
                    await trio.sleep(0.02)
        syncs, asked = node.counters["syncs"], len([m for _, m in network.sent if m[0] == "sr"])
        entries = tuple(b"\x01" + bytes([i]) * 60 for i in range(50))
        leader = 1 % node.n
        draft = Block(1, 10**6, 1, leader, qc, entries, bytes(64))
        signature = signers[leader].sign(block_signing_bytes(chain_id, draft.id))
        block = Block(1, 10**6, 1, leader, qc, entries, signature)
        for _ in range(20):
            await network.inject(leader, ["c", encode_message(Proposal(block, None))])
        await _settle()
        assert node.counters["syncs"] == syncs  # the start-up catch-up only
        assert len([m for _, m in network.sent if m[0] == "sr"]) == asked
        assert not len(node.entries.bad)  # no payload work at all: the round is over
        assert node.halted is None
        nursery.cancel_scope.cancel()
