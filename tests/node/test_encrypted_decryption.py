"""The decryption-share exchange (node/runtime/decryption.py) alone, over a recording
network: peers' shares are checked off the dispatcher and lazily, a forged one is
refused and blamed on the peer that sent it, and a block released at commit sends our
shares before it reaches the head of execution."""

from __future__ import annotations

from typing import Any

import trio

from node.fairness.committee import FairnessGenesis
from node.fairness.group import base_mul
from node.fairness.threshold import DEV_CHAIN_ID, DecryptionShare, create_share, dealer_keygen
from node.net.messages import DecryptionShares
from node.runtime.decryption import Decryption

PUBLIC, SHARES = dealer_keygen(4, 2, b"\x05" * 32, chain_id=DEV_CHAIN_ID)
R1 = base_mul(21)


class RecordingNetwork:
    def __init__(self) -> None:
        self.sent: list[tuple[int | None, Any]] = []
        self.penalized: list[tuple[int, str]] = []

    def send(self, peer_id: int, message: Any) -> bool:
        self.sent.append((peer_id, message))
        return True

    def broadcast(self, message: Any) -> None:
        self.sent.append((None, message))

    def penalize(self, peer_id: int, reason: str) -> None:
        self.penalized.append((peer_id, reason))


def decryption(network: RecordingNetwork, member: int | None) -> Decryption:
    return Decryption(
        fairness=FairnessGenesis(0, PUBLIC),
        share=None if member is None else SHARES[member],
        network=network,  # type: ignore[arg-type]
        storage=None,  # type: ignore[arg-type]  # only "dq" answers read it
        executed_height=lambda: 0,
        counters={},
    )


def shares_message(height: int, share: DecryptionShare) -> DecryptionShares:
    return DecryptionShares(height, ((0, share.encode()),))


def forged(share: DecryptionShare) -> DecryptionShare:
    proof = share.proof[:-1] + bytes([share.proof[-1] ^ 1])
    return DecryptionShare(share.index, share.point, proof)


async def test_a_forged_share_is_refused_and_blamed_on_its_sender() -> None:
    network = RecordingNetwork()
    d = decryption(network, None)  # holds no key share: needs t = 2 from peers
    async with trio.open_nursery() as nursery:
        nursery.start_soon(d.run)
        # Peer 3 relays a forgery under member 4's index; peers 1 and 2 send good shares.
        # All arrive before the height is expected, and the dispatcher checks nothing.
        d.on_shares(3, shares_message(7, forged(create_share(SHARES[3], PUBLIC, R1))))
        d.on_shares(1, shares_message(7, create_share(SHARES[1], PUBLIC, R1)))
        d.on_shares(2, shares_message(7, create_share(SHARES[2], PUBLIC, R1)))
        assert d._counters["decryption_shares_checked"] == 0
        with trio.fail_after(30):  # a hang guard, not a timing threshold
            opened = await d.open(7, {0: R1})
        nursery.cancel_scope.cancel()
    assert sorted(s.index for s in opened[0]) == [2, 3]
    assert [peer for peer, _ in network.penalized] == [3]
    assert d._counters["decryption_shares_invalid"] == 1
    # Lazy: two checked for the two shares needed, one more because one failed.
    assert d._counters["decryption_shares_checked"] == 3


async def test_no_more_shares_are_checked_than_are_needed() -> None:
    network = RecordingNetwork()
    d = decryption(network, 0)  # our own share counts unchecked: one more needed
    async with trio.open_nursery() as nursery:
        nursery.start_soon(d.run)
        for member in (1, 2, 3):
            d.on_shares(member, shares_message(4, create_share(SHARES[member], PUBLIC, R1)))
        with trio.fail_after(30):
            opened = await d.open(4, {0: R1})
        nursery.cancel_scope.cancel()
    assert len(opened[0]) == 2 and 1 in {s.index for s in opened[0]}
    assert d._counters["decryption_shares_checked"] == 1
    assert network.penalized == []


async def test_a_released_block_sends_our_shares_before_the_head() -> None:
    network = RecordingNetwork()
    d = decryption(network, 0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(d.run)
        d.release(9, {0: R1})
        with trio.fail_after(30):
            while not network.sent:
                await trio.sleep(0.01)
        ((peer, message),) = network.sent
        assert peer is None and message[:2] == ["ds", 9]
        ((entry, raw),) = message[2]
        assert entry == 0 and DecryptionShare.decode(raw) == create_share(SHARES[0], PUBLIC, R1)
        # A peer's share completes it; the head then finds it ready and sends nothing more.
        d.on_shares(2, shares_message(9, create_share(SHARES[2], PUBLIC, R1)))
        with trio.fail_after(30):
            opened = await d.open(9, {0: R1})
        nursery.cancel_scope.cancel()
    assert sorted(s.index for s in opened[0]) == [1, 3]
    assert len(network.sent) == 1


async def test_shares_set_aside_for_our_own_do_not_stall_the_checker() -> None:
    """Two peers' shares for an envelope while our own is still being made: one is
    checked, the other waits (ours will make t = 2); the block opens either way."""
    network = RecordingNetwork()
    d = decryption(network, 0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(d.run)
        d.release(6, {0: R1})
        d.on_shares(1, shares_message(6, create_share(SHARES[1], PUBLIC, R1)))
        d.on_shares(2, shares_message(6, create_share(SHARES[2], PUBLIC, R1)))
        with trio.fail_after(30):
            opened = await d.open(6, {0: R1})
        nursery.cancel_scope.cancel()
    assert len(opened[0]) == 2 and 1 in {s.index for s in opened[0]}
    assert d._counters["decryption_shares_checked"] == 1
