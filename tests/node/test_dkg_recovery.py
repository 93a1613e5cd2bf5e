"""Share recovery (docs/PROTOCOL.md §10.10): a member restored by a snapshot taken after a
DKG run finished derives its share from the run's qualified dealings as a peer sends
them, judged against the replicated key record alone. Pure derivation, the peer
boundary's bounds and bytes, and the recovery room against a recording network."""

from __future__ import annotations

from typing import Any

import msgpack
import pytest
import trio
import trio.testing

from node.fairness.dkg import decode_dealing, make_dealing, member_key_from_settlement
from node.fairness.errors import FairnessError
from node.fairness.group import base_mul, encode_point
from node.fairness.keying import (
    RECOVERY_PEER_FAULTS,
    Keying,
    KeyingParams,
    KeyRecord,
    MemberKeying,
    recover_share,
)
from node.fairness.threshold import MAX_MEMBERS, KeyShare
from node.net import messages
from node.net.messages import (
    Dealings,
    DealingsRequest,
    PeerProtocolError,
    decode_peer_message,
)
from node.runtime.share_recovery import ShareRecovery, load_dealings, save_dealings
from node.store.storage import MemoryStorage
from tests.node.test_dkg_keying import PHASE, SECRETS, Log, _params, _protocol_vectors
from tests.node.test_encrypted_decryption import RecordingNetwork
from tests.node.test_encrypted_messages import DOC


def _finished(
    params: KeyingParams, bad: dict[int, set[int]] | None = None
) -> tuple[Log, KeyRecord, list[bytes]]:
    """A run to its key, and the qualified dealings at the block that made it."""
    log = Log(params, bad)
    log.run_round_robin(2 * PHASE)
    record = log.observer.current
    assert record is not None
    dealings = log.observer.finished_dealings(record)
    assert dealings is not None
    return log, record, [d.raw for d in dealings]


def _restored(log: Log, me: int) -> MemberKeying:
    """Member `me` over a keying state restored from a snapshot taken after the run: the
    record is there, the dealings are not."""
    keying = Keying.decode(log.params, log.observer.encode())
    member = MemberKeying(keying, me, SECRETS[me - 1])
    assert keying.current is not None and member.share_of(keying.current) is None
    return member


def _cheated_member_4(params: KeyingParams) -> tuple[Log, KeyRecord, list[bytes]]:
    """A run in which dealer 2 spoiled member 4's share while member 4 was away (it judged
    no dealing, so it never complained): dealer 2 stays qualified. The log, the key
    record and the qualified dealings."""
    log = Log(params, {2: {4}})
    for m in log.members:
        if m.me == 4:
            m._check_dealings = lambda run: None  # type: ignore[method-assign]
    log.run_round_robin(2 * PHASE)
    record = log.observer.current
    assert record is not None and 2 in record.qualified
    finished = log.observer.finished_dealings(record)
    assert finished is not None
    return log, record, [d.raw for d in finished]


def _refused(code: str, record: KeyRecord, dealings: list[bytes], me: int = 3) -> None:
    params = _params()
    with pytest.raises(FairnessError) as caught:
        recover_share(params, record, me, SECRETS[me - 1], dealings)
    assert caught.value.code == code, caught.value


def test_a_restored_member_recovers_the_share_it_would_have_derived() -> None:
    log, record, dealings = _finished(_params())
    for me in range(1, 5):
        member = _restored(log, me)
        share = member.recover_share(record, dealings)
        assert share == log.shares[0][me]
        assert encode_point(base_mul(share.secret)) == record.key.verification_shares[me - 1]


def test_forged_reordered_missing_and_malformed_dealings_are_refused() -> None:
    params = _params()
    _, record, dealings = _finished(params)
    config = params.config(record.epoch)
    # A well-formed dealing by dealer 2, but not the one the log qualified: the peer made
    # its own polynomial (it could open to any share it likes without the transcript).
    other = make_dealing(config, 2, b"\x99" * 32)
    _refused("forged", record, [dealings[0], other, *dealings[2:]])
    _refused("wrong_dealer", record, [dealings[1], dealings[0], *dealings[2:]])
    _refused("bad_count", record, dealings[:-1])
    _refused("bad_count", record, [*dealings, dealings[0]])
    _refused("bad_dealing", record, [dealings[0] + b"\x00", *dealings[1:]])  # oversize
    _refused("bad_dealing", record, [dealings[0][:-1], *dealings[1:]])
    # A dealing of another run (epoch 1's session).
    foreign = make_dealing(params.config(1), 1, b"\x01" * 32)
    _refused("bad_dealing", record, [foreign, *dealings[1:]])
    assert {"forged", "wrong_dealer", "bad_count", "bad_dealing"} <= RECOVERY_PEER_FAULTS


def test_a_changed_sealed_share_or_the_wrong_member_does_not_open() -> None:
    """The transcript covers the commitments, not the sealed shares: a changed sealed
    share fails to open (not provably the sender's fault: the dealer may have spoiled
    it while the member was away), and nobody opens another member's share."""
    params = _params()
    _, record, dealings = _finished(params)
    spoiled = bytearray(dealings[1])
    spoiled[-1] ^= 1  # member 4's sealed share from dealer 2
    with pytest.raises(FairnessError) as caught:
        recover_share(params, record, 4, SECRETS[3], [dealings[0], bytes(spoiled), *dealings[2:]])
    assert caught.value.code == "unopened" and "unopened" not in RECOVERY_PEER_FAULTS
    with pytest.raises(FairnessError) as caught:
        recover_share(params, record, 3, SECRETS[1], dealings)  # member 2's secret as 3
    assert caught.value.code == "unopened"


def test_a_member_a_qualified_dealer_cheated_cannot_recover() -> None:
    """A member away during the run never complained: a dealer that spoiled its share
    stays qualified, and the authentic dealings do not give it a share (share repair,
    PROTOCOL.md §10.11 and tests/node/test_dkg_repair.py, gives it one)."""
    params = _params()
    log, record, dealings = _cheated_member_4(params)
    with pytest.raises(FairnessError) as caught:
        recover_share(params, record, 4, SECRETS[3], dealings)
    assert caught.value.code == "unopened"
    assert recover_share(params, record, 1, SECRETS[0], dealings) == log.shares[0][1]


def test_dealings_messages_bounds_and_documented_bytes() -> None:
    # The bound is the largest committee's dealing.
    keys = tuple(encode_point(base_mul(k + 1)) for k in range(MAX_MEMBERS))
    largest = KeyingParams(1, keys, 10).config(0)
    assert messages.MAX_DEALINGS == MAX_MEMBERS
    assert largest.dealing_bytes == messages.MAX_DEALING_BYTES
    assert messages.MAX_DEALINGS * messages.MAX_DEALING_BYTES < 4 << 20  # one frame

    def wire(message: list[Any]) -> Any:
        return msgpack.unpackb(msgpack.packb(message, use_bin_type=True), raw=False)

    assert decode_peer_message(wire(["kq", 0])) == DealingsRequest(0)
    assert decode_peer_message(wire(["kd", 3, [b"x"]])) == Dealings(3, (b"x",))
    for bad in (
        ["kq", -1],
        ["kq", True],
        ["kq", 1 << 62],
        ["kq"],
        ["kd", 0, [b"x" * (messages.MAX_DEALING_BYTES + 1)]],
        ["kd", 0, [b"x"] * (messages.MAX_DEALINGS + 1)],
        ["kd", 0, ["text"]],
        ["kd", 0, b"x"],
        ["kd", 0, [b"x"], 1],
    ):
        with pytest.raises(PeerProtocolError):
            decode_peer_message(wire(bad))
    # §10.10's bytes: the §10.9 vectors' run, whose QUAL is {1, 2}.
    v = _protocol_vectors()
    entries = [bytes.fromhex(e[2:])[1:] for e in v["dealing_entries"][:2]]
    text = DOC.read_text()
    section = text[text.index("### 10.10") :]
    assert msgpack.packb(["kq", 0]) == bytes.fromhex("92a26b7100")
    assert "92 a2 6b 71 00" in section
    kd = msgpack.packb(["kd", 0, entries], use_bin_type=True)
    assert (
        kd
        == bytes.fromhex("93a26b640092c5014b") + entries[0] + bytes.fromhex("c5014b") + entries[1]
    )
    assert "93 a2 6b 64 00 92 c5 01 4b" in section
    # Member 3 recovers from them a share matching its verification key, as documented.
    secrets = [member_key_from_settlement(bytes.fromhex(s[2:])) for s in v["settlement_secrets"]]
    keys4 = tuple(encode_point(base_mul(s)) for s in secrets)
    params = KeyingParams(v["chain_id"], keys4, v["phase_blocks"])
    keying = Keying(params)
    for h, entry in enumerate(v["dealing_entries"], start=1):
        keying.apply_block(h, h - 1, [bytes.fromhex(entry[2:])])
    record = keying.current
    assert record is not None
    share = recover_share(params, record, 3, secrets[2], entries)
    assert f"x₃ = 0x{share.secret:064x}" in section
    assert decode_dealing(params.config(0), entries[0]).dealer == 1


def test_stored_dealings_keep_the_two_newest_epochs() -> None:
    storage = MemoryStorage()
    for epoch in (0, 1, 2):
        save_dealings(storage, epoch, [bytes([epoch])])
    assert load_dealings(storage, 0) is None
    assert load_dealings(storage, 1) == [b"\x01"] and load_dealings(storage, 2) == [b"\x02"]


async def test_the_room_skips_a_lying_and_a_silent_peer_then_recovers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    log, _, dealings = _finished(_params())
    member = _restored(log, 3)  # 0-based index 2
    network = RecordingNetwork()
    storage = MemoryStorage()
    recovered: list[tuple[int, KeyShare]] = []
    counters: dict[str, int] = {}
    room = ShareRecovery(
        me=2,
        members=4,
        network=network,  # type: ignore[arg-type]
        storage=storage,
        member_keying=lambda: member,
        has_share=lambda epoch: bool(recovered),
        on_recovered=lambda epoch, share: recovered.append((epoch, share)),
        counters=counters,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(room.run)
        await trio.sleep(0.5)
        assert network.sent == [(3, ["kq", 0])]  # at once, the next member after us first
        room.on_dealings(0, Dealings(0, tuple(dealings)))  # unasked: dropped unread
        forged = make_dealing(_params().config(0), 1, b"\x77" * 32)
        room.on_dealings(3, Dealings(0, (forged, *dealings[1:])))  # lies
        await trio.sleep(0.01)
        assert [p for p, _ in network.penalized] == [3]
        assert len(network.sent) == 1  # one request a second, whatever the answers
        await trio.sleep(0.5)
        assert network.sent[-1] == (0, ["kq", 0])  # the next one
        await trio.sleep(1.0)  # member 0 stays silent: skipped
        assert network.sent[-1] == (1, ["kq", 0])
        room.on_dealings(1, Dealings(0, tuple(dealings)))
        await trio.sleep(0.01)
        assert recovered == [(0, log.shares[0][3])]
        assert load_dealings(storage, 0) == dealings  # served to others from now on
        asked = len(network.sent)
        await trio.sleep(3)
        assert len(network.sent) == asked  # no more asking
        room.serve(2, 0)
        assert network.sent[-1] == (2, ["kd", 0, dealings])
        room.serve(2, 5)  # nothing kept: no answer
        assert len(network.sent) == asked + 1
        nursery.cancel_scope.cancel()
    assert counters["share_recovery_refused"] == 1
    assert counters["share_recovery_recovered"] == 1
    assert counters["share_recovery_requests"] == 3


async def test_after_dealings_that_do_not_open_the_room_asks_again_only_rarely(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A qualified dealer spoiled member 4's share while it was away: the authentic
    dealings do not open for it. Recovery hands over to share repair (`on_unopened`,
    once per answer) and asks for that epoch only every `unopened_retry_s` from then on,
    instead of once a second, each answer costing it the curve work again."""
    log, _, dealings = _cheated_member_4(_params())
    member = _restored(log, 4)  # 0-based index 3
    network = RecordingNetwork()
    unopened: list[int] = []
    counters: dict[str, int] = {}
    room = ShareRecovery(
        me=3,
        members=4,
        network=network,  # type: ignore[arg-type]
        storage=MemoryStorage(),
        member_keying=lambda: member,
        has_share=lambda epoch: False,
        on_recovered=lambda epoch, share: None,
        counters=counters,
        on_unopened=unopened.append,
        unopened_retry_s=30.0,
    )
    async with trio.open_nursery() as nursery:
        nursery.start_soon(room.run)
        await trio.sleep(0.5)
        assert network.sent == [(0, ["kq", 0])]
        room.on_dealings(0, Dealings(0, tuple(dealings)))  # authentic, but no share for us
        await trio.sleep(0.01)
        assert unopened == [0] and network.penalized == []
        await trio.sleep(29)
        assert len(network.sent) == 1  # repair is in charge: no request for 30 s
        await trio.sleep(2)
        assert network.sent[-1] == (1, ["kq", 0])  # then the next peer, once
        room.on_dealings(1, Dealings(0, tuple(dealings)))
        await trio.sleep(0.01)
        assert unopened == [0, 0]
        await trio.sleep(20)
        assert len(network.sent) == 2
        nursery.cancel_scope.cancel()
    assert counters["share_recovery_unopened"] == 2
    assert counters["share_recovery_requests"] == 2
