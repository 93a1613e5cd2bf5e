"""Log sync (node/runtime/sync.py) against peers played in process: an honest peer's
ranges are asked for ahead (pipelined) and never twice, a reply's unproven tail is
proven by the next reply, and a peer that answers with garbage, blocks that do not chain,
forged blocks that never commit, bad QCs or nothing at all is blamed while the sync goes
on from another peer. Also: the typed decoders of the catch-up path refuse exactly what
the reference decoders refuse, and otherwise give the same values."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import msgpack
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from consensus.types import Block, QuorumCert, genesis_block, genesis_qc
from node.intents import (
    Domain,
    address_of_private_key,
    committed_action,
    pack_intent,
    place_action,
    sign_intent,
)
from node.intents import _committed_action_general as committed_action_general
from node.net.messages import MAX_SYNC_BLOCKS, SyncReply
from node.payload import decode_committed, encode_committed, split_payload
from node.runtime.options import NodeOptions
from node.runtime.sync import MAX_PENDING_BLOCKS, LogSync
from node.store.storage import MemoryStorage
from tests.consensus.consensus_testkit import CHAIN_ID, Kit

KIT = Kit()
ROOT_HEIGHT = 300


def build_chain(kit: Kit, length: int) -> tuple[list[Block], QuorumCert]:
    """`length` empty blocks in consecutive rounds, and the QC that commits the last."""
    blocks: list[Block] = []
    parent = kit.genesis
    for round_ in range(1, length + 2):
        block = kit.block(round_, parent)
        blocks.append(block)
        parent = block
    child = blocks.pop()
    return blocks, kit.qc(child)


CHAIN, PROOF = build_chain(KIT, ROOT_HEIGHT)
RECORDS = [encode_committed(b) for b in CHAIN]


class Executor:
    """What LogSync needs of node/runtime/execution.py: a height, a tip, and a place to
    put the blocks it proves committed (recorded, with when, in `events`)."""

    def __init__(self, events: list[tuple[str, int]]) -> None:
        self.height = 0
        self.blocks: list[Block] = []
        self.events = events

    def tip_block(self) -> Block | None:
        return self.blocks[-1] if self.blocks else None

    def tip_id(self) -> bytes:
        return self.blocks[-1].id if self.blocks else genesis_block(CHAIN_ID).id

    async def commit_synced(self, blocks: list[Block], records: list[bytes]) -> None:
        for block, record in zip(blocks, records, strict=True):
            assert block.height == self.height + 1
            assert decode_committed(record).id == block.id
            self.blocks.append(block)
            self.height = block.height
        self.events.append(("commit", self.height))
        await trio.lowlevel.checkpoint()


Answer = Callable[[int, int], list[Any] | None]  # (from_height, limit) -> "sp" or None


def honest(per_reply: int = 100) -> Answer:
    """A peer with the whole chain that sends `per_reply` records at most a reply."""

    def answer(from_height: int, limit: int) -> list[Any]:
        records = RECORDS[from_height - 1 : from_height - 1 + min(limit, per_reply)]
        tip = records and from_height + len(records) - 1 == ROOT_HEIGHT
        at_root = from_height == ROOT_HEIGHT + 1
        proof = PROOF.to_wire() if tip or at_root else None
        return ["sp", from_height, records, proof, ROOT_HEIGHT]

    return answer


@dataclass
class Network:
    """Peers as functions: a request is answered at once, through `LogSync.deliver`
    after a checkpoint (as the peer boundary would, decoded by node/net/messages.py)."""

    peers: dict[int, Answer]
    events: list[tuple[str, int]]
    nursery: trio.Nursery
    sync: LogSync | None = None
    asked: list[tuple[int, int]] = field(default_factory=list)
    on_ask: Callable[[int], None] | None = None

    def send(self, peer: int, message: list[Any]) -> bool:
        assert message[0] == "sr", message
        self.asked.append((peer, message[1]))
        if self.on_ask is not None:
            self.on_ask(message[1])
        self.events.append(("ask", message[1]))
        reply = self.peers[peer](message[1], message[2])
        if reply is not None:
            self.nursery.start_soon(self._deliver, peer, reply)
        return True

    async def _deliver(self, peer: int, reply: list[Any]) -> None:
        await trio.lowlevel.checkpoint()
        assert self.sync is not None
        self.sync.deliver(peer, SyncReply(reply[1], tuple(reply[2]), reply[3], reply[4]))

    def broadcast(self, message: Any) -> None:
        raise AssertionError(f"no broadcast expected in a log sync: {message!r}")


@dataclass
class Run:
    executor: Executor
    network: Network
    faults: list[tuple[int, Exception]]
    roots: list[tuple[Block, QuorumCert]]


async def sync_from(
    peers: dict[int, Answer], first: int = 1, on_ask: Callable[[Executor, int], None] | None = None
) -> Run:
    """Member 0 syncs from `peers` (member index -> how it answers), starting at `first`;
    `on_ask(executor, height)` runs as each request leaves."""
    events: list[tuple[str, int]] = []
    executor = Executor(events)
    faults: list[tuple[int, Exception]] = []
    roots: list[tuple[Block, QuorumCert]] = []

    async def on_root(root: tuple[Block, QuorumCert]) -> None:
        roots.append(root)

    async with trio.open_nursery() as nursery:
        network = Network(peers, events, nursery)
        if on_ask is not None:
            network.on_ask = lambda height: on_ask(executor, height)
        sync = LogSync(
            me=0,
            committee=KIT.committee,
            network=network,  # type: ignore[arg-type]
            storage=MemoryStorage(),
            executor=executor,  # type: ignore[arg-type]
            verifier=KIT.verifier(),
            options=NodeOptions(),
            counters={"syncs": 0, "snapshot_syncs": 0},
            peer_fault=lambda peer, exc: faults.append((peer, exc)),
            on_root=on_root,
        )
        network.sync = sync
        await sync.run(first)
    return Run(executor, network, faults, roots)


def assert_caught_up(run: Run) -> None:
    assert run.executor.height == ROOT_HEIGHT
    assert [b.id for b in run.executor.blocks] == [b.id for b in CHAIN]
    assert run.roots and run.roots[-1][0].id == CHAIN[-1].id and run.roots[-1][1] == PROOF


async def test_ranges_are_asked_ahead_and_never_twice(
    autojump_clock: trio.testing.MockClock,
) -> None:
    run = await sync_from({1: honest(per_reply=50), 2: honest(), 3: honest()})
    assert_caught_up(run)
    assert not run.faults
    heights = [h for _, h in run.network.asked]
    # Each reply's unproven tail (its last two blocks) is proven by the next reply: the
    # member never asks for a height twice, and every range comes from member 1.
    assert heights == list(range(1, ROOT_HEIGHT + 1, 50))
    assert {peer for peer, _ in run.network.asked} == {1}
    # Pipelined: the next range is asked for before the current one is executed.
    events = run.executor.events
    for k, height in enumerate(heights[1:], start=1):
        asked_at = events.index(("ask", height))
        executed = [i for i, e in enumerate(events) if e[0] == "commit"]
        assert asked_at < executed[k - 1], (height, events[: asked_at + 2])


async def test_one_record_a_reply_still_makes_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A peer whose replies hold one record each (blocks near the reply's byte limit):
    no single reply proves anything, the pending records do."""
    run = await sync_from({1: honest(per_reply=1), 2: honest(), 3: honest()})
    assert_caught_up(run)
    assert not run.faults
    assert {peer for peer, _ in run.network.asked} == {1}


async def test_blocks_the_core_executes_meanwhile_leave_the_pending_records(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A sync runs beside the core: when the core executes a block the sync holds
    unproven, the sync goes on above it and does not blame its peer."""

    def core_commits(executor: Executor, height: int) -> None:
        if height == 101:  # asked ahead while blocks 49 and 50 wait for their proof
            assert executor.height == 48
            executor.blocks.append(CHAIN[48])
            executor.height = 49

    run = await sync_from({1: honest(per_reply=50), 2: honest(), 3: honest()}, on_ask=core_commits)
    assert_caught_up(run)
    assert not run.faults


def garbage(from_height: int, limit: int) -> list[Any]:
    return ["sp", from_height, [b"\x93\x01\x02", b"not msgpack \xc1"], None, ROOT_HEIGHT]


def out_of_range(from_height: int, limit: int) -> list[Any]:
    """Genuine records, from another height than asked (they do not chain)."""
    start = min(from_height + 7, ROOT_HEIGHT - 10)
    return ["sp", from_height, RECORDS[start : start + 10], None, ROOT_HEIGHT]


def bad_proof(from_height: int, limit: int) -> list[Any]:
    """The genuine tail with a QC whose signatures are another block's."""
    wire = PROOF.to_wire()
    wire[2] = CHAIN[5].qc.to_wire()[2]
    return ["sp", from_height, RECORDS[from_height - 1 :], wire, ROOT_HEIGHT]


def _forged_chain() -> list[bytes]:
    """Blocks that chain from genesis, with QCs no member signed, in rounds two apart: no
    QC among them claims a commit, so they could only ever wait for one."""
    records = []
    qc = genesis_qc(genesis_block(CHAIN_ID))
    for i in range(1, MAX_PENDING_BLOCKS + MAX_SYNC_BLOCKS + 1):
        block = Block(2 * i, i, i, 0, qc, (), b"")
        records.append(encode_committed(block))
        qc = QuorumCert(block.vote_data(), (0, 1, 2), (b"\x01" * 64,) * 3)
    return records


FORGED = _forged_chain()


def never_commits(from_height: int, limit: int) -> list[Any]:
    records = FORGED[from_height - 1 : from_height - 1 + limit]
    return ["sp", from_height, records, None, ROOT_HEIGHT]


def silent(from_height: int, limit: int) -> None:
    return None


@pytest.mark.parametrize(
    ("hostile", "blamed"),
    [
        (garbage, True),
        (out_of_range, True),
        (bad_proof, True),
        (never_commits, True),
        (silent, False),
    ],
)
async def test_a_bad_peer_is_blamed_and_the_sync_goes_on_from_another(
    autojump_clock: trio.testing.MockClock, hostile: Answer, blamed: bool
) -> None:
    run = await sync_from({1: hostile, 2: honest(), 3: honest()})
    assert_caught_up(run)
    assert {peer for peer, _ in run.faults} == ({1} if blamed else set())
    if hostile is never_commits:
        assert "no QC that commits them" in str(run.faults[0][1])
    # The member went on at the height it had reached, from the next peer.
    assert run.network.asked[-1][0] == 2


async def test_a_bad_peer_midway_loses_only_its_own_pending_records(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Member 1 serves the first ranges honestly, then garbage: what it proved stays
    executed, its unproven tail is dropped, and member 2 serves the rest."""
    good = honest(per_reply=40)

    def turns_bad(from_height: int, limit: int) -> list[Any]:
        return good(from_height, limit) if from_height < 150 else garbage(from_height, limit)

    run = await sync_from({1: turns_bad, 2: honest(), 3: honest()})
    assert_caught_up(run)
    assert [peer for peer, _ in run.faults] == [1]
    first_from_2 = next(h for peer, h in run.network.asked if peer == 2)
    assert first_from_2 < 160  # the unproven tail of member 1 was asked again


# ---------------------------------------------------------------------------------------
# The typed decoders refuse what the reference decoders refuse


def reference_decode_committed(data: bytes) -> Block:
    block = Block.from_wire(msgpack.unpackb(data, raw=False))
    split_payload(block.payload)
    return block


def outcome(fn: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return "ok", fn()
    except Exception as exc:
        return type(exc).__name__, str(exc)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(allow_nan=False),
    st.binary(max_size=70),
    st.text(max_size=8),
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=8,
)


def _wire(block: Block) -> list[Any]:
    return msgpack.unpackb(encode_committed(block), raw=False)  # type: ignore[no-any-return]


SAMPLE = _wire(CHAIN[3])
SAMPLE_WITH_PAYLOAD = _wire(KIT.block(9, CHAIN[7], payload=(b"\x01abc", b"\x03" + b"\x07" * 20)))
PATHS = [(), (4,), (4, 0), (4, 1), (4, 2), (5,)]  # the block, its QC, vote data, lists


@settings(max_examples=400)
@given(
    st.sampled_from([SAMPLE, SAMPLE_WITH_PAYLOAD]),
    st.sampled_from(PATHS),
    st.integers(0, 9),
    st.sampled_from(["replace", "append", "drop"]),
    values,
)
def test_decode_committed_refuses_what_the_reference_refuses(
    wire: list[Any], path: tuple[int, ...], index: int, how: str, value: Any
) -> None:
    mutated = msgpack.unpackb(msgpack.packb(wire, use_bin_type=True), raw=False)
    target = mutated
    for i in path:
        target = target[i]
    if how == "append":
        target.append(value)
    elif target:
        if how == "drop":
            del target[index % len(target)]
        else:
            target[index % len(target)] = value
    data = msgpack.packb(mutated, use_bin_type=True)
    got, expected = (
        outcome(lambda: decode_committed(data)),
        outcome(lambda: reference_decode_committed(data)),
    )
    assert got == expected
    if got[0] == "ok":
        assert got[1].id == expected[1].id


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\xc1",
        encode_committed(CHAIN[0]) + b"\x00",  # trailing bytes
        encode_committed(CHAIN[0])[:-3],  # truncated
        msgpack.packb({"round": 1}),
        msgpack.packb([*SAMPLE[:4], SAMPLE[4], [b"\x01" * (64 * 1024 + 1)], SAMPLE[6]]),
        msgpack.packb([True, *SAMPLE[1:]]),
        msgpack.packb([-1, *SAMPLE[1:]]),
        msgpack.packb([*SAMPLE[:6], b"s" * 65]),
        msgpack.packb([*SAMPLE[:4], [SAMPLE[4][0], [0, 1, 2], [b"x" * 63] * 3], *SAMPLE[5:]]),
        msgpack.packb([*SAMPLE[:4], [SAMPLE[4][0], list(range(257)), []], *SAMPLE[5:]]),
        msgpack.packb([*SAMPLE[:5], [msgpack.ExtType(1, b"x")], SAMPLE[6]]),
    ],
)
def test_malformed_records_get_the_reference_error(data: bytes) -> None:
    got = outcome(lambda: decode_committed(data))
    assert got[0] != "ok"
    assert got == outcome(lambda: reference_decode_committed(data))


DOMAIN = Domain(chain_id=31337, verifying_contract=b"\x22" * 20)
KEY = (0xCA7C0002).to_bytes(32, "big")
ACCOUNT = address_of_private_key(KEY)
INTENT = msgpack.unpackb(
    pack_intent(sign_intent(KEY, ACCOUNT, 1234, place_action(0, "buy", 5, 7), DOMAIN)),
    raw=False,
)
KEYS = ["action", "account", "nonce", "signature", "type", "price", "side", "cloid", "extra"]


@settings(max_examples=500)
@given(
    st.sampled_from(KEYS),
    st.booleans(),
    st.sampled_from(["replace", "add", "drop"]),
    values | st.just(msgpack.ExtType(3, b"z")),
)
def test_committed_action_refuses_what_the_reference_refuses(
    key: str, in_action: bool, how: str, value: Any
) -> None:
    """Any one key of an intent (or of its action) replaced by a value of any type,
    added or dropped: the msgspec path gives what the msgpack path gives."""
    intent = msgpack.unpackb(msgpack.packb(INTENT, use_bin_type=True), raw=False)
    target = intent["action"] if in_action else intent
    if how == "drop":
        target.pop(key, None)
    else:
        target[key] = value
    packed = msgpack.packb(intent, use_bin_type=True)
    got = outcome(lambda: committed_action(packed, DOMAIN))
    assert got == outcome(lambda: committed_action_general(packed, DOMAIN))


@pytest.mark.parametrize(
    "packed",
    [
        b"",
        b"\xc1",
        msgpack.packb(INTENT, use_bin_type=True) + b"\x00",
        msgpack.packb(INTENT, use_bin_type=True)[:-5],
        msgpack.packb({**INTENT, "nonce": -1}, use_bin_type=True),
        msgpack.packb({**INTENT, "nonce": True}, use_bin_type=True),
        msgpack.packb({**INTENT, "account": b"\x01" * 21}, use_bin_type=True),
        msgpack.packb({**INTENT, 7: 1}, use_bin_type=True),
        msgpack.packb({**INTENT, "action": {**INTENT["action"], "side": b"buy"}}),
        msgpack.packb({**INTENT, "action": {**INTENT["action"], "type": ["place"]}}),
        msgpack.packb([INTENT["action"], ACCOUNT, 1, b""]),
        b"\x01" * 2000,  # oversized garbage
    ],
)
def test_malformed_intents_get_the_reference_answer(packed: bytes) -> None:
    got = outcome(lambda: committed_action(packed, DOMAIN))
    assert got == outcome(lambda: committed_action_general(packed, DOMAIN))
