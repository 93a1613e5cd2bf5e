"""Share repair (docs/PROTOCOL.md §10.11): t helpers give a member the share a qualified
dealer spoiled, without anyone learning another member's share. The pure
protocol (node/fairness/repair.py) against the DKG run in-process, each kind of lying
helper blamed on the right member, the peer boundary's bounds and §10.11's bytes, and
four repair rooms (node/runtime/share_repair.py) over an in-memory bus that carries
every message through the real decoder."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from node.fairness.dkg import open_own_share
from node.fairness.errors import FairnessError
from node.fairness.group import N, base_mul, encode_point, scalar_bytes
from node.fairness.keying import KeyRecord, MemberKeying, recover_share
from node.fairness.repair import (
    MAX_HELPERS,
    Deal,
    Fault,
    HelperRound,
    Repaired,
    RepairSession,
    RequesterRound,
    deal,
)
from node.fairness.threshold import MAX_MEMBERS, KeyShare, lagrange_at, poly_eval
from node.net import messages
from node.net.messages import (
    PeerProtocolError,
    RepairFault,
    RepairPiece,
    RepairRequest,
    RepairSum,
    decode_peer_message,
)
from node.runtime.share_recovery import prune_shares
from node.runtime.share_repair import PROVEN, ShareRepair
from tests.node.test_dkg_keying import PHASE, SECRETS, Log, _params
from tests.node.test_encrypted_messages import DOC

IDENTITIES = [SigningKey(bytes([0x20 + i]) * 32) for i in range(1, 8)]
IDENTITY_KEYS = tuple(bytes(k.verify_key) for k in IDENTITIES)
SID = b"\x11" * 16
VICTIM = 4
BAD_DEALER = 2


def _sign(member: int) -> Callable[[bytes], bytes]:
    return lambda message: bytes(IDENTITIES[member - 1].sign(message).signature)


def _cheated(n: int = 4) -> tuple[Log, KeyRecord, int]:
    """A run to its key in which dealer 2 spoiled member 4's sealed share while member 4
    was away (it judged no dealing, so it never complained): dealer 2 stays qualified
    and member 4 gets no share. Also returns member 4's true share, computed from the
    dealings' polynomials (the bad dealer's is known to the test)."""
    log = Log(_params(n), {BAD_DEALER: {VICTIM}})
    away = log.members[VICTIM - 1]
    away._check_dealings = lambda run: None  # type: ignore[method-assign]
    log.run_round_robin(2 * PHASE)
    record = log.observer.current
    assert record is not None and BAD_DEALER in record.qualified
    assert log.shares[0][VICTIM] is None
    finished = log.observer.finished_dealings(record)
    assert finished is not None
    config = log.params.config(record.epoch)
    true = 0
    for dealing in finished:
        if dealing.dealer == BAD_DEALER:
            t = config.threshold
            true += poly_eval([1000 + BAD_DEALER * 10 + k for k in range(t)], VICTIM)
        else:
            own = open_own_share(config, dealing, VICTIM, SECRETS[VICTIM - 1])
            assert own is not None
            true += own
    true %= N
    assert encode_point(base_mul(true)) == record.key.verification_shares[VICTIM - 1]
    with pytest.raises(FairnessError) as caught:  # what §10.10 says: recovery cannot help
        recover_share(log.params, record, VICTIM, SECRETS[VICTIM - 1], [d.raw for d in finished])
    assert caught.value.code == "unopened"
    return log, record, true


_CACHE: dict[int, tuple[Log, KeyRecord, int]] = {}


def cheated(n: int = 4) -> tuple[Log, KeyRecord, int]:
    if n not in _CACHE:
        _CACHE[n] = _cheated(n)
    return _CACHE[n]


def _share(log: Log, member: int) -> KeyShare:
    share = log.shares[0][member]
    assert isinstance(share, KeyShare)
    return share


def _session(log: Log, record: KeyRecord, helpers: tuple[int, ...]) -> RepairSession:
    config = log.params.config(record.epoch)
    return RepairSession(config.session, record.epoch, VICTIM, SID, helpers)


def _randoms(count: int, seed: int = 1) -> list[int]:
    return [(seed * 7919 + k * 104729) % (N - 1) + 1 for k in range(count)]


def _deals(log: Log, session: RepairSession, seed: int = 1) -> dict[int, Deal]:
    t = len(session.helpers)
    return {
        h: deal(session, _share(log, h), _randoms(t - 1, seed + h), _sign(h))
        for h in session.helpers
    }


def _run(
    log: Log, record: KeyRecord, session: RepairSession, deals: dict[int, Deal]
) -> tuple[RequesterRound, dict[int, tuple[bytes, list[list[object]]]]]:
    """Every helper gets every piece; returns the requester and each helper's answer."""
    keys = record.key.verification_shares
    answers = {}
    for k in session.helpers:
        room = HelperRound(session, k, deals[k], keys, IDENTITY_KEYS)
        for j in session.helpers:
            if j != k:
                d = deals[j]
                piece = scalar_bytes(d.pieces[session.position(k)])
                assert room.receive(j, d.commitments, d.signature, piece) is None
        assert room.complete()
        answers[k] = room.answer()
    return RequesterRound(session, keys, IDENTITY_KEYS), answers


def _as_forwarded(vectors: list[list[object]]) -> list[tuple[list[bytes], bytes]]:
    return [(list(c), s) for c, s in vectors]  # type: ignore[misc, call-overload]


# -- the protocol, pure ------------------------------------------------------------------


def test_every_helper_set_repairs_the_true_share() -> None:
    log, record, true = cheated()
    t = log.params.threshold
    others = [m for m in range(1, 5) if m != VICTIM]
    for helpers in itertools.permutations(others, t):
        session = _session(log, record, helpers)
        requester, answers = _run(log, record, session, _deals(log, session))
        outcomes = [
            requester.receive(k, sigma, _as_forwarded(vectors))
            for k, (sigma, vectors) in answers.items()
        ]
        assert outcomes[:-1] == [None] * (t - 1)
        assert outcomes[-1] == Repaired(KeyShare(VICTIM, true)), helpers


def test_a_seven_member_committee_repairs_with_three_helpers() -> None:
    log, record, true = cheated(7)
    assert log.params.threshold == 3
    session = _session(log, record, (7, 1, 5))  # any order: λ's follow the set
    requester, answers = _run(log, record, session, _deals(log, session))
    last = None
    for k, (sigma, vectors) in answers.items():
        last = requester.receive(k, sigma, _as_forwarded(vectors))
    assert last == Repaired(KeyShare(VICTIM, true))


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(1, N - 1), min_size=2, max_size=2), st.sampled_from([(1, 2), (3, 1)]))
def test_the_share_does_not_depend_on_the_pieces(
    pieces: list[int], helpers: tuple[int, ...]
) -> None:
    log, record, true = cheated()
    session = _session(log, record, helpers)
    deals = {h: deal(session, _share(log, h), [pieces[i]], _sign(h)) for i, h in enumerate(helpers)}
    requester, answers = _run(log, record, session, deals)
    outcome = None
    for k, (sigma, vectors) in answers.items():
        outcome = requester.receive(k, sigma, _as_forwarded(vectors))
    assert outcome == Repaired(KeyShare(VICTIM, true))


def test_lagrange_at_a_point_interpolates() -> None:
    coefficients = [5, 7, 11]
    for x in (4, 9):
        lam = lagrange_at((1, 2, 3), x)
        total = sum(lam[j] * poly_eval(coefficients, j) for j in (1, 2, 3)) % N
        assert total == poly_eval(coefficients, x)


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(1, N - 1), st.integers(1, N - 1))
def test_a_single_helpers_view_is_consistent_with_any_share(other: int, r: int) -> None:
    """Helper k sees from helper j one piece δⱼ,ₖ and points. For any other value x' of
    j's share there are pieces that give k exactly the same piece: what k sees does not
    depend on xⱼ. And no message carries λⱼ·xⱼ, xⱼ or xᵢ."""
    log, record, true = cheated()
    session = _session(log, record, (1, 2))
    real = deal(session, _share(log, 1), [r], _sign(1))
    # Helper 2 gets piece position 1 (the remainder); choose x' and a random r' so that
    # the remainder is the same: r' = λ·x' − (λ·x₁ − r).
    lam = session.lagrange(1)
    r_other = (lam * other - real.pieces[1]) % N
    if r_other == 0:
        return
    fake = deal(session, KeyShare(1, other), [r_other], _sign(1))
    assert fake.pieces[1] == real.pieces[1]  # the same piece for helper 2, another x₁
    deals = _deals(log, session)
    _, answers = _run(log, record, session, deals)
    secrets_ = {
        _share(log, 1).secret,
        _share(log, 2).secret,
        true,
        lam * _share(log, 1).secret % N,
        session.lagrange(2) * _share(log, 2).secret % N,
    }
    for d in deals.values():
        assert not secrets_ & set(d.pieces)
    for sigma, vectors in answers.values():
        assert int.from_bytes(sigma, "big") not in secrets_
        wire = msgpack.packb(["ks", 0, SID, sigma, vectors], use_bin_type=True)
        assert all(scalar_bytes(s) not in wire for s in secrets_)


def _two_helpers() -> tuple[Log, KeyRecord, RepairSession, dict[int, Deal]]:
    log, record, _ = cheated()
    session = _session(log, record, (1, 2))
    return log, record, session, _deals(log, session)


def test_a_helper_refuses_bad_pieces_and_blames_their_sender() -> None:
    log, record, session, deals = _two_helpers()
    keys = record.key.verification_shares
    d1 = deals[1]

    def helper2() -> HelperRound:
        return HelperRound(session, 2, deals[2], keys, IDENTITY_KEYS)

    piece = scalar_bytes(d1.pieces[1])
    wrong = scalar_bytes((d1.pieces[1] + 1) % N)
    assert helper2().receive(1, d1.commitments, d1.signature, wrong) == Fault(
        1, "bad_piece", "the piece does not match its commitment"
    )
    fault = helper2().receive(1, d1.commitments, d1.signature, b"\xff" * 32)
    assert fault is not None and (fault.member, fault.code) == (1, "bad_piece")
    # Commitments helper 1 signed but that do not sum to λ₁·X₁: its own fault.
    liar = deal(session, KeyShare(1, (_share(log, 1).secret + 1) % N), [5], _sign(1))
    fault = helper2().receive(1, liar.commitments, liar.signature, scalar_bytes(liar.pieces[1]))
    assert fault is not None and (fault.member, fault.code) == (1, "bad_commitments")
    # Not signed by helper 1: forged (by the one who sent them, here helper 1 itself).
    fault = helper2().receive(1, d1.commitments, deals[2].signature, piece)
    assert fault is not None and (fault.member, fault.code) == (1, "bad_signature")
    fault = helper2().receive(3, d1.commitments, d1.signature, piece)  # not a helper
    assert fault is not None and (fault.member, fault.code) == (3, "unasked")
    room = helper2()
    assert room.receive(1, d1.commitments, d1.signature, piece) is None
    fault = room.receive(1, d1.commitments, d1.signature, piece)
    assert fault is not None and fault.code == "duplicate"


def test_the_requester_refuses_bad_sums_and_vectors_and_blames_the_right_member() -> None:
    log, record, session, deals = _two_helpers()
    keys = record.key.verification_shares
    _, answers = _run(log, record, session, deals)
    sigma1, vectors1 = answers[1]
    sigma2, _ = answers[2]

    def fresh() -> RequesterRound:
        return RequesterRound(session, keys, IDENTITY_KEYS)

    def code(
        sender: int, sigma: bytes, vectors: list[tuple[list[bytes], bytes]]
    ) -> tuple[int | None, str]:
        outcome = fresh().receive(sender, sigma, vectors)
        assert isinstance(outcome, Fault), outcome
        return outcome.member, outcome.code

    good1 = _as_forwarded(vectors1)
    bad_sigma = scalar_bytes((int.from_bytes(sigma1, "big") + 1) % N)
    assert code(1, bad_sigma, good1) == (1, "bad_sum")
    assert code(1, b"\xff" * 32, good1) == (1, "bad_sum")
    assert code(1, sigma1, good1[:1]) == (1, "bad_count")
    assert code(3, sigma1, good1) == (3, "unasked")
    # Helper 1 forwards helper 2's vector with a signature helper 2 never made: forged.
    forged = [good1[0], (good1[1][0], good1[0][1])]
    assert code(1, sigma1, forged) == (1, "bad_signature")
    # Helper 2 signed commitments that do not sum to λ₂·X₂: proven, helper 2's fault,
    # whoever passed them on.
    liar = deal(session, KeyShare(2, 12345), [6], _sign(2))
    assert code(1, sigma1, [good1[0], (list(liar.commitments), liar.signature)]) == (
        2,
        "bad_commitments",
    )
    signed_short = session.statement(2, liar.commitments[:1])
    short = (list(liar.commitments[:1]), _sign(2)(signed_short))
    assert code(1, sigma1, [good1[0], short]) == (2, "bad_count")
    # Helper 2 signed two different vectors (one to each helper): equivocation, proven.
    other = deal(session, _share(log, 2), [77], _sign(2))
    requester = fresh()
    assert requester.receive(1, sigma1, good1) is None
    outcome = requester.receive(2, sigma2, [good1[0], (list(other.commitments), other.signature)])
    assert isinstance(outcome, Fault) and (outcome.member, outcome.code) == (2, "equivocation")
    requester = fresh()
    assert requester.receive(1, sigma1, good1) is None
    outcome = requester.receive(1, sigma1, good1)
    assert isinstance(outcome, Fault) and outcome.code == "duplicate"


def test_a_session_names_t_distinct_other_members() -> None:
    log, record, _ = cheated()
    for helpers in ((1,), (1, 1), (1, 4), (1, 5), (1, 2, 3), (0, 1)):
        with pytest.raises(FairnessError) as caught:
            _session(log, record, helpers).check(4, 2)
        assert caught.value.code == "bad_helpers"
    _session(log, record, (3, 1)).check(4, 2)


# -- the peer boundary ---------------------------------------------------------------------


def wire(message: list[Any]) -> Any:
    return msgpack.unpackb(msgpack.packb(message, use_bin_type=True), raw=False)


P = b"\x02" * 33


def test_repair_messages_bounds() -> None:
    assert messages.MAX_REPAIR_HELPERS == MAX_HELPERS == (MAX_MEMBERS - 1) // 3 + 1
    assert messages.MAX_MEMBER == MAX_MEMBERS
    t = MAX_HELPERS
    largest = ["ks", 0, SID, b"\x01" * 32, [[[P] * t, b"s" * 64]] * t]
    assert len(msgpack.packb(largest, use_bin_type=True)) < 4 << 20  # one frame
    assert decode_peer_message(wire(["kr", 0, SID, [1, 2]])) == RepairRequest(0, SID, (1, 2))
    kp = ["kp", 1, 4, SID, [P, P], b"s" * 64, b"d" * 32]
    assert decode_peer_message(wire(kp)) == RepairPiece(1, 4, SID, (P, P), b"s" * 64, b"d" * 32)
    ks = ["ks", 1, SID, b"d" * 32, [[[P, P], b"s" * 64]]]
    assert decode_peer_message(wire(ks)) == RepairSum(1, SID, b"d" * 32, (((P, P), b"s" * 64),))
    assert decode_peer_message(wire(["kf", 0, SID, 3])) == RepairFault(0, SID, 3)
    for bad in (
        ["kr", -1, SID, [1]],
        ["kr", 0, SID[:-1], [1]],
        ["kr", 0, SID, []],
        ["kr", 0, SID, [1, 1]],
        ["kr", 0, SID, [0]],
        ["kr", 0, SID, [129]],
        ["kr", 0, SID, [True]],
        ["kr", 0, SID, list(range(1, t + 2))],
        ["kr", 0, SID],
        ["kp", 0, 0, SID, [P], b"s" * 64, b"d" * 32],
        ["kp", 0, 4, SID, [P + b"\x00"], b"s" * 64, b"d" * 32],
        ["kp", 0, 4, SID, [P] * (t + 1), b"s" * 64, b"d" * 32],
        ["kp", 0, 4, SID, [], b"s" * 64, b"d" * 32],
        ["kp", 0, 4, SID, [P], b"s" * 63, b"d" * 32],
        ["kp", 0, 4, SID, [P], b"s" * 64, b"d" * 33],
        ["kp", 1 << 62, 4, SID, [P], b"s" * 64, b"d" * 32],
        ["ks", 0, SID, b"d" * 31, [[[P], b"s" * 64]]],
        ["ks", 0, SID, b"d" * 32, [[[P], b"s" * 64, 1]]],
        ["ks", 0, SID, b"d" * 32, [[[P], b"s" * 64]] * (t + 1)],
        ["ks", 0, SID, b"d" * 32, []],
        ["ks", 0, SID, b"d" * 32, [[["x"], b"s" * 64]]],
        ["kf", 0, SID, 0],
        ["kf", 0, SID, 3, 4],
    ):
        with pytest.raises(PeerProtocolError):
            decode_peer_message(wire(bad))


def test_documented_bytes() -> None:
    """§10.11's example: member 4 of §10.9's committee asks helpers 1 and 2; the pieces
    and signatures are fixed so the bytes are too."""
    text = DOC.read_text()
    section = text[text.index("### 10.11") :]
    kr = msgpack.packb(["kr", 0, SID, [1, 2]], use_bin_type=True)
    assert kr.hex() == "94a26b7200c410" + SID.hex() + "920102"
    assert (
        "94 a2 6b 72 00 c4 10 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 92 01 02" in section
    )
    d = b"\x44" * 32
    kp = msgpack.packb(["kp", 0, 4, SID, [P, P], b"s" * 64, d], use_bin_type=True)
    head = bytes.fromhex("97a26b70000" + "4c410") + SID + bytes.fromhex("92c421")
    assert kp.startswith(head) and len(kp) == 6 + 18 + 1 + 2 * 35 + 66 + 34
    assert (
        "97 a2 6b 70 00 04 c4 10 ‖ sid ‖ 92 c4 21 ‖ D₁ ‖ c4 21 ‖ D₂ ‖ c4 40 ‖ signature ‖ c4 20 ‖ δ"
        in section
    )
    assert f"{len(kp)} bytes" in section
    ks = msgpack.packb(["ks", 0, SID, d, [[[P, P], b"s" * 64]] * 2], use_bin_type=True)
    assert ks.startswith(bytes.fromhex("95a26b7300c410") + SID + bytes.fromhex("c420"))
    assert f"{len(ks)} bytes" in section
    kf = msgpack.packb(["kf", 0, SID, 1], use_bin_type=True)
    assert kf.hex() == "94a26b6600c410" + SID.hex() + "01"
    assert "94 a2 6b 66 00 c4 10 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 01" in section


# -- the room, over an in-memory bus -------------------------------------------------------

Tamper = Callable[[int, list[Any]], list[Any] | None]


class Bus:
    """Four members' repair rooms; every message goes through msgpack and the real
    decoder (a malformed one is its sender's fault, as in the node's dispatcher)."""

    def __init__(self, n: int) -> None:
        self.n = n
        self.rooms: dict[int, ShareRepair] = {}
        self.queue: list[tuple[int, int, list[Any]]] = []
        self.penalized: list[tuple[int, int, str]] = []  # (by, whom, reason)
        self.tamper: dict[int, Tamper] = {}  # sender -> (receiver, message) -> message
        self.wakeup = trio.Event()

    def network(self, me: int) -> Any:
        bus = self

        class Net:
            def send(self, peer: int, message: list[Any]) -> bool:
                bus.queue.append((me, peer, message))
                bus.wakeup.set()
                return True

            def broadcast(self, message: Any) -> None:
                raise AssertionError("repair never broadcasts")

            def connected_peers(self) -> frozenset[int]:
                return frozenset(range(bus.n)) - {me}

            def penalize(self, peer: int, reason: str) -> None:
                bus.penalized.append((me, peer, reason))

        return Net()

    async def deliver(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup = trio.Event()
            while self.queue:
                sender, receiver, message = self.queue.pop(0)
                tamper = self.tamper.get(sender)
                if tamper is not None:
                    changed = tamper(receiver, message)
                    if changed is None:
                        continue
                    message = changed
                room = self.rooms[receiver]
                try:
                    decoded = decode_peer_message(wire(message))
                except PeerProtocolError as error:
                    self.penalized.append((receiver, sender, str(error)))
                    continue
                if isinstance(decoded, RepairRequest):
                    room.on_request(sender, decoded)
                elif isinstance(decoded, RepairPiece):
                    room.on_piece(sender, decoded)
                elif isinstance(decoded, RepairSum):
                    room.on_sum(sender, decoded)
                else:
                    assert isinstance(decoded, RepairFault)
                    room.on_fault(sender, decoded)


def _rooms(
    log: Log,
    bus: Bus,
    repaired: list[tuple[int, KeyShare]],
    counters: dict[str, int],
    wrong_shares: dict[int, KeyShare],
) -> None:
    for i in range(bus.n):
        member: MemberKeying = log.members[i]
        victim = i == VICTIM - 1
        share = None if victim else wrong_shares.get(i + 1, _share(log, i + 1))
        bus.rooms[i] = ShareRepair(
            me=i,
            members=bus.n,
            network=bus.network(i),
            member_keying=lambda member=member: member,  # type: ignore[misc]
            has_share=(lambda epoch: bool(repaired)) if victim else (lambda epoch: True),
            load_share=lambda record, share=share: share,  # type: ignore[misc]
            on_repaired=lambda epoch, s: repaired.append((epoch, s)),
            identity_keys=IDENTITY_KEYS[: bus.n],
            sign=_sign(i + 1),
            counters=counters if victim else {},
        )


async def _repair(
    tamper: dict[int, Tamper] | None = None,
    n: int = 4,
    wrong_shares: dict[int, KeyShare] | None = None,
) -> tuple[Bus, list[tuple[int, KeyShare]], dict[str, int], int]:
    log, _, true = cheated(n)
    bus = Bus(n)
    bus.tamper = tamper or {}
    repaired: list[tuple[int, KeyShare]] = []
    counters: dict[str, int] = {}
    _rooms(log, bus, repaired, counters, wrong_shares or {})
    victim = bus.rooms[VICTIM - 1]
    assert victim.wanted() is None  # recovery has not failed yet: nothing to repair
    victim.dealings_unopened(0)
    assert victim.wanted() is not None
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(bus.deliver)
            for room in bus.rooms.values():
                nursery.start_soon(room.run)
            while not repaired:
                await trio.sleep(0.1)
            await trio.sleep(10)  # helpers drop their sessions
            nursery.cancel_scope.cancel()
    assert repaired == [(0, KeyShare(VICTIM, true))]
    for room in bus.rooms.values():
        assert not room._helping and not room._early  # no piece is kept after a round
    return bus, repaired, counters, true


async def test_the_room_repairs_with_the_first_helpers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus, _, counters, _ = await _repair()
    assert bus.penalized == []
    assert counters["share_repair_sessions"] == 1
    assert counters["share_repair_repaired"] == 1


def _from_helper_1(kind: str, change: Callable[[list[Any]], list[Any] | None]) -> dict[int, Tamper]:
    """Member 1 (0-based 0), the first helper after member 4, lies in its `kind`
    messages, in every session."""
    return {0: lambda receiver, m: change(list(m)) if m[0] == kind else m}


def _blamed(bus: Bus, whom: int, reason: str) -> None:
    assert any(p == whom and reason in r for _, p, r in bus.penalized), bus.penalized
    assert all(p == whom for _, p, _ in bus.penalized), bus.penalized


def _bump(raw: bytes) -> bytes:
    return scalar_bytes((int.from_bytes(raw, "big") + 1) % N)


async def test_a_bad_piece_is_blamed_and_another_helper_set_finishes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus, _, counters, _ = await _repair(_from_helper_1("kp", lambda m: [*m[:6], _bump(m[6])]))
    _blamed(bus, 0, "bad_piece")
    assert counters["share_repair_sessions"] >= 2


async def test_a_bad_sum_is_blamed_and_another_helper_set_finishes(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus, _, counters, _ = await _repair(_from_helper_1("ks", lambda m: [*m[:3], _bump(m[3]), m[4]]))
    _blamed(bus, 0, "bad_sum")
    assert counters["share_repair_sessions"] == 2  # proven: never asked again
    assert bus.rooms[VICTIM - 1]._suspicion[0] >= PROVEN


async def test_bad_commitments_are_blamed_on_their_signer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Helper 1 splits a share that is not its own: its signed commitments do not sum to
    λ₁·X₁, and the helper that gets its piece refuses them, blaming helper 1."""
    log, _, _ = cheated()
    wrong = KeyShare(1, (_share(log, 1).secret + 1) % N)
    bus, _, counters, _ = await _repair(wrong_shares={1: wrong})
    _blamed(bus, 0, "bad_commitments")
    assert counters["share_repair_sessions"] >= 2


async def test_a_wrong_count_is_blamed(autojump_clock: trio.testing.MockClock) -> None:
    bus, _, _, _ = await _repair(_from_helper_1("ks", lambda m: [*m[:4], m[4][:1]]))
    _blamed(bus, 0, "bad_count")


async def test_a_wrong_epoch_is_blamed(autojump_clock: trio.testing.MockClock) -> None:
    bus, _, _, _ = await _repair(_from_helper_1("ks", lambda m: [m[0], 5, *m[2:]]))
    _blamed(bus, 0, "wrong_epoch")


async def test_an_unasked_answer_is_blamed(autojump_clock: trio.testing.MockClock) -> None:
    bus, _, _, _ = await _repair(_from_helper_1("ks", lambda m: [m[0], m[1], b"\x99" * 16, *m[3:]]))
    _blamed(bus, 0, "unasked")


async def test_an_oversize_answer_is_blamed(autojump_clock: trio.testing.MockClock) -> None:
    bus, _, _, _ = await _repair(_from_helper_1("ks", lambda m: [*m[:3], m[3] + b"\x00", m[4]]))
    _blamed(bus, 0, "repair sum")


async def test_a_silent_helper_is_skipped(autojump_clock: trio.testing.MockClock) -> None:
    bus, _, counters, _ = await _repair({0: lambda receiver, m: None})
    assert bus.penalized == []  # silence is no proof
    assert counters["share_repair_sessions"] <= 3  # the silent one and, once, a peer it starved


def test_old_share_files_are_pruned(tmp_path: Path) -> None:
    directory = tmp_path / "fairness"
    directory.mkdir()
    for epoch in (0, 1, 3, 4):
        (directory / f"epoch-{epoch}.key").write_text("x")
    (directory / "notes.txt").write_text("kept")
    assert prune_shares(directory, 3) == [0, 1]
    assert sorted(p.name for p in directory.iterdir()) == [
        "epoch-3.key",
        "epoch-4.key",
        "notes.txt",
    ]
    assert prune_shares(directory, 3) == []
    assert prune_shares(tmp_path / "absent", 3) == []


async def test_late_answers_are_dropped_and_bad_requests_refused(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A helper may answer a session up to 5 s after the requester gave up on it: no
    fault. An answer to a session never started is. A helper refuses a request whose
    helpers are not t distinct other members, answers nothing for another epoch or
    without its own share, and starts one session per requester per 0.5 s."""
    log, _, _ = cheated()
    bus = Bus(4)
    repaired: list[tuple[int, KeyShare]] = []
    _rooms(log, bus, repaired, {}, {})
    victim = bus.rooms[VICTIM - 1]
    victim.dealings_unopened(0)
    member = log.members[VICTIM - 1]
    record = member.keying.current
    assert record is not None
    sids = []
    for _ in range(3):  # three sessions, each abandoned
        victim._start(member, record)
        assert victim._round is not None
        sids.append(victim._round.session.sid)
        victim._end()
    victim._start(member, record)
    for sid in sids:
        victim.on_sum(0, RepairSum(0, sid, b"\x01" * 32, ((((P,), b"s" * 64),))))
    assert bus.penalized == []
    victim.on_sum(0, RepairSum(0, b"\x98" * 16, b"\x01" * 32, ((((P,), b"s" * 64),))))
    victim.on_fault(1, RepairFault(0, b"\x97" * 16, 1))
    assert [(whom, reason) for _, whom, reason in bus.penalized] == [
        (0, "share repair: unasked"),
        (1, "share repair: unasked"),
    ]
    helper = bus.rooms[0]
    bus.queue.clear()
    helper.on_request(3, RepairRequest(0, SID, (1, 1)))
    helper.on_request(3, RepairRequest(0, SID, (2, 3)))  # we are not named
    assert [reason for by, _, reason in bus.penalized if by == 0] == [
        "share repair: bad_helpers",
        "share repair: bad_helpers",
    ]
    await trio.sleep(1)
    helper.on_request(3, RepairRequest(1, SID, (1, 2)))  # not the current key's epoch
    assert bus.queue == []
    helper.on_request(3, RepairRequest(0, SID, (1, 2)))
    assert [(to, m[0]) for _, to, m in bus.queue] == [(1, "kp")]
    helper.on_request(3, RepairRequest(0, b"\x12" * 16, (1, 2)))  # too soon: dropped
    assert len(bus.queue) == 1 and helper._counters["share_repair_throttled"] == 1
    await trio.sleep(1)
    # The same session again: dealt once only (a second deal would send helper 2 a second
    # piece from us, and it would blame us): the requester is at fault.
    helper.on_request(3, RepairRequest(0, SID, (1, 2)))
    assert len(bus.queue) == 1
    assert bus.penalized[-1] == (0, 3, "share repair: replayed_session")
    await trio.sleep(6)
    helper._expire(trio.current_time())
    assert not helper._helping  # the unfinished session and its pieces are gone
    bus.rooms[3]._load_share = lambda record: None  # the victim has no share: no help
    bus.rooms[3].on_request(0, RepairRequest(0, SID, (4, 2)))
    assert len(bus.queue) == 1


async def test_a_requester_naming_helpers_differently_gets_no_honest_helper_blamed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """A hostile requester sends one session id to two helpers with the helpers in another
    order: each deals under its own view, and each sees the other's vector fail its
    signature. Neither is proven at fault (the requester's view differs), so neither is
    penalized; the requester hears of it ("kf")."""
    log, _, _ = cheated()
    bus = Bus(4)
    _rooms(log, bus, [], {}, {})
    async with trio.open_nursery() as nursery:
        nursery.start_soon(bus.deliver)
        bus.rooms[0].on_request(3, RepairRequest(0, SID, (1, 2)))
        bus.rooms[1].on_request(3, RepairRequest(0, SID, (2, 1)))
        bus.wakeup.set()
        await trio.sleep(1)
        nursery.cancel_scope.cancel()
    # (The requester's own room, which started no session, refuses the "kf"s.)
    assert [(by, whom) for by, whom, _ in bus.penalized if by != 3] == []
    assert not bus.rooms[0]._helping and not bus.rooms[1]._helping  # sessions dropped
