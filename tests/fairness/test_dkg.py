"""The DKG state machine: honest runs, bad dealers, false complaints, malformed input."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from node.fairness import dkg
from node.fairness.dkg import (
    Broadcast,
    Completed,
    Disqualified,
    Dkg,
    DkgConfig,
    DkgResult,
    Failed,
    Ignored,
    Misbehaviour,
    Phase,
    decode_dealing,
    encode_dealing,
    make_complaint,
    make_dealing,
    member_key_from_settlement,
    member_public_key,
    seal_share,
)
from node.fairness.errors import FairnessError
from node.fairness.group import N, base_mul, mul
from node.fairness.threshold import combine, create_share, encapsulate, open_ciphertext, poly_eval

Tamper = Callable[[int, bytes], list[bytes]]  # (member, honest message) -> what it sends


def _committee(n: int, t: int) -> tuple[DkgConfig, list[int]]:
    secrets = [member_key_from_settlement(bytes([i]) * 32) for i in range(1, n + 1)]
    config = DkgConfig(31337, 7, t, tuple(member_public_key(s) for s in secrets))
    return config, secrets


class Channel:
    """Total-order broadcast: every message reaches every member, its sender included."""

    def __init__(self, config: DkgConfig, secrets: list[int], tamper: Tamper | None = None):
        self.members = [Dkg(config, i + 1, s) for i, s in enumerate(secrets)]
        self.queue: deque[tuple[int, bytes]] = deque()
        self.tamper = tamper
        self.actions: dict[int, list[object]] = {m.me: [] for m in self.members}

    def send(self, sender: int, data: bytes) -> None:
        sent = self.tamper(sender, data) if self.tamper else [data]
        self.queue.extend((sender, d) for d in sent)

    def run(self, silent: frozenset[int] = frozenset()) -> dict[int, DkgResult | Failed]:
        for m in self.members:
            if m.me not in silent:
                for action in m.start(bytes([m.me]) * 32):
                    assert isinstance(action, Broadcast)
                    self.send(m.me, action.data)
        self.drain()
        for m in self.members:
            assert m.close_dealings() == []
        self.drain()
        out: dict[int, DkgResult | Failed] = {}
        for m in self.members:
            (final,) = m.finish()
            out[m.me] = final.result if isinstance(final, Completed) else final  # type: ignore[assignment]
        return out

    def drain(self) -> None:
        while self.queue:
            sender, data = self.queue.popleft()
            for m in self.members:
                for action in m.receive(sender, data):
                    self.actions[m.me].append(action)
                    if isinstance(action, Broadcast):
                        self.send(m.me, action.data)


def _check_key_works(results: dict[int, DkgResult], honest: list[int]) -> None:
    first = results[honest[0]]
    assert all(results[i].public == first.public for i in honest)
    assert all(results[i].transcript == first.transcript for i in honest)
    public = first.public
    ciphertext, key = encapsulate(public, b"l", b"s" * 32)
    r_point = open_ciphertext(ciphertext, b"l")
    shares = []
    for i in honest:
        share = results[i].share
        assert (
            share is not None
            and base_mul(share.secret).format() == public.verification_shares[i - 1]
        )
        shares.append(create_share(share, public, r_point))
    assert combine(public, r_point, shares[: public.threshold]).key == key


@pytest.mark.parametrize(("n", "t"), [(1, 1), (4, 2), (7, 3)])
def test_honest_run_gives_one_key_that_decrypts(n: int, t: int) -> None:
    config, secrets = _committee(n, t)
    channel = Channel(config, secrets)
    results = channel.run()
    assert all(
        isinstance(r, DkgResult) and r.qualified == tuple(range(1, n + 1)) for r in results.values()
    )
    _check_key_works(results, list(range(1, n + 1)))  # type: ignore[arg-type]
    assert not any(isinstance(a, Misbehaviour) for acts in channel.actions.values() for a in acts)


def _bad_dealing(config: DkgConfig, dealer: int, victims: set[int], garbage: bool = False) -> bytes:
    """An otherwise honest dealing whose shares for `victims` are wrong (or not sealed)."""
    t, n = config.threshold, config.members
    coefficients = [1000 + dealer * 10 + k for k in range(t)]
    commitments = tuple(base_mul(a) for a in coefficients)
    e = 4242 + dealer
    sealed = []
    for j in range(1, n + 1):
        value = poly_eval(coefficients, j) + (1 if j in victims else 0)
        box = seal_share(
            config, dealer, j, base_mul(e), mul(config.member_point(j), e), commitments, value % N
        )
        sealed.append(bytes(48) if garbage and j in victims else box)
    return encode_dealing(config, dealer, commitments, base_mul(e), sealed)


@pytest.mark.parametrize("garbage", [False, True])
def test_dealer_with_a_bad_share_is_disqualified_by_complaint(garbage: bool) -> None:
    config, secrets = _committee(4, 2)

    def tamper(sender: int, data: bytes) -> list[bytes]:
        if sender == 2 and data[0] == dkg.DEALING:
            return [_bad_dealing(config, 2, {3}, garbage)]
        return [data]

    channel = Channel(config, secrets, tamper)
    results = channel.run()
    for i in (1, 3, 4):
        assert Disqualified(2, "bad_share") in channel.actions[i]
        assert any(isinstance(a, Misbehaviour) and a.member == 2 for a in channel.actions[i])
        assert results[i].qualified == (1, 3, 4)  # type: ignore[union-attr]
    _check_key_works(results, [1, 3, 4])  # type: ignore[arg-type]


def test_false_complaint_names_the_complainer_and_keeps_the_dealer() -> None:
    config, secrets = _committee(4, 2)
    channel = Channel(config, secrets)
    for m in channel.members:
        channel.send(m.me, m.start(bytes([m.me]) * 32)[0].data)  # type: ignore[union-attr]
    channel.drain()
    dealing = decode_dealing(config, make_dealing(config, 1, b"\x01" * 32))
    channel.send(4, make_complaint(config, 4, secrets[3], dealing))
    channel.drain()
    for m in channel.members:
        assert (
            Misbehaviour(4, "false_complaint", "dealer 1's share is valid") in channel.actions[m.me]
        )
        m.close_dealings()
        (done,) = m.finish()
        assert isinstance(done, Completed) and done.result.qualified == (1, 2, 3, 4)


def test_complaint_with_a_forged_reveal_is_misbehaviour() -> None:
    config, secrets = _committee(4, 2)
    machine = Dkg(config, 1, secrets[0])
    honest = make_dealing(config, 2, b"\x02" * 32)
    assert machine.receive(2, honest) == []
    complaint = bytearray(make_complaint(config, 3, secrets[2], decode_dealing(config, honest)))
    complaint[-1] ^= 1  # the DLEQ proof no longer holds
    (action,) = machine.receive(3, bytes(complaint))
    assert isinstance(action, Misbehaviour) and (action.member, action.code) == (
        3,
        "bad_complaint_proof",
    )
    # Someone else's key revealed under member 3's name fails too.
    forged = make_complaint(config, 3, secrets[3], decode_dealing(config, honest))
    machine2 = Dkg(config, 1, secrets[0])
    machine2.receive(2, honest)
    (action,) = machine2.receive(3, forged)
    assert isinstance(action, Misbehaviour) and action.code == "bad_complaint_proof"


def test_equivocating_dealer_is_disqualified() -> None:
    config, secrets = _committee(4, 2)
    machine = Dkg(config, 1, secrets[0])
    assert machine.receive(2, make_dealing(config, 2, b"\x02" * 32)) == []
    assert machine.receive(2, make_dealing(config, 2, b"\x02" * 32)) == [
        Ignored(2, "duplicate", "dealing already received")
    ]
    actions = machine.receive(2, make_dealing(config, 2, b"\x09" * 32))
    assert Disqualified(2, "equivocation") in actions
    assert machine.disqualified == {2: "equivocation"}


def test_malformed_messages_are_attributed_to_their_sender() -> None:
    config, secrets = _committee(4, 2)
    other, _ = _committee(4, 1)  # another session
    machine = Dkg(config, 1, secrets[0])
    good = make_dealing(config, 2, b"\x02" * 32)
    bad_point = bytearray(good)
    bad_point[40] = 0x05
    cases = {
        "bad_size": good[:-1],
        "bad_kind": b"\x07" + good[1:],
        "bad_version": good[:1] + b"\x02" + good[2:],
        "wrong_session": good[:2] + other.session + good[34:],
        "bad_point": bytes(bad_point),
        "bad_index": good[:34] + b"\x00\x09" + good[36:],
        "bad_shape": good[:36] + b"\x00\x03" + good[38:],
    }
    for code, data in cases.items():
        (action,) = machine.receive(2, data)
        assert isinstance(action, Misbehaviour), code
        assert (action.member, action.code) == (2, code)
    (action,) = machine.receive(2, b"")
    assert isinstance(action, Misbehaviour) and action.code == "bad_size"
    (action,) = machine.receive(3, good)  # member 2's dealing, sent by member 3
    assert isinstance(action, Misbehaviour) and (action.member, action.code) == (3, "not_sender")
    with pytest.raises(FairnessError):
        machine.receive(5, good)  # not a member at all: the caller's bug


def test_silent_members_are_left_out_and_too_few_fail() -> None:
    config, secrets = _committee(4, 2)
    results = Channel(config, secrets).run(silent=frozenset({4}))
    assert all(r.qualified == (1, 2, 3) for r in results.values())  # type: ignore[union-attr]
    _check_key_works(results, [1, 2, 3])  # type: ignore[arg-type]
    results = Channel(config, secrets).run(silent=frozenset({2, 3, 4}))
    assert all(isinstance(r, Failed) and r.code == "too_few_qualified" for r in results.values())


def test_late_dealings_are_ignored_and_finished_runs_stay_finished() -> None:
    config, secrets = _committee(4, 2)
    machine = Dkg(config, 1, secrets[0])
    machine.close_dealings()
    assert machine.receive(2, make_dealing(config, 2, b"\x02" * 32)) == [
        Ignored(2, "late", "dealing after the dealing deadline")
    ]
    assert machine.start(b"\x01" * 32) == []
    (failed,) = machine.finish()
    assert isinstance(failed, Failed) and machine.phase is Phase.FAILED
    assert machine.finish() == []
    (ignored,) = machine.receive(2, b"x")
    assert isinstance(ignored, Ignored)


def test_config_and_secret_are_checked() -> None:
    config, secrets = _committee(4, 2)
    with pytest.raises(FairnessError):
        Dkg(config, 1, secrets[1])
    with pytest.raises(FairnessError):
        Dkg(config, 5, secrets[0])
    with pytest.raises(FairnessError):
        DkgConfig(1, 1, 3, config.member_keys[:2])
    with pytest.raises(FairnessError):
        DkgConfig(1, 1, 1, (config.member_keys[0], config.member_keys[0]))


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400), st.integers(min_value=1, max_value=4))
def test_property_arbitrary_bytes_never_crash_the_machine(data: bytes, sender: int) -> None:
    config, secrets = _committee(4, 2)
    machine = Dkg(config, 1, secrets[0])
    for action in machine.receive(sender, data):
        assert isinstance(action, Misbehaviour | Ignored)


@settings(max_examples=60, deadline=None)
@given(st.integers(min_value=0, max_value=330), st.integers(min_value=1, max_value=255))
def test_property_any_flipped_byte_in_a_dealing_is_caught(position: int, flip: int) -> None:
    config, secrets = _committee(4, 2)
    good = make_dealing(config, 2, b"\x02" * 32)
    damaged = bytearray(good)
    damaged[position] ^= flip
    machine = Dkg(config, 1, secrets[0])
    actions = machine.receive(2, bytes(damaged))
    # Either refused outright, or accepted as a dealing whose share to us fails (we
    # complain), or the flip hit some other member's sealed share (they will complain).
    if actions:
        assert isinstance(actions[0], Misbehaviour | Broadcast)
    else:
        assert position >= 40 + 33 * 2 + 33 + 48


@settings(max_examples=15, deadline=None)
@given(st.data())
def test_property_up_to_f_bad_dealers_never_split_or_break_the_key(data: st.DataObject) -> None:
    n, t = data.draw(st.sampled_from([(4, 2), (7, 3)]))
    f = t - 1
    config, secrets = _committee(n, t)
    members = list(range(1, n + 1))
    bad = data.draw(st.lists(st.sampled_from(members), max_size=f, unique=True))
    victims = {
        b: data.draw(st.sets(st.sampled_from([m for m in members if m not in bad]), min_size=1))
        for b in bad
    }

    def tamper(sender: int, message: bytes) -> list[bytes]:
        if sender in victims and message[0] == dkg.DEALING:
            return [_bad_dealing(config, sender, victims[sender])]
        return [message]

    results = Channel(config, secrets, tamper).run()
    honest = [m for m in members if m not in bad]
    for i in honest:
        assert results[i].qualified == tuple(honest)  # type: ignore[union-attr]
    _check_key_works(results, honest)  # type: ignore[arg-type]
