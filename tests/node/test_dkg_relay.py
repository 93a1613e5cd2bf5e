"""The DKG relay (node/runtime/dkg_relay.py, PROTOCOL.md §10.9 "Relayed entries"): a
member's pending DKG entries reach other members' proposals. The pool against a
recording network and the keying state of tests/node/test_dkg_keying.py's log; the
`"dr"` message's bounds. The cluster test is in test_dkg_cluster.py."""

from __future__ import annotations

import msgpack
import pytest
import trio
import trio.testing

from node.fairness.dkg import make_dealing
from node.fairness.keying import MAX_RELAYED_PER_BLOCK, Keying, MemberKeying, relayed_entry
from node.net.messages import (
    MAX_RELAYED_DKG,
    MAX_RELAYED_DKG_BYTES,
    PeerProtocolError,
    RelayedDkg,
    decode_peer_message,
)
from node.runtime.dkg_relay import MAX_PROPOSALS, DkgRelay
from tests.node.test_dkg_keying import SECRETS, Log, _params
from tests.node.test_encrypted_decryption import RecordingNetwork


def _relay(
    keying: Keying, network: RecordingNetwork, member: MemberKeying | None = None, me: int = 0
) -> tuple[DkgRelay, dict[str, int]]:
    counters: dict[str, int] = {}
    relay = DkgRelay(
        me=me,
        network=network,  # type: ignore[arg-type]
        keying=lambda: keying,
        member_keying=lambda: member,
        counters=counters,
    )
    return relay, counters


def _dealing_entry(keying: Keying, member: int, secret_of: int | None = None) -> bytes:
    run = keying.run
    assert run is not None
    config = run.config
    dealing = make_dealing(config, member, bytes([member]) * 32)
    return relayed_entry(config, member, SECRETS[(secret_of or member) - 1], dealing)


async def test_a_member_with_pending_entries_sends_them_until_they_commit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log = Log(_params())
    log.deal_all()
    member = log.members[3]
    network = RecordingNetwork()
    relay, counters = _relay(member.keying, network, member, me=3)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(relay.run)
        await trio.sleep(2.5)
        assert network.sent == [(None, ["dr", member.relayed_entries()])] * 2
        log.block(0, member.relayed_entries())  # member 1 carries them: committed
        await trio.sleep(2)
        assert len(network.sent) == 2  # nothing pending, nothing sent
        nursery.cancel_scope.cancel()
    assert counters["dkg_relay_sent"] == 2


async def test_offers_are_checked_kept_per_sender_and_proposed_fairly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log = Log(_params())
    keying = log.observer
    network = RecordingNetwork()
    relay, counters = _relay(keying, network)  # we are member 1 (index 0)
    own = _dealing_entry(keying, 1)
    two, three, four = (_dealing_entry(keying, m) for m in (2, 3, 4))
    forged = _dealing_entry(keying, 4, secret_of=3)  # member 3's secret, as member 4
    relay.offer(0, RelayedDkg((own,)))  # our own: kept, but never proposed by the pool
    relay.offer(1, RelayedDkg((two,)))
    relay.offer(3, RelayedDkg((forged,)))  # fails its proof: dropped, not penalized
    await trio.sleep(1)
    relay.offer(2, RelayedDkg((three,)))
    relay.offer(3, RelayedDkg((four,)))
    assert network.penalized == [] and counters["dkg_relay_dropped"] == 1
    assert relay.for_block(set()) == [two, three, four]
    assert relay.for_block({three}) == [two, four]  # an uncommitted ancestor carries it
    log.block(0, [two, four])  # committed: the run has them
    assert relay.for_block(set()) == [three]
    relay.offer(1, RelayedDkg((three,)))  # member 2 offers member 3's entry: refused
    assert [p for p, _ in network.penalized] == [1]


async def test_a_peers_offers_are_judged_twice_a_second_at_most(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log = Log(_params())
    network = RecordingNetwork()
    relay, counters = _relay(log.observer, network)
    two = _dealing_entry(log.observer, 2)
    relay.offer(1, RelayedDkg((two,)))
    for _ in range(10):
        relay.offer(1, RelayedDkg((two,)))  # unread: no proof checked
    assert counters["dkg_relay_dropped"] == 10 and counters["dkg_relay_kept"] == 1
    await trio.sleep(0.5)
    relay.offer(1, RelayedDkg((two,)))
    assert counters["dkg_relay_kept"] == 2


async def test_a_block_gets_a_bounded_fair_share_and_a_new_run_empties_the_pool() -> None:
    log = Log(_params(n=7))
    keying = log.observer
    relay, _ = _relay(keying, RecordingNetwork())
    run = keying.run
    assert run is not None
    config = run.config
    entries: dict[int, list[bytes]] = {}
    for member in range(2, 8):  # each offers a dealing and a (stand-in) second message
        messages = [make_dealing(config, member, bytes([member, k]) * 16) for k in range(2)]
        entries[member] = [relayed_entry(config, member, SECRETS[member - 1], m) for m in messages]
        relay.offer(member - 1, RelayedDkg(tuple(entries[member])))
    chosen = relay.for_block(set())
    assert len(chosen) == MAX_RELAYED_PER_BLOCK
    assert chosen[:6] == [entries[m][0] for m in range(2, 8)]  # one from each first
    keying.run = None  # the run ended
    assert relay.for_block(set()) == []


def test_relayed_dkg_message_bounds() -> None:
    entry = b"\x09" + bytes(2 + 64) + b"\x01"
    assert decode_peer_message(["dr", [entry]]) == RelayedDkg((entry,))
    assert decode_peer_message(["dr", []]) == RelayedDkg(())
    for bad in (
        ["dr", [entry] * (MAX_RELAYED_DKG + 1)],
        ["dr", [b"\x09" + bytes(MAX_RELAYED_DKG_BYTES)]],
        ["dr", [b"\x07" + bytes(80)]],  # not the relayed tag
        ["dr", [b"\x09" + bytes(66)]],  # no message after the proof
        ["dr", [1]],
        ["dr", entry],
        ["dr"],
    ):
        with pytest.raises(PeerProtocolError):
            decode_peer_message(bad)
    wire = msgpack.unpackb(msgpack.packb(["dr", [entry]]), raw=False)
    assert isinstance(decode_peer_message(wire), RelayedDkg)


async def test_a_members_own_garbage_is_refused_and_ignored_entries_are_not_proposed_forever(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A member may prove any bytes its own; the pool takes only a well-formed dealing or
    complaint of the run (an honest leader's proposal must stay within the replicas'
    bounds, or every proposal carrying it would be refused). An entry the run ignores (a
    second, late copy, say) leaves our proposals after MAX_PROPOSALS of them."""
    log = Log(_params())
    keying = log.observer
    network = RecordingNetwork()
    relay, _ = _relay(keying, network)
    run = keying.run
    assert run is not None
    garbage = relayed_entry(run.config, 2, SECRETS[1], b"\x01" + bytes(7000))
    relay.offer(1, RelayedDkg((garbage,)))
    [(peer, reason)] = network.penalized
    assert peer == 1 and reason.startswith("relayed DKG entry: "), reason
    assert relay.for_block(set()) == []
    three = _dealing_entry(keying, 3)
    await trio.sleep(1)
    relay.offer(2, RelayedDkg((three,)))
    proposals = [relay.for_block(set()) for _ in range(MAX_PROPOSALS + 2)]
    assert proposals == [[three]] * MAX_PROPOSALS + [[], []]
