"""A re-key's grace (docs/PROTOCOL.md §10.9): for G committed blocks after a new key is
current, envelopes sealed to the key it replaced still open. Pure keying decisions (by
committed heights only, the same on every replica and after a snapshot) and the share
exchange opening one block with envelopes of both keys."""

from __future__ import annotations

import msgpack
import pytest
import trio

from node.fairness.committee import FairnessGenesis
from node.fairness.errors import FairnessError
from node.fairness.group import base_mul
from node.fairness.keying import Keying, KeyingParams
from node.fairness.threshold import DEV_CHAIN_ID, combine, create_share, dealer_keygen
from node.net.messages import DecryptionShares
from node.runtime.decryption import Decryption
from tests.node.test_dkg_keying import PHASE, Log, _params
from tests.node.test_encrypted_decryption import RecordingNetwork

INTERVAL = 3 * PHASE


def _rekeyed(grace: int | None) -> tuple[Log, KeyingParams]:
    base = _params(rekey=INTERVAL)
    params = KeyingParams(base.chain_id, base.member_keys, PHASE, INTERVAL, grace)
    log = Log(params)
    log.run_round_robin(INTERVAL + 2 * PHASE)  # epoch 1's key ready at this height
    return log, params


def test_the_previous_key_opens_for_grace_blocks_after_the_new_one() -> None:
    grace = 3
    log, _ = _rekeyed(grace)
    keying = log.observer
    first, second = keying.previous, keying.current
    assert first is not None and second is not None
    assert (first.epoch, second.epoch) == (0, 1) and second.height == keying.height
    for _ in range(grace):  # blocks H+1 … H+G: both keys
        assert keying.opening_keys() == {0: first.key, 1: second.key}
        assert all(m.keying.opening_keys() == keying.opening_keys() for m in log.members)
        # GET /v1/fairness/key says so: the old epoch and the last height it opens in.
        published = keying.public_json()
        assert (published["grace_epoch"], published["grace_until_height"]) == (
            0,
            second.height + grace,
        )
        log.run_round_robin(1)
    assert keying.opening_keys() == {1: second.key}  # block H+G+1: only the new key
    published = keying.public_json()
    assert (published["grace_epoch"], published["grace_until_height"]) == (None, None)
    # Before any re-key, only the current key; before any key, none.
    fresh = Keying(_params())
    assert fresh.opening_keys() == {}


def test_the_default_grace_is_one_phase_and_zero_turns_it_off() -> None:
    log, params = _rekeyed(None)
    assert params.grace == PHASE
    assert len(log.observer.opening_keys()) == 2
    log, params = _rekeyed(0)
    assert params.grace == 0 and len(log.observer.opening_keys()) == 1
    with pytest.raises(FairnessError):
        KeyingParams(1, params.member_keys, PHASE, 0, -1)


def test_a_snapshot_in_the_grace_carries_the_previous_key() -> None:
    log, params = _rekeyed(5)
    keying = log.observer
    log.run_round_robin(2)
    restored = Keying.decode(params, keying.encode())
    assert restored.previous == keying.previous and restored.current == keying.current
    assert restored.opening_keys() == keying.opening_keys()
    # A format-1 state (before the previous key was kept) still reads, with none.
    _, height, current, run, _previous = msgpack.unpackb(keying.encode(), raw=False)
    old = msgpack.packb([1, height, current, run], use_bin_type=True)
    assert Keying.decode(params, old).previous is None
    with pytest.raises(ValueError):
        Keying.decode(params, msgpack.packb([2, height, current, run], use_bin_type=True))


async def test_one_block_opens_envelopes_sealed_to_both_keys() -> None:
    """Entry 0 sealed to the previous key (epoch 0), entry 1 to the current one (epoch
    1): our shares of each key go out in one message, a peer's shares are checked
    against the right key, and each envelope combines under its own key."""
    old_public, old_shares = dealer_keygen(4, 2, b"\x05" * 32, chain_id=DEV_CHAIN_ID)
    new_public, new_shares = dealer_keygen(4, 2, b"\x06" * 32, chain_id=DEV_CHAIN_ID)
    network = RecordingNetwork()
    room = Decryption(
        fairness=FairnessGenesis(1, new_public),
        share=new_shares[0],
        network=network,  # type: ignore[arg-type]
        storage=None,  # type: ignore[arg-type]
        executed_height=lambda: 0,
        counters={},
    )
    room.add_key(0, old_public, old_shares[0])
    r_old, r_new = base_mul(21), base_mul(22)
    peer_old = create_share(old_shares[2], old_public, r_old)
    peer_new = create_share(new_shares[2], new_public, r_new)
    # A share made with the wrong key for its entry fails its proof: blamed.
    wrong = create_share(new_shares[1], new_public, r_old)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(room.run)
        room.on_shares(2, DecryptionShares(5, ((0, wrong.encode()),)))
        room.on_shares(3, DecryptionShares(5, ((0, peer_old.encode()), (1, peer_new.encode()))))
        with trio.fail_after(30):  # a hang guard, not a timing threshold
            opened = await room.open(5, {0: r_old, 1: r_new}, {0: 0, 1: 1})
        nursery.cancel_scope.cancel()
    ((peer, message),) = network.sent
    assert peer is None and message[:2] == ["ds", 5] and [e for e, _ in message[2]] == [0, 1]
    assert (
        combine(old_public, r_old, opened[0]).key
        == combine(
            old_public, r_old, [create_share(s, old_public, r_old) for s in old_shares[:2]]
        ).key
    )
    assert (
        combine(new_public, r_new, opened[1]).key
        == combine(
            new_public, r_new, [create_share(s, new_public, r_new) for s in new_shares[:2]]
        ).key
    )
    assert [p for p, _ in network.penalized] == [2]
