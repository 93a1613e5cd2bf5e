"""The decryptor state (node/fairness/decryptor.py): which committed blocks can open,
from which shares; forged, duplicate and early shares; the share record's bytes."""

from __future__ import annotations

import os

import pytest

from node.fairness.committee import FairnessGenesis, local_dkg
from node.fairness.decryptor import (
    MAX_EARLY_HEIGHTS,
    Added,
    Decryptor,
    decode_share_record,
    encode_share_record,
)
from node.fairness.errors import FairnessError
from node.fairness.group import base_mul
from node.fairness.threshold import (
    DEV_CHAIN_ID,
    DecryptionShare,
    combine,
    create_share,
    dealer_keygen,
    verify_share,
)

PUBLIC, SHARES = dealer_keygen(4, 2, b"\x07" * 32, chain_id=DEV_CHAIN_ID)
R1, R2 = base_mul(11), base_mul(12)


def forged(share: DecryptionShare) -> DecryptionShare:
    return DecryptionShare(share.index, share.point, share.proof[:-1] + b"\x00")


def test_a_block_is_ready_with_t_valid_shares_per_envelope() -> None:
    d = Decryptor(PUBLIC)
    d.expect(5, {0: R1, 3: R2})
    assert not d.ready(5) and d.missing(5) == 4
    for entry, point in ((0, R1), (3, R2)):
        assert d.add(5, entry, create_share(SHARES[0], PUBLIC, point)) is Added.ACCEPTED
    assert d.add(5, 0, create_share(SHARES[0], PUBLIC, R1)) is Added.DUPLICATE
    assert d.add(5, 0, forged(create_share(SHARES[1], PUBLIC, R1))) is Added.INVALID
    assert d.add(5, 7, create_share(SHARES[1], PUBLIC, R1)) is Added.INVALID  # no such entry
    assert d.add(5, 0, create_share(SHARES[1], PUBLIC, R2)) is Added.INVALID  # another R
    assert not d.ready(5)
    # The forged share under member 2's index did not shut out the real one.
    assert d.add(5, 0, create_share(SHARES[1], PUBLIC, R1)) is Added.ACCEPTED
    assert d.add(5, 3, create_share(SHARES[3], PUBLIC, R2)) is Added.ACCEPTED
    assert d.ready(5)
    taken = d.take(5)
    assert {i: sorted(s.index for s in shares) for i, shares in taken.items()} == {
        0: [1, 2],
        3: [1, 4],
    }
    # Any t valid shares give the same key.
    assert (
        combine(PUBLIC, R2, taken[3]).key
        == combine(
            PUBLIC, R2, [create_share(SHARES[2], PUBLIC, R2), create_share(SHARES[1], PUBLIC, R2)]
        ).key
    )
    assert d.add(5, 0, create_share(SHARES[2], PUBLIC, R1)) is Added.DROPPED  # done
    assert len(d) == 0


def test_early_shares_wait_for_their_height_and_are_checked_then() -> None:
    d = Decryptor(PUBLIC)
    assert d.add(9, 0, forged(create_share(SHARES[2], PUBLIC, R1)), sender=3) is Added.EARLY
    assert d.add(9, 0, create_share(SHARES[1], PUBLIC, R1), sender=2) is Added.EARLY
    unchecked = d.expect(9, {0: R1})
    # Both still count: they come back unchecked, with the peer that sent each.
    assert [(u.sender, u.entry, u.share.index) for u in unchecked] == [(3, 0, 3), (2, 0, 2)]
    verdicts = [verify_share(PUBLIC, R1, u.share) for u in unchecked]
    assert verdicts == [False, True]
    pairs = zip(unchecked, verdicts, strict=True)
    added = [d.add_checked(9, u.entry, u.share, ok) for u, ok in pairs]
    assert added == [Added.INVALID, Added.ACCEPTED]
    assert d.invalid == 1
    assert d.add_own(9, 0, create_share(SHARES[0], PUBLIC, R1)) is Added.ACCEPTED
    assert d.ready(9)
    for h in range(10, 10 + MAX_EARLY_HEIGHTS):
        assert d.add(h, 0, create_share(SHARES[1], PUBLIC, R1)) is Added.EARLY
    assert d.add(10_000, 0, create_share(SHARES[1], PUBLIC, R1)) is Added.DROPPED


def test_share_record_round_trip() -> None:
    shares = {2: (create_share(SHARES[3], PUBLIC, R1), create_share(SHARES[0], PUBLIC, R1))}
    record = encode_share_record(shares)
    back = decode_share_record(record)
    assert [s.index for s in back[2]] == [1, 4]  # canonical: by member
    assert encode_share_record(back) == record


def test_local_dkg_gives_a_working_key_and_refuses_other_chains() -> None:
    secrets = [os.urandom(32) for _ in range(4)]
    seeds = [os.urandom(32) for _ in range(4)]
    public, shares = local_dkg(DEV_CHAIN_ID, 0, secrets, seeds)
    assert (public.threshold, public.members) == (2, 4)
    FairnessGenesis(0, public).check_committee(4)
    with pytest.raises(FairnessError):
        FairnessGenesis(0, public).check_committee(7)
    keys = {
        combine(public, R1, [create_share(a, public, R1), create_share(b, public, R1)]).key
        for a, b in ((shares[0], shares[1]), (shares[2], shares[3]))
    }
    assert len(keys) == 1
    with pytest.raises(FairnessError, match="dkg_refused"):
        local_dkg(1, 0, secrets, seeds)


def test_triage_is_lazy_and_never_counts_an_unchecked_share() -> None:
    """Only shares that still count need a proof check (t valid per envelope); a share
    is counted only with a True verdict, and a False one is INVALID even after the
    height is done, so its sender is still blamed."""
    d = Decryptor(PUBLIC)
    d.expect(3, {0: R1})
    good, other = create_share(SHARES[1], PUBLIC, R1), create_share(SHARES[2], PUBLIC, R1)
    assert d.triage(2, 3, 0, good) is None  # must be checked
    assert d.triage(2, 3, 5, good) is Added.INVALID  # no such envelope
    assert d.add_checked(3, 0, good, True) is Added.ACCEPTED
    assert d.triage(2, 3, 0, good) is Added.DUPLICATE
    assert d.add_checked(3, 0, other, True) is Added.ACCEPTED
    assert d.ready(3)
    # t = 2 valid shares are in: a third is not worth a check.
    assert not d.needs(3, 0, 4)
    assert d.triage(4, 3, 0, create_share(SHARES[3], PUBLIC, R1)) is Added.DUPLICATE
    d.take(3)
    assert d.add_checked(3, 0, forged(other), False) is Added.INVALID
    assert d.add_checked(3, 0, other, True) is Added.DROPPED
